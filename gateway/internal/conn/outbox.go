package conn

import (
	"encoding/binary"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/parleychat/parley/gateway/internal/registry"
	"github.com/parleychat/parley/gateway/internal/transport"
	"github.com/parleychat/parley/protocol/parleyv1"
	"github.com/parleychat/parley/protocol/wire"
)

// outbox is a connection's bounded outbound queue (docs/protocol.md §11).
//
// Frames are appended, already length-prefixed, to pending buffers, so a
// flush writes what is queued in as few writes as possible (coalescing).
// There is no permanent writer goroutine: the transition from empty to
// non-empty starts a flush goroutine, which exits once everything is
// written. An idle connection holds no buffer at all (buffers come from
// libs/wire's pool).
//
// Two kinds of frame wait in two buffers:
//
//   - Sheddable frames (shed): message events of rooms and groups
//     (registry.Events.Shed). Each can be read back from history, and
//     clients repair a gap in a conversation's seq from it (§15.3), so
//     when the queue is behind they are dropped rather than let grow: a
//     sheddable push that would take the queue past its high-water mark
//     (half of SendQueueFrames and of SendQueueBytes) first drops every
//     sheddable frame still pending, and keeps of its own frames the newest
//     that fit, at least the last one (so the client sees the gap at once).
//     Sheddable frames never close a connection.
//   - Everything else (buf): replies, private message events, presence,
//     control frames. They go out first: a flush writes what is pending
//     here before any sheddable frame queued meanwhile. They are never
//     shed: one that does not fit first drops the pending sheddable
//     frames (but the newest), then the newest too; if it still does not
//     fit (the frames that are never shed alone fill SendQueueFrames or
//     SendQueueBytes) everything pending is dropped, a final Error
//     SLOW_CONSUMER is queued (sent if the socket takes it) and the
//     connection closes.
//
// The connection's own answers that may be large, its presence snapshot
// and the replies sent with Conn.sendWait (WhoReply, HistoryReply,
// ConversationsReply, MembersReply, FriendsReply, FilesReply), instead
// wait for room (pushWait): they are what the client asked for, not a
// backlog it failed to read, so a healthy client gets them at any size. They are pushed only by the connection's
// own frame goroutine, so the wait slows only that client. A client that
// reads nothing while such a frame waits is closed as a slow consumer once
// -write-timeout has passed.
//
// While a Send is handled, the event of the sender's own message (the
// client_key the Send carries) waits in buf unwritten (hold): the reply's
// flush writes both at once.
//
// Writes go out in pieces of at most flushChunk bytes (or one larger
// frame), each with its own -write-timeout: a client whose socket takes
// less than that in the write timeout (it reads nothing) is closed as a
// slow consumer; one that reads slowly but steadily is not, however far
// behind the room it is (it is shed for instead).
type outbox struct {
	c *Conn

	mu         sync.Mutex    // guards the fields below
	buf        *[]byte       // pending frames that are never shed; nil when empty
	frames     int           // frames in buf
	shed       *[]byte       // pending sheddable frames, from shedPos; nil when none
	shedPos    int           // bytes at the start of shed already taken by the flush
	shedFrames int           // frames in shed after shedPos
	shedLast   int           // offset in shed of the newest frame (valid while shedFrames > 0)
	flushing   bool          // a flush goroutine is running
	tail       bool          // the transport keeps what a TryWrite left unsent: the flush's next write sends it first
	closing    bool          // a final frame is queued: accept nothing more, close after the flush
	overflowed bool          // closing because the queue overflowed: writes get at most a second
	closed     bool          // the reader finished: accept nothing more
	room       chan struct{} // non-nil while a pushWait waits; closed when it should look again
	holdKey    string        // client_key of the Send being handled: its own message event waits in buf for the reply (hold)
	wg         sync.WaitGroup
}

// flushChunk bounds one write of a flush (a larger single frame is written
// alone): each piece has -write-timeout to go through, so a client that
// reads anything at all is not cut, and a reply queued behind a room
// backlog waits for one piece, not the backlog.
const flushChunk = 64 << 10

// Why sheddable frames were dropped, for parley_gateway_events_shed_total.
const (
	shedQueue    = "queue"     // the connection's queue passed its high-water mark: the client reads too slowly
	shedMakeRoom = "make_room" // dropped to make room for a frame that is never shed
)

// pushFrame encodes and queues f, a frame that is never shed. It reports
// false if f was dropped (the connection is closing or just overflowed).
func (o *outbox) pushFrame(f *parleyv1.Frame) bool {
	size := wire.HeaderSize + proto.Size(f)
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closing || o.closed {
		return false
	}
	if !o.makeRoomLocked(1, size) {
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
	if !o.makeRoomLocked(1, wire.HeaderSize+proto.Size(f)) {
		o.overflowLocked()
		return false
	}
	return o.appendFrameLocked(f)
}

// endEvents runs then (under the queue's lock) and drops the sheddable
// frames still pending: logout clears the session this way, so no room
// event queued for the session follows the logout's reply, and none is
// queued after it (pushEvents checks the session under the same lock).
func (o *outbox) endEvents(then func()) {
	o.mu.Lock()
	defer o.mu.Unlock()
	then()
	o.dropShedLocked()
}

// hold makes the message event of the user's own message with client_key
// key (registry.Events.OwnKey) wait in the queue, unwritten, until release:
// the connection's Send of that key is being handled, and its SendReply,
// queued before release, takes the event along in the same write (one
// write and one client wake-up fewer per message sent; the event and the
// reply arrive together, the event first). Requests on a connection are
// handled one at a time, so one key is held at most.
func (o *outbox) hold(key string) {
	o.mu.Lock()
	o.holdKey = key
	o.mu.Unlock()
}

// release ends hold: whatever waits is written now (normally the reply's
// flush has taken it already; not when the request ended without a reply,
// the connection closing).
func (o *outbox) release() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.holdKey = ""
	if o.buf != nil && !o.closed {
		o.startFlushLocked()
	}
}

// push queues an encoded, length-prefixed frame that is never shed
// (shared, not modified).
func (o *outbox) push(frame []byte) bool { return o.pushN(frame, 1) }

// pushN queues n encoded, length-prefixed frames that are never shed,
// given back to back (shared, not modified), all or none.
func (o *outbox) pushN(frames []byte, n int) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closing || o.closed {
		return false
	}
	if !o.makeRoomLocked(n, len(frames)) {
		o.overflowLocked()
		return false
	}
	return o.appendNLocked(frames, n)
}

// pushEvents queues events if the connection has a session: sheddable ones
// as the type's comment says, the others like pushN.
func (o *outbox) pushEvents(ev *registry.Events) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closing || o.closed || o.c.session() == nil {
		return
	}
	if ev.OwnKey != "" && ev.OwnKey == o.holdKey {
		// The event of the message this connection is sending (a group's
		// too): it goes out with the SendReply, in the reply's write, and
		// is not shed any more than the reply is.
		if !o.makeRoomLocked(ev.N, len(ev.Frames)) {
			o.overflowLocked()
			return
		}
		o.ensureBufLocked()
		*o.buf = append(*o.buf, ev.Frames...)
		o.frames += ev.N
		o.c.h.Metrics.FramesOut.Add(float64(ev.N))
		return
	}
	if !ev.Shed {
		if !o.makeRoomLocked(ev.N, len(ev.Frames)) {
			o.overflowLocked()
			return
		}
		o.appendNLocked(ev.Frames, ev.N)
		return
	}
	frames, n, last := ev.Frames, ev.N, ev.Last
	hf, hb := o.highWater()
	pf, pb := o.pendingLocked()
	if pf+n <= hf && pb+len(frames) <= hb {
		o.appendShedLocked(frames, n, last)
		return
	}
	// Behind: what is pending is older than these, and the client reads
	// it back from history.
	dropped := o.dropShedLocked()
	pf, pb = o.pendingLocked()
	skip := 0
	for skip < n-1 && (pf+n-skip > hf || pb+len(frames) > hb) {
		size := wire.HeaderSize + int(binary.BigEndian.Uint32(frames))
		frames = frames[size:]
		last -= size
		skip++
	}
	if pf+n-skip > hf || pb+len(frames) > hb {
		// Only the newest is left and the frames that are never shed fill
		// the high-water mark: the newest still goes if the queue has
		// room for it.
		if !o.fitsNLocked(1, len(frames)) {
			skip, frames = n, nil
		}
	}
	o.c.h.shed.note(o.c, shedQueue, dropped+skip)
	if skip < n {
		o.appendShedLocked(frames, n-skip, last)
	}
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
	pf, pb := o.pendingLocked()
	lim := &o.c.h.Limits
	if 2*(pf+1) > lim.SendQueueFrames || 2*(pb+len(frame)) > lim.SendQueueBytes {
		return false
	}
	return o.appendNLocked(frame, 1)
}

// highWater is the queue's high-water mark, frames and bytes: beyond it,
// sheddable frames are shed.
func (o *outbox) highWater() (frames, bytes int) {
	lim := &o.c.h.Limits
	return max(1, lim.SendQueueFrames/2), max(1, lim.SendQueueBytes/2)
}

// pendingLocked is what is queued and not yet taken by the flush, both
// kinds together.
func (o *outbox) pendingLocked() (frames, bytes int) {
	frames = o.frames + o.shedFrames
	if o.buf != nil {
		bytes = len(*o.buf)
	}
	if o.shed != nil {
		bytes += len(*o.shed) - o.shedPos
	}
	return frames, bytes
}

// tryWriteLocked writes frames straight to the socket, from this (fan-out)
// goroutine, when nothing is queued, no write runs and the transport can;
// it reports whether that took care of them (what the socket did not take
// is queued first, as one piece: the rest of a frame must go first).
func (o *outbox) tryWriteLocked(frames []byte, n int) bool {
	if o.flushing || o.buf != nil || o.shed != nil {
		return false
	}
	tw, ok := o.c.t.(transport.TryWriter)
	if !ok {
		return false
	}
	sent, err := tw.TryWrite(frames)
	if err != nil {
		// ErrNoTryWrite or a broken socket: queue as usual; the flush
		// goroutine's write reports a broken socket and closes.
		return false
	}
	o.c.h.Metrics.FramesOut.Add(float64(n))
	if !sent {
		// The transport keeps the rest (it must go before anything else,
		// a final frame after an overflow included); a flush sends it.
		o.tail = true
		o.startFlushLocked()
	}
	return true
}

// appendNLocked queues n frames that are never shed and fit (o.mu held).
func (o *outbox) appendNLocked(frames []byte, n int) bool {
	if o.tryWriteLocked(frames, n) {
		return true
	}
	o.ensureBufLocked()
	*o.buf = append(*o.buf, frames...)
	o.queuedNLocked(n)
	return true
}

// appendShedLocked queues n sheddable frames, the last at offset last
// (o.mu held).
func (o *outbox) appendShedLocked(frames []byte, n, last int) {
	if o.tryWriteLocked(frames, n) {
		return
	}
	if o.shed == nil {
		o.shed = wire.GetRaw()
	}
	o.shedLast = len(*o.shed) + last
	*o.shed = append(*o.shed, frames...)
	o.shedFrames += n
	o.c.h.Metrics.FramesOut.Add(float64(n))
	o.startFlushLocked()
}

// dropShedLocked drops the pending sheddable frames and returns how many.
func (o *outbox) dropShedLocked() int {
	n := o.shedFrames
	if o.shed != nil {
		wire.PutRaw(o.shed)
		o.shed = nil
	}
	o.shedPos, o.shedFrames, o.shedLast = 0, 0, 0
	return n
}

// makeRoomLocked makes room for n frames of size bytes that are never
// shed, shedding sheddable frames if it must (the newest last), and
// reports whether they fit.
func (o *outbox) makeRoomLocked(n, size int) bool {
	if o.fitsNLocked(n, size) {
		return true
	}
	if o.shedFrames == 0 {
		return false
	}
	dropped := 0
	if o.shedFrames > 1 {
		// Keep the newest, so the client sees the gap without waiting for
		// the conversation's next message.
		s := *o.shed
		keep := copy(s[o.shedPos:], s[o.shedLast:])
		*o.shed = s[:o.shedPos+keep]
		dropped = o.shedFrames - 1
		o.shedFrames, o.shedLast = 1, o.shedPos
	}
	if !o.fitsNLocked(n, size) {
		dropped += o.dropShedLocked()
	}
	o.c.h.shed.note(o.c, shedMakeRoom, dropped)
	return o.fitsNLocked(n, size)
}

// pushWait queues an encoded, length-prefixed frame (shared, not
// modified) that is never shed, waiting while the queue has no room for it
// (sheddable frames are shed for it first); an empty queue takes a frame of
// any size. It reports false if the frame was dropped: the connection is
// closing, or the client read nothing for WriteTimeout while the frame
// waited (the connection is then closed as a slow consumer).
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
		// Shedding may empty the queue, and an empty queue takes any size
		// (nothing would wake a wait for room then).
		if o.makeRoomLocked(1, len(frame)) || o.buf == nil && o.shedFrames == 0 {
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
// queued, the sheddable frames pending are dropped (nothing follows the
// last frame), a waiting pushWait gives up, and the connection's context
// ends, abandoning the requests still running for it.
func (o *outbox) startClosingLocked() {
	o.closing = true
	o.dropShedLocked()
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
	o.dropShedLocked()
	o.mu.Unlock()
}

// fitsNLocked reports whether n more frames of size bytes fit under the
// queue's limits, with everything pending.
func (o *outbox) fitsNLocked(n, size int) bool {
	pf, pb := o.pendingLocked()
	lim := &o.c.h.Limits
	return pf+n <= lim.SendQueueFrames && pb+size <= lim.SendQueueBytes
}

func (o *outbox) overflowLocked() {
	c := o.c
	c.h.Metrics.SlowConsumers.Inc()
	c.log().Info("slow consumer: send queue full, closing", "frames", o.frames)
	// The rest of a partly written frame, which the transport keeps (tail),
	// still goes before the error: the flush's next write sends it first.
	if o.buf != nil {
		wire.PutRaw(o.buf)
		o.buf = nil
		o.frames = 0
	}
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
	o.startFlushLocked()
}

func (o *outbox) startFlushLocked() {
	if !o.flushing {
		o.flushing = true
		o.wg.Add(1)
		go o.flush()
	}
}

// takeLocked takes what the flush writes next: every pending frame that is
// never shed, then sheddable ones, up to flushChunk bytes in all (at least
// one frame).
func (o *outbox) takeLocked() (b *[]byte) {
	if o.buf != nil {
		b = o.buf
		o.buf, o.frames = nil, 0
		if o.shedFrames > 0 && len(*b) < flushChunk {
			o.takeShedLocked(b, flushChunk-len(*b))
		}
		return b
	}
	if o.shedFrames == 0 {
		return nil
	}
	if o.shedPos == 0 && len(*o.shed) <= flushChunk {
		b = o.shed
		o.shed, o.shedFrames, o.shedLast = nil, 0, 0
		return b
	}
	b = wire.GetRaw()
	o.takeShedLocked(b, flushChunk)
	return b
}

// takeShedLocked moves whole sheddable frames, oldest first, to dst: as
// many as fit in room bytes, at least one.
func (o *outbox) takeShedLocked(dst *[]byte, room int) {
	s := *o.shed
	end := o.shedPos
	for end < len(s) && o.shedFrames > 0 {
		size := wire.HeaderSize + int(binary.BigEndian.Uint32(s[end:]))
		if end > o.shedPos && end+size-o.shedPos > room {
			break
		}
		end += size
		o.shedFrames--
	}
	*dst = append(*dst, s[o.shedPos:end]...)
	o.shedPos = end
	if o.shedFrames == 0 {
		o.dropShedLocked()
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
		b, tail := o.takeLocked(), o.tail
		o.tail = false
		if b == nil && !tail {
			o.flushing = false
			closing := o.closing
			o.mu.Unlock()
			if closing {
				c.wake()
			}
			return
		}
		o.wakeWaiterLocked()
		o.mu.Unlock()

		var err error
		if b != nil {
			err = o.write(*b)
			wire.PutRaw(b)
		} else {
			err = o.write(nil) // only what a TryWrite left
		}
		if err != nil {
			o.mu.Lock()
			// A piece that could not be written within WriteTimeout: the
			// client read (almost) nothing for that long, which is what a
			// slow consumer is (the error frame cannot follow a failed
			// write). After an overflow it was counted already.
			slow := !o.closing && transport.IsTimeout(err)
			o.startClosingLocked()
			if o.buf != nil {
				wire.PutRaw(o.buf)
				o.buf = nil
			}
			o.frames, o.tail = 0, false
			o.flushing = false
			o.mu.Unlock()
			if slow {
				c.h.Metrics.SlowConsumers.Inc()
				c.countError(parleyv1.ErrorCode_ERROR_CODE_SLOW_CONSUMER)
				c.log().Info("slow consumer: the client read nothing for the write timeout, closing", "write_timeout", c.h.Limits.WriteTimeout)
			} else {
				c.debug("write failed, closing", "err", err)
			}
			c.wake()
			return
		}
	}
}

// write writes b in pieces of at most flushChunk bytes that end where a
// frame does (a frame larger than flushChunk is a piece of its own), each
// with WriteTimeout, or at most a second after an overflow. The first
// write also sends what a TryWrite left (the transport puts it first); an
// empty b sends only that.
func (o *outbox) write(b []byte) error {
	c := o.c
	for first := true; first || len(b) > 0; first = false {
		end := len(b)
		if end > flushChunk {
			end = 0
			for end < len(b) {
				size := wire.HeaderSize + int(binary.BigEndian.Uint32(b[end:]))
				if end > 0 && end+size > flushChunk {
					break
				}
				end += size
			}
			end = min(end, len(b))
		}
		// The deadline is set under the lock: overflowLocked shortens it
		// for a write in flight, and setting it after unlocking could undo
		// that (the slow consumer then stayed connected for the whole
		// WriteTimeout).
		o.mu.Lock()
		timeout := c.h.Limits.WriteTimeout
		if o.overflowed {
			timeout = min(time.Second, timeout)
		}
		_ = c.t.SetWriteDeadline(time.Now().Add(timeout))
		o.mu.Unlock()
		if err := c.t.Write(b[:end]); err != nil {
			return err
		}
		b = b[end:]
	}
	return nil
}
