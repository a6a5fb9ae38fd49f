package transport

import (
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"syscall"
	"time"

	"github.com/parleychat/parley/protocol/wire"
)

// TLSConfig is the server TLS configuration of the gateway's streams.
type TLSConfig struct {
	conf *tls.Config
	// own: after a TLS 1.3 handshake the stream protects the records
	// itself (tlsrecord.go); conf then logs each handshake's traffic
	// secrets to its connection.
	own bool
}

// NewTLSConfig prepares conf for NewTLSStream. With ownRecords, a
// connection that negotiates TLS 1.3 has its records protected by the
// gateway after crypto/tls's handshake (tlsrecord.go); otherwise, and for
// TLS 1.2, crypto/tls's tls.Conn carries them.
func NewTLSConfig(conf *tls.Config, ownRecords bool) *TLSConfig {
	if !ownRecords {
		return &TLSConfig{conf: conf}
	}
	// The connection's own config, with its KeyLogWriter, is handed out
	// by GetConfigForClient rather than made with Clone before the
	// handshake: crypto/tls takes the session ticket keys from the config
	// the handshake started with (handshake_server.go: originalConfig),
	// so they stay shared by all the streams' connections (and rotated);
	// a clone per connection would issue tickets no other connection can
	// read. (They are base's, not conf's: a ticket from a listener that
	// uses conf itself, HTTPS, is not resumed here, only answered with a
	// full handshake.) conf is not changed.
	base := conf.Clone()
	next := conf.GetConfigForClient
	base.GetConfigForClient = func(hi *tls.ClientHelloInfo) (*tls.Config, error) {
		hc, ok := hi.Conn.(*handshakeConn)
		if !ok {
			return nil, nil
		}
		c := conf
		if next != nil {
			nc, err := next(hi)
			if err != nil {
				return nil, err
			}
			if nc != nil {
				c = nc
			}
		}
		c = c.Clone()
		c.GetConfigForClient = nil
		c.KeyLogWriter = &hc.keys
		return c, nil
	}
	return &TLSConfig{conf: base, own: true}
}

// NewTLSStream runs the server side of the TLS handshake on c within
// timeout (reads and writes alike: a client that stops reading mid-handshake
// is as stuck as one that stops writing) and returns the stream over it. On
// an error the caller closes c.
//
// Call it on a goroutine of its own, not on the connection's reader: the
// handshake (crypto/tls, the X25519MLKEM768 key exchange) needs about 8 KiB
// of stack, and a goroutine's stack, once grown, is only halved by the
// garbage collector while it uses less than a quarter of it, so the
// reader of an idle connection would keep 4 KiB rather than 2.
//
// The stream parks an idle reader on the socket itself rather than inside
// a read of records (see rawWait), so the reader's stack stays at its 2 KiB
// minimum too.
func NewTLSStream(c net.Conn, conf *TLSConfig, maxFrame uint32, timeout time.Duration) (*Stream, error) {
	under := c
	var w *rawWait
	var raw syscall.RawConn
	if tc, ok := c.(*net.TCPConn); ok {
		// Not a connection that came with a PROXY header: its reader may
		// hold bytes read ahead of the socket.
		if r, err := tc.SyscallConn(); err == nil {
			w = &rawWait{Conn: c, raw: r}
			under, raw = w, r
		}
	}
	if raw == nil {
		// A connection that came with a PROXY header: it is read through
		// (it may hold bytes read ahead), but written to directly.
		if sc, ok := c.(interface {
			SyscallConn() (syscall.RawConn, error)
		}); ok {
			raw, _ = sc.SyscallConn()
		}
	}
	var hc *handshakeConn
	if conf.own {
		hc = &handshakeConn{Conn: under}
		under = hc
	}
	tc := tls.Server(under, conf.conf)
	if err := c.SetDeadline(time.Now().Add(timeout)); err != nil {
		return nil, err
	}
	if err := tc.Handshake(); err != nil {
		if hc != nil {
			hc.keys.zero() // a handshake that failed at the client's Finished has logged them
		}
		return nil, err
	}
	if err := c.SetDeadline(time.Time{}); err != nil {
		if hc != nil {
			hc.keys.zero()
		}
		return nil, err
	}
	if hc != nil {
		rc := hc.takeOver(tc.ConnectionState(), c, raw)
		if rc != nil {
			var rd io.Reader = c
			if w != nil {
				rd = w
			}
			rc.rd = rd
			return &Stream{c: rc, rec: rc, r: *wire.NewReader(rc, maxFrame), kind: "tls", wait: w}, nil
		}
	}
	s := &Stream{c: tc, r: *wire.NewReader(tc, maxFrame), kind: "tls", wait: w}
	return s, nil
}

// handshakeConn is the connection under crypto/tls during a handshake
// whose records the gateway may take over. It
//   - hands crypto/tls at most the rest of the current record per Read
//     (it parses the 5-byte record headers), so that crypto/tls, which
//     reads records whole, never holds bytes past the client's Finished:
//     they stay in the socket for our record layer;
//   - keeps a copy of what crypto/tls writes, to count the records it
//     sent under the application key (its session tickets);
//   - receives the traffic secrets (keys, the connection's KeyLogWriter).
//
// After the handshake it passes reads and writes through (a TLS 1.2
// connection keeps it under its tls.Conn).
type handshakeConn struct {
	net.Conn
	keys    keyLog
	hdr     [recordHeaderLen]byte
	hdrN    int
	rem     int    // bytes of the current record's body crypto/tls has not read
	written []byte // what crypto/tls wrote, while capturing
	capture bool
	done    bool
}

// maxCaptured bounds the copy of the handshake's writes (the server's
// flight: certificates, then tickets); beyond it the connection keeps
// crypto/tls's records.
const maxCaptured = 64 << 10

func (h *handshakeConn) Read(b []byte) (int, error) {
	if h.done || len(b) == 0 {
		return h.Conn.Read(b)
	}
	if h.rem == 0 {
		b = b[:min(len(b), recordHeaderLen-h.hdrN)]
		n, err := h.Conn.Read(b)
		copy(h.hdr[h.hdrN:], b[:n])
		h.hdrN += n
		if h.hdrN == recordHeaderLen {
			h.hdrN = 0
			h.rem = int(binary.BigEndian.Uint16(h.hdr[3:]))
		}
		return n, err
	}
	n, err := h.Conn.Read(b[:min(len(b), h.rem)])
	h.rem -= n
	return n, err
}

func (h *handshakeConn) Write(b []byte) (int, error) {
	if !h.done && (h.capture || h.written == nil) {
		if len(h.written)+len(b) > maxCaptured {
			h.capture = false
			h.written = []byte{} // not nil: capturing stopped
		} else {
			h.capture = true
			h.written = append(h.written, b...)
		}
	}
	return h.Conn.Write(b)
}

// takeOver returns the record layer for the connection crypto/tls just
// handshook (state), or nil if it must keep the records: not TLS 1.3,
// a suite we do not know, secrets not logged, crypto/tls holding read
// bytes, or its writes not accounted for. Either way the handshake's
// secrets and copies are forgotten here.
func (h *handshakeConn) takeOver(state tls.ConnectionState, c net.Conn, raw syscall.RawConn) *recordConn {
	defer func() {
		h.done = true
		h.keys.zero()
		h.written = nil
	}()
	suite := suiteByID(state.CipherSuite)
	if state.Version != tls.VersionTLS13 || suite == nil || !h.capture ||
		h.keys.client == nil || h.keys.server == nil || h.hdrN != 0 || h.rem != 0 {
		return nil
	}
	rc := &recordConn{conn: c, raw: raw, suite: suite, sni: state.ServerName}
	if rc.in.keys.setSecret(suite, h.keys.client) != nil || rc.out.keys.setSecret(suite, h.keys.server) != nil {
		rc.in.keys.zero()
		rc.out.keys.zero()
		return nil
	}
	n, ok := countSealed(h.written, suite, &rc.out.keys)
	if !ok {
		rc.in.keys.zero()
		rc.out.keys.zero()
		return nil
	}
	rc.out.seq = n
	return rc
}

// innerType is the content type of a TLSInnerPlaintext (RFC 8446 §5.4):
// its last byte that is not zero padding; 0 if none.
func innerType(inner []byte) byte {
	for i := len(inner) - 1; i >= 0; i-- {
		if inner[i] != 0 {
			return inner[i]
		}
	}
	return 0
}

// countSealed returns how many records at the end of the server's
// handshake writes are protected under the application key: those
// crypto/tls sent (session tickets) before the handshake returned, with
// the sequence numbers 0, 1, 2… Each is verified by opening it under its
// number; the records before them (plaintext, or under the handshake key)
// do not open. False if the writes are not whole records or a record after
// the first one that opens does not.
func countSealed(written []byte, suite *suite13, keys *trafficKeys) (uint64, bool) {
	aead, err := keys.aead(suite)
	if err != nil {
		return 0, false
	}
	h := halfConn{keys: *keys}
	defer h.keys.zero()
	var scratch []byte
	for len(written) > 0 {
		if len(written) < recordHeaderLen {
			return 0, false
		}
		n := int(binary.BigEndian.Uint16(written[3:]))
		if len(written) < recordHeaderLen+n {
			return 0, false
		}
		hdr, body := written[:recordHeaderLen], written[recordHeaderLen:recordHeaderLen+n]
		written = written[recordHeaderLen+n:]
		opened := false
		if hdr[0] == recordApplicationData {
			nonce := h.nonce()
			scratch, err = aead.Open(scratch[:0], nonce[:], body, hdr)
			// A ticket: handshake content (after any zero padding).
			opened = err == nil && innerType(scratch) == recordHandshake
			clear(scratch)
		}
		switch {
		case opened:
			h.seq++
		case h.seq > 0:
			return 0, false
		}
	}
	return h.seq, true
}

// errWouldBlock is what rawWait returns to the record layer (crypto/tls's
// or ours, tlsrecord.go), in probe mode, for a read the socket cannot
// satisfy now. It is a temporary net.Error, so tls.Conn keeps its state
// (and any partial record it holds) and returns it from Read, as
// recordConn does; the stream then waits for the socket and reads again.
var errWouldBlock error = wouldBlock{}

type wouldBlock struct{}

func (wouldBlock) Error() string   { return "tls read would block" }
func (wouldBlock) Timeout() bool   { return true }
func (wouldBlock) Temporary() bool { return true }

// rawWait is the TCP connection under a server tls.Conn or recordConn. In probe mode its
// Read never waits: it reads what the socket holds or fails with
// errWouldBlock. Otherwise it is the connection itself.
//
// Why: an idle connection's reader is parked in a read, and the stack of
// that read stays with the connection for its life. Parked in
// tls.Conn.Read (through record reading, bytes.Buffer.ReadFrom and the
// net.Conn read) it needs more than 2 KiB, and the runtime doubles the
// stack to 4 KiB; parked on the socket directly (waitReadable, as deep as
// a plain TCP read) it fits in 2 KiB.
type rawWait struct {
	net.Conn
	raw syscall.RawConn
	// probe is set by the reader goroutine around its own tls.Conn.Read
	// calls; only that goroutine reads through this connection (writes
	// from the flush goroutine do not look at it).
	probe bool
}

func (w *rawWait) Read(b []byte) (int, error) {
	if !w.probe {
		return w.Conn.Read(b)
	}
	var n int
	var rerr error
	err := w.raw.Read(func(fd uintptr) bool {
		for {
			n, rerr = syscall.Read(int(fd), b)
			if rerr != syscall.EINTR {
				break
			}
		}
		return true // never wait here: waitReadable does
	})
	switch {
	case err != nil:
		return 0, err
	case rerr == syscall.EAGAIN:
		return 0, errWouldBlock
	case rerr != nil:
		return 0, &net.OpError{Op: "read", Net: "tcp", Source: w.LocalAddr(), Addr: w.RemoteAddr(), Err: rerr}
	case n == 0 && len(b) > 0:
		return 0, io.EOF
	}
	return n, nil
}

// waitReadable blocks until the socket has something to read (or its end,
// or an error), consuming nothing, or until the read deadline passes (its
// error: a timeout).
func (w *rawWait) waitReadable() error {
	return w.raw.Read(func(fd uintptr) bool {
		var b [1]byte
		_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		return err != syscall.EAGAIN // data, the end or an error: the read reports it
	})
}

// readFrame is ReadFrame over TLS: the frame is read on a goroutine of
// its own (offStack) once the record layer has its first byte, the reader
// parking on the socket (waitReadable) until then.
//
//go:noinline
func (s *Stream) readFrame() (*[]byte, error) {
	for {
		var raw *[]byte
		err := s.offStack(func() error {
			if err := s.probe(); err != nil {
				return err
			}
			var err error
			raw, err = s.r.ReadRaw()
			return err
		})
		if !errors.Is(err, errWouldBlock) {
			return raw, err
		}
		if err := s.wait.waitReadable(); err != nil {
			return nil, err
		}
	}
}

// await is Wait over TLS: it blocks until the next frame's first byte has
// been read ahead (wire.Reader.Wait), parking on the socket while the
// record layer has nothing buffered to give. It returns what Wait returns.
//
//go:noinline
func (s *Stream) await() error {
	for {
		err := s.offStack(s.probe)
		if !errors.Is(err, errWouldBlock) {
			return err
		}
		if err := s.wait.waitReadable(); err != nil {
			return err
		}
	}
}

// probe reads the next frame's first byte ahead without waiting for the
// socket: errWouldBlock if the record layer has no whole record and the
// socket has nothing more.
func (s *Stream) probe() error {
	s.wait.probe = true
	err := s.r.Wait()
	s.wait.probe = false
	return err
}

// offStack runs f, a read through the record layer, on a goroutine of its own and
// waits for it. Record decryption needs more stack than a goroutine starts
// with; run on the reader, it would double the reader's stack for the
// connection's whole life (an idle reader's stack is not shrunk back). A
// goroutine per record read is the price: reads are the client's
// requests, far fewer than the events written to it.
func (s *Stream) offStack(f func() error) error {
	done := make(chan error, 1)
	go func() { done <- f() }()
	return <-done
}
