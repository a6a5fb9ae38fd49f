package rdvsvc

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/parleychat/parley/libs/proto/internalv1"
)

// sweepLoop closes sessions past their deadline (OFFERED: not answered in
// time; ACCEPTED: unchanged for Config.IdleTimeout) with CLOSED EXPIRED,
// and deletes CLOSED records a replica left behind. Every replica runs it
// over every record: it learns the deadlines by watching the bucket, and
// at each Config.SweepInterval expires those due by a compare-and-set, so
// exactly one replica publishes the events of each session and the others
// find it closed (or gone). It ends when ctx does.
func (s *Service) sweepLoop(ctx context.Context) {
	for ctx.Err() == nil {
		err := s.watchAndSweep(ctx)
		if ctx.Err() != nil {
			return
		}
		s.log.Warn("p2p sweep: watch ended; restarting", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

// watchAndSweep is one watch of the bucket: it returns when ctx ends or the
// watch fails.
func (s *Service) watchAndSweep(ctx context.Context) error {
	kv := s.store()
	if kv == nil {
		return errNotOpen
	}
	w, err := kv.WatchFiltered(ctx, []string{sessionKey(">")})
	if err != nil {
		return err
	}
	defer func() { _ = w.Stop() }()
	s.regKeys.reset()
	defer s.regKeys.reset()           // a copy no watch keeps is not vouched for
	due := make(map[string]int64)     // session id -> deadline, unix ms (CLOSED: 0)
	pending := make(map[string]int64) // sessions whose introduction waits for the budget: their intro_tat_unix_ms
	tick := time.NewTicker(s.cfg.SweepInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-w.Updates():
			if !ok {
				return errors.New("watch closed")
			}
			if e == nil {
				s.regKeys.synced() // the end of the initial values
				continue
			}
			id := strings.TrimPrefix(e.Key(), sessionKey(""))
			if e.Operation() != jetstream.KeyValuePut {
				delete(due, id)
				delete(pending, id)
				s.regKeys.forget(id)
				break
			}
			var rec internalv1.P2PRecord
			if err := proto.Unmarshal(e.Value(), &rec); err != nil {
				s.log.Warn("p2p sweep: undecodable record", "key", e.Key(), "err", err)
				break
			}
			if rec.State == closed {
				due[id] = 0
			} else {
				due[id] = rec.ExpiresUnixMs
			}
			s.regKeys.put(id, &rec)
			if rec.IntroPending && rec.State == accepted {
				pending[id] = rec.IntroTatUnixMs
			} else {
				delete(pending, id)
			}
		case <-tick.C:
			now := s.now().UnixMilli()
			for id, at := range due {
				if at <= now {
					s.expire(ctx, id)
				}
			}
			for id, tat := range pending {
				if introAllowed(tat, now) {
					// Dropped once introduced, or when the record changed
					// (its watch event sets it again if still pending); kept
					// when nothing was written (a failed update, a budget
					// the record says is still spent).
					if again, tat := s.introducePending(ctx, id); again {
						pending[id] = tat
					} else {
						delete(pending, id)
					}
				}
			}
		}
		s.metrics.sessions.Set(float64(len(due)))
	}
}

// introducePending numbers the introduction the budget held back for
// session id (introBurst, introEvery), and publishes it. Every replica's
// sweep may try once the record's budget allows: the compare-and-set lets
// one number it (and charge the budget), and the others find nothing
// pending. again: nothing was written and the session is (or may be)
// still pending, with the record's budget at tat: the sweep tries again.
func (s *Service) introducePending(ctx context.Context, id string) (again bool, tat int64) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
	defer cancel()
	bumped, spent := false, false
	rec, _, err := s.update(ctx, id, func(rec *internalv1.P2PRecord) error {
		bumped, spent = false, false
		if rec == nil || !rec.IntroPending {
			return errUnchanged
		}
		if !introducible(rec) {
			rec.IntroPending = false
			return nil
		}
		if bumped = introduceWithin(rec, s.now().UnixMilli()); !bumped {
			spent, tat = true, rec.IntroTatUnixMs
			return errUnchanged // still over budget by this replica's clock
		}
		return nil
	})
	switch {
	case errors.Is(err, errUnchanged):
		return spent, tat
	case err != nil:
		s.log.Warn("p2p sweep: pending introduction", "session", id, "err", err)
		return true, 0
	case bumped:
		s.intro(rec)
	}
	return false, 0
}

// expire closes session id EXPIRED if it is past its deadline, or deletes
// it if it is CLOSED already (a replica stopped between closing and
// deleting it). Idempotent: a record changed or gone since is left alone.
func (s *Service) expire(ctx context.Context, id string) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
	defer cancel()
	leftover := false
	rec, rev, err := s.update(ctx, id, func(rec *internalv1.P2PRecord) error {
		leftover = false
		switch {
		case rec == nil:
			return errUnchanged
		case rec.State == closed:
			leftover = true
			return errUnchanged
		case rec.ExpiresUnixMs > s.now().UnixMilli():
			return errUnchanged
		}
		rec.State, rec.CloseReason = closed, reasonExpired
		return nil
	})
	switch {
	case leftover:
		s.remove(ctx, id, rev)
		s.release(ctx, rec.A.GetUserId(), id)
		s.release(ctx, rec.B.GetUserId(), id)
	case errors.Is(err, errUnchanged):
	case err != nil:
		s.log.Warn("p2p sweep: expire", "session", id, "err", err)
	default:
		s.ended(ctx, rec, rev)
	}
}
