package conn

import (
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/parleychat/parley/libs/proto/parleyv1"
	"github.com/parleychat/parley/libs/wire"
)

// outbox is a connection's bounded outbound queue (docs/protocol.md §8).
//
// Frames are appended, already length-prefixed, to one pending buffer, so a
// flush writes everything queued in a single write (coalescing). There is no
// permanent writer goroutine: the transition from empty to non-empty starts a
// flush goroutine, which exits once the buffer is drained. An idle
// connection holds no buffer at all (buffers come from libs/wire's pool).
//
// Nothing that queues ever blocks: when a frame would push the queue past
// SendQueueFrames or SendQueueBytes, everything pending is dropped, a final
// Error SLOW_CONSUMER is queued (sent if the socket takes it) and the
// connection closes.
type outbox struct {
	c *Conn

	mu       sync.Mutex // guards the fields below
	buf      *[]byte    // pending frames; nil when empty
	frames   int        // frames in buf
	flushing bool       // a flush goroutine is running
	closing  bool       // a final frame is queued: accept nothing more, close after the flush
	closed   bool       // the reader finished: accept nothing more
	wg       sync.WaitGroup
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

// push queues an encoded, length-prefixed frame (shared, not modified).
func (o *outbox) push(frame []byte) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closing || o.closed {
		return false
	}
	if !o.fitsLocked(len(frame)) {
		o.overflowLocked()
		return false
	}
	o.ensureBufLocked()
	*o.buf = append(*o.buf, frame...)
	o.queuedLocked()
	return true
}

// final queues f as the connection's last frame, regardless of the limits:
// after it is written (or the write fails) the reader is woken to close.
func (o *outbox) final(f *parleyv1.Frame) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closing || o.closed {
		return false
	}
	o.closing = true
	return o.appendFrameLocked(f)
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
	o.mu.Unlock()
	o.wg.Wait()
	o.mu.Lock()
	if o.buf != nil {
		wire.PutRaw(o.buf)
		o.buf = nil
	}
	o.mu.Unlock()
}

func (o *outbox) fitsLocked(size int) bool {
	pending := 0
	if o.buf != nil {
		pending = len(*o.buf)
	}
	lim := &o.c.h.Limits
	return o.frames+1 <= lim.SendQueueFrames && pending+size <= lim.SendQueueBytes
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
	o.closing = true
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

// queuedLocked accounts for one appended frame and starts a flush if none
// runs.
func (o *outbox) queuedLocked() {
	o.frames++
	o.c.h.Metrics.FramesOut.Inc()
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
		if b == nil {
			o.flushing = false
			closing := o.closing
			o.mu.Unlock()
			if closing {
				c.wake()
			}
			return
		}
		o.buf = nil
		o.frames = 0
		o.mu.Unlock()

		_ = c.t.SetWriteDeadline(time.Now().Add(c.h.Limits.WriteTimeout))
		err := c.t.Write(*b)
		wire.PutRaw(b)
		if err != nil {
			o.mu.Lock()
			o.closing = true
			if o.buf != nil {
				wire.PutRaw(o.buf)
				o.buf = nil
			}
			o.frames = 0
			o.flushing = false
			o.mu.Unlock()
			c.debug("write failed, closing", "err", err)
			c.wake()
			return
		}
	}
}
