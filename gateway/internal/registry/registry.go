// Package registry tracks a gateway's client connections: every open one
// (so shutdown can reach them all), the authenticated ones with their
// presence records (for heartbeats and resyncs), per user the one NATS
// subscription to subject.UserAll that brings that user's events (session
// kicks, direct messages) to this gateway, and the gateway's single
// subscription to the rooms' messages, fanned out to every authenticated
// connection (delivery.go).
package registry

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"

	"github.com/parleychat/parley/gateway/internal/metrics"
	"github.com/parleychat/parley/libs/proto/internalv1"
	"github.com/parleychat/parley/libs/subject"
	"github.com/parleychat/parley/protocol/parleyv1"
	"github.com/parleychat/parley/protocol/wire"
)

// Conn is what the registry needs from a client connection.
type Conn interface {
	// Deliver queues ev's frames (shared with other connections: not
	// modified, not kept) if the connection has a session. It must not
	// block: a connection that cannot keep up sheds what ev allows and
	// closes itself with SLOW_CONSUMER only for the rest.
	Deliver(ev *Events)
	// EndSession tells the client its session ended (SessionEnded with
	// reason and message) and closes the connection. It must not block.
	EndSession(reason parleyv1.ErrorCode, message string)
	// Shutdown closes the connection with a fatal SERVER_SHUTDOWN error. It
	// must not block.
	Shutdown()
	// P2PClosed tells the connection that direct session id has closed
	// (a P2PEvent{CLOSED} for it is about to be delivered): it stops
	// relaying it, if it did. It must not block.
	P2PClosed(id string)
}

// userQueue is the capacity of the channel all per-user subscriptions
// deliver into. A per-user subscription with a callback would cost a
// goroutine per online user; channel subscriptions share one dispatcher.
// When the channel is full NATS drops the message and reports a slow
// consumer. Both kinds of per-user event tolerate that: the auth service
// has already revoked a kicked session, so a lost kick only delays the
// disconnect to the next request; a lost message event is at-most-once
// delivery by design, and clients fetch what they missed from history
// when the next message shows a gap in seq.
const userQueue = 8192

// Registry is safe for concurrent use.
type Registry struct {
	nc   *nats.Conn
	log  *slog.Logger
	m    *metrics.Metrics
	msgs chan *nats.Msg

	mu      sync.Mutex // guards closed, all and roomSub; taken before amu when both are held
	closed  bool       // Shutdown was called: Add refuses
	all     map[Conn]struct{}
	roomSub *nats.Subscription // to subject.RoomMessagesAll while started
	wg      sync.WaitGroup     // one count per added connection, until Remove

	// amu guards the authenticated side. It is apart from mu because a
	// room message is pushed to every authenticated connection with amu
	// held (so none is delivered after a logout returned): connections
	// opening and closing without a session never wait for that walk.
	amu    sync.Mutex
	authed map[Conn]*internalv1.Conn
	users  map[string]*user
	bySub  map[*nats.Subscription]*user

	room roomBatch // room events waiting for their batched write (delivery.go)
}

// user is one user with at least one authenticated connection here.
type user struct {
	id    string
	sub   *nats.Subscription // to subject.UserAll(id); nil if subscribing failed
	conns []member
}

type member struct {
	c   Conn
	rec *internalv1.Conn // its session and ids
}

// Events is a run of encoded event frames for Conn.Deliver.
type Events struct {
	Frames []byte // length-prefixed frames, back to back
	N      int    // how many
	Last   int    // offset of the last one in Frames
	// Shed: the frames are message events of rooms or groups, which a
	// connection that is behind may drop (docs/protocol.md §11): clients
	// read them back from history (§15.3).
	Shed bool
	// OwnKey is set on one message event of a user's own message: its
	// client_key. The connection that sent it (and is still waiting for
	// the SendReply) may hold the event back to write it with the reply.
	OwnKey string
}

// New returns an empty registry; call Run to dispatch per-user messages.
//
// batch is the room batching window: a room event arriving less than
// batch after the previous room write waits for the window's end and
// goes out with the others that arrived meanwhile, in one write per
// connection. 0 writes every event at once. A batch carries at most
// maxFrames frames and maxBytes bytes (the connections' high-water mark):
// when the fan-out falls further behind, the oldest waiting events are
// dropped (every connection would drop them).
func New(nc *nats.Conn, log *slog.Logger, m *metrics.Metrics, batch time.Duration, maxFrames, maxBytes int) *Registry {
	return &Registry{
		room:   roomBatch{window: batch, maxFrames: max(1, maxFrames), maxBytes: max(1, maxBytes)},
		nc:     nc,
		log:    log,
		m:      m,
		msgs:   make(chan *nats.Msg, userQueue),
		all:    make(map[Conn]struct{}),
		authed: make(map[Conn]*internalv1.Conn),
		users:  make(map[string]*user),
		bySub:  make(map[*nats.Subscription]*user),
	}
}

// Add records a new connection. It returns false once Shutdown has been
// called; the caller must then close the connection without serving it.
// Every successful Add must be followed by one Remove.
func (r *Registry) Add(c Conn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return false
	}
	r.all[c] = struct{}{}
	r.wg.Add(1)
	return true
}

// Remove forgets a connection. If it was authenticated, its presence record
// is returned (and its user reference dropped), so the caller can tell
// presence it is gone.
func (r *Registry) Remove(c Conn) *internalv1.Conn {
	r.mu.Lock()
	if _, ok := r.all[c]; !ok {
		r.mu.Unlock()
		return nil
	}
	delete(r.all, c)
	r.mu.Unlock()
	// Authenticate holds mu from its check of all to its update of the
	// authenticated side, so it cannot slip in between these two steps.
	r.amu.Lock()
	rec := r.deauthLocked(c)
	r.amu.Unlock()
	r.wg.Done()
	return rec
}

// Authenticate records that c now holds the session described by rec, and
// subscribes to the user's subjects if c is the user's first connection on
// this gateway. rec must not be modified afterwards. It reports whether it
// made a new subscription: the caller then flushes the NATS connection
// (outside the registry's locks) so the server has registered it before
// the client learns its session has started.
func (r *Registry) Authenticate(c Conn, rec *internalv1.Conn) (subscribed bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.all[c]; !ok {
		return false
	}
	r.amu.Lock()
	defer r.amu.Unlock()
	if _, ok := r.authed[c]; ok {
		r.deauthLocked(c)
	}
	r.authed[c] = rec
	r.m.Authenticated.Inc()
	u := r.users[rec.GetUserId()]
	if u == nil {
		u = &user{id: rec.GetUserId()}
		sub, err := r.nc.ChanSubscribe(subject.UserAll(u.id), r.msgs)
		if err != nil {
			// Only a closed NATS connection or an invalid subject gets
			// here; the session works, it just misses per-user events.
			r.log.Warn("subscribe user subjects", "user", u.id, "err", err)
		} else {
			u.sub = sub
			r.bySub[sub] = u
			subscribed = true
		}
		r.users[u.id] = u
	}
	u.conns = append(u.conns, member{c: c, rec: rec})
	return subscribed
}

// Deauthenticate forgets c's session (logout) and returns its record, or nil
// if c had none. The user's subscription ends with its last connection.
func (r *Registry) Deauthenticate(c Conn) *internalv1.Conn {
	r.amu.Lock()
	defer r.amu.Unlock()
	return r.deauthLocked(c)
}

func (r *Registry) deauthLocked(c Conn) *internalv1.Conn {
	rec, ok := r.authed[c]
	if !ok {
		return nil
	}
	delete(r.authed, c)
	r.m.Authenticated.Dec()
	u := r.users[rec.GetUserId()]
	if u == nil {
		return rec
	}
	for i, mb := range u.conns {
		if mb.c == c {
			u.conns[i] = u.conns[len(u.conns)-1]
			u.conns[len(u.conns)-1] = member{}
			u.conns = u.conns[:len(u.conns)-1]
			break
		}
	}
	if len(u.conns) == 0 {
		delete(r.users, u.id)
		if u.sub != nil {
			delete(r.bySub, u.sub)
			_ = u.sub.Unsubscribe()
		}
	}
	return rec
}

// Count is the number of authenticated connections.
func (r *Registry) Count() int {
	r.amu.Lock()
	defer r.amu.Unlock()
	return len(r.authed)
}

// Conns returns the presence records of all authenticated connections.
func (r *Registry) Conns() []*internalv1.Conn {
	r.amu.Lock()
	defer r.amu.Unlock()
	out := make([]*internalv1.Conn, 0, len(r.authed))
	for _, rec := range r.authed {
		out = append(out, rec)
	}
	return out
}

// Shutdown refuses new connections and tells every open one to close with
// SERVER_SHUTDOWN. Wait then waits until all of them are removed.
func (r *Registry) Shutdown() { r.ShutdownOver(0) }

// drainStep is how often ShutdownOver closes its next share of the
// connections.
const drainStep = 100 * time.Millisecond

// ShutdownOver is Shutdown with the connections' closing spread evenly over
// period, a share every 100 ms, so that their clients (which reconnect at
// once on SERVER_SHUTDOWN) arrive at the other gateways gradually instead
// of all in the same moment; the connections not yet closed are served as
// usual meanwhile. New connections are refused from the start. Period 0
// (or under 200 ms) closes them all at once. It returns when the last
// share has been told to close.
func (r *Registry) ShutdownOver(period time.Duration) {
	r.mu.Lock()
	r.closed = true
	conns := make([]Conn, 0, len(r.all))
	for c := range r.all {
		conns = append(conns, c)
	}
	r.mu.Unlock()
	steps := int(period / drainStep)
	if steps < 2 {
		steps = 1
	}
	per := (len(conns) + steps - 1) / steps // ceil: the last step may be short
	if per == 0 {
		return
	}
	tick := time.NewTicker(drainStep)
	defer tick.Stop()
	for i := 0; i < len(conns); i += per {
		if i > 0 {
			<-tick.C
		}
		for _, c := range conns[i:min(i+per, len(conns))] {
			c.Shutdown() // a connection that ended meanwhile ignores it
		}
	}
}

// Wait blocks until every added connection has been removed. Call it only
// after Shutdown.
func (r *Registry) Wait() { r.wg.Wait() }

// Run dispatches messages published on users' subjects until ctx ends.
// Subjects are subject.UserPrefix(user) + suffix; the suffixes handled:
//
//	kick  internalv1.SessionKick: end that session's connections here,
//	      except the one it names (see kick).
//	msg      parleyv1.MessageEvent (subject.UserMessages): a Frame{message}
//	         to each of the user's authenticated connections here.
//	friend   parleyv1.FriendEvent (subject.UserFriendEvents): Frame{friend_event}, the same way.
//	typing   parleyv1.TypingEvent (subject.UserTyping): Frame{typing_event}.
//	receipt  parleyv1.ReceiptEvent (subject.UserReceipts): Frame{receipt}.
//	file     parleyv1.FileEvent (subject.UserFileEvents): Frame{file_event}.
//	call     parleyv1.CallEvent (subject.UserCallEvents): Frame{call_event}.
//	p2p      parleyv1.P2PEvent (subject.UserP2PEvents): Frame{p2p_event};
//	         a CLOSED one first detaches its session from the user's
//	         connections here (Conn.P2PClosed).
//
// Unknown suffixes are ignored (later releases add per-user events).
func (r *Registry) Run(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case msg := <-r.msgs:
			r.dispatch(msg)
		}
	}
}

func (r *Registry) dispatch(msg *nats.Msg) {
	r.amu.Lock()
	u := r.bySub[msg.Sub]
	var uid string
	if u != nil {
		uid = u.id
	}
	r.amu.Unlock()
	if u == nil {
		return // the user's last connection went while this was queued
	}
	switch suffix := strings.TrimPrefix(msg.Subject, subject.UserPrefix(uid)); suffix {
	case "kick":
		kick := new(internalv1.SessionKick)
		if err := proto.Unmarshal(msg.Data, kick); err != nil {
			r.log.Warn("malformed session kick", "user", uid, "err", err)
			return
		}
		r.kick(uid, kick)
	case "msg":
		frame, m, err := messageFrame(msg.Data)
		if err != nil {
			r.log.Warn("user message dropped", "user", uid, "err", err)
			return
		}
		ev := &Events{Frames: frame, N: 1, Shed: sheddable(m.GetConversation())}
		if m.GetSenderId() == uid {
			ev.OwnKey = m.GetClientKey()
		}
		r.deliverUserEvents(uid, ev)
	case "p2p":
		ev := new(parleyv1.P2PEvent)
		if err := proto.Unmarshal(msg.Data, ev); err != nil {
			r.log.Warn("user event dropped", "user", uid, "suffix", "p2p", "err", err)
			return
		}
		frame, err := wire.AppendFrame(nil, &parleyv1.Frame{Body: &parleyv1.Frame_P2PEvent{P2PEvent: ev}})
		if err != nil {
			r.log.Warn("user event dropped", "user", uid, "suffix", "p2p", "err", err)
			return
		}
		if ev.GetKind() == parleyv1.P2PEvent_KIND_CLOSED && ev.GetSession().GetSessionId() != "" {
			// Before the event: no relayed packet follows it.
			r.p2pClosed(uid, ev.GetSession().GetSessionId())
		}
		r.deliverUser(uid, frame)
	default:
		frame, ok, err := userEventFrame(suffix, msg.Data)
		switch {
		case !ok:
			r.log.Debug("ignoring user event", "user", uid, "suffix", suffix)
		case err != nil:
			r.log.Warn("user event dropped", "user", uid, "suffix", suffix, "err", err)
		default:
			r.deliverUser(uid, frame)
		}
	}
}

// p2pClosed tells each of uid's connections here that direct session id
// has closed.
func (r *Registry) p2pClosed(uid, id string) {
	r.amu.Lock()
	defer r.amu.Unlock()
	if u := r.users[uid]; u != nil {
		for _, mb := range u.conns {
			mb.c.P2PClosed(id)
		}
	}
}

// kick ends the connections of uid holding kick's session (SessionEnded,
// then the close), except the one kick names by except_gateway_id and
// except_conn_id: the connection whose logout or resume made auth publish
// the kick, which stays open (without a session after a logout, with the
// session after a resume).
func (r *Registry) kick(uid string, kick *internalv1.SessionKick) {
	var targets []Conn
	r.amu.Lock()
	if u := r.users[uid]; u != nil {
		for _, mb := range u.conns {
			if mb.rec.GetSessionId() == kick.GetSessionId() && !spared(kick, mb.rec) {
				targets = append(targets, mb.c)
			}
		}
	}
	r.amu.Unlock()
	reason := kick.GetReason()
	if reason == parleyv1.ErrorCode_ERROR_CODE_UNSPECIFIED {
		reason = parleyv1.ErrorCode_ERROR_CODE_SESSION_REVOKED
	}
	msg := kick.GetMessage()
	if msg == "" {
		msg = "session ended"
	}
	for _, c := range targets {
		r.log.Info("session kicked", "user", uid, "session", kick.GetSessionId(), "reason", reason.String())
		c.EndSession(reason, msg)
	}
}

// spared reports whether kick names rec's connection as the one to keep.
func spared(kick *internalv1.SessionKick, rec *internalv1.Conn) bool {
	return kick.GetExceptConnId() != "" && kick.GetExceptConnId() == rec.GetConnId() &&
		kick.GetExceptGatewayId() == rec.GetGatewayId()
}
