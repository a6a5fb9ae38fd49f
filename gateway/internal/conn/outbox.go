package conn

import (
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/parleychat/parley/gateway/internal/transport"
	"github.com/parleychat/parley/protocol/parleyv1"
	"github.com/parleychat/parley/protocol/wire"
)

// outbox is a connection's bounded outbound queue (docs/protocol.md §8).
//
// Frames are appended, already length-prefixed, to one pending buffer, so a
// flush writes everything queued in a single write (coalescing). There is no
// permanent writer goroutine: the transition from empty to non-empty starts a
// flush goroutine, which exits once the buffer is drained. An idle
// connection holds no buffer at all (buffers come from libs/wire's pool).
//
// Events and replies never wait: when a frame would push the queue past
// SendQueueFrames or SendQueueBytes, everything pending is dropped, a final
// Error SLOW_CONSUMER is queued (sent if the socket takes it) and the
// connection closes.
//
// The connection's own answers that may be large, its presence snapshot
// and the replies sent with Conn.sendWait (WhoReply, HistoryReply,
// ConversationsReply, MembersReply, FriendsReply, FilesReply), instead
// wait for room (pushWait): they are what the client asked for, not a
// backlog it failed to read, so a healthy client gets them at any size. They are pushed only by the connection's
// own frame goroutine, so the wait slows only that client. A client that
// reads nothing while such a frame waits is closed as a slow consumer once
// -write-timeout has passed.
type outbox struct {
	c *Conn

	mu         sync.Mutex    // guards the fields below
	buf        *[]byte       // pending frames; nil when empty
	frames     int           // frames in buf
	flushing   bool          // a flush goroutine is running
	tail       bool          // the transport keeps what a TryWrite left unsent: the flush sends it
	closing    bool          // a final frame is queued: accept nothing more, close after the flush
	overflowed bool          // closing because the queue overflowed: writes get at most a second
	closed     bool          // the reader finished: accept nothing more
	room       chan struct{} // non-nil while a pushWait waits; closed when it should look again
	wg         sync.WaitGroup
}

// pushFrame encodes and queues f. It reports false if f was dropped (the
// connection is closing or just overflowed).
func (o *outbox) pushFrame(f *parleyv1.Frame) bool {
	size := wire.HeaderSize + proto.Size(f)
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closing || o.closed {
		return false
	}
	if !o.fitsLocked(size) {
		o.overflowLocked()
		return false
	}
	return o.appendFrameLocked(f)
}

// pushFrameAfter runs before (under the queue's lock), then queues f as
// pushFrame does: no write can take f to the socket before before has run.
// startSession sets the connection's session this way, so a client that has
// read its Session reply gets every event published after it.
func (o *outbox) pushFrameAfter(f *parleyv1.Frame, before func()) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	before()
	if o.closing || o.closed {
		return false
	}
	if !o.fitsLocked(wire.HeaderSize + proto.Size(f)) {
		o.overflowLocked()
		return false
	}
	return o.appendFrameLocked(f)
}

// push queues an encoded, length-prefixed frame (shared, not modified).
func (o *outbox) push(frame []byte) bool { return o.pushN(frame, 1) }

// pushN queues n encoded, length-prefixed frames given back to back
// (shared, not modified), all or none.
func (o *outbox) pushN(frames []byte, n int) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closing || o.closed {
		return false
	}
	if !o.fitsNLocked(n, len(frames)) {
		o.overflowLocked()
		return false
	}
	return o.appendNLocked(frames, n)
}

// pushMedia queues an encoded, length-prefixed media or p2p_relay frame
// (shared, not modified) only if the queue stays at most half full with
// it, by frames and by bytes; else it drops the frame and reports false.
// Media never waits and never closes a connection: a late voice packet is
// worth nothing (a relayed direct session's packet is retransmitted by its
// QUIC if it mattered), and the half left free keeps room for the events
// and replies whose overflow does mean SLOW_CONSUMER.
func (o *outbox) pushMedia(frame []byte) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closing || o.closed {
		return false
	}
	pending := 0
	if o.buf != nil {
		pending = len(*o.buf)
	}
	lim := &o.c.h.Limits
	if 2*(o.frames+1) > lim.SendQueueFrames || 2*(pending+len(frame)) > lim.SendQueueBytes {
		return false
	}
	return o.appendNLocked(frame, 1)
}

// appendNLocked queues n frames that fit (o.mu held): written at once
// from this goroutine when nothing is queued and the transport can, else
// appended for the flush goroutine.
func (o *outbox) appendNLocked(frames []byte, n int) bool {
	if !o.flushing && o.buf == nil {
		// Nothing queued and no write running: try the socket directly,
		// from this (fan-out) goroutine; only what it does not take now is
		// queued for a flush goroutine.
		if tw, ok := o.c.t.(transport.TryWriter); ok {
			sent, err := tw.TryWrite(frames)
			if err == nil {
				o.c.h.Metrics.FramesOut.Add(float64(n))
				if !sent {
					// The transport keeps the rest (it must go before
					// anything else, also a final frame after an
					// overflow); a flush goroutine sends it.
					o.tail = true
					o.flushing = true
					o.wg.Add(1)
					go o.flush()
				}
				return true
			}
			// ErrNoTryWrite or a broken socket: queue as usual; the flush
			// goroutine's write reports a broken socket and closes.
		}
	}
	o.ensureBufLocked()
	*o.buf = append(*o.buf, frames...)
	o.queuedNLocked(n)
	return true
}

// pushWait queues an encoded, length-prefixed frame (shared, not
// modified), waiting while the queue has no room for it; an empty queue
// takes a frame of any size. It reports false if the frame was dropped: the
// connection is closing, or the client read nothing for WriteTimeout while
// the frame waited (the connection is then closed as a slow consumer).
//
// Room appears when the flush goroutine takes the pending buffer to write
// it. A queue without room is never empty, so a flush is running, and its
// write is bounded by WriteTimeout: the wait ends when that write ends
// (room, or a failed write closes the connection) or, at the latest, when
// the wait's own WriteTimeout expires.
func (o *outbox) pushWait(frame []byte) bool {
	var timeout <-chan time.Time
	for {
		o.mu.Lock()
		if o.closing || o.closed {
			o.mu.Unlock()
			return false
		}
		if o.buf == nil || o.fitsLocked(len(frame)) {
			o.ensureBufLocked()
			*o.buf = append(*o.buf, frame...)
			o.queuedLocked()
			o.mu.Unlock()
			return true
		}
		if o.room == nil {
			o.room = make(chan struct{})
		}
		room := o.room
		o.mu.Unlock()
		if timeout == nil {
			t := time.NewTimer(o.c.h.Limits.WriteTimeout)
			defer t.Stop()
			timeout = t.C
		}
		select {
		case <-room:
		case <-timeout:
			o.slowConsumer()
			return false
		}
	}
}

// wakeWaiterLocked tells a waiting pushWait to look again.
func (o *outbox) wakeWaiterLocked() {
	if o.room != nil {
		close(o.room)
		o.room = nil
	}
}

// final queues f as the connection's last frame, regardless of the limits:
// after it is written (or the write fails) the reader is woken to close.
func (o *outbox) final(f *parleyv1.Frame) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closing || o.closed {
		return false
	}
	o.startClosingLocked()
	return o.appendFrameLocked(f)
}

// startClosingLocked marks the connection closing: nothing more is
// queued, a waiting pushWait gives up, and the connection's context ends,
// abandoning the requests still running for it.
func (o *outbox) startClosingLocked() {
	o.closing = true
	o.wakeWaiterLocked()
	o.c.cancel()
}

// slowConsumer closes the connection as if its queue had overflowed.
func (o *outbox) slowConsumer() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closing || o.closed {
		return
	}
	o.overflowLocked()
}

// isClosing reports whether the connection must stop reading.
func (o *outbox) isClosing() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.closing || o.closed
}

// close stops accepting frames and waits for the running flush, if any
// (bounded by the write deadline). Called once, by the reader goroutine;
// after closed is set no flush goroutine is started, so Wait is safe.
func (o *outbox) close() {
	o.mu.Lock()
	o.closed = true
	o.wakeWaiterLocked()
	o.mu.Unlock()
	o.wg.Wait()
	o.mu.Lock()
	if o.buf != nil {
		wire.PutRaw(o.buf)
		o.buf = nil
	}
	o.mu.Unlock()
}

func (o *outbox) fitsLocked(size int) bool { return o.fitsNLocked(1, size) }

func (o *outbox) fitsNLocked(n, size int) bool {
	pending := 0
	if o.buf != nil {
		pending = len(*o.buf)
	}
	lim := &o.c.h.Limits
	return o.frames+n <= lim.SendQueueFrames && pending+size <= lim.SendQueueBytes
}

func (o *outbox) overflowLocked() {
	c := o.c
	c.h.Metrics.SlowConsumers.Inc()
	c.log().Info("slow consumer: send queue full, closing", "frames", o.frames)
	if o.buf != nil {
		wire.PutRaw(o.buf)
		o.buf = nil
	}
	o.frames = 0
	o.overflowed = true
	o.startClosingLocked()
	code := parleyv1.ErrorCode_ERROR_CODE_SLOW_CONSUMER
	c.countError(code)
	o.appendFrameLocked(wire.ErrorFrame(0, code, "connection closed: the client did not read fast enough", true))
	if o.flushing {
		// A write is in flight and likely stuck on a full socket: do not let
		// it hold the connection for the whole write timeout.
		_ = c.t.SetWriteDeadline(time.Now().Add(min(time.Second, c.h.Limits.WriteTimeout)))
	}
}

func (o *outbox) appendFrameLocked(f *parleyv1.Frame) bool {
	o.ensureBufLocked()
	b, err := wire.AppendFrame(*o.buf, f)
	*o.buf = b
	if err != nil {
		o.c.log().Error("encode frame", "err", err)
		return false
	}
	o.queuedLocked()
	return true
}

func (o *outbox) ensureBufLocked() {
	if o.buf == nil {
		o.buf = wire.GetRaw()
	}
}

// queuedLocked accounts for one appended frame.
func (o *outbox) queuedLocked() { o.queuedNLocked(1) }

// queuedNLocked accounts for n appended frames and starts a flush if none
// runs.
func (o *outbox) queuedNLocked(n int) {
	o.frames += n
	o.c.h.Metrics.FramesOut.Add(float64(n))
	if !o.flushing {
		o.flushing = true
		o.wg.Add(1)
		go o.flush()
	}
}

// flush writes queued frames until the queue is empty, then exits. After a
// final frame, or when a write fails, it wakes the reader so the connection
// closes. A write that failed may have sent part of a frame, so nothing is
// written after it.
func (o *outbox) flush() {
	defer o.wg.Done()
	c := o.c
	for {
		o.mu.Lock()
		b := o.buf
		if b == nil && !o.tail {
			o.flushing = false
			closing := o.closing
			o.mu.Unlock()
			if closing {
				c.wake()
			}
			return
		}
		o.buf = nil
		o.tail = false
		o.frames = 0
		o.wakeWaiterLocked()
		// The deadline is set under the lock: overflowLocked shortens it
		// for a write in flight, and setting it after unlocking could undo
		// that (the slow consumer then stayed connected for the whole
		// WriteTimeout).
		timeout := c.h.Limits.WriteTimeout
		if o.overflowed {
			timeout = min(time.Second, timeout)
		}
		_ = c.t.SetWriteDeadline(time.Now().Add(timeout))
		o.mu.Unlock()

		var err error
		if b != nil {
			err = c.t.Write(*b)
			wire.PutRaw(b)
		} else {
			err = c.t.Write(nil) // only what a TryWrite left
		}
		if err != nil {
			o.mu.Lock()
			// A write that timed out while a snapshot or a large reply
			// waited for room: the client read nothing for WriteTimeout,
			// which is what a slow consumer is (the error frame cannot
			// follow a failed write).
			slow := o.room != nil && !o.closing && transport.IsTimeout(err)
			o.startClosingLocked()
			if o.buf != nil {
				wire.PutRaw(o.buf)
				o.buf = nil
			}
			o.frames = 0
			o.flushing = false
			o.mu.Unlock()
			if slow {
				c.h.Metrics.SlowConsumers.Inc()
				c.countError(parleyv1.ErrorCode_ERROR_CODE_SLOW_CONSUMER)
				c.log().Info("slow consumer: nothing read while a snapshot waited, closing")
			} else {
				c.debug("write failed, closing", "err", err)
			}
			c.wake()
			return
		}
	}
}
