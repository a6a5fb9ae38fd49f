package registry

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"

	"github.com/parleychat/parley/libs/subject"
	"github.com/parleychat/parley/protocol/convid"
	"github.com/parleychat/parley/protocol/parleyv1"
	"github.com/parleychat/parley/protocol/wire"
)

// Message delivery. The messaging service publishes each stored message
// once per recipient user (subject.UserMessages, direct conversations) or
// once per room (subject.RoomMessages). Both are core NATS, at most once:
// a client that misses an event sees a gap in the conversation's seq with
// the next one and reads the missing messages from history, so what the
// client shows is still exactly once and in order.
//
// Each event is decoded once, checked, and encoded once as a
// Frame{message}; the same bytes are then queued on every target
// connection (the outbox copies them into its own buffer). Delivery never
// waits for a client. Message events of rooms and groups are sheddable
// (Events.Shed): a connection that is behind drops them, and the client
// reads them from history; a private message event is not, and a
// connection whose send queue overflows with those is closed with
// SLOW_CONSUMER, the rule for presence events too (conn's outbox).
//
// A connection gets events only while it has a session: Conn.Deliver
// checks it under the send queue's lock, under which the session is set
// (after the Session reply is queued) and cleared (by a logout, which
// drops the room events still queued).

// errMalformedEvent: a published event that does not decode as what its
// subject carries (a MessageEvent with a message, ...); it is logged and
// dropped.
var errMalformedEvent = errors.New("malformed message event")

// Start subscribes to subject.RoomMessagesAll: every message in any room is
// delivered to every authenticated connection on this gateway (every user
// is a member of the one room, "public"; rooms with members would filter
// here). Call Stop after the connections are gone.
func (r *Registry) Start() error {
	sub, err := r.nc.Subscribe(subject.RoomMessagesAll, r.onRoomMessage)
	if err != nil {
		return err
	}
	// NATS's default pending limits (512k messages, 64 MiB) stay: if the
	// gateway falls that far behind, dropping room events is the right
	// failure, since clients catch up from history.
	r.mu.Lock()
	r.roomSub = sub
	r.mu.Unlock()
	return nil
}

// Stop ends the room subscription and drops room events still waiting for
// their batched write (the connections are gone by then).
func (r *Registry) Stop() {
	r.mu.Lock()
	sub := r.roomSub
	r.roomSub = nil
	r.mu.Unlock()
	if sub != nil {
		_ = sub.Unsubscribe()
	}
	r.room.mu.Lock()
	r.room.stopped = true
	if r.room.timer != nil {
		r.room.timer.Stop()
	}
	r.room.buf, r.room.offs = nil, nil
	r.room.mu.Unlock()
	// Wait for a batch being written, if any: nothing is delivered after
	// Stop returns.
	r.room.fmu.Lock()
	r.room.fmu.Unlock()
}

// roomBatch batches room events into fewer writes. A room message goes to
// every connection, so at high rates the per-write cost (a syscall and a
// goroutine wake-up in the gateway, the same again in each client) is most
// of the fan-out's CPU. The first event after a quiet period is written at
// once; events arriving within window of the last room write's start wait
// until the window ends and then go out together, as one write per
// connection. So a room at r messages/s costs min(r, 1/window) writes per
// connection per second, and batching adds at most window of latency, only
// when events come faster than one per window.
//
// The fan-out runs on its own goroutine (flushRoom), never on the
// subscription's: events keep joining the next batch while one is written,
// so a fan-out that takes longer than window makes the next batch larger
// rather than the gateway later (written on the subscription's goroutine,
// each event waited in NATS's pending queue and, the window long past,
// went out alone: one write per event and connection just when the
// gateway was behind). A batch carries at most maxFrames and maxBytes (the
// connections' high-water mark, see conn's outbox): if more wait, the
// gateway has fallen that far behind and the oldest are shed for every
// connection (parley_gateway_events_shed_total{reason="gateway_behind"}),
// which each connection would have shed anyway; clients read them back
// from history.
//
// With window 0 every event is written alone, at once, on the
// subscription's goroutine.
type roomBatch struct {
	window              time.Duration
	maxFrames, maxBytes int

	mu          sync.Mutex // guards the fields below
	buf         []byte     // frames waiting, back to back
	offs        []int      // offset of each waiting frame in buf
	trimmed     int        // frames dropped from buf since the last batch (the fan-out was behind)
	last        time.Time  // when the last batch's fan-out started
	timer       *time.Timer
	running     bool // a flushRoom is scheduled or running: it takes what waits
	stopped     bool
	lastShedLog time.Time
	shedQuiet   int // frames shed since lastShedLog

	fmu   sync.Mutex // held while a batch is written, so batches go out one at a time, in order
	conns []Conn     // guarded by fmu; reused: the connections a batch goes to
}

// fanOutChunk is how many connections one goroutine writes a batch to.
const fanOutChunk = 512

// fanOut writes the batch to every connection, split over up to GOMAXPROCS
// goroutines: one write is a syscall of several microseconds, so one
// goroutine takes ~10 ms per 1,000 connections and a busy gateway's other
// cores would sit idle meanwhile. It returns when every connection has the
// batch (queued or written), so batches stay in order. A connection closed
// since the snapshot ignores it.
func fanOut(conns []Conn, ev *Events) {
	workers := min(runtime.GOMAXPROCS(0), (len(conns)+fanOutChunk-1)/fanOutChunk)
	if workers <= 1 {
		for _, c := range conns {
			c.Deliver(ev)
		}
		return
	}
	per := (len(conns) + workers - 1) / workers
	var wg sync.WaitGroup
	for i := 0; i < len(conns); i += per {
		part := conns[i:min(i+per, len(conns))]
		wg.Go(func() {
			for _, c := range part {
				c.Deliver(ev)
			}
		})
	}
	wg.Wait()
}

// onRoomMessage runs on the room subscription's goroutine, one message at a
// time, so every connection gets a room's messages in publish order.
func (r *Registry) onRoomMessage(msg *nats.Msg) {
	frame, _, err := messageFrame(msg.Data)
	if err != nil {
		r.log.Warn("room message dropped", "subject", msg.Subject, "err", err)
		return
	}
	b := &r.room
	if b.window <= 0 {
		b.fmu.Lock()
		defer b.fmu.Unlock()
		b.mu.Lock()
		stopped := b.stopped
		b.mu.Unlock()
		if !stopped {
			r.deliverRoom(&Events{Frames: frame, N: 1, Shed: true}, 0)
		}
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.stopped {
		return
	}
	b.offs = append(b.offs, len(b.buf))
	b.buf = append(b.buf, frame...)
	if len(b.offs) >= 2*b.maxFrames || len(b.buf) >= 2*b.maxBytes {
		b.trimLocked()
	}
	if b.running {
		return
	}
	b.running = true
	wait := b.window - time.Since(b.last)
	if wait <= 0 {
		go r.flushRoom()
		return
	}
	if b.timer == nil {
		b.timer = time.AfterFunc(wait, r.flushRoom)
	} else {
		b.timer.Reset(wait)
	}
}

// trimLocked drops the oldest waiting frames so that at most maxFrames
// and maxBytes wait (at least the newest frame stays).
func (b *roomBatch) trimLocked() {
	k := 0
	for k < len(b.offs)-1 && (len(b.offs)-k > b.maxFrames || len(b.buf)-b.offs[k] > b.maxBytes) {
		k++
	}
	if k == 0 {
		return
	}
	cut := b.offs[k]
	n := copy(b.buf, b.buf[cut:])
	b.buf = b.buf[:n]
	m := copy(b.offs, b.offs[k:])
	b.offs = b.offs[:m]
	for i := range b.offs {
		b.offs[i] -= cut
	}
	b.trimmed += k
}

// flushRoom writes the waiting batch, then the next ones while events
// keep coming faster than the window, each no sooner than window after
// the previous one started.
func (r *Registry) flushRoom() {
	b := &r.room
	for {
		b.mu.Lock()
		if b.stopped || len(b.offs) == 0 {
			b.running = false
			b.mu.Unlock()
			return
		}
		if wait := b.window - time.Since(b.last); wait > 0 {
			// Events came while the last batch was written, sooner than the
			// window allows: they wait for its end.
			if b.timer == nil {
				b.timer = time.AfterFunc(wait, r.flushRoom)
			} else {
				b.timer.Reset(wait)
			}
			b.mu.Unlock()
			return
		}
		b.trimLocked()
		ev := &Events{Frames: b.buf, N: len(b.offs), Last: b.offs[len(b.offs)-1], Shed: true}
		trimmed := b.trimmed
		b.buf, b.offs, b.trimmed = nil, nil, 0
		b.last = time.Now()
		b.mu.Unlock()

		b.fmu.Lock()
		r.deliverRoom(ev, trimmed)
		b.fmu.Unlock()
	}
}

// deliverRoom queues a batch of room frames on every authenticated
// connection (b.fmu held). trimmed frames older than the batch were shed
// for all of them.
func (r *Registry) deliverRoom(ev *Events, trimmed int) {
	b := &r.room
	r.amu.Lock()
	conns := b.conns[:0]
	for c := range r.authed {
		conns = append(conns, c)
	}
	r.amu.Unlock()
	if trimmed > 0 {
		r.m.EventsShed.WithLabelValues("gateway_behind").Add(float64(trimmed * len(conns)))
		r.noteTrimmed(trimmed)
	}
	// Counted before the writes: a client that has the batch finds it
	// counted (TestRoomBatching read the counters between the two).
	r.m.RoomWrites.Inc()
	r.m.RoomBatched.Add(float64(ev.N))
	fanOut(conns, ev)
	clear(conns) // no references to closed connections until the next batch
	b.conns = conns[:0]
}

// noteTrimmed logs room events shed because the fan-out fell behind, at
// most once per 10 s with the count since the last line.
func (r *Registry) noteTrimmed(n int) {
	b := &r.room
	b.mu.Lock()
	b.shedQuiet += n
	if time.Since(b.lastShedLog) < 10*time.Second {
		b.mu.Unlock()
		return
	}
	quiet := b.shedQuiet
	b.lastShedLog, b.shedQuiet = time.Now(), 0
	b.mu.Unlock()
	r.log.Warn("room fan-out behind: oldest room events shed for every connection (clients read them from history)",
		"events_since_last_log", quiet)
}

// deliverUserEvents queues an event published on uid's subject (already
// encoded as a frame) to each of uid's authenticated connections here. It
// runs on Run's goroutine, so a user's events are delivered in publish
// order.
func (r *Registry) deliverUserEvents(uid string, ev *Events) {
	r.amu.Lock()
	defer r.amu.Unlock()
	if u := r.users[uid]; u != nil {
		for _, mb := range u.conns {
			mb.c.Deliver(ev)
		}
	}
}

// deliverUser is deliverUserEvents for one frame that is never shed.
func (r *Registry) deliverUser(uid string, frame []byte) {
	r.deliverUserEvents(uid, &Events{Frames: frame, N: 1})
}

// sheddable reports whether message events of conversation conv may be
// shed (docs/protocol.md §11): those of rooms and groups. Private
// messages are never shed.
func sheddable(conv string) bool {
	k := convid.KindOf(conv)
	return k == convid.KindRoom || k == convid.KindGroup
}

// messageFrame turns a published parleyv1.MessageEvent into a
// length-prefixed Frame{message}, and returns the event's message. Decoding
// first checks what clients will check (valid protobuf, UTF-8 text), so a
// bad publisher cannot make every client see a malformed frame; the checked
// bytes are then framed as they are, not encoded again.
func messageFrame(data []byte) (frame []byte, msg *parleyv1.Message, err error) {
	ev := new(parleyv1.MessageEvent)
	if err := proto.Unmarshal(data, ev); err != nil {
		return nil, nil, fmt.Errorf("%w: %w", errMalformedEvent, err)
	}
	if ev.GetMessage() == nil {
		return nil, nil, fmt.Errorf("%w: no message", errMalformedEvent)
	}
	return wire.AppendBody(nil, frameMessageField, data), ev.GetMessage(), nil
}

// frameMessageField is the number of Frame's message member.
var frameMessageField = wire.BodyField("message")

// userEventFrame turns an event published on one of a user's subjects
// into its frame, checked the same way: "friend" (parleyv1.FriendEvent ->
// friend_event), "typing" (parleyv1.TypingEvent -> typing_event), "receipt"
// (parleyv1.ReceiptEvent -> receipt), "file" (parleyv1.FileEvent ->
// file_event), "call" (parleyv1.CallEvent -> call_event, from the
// media-relay). ok is false for other suffixes.
func userEventFrame(suffix string, data []byte) (frame []byte, ok bool, err error) {
	var f *parleyv1.Frame
	switch suffix {
	case "friend":
		ev := new(parleyv1.FriendEvent)
		err = proto.Unmarshal(data, ev)
		f = &parleyv1.Frame{Body: &parleyv1.Frame_FriendEvent{FriendEvent: ev}}
	case "typing":
		ev := new(parleyv1.TypingEvent)
		err = proto.Unmarshal(data, ev)
		f = &parleyv1.Frame{Body: &parleyv1.Frame_TypingEvent{TypingEvent: ev}}
	case "receipt":
		ev := new(parleyv1.ReceiptEvent)
		err = proto.Unmarshal(data, ev)
		f = &parleyv1.Frame{Body: &parleyv1.Frame_Receipt{Receipt: ev}}
	case "file":
		ev := new(parleyv1.FileEvent)
		err = proto.Unmarshal(data, ev)
		f = &parleyv1.Frame{Body: &parleyv1.Frame_FileEvent{FileEvent: ev}}
	case "call":
		ev := new(parleyv1.CallEvent)
		err = proto.Unmarshal(data, ev)
		f = &parleyv1.Frame{Body: &parleyv1.Frame_CallEvent{CallEvent: ev}}
	default:
		return nil, false, nil
	}
	if err != nil {
		return nil, true, fmt.Errorf("%w: %s: %w", errMalformedEvent, suffix, err)
	}
	frame, err = wire.AppendFrame(nil, f)
	return frame, true, err
}
