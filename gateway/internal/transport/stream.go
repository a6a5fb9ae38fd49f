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
// (TryWriter). Only plain TCP supports it: TLS records and WebSocket
// messages cannot be cut where the socket's buffer happens to end.
func (s *Stream) TryWrite(buf []byte) (int, error) {
	if s.raw == nil {
		return 0, ErrNoTryWrite
	}
	var n int
	var werr error
	err := s.raw.Write(func(fd uintptr) bool {
		for {
			n, werr = syscall.Write(int(fd), buf)
			if werr != syscall.EINTR {
				break
			}
		}
		return true // never wait for the socket: the caller queues the rest
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

// Write sends buf in one write: the frames are already length-prefixed.
func (s *Stream) Write(buf []byte) error {
	_, err := s.c.Write(buf)
	return err
}

func (s *Stream) SetReadDeadline(t time.Time) error  { return s.c.SetReadDeadline(t) }
func (s *Stream) SetWriteDeadline(t time.Time) error { return s.c.SetWriteDeadline(t) }
func (s *Stream) Close() error                       { return lingerClose(s.c) }
func (s *Stream) RemoteAddr() net.Addr               { return s.c.RemoteAddr() }
func (s *Stream) LocalAddr() net.Addr                { return s.c.LocalAddr() }
func (s *Stream) Kind() string                       { return s.kind }

// Host is the TLS server name the client sent (SNI); "" on plain TCP.
func (s *Stream) Host() string {
	if tc, ok := s.c.(*tls.Conn); ok {
		return tc.ConnectionState().ServerName
	}
	return ""
}

var (
	_ Transport = (*Stream)(nil)
	_ TryWriter = (*Stream)(nil)
)
