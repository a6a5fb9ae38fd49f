package parley

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/parleychat/parley/protocol/parleyv1"
	"github.com/parleychat/parley/protocol/wire"
)

// conn is one network connection to a gateway: a reader goroutine that
// correlates replies by request_id and hands server-pushed frames to the
// Client, a writer goroutine that coalesces queued frames into as few writes
// as possible, and a heartbeat goroutine. All three end when the connection
// dies (fail), which happens exactly once; wait blocks until they have.
type conn struct {
	t       transport
	log     *slog.Logger
	onEvent func(*conn, *parleyv1.Frame) // frames with request_id 0; called by the reader

	mu      sync.Mutex // guards the fields below
	pending map[uint32]chan *parleyv1.Frame
	nextID  uint32
	queue   []*parleyv1.Frame // frames waiting for the writer
	cause   error             // why the connection died; set once, before dead closes
	fatal   *Error            // the server's fatal Error frame, if it sent one
	maxSend uint32            // the server's max_frame_size; 0 until Welcome

	wake     chan struct{} // wakes the writer (cap 1)
	dead     chan struct{} // closed by fail
	lastSend atomic.Int64  // unix nanoseconds of the last completed write
	lastRecv atomic.Int64  // unix nanoseconds of the last frame read
	wg       sync.WaitGroup
}

func newConn(t transport, log *slog.Logger, onEvent func(*conn, *parleyv1.Frame)) *conn {
	c := &conn{
		t:       t,
		log:     log,
		onEvent: onEvent,
		pending: make(map[uint32]chan *parleyv1.Frame),
		wake:    make(chan struct{}, 1),
		dead:    make(chan struct{}),
	}
	now := time.Now().UnixNano()
	c.lastSend.Store(now)
	c.lastRecv.Store(now)
	return c
}

// start runs the reader and the writer.
func (c *conn) start() {
	c.wg.Add(2)
	go c.readLoop()
	go c.writeLoop()
}

// handshake sends Hello and waits for Welcome (docs/protocol.md §4), then
// starts the heartbeat with the server's timing unless overridden.
func (c *conn) handshake(ctx context.Context, cfg *config) (*parleyv1.Welcome, error) {
	reply, err := c.roundTrip(ctx, &parleyv1.Frame{Body: &parleyv1.Frame_Hello{Hello: &parleyv1.Hello{
		Versions: []uint32{wire.Version},
		Client:   cfg.clientName,
	}}})
	if err != nil {
		return nil, err
	}
	w := reply.GetWelcome()
	if w == nil {
		return nil, fmt.Errorf("%w: handshake answered with %T", ErrProtocol, reply.GetBody())
	}
	if w.GetVersion() != wire.Version {
		return nil, &Error{Code: CodeUnsupportedVersion,
			Message: fmt.Sprintf("server chose version %d, this client speaks %d", w.GetVersion(), wire.Version)}
	}
	c.mu.Lock()
	c.maxSend = w.GetMaxFrameSize()
	c.mu.Unlock()
	interval, idle := heartbeatTiming(w, cfg)
	c.wg.Add(1)
	go c.heartbeatLoop(interval, idle)
	return w, nil
}

// heartbeatTiming picks the ping interval and the idle limit: the options,
// else the server's Welcome, else defaults. The idle limit must leave room
// for a ping's answer, so it is at least twice the interval.
func heartbeatTiming(w *parleyv1.Welcome, cfg *config) (interval, idle time.Duration) {
	interval = cfg.heartbeat
	if interval <= 0 {
		interval = time.Duration(w.GetHeartbeatIntervalMs()) * time.Millisecond
	}
	if interval <= 0 {
		interval = defaultHeartbeat
	}
	idle = cfg.idleTimeout
	if idle <= 0 {
		idle = time.Duration(w.GetIdleTimeoutMs()) * time.Millisecond
	}
	if idle <= 0 {
		idle = 3 * interval
	}
	if idle < 2*interval {
		idle = 2 * interval
	}
	return interval, idle
}

// fail kills the connection; the first cause wins. In-flight requests fail
// with ErrConnectionLost.
func (c *conn) fail(cause error) {
	c.mu.Lock()
	if c.cause != nil {
		c.mu.Unlock()
		return
	}
	if c.fatal != nil {
		cause = c.fatal // the server said why before closing
	}
	c.cause = cause
	close(c.dead)
	c.mu.Unlock()
	c.t.close()
}

// err returns why the connection died (nil while alive).
func (c *conn) err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cause
}

func (c *conn) isDead() bool {
	select {
	case <-c.dead:
		return true
	default:
		return false
	}
}

// wait blocks until the connection's goroutines have ended (after fail).
func (c *conn) wait() { c.wg.Wait() }

// lostErr is what an in-flight request gets when the connection dies.
func (c *conn) lostErr() error {
	return fmt.Errorf("%w: %w", ErrConnectionLost, c.err())
}

// send queues f for the writer.
func (c *conn) send(f *parleyv1.Frame) error {
	c.mu.Lock()
	if c.cause != nil {
		c.mu.Unlock()
		return c.lostErr()
	}
	c.queue = append(c.queue, f)
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
	return nil
}

// maxDroppableQueue is how many frames may wait for the writer before a
// droppable frame (media) is refused: audio that waits behind a stalled
// connection is worthless by the time it goes out.
const maxDroppableQueue = 32

// sendDroppable queues f unless the connection is dead or its queue is
// backed up; it reports whether f was queued.
func (c *conn) sendDroppable(f *parleyv1.Frame) bool {
	c.mu.Lock()
	if c.cause != nil || len(c.queue) >= maxDroppableQueue {
		c.mu.Unlock()
		return false
	}
	c.queue = append(c.queue, f)
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
	return true
}

// roundTrip sends f as a request with a fresh request_id and waits for the
// reply. An Error reply is returned as *Error.
func (c *conn) roundTrip(ctx context.Context, f *parleyv1.Frame) (*parleyv1.Frame, error) {
	ch := make(chan *parleyv1.Frame, 1)
	c.mu.Lock()
	if c.cause != nil {
		c.mu.Unlock()
		return nil, c.lostErr()
	}
	if c.maxSend > 0 && proto.Size(f) > int(c.maxSend) {
		c.mu.Unlock()
		return nil, &Error{Code: CodeFrameTooLarge,
			Message: fmt.Sprintf("request larger than the server's limit of %d bytes", c.maxSend)}
	}
	id := c.allocIDLocked()
	c.pending[id] = ch
	f.RequestId = id
	if p, ok := f.Body.(*parleyv1.Frame_Ping); ok {
		// The nonce repeats the id so a Pong that lost its request_id can
		// still be matched.
		p.Ping.Nonce = uint64(id)
	}
	c.mu.Unlock()

	if err := c.send(f); err != nil {
		c.forget(id)
		return nil, err
	}
	select {
	case r := <-ch:
		return replyErr(r)
	case <-c.dead:
		select { // a reply that raced with the break still counts
		case r := <-ch:
			return replyErr(r)
		default:
		}
		c.forget(id)
		return nil, c.lostErr()
	case <-ctx.Done():
		c.forget(id)
		return nil, ctx.Err()
	}
}

func replyErr(r *parleyv1.Frame) (*parleyv1.Frame, error) {
	if e, ok := r.Body.(*parleyv1.Frame_Error); ok {
		return nil, errorFromWire(e.Error)
	}
	return r, nil
}

// allocIDLocked picks the next request id that is non-zero and not in
// flight (the protocol forbids reusing an outstanding id).
func (c *conn) allocIDLocked() uint32 {
	for {
		c.nextID++
		if c.nextID == 0 {
			continue
		}
		if _, busy := c.pending[c.nextID]; !busy {
			return c.nextID
		}
	}
}

func (c *conn) forget(id uint32) {
	c.mu.Lock()
	delete(c.pending, id)
	c.mu.Unlock()
}

// deliver hands a reply to the request waiting for it.
func (c *conn) deliver(id uint32, f *parleyv1.Frame) bool {
	c.mu.Lock()
	ch, ok := c.pending[id]
	delete(c.pending, id)
	c.mu.Unlock()
	if ok {
		ch <- f // buffered, and only one reply is ever delivered per id
	}
	return ok
}

// readLoop ends when a read fails, which fail's closing of the transport
// guarantees.
func (c *conn) readLoop() {
	defer c.wg.Done()
	for {
		f, err := c.t.readFrame()
		if errors.Is(err, wire.ErrUnknownBody) {
			// A later server's event (docs/protocol.md §4: clients may
			// ignore a body member they do not know). The frame was read
			// whole, so the stream is still in step.
			c.lastRecv.Store(time.Now().UnixNano())
			c.log.Debug("parley: ignored a frame of a later protocol version")
			continue
		}
		if err != nil {
			if errors.Is(err, wire.ErrFrameTooLarge) {
				err = &Error{Code: CodeFrameTooLarge, Message: err.Error()}
			}
			c.fail(err)
			return
		}
		c.lastRecv.Store(time.Now().UnixNano())
		c.dispatch(f)
	}
}

func (c *conn) dispatch(f *parleyv1.Frame) {
	id := f.GetRequestId()
	switch b := f.Body.(type) {
	case *parleyv1.Frame_Ping:
		// The server checks we are alive: answer at once.
		_ = c.send(&parleyv1.Frame{RequestId: id, Body: &parleyv1.Frame_Pong{Pong: &parleyv1.Pong{Nonce: b.Ping.GetNonce()}}})
		return
	case *parleyv1.Frame_Pong:
		if id == 0 && b.Pong.GetNonce() != 0 && b.Pong.GetNonce() <= 1<<32-1 {
			id = uint32(b.Pong.GetNonce())
		}
		if id != 0 {
			c.deliver(id, f)
		}
		return // a heartbeat's answer: its arrival is all that matters
	case *parleyv1.Frame_Error:
		if id == 0 || b.Error.GetFatal() {
			e := errorFromWire(b.Error)
			if b.Error.GetFatal() {
				c.mu.Lock()
				c.fatal = e
				c.mu.Unlock()
			}
			c.log.Warn("parley: connection error from server", "code", e.Code.String(), "message", e.Message)
		}
	}
	if id != 0 {
		if !c.deliver(id, f) {
			c.log.Debug("parley: reply to no pending request", "request_id", id)
		}
		return
	}
	if c.onEvent != nil {
		c.onEvent(c, f)
	}
}

// writeLoop ends when the connection dies; frames still queued are dropped
// (their requests fail with ErrConnectionLost).
func (c *conn) writeLoop() {
	defer c.wg.Done()
	var buf []byte
	for {
		select {
		case <-c.wake:
		case <-c.dead:
			return
		}
		c.mu.Lock()
		batch := c.queue
		c.queue = nil
		c.mu.Unlock()
		if len(batch) == 0 {
			continue
		}
		var err error
		if buf, err = c.t.writeFrames(batch, buf); err != nil {
			c.fail(err)
			return
		}
		if cap(buf) > 256<<10 { // do not pin one huge batch's buffer
			buf = nil
		}
		c.lastSend.Store(time.Now().UnixNano())
	}
}

// heartbeatLoop sends a Ping when the line has been quiet for interval and
// declares the connection dead when nothing arrived for idle.
func (c *conn) heartbeatLoop(interval, idle time.Duration) {
	defer c.wg.Done()
	tick := time.NewTicker(max(interval/4, 10*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-c.dead:
			return
		case now := <-tick.C:
			sinceRecv := now.Sub(time.Unix(0, c.lastRecv.Load()))
			sinceSend := now.Sub(time.Unix(0, c.lastSend.Load()))
			if sinceRecv > idle {
				c.fail(&Error{Code: CodeIdleTimeout,
					Message: fmt.Sprintf("nothing received from the server for %v", sinceRecv.Round(time.Millisecond))})
				return
			}
			if sinceSend >= interval || (sinceRecv >= interval && sinceSend >= interval/2) {
				_ = c.send(&parleyv1.Frame{Body: &parleyv1.Frame_Ping{Ping: &parleyv1.Ping{}}})
			}
		}
	}
}

func marshalAppend(dst []byte, f *parleyv1.Frame) ([]byte, error) {
	return proto.MarshalOptions{}.MarshalAppend(dst, f)
}
