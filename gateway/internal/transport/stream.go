package transport

import (
	"crypto/tls"
	"net"
	"syscall"
	"time"

	"github.com/parleychat/parley/protocol/wire"
)

// Stream is a TCP or TLS connection carrying length-prefixed frames
// (docs/protocol.md §2). It holds no buffer while idle: the length prefix is
// read into a 4-byte array inside wire.Reader and the body into a pooled
// buffer, and writes go straight to the socket.
type Stream struct {
	c    net.Conn
	raw  syscall.RawConn // plain TCP only: for TryWrite
	r    wire.Reader
	kind string
	wait *rawWait // TLS over a plain TCP socket: where an idle reader parks (tls.go)
	// rec is c when the gateway protects the TLS records itself
	// (tlsrecord.go); it keeps its own TryWrite tail (ciphertext).
	rec *recordConn
	// tail is what a TryWrite left unsent; the next Write sends it first.
	// Used by TryWrite and Write only, which never run concurrently.
	tail *[]byte
}

// NewStream wraps c ("tcp" or "tls" for kind) with a frame size limit.
func NewStream(c net.Conn, maxFrame uint32, kind string) *Stream {
	s := &Stream{c: c, r: *wire.NewReader(c, maxFrame), kind: kind}
	// A plain TCP connection, or one that came with a PROXY header
	// (clientaddr.Stream); not TLS.
	if tc, ok := c.(interface {
		SyscallConn() (syscall.RawConn, error)
	}); ok {
		s.raw, _ = tc.SyscallConn()
	}
	return s
}

// TryWrite writes as much of buf as the socket takes now, without waiting
// (TryWriter), and keeps the rest for the next Write. Plain TCP supports
// it, and TLS when the gateway protects the records itself (it keeps the
// rest of the ciphertext); crypto/tls's records cannot be cut where the
// socket's buffer happens to end.
func (s *Stream) TryWrite(buf []byte) (bool, error) {
	if s.rec != nil {
		return s.rec.tryWrite(buf)
	}
	if s.raw == nil || s.tail != nil {
		return false, ErrNoTryWrite
	}
	n, err := rawWrite(s.raw, buf)
	if err != nil || n == len(buf) {
		return err == nil, err
	}
	t := wire.GetRaw()
	*t = append((*t)[:0], buf[n:]...)
	s.tail = t
	return false, nil
}

func (s *Stream) ReadFrame() (*[]byte, error) {
	if s.wait != nil {
		return s.readFrame()
	}
	return s.r.ReadRaw()
}

// Wait reads the next frame's first byte ahead (wire.Reader.Wait).
func (s *Stream) Wait() error {
	if s.wait != nil {
		return s.await()
	}
	return s.r.Wait()
}

func (s *Stream) SetReadLimit(max uint32) { s.r.SetMax(max) }

// Write sends buf in one write (the frames are already length-prefixed),
// after what a TryWrite left: the two in one writev.
func (s *Stream) Write(buf []byte) error {
	if s.rec != nil {
		_, err := s.rec.Write(buf)
		return err
	}
	if t := s.tail; t != nil {
		s.tail = nil
		var err error
		if len(buf) == 0 {
			_, err = s.c.Write(*t)
		} else {
			bufs := net.Buffers{*t, buf}
			_, err = bufs.WriteTo(s.c)
		}
		wire.PutRaw(t)
		return err
	}
	if len(buf) == 0 {
		return nil
	}
	_, err := s.c.Write(buf)
	return err
}

func (s *Stream) SetReadDeadline(t time.Time) error  { return s.c.SetReadDeadline(t) }
func (s *Stream) SetWriteDeadline(t time.Time) error { return s.c.SetWriteDeadline(t) }
func (s *Stream) Close() error                       { return lingerClose(s.c) }
func (s *Stream) RemoteAddr() net.Addr               { return s.c.RemoteAddr() }
func (s *Stream) LocalAddr() net.Addr                { return s.c.LocalAddr() }
func (s *Stream) Kind() string                       { return s.kind }

// OwnRecords reports whether the gateway protects this TLS connection's
// records itself (tlsrecord.go) rather than crypto/tls.
func (s *Stream) OwnRecords() bool { return s.rec != nil }

// Host is the TLS server name the client sent (SNI); "" on plain TCP.
func (s *Stream) Host() string {
	if s.rec != nil {
		return s.rec.sni
	}
	if tc, ok := s.c.(*tls.Conn); ok {
		return tc.ConnectionState().ServerName
	}
	return ""
}

var (
	_ Transport = (*Stream)(nil)
	_ TryWriter = (*Stream)(nil)
)
