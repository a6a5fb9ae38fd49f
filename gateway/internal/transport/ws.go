package transport

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/fasthttp/websocket"

	"github.com/parleychat/parley/protocol/wire"
)

// WebSocket is a WebSocket connection: each binary message is one frame's
// protobuf encoding without the length prefix (docs/protocol.md §3).
type WebSocket struct {
	c      *websocket.Conn
	max    uint32
	host   string   // the upgrade request's Host header
	remote net.Addr // the client's address
	scheme string   // http or https as a trusted proxy said; "" if none did

	// The next message, when Wait has begun it: its type and reader
	// (nil: none waiting). Used by the reader goroutine only.
	nextType int
	next     io.Reader
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
}

// NewWebSocket wraps an upgraded connection with a frame size limit.
func NewWebSocket(c *websocket.Conn, maxFrame uint32, u Upgrade) *WebSocket {
	if maxFrame == 0 {
		maxFrame = wire.DefaultMaxFrameSize
	}
	if u.Remote == nil {
		u.Remote = c.RemoteAddr()
	}
	return &WebSocket{c: c, max: maxFrame, host: u.Host, remote: u.Remote, scheme: u.Scheme}
}

// ReadFrame reads the next message. A text message is discarded and reported
// as ErrTextMessage; a message above the limit is ErrFrameTooLarge (the rest
// of it is never read, the connection must end).
func (w *WebSocket) ReadFrame() (*[]byte, error) {
	typ, r, err := w.nextMessage()
	if err != nil {
		return nil, err
	}
	if typ != websocket.BinaryMessage {
		// NextReader skips the unread rest of this message on the next call.
		return nil, ErrTextMessage
	}
	b := wire.GetRaw()
	buf := (*b)[:0]
	for {
		if len(buf) == cap(buf) {
			if uint32(len(buf)) > w.max {
				wire.PutRaw(b)
				return nil, fmt.Errorf("websocket message above %d bytes: %w", w.max, wire.ErrFrameTooLarge)
			}
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if uint32(len(buf)) > w.max {
			*b = buf
			wire.PutRaw(b)
			return nil, fmt.Errorf("websocket message above %d bytes: %w", w.max, wire.ErrFrameTooLarge)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			*b = buf
			wire.PutRaw(b)
			return nil, err
		}
	}
	*b = buf
	if len(buf) == 0 {
		wire.PutRaw(b)
		return nil, wire.ErrEmptyFrame
	}
	return b, nil
}

// Wait begins the next message (its header) and keeps it for ReadFrame.
// Errors from the websocket library are permanent: after one (a close from
// the client, a timeout) every later read fails the same way.
func (w *WebSocket) Wait() error {
	if w.next != nil {
		return nil
	}
	typ, r, err := w.c.NextReader()
	if err != nil {
		return err
	}
	w.nextType, w.next = typ, r
	return nil
}

// nextMessage returns the message Wait began, or begins the next one.
func (w *WebSocket) nextMessage() (int, io.Reader, error) {
	if r := w.next; r != nil {
		w.next = nil
		return w.nextType, r, nil
	}
	return w.c.NextReader()
}

// SetReadLimit changes the message size limit for the next messages.
func (w *WebSocket) SetReadLimit(max uint32) {
	if max == 0 {
		max = wire.DefaultMaxFrameSize
	}
	w.max = max
}

// Write sends each length-prefixed frame of buf as one binary message
// (RFC 6455 §5.2: FIN, opcode 2, the payload length in 7, 16 or 64 bits;
// a server's frames are not masked), all of them framed into one buffer
// and written with one write: a batch of room events costs one system call
// as on a TCP connection, not one per event, which is what the websocket
// library's WriteMessage (a flush per message) did. The library's own
// writes (the pong and close control frames) are single writes too, and
// writes to one socket do not interleave (the runtime holds the socket's
// write lock, and crypto/tls its own, for a whole Write).
func (w *WebSocket) Write(buf []byte) error {
	bp := wsOutPool.Get().(*[]byte)
	out := (*bp)[:0]
	for len(buf) >= wire.HeaderSize {
		n := int(binary.BigEndian.Uint32(buf))
		buf = buf[wire.HeaderSize:]
		if n > len(buf) {
			return io.ErrShortBuffer
		}
		out = append(out, 0x82) // FIN, binary
		switch {
		case n <= 125:
			out = append(out, byte(n))
		case n <= 0xffff:
			out = append(out, 126)
			out = binary.BigEndian.AppendUint16(out, uint16(n))
		default:
			out = append(out, 127)
			out = binary.BigEndian.AppendUint64(out, uint64(n))
		}
		out = append(out, buf[:n]...)
		buf = buf[n:]
	}
	_, err := w.c.NetConn().Write(out)
	if cap(out) <= wsOutPoolMax {
		*bp = out[:0]
		wsOutPool.Put(bp)
	}
	return err
}

// wsOutPool holds Write's framing buffers; one grown past wsOutPoolMax (a
// large batch) is left to the collector rather than kept.
var wsOutPool = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

const wsOutPoolMax = 64 << 10

func (w *WebSocket) SetReadDeadline(t time.Time) error { return w.c.SetReadDeadline(t) }

// SetWriteDeadline sets the deadline on the socket, which bounds Write
// (and interrupts one already blocked); the library's control frames carry
// their own.
func (w *WebSocket) SetWriteDeadline(t time.Time) error {
	return w.c.NetConn().SetWriteDeadline(t)
}

// Close sends a normal close message (best effort), then closes the socket
// the same lingering way as a stream.
func (w *WebSocket) Close() error {
	_ = w.c.WriteControl(websocket.CloseMessage,
		websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(lingerTimeout))
	return lingerClose(w.c.NetConn())
}

func (w *WebSocket) RemoteAddr() net.Addr { return w.remote }
func (w *WebSocket) LocalAddr() net.Addr  { return w.c.LocalAddr() }
func (w *WebSocket) Host() string         { return w.host }
func (w *WebSocket) Kind() string         { return "ws" }

// Scheme is "http" or "https" as a trusted proxy reported the client
// reached it, "" if none did.
func (w *WebSocket) Scheme() string { return w.scheme }

var _ Transport = (*WebSocket)(nil)
