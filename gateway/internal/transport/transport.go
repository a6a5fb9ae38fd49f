// Package transport adapts the byte streams a gateway accepts (TCP, TLS,
// WebSocket) to one frame-oriented interface, so the connection logic in
// internal/conn is written once for all of them.
package transport

import (
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/parleychat/parley/protocol/wire"
)

// Transport is one client connection as the gateway sees it. ReadFrame is
// called only by the connection's reader goroutine and Write only by its
// (single, on-demand) flush goroutine (or TryWrite, see TryWriter, while no
// flush runs); the deadline setters and Close may be
// called from any goroutine.
type Transport interface {
	// ReadFrame blocks for the next frame and returns its protobuf encoding
	// (no length prefix) in a buffer from libs/wire's pool; the caller
	// releases it with wire.PutRaw. Errors wrapping wire.ErrBadFrame or
	// wire.ErrEmptyFrame leave the stream usable; any other error ends it.
	ReadFrame() (*[]byte, error)
	// Wait blocks until the next frame begins to arrive, without consuming
	// anything the next ReadFrame returns; it returns the read's error if
	// the stream ends (io.EOF, a reset, a WebSocket close) or the read
	// deadline passes first. The reader goroutine calls it while a frame is
	// handled, to learn that the client has gone. Like ReadFrame it leaves
	// the stream usable only after a timeout, and only on a stream (a
	// WebSocket read that times out is permanently broken).
	Wait() error
	// SetReadLimit sets the largest frame ReadFrame accepts from now on
	// (a larger one is wire.ErrFrameTooLarge). Called only while ReadFrame
	// is not running: by the reader goroutine between reads, or by the
	// goroutine handling a frame (the reader is then in Wait or waiting
	// for it).
	SetReadLimit(max uint32)
	// Write sends buf, one or more frames each with its 4-byte big-endian
	// length prefix (the stream form, docs/protocol.md §2), after what a
	// TryWrite left unsent (TryWriter). A message-based transport sends
	// one message per frame, without the prefix.
	Write(buf []byte) error
	SetReadDeadline(t time.Time) error
	SetWriteDeadline(t time.Time) error
	// Close ends the connection. It is called once, by the reader goroutine,
	// after the last write; it lets the peer read what was written last (see
	// lingerClose).
	Close() error
	RemoteAddr() net.Addr
	// LocalAddr is the gateway's address the client connected to.
	LocalAddr() net.Addr
	// Host is the host the client named when it connected, if the
	// transport carries one: the TLS server name (SNI, once the handshake
	// is done: after the first frame was read) or the WebSocket upgrade's
	// Host header (with its port, if any). "" otherwise. Unvalidated
	// client input.
	Host() string
	// Kind names the transport for metrics and logs: "tcp", "tls" or "ws".
	Kind() string
}

// TryWriter is implemented by transports that can write without waiting.
// The gateway uses it to send an event straight from the goroutine that
// fans it out when the connection has nothing queued, saving the flush
// goroutine's start and wake-up per event (most of an event's cost beside
// the kernel's).
type TryWriter interface {
	// TryWrite sends buf (length-prefixed frames, as Write takes them) as
	// far as the socket takes it at once, and reports whether all of it
	// went. If not, the transport keeps the rest (in its own framing: a
	// message or record may be cut anywhere) and the next Write sends it
	// before its own bytes; Write(nil) sends only that. It returns
	// ErrNoTryWrite, having written nothing, if the connection cannot
	// write without waiting now. It must not run concurrently with
	// Write, nor while a kept rest is unsent.
	TryWrite(buf []byte) (sent bool, err error)
}

// ErrNoTryWrite: the connection does not support TryWrite.
var ErrNoTryWrite = errors.New("transport cannot write without waiting")

// ErrTextMessage is returned for a WebSocket text message: Parley frames
// travel only in binary messages (docs/protocol.md §3). The message has been
// consumed; the connection stays usable.
var ErrTextMessage = fmt.Errorf("websocket text message: %w", wire.ErrBadFrame)

// IsTimeout reports whether err is a deadline expiring.
func IsTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// lingerTimeout bounds how long a closing connection waits for the peer to
// read the last frame and close its side.
const lingerTimeout = time.Second

// lingerMax bounds how many unread bytes a closing connection discards.
const lingerMax = 256 << 10

// lingerClose closes c so that the peer can still read what was written
// last: closing a TCP socket that has unread input makes the kernel send RST,
// and the peer may then lose the final Error frame before reading it. So we
// half-close, discard what the peer still sends (bounded in time and bytes),
// then close.
func lingerClose(c net.Conn) error {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	_ = c.SetReadDeadline(time.Now().Add(lingerTimeout))
	var scratch [512]byte
	for n := 0; n < lingerMax; {
		k, err := c.Read(scratch[:])
		n += k
		if err != nil {
			break
		}
	}
	return c.Close()
}
