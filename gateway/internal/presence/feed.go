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
	"github.com/parleychat/parley/libs/rpc"
	"github.com/parleychat/parley/libs/subject"
	"github.com/parleychat/parley/protocol/parleyv1"
	"github.com/parleychat/parley/protocol/wire"
)

// SnapshotChunk is the most users one PresenceSnapshot frame carries, and
// the page size the snapshot asks presence for.
const SnapshotChunk = 500

// Member is a connection receiving the feed.
type Member interface {
	// Push queues one encoded frame (with its length prefix; the bytes are
	// shared and must not be modified). It never blocks: a member that
	// cannot keep up closes itself (SLOW_CONSUMER). Live events use it.
	Push(frame []byte)
	// PushWait queues one encoded frame like Push but waits for room in
	// the member's send queue instead of overflowing; it is called only
	// from Join, on the member's own goroutine, for its snapshot and the
	// events buffered meanwhile. It reports false when the member is
	// closing (it closes itself as a slow consumer when it reads nothing
	// for too long).
	PushWait(frame []byte) bool
	// SlowConsumer closes the member with SLOW_CONSUMER; called when more
	// events piled up during its snapshot than its send queue holds.
	SlowConsumer()
}

// Feed holds the gateway's single subscription to subject.PresenceEvents and
// fans each event out to every member.
//
// Ordering invariant: a member first receives its snapshot (seq S, the seq
// of the list's first page), then exactly the events with seq > S, in
// arrival order. Join registers the member as pending before asking
// presence for the first page, so every event published after that page
// was read is either buffered or, once the snapshot is queued, pushed live.
// Later pages are read later and may already reflect some of those events;
// replaying them on top is harmless, since an event says what the user's
// state became (online with this name, or offline), so applying it again
// changes nothing, and the last event about a user decides its state
// whatever the snapshot said. Events with seq <= S are already reflected
// in every page and dropped, whether they were buffered or arrive after
// the snapshot: the list replies and the event stream travel on different
// subscriptions, so events older than the snapshot can still be in flight
// when it is sent. Events arrive in publish order, so the filter ends at
// the first event newer than S (and a presence whose seq restarted later
// is not filtered forever).
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

// Join adds m to the feed: it walks the online list page by page and
// pushes it to m as PresenceSnapshot frames (at most SnapshotChunk users
// each, users already sent in this snapshot left out, all with the first
// page's seq, the last frame with last=true), then the events that arrived
// meanwhile with a higher seq, and from then on every event. Join runs on
// m's own goroutine: the snapshot and the buffered events wait for room in
// m's send queue (PushWait) rather than counting as overflow, so a large
// snapshot reaches a client that reads; live events never wait.
//
// ctx is m's: when it ends (m's connection closed) the walk stops and m
// leaves the feed.
//
// If presence does not answer the first page, m gets a non-fatal Error
// (request_id 0) with the failure's code (UNAVAILABLE or TIMEOUT) instead
// of a snapshot, then the events as they come; the client can ask again
// with a WhoRequest. If a later page fails, the snapshot stops without a
// last=true frame and the same Error follows.
func (f *Feed) Join(ctx context.Context, m Member) {
	f.mu.Lock()
	f.members[m] = &memberState{}
	f.mu.Unlock()

	after, filtering, ok := f.snapshot(ctx, m)
	if !ok {
		f.Leave(m)
		return
	}
	// Release what was buffered meanwhile until nothing is left, then go
	// live under the lock, so no event slips between the two.
	for {
		f.mu.Lock()
		st := f.members[m]
		if st == nil {
			f.mu.Unlock()
			return // left while the snapshot was sent
		}
		if st.overflow {
			delete(f.members, m)
			f.mu.Unlock()
			m.SlowConsumer()
			return
		}
		pending := st.pending
		st.pending = nil
		if len(pending) == 0 {
			st.after, st.filtering, st.live = after, filtering, true
			f.mu.Unlock()
			return
		}
		f.mu.Unlock()
		for _, ev := range pending {
			if filtering {
				if ev.seq <= after {
					continue
				}
				filtering = false
			}
			if !m.PushWait(ev.frame) {
				f.Leave(m)
				return
			}
		}
	}
}

// listRetries are the pauses before asking presence again when it has no
// responder for the first page: presence restarting (or still starting
// next to this gateway) should not cost a client its snapshot.
var listRetries = []time.Duration{100 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond, time.Second}

// listPage fetches one page; the first page is retried while presence has
// no responder.
func (f *Feed) listPage(ctx context.Context, cursor string, first bool) (*internalv1.PresenceListReply, error) {
	page, err := f.List(ctx, cursor, SnapshotChunk)
	if !first {
		return page, err
	}
	for _, pause := range listRetries {
		if err == nil || rpcError(err).Code != parleyv1.ErrorCode_ERROR_CODE_UNAVAILABLE {
			break
		}
		select {
		case <-time.After(pause):
		case <-ctx.Done():
			return nil, err
		}
		page, err = f.List(ctx, cursor, SnapshotChunk)
	}
	return page, err
}

// snapshot walks the online list and pushes it to m. It returns the
// snapshot's seq and whether events must be filtered by it (false when not
// even the first page came), and false in ok when m is closing or ctx
// ended.
func (f *Feed) snapshot(ctx context.Context, m Member) (after uint64, filtering, ok bool) {
	seen := make(map[string]struct{})
	cursor := ""
	for first := true; ; first = false {
		page, err := f.listPage(ctx, cursor, first)
		if err != nil && ctx.Err() != nil {
			return after, false, false // m has gone: nobody to tell
		}
		if err != nil {
			f.log.Warn("presence list for snapshot", "err", err, "first_page", first)
			e := rpcError(err)
			frame, _ := wire.AppendFrame(nil, wire.ErrorFrame(0, e.Code, "online list unavailable: "+e.Message, false))
			return after, !first, m.PushWait(frame)
		}
		if first {
			after = page.GetSeq()
		}
		last := page.GetNextCursor() == ""
		for _, frame := range snapshotFrames(page.GetUsers(), seen, after, last) {
			if !m.PushWait(frame) {
				return after, true, false
			}
		}
		if last {
			return after, true, true
		}
		cursor = page.GetNextCursor()
	}
}

// Leave removes m from the feed.
func (f *Feed) Leave(m Member) {
	f.mu.Lock()
	delete(f.members, m)
	f.mu.Unlock()
}

// List asks presence for one page of the online list (cursor "" for the
// first; limit 0 for presence's default, values above its maximum are
// lowered by presence).
func (f *Feed) List(ctx context.Context, cursor string, limit uint32) (*internalv1.PresenceListReply, error) {
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	req := &internalv1.PresenceListRequest{Cursor: cursor, Limit: limit}
	reply := new(internalv1.PresenceListReply)
	if err := rpc.Request(ctx, f.nc, subject.PresenceList, nil, req, reply); err != nil {
		return nil, err
	}
	return reply, nil
}

// snapshotFrames encodes one page of the list as PresenceSnapshot frames of
// at most SnapshotChunk users (a page may hold more: see
// internalv1.PresenceListReply), leaving out users already in seen (a
// walk may list a user twice) and adding the rest to it. The last page's
// last frame has last=true and is sent even when empty; other empty
// frames are not sent.
func snapshotFrames(users []*parleyv1.OnlineUser, seen map[string]struct{}, seq uint64, last bool) [][]byte {
	fresh := make([]*parleyv1.OnlineUser, 0, len(users))
	for _, u := range users {
		if _, dup := seen[u.GetUserId()]; !dup {
			seen[u.GetUserId()] = struct{}{}
			fresh = append(fresh, u)
		}
	}
	var out [][]byte
	for {
		n := min(len(fresh), SnapshotChunk)
		final := last && n == len(fresh)
		if n > 0 || final {
			snap := &parleyv1.PresenceSnapshot{Users: fresh[:n], Seq: seq, Last: final}
			frame, err := wire.AppendFrame(nil, &parleyv1.Frame{Body: &parleyv1.Frame_PresenceSnapshot{PresenceSnapshot: snap}})
			if err == nil {
				out = append(out, frame)
			}
		}
		fresh = fresh[n:]
		if len(fresh) == 0 {
			return out
		}
	}
}
