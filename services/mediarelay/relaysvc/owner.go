package relaysvc

import (
	"context"
	"errors"
	"hash/fnv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/parleychat/parley/libs/identity"
	"github.com/parleychat/parley/libs/proto/internalv1"
	"github.com/parleychat/parley/libs/service"
	"github.com/parleychat/parley/libs/subject"
	"github.com/parleychat/parley/protocol/parleyv1"
)

// Ownership: how long things are kept around.
const (
	// goneFor is how long a deleted call is remembered, so a late copy
	// of an older revision does not bring it back.
	goneFor = time.Minute
	// leftoverAfter is how long an ENDED record may stay before the owner
	// (or its successor) deletes it and its pointers: the replica that
	// ended it normally does so at once, unless it died meanwhile.
	leftoverAfter = 5 * time.Second
	// workTimeout bounds a tick's work on one call (its KV reads and
	// writes), so one stuck call cannot hold up the others.
	workTimeout = 2 * time.Second
)

// errOwned: a takeover found the call already has another owner.
var errOwned = errors.New("call already taken over")

// owner is the replica's view of every call (from the KV watch and its
// own writes) and of the other replicas (from their heartbeats), and the
// forwarders of the calls it owns.
type owner struct {
	s *Service

	mu         sync.Mutex // guards calls, alive, listenFrom and aliveSub
	calls      map[string]*tracked
	alive      map[string]time.Time // other replicas' last heartbeat
	listenFrom time.Time            // when heartbeats were first heard: no one is judged dead before DeadAfter
	aliveSub   *nats.Subscription
}

// tracked is one call as this replica last saw it.
type tracked struct {
	rec       *internalv1.CallRecord // never changed once stored: replaced by newer revisions
	rev       uint64
	gone      time.Time  // when it was deleted; zero while it exists
	endedSeen time.Time  // when it was first seen ENDED
	fwd       *forwarder // non-nil while this replica forwards its media
}

func newOwner(s *Service) *owner {
	return &owner{s: s, calls: map[string]*tracked{}, alive: map[string]time.Time{}}
}

// listen subscribes to the replicas' heartbeats (once; open may be retried).
func (o *owner) listen() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.aliveSub != nil {
		return nil
	}
	sub, err := o.s.nc.Subscribe(subject.MediaRelayAlive, func(m *nats.Msg) {
		id := string(m.Data)
		if id == o.s.id || !service.ValidID(id) {
			return
		}
		now := o.s.now()
		o.mu.Lock()
		o.alive[id] = now
		o.mu.Unlock()
	})
	if err != nil {
		return err
	}
	o.aliveSub, o.listenFrom = sub, o.s.now()
	return nil
}

// apply stores revision rev of call id's record (from the watch or this
// replica's own write; older revisions than the one held are ignored) and
// starts or stops forwarding as the record says.
func (o *owner) apply(id string, rec *internalv1.CallRecord, rev uint64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	t := o.calls[id]
	if t == nil {
		t = &tracked{}
		o.calls[id] = t
	} else if rev <= t.rev {
		return
	}
	t.rec, t.rev = rec, rev
	if !t.gone.IsZero() {
		return // deleted at a later revision
	}
	switch {
	case ended(rec):
		if t.endedSeen.IsZero() {
			t.endedSeen = o.s.now()
		}
		o.stopForwarding(t, true)
	case rec.GetOwner() == o.s.id:
		if t.fwd == nil {
			f, err := newForwarder(o.s, id)
			if err != nil {
				o.s.log.Error("forward call media", "call", id, "err", err)
				return
			}
			t.fwd = f
		}
		t.fwd.update(rec, rev)
	default:
		o.stopForwarding(t, false)
	}
}

// remove marks call id deleted at revision rev; its owner sends the empty
// roster that ends it at the gateways.
func (o *owner) remove(id string, rev uint64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	t := o.calls[id]
	if t == nil {
		t = &tracked{}
		o.calls[id] = t
	} else if rev != 0 && rev <= t.rev {
		return
	}
	t.rev, t.gone = max(t.rev, rev), o.s.now()
	o.stopForwarding(t, true)
}

// forget drops a call this replica created and withdrew.
func (o *owner) forget(id string) { o.remove(id, 0) }

// stopForwarding ends t's forwarder, if any; ended: the call is over, so
// the gateways are sent the empty roster. Call with o.mu held.
func (o *owner) stopForwarding(t *tracked, ended bool) {
	if t.fwd != nil {
		t.fwd.stop(ended, t.rev)
		t.fwd = nil
	}
}

// watchLoop keeps the calls from the KV watch until ctx ends (rewatching
// after a failure); then this replica stops forwarding.
func (o *owner) watchLoop(ctx context.Context) {
	defer o.stopAll()
	for ctx.Err() == nil && !o.s.nc.IsClosed() {
		if err := o.watch(ctx); err != nil && ctx.Err() == nil && !o.s.nc.IsClosed() {
			o.s.log.Warn("watch calls", "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}
}

func (o *owner) watch(ctx context.Context) error {
	w, err := o.s.kv.Watch(ctx, callKey("*"))
	if err != nil {
		return err
	}
	defer func() { _ = w.Stop() }()
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-w.Updates():
			if !ok {
				return errors.New("watch closed")
			}
			if e == nil || !isCallKey(e.Key()) {
				continue // nil: the current values have all been delivered
			}
			id := callIDOf(e.Key())
			if e.Operation() != jetstream.KeyValuePut {
				o.remove(id, e.Revision())
				continue
			}
			rec := new(internalv1.CallRecord)
			if err := proto.Unmarshal(e.Value(), rec); err != nil || rec.GetCall() == nil {
				o.s.log.Warn("undecodable call record", "key", e.Key(), "err", err)
				continue
			}
			o.apply(id, rec, e.Revision())
		}
	}
}

// stopAll stops every forwarder (this replica is stopping: the others take
// its calls over).
func (o *owner) stopAll() {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, t := range o.calls {
		o.stopForwarding(t, false)
	}
}

// tickLoop heartbeats every Config.Heartbeat, from a goroutine of its own,
// and each Config.Heartbeat takes over the calls of dead replicas and runs
// the owned calls' timers, until ctx ends. The heartbeats never wait for
// that work: a replica busy with many calls, or with a slow KV, must not
// look dead to the others.
func (o *owner) tickLoop(ctx context.Context) {
	defer func() {
		o.mu.Lock()
		if o.aliveSub != nil {
			_ = o.aliveSub.Unsubscribe()
		}
		o.mu.Unlock()
	}()
	beats := make(chan struct{})
	go func() {
		defer close(beats)
		o.heartbeat(ctx)
	}()
	defer func() { <-beats }()
	t := time.NewTicker(o.s.cfg.Heartbeat)
	defer t.Stop()
	for {
		o.tick(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// heartbeat publishes this replica's id on MediaRelayAlive every
// Config.Heartbeat until ctx ends.
func (o *owner) heartbeat(ctx context.Context) {
	t := time.NewTicker(o.s.cfg.Heartbeat)
	defer t.Stop()
	for {
		if err := o.s.nc.Publish(subject.MediaRelayAlive, []byte(o.s.id)); err != nil {
			o.s.log.Debug("heartbeat", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// work is what one tick found to do for a call, done after o.mu is let go.
type work struct {
	id       string
	rec      *internalv1.CallRecord
	takeover bool       // its owner is dead and this replica is the chosen one
	deadline bool       // its ring deadline passed
	leftover bool       // an ENDED record nobody cleaned up
	lost     []lostSeat // participants unseen for ParticipantTimeout
}

// tick looks at every call once (see tickLoop).
func (o *owner) tick(ctx context.Context) {
	now := o.s.now()
	var todo []work
	o.mu.Lock()
	judging := !o.listenFrom.IsZero() && now.Sub(o.listenFrom) >= o.s.cfg.DeadAfter
	live := []string{o.s.id}
	for id, seen := range o.alive {
		if now.Sub(seen) <= o.s.cfg.DeadAfter {
			live = append(live, id)
		} else if now.Sub(seen) > goneFor {
			delete(o.alive, id)
		}
	}
	for id, t := range o.calls {
		if !t.gone.IsZero() {
			if now.Sub(t.gone) > goneFor {
				delete(o.calls, id)
			}
			continue
		}
		if t.rec == nil {
			continue
		}
		w := work{id: id, rec: t.rec}
		ownerID := t.rec.GetOwner()
		ownerDead := ownerID == "" || judging && ownerID != o.s.id && !contains(live, ownerID)
		chosen := pick(id, live) == o.s.id
		switch {
		case ended(t.rec):
			w.leftover = now.Sub(t.endedSeen) > leftoverAfter && (ownerID == o.s.id || ownerDead && chosen)
		case ownerID == o.s.id:
			if t.fwd != nil {
				w.lost = t.fwd.tick(now)
			}
			c := t.rec.GetCall()
			w.deadline = len(c.GetRingingIds()) > 0 && now.UnixMilli() >= c.GetRingDeadlineUnixMs() &&
				(c.GetState() == ringing || c.GetKind() != direct)
		case ownerDead && chosen:
			w.takeover = true
		}
		if w.takeover || w.deadline || w.leftover || len(w.lost) > 0 {
			todo = append(todo, w)
		}
	}
	o.mu.Unlock()
	for _, w := range todo {
		if ctx.Err() != nil {
			return
		}
		o.doWithin(ctx, w)
	}
}

// doWithin does w within workTimeout.
func (o *owner) doWithin(ctx context.Context, w work) {
	ctx, cancel := context.WithTimeout(ctx, workTimeout)
	defer cancel()
	if o.s.hooks.tickWork != nil {
		o.s.hooks.tickWork(ctx, w.id)
	}
	o.do(ctx, w)
}

// do carries out one call's work from a tick.
func (o *owner) do(ctx context.Context, w work) {
	s := o.s
	switch {
	case w.takeover:
		was := w.rec.GetOwner()
		_, err := s.update(ctx, w.id, func(rec *internalv1.CallRecord) error {
			if rec == nil || ended(rec) {
				return errNoCall
			}
			if rec.Owner != was {
				return errOwned
			}
			rec.Owner = s.id
			return nil
		})
		switch {
		case err == nil:
			s.metrics.takeovers.Inc()
			s.log.Info("took call over", "call", w.id, "from", was)
		case errors.Is(err, errOwned), errors.Is(err, errNoCall):
		default:
			s.log.Warn("take call over", "call", w.id, "err", err)
		}
	case w.leftover:
		s.cleanup(ctx, w.rec)
	case w.deadline:
		o.ringDeadline(ctx, w.id)
	}
	for _, l := range w.lost {
		err := s.leave(ctx, w.id, identity.Caller{UserID: l.user, Username: l.name}, l.stream, true)
		if err == nil {
			s.log.Info("participant lost", "call", w.id, "user", l.user, "stream", l.stream)
		} else if !errors.Is(err, errNotIn) {
			s.log.Warn("remove lost participant", "call", w.id, "user", l.user, "err", err)
		}
	}
}

// ringDeadline ends an unanswered private call MISSED, or stops a group
// call's ringing.
func (o *owner) ringDeadline(ctx context.Context, id string) {
	s := o.s
	var rung []string
	rec, err := s.update(ctx, id, func(rec *internalv1.CallRecord) error {
		if rec == nil || ended(rec) || rec.Call.State != ringing && rec.Call.Kind == direct ||
			len(rec.Call.RingingIds) == 0 || s.now().UnixMilli() < rec.Call.RingDeadlineUnixMs {
			return errNotRinging
		}
		rung = append(rung[:0], rec.Call.RingingIds...)
		if rec.Call.Kind == direct {
			s.end(rec, parleyv1.CallEndReason_CALL_END_REASON_MISSED)
		} else {
			rec.Call.RingingIds = nil
		}
		return nil
	})
	if err != nil {
		if !errors.Is(err, errNotRinging) {
			s.log.Warn("ring deadline", "call", id, "err", err)
		}
		return
	}
	if ended(rec) {
		s.finish(ctx, rec, identity.Caller{UserID: rec.Call.CallerId, Username: rec.Call.CallerName})
		return
	}
	s.events(evUpdated, rec.Call, recipients(rec, rung...))
}

// pick is the live replica rendezvous hashing chooses for call id: the
// highest hash of (call id, replica id).
func pick(id string, live []string) string {
	var best string
	var bestH uint64
	for _, r := range live {
		h := fnv.New64a()
		_, _ = h.Write([]byte(id))
		_, _ = h.Write([]byte{0})
		_, _ = h.Write([]byte(r))
		if v := h.Sum64(); best == "" || v > bestH || v == bestH && r > best {
			best, bestH = r, v
		}
	}
	return best
}

func contains(ids []string, id string) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}
