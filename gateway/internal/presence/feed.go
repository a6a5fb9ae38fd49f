// Package presence is the gateway's side of the presence service: the online
// list feed relayed to clients (PresenceSnapshot then PresenceChange events)
// and the heartbeat that keeps presence's view of this gateway's connections
// right.
package presence

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"

	"github.com/parleychat/parley/libs/proto/internalv1"
	"github.com/parleychat/parley/libs/proto/parleyv1"
	"github.com/parleychat/parley/libs/rpc"
	"github.com/parleychat/parley/libs/subject"
	"github.com/parleychat/parley/libs/wire"
)

// SnapshotChunk is the most users one PresenceSnapshot frame carries.
const SnapshotChunk = 500

// Member is a connection receiving the feed.
type Member interface {
	// Push queues one encoded frame (with its length prefix; the bytes are
	// shared and must not be modified). It never blocks: a member that
	// cannot keep up closes itself (SLOW_CONSUMER).
	Push(frame []byte)
	// SlowConsumer closes the member with SLOW_CONSUMER; called when more
	// events piled up during its snapshot than its send queue holds.
	SlowConsumer()
}

// Feed holds the gateway's single subscription to subject.PresenceEvents and
// fans each event out to every member.
//
// Ordering invariant: a member first receives its snapshot (seq S), then
// exactly the events with seq > S, in arrival order. Join registers the
// member as pending before asking presence for the list, so every event
// published after the list was computed is either buffered or, once the
// snapshot is queued, pushed live. Events with seq <= S are already
// reflected in the snapshot and dropped, whether they were buffered or
// arrive after the snapshot: the list reply and the event stream travel on
// different subscriptions, so events older than the snapshot can still be
// in flight when it is sent. Events arrive in publish order, so the filter
// ends at the first event newer than S (and a presence whose seq restarted
// later is not filtered forever).
type Feed struct {
	nc          *nats.Conn
	log         *slog.Logger
	timeout     time.Duration
	maxBuffered int

	mu      sync.Mutex // guards members and sub
	members map[Member]*memberState
	sub     *nats.Subscription
}

type memberState struct {
	live      bool    // snapshot sent: push events directly
	filtering bool    // drop events with seq <= after
	after     uint64  // the snapshot's seq
	pending   []event // events received while the snapshot was fetched
	overflow  bool    // pending exceeded maxBuffered
}

// deliver pushes ev to m unless it is older than m's snapshot.
func (st *memberState) deliver(m Member, ev event) {
	if st.filtering {
		if ev.seq <= st.after {
			return
		}
		st.filtering = false
	}
	m.Push(ev.frame)
}

type event struct {
	seq   uint64
	frame []byte
}

// NewFeed returns a feed; requestTimeout bounds the list request and
// maxBuffered the events kept for one member while its snapshot is fetched.
func NewFeed(nc *nats.Conn, log *slog.Logger, requestTimeout time.Duration, maxBuffered int) *Feed {
	return &Feed{nc: nc, log: log, timeout: requestTimeout, maxBuffered: maxBuffered, members: make(map[Member]*memberState)}
}

// Start subscribes to the presence events.
func (f *Feed) Start() error {
	sub, err := f.nc.Subscribe(subject.PresenceEvents, f.onEvent)
	if err != nil {
		return err
	}
	// Presence events are small and must not be dropped for a busy
	// gateway: allow a deep backlog before NATS declares a slow consumer.
	_ = sub.SetPendingLimits(1<<20, 256<<20)
	f.mu.Lock()
	f.sub = sub
	f.mu.Unlock()
	return nil
}

// Stop ends the subscription.
func (f *Feed) Stop() {
	f.mu.Lock()
	sub := f.sub
	f.sub = nil
	f.mu.Unlock()
	if sub != nil {
		_ = sub.Unsubscribe()
	}
}

func (f *Feed) onEvent(msg *nats.Msg) {
	ch := new(parleyv1.PresenceChange)
	if err := proto.Unmarshal(msg.Data, ch); err != nil {
		f.log.Warn("malformed presence event", "err", err)
		return
	}
	frame, err := wire.AppendFrame(nil, &parleyv1.Frame{Body: &parleyv1.Frame_PresenceChange{PresenceChange: ch}})
	if err != nil {
		f.log.Warn("encode presence event", "err", err)
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	ev := event{seq: ch.GetSeq(), frame: frame}
	for m, st := range f.members {
		switch {
		case st.live:
			st.deliver(m, ev)
		case len(st.pending) < f.maxBuffered:
			st.pending = append(st.pending, ev)
		default:
			st.overflow = true
		}
	}
}

// Join adds m to the feed: it fetches the online list, pushes it to m as
// PresenceSnapshot frames (at most SnapshotChunk users each, the last with
// last=true, all with the list's seq), then the events that arrived
// meanwhile with a higher seq, and from then on every event.
//
// If presence does not answer, m gets a non-fatal Error (request_id 0) with
// the failure's code (UNAVAILABLE or TIMEOUT) instead of a snapshot, then
// the events as they come; the client can ask again with a WhoRequest.
func (f *Feed) Join(ctx context.Context, m Member) {
	f.mu.Lock()
	f.members[m] = &memberState{}
	f.mu.Unlock()

	list, err := f.List(ctx)

	f.mu.Lock()
	defer f.mu.Unlock()
	st := f.members[m]
	if st == nil {
		return // left while the list was fetched
	}
	if st.overflow {
		delete(f.members, m)
		m.SlowConsumer()
		return
	}
	if err != nil {
		f.log.Warn("presence list for snapshot", "err", err)
		e := rpcError(err)
		frame, _ := wire.AppendFrame(nil, wire.ErrorFrame(0, e.Code, "online list unavailable: "+e.Message, false))
		m.Push(frame)
	} else {
		st.after, st.filtering = list.GetSeq(), true
		for _, frame := range snapshotFrames(list) {
			m.Push(frame)
		}
	}
	for _, ev := range st.pending {
		st.deliver(m, ev)
	}
	st.pending = nil
	st.live = true
}

// Leave removes m from the feed.
func (f *Feed) Leave(m Member) {
	f.mu.Lock()
	delete(f.members, m)
	f.mu.Unlock()
}

// List asks presence for the whole online list.
func (f *Feed) List(ctx context.Context) (*internalv1.PresenceListReply, error) {
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	reply := new(internalv1.PresenceListReply)
	if err := rpc.Request(ctx, f.nc, subject.PresenceList, nil, nil, reply); err != nil {
		return nil, err
	}
	return reply, nil
}

// snapshotFrames splits list into encoded PresenceSnapshot frames.
func snapshotFrames(list *internalv1.PresenceListReply) [][]byte {
	users := list.GetUsers()
	var out [][]byte
	for {
		n := min(len(users), SnapshotChunk)
		snap := &parleyv1.PresenceSnapshot{Users: users[:n], Seq: list.GetSeq(), Last: n == len(users)}
		frame, err := wire.AppendFrame(nil, &parleyv1.Frame{Body: &parleyv1.Frame_PresenceSnapshot{PresenceSnapshot: snap}})
		if err == nil {
			out = append(out, frame)
		}
		users = users[n:]
		if len(users) == 0 {
			return out
		}
	}
}
