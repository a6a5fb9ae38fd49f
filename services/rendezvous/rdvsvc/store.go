package rdvsvc

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/parleychat/parley/libs/proto/internalv1"
)

// casAttempts bounds the compare-and-set retries of one change.
const casAttempts = 8

// Keys of the sessions bucket.
func sessionKey(id string) string { return "s." + id }
func indexKey(uid string) string  { return "u." + uid }

// Errors of the store, never shown to clients (wire answers them
// UNAVAILABLE).
var (
	// errContended: a record changed under every one of casAttempts tries.
	errContended = errors.New("session record contended")
	// errNotOpen: the bucket is not open yet.
	errNotOpen = errors.New("sessions bucket not open")
	// errUnchanged: a change function decided there is nothing to save.
	errUnchanged = errors.New("nothing to save")
)

// backoffStep is the longest wait before a compare-and-set's second try;
// the n-th retry waits up to n times as long.
const backoffStep = 2 * time.Millisecond

// backoff waits a random while (none before the first try, attempt 0)
// before retrying a compare-and-set that lost, so that writers racing for
// one key spread out; ctx's error if it ends.
func backoff(ctx context.Context, attempt int) error {
	if attempt == 0 {
		return nil
	}
	t := time.NewTimer(1 + rand.N(time.Duration(attempt)*backoffStep))
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// wrongRevision reports whether err is a compare-and-set that lost.
func wrongRevision(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence
}

// get reads the record of session id: nil (and no error) when there is
// none.
func (s *Service) get(ctx context.Context, id string) (*internalv1.P2PRecord, uint64, error) {
	kv := s.store()
	if kv == nil {
		return nil, 0, errNotOpen
	}
	e, err := kv.Get(ctx, sessionKey(id))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("read session %s: %w", id, err)
	}
	rec := new(internalv1.P2PRecord)
	if err := proto.Unmarshal(e.Value(), rec); err != nil {
		return nil, 0, fmt.Errorf("decode session %s: %w", id, err)
	}
	return rec, e.Revision(), nil
}

// update applies change to the record of session id and saves it by
// compare-and-set, retrying from a fresh read when another replica wrote
// meanwhile. change sees nil for a missing record and returns errors as
// they should reach the client, or errUnchanged to save nothing (update
// then returns the record as read, and errUnchanged); it may run more than
// once. It returns the saved record and its revision.
func (s *Service) update(ctx context.Context, id string, change func(*internalv1.P2PRecord) error) (*internalv1.P2PRecord, uint64, error) {
	kv := s.store()
	if kv == nil {
		return nil, 0, errNotOpen
	}
	for attempt := range casAttempts {
		if err := backoff(ctx, attempt); err != nil {
			return nil, 0, err
		}
		rec, rev, err := s.get(ctx, id)
		if err != nil {
			return nil, 0, err
		}
		if err := change(rec); err != nil {
			return rec, rev, err
		}
		data, err := proto.Marshal(rec)
		if err != nil {
			return nil, 0, err
		}
		nrev, err := kv.Update(ctx, sessionKey(id), data, rev)
		if err == nil {
			return rec, nrev, nil
		}
		if !wrongRevision(err) {
			return nil, 0, fmt.Errorf("save session %s: %w", id, err)
		}
	}
	return nil, 0, errContended
}

// create saves a new record and returns its revision.
func (s *Service) create(ctx context.Context, rec *internalv1.P2PRecord) (uint64, error) {
	kv := s.store()
	if kv == nil {
		return 0, errNotOpen
	}
	data, err := proto.Marshal(rec)
	if err != nil {
		return 0, err
	}
	rev, err := kv.Create(ctx, sessionKey(rec.SessionId), data)
	if err != nil {
		return 0, fmt.Errorf("create session %s: %w", rec.SessionId, err)
	}
	return rev, nil
}

// remove deletes the record of session id if it is still at revision rev
// (a record changed since is left alone). Failures are logged: the sweep
// deletes what is left of an ended session.
func (s *Service) remove(ctx context.Context, id string, rev uint64) {
	kv := s.store()
	if kv == nil {
		return
	}
	if err := kv.Delete(ctx, sessionKey(id), jetstream.LastRevision(rev)); err != nil &&
		!wrongRevision(err) && !errors.Is(err, jetstream.ErrKeyNotFound) {
		s.log.Warn("delete ended session", "session", id, "err", err)
	}
}

// The index "u.<uid>" is the ids of the user's sessions separated by
// spaces: a plain value rather than a message, read and written only
// here.
func parseIndex(v []byte) []string { return strings.Fields(string(v)) }

// reserve adds session id to uid's index. With limit > 0 it first drops
// the ids of sessions that are missing or CLOSED and refuses (errQuota)
// when limit of them remain open. The record of id must exist already, so
// that a concurrent reserve of the same user counts it.
func (s *Service) reserve(ctx context.Context, uid, id string, limit int) error {
	kv := s.store()
	if kv == nil {
		return errNotOpen
	}
	key := indexKey(uid)
	for attempt := range casAttempts {
		if err := backoff(ctx, attempt); err != nil {
			return err
		}
		var (
			ids []string
			rev uint64
		)
		e, err := kv.Get(ctx, key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
		case err != nil:
			return fmt.Errorf("read %s: %w", key, err)
		default:
			ids, rev = parseIndex(e.Value()), e.Revision()
		}
		if slices.Contains(ids, id) {
			return nil
		}
		open := ids[:0:0]
		for _, other := range ids {
			rec, _, err := s.get(ctx, other)
			if err != nil {
				return err
			}
			if rec != nil && rec.State != closed && (rec.A.GetUserId() == uid || rec.B.GetUserId() == uid) {
				open = append(open, other)
			}
		}
		if limit > 0 && len(open) >= limit {
			return errQuota
		}
		value := []byte(strings.Join(append(open, id), " "))
		if rev == 0 {
			_, err = kv.Create(ctx, key, value)
			if errors.Is(err, jetstream.ErrKeyExists) {
				continue
			}
		} else {
			_, err = kv.Update(ctx, key, value, rev)
			if wrongRevision(err) {
				continue
			}
		}
		if err != nil {
			return fmt.Errorf("save %s: %w", key, err)
		}
		return nil
	}
	return errContended
}

// release removes session id from uid's index. Failures are logged: the
// next reserve prunes ended sessions anyway.
func (s *Service) release(ctx context.Context, uid, id string) {
	kv := s.store()
	if kv == nil || uid == "" {
		return
	}
	key := indexKey(uid)
	for attempt := range casAttempts {
		if backoff(ctx, attempt) != nil {
			return
		}
		e, err := kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return
		}
		if err != nil {
			s.log.Warn("release session from index", "user", uid, "err", err)
			return
		}
		ids := parseIndex(e.Value())
		i := slices.Index(ids, id)
		if i < 0 {
			return
		}
		ids = slices.Delete(ids, i, i+1)
		if len(ids) == 0 {
			err = kv.Delete(ctx, key, jetstream.LastRevision(e.Revision()))
		} else {
			_, err = kv.Update(ctx, key, []byte(strings.Join(ids, " ")), e.Revision())
		}
		if err == nil {
			return
		}
		if !wrongRevision(err) {
			s.log.Warn("release session from index", "user", uid, "err", err)
			return
		}
	}
}
