package conn

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/parleychat/parley/gateway/internal/connlimit"
	"github.com/parleychat/parley/gateway/internal/presence"
	"github.com/parleychat/parley/gateway/internal/registry"
	"github.com/parleychat/parley/gateway/internal/transport"
	"github.com/parleychat/parley/libs/proto/internalv1"
	"github.com/parleychat/parley/libs/rpc"
	"github.com/parleychat/parley/protocol/errcode"
	"github.com/parleychat/parley/protocol/parleyv1"
	"github.com/parleychat/parley/protocol/wire"
)

// Conn is one client connection.
type Conn struct {
	h      *Handler
	t      transport.Transport
	id     string // unique on this gateway, never reused
	remote string // client ip:port

	// ctx ends when the connection does: when it starts closing (a final
	// frame is queued, or its writes fail), when its client is seen gone
	// while a frame is handled (process), and at the latest when it has
	// closed (finish). Every request made for the client and its presence
	// feed derive from it, so nothing runs on behalf of a client that has
	// gone. It is &cctx (see connCtx for why not context.WithCancel's);
	// cancel ends it.
	ctx  context.Context
	cctx connCtx

	out outbox

	mu   sync.Mutex // guards sess
	sess *session   // nil until a session starts, and again after Logout

	// Owned by the reader goroutine (and the frame goroutine it waits for).
	welcomed   bool            // Welcome sent
	bad        int             // undecodable frames so far
	frameLimit uint32          // the transport's frame size limit now (limits.go)
	slot       *connlimit.Slot // place under the connection caps; nil without caps
}

// session is the identity of an authenticated connection. Immutable; a
// logout replaces the pointer with nil.
type session struct {
	rec  *internalv1.Conn // presence record: user, session, this conn
	feed bool             // receives the presence feed
	// hdr is the identity headers of the session's requests (Conn.identity),
	// built once: shared by every request, never modified. hdrSize is its
	// encoded size (headerSize).
	hdr     nats.Header
	hdrSize int
}

var (
	_ registry.Conn   = (*Conn)(nil)
	_ presence.Member = (*Conn)(nil)
)

// readLoop reads frames until the connection must end.
//
// Deadlines: before Welcome a frame must arrive within HandshakeTimeout,
// after it within IdleTimeout of the previous frame's handling (any frame,
// Ping included, resets it; see process). Other goroutines end the
// connection by queueing a final frame; the flush then sets the read
// deadline to now (wake), and the loop sees isClosing.
func (c *Conn) readLoop() {
	c.armDeadline()
	for {
		if c.out.isClosing() {
			return
		}
		raw, err := c.t.ReadFrame()
		if err != nil {
			if c.out.isClosing() || !c.readError(err) {
				return
			}
			c.armDeadline()
			continue
		}
		if !c.process(raw) {
			return
		}
	}
}

// armDeadline gives the client HandshakeTimeout (before Welcome) or
// IdleTimeout from now to send its next frame. A wake that raced with it
// (the connection began closing) is repeated: the reader must not sleep
// through it.
func (c *Conn) armDeadline() {
	d := c.h.Limits.IdleTimeout
	if !c.welcomed {
		d = c.h.Limits.HandshakeTimeout
	}
	_ = c.t.SetReadDeadline(time.Now().Add(d))
	if c.out.isClosing() {
		c.wake()
	}
}

// frameWaitingGrace is how long frameWaiting gives the socket: a frame
// already in it is read at once, so this only delays closing a connection
// that is really idle.
const frameWaitingGrace = 20 * time.Millisecond

// frameWaiting reports, after the read deadline passed, whether the
// client's next frame has in fact arrived. When the gateway itself did not
// run for a while (stopped, starved of CPU, a long pause), the Go runtime
// fires the expired deadline before it polls the socket, so frames the
// client sent in time (its heartbeats) wait unread: the gateway was late,
// not the client, and closing every such connection at once would turn
// one stall into a reconnect storm. One more look, with a short deadline,
// tells the two apart. It only helps at a frame boundary: a read that
// timed out inside a frame left the transport broken, and Wait says so.
func (c *Conn) frameWaiting() bool {
	if c.out.isClosing() {
		return false
	}
	_ = c.t.SetReadDeadline(time.Now().Add(frameWaitingGrace))
	return c.t.Wait() == nil
}

// readError handles a failed read and reports whether to keep reading.
func (c *Conn) readError(err error) bool {
	switch {
	case transport.IsTimeout(err) && c.frameWaiting():
		c.debug("read deadline passed with a frame waiting: the gateway did not run in time")
		return true
	case transport.IsTimeout(err):
		if !c.welcomed {
			c.fatal(0, parleyv1.ErrorCode_ERROR_CODE_HANDSHAKE_REQUIRED,
				fmt.Sprintf("no Hello within %s", c.h.Limits.HandshakeTimeout))
		} else {
			c.fatal(0, parleyv1.ErrorCode_ERROR_CODE_IDLE_TIMEOUT,
				fmt.Sprintf("nothing received for %s", c.h.Limits.IdleTimeout))
		}
		return false
	case errors.Is(err, wire.ErrFrameTooLarge):
		c.h.Metrics.FramesIn.WithLabelValues("invalid").Inc()
		msg := fmt.Sprintf("frame above the %d-byte limit", c.frameLimit)
		if c.frameLimit < c.h.Limits.MaxFrameSize {
			msg += " before login"
		}
		c.fatal(0, parleyv1.ErrorCode_ERROR_CODE_FRAME_TOO_LARGE, msg)
		return false
	case errors.Is(err, wire.ErrBadFrame), errors.Is(err, wire.ErrEmptyFrame):
		// The frame was consumed whole (zero length prefix, or a WebSocket
		// text message): the stream is still in sync. It has no request_id
		// to answer.
		c.h.Metrics.FramesIn.WithLabelValues("invalid").Inc()
		return c.badFrame(0, err)
	case errors.Is(err, io.ErrUnexpectedEOF):
		// A frame cut short: the peer is gone or sent garbage. Say so in
		// case it still reads.
		c.fatal(0, parleyv1.ErrorCode_ERROR_CODE_BAD_FRAME, "connection ended inside a frame")
		return false
	case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed):
		c.log().Debug("client closed the connection")
		return false
	default:
		c.debug("read failed", "err", err)
		return false
	}
}

// badFrame answers an undecodable frame with Error(wire.CodeOf(err)) and
// reports whether to keep reading. rid is the frame's request_id as far as
// it could be read (wire.RequestID; 0 if not), so the request still gets
// its one reply. Before the handshake, and beyond maxBadFrames, it is fatal.
func (c *Conn) badFrame(rid uint32, err error) bool {
	code := wire.CodeOf(err)
	c.bad++
	c.debug("bad frame", "request_id", rid, "code", errcode.ShortName(code), "err", err, "count", c.bad)
	msg := badFrameMessage(code)
	switch {
	case !c.welcomed:
		c.fatal(rid, code, msg+" (expected Hello)")
		return false
	case c.bad > maxBadFrames:
		c.fatal(rid, parleyv1.ErrorCode_ERROR_CODE_BAD_FRAME, fmt.Sprintf("more than %d malformed frames", maxBadFrames))
		return false
	default:
		c.sendError(rid, code, msg)
		return true
	}
}

func badFrameMessage(code parleyv1.ErrorCode) string {
	switch code {
	case parleyv1.ErrorCode_ERROR_CODE_INVALID_UTF8:
		return "a text field is not valid UTF-8"
	default:
		return "malformed frame"
	}
}

// cancel ends the connection's context (ctx).
func (c *Conn) cancel() { c.cctx.cancel() }

// process handles one frame on a fresh goroutine and waits for it. Handling
// (protobuf decoding, NATS requests) needs far more stack than a parked read;
// doing it elsewhere keeps the reader's stack, which every idle connection
// holds, at its minimum size. Frames are still handled strictly one at a
// time, in order, so replies leave in request order.
//
// Meanwhile the reader waits for the next frame to begin (Transport.Wait,
// which consumes nothing): if the client closes the connection instead,
// the connection's context ends at once and the frame's requests are
// abandoned rather than run for nobody. The handling is not timed as
// idleness: the read deadline is cleared while it runs and armed when it
// ends, so the client has IdleTimeout from its reply, as before.
func (c *Conn) process(raw *[]byte) bool {
	_ = c.t.SetReadDeadline(time.Time{})
	done := make(chan bool, 1)
	go func() {
		keep := false
		defer func() {
			if p := recover(); p != nil {
				c.log().Error("frame handler panic", "panic", p)
				c.fatal(0, parleyv1.ErrorCode_ERROR_CODE_INTERNAL, "internal server error")
			}
			c.armDeadline()
			done <- keep
		}()
		keep = c.handle(raw)
	}()
	// Checked after clearing the deadline, like in armDeadline.
	began := false
	if !c.out.isClosing() {
		err := c.t.Wait()
		began = err == nil
		if err != nil && !transport.IsTimeout(err) {
			c.debug("client gone while a frame was handled", "err", err)
			c.cancel()
		}
	}
	keep := <-done
	if keep && began {
		// The next frame has begun (Wait read its first byte): the rest
		// gets IdleTimeout from now. The deadline the handler armed may
		// have passed meanwhile if the gateway did not run (a stall), and
		// would cut the frame in two.
		c.armDeadline()
	}
	return keep
}

// handle decodes and dispatches one frame; it reports whether to keep
// reading.
func (c *Conn) handle(raw *[]byte) bool {
	f, err := wire.Decode(*raw)
	var rid uint32
	if err != nil {
		rid = wire.RequestID(*raw)
	}
	wire.PutRaw(raw)
	if errors.Is(err, wire.ErrUnknownBody) {
		return c.unknownBody(rid)
	}
	if err != nil {
		c.h.Metrics.FramesIn.WithLabelValues("invalid").Inc()
		return c.badFrame(rid, err)
	}
	c.h.Metrics.FramesIn.WithLabelValues(bodyName(f)).Inc()
	if !c.welcomed {
		return c.hello(f)
	}
	c.dispatch(f)
	return true
}

// unknownBody answers a well-formed frame whose body member this schema
// does not know (a later protocol version's request) with UNKNOWN_REQUEST,
// like a body only servers send: it is not a bad frame and does not count
// towards maxBadFrames. As a first frame it is not a Hello.
func (c *Conn) unknownBody(rid uint32) bool {
	c.h.Metrics.FramesIn.WithLabelValues("unknown").Inc()
	if !c.welcomed {
		c.fatal(0, parleyv1.ErrorCode_ERROR_CODE_HANDSHAKE_REQUIRED, "the first frame must be Hello")
		return false
	}
	c.sendError(rid, parleyv1.ErrorCode_ERROR_CODE_UNKNOWN_REQUEST, "this server does not know that request (a later protocol version's?)")
	return true
}

// hello handles the first frame: it must be a Hello listing version 1.
func (c *Conn) hello(f *parleyv1.Frame) bool {
	hello := f.GetHello()
	if hello == nil {
		c.fatal(0, parleyv1.ErrorCode_ERROR_CODE_HANDSHAKE_REQUIRED, "the first frame must be Hello")
		return false
	}
	if !slices.Contains(hello.GetVersions(), wire.Version) {
		c.fatal(f.GetRequestId(), parleyv1.ErrorCode_ERROR_CODE_UNSUPPORTED_VERSION,
			fmt.Sprintf("no common protocol version: this server speaks [%d]", wire.Version))
		return false
	}
	c.welcomed = true
	lim := &c.h.Limits
	w := &parleyv1.Welcome{
		Version:             wire.Version,
		Server:              c.h.Server,
		GatewayId:           c.h.GatewayID,
		MaxFrameSize:        lim.MaxFrameSize,
		HeartbeatIntervalMs: uint32(lim.HeartbeatInterval.Milliseconds()),
		IdleTimeoutMs:       uint32(lim.IdleTimeout.Milliseconds()),
		StunAddr:            c.h.STUNAddr,
	}
	if c.h.HTTPURL != nil {
		w.HttpUrl = c.h.HTTPURL(c.t)
	}
	c.send(&parleyv1.Frame{RequestId: f.GetRequestId(), Body: &parleyv1.Frame_Welcome{Welcome: w}})
	c.debug("handshake", "client", hello.GetClient())
	return true
}

// send queues f (dropped silently if the connection is closing).
func (c *Conn) send(f *parleyv1.Frame) { c.out.pushFrame(f) }

// sendWait queues f, a reply the client asked for that may be large,
// waiting for room in the send queue (outbox.pushWait). Only the
// connection's own frame goroutine calls it.
func (c *Conn) sendWait(f *parleyv1.Frame) {
	frame, err := wire.AppendFrame(nil, f)
	if err != nil {
		c.log().Error("encode frame", "err", err)
		return
	}
	c.out.pushWait(frame)
}

// sendError queues a non-fatal Error answering requestID (0: none).
func (c *Conn) sendError(requestID uint32, code parleyv1.ErrorCode, msg string) {
	c.debug("error sent", "request_id", requestID, "code", errcode.ShortName(code), "message", msg)
	c.countError(code)
	c.send(wire.ErrorFrame(requestID, code, msg, false))
}

// sendErr queues err (from a service, via libs/rpc) as an Error answering
// requestID, with its code, message and retry_after_ms.
func (c *Conn) sendErr(requestID uint32, err error) {
	e := errcode.From(err)
	if down := rpc.Failed(err); down != nil {
		// A service failing is the operator's business, not the client's.
		c.log().Warn("service failed", "request_id", requestID, "subject", down.Subject, "code", errcode.ShortName(down.Wire.Code), "err", err)
	} else if e.Code == parleyv1.ErrorCode_ERROR_CODE_INTERNAL {
		c.log().Warn("request failed", "request_id", requestID, "err", err)
	} else {
		c.debug("request failed", "request_id", requestID, "err", err)
	}
	c.countError(e.Code)
	f := wire.ErrorFrame(requestID, e.Code, e.Message, false)
	f.GetError().RetryAfterMs = e.RetryAfter
	c.send(f)
}

// fatal queues a fatal Error as the last frame; the connection then closes.
func (c *Conn) fatal(requestID uint32, code parleyv1.ErrorCode, msg string) {
	c.log().Info("closing connection", "code", errcode.ShortName(code), "reason", msg)
	if !c.welcomed {
		c.h.Metrics.HandshakeFailures.WithLabelValues(errcode.ShortName(code)).Inc()
	}
	c.countError(code)
	c.out.final(wire.ErrorFrame(requestID, code, msg, true))
}

func (c *Conn) countError(code parleyv1.ErrorCode) {
	c.h.Metrics.ErrorsSent.WithLabelValues(errcode.ShortName(code)).Inc()
}

// wake interrupts the reader's blocked read so it notices the connection is
// closing.
func (c *Conn) wake() { _ = c.t.SetReadDeadline(time.Now()) }

// Push queues an encoded feed frame (presence.Member).
func (c *Conn) Push(frame []byte) { c.out.push(frame) }

// PushWait queues an encoded snapshot frame, waiting for room
// (presence.Member).
func (c *Conn) PushWait(frame []byte) bool { return c.out.pushWait(frame) }

// Deliver queues events if the connection has a session (registry.Conn).
// It never waits: sheddable events are shed when the client is behind
// (outbox), others overflow into SLOW_CONSUMER. The session is set only
// after the Session reply is queued (startSession), so events never
// precede it.
func (c *Conn) Deliver(ev *registry.Events) { c.out.pushEvents(ev) }

// SlowConsumer closes the connection with SLOW_CONSUMER (presence.Member).
func (c *Conn) SlowConsumer() { c.out.slowConsumer() }

// EndSession sends SessionEnded and closes the connection (registry.Conn).
func (c *Conn) EndSession(reason parleyv1.ErrorCode, message string) {
	c.log().Info("session ended by server", "reason", errcode.ShortName(reason))
	c.out.final(&parleyv1.Frame{Body: &parleyv1.Frame_SessionEnded{SessionEnded: &parleyv1.SessionEnded{Reason: reason, Message: message}}})
}

// Shutdown closes the connection with a fatal SERVER_SHUTDOWN (registry.Conn).
func (c *Conn) Shutdown() {
	code := parleyv1.ErrorCode_ERROR_CODE_SERVER_SHUTDOWN
	if c.out.final(wire.ErrorFrame(0, code, "the gateway is shutting down; reconnect", true)) {
		c.countError(code)
	}
}

func (c *Conn) session() *session {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sess
}

func (c *Conn) setSession(s *session) {
	c.mu.Lock()
	c.sess = s
	c.mu.Unlock()
}
