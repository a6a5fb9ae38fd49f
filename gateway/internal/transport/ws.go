package transport

import (
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/parleychat/parley/protocol/wire"
)

// WebSocket is a WebSocket connection after the upgrade (RFC 6455): each
// binary message is one frame's protobuf encoding without the length
// prefix (docs/protocol.md §3).
//
// It reads and writes the RFC 6455 framing itself, on the raw connection
// the HTTP server handed over, and like a Stream it holds no buffer while
// idle: the reader parks reading a frame header's first byte into an array
// inside the struct, a message's payload goes into a pooled buffer only
// while it arrives, and writes frame into a pooled buffer for the duration
// of the write. (A websocket library kept its read buffer, and the HTTP
// server's request context and 4 KiB reader while its handler ran, for the
// connection's whole life: about 14 KiB per idle connection.)
//
// Extensions are never negotiated (the upgrade answers none), so every
// frame has RSV1-3 clear and payloads are not compressed.
type WebSocket struct {
	c      net.Conn
	raw    syscall.RawConn // plain TCP only: for TryWrite
	max    uint32
	host   string   // the upgrade request's Host header
	remote net.Addr // the client's address
	scheme string   // http or https as a trusted proxy said; "" if none did

	// Reader state, used by the reader goroutine only.
	pre    []byte   // bytes the HTTP server read past the upgrade request; read first
	hdr    [14]byte // the frame header being read (2-14 bytes, RFC 6455 §5.2)
	waited bool     // hdr[0] was read ahead by Wait
	fin    bool     // the frame header's fields: FIN,
	op     byte     // opcode,
	plen   uint64   // payload length
	mask   [4]byte  // and masking key
	err    error    // a permanent read error: every later read returns it

	// closeCode is the status the closing handshake sends (0: none, send
	// an empty close frame; set by the reader before Close).
	closeCode atomic.Uint32

	// wmu serialises writes to the socket: data (Write, TryWrite) and the
	// reader's pongs and the final close frame. It guards tail.
	wmu sync.Mutex
	// tail is framed bytes a TryWrite could not send at once (from
	// tail.off on); the next write sends them before anything else.
	tail *wsBuf
	// deadline is the write deadline last set with SetWriteDeadline (Unix
	// nanoseconds; 0: none), restored after a pong's own.
	deadline atomic.Int64
}

// Upgrade is what the gateway knows of a WebSocket's upgrade request.
type Upgrade struct {
	Host string // the Host header
	// Remote is the client's address, the one a trusted proxy forwarded
	// it from (X-Forwarded-For); nil: the socket's peer.
	Remote net.Addr
	// Scheme is "http" or "https" as a trusted proxy reports the client
	// used (X-Forwarded-Proto); "": the listener's own.
	Scheme string
	// Buffered is what the HTTP server had already read of the connection
	// past the upgrade request (the client's first frames, if it did not
	// wait for the 101); it is read before the socket.
	Buffered []byte
}

// NewWebSocket wraps c, the connection the upgrade's 101 answer was
// written to, with a frame size limit.
func NewWebSocket(c net.Conn, maxFrame uint32, u Upgrade) *WebSocket {
	if maxFrame == 0 {
		maxFrame = wire.DefaultMaxFrameSize
	}
	if u.Remote == nil {
		u.Remote = c.RemoteAddr()
	}
	w := &WebSocket{c: c, max: maxFrame, host: u.Host, remote: u.Remote, scheme: u.Scheme}
	if len(u.Buffered) > 0 {
		w.pre = u.Buffered
	}
	if _, isTLS := c.(*tls.Conn); !isTLS {
		if sc, ok := c.(interface {
			SyscallConn() (syscall.RawConn, error)
		}); ok {
			w.raw, _ = sc.SyscallConn()
		}
	}
	return w
}

// WebSocket opcodes (RFC 6455 §5.2, §11.8).
const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xA
)

// Close status codes the gateway sends (RFC 6455 §7.4.1).
const (
	CloseNormal        = 1000
	CloseProtocolError = 1002
	CloseInvalidData   = 1007
	CloseTooBig        = 1009
	closeNoStatus      = 1005 // received as "no code": answered with an empty close
)

// Errors of the read side.
var (
	// ErrProtocol: the client broke RFC 6455 (an unmasked frame, reserved
	// bits or opcodes, a fragmented or oversized control frame, a
	// continuation out of place). The connection ends with close 1002.
	ErrProtocol = errors.New("websocket protocol error")
	// errClosed: the client sent a close frame; the connection ends and
	// the close is answered (RFC 6455 §5.5.1).
	errClosed = fmt.Errorf("websocket closed by the client: %w", io.EOF)
)

// ReadFrame reads the next binary message, answering the control frames
// before it (ping with pong; a close ends the connection). A text message
// is consumed and reported as ErrTextMessage; a message above the limit is
// ErrFrameTooLarge (its rest is never read: the connection must end, with
// close 1009).
//
// Stack budget: an idle connection parks here, in readHeader's read of a
// header's first byte, so this frame is on the stack of every connection
// (see Stream and wire.Reader.ReadRaw); the rest is in helpers.
func (w *WebSocket) ReadFrame() (*[]byte, error) {
	for {
		if err := w.readHeader(); err != nil {
			return nil, err
		}
		if w.op < opClose {
			return w.readMessage()
		}
		if err := w.control(); err != nil {
			return nil, err
		}
	}
}

// Wait blocks until a data frame begins to arrive, without consuming it;
// control frames before it are handled (a close, or a protocol error, is
// returned and is also what every later read returns). A timeout leaves
// the connection usable if it came before a frame's first byte.
func (w *WebSocket) Wait() error {
	for !w.waited {
		if w.err != nil {
			return w.err
		}
		n, err := w.read(w.hdr[:1])
		if n == 0 {
			return err
		}
		w.waited = true
		if w.hdr[0]&0x0f < opClose {
			return nil
		}
		// A control frame: handle it now, and wait on.
		if err := w.readHeader(); err != nil {
			return err
		}
		if err := w.control(); err != nil {
			return err
		}
	}
	return nil
}

// read reads from what the HTTP server had buffered, then the socket.
func (w *WebSocket) read(p []byte) (int, error) {
	if len(w.pre) > 0 {
		return w.readPre(p)
	}
	return w.c.Read(p)
}

//go:noinline
func (w *WebSocket) readPre(p []byte) (int, error) {
	n := copy(p, w.pre)
	w.pre = w.pre[n:]
	if len(w.pre) == 0 {
		w.pre = nil
	}
	return n, nil
}

// readFull reads exactly len(p) bytes; the stream ending before the first
// is io.EOF, after it io.ErrUnexpectedEOF.
func (w *WebSocket) readFull(p []byte) error {
	for n := 0; n < len(p); {
		k, err := w.read(p[n:])
		n += k
		if err != nil && n < len(p) {
			if err == io.EOF && n > 0 {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
	}
	return nil
}

// readHeader reads a frame header (RFC 6455 §5.2) into w.fin, w.op,
// w.plen and w.mask, checking what the section requires of a client's
// frame: masked, no reserved bits (no extension was negotiated), a known
// opcode, a control frame unfragmented and at most 125 bytes, a 64-bit
// length with its top bit clear.
func (w *WebSocket) readHeader() error {
	if w.err != nil {
		return w.err
	}
	if !w.waited {
		if err := w.readFull(w.hdr[:1]); err != nil {
			return w.failRead(err, false)
		}
	}
	w.waited = false
	if err := w.readFull(w.hdr[1:2]); err != nil {
		return w.failRead(err, true)
	}
	return w.parseHeader()
}

//go:noinline
func (w *WebSocket) parseHeader() error {
	b0, b1 := w.hdr[0], w.hdr[1]
	w.fin, w.op = b0&0x80 != 0, b0&0x0f
	ext := 0
	switch n := b1 & 0x7f; n {
	case 126:
		ext = 2
	case 127:
		ext = 8
	default:
		w.plen = uint64(n)
	}
	if b1&0x80 == 0 {
		// §5.1: a server MUST close on an unmasked client frame.
		return w.fail(CloseProtocolError, "unmasked client frame")
	}
	if err := w.readFull(w.hdr[2 : 2+ext+4]); err != nil {
		return w.failRead(err, true)
	}
	switch ext {
	case 2:
		w.plen = uint64(binary.BigEndian.Uint16(w.hdr[2:]))
	case 8:
		w.plen = binary.BigEndian.Uint64(w.hdr[2:])
	}
	copy(w.mask[:], w.hdr[2+ext:])
	switch {
	case b0&0x70 != 0:
		return w.fail(CloseProtocolError, "reserved bits set")
	case w.op > opBinary && w.op < opClose, w.op > opPong:
		return w.fail(CloseProtocolError, fmt.Sprintf("reserved opcode %#x", w.op))
	case w.op >= opClose && (!w.fin || w.plen > 125):
		// §5.5: control frames are not fragmented and carry at most 125 bytes.
		return w.fail(CloseProtocolError, "fragmented or oversized control frame")
	case w.plen>>63 != 0:
		return w.fail(CloseProtocolError, "payload length with its top bit set")
	}
	return nil
}

// failRead makes a read error permanent where it must be: a timeout before
// a frame's first byte leaves the connection usable, anything else (and
// any error inside a frame: the frame boundary is lost) does not.
//
//go:noinline
func (w *WebSocket) failRead(err error, inFrame bool) error {
	if inFrame && err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	if !inFrame && IsTimeout(err) {
		return err
	}
	w.err = err
	return err
}

// fail ends the read side for a protocol violation: the close frame will
// carry code.
//
//go:noinline
func (w *WebSocket) fail(code uint32, why string) error {
	w.closeCode.Store(code)
	w.err = fmt.Errorf("%s: %w", why, ErrProtocol)
	return w.err
}

// readMessage reads the data message whose first frame's header was just
// read: its frames' payloads (§5.4: a first frame, continuations, control
// frames between them) into one pooled buffer, unmasked. The buffer grows
// with what arrives, not with what a header announces: a client that
// announces 1 MiB and sends one byte costs one pooled buffer.
//
//go:noinline
func (w *WebSocket) readMessage() (*[]byte, error) {
	if w.op == opContinuation {
		return nil, w.fail(CloseProtocolError, "continuation frame without a message")
	}
	text := w.op == opText
	b := wire.GetRaw()
	buf := (*b)[:0]
	for {
		if uint64(len(buf))+w.plen > uint64(w.max) {
			*b = buf
			wire.PutRaw(b)
			w.closeCode.Store(CloseTooBig)
			w.err = fmt.Errorf("websocket message above %d bytes: %w", w.max, wire.ErrFrameTooLarge)
			return nil, w.err
		}
		var err error
		if buf, err = w.readPayload(buf); err != nil {
			*b = buf
			wire.PutRaw(b)
			return nil, w.failRead(err, true)
		}
		if w.fin {
			break
		}
		// The next frame of this message; control frames may come first.
		for {
			if err := w.readHeader(); err != nil {
				*b = buf
				wire.PutRaw(b)
				return nil, w.failRead(err, true)
			}
			if w.op < opClose {
				break
			}
			if err := w.control(); err != nil {
				*b = buf
				wire.PutRaw(b)
				return nil, err
			}
		}
		if w.op != opContinuation {
			*b = buf
			wire.PutRaw(b)
			return nil, w.fail(CloseProtocolError, "new message inside a fragmented one")
		}
	}
	*b = buf
	if text {
		// Consumed whole: the connection stays in step.
		wire.PutRaw(b)
		return nil, ErrTextMessage
	}
	if len(buf) == 0 {
		wire.PutRaw(b)
		return nil, wire.ErrEmptyFrame
	}
	return b, nil
}

// readPayload appends the current frame's payload to buf, unmasked (§5.3).
func (w *WebSocket) readPayload(buf []byte) ([]byte, error) {
	start := len(buf)
	end := start + int(w.plen)
	for len(buf) < end {
		if len(buf) == cap(buf) {
			grown := make([]byte, len(buf), min(end, max(2*cap(buf), 4096)))
			copy(grown, buf)
			buf = grown
		}
		k, err := w.read(buf[len(buf):min(cap(buf), end)])
		buf = buf[:len(buf)+k]
		if err != nil && len(buf) < end {
			return buf, err
		}
	}
	unmask(buf[start:], w.mask)
	return buf, nil
}

// unmask XORs p with the masking key, the key's byte i%4 at offset i
// (RFC 6455 §5.3).
func unmask(p []byte, key [4]byte) {
	k32 := binary.LittleEndian.Uint32(key[:])
	k64 := uint64(k32) | uint64(k32)<<32
	for len(p) >= 8 {
		binary.LittleEndian.PutUint64(p, binary.LittleEndian.Uint64(p)^k64)
		p = p[8:]
	}
	for i := range p {
		p[i] ^= key[i&3]
	}
}

// control handles the control frame whose header was just read: a ping is
// answered with a pong carrying its payload (§5.5.2), a pong is ignored,
// a close ends the read side (§5.5.1; Close answers it, echoing its
// status).
//
//go:noinline
func (w *WebSocket) control() error {
	b := wire.GetRaw()
	defer wire.PutRaw(b)
	p, err := w.readPayload((*b)[:0])
	*b = p
	if err != nil {
		return w.failRead(err, true)
	}
	switch w.op {
	case opPing:
		return w.pong(p)
	case opClose:
		return w.closed(p)
	}
	return nil
}

// closed records the client's close frame (§5.5.1, §7.4): its status is
// echoed; a malformed one (one byte, a code no endpoint may send, a reason
// that is not UTF-8) is a protocol error.
func (w *WebSocket) closed(p []byte) error {
	if len(p) == 0 {
		w.closeCode.Store(closeNoStatus)
		w.err = errClosed
		return w.err
	}
	if len(p) == 1 {
		return w.fail(CloseProtocolError, "close frame with a one-byte payload")
	}
	code := uint32(binary.BigEndian.Uint16(p))
	if !validCloseCode(code) {
		return w.fail(CloseProtocolError, fmt.Sprintf("close code %d", code))
	}
	if !utf8.Valid(p[2:]) {
		return w.fail(CloseInvalidData, "close reason not UTF-8")
	}
	w.closeCode.Store(code)
	w.err = errClosed
	return w.err
}

// validCloseCode reports whether a peer may send code (RFC 6455 §7.4.1,
// §7.4.2 and the IANA registry of §11.7).
func validCloseCode(code uint32) bool {
	switch {
	case code >= 3000 && code <= 4999:
		return true
	case code >= 1000 && code <= 1014:
		return code != 1004 && code != 1005 && code != 1006
	}
	return false
}

// pongTimeout bounds the write of a pong.
const pongTimeout = 10 * time.Second

// pong answers a ping. It is written by the reader goroutine, after
// whatever a TryWrite left, under its own deadline; the data writes'
// deadline is restored after it.
func (w *WebSocket) pong(p []byte) error {
	w.wmu.Lock()
	defer w.wmu.Unlock()
	bp := getWSBuf()
	defer putWSBuf(bp)
	out := w.takeTailLocked(bp.b[:0])
	out = appendHeader(out, 0x80|opPong, len(p))
	out = append(out, p...)
	bp.b = out
	_ = w.c.SetWriteDeadline(time.Now().Add(pongTimeout))
	_, err := w.c.Write(out)
	w.restoreDeadline()
	if err != nil {
		w.err = err
	}
	return err
}

func (w *WebSocket) restoreDeadline() {
	var t time.Time
	if ns := w.deadline.Load(); ns != 0 {
		t = time.Unix(0, ns)
	}
	_ = w.c.SetWriteDeadline(t)
}

// SetReadLimit changes the message size limit for the next messages.
func (w *WebSocket) SetReadLimit(max uint32) {
	if max == 0 {
		max = wire.DefaultMaxFrameSize
	}
	w.max = max
}

// appendHeader appends a server frame's header (RFC 6455 §5.2): FIN and
// opcode in b0, the payload length in 7, 16 or 64 bits; a server's frames
// are not masked.
func appendHeader(out []byte, b0 byte, n int) []byte {
	switch {
	case n <= 125:
		return append(out, b0, byte(n))
	case n <= 0xffff:
		return binary.BigEndian.AppendUint16(append(out, b0, 126), uint16(n))
	default:
		return binary.BigEndian.AppendUint64(append(out, b0, 127), uint64(n))
	}
}

// appendFrames appends each length-prefixed frame of buf as one binary
// message.
func appendFrames(out, buf []byte) ([]byte, error) {
	for len(buf) >= wire.HeaderSize {
		n := int(binary.BigEndian.Uint32(buf))
		buf = buf[wire.HeaderSize:]
		if n > len(buf) {
			return out, io.ErrShortBuffer
		}
		out = appendHeader(out, 0x80|opBinary, n)
		out = append(out, buf[:n]...)
		buf = buf[n:]
	}
	return out, nil
}

// takeTailLocked appends what a TryWrite left unsent to out and forgets it
// (wmu held).
func (w *WebSocket) takeTailLocked(out []byte) []byte {
	if t := w.tail; t != nil {
		out = append(out, t.b[t.off:]...)
		w.tail = nil
		putWSBuf(t)
	}
	return out
}

// Write sends each length-prefixed frame of buf as one binary message,
// after what a TryWrite left unsent, all framed into one buffer and
// written with one write: a batch of room events costs one system call as
// on a TCP connection. Write(nil) sends only what a TryWrite left.
func (w *WebSocket) Write(buf []byte) error {
	w.wmu.Lock()
	defer w.wmu.Unlock()
	bp := getWSBuf()
	out := w.takeTailLocked(bp.b[:0])
	out, err := appendFrames(out, buf)
	bp.b = out
	if err == nil && len(out) > 0 {
		_, err = w.c.Write(out)
	}
	putWSBuf(bp)
	return err
}

// TryWrite frames buf as Write does and writes as much as the socket takes
// now, without waiting (TryWriter); what it does not take is kept, and the
// next write (Write(nil) at the least) sends it first. Only plain TCP
// supports it: TLS records cannot be cut where the socket's buffer
// happens to end. It also declines while the reader writes a pong.
func (w *WebSocket) TryWrite(buf []byte) (bool, error) {
	if w.raw == nil || !w.wmu.TryLock() {
		return false, ErrNoTryWrite
	}
	defer w.wmu.Unlock()
	if w.tail != nil {
		return false, ErrNoTryWrite
	}
	bp := getWSBuf()
	out, err := appendFrames(bp.b[:0], buf)
	bp.b = out
	if err != nil {
		putWSBuf(bp)
		return false, err
	}
	n, err := rawWrite(w.raw, out)
	if err != nil || n == len(out) {
		putWSBuf(bp)
		return err == nil, err
	}
	bp.off = n
	w.tail = bp
	return false, nil
}

// rawWrite writes b to the socket once, without waiting for room: the
// length written (possibly 0 when the socket's buffer is full).
func rawWrite(raw syscall.RawConn, b []byte) (int, error) {
	var n int
	var werr error
	err := raw.Write(func(fd uintptr) bool {
		for {
			n, werr = syscall.Write(int(fd), b)
			if werr != syscall.EINTR {
				break
			}
		}
		return true // never wait for the socket: the caller keeps the rest
	})
	if n < 0 {
		n = 0
	}
	if werr == syscall.EAGAIN {
		werr = nil
	}
	if err == nil {
		err = werr
	}
	return n, err
}

// wsBuf is a framing buffer; off is where its unsent bytes begin when it
// is kept as a TryWrite's tail.
type wsBuf struct {
	b   []byte
	off int
}

// wsBufPool holds the framing buffers; one grown past wsBufPoolMax (a large
// batch) is left to the collector rather than kept.
var wsBufPool = sync.Pool{New: func() any { return &wsBuf{b: make([]byte, 0, 4096)} }}

const wsBufPoolMax = 64 << 10

func getWSBuf() *wsBuf { return wsBufPool.Get().(*wsBuf) }

func putWSBuf(b *wsBuf) {
	if cap(b.b) > wsBufPoolMax {
		return
	}
	b.b, b.off = b.b[:0], 0
	wsBufPool.Put(b)
}

func (w *WebSocket) SetReadDeadline(t time.Time) error { return w.c.SetReadDeadline(t) }

// SetWriteDeadline sets the deadline on the socket, which bounds Write
// (and interrupts one already blocked).
func (w *WebSocket) SetWriteDeadline(t time.Time) error {
	var ns int64
	if !t.IsZero() {
		ns = t.UnixNano()
	}
	w.deadline.Store(ns)
	return w.c.SetWriteDeadline(t)
}

// Close sends the close frame (best effort, after anything still unsent):
// the client's own status echoed if it closed, 1002 (1007) after a
// protocol violation, 1009 after a message above the limit, else 1000.
// Then it closes the socket the same lingering way as a stream, which
// also waits (at most a second) for the client's answering close.
func (w *WebSocket) Close() error {
	w.wmu.Lock()
	code := w.closeCode.Load()
	if code == 0 {
		code = CloseNormal
	}
	bp := getWSBuf()
	out := w.takeTailLocked(bp.b[:0])
	if code == closeNoStatus {
		out = appendHeader(out, 0x80|opClose, 0)
	} else {
		out = appendHeader(out, 0x80|opClose, 2)
		out = binary.BigEndian.AppendUint16(out, uint16(code))
	}
	bp.b = out
	_ = w.c.SetWriteDeadline(time.Now().Add(lingerTimeout))
	_, _ = w.c.Write(out)
	putWSBuf(bp)
	w.wmu.Unlock()
	return lingerClose(w.c)
}

// CloseCode is the status Close sends (for tests and logs).
func (w *WebSocket) CloseCode() uint32 { return w.closeCode.Load() }

func (w *WebSocket) RemoteAddr() net.Addr { return w.remote }
func (w *WebSocket) LocalAddr() net.Addr  { return w.c.LocalAddr() }
func (w *WebSocket) Host() string         { return w.host }
func (w *WebSocket) Kind() string         { return "ws" }

// Scheme is "http" or "https" as a trusted proxy reported the client
// reached it, "" if none did.
func (w *WebSocket) Scheme() string { return w.scheme }

var (
	_ Transport = (*WebSocket)(nil)
	_ TryWriter = (*WebSocket)(nil)
)
