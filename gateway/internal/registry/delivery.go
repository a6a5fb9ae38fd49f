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
// waits for a client: a connection whose send queue overflows is closed
// with SLOW_CONSUMER, the rule for presence events too.
//
// Targets are pushed to with amu held, so once Deauthenticate (logout) or
// Remove has returned, no further message reaches that connection; and a
// connection gets events only once its Session reply is queued (Conn.Deliver
// checks the session, which the connection sets after queueing the reply).

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
	r.room.buf, r.room.frames = nil, 0
	r.room.mu.Unlock()
}

// roomBatch batches room events into fewer writes. A room message goes to
// every connection, so at high rates the per-write cost (a syscall and a
// goroutine wake-up in the gateway, the same again in each client) is most
// of the fan-out's CPU. The first event after a quiet period is written at
// once; events arriving within window of the last room write wait until the
// window ends and then go out together, as one write per connection. So a
// room at r messages/s costs min(r, 1/window) writes per connection per
// second, and batching adds at most window of latency, only when events
// come faster than one per window.
type roomBatch struct {
	window time.Duration

	mu        sync.Mutex // guards the fields below; held while a batch is delivered, so batches stay in order
	buf       []byte     // frames waiting, back to back
	frames    int
	last      time.Time   // when the last batch was delivered
	timer     *time.Timer // fires flushRoom at the end of the window
	scheduled bool        // timer is armed
	stopped   bool
	conns     []Conn // reused: the connections a batch goes to
}

// fanOutChunk is how many connections one goroutine writes a batch to.
const fanOutChunk = 512

// fanOut writes the batch to every connection, split over up to GOMAXPROCS
// goroutines: one write is a syscall of several microseconds, so one
// goroutine takes ~10 ms per 1,000 connections and a busy gateway's other
// cores would sit idle meanwhile. It returns when every connection has the
// batch (queued or written), so batches stay in order. A connection closed
// since the snapshot ignores it.
func fanOut(conns []Conn, frames []byte, n int) {
	workers := min(runtime.GOMAXPROCS(0), (len(conns)+fanOutChunk-1)/fanOutChunk)
	if workers <= 1 {
		for _, c := range conns {
			c.Deliver(frames, n)
		}
		return
	}
	per := (len(conns) + workers - 1) / workers
	var wg sync.WaitGroup
	for i := 0; i < len(conns); i += per {
		part := conns[i:min(i+per, len(conns))]
		wg.Go(func() {
			for _, c := range part {
				c.Deliver(frames, n)
			}
		})
	}
	wg.Wait()
}

// onRoomMessage runs on the room subscription's goroutine, one message at a
// time, so every connection gets a room's messages in publish order.
func (r *Registry) onRoomMessage(msg *nats.Msg) {
	frame, err := messageFrame(msg.Data)
	if err != nil {
		r.log.Warn("room message dropped", "subject", msg.Subject, "err", err)
		return
	}
	b := &r.room
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.stopped {
		return
	}
	b.buf = append(b.buf, frame...)
	b.frames++
	if b.scheduled {
		return
	}
	wait := b.window - time.Since(b.last)
	if wait <= 0 {
		r.deliverRoomLocked()
		return
	}
	b.scheduled = true
	if b.timer == nil {
		b.timer = time.AfterFunc(wait, r.flushRoom)
	} else {
		b.timer.Reset(wait)
	}
}

// flushRoom delivers the batch when its window ends.
func (r *Registry) flushRoom() {
	b := &r.room
	b.mu.Lock()
	defer b.mu.Unlock()
	b.scheduled = false
	if !b.stopped {
		r.deliverRoomLocked()
	}
}

// deliverRoomLocked queues the waiting room frames on every authenticated
// connection (r.room.mu held).
func (r *Registry) deliverRoomLocked() {
	b := &r.room
	if b.frames == 0 {
		return
	}
	b.last = time.Now()
	r.amu.Lock()
	conns := b.conns[:0]
	for c := range r.authed {
		conns = append(conns, c)
	}
	r.amu.Unlock()
	fanOut(conns, b.buf, b.frames)
	clear(conns) // no references to closed connections until the next batch
	b.conns = conns[:0]
	r.m.RoomWrites.Inc()
	r.m.RoomBatched.Add(float64(b.frames))
	// Connections copied the bytes: the buffer is reused, unless a burst
	// grew it large.
	if cap(b.buf) > 64<<10 {
		b.buf = nil
	} else {
		b.buf = b.buf[:0]
	}
	b.frames = 0
}

// deliverUser queues an event published on uid's subject (already encoded
// as a frame) to each of uid's authenticated connections here. It runs on
// Run's goroutine, so a user's events are delivered in publish order.
func (r *Registry) deliverUser(uid string, frame []byte) {
	r.amu.Lock()
	defer r.amu.Unlock()
	if u := r.users[uid]; u != nil {
		for _, mb := range u.conns {
			mb.c.Deliver(frame, 1)
		}
	}
}

// messageFrame turns a published parleyv1.MessageEvent into a
// length-prefixed Frame{message}. Decoding first checks what clients will
// check (valid protobuf, UTF-8 text), so a bad publisher cannot make every
// client see a malformed frame.
func messageFrame(data []byte) ([]byte, error) {
	ev := new(parleyv1.MessageEvent)
	if err := proto.Unmarshal(data, ev); err != nil {
		return nil, fmt.Errorf("%w: %w", errMalformedEvent, err)
	}
	if ev.GetMessage() == nil {
		return nil, fmt.Errorf("%w: no message", errMalformedEvent)
	}
	return wire.AppendFrame(nil, &parleyv1.Frame{Body: &parleyv1.Frame_Message{Message: ev}})
}

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
