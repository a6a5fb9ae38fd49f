package transport

import (
	"net"
	"time"

	"github.com/parleychat/parley/libs/wire"
)

// Stream is a TCP or TLS connection carrying length-prefixed frames
// (docs/protocol.md §2). It holds no buffer while idle: the length prefix is
// read into a 4-byte array inside wire.Reader and the body into a pooled
// buffer, and writes go straight to the socket.
type Stream struct {
	c    net.Conn
	r    wire.Reader
	kind string
}

// NewStream wraps c ("tcp" or "tls" for kind) with a frame size limit.
func NewStream(c net.Conn, maxFrame uint32, kind string) *Stream {
	return &Stream{c: c, r: *wire.NewReader(c, maxFrame), kind: kind}
}

func (s *Stream) ReadFrame() (*[]byte, error) { return s.r.ReadRaw() }

// Write sends buf in one write: the frames are already length-prefixed.
func (s *Stream) Write(buf []byte) error {
	_, err := s.c.Write(buf)
	return err
}

func (s *Stream) SetReadDeadline(t time.Time) error  { return s.c.SetReadDeadline(t) }
func (s *Stream) SetWriteDeadline(t time.Time) error { return s.c.SetWriteDeadline(t) }
func (s *Stream) Close() error                       { return lingerClose(s.c) }
func (s *Stream) RemoteAddr() net.Addr               { return s.c.RemoteAddr() }
func (s *Stream) Kind() string                       { return s.kind }

var _ Transport = (*Stream)(nil)
