package transport

import (
	"crypto/cipher"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/parleychat/parley/protocol/wire"
)

// The TLS 1.3 record layer (RFC 8446 §5) of a gateway connection once
// crypto/tls has done the handshake.
//
// Why the gateway does this itself: an idle TLS connection must cost little
// memory (issue 14), and a tls.Conn keeps, for the connection's whole life,
// the buffers its handshake grew (rawInput and hand, sized by the
// X25519MLKEM768 ClientHello), two AEADs and itself: about 6 KiB of live heap
// its API cannot release. Kernel TLS, which lets nginx and HAProxy hand
// the records to the kernel, is not available (the kernel is built without
// CONFIG_TLS). So we do in user space what kTLS does: crypto/tls runs the
// handshake, we take the traffic secrets it publishes through
// tls.Config.KeyLogWriter (public API, the NSS key log format), and the
// tls.Conn is dropped. An idle connection then keeps only its keys, IVs
// and sequence numbers; no buffer, and no AEAD either: those are built on
// first use and released by a shared sweeper (tlssweep.go) when unused.
//
// What it relies on (checked at the handshake, see tls.go, else crypto/tls
// keeps the records): crypto/tls read nothing past the client's Finished
// (a reader under it stops at each record's end), the traffic secrets
// were logged, and the server's write sequence number is counted from the
// records crypto/tls wrote under the application key (its session
// tickets), which are verified by opening them, not assumed.
//
// Only TLS 1.3: a TLS 1.2 connection keeps crypto/tls's record layer.

// Record content types (RFC 8446 §5.1).
const (
	recordChangeCipherSpec = 20
	recordAlert            = 21
	recordHandshake        = 22
	recordApplicationData  = 23
)

// Alert descriptions (RFC 8446 §6).
const (
	alertCloseNotify       = 0
	alertUnexpectedMessage = 10
	alertBadRecordMAC      = 20
	alertRecordOverflow    = 22
	alertIllegalParameter  = 47
	alertDecodeError       = 50
	alertInternalError     = 80
	alertUserCanceled      = 90
)

const (
	recordHeaderLen = 5
	// maxPlaintext is the largest record content (2^14, RFC 8446 §5.1);
	// the inner plaintext adds the content type and any padding, at most
	// 2^14+1 bytes in all (§5.4), and the ciphertext at most 2^14+256
	// (§5.2).
	maxPlaintext      = 1 << 14
	maxInnerPlaintext = maxPlaintext + 1
	maxCiphertext     = maxPlaintext + 256
	// keyUpdateType is the KeyUpdate handshake message (§4.6.3).
	keyUpdateType = 24
	// maxUselessRecords bounds the records in a row that bring no
	// application data (KeyUpdate, empty data, user_canceled), as
	// crypto/tls does: a peer cannot keep the reader busy with nothing.
	maxUselessRecords = 16
	// rekeyAfter is how many records we seal under one key before we
	// update it ourselves: AES-GCM's limit is 2^24.5 full-size records
	// (RFC 8446 §5.5).
	rekeyAfter = 1 << 24
)

// alertError is a fatal record-layer error: the alert we sent the peer
// (best effort) or, remote, the one it sent us.
type alertError struct {
	code   uint8
	remote bool
	why    string
}

func (e *alertError) Error() string {
	if e.remote {
		return fmt.Sprintf("tls: peer sent alert %d", e.code)
	}
	return fmt.Sprintf("tls: %s (alert %d)", e.why, e.code)
}

// stopSilent: writing has ended and CloseWrite sends no alert of its own.
const stopSilent = 0x100

var (
	errRecordsClosed  = errors.New("tls: write after close_notify or a fatal alert")
	errSeqExhausted   = errors.New("tls: record sequence number exhausted")
	errTooManyRecords = &alertError{code: alertUnexpectedMessage, why: "too many records without application data"}
)

// halfConn is one direction's protection state. mu guards all of it; the
// sweeper takes it with TryLock only.
type halfConn struct {
	mu   sync.Mutex
	keys trafficKeys
	seq  uint64
	// aead is built from keys on first use and released by the sweeper
	// once unused for a sweep period (used says whether it was used
	// since the last sweep). A halfConn is in the sweeper's set while it
	// holds one (and, after a KeyUpdate dropped it, until the next sweep).
	aead cipher.AEAD
	used bool
	// closed: the keys were zeroed (recordConn.Close); nothing may be
	// built from them.
	closed bool
}

// cipher returns the AEAD, building it if the sweeper released it.
func (h *halfConn) cipher(s *suite13) (cipher.AEAD, error) {
	if h.closed {
		return nil, errRecordsClosed
	}
	if h.aead == nil {
		a, err := h.keys.aead(s)
		if err != nil {
			return nil, err
		}
		h.aead = a
		sweeper.add(h)
	}
	h.used = true
	return h.aead, nil
}

// nonce is the per-record nonce (RFC 8446 §5.3): the 64-bit sequence
// number, big-endian, left-padded to the IV's length and XORed with it.
func (h *halfConn) nonce() [ivLen]byte {
	n := h.keys.iv
	for i := range 8 {
		n[ivLen-1-i] ^= byte(h.seq >> (8 * i))
	}
	return n
}

// rekey moves to the next traffic secret (KeyUpdate) with sequence
// number 0.
func (h *halfConn) rekey(s *suite13) error {
	if err := h.keys.update(s); err != nil {
		return err
	}
	h.seq = 0
	h.aead = nil // rebuilt from the new key on use; the sweeper drops the entry
	return nil
}

// recordConn is the TLS 1.3 record layer over a TCP connection, a
// net.Conn in place of the tls.Conn. Read is called by one goroutine at a
// time (the connection's reader, or the goroutine it runs reads on);
// Write, tryWrite and CloseWrite from any, serialised by out.mu.
type recordConn struct {
	conn  net.Conn        // the socket: writes, deadlines, close
	rd    io.Reader       // where records are read: conn, or rawWait over it
	raw   syscall.RawConn // for writes that do not wait; nil: none
	suite *suite13
	sni   string

	in  halfConn // the client's records
	out halfConn // ours

	// Read state, used only by Read. A record is read into hdr and body
	// across as many Reads of rd as it takes (rd may return
	// errWouldBlock, tls.go); then body holds its plaintext,
	// (*body)[plainOff:plainEnd] the part not yet read (offsets, not a
	// slice: an idle connection's struct fits a smaller size class).
	hdr     [recordHeaderLen]byte
	hdrN    uint8
	useless uint8
	// alertQueued (guarded by out.mu): the tail ends with the fatal
	// alert fail sealed but the socket did not take whole; CloseWrite
	// sends it, and nothing after it.
	alertQueued        bool
	plainOff, plainEnd uint16
	body               *[]byte // pooled, nil between records
	rerr               error   // sticky: the stream's end or a fatal error

	// Write state. keyUpdate asks the next write to send our KeyUpdate
	// first: the peer asked for one (update_requested) while a write was
	// under way. The rest is guarded by out.mu: tail is ciphertext a
	// tryWrite left unsent (from tailOff on); werr ends writing.
	keyUpdate atomic.Bool
	// stop ends writing after a fatal alert either way (RFC 8446 §6.2: no
	// data after it): 0 while writing goes on; a fatal alert's code + 1
	// that fail could not send at once (a write was under way, or a tail
	// waited), which CloseWrite sends in close_notify's place; stopSilent
	// once the alert is sent or queued, or the peer sent one.
	stop    atomic.Uint32
	tailOff int32
	tail    *[]byte
	werr    error
}

func (c *recordConn) Read(b []byte) (int, error) {
	for c.plainOff == c.plainEnd {
		if c.rerr != nil {
			return 0, c.rerr
		}
		if err := c.readRecord(); err != nil {
			if !errors.Is(err, errWouldBlock) && !IsTimeout(err) {
				c.rerr = err
			}
			return 0, err
		}
	}
	n := copy(b, (*c.body)[c.plainOff:c.plainEnd])
	c.plainOff += uint16(n)
	if c.plainOff == c.plainEnd {
		c.releaseBody()
	}
	return n, nil
}

func (c *recordConn) releaseBody() {
	if c.body != nil {
		clear(*c.body)
		wire.PutRaw(c.body)
		c.body, c.plainOff, c.plainEnd = nil, 0, 0
	}
}

// readRecord reads and opens the next record (RFC 8446 §5.2): nil once
// application data is in c.body (possibly none: an empty record), or
// after a record the reader deals with itself (KeyUpdate). A read error of
// rd (errWouldBlock, a timeout) leaves the part read for the next call.
func (c *recordConn) readRecord() error {
	for c.hdrN < recordHeaderLen {
		n, err := c.rd.Read(c.hdr[c.hdrN:])
		c.hdrN += uint8(n)
		if err != nil && c.hdrN < recordHeaderLen {
			if err == io.EOF && c.hdrN > 0 {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
	}
	// Every record after the handshake is protected: its outer type is
	// application_data. A change_cipher_spec is allowed only during the
	// handshake (§5), and an unprotected alert or handshake never.
	if c.hdr[0] != recordApplicationData {
		return c.fail(alertUnexpectedMessage, "unprotected record after the handshake")
	}
	n := int(binary.BigEndian.Uint16(c.hdr[3:]))
	if n > maxCiphertext {
		return c.fail(alertRecordOverflow, "record too long")
	}
	if n < aeadTagLen+1 {
		return c.fail(alertBadRecordMAC, "record too short")
	}
	if c.body == nil {
		c.body = wire.GetRaw()
	}
	// The body grows with what arrives (as wire.Reader's does): a peer
	// announcing 16 KiB and sending a byte costs one pooled buffer.
	buf := *c.body
	for len(buf) < n {
		if len(buf) == cap(buf) {
			buf = grow(buf, n)
		}
		k, err := c.rd.Read(buf[len(buf):min(cap(buf), n)])
		buf = buf[:len(buf)+k]
		if err != nil && len(buf) < n {
			*c.body = buf
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
	}
	*c.body = buf
	c.hdrN = 0
	return c.openRecord(buf)
}

// grow returns buf in a buffer of twice its capacity (at least 4 KiB), at
// most n.
func grow(buf []byte, n int) []byte {
	grown := make([]byte, len(buf), min(n, max(2*cap(buf), 4096)))
	copy(grown, buf)
	return grown
}

// openRecord decrypts the record in buf (the header is c.hdr) in place
// and acts on its inner content type (RFC 8446 §5.2, §5.4).
func (c *recordConn) openRecord(buf []byte) error {
	c.in.mu.Lock()
	aead, err := c.in.cipher(c.suite)
	if err != nil {
		c.in.mu.Unlock()
		return c.fail(alertInternalError, err.Error())
	}
	if c.in.seq == math.MaxUint64 {
		c.in.mu.Unlock()
		return c.fail(alertInternalError, errSeqExhausted.Error())
	}
	nonce := c.in.nonce()
	inner, err := aead.Open(buf[:0], nonce[:], buf, c.hdr[:])
	if err != nil {
		c.in.mu.Unlock()
		return c.fail(alertBadRecordMAC, "record authentication failed")
	}
	c.in.seq++
	c.in.mu.Unlock()

	if len(inner) > maxInnerPlaintext {
		return c.fail(alertRecordOverflow, "record plaintext too long")
	}
	// TLSInnerPlaintext: content, the content type, then zero padding.
	i := len(inner) - 1
	for i >= 0 && inner[i] == 0 {
		i--
	}
	if i < 0 {
		return c.fail(alertUnexpectedMessage, "record without a content type")
	}
	typ, content := inner[i], inner[:i]
	if typ == recordApplicationData && len(content) > 0 {
		c.useless = 0
		// inner is buf opened in place: content starts at the body's start.
		c.plainOff, c.plainEnd = 0, uint16(len(content))
		return nil
	}
	c.useless++
	if c.useless > maxUselessRecords {
		return c.fail(errTooManyRecords.code, errTooManyRecords.why)
	}
	switch typ {
	case recordApplicationData: // empty: allowed (§5.4), nothing to read
		c.releaseBody()
		return nil
	case recordAlert:
		// §6: close_notify ends the stream; user_canceled is followed by
		// one; every other alert is an error, whatever its level.
		if len(content) != 2 {
			return c.fail(alertDecodeError, "malformed alert")
		}
		code := content[1]
		c.releaseBody()
		switch code {
		case alertCloseNotify:
			c.rerr = io.EOF
			return io.EOF
		case alertUserCanceled:
			return nil
		}
		c.stop.Store(stopSilent) // nothing more to the peer (§6.2)
		return &alertError{code: code, remote: true}
	case recordHandshake:
		return c.handshakeMessage(content)
	}
	return c.fail(alertUnexpectedMessage, "unexpected record content type")
}

// handshakeMessage handles a post-handshake message from the client: only
// KeyUpdate is allowed (RFC 8446 §4.6.3; we send no CertificateRequest and
// the client sends no tickets). It must fill the record alone: the keys
// change after it, and a message cannot span a key change (§5.1).
func (c *recordConn) handshakeMessage(m []byte) error {
	if len(m) == 0 || m[0] != keyUpdateType {
		return c.fail(alertUnexpectedMessage, "unexpected post-handshake message")
	}
	if len(m) != 5 || m[1] != 0 || m[2] != 0 || m[3] != 1 {
		return c.fail(alertDecodeError, "malformed KeyUpdate")
	}
	requested := m[4]
	c.releaseBody()
	if requested > 1 {
		return c.fail(alertIllegalParameter, "KeyUpdate request_update not 0 or 1")
	}
	c.in.mu.Lock()
	err := c.in.rekey(c.suite)
	c.in.mu.Unlock()
	if err != nil {
		return c.fail(alertInternalError, err.Error())
	}
	if requested == 1 {
		// update_requested: our KeyUpdate must precede our next
		// application data. Sent now if the socket takes it without
		// waiting (the rest kept as a tail), else by the next write.
		c.keyUpdate.Store(true)
		c.sendPending()
	}
	return nil
}

// sendPending sends a requested KeyUpdate now if no write is under way,
// without waiting for the socket: what it does not take is kept as the
// tail for the next write.
func (c *recordConn) sendPending() {
	if c.raw == nil || !c.out.mu.TryLock() {
		return
	}
	defer c.out.mu.Unlock()
	if c.tail != nil || c.werr != nil || c.stop.Load() != 0 {
		return
	}
	if _, err := c.tryWriteLocked(nil); err != nil && c.werr == nil {
		c.werr = err
	}
}

// fail ends reading with a fatal alert, which is sent to the peer if the
// socket takes it at once (best effort: the connection is closing).
func (c *recordConn) fail(code uint8, why string) error {
	c.releaseBody()
	err := &alertError{code: code, why: why}
	c.rerr = err
	if c.raw == nil || !c.out.mu.TryLock() {
		// A write is under way (or the sweeper holds the lock): it is the
		// last; CloseWrite sends the alert after it.
		c.stop.CompareAndSwap(0, uint32(code)+1)
		return err
	}
	defer c.out.mu.Unlock()
	if c.werr != nil || !c.stop.CompareAndSwap(0, stopSilent) {
		return err
	}
	if c.tail != nil {
		c.stop.Store(uint32(code) + 1) // after the tail, by CloseWrite
		return err
	}
	b := wire.GetRaw()
	out, serr := c.sealRecord((*b)[:0], recordAlert, []byte{2, code})
	*b = out
	if serr != nil {
		wire.PutRaw(b)
		return err
	}
	n, werr := rawWrite(c.raw, out)
	switch {
	case werr == nil && n == len(out):
		wire.PutRaw(b)
	case werr == nil || (n == 0 && IsTimeout(werr)):
		// The socket took part of it, or a stale write deadline refused
		// it (see tryWriteLocked): the rest goes at CloseWrite, under a
		// deadline of its own.
		c.tail, c.tailOff, c.alertQueued = b, int32(n), true
	default:
		wire.PutRaw(b)
		c.werr = werr
	}
	return err
}

// sealRecord appends one record of content (at most maxPlaintext bytes)
// of type typ to dst, protected under the write key (RFC 8446 §5.2):
// header, then AEAD(content || type) with the header as additional data,
// no padding. Called with out.mu held.
func (c *recordConn) sealRecord(dst []byte, typ byte, content []byte) ([]byte, error) {
	aead, err := c.out.cipher(c.suite)
	if err != nil {
		return dst, err
	}
	if c.out.seq == math.MaxUint64 {
		return dst, errSeqExhausted
	}
	n := len(content) + 1 + aead.Overhead()
	start := len(dst)
	dst = slices.Grow(dst, recordHeaderLen+n)
	dst = append(dst, recordApplicationData, 3, 3, byte(n>>8), byte(n))
	dst = append(dst, content...)
	dst = append(dst, typ)
	nonce := c.out.nonce()
	hdr := dst[start : start+recordHeaderLen]
	inner := dst[start+recordHeaderLen:]
	sealed := aead.Seal(inner[:0], nonce[:], inner, hdr) // in place: the capacity is there
	c.out.seq++
	return dst[:start+recordHeaderLen+len(sealed)], nil
}

// seal appends buf as application data records to dst, after our
// KeyUpdate if one is due: requested by the peer, or ours after
// rekeyAfter records under one key. Called with out.mu held.
func (c *recordConn) seal(dst []byte, buf []byte) ([]byte, error) {
	var err error
	if c.keyUpdate.Swap(false) {
		if dst, err = c.sealKeyUpdate(dst); err != nil {
			return dst, err
		}
	}
	for len(buf) > 0 {
		if c.out.seq >= rekeyAfter {
			if dst, err = c.sealKeyUpdate(dst); err != nil {
				return dst, err
			}
		}
		k := min(len(buf), maxPlaintext)
		if dst, err = c.sealRecord(dst, recordApplicationData, buf[:k]); err != nil {
			return dst, err
		}
		buf = buf[k:]
	}
	return dst, nil
}

// sealKeyUpdate appends our KeyUpdate (update_not_requested) and moves the
// write side to the next secret (RFC 8446 §4.6.3).
func (c *recordConn) sealKeyUpdate(dst []byte) ([]byte, error) {
	dst, err := c.sealRecord(dst, recordHandshake, []byte{keyUpdateType, 0, 0, 1, 0})
	if err != nil {
		return dst, err
	}
	return dst, c.out.rekey(c.suite)
}

// sealed returns a pooled buffer holding buf's records; release it with
// putSealed.
func (c *recordConn) sealed(buf []byte) (*[]byte, error) {
	b := wire.GetRaw()
	n := len(buf) + (len(buf)/maxPlaintext+1)*(recordHeaderLen+1+aeadTagLen)
	if cap(*b) < n {
		*b = make([]byte, 0, n)
	}
	out, err := c.seal((*b)[:0], buf)
	*b = out
	if err != nil {
		putSealed(b)
		return nil, err
	}
	return b, nil
}

func putSealed(b *[]byte) { wire.PutRaw(b) }

// Write sends buf as records, after what a tryWrite left, in one write.
func (c *recordConn) Write(buf []byte) (int, error) {
	c.out.mu.Lock()
	defer c.out.mu.Unlock()
	if c.werr != nil {
		return 0, c.werr
	}
	if c.stop.Load() != 0 {
		return 0, errRecordsClosed
	}
	var b *[]byte
	if len(buf) > 0 || c.keyUpdate.Load() {
		var err error
		if b, err = c.sealed(buf); err != nil {
			c.werr = err
			return 0, err
		}
		defer putSealed(b)
	}
	var err error
	switch t := c.tail; {
	case t != nil && b != nil:
		bufs := net.Buffers{(*t)[c.tailOff:], *b}
		_, err = bufs.WriteTo(c.conn)
	case t != nil:
		_, err = c.conn.Write((*t)[c.tailOff:])
	case b != nil:
		_, err = c.conn.Write(*b)
	}
	if c.tail != nil {
		putSealed(c.tail)
		c.tail, c.tailOff = nil, 0
	}
	if err != nil {
		// A record cut anywhere cannot be resumed.
		c.werr = err
		return 0, err
	}
	return len(buf), nil
}

// tryWrite seals buf and writes as much as the socket takes now; the rest
// of the ciphertext is kept for the next Write (TryWriter).
func (c *recordConn) tryWrite(buf []byte) (bool, error) {
	if c.raw == nil || !c.out.mu.TryLock() {
		return false, ErrNoTryWrite
	}
	defer c.out.mu.Unlock()
	if c.tail != nil {
		return false, ErrNoTryWrite
	}
	if c.werr != nil {
		return false, c.werr
	}
	if c.stop.Load() != 0 {
		return false, errRecordsClosed
	}
	return c.tryWriteLocked(buf)
}

func (c *recordConn) tryWriteLocked(buf []byte) (bool, error) {
	b, err := c.sealed(buf)
	if err != nil {
		c.werr = err
		return false, err
	}
	n, err := rawWrite(c.raw, *b)
	if err != nil && n == 0 && IsTimeout(err) {
		// The write deadline an earlier Write set has passed (the outbox
		// leaves it armed): the socket refused the write before taking
		// anything. The records are sealed, their sequence numbers used,
		// so they are kept whole as the tail; the next Write, under a
		// deadline of its own, sends them. (Dropping them, or failing the
		// stream, closed idle-then-busy connections as slow consumers.)
		c.tail, c.tailOff = b, 0
		return false, nil
	}
	if err != nil || n == len(*b) {
		putSealed(b)
		if err != nil {
			c.werr = err
		}
		return err == nil, err
	}
	c.tail, c.tailOff = b, int32(n)
	return false, nil
}

// CloseWrite sends close_notify, or the fatal alert a failed read could
// not send at once (after what a tryWrite left), unless writing already
// ended, and shuts the socket's write side. The alert's
// write is bounded by lingerTimeout (tls.Conn.CloseWrite bounds its own
// too).
func (c *recordConn) CloseWrite() error {
	c.out.mu.Lock()
	defer c.out.mu.Unlock()
	var err error
	stop := c.stop.Swap(stopSilent)
	if t := c.tail; c.alertQueued && t != nil {
		_ = c.conn.SetWriteDeadline(time.Now().Add(lingerTimeout))
		_, err = c.conn.Write((*t)[c.tailOff:])
		putSealed(t)
		c.tail, c.tailOff = nil, 0
	} else if c.werr == nil && stop != stopSilent {
		_ = c.conn.SetWriteDeadline(time.Now().Add(lingerTimeout))
		// close_notify (a warning), or the fatal alert fail could not send.
		alert := []byte{1, alertCloseNotify}
		if stop != 0 {
			alert = []byte{2, uint8(stop - 1)}
		}
		b := wire.GetRaw()
		var out []byte
		out, err = c.sealRecord((*b)[:0], recordAlert, alert)
		*b = out
		if err == nil {
			if t := c.tail; t != nil {
				bufs := net.Buffers{(*t)[c.tailOff:], out}
				_, err = bufs.WriteTo(c.conn)
				putSealed(t)
				c.tail, c.tailOff = nil, 0
			} else {
				_, err = c.conn.Write(out)
			}
		}
		putSealed(b)
		c.werr = errRecordsClosed
	}
	if cw, ok := c.conn.(interface{ CloseWrite() error }); ok {
		if cerr := cw.CloseWrite(); err == nil {
			err = cerr
		}
	}
	return err
}

// Close closes the socket and forgets the keys.
func (c *recordConn) Close() error {
	err := c.conn.Close()
	c.releaseBody() // plaintext not read (Close follows the last read)
	c.in.mu.Lock()
	c.in.keys.zero()
	c.in.aead, c.in.closed = nil, true
	sweeper.remove(&c.in)
	c.in.mu.Unlock()
	c.out.mu.Lock()
	c.out.keys.zero()
	c.out.aead, c.out.closed = nil, true
	sweeper.remove(&c.out)
	if c.tail != nil {
		putSealed(c.tail)
		c.tail = nil
	}
	if c.werr == nil {
		c.werr = net.ErrClosed
	}
	c.out.mu.Unlock()
	return err
}

func (c *recordConn) LocalAddr() net.Addr                { return c.conn.LocalAddr() }
func (c *recordConn) RemoteAddr() net.Addr               { return c.conn.RemoteAddr() }
func (c *recordConn) SetDeadline(t time.Time) error      { return c.conn.SetDeadline(t) }
func (c *recordConn) SetReadDeadline(t time.Time) error  { return c.conn.SetReadDeadline(t) }
func (c *recordConn) SetWriteDeadline(t time.Time) error { return c.conn.SetWriteDeadline(t) }

var _ net.Conn = (*recordConn)(nil)
