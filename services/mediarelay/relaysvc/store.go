package relaysvc

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/parleychat/parley/libs/proto/internalv1"
	"github.com/parleychat/parley/protocol/parleyv1"
)

// casAttempts bounds the compare-and-set retries of one change.
const casAttempts = 8

// Keys of the calls bucket.
func callKey(id string) string   { return "call." + id }
func userKey(uid string) string  { return "user." + uid }
func convKey(conv string) string { return "conv." + conv }
func callIDOf(key string) string { return key[len("call."):] }
func isCallKey(key string) bool  { return len(key) > len("call.") && key[:len("call.")] == "call." }
func ended(rec *internalv1.CallRecord) bool {
	return rec.GetCall().GetState() == parleyv1.CallState_CALL_STATE_ENDED
}

// errContended: a record changed under every one of casAttempts tries.
var errContended = errors.New("call record contended")

// backoffStep is the longest wait before a compare-and-set's second
// try; the n-th retry waits up to n times as long.
const backoffStep = 2 * time.Millisecond

// backoff waits a random while (none before the first try, attempt 0)
// before retrying a compare-and-set that lost, so that writers racing for
// one key spread out instead of colliding again; ctx's error if it ends.
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

// get reads the record of call id: nil (and no error) when there is none.
func (s *Service) get(ctx context.Context, id string) (*internalv1.CallRecord, uint64, error) {
	e, err := s.kv.Get(ctx, callKey(id))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("read call %s: %w", id, err)
	}
	rec := new(internalv1.CallRecord)
	if err := proto.Unmarshal(e.Value(), rec); err != nil {
		return nil, 0, fmt.Errorf("decode call %s: %w", id, err)
	}
	return rec, e.Revision(), nil
}

// update applies change to the record of call id and saves it by
// compare-and-set, retrying from a fresh read when another replica wrote
// meanwhile. change sees nil for a missing record and returns errors as
// they should reach the client; it may run more than once. The saved
// record is also handed to this replica's owner state at once (the watch
// would bring it a moment later).
func (s *Service) update(ctx context.Context, id string, change func(*internalv1.CallRecord) error) (*internalv1.CallRecord, error) {
	for attempt := range casAttempts {
		if err := backoff(ctx, attempt); err != nil {
			return nil, err
		}
		rec, rev, err := s.get(ctx, id)
		if err != nil {
			return nil, err
		}
		if err := change(rec); err != nil {
			return nil, err
		}
		data, err := proto.Marshal(rec)
		if err != nil {
			return nil, err
		}
		if s.hooks.beforeSave != nil {
			s.hooks.beforeSave(ctx, id)
		}
		nrev, err := s.kv.Update(ctx, callKey(id), data, rev)
		if err == nil {
			s.owner.apply(id, rec, nrev)
			return rec, nil
		}
		if !wrongRevision(err) {
			return nil, fmt.Errorf("save call %s: %w", id, err)
		}
	}
	return nil, errContended
}

// create saves a new record.
func (s *Service) create(ctx context.Context, rec *internalv1.CallRecord) error {
	data, err := proto.Marshal(rec)
	if err != nil {
		return err
	}
	id := rec.GetCall().GetCallId()
	rev, err := s.kv.Create(ctx, callKey(id), data)
	if err != nil {
		return fmt.Errorf("create call %s: %w", id, err)
	}
	s.owner.apply(id, rec, rev)
	return nil
}

// live returns the record of call id when it exists and has not ended.
func (s *Service) live(ctx context.Context, id string) (*internalv1.CallRecord, error) {
	rec, _, err := s.get(ctx, id)
	if err != nil || rec == nil || ended(rec) {
		return nil, err
	}
	return rec, nil
}

// pointed returns the live call a pointer key names: "" when the key is
// absent or names a call that is missing or ENDED (a stale pointer).
func (s *Service) pointed(ctx context.Context, key string) (string, error) {
	e, err := s.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read %s: %w", key, err)
	}
	rec, err := s.live(ctx, string(e.Value()))
	if err != nil || rec == nil {
		return "", err
	}
	return string(e.Value()), nil
}

// claim points key at call id unless it names another live call, which it
// returns (and changes nothing). A stale pointer is overwritten by
// compare-and-set on its revision.
func (s *Service) claim(ctx context.Context, key, id string) (string, error) {
	for attempt := range casAttempts {
		if err := backoff(ctx, attempt); err != nil {
			return "", err
		}
		e, err := s.kv.Get(ctx, key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
			if _, err := s.kv.Create(ctx, key, []byte(id)); err == nil {
				return "", nil
			} else if !errors.Is(err, jetstream.ErrKeyExists) {
				return "", fmt.Errorf("create %s: %w", key, err)
			}
			continue
		case err != nil:
			return "", fmt.Errorf("read %s: %w", key, err)
		}
		cur := string(e.Value())
		if cur == id {
			return "", nil
		}
		rec, err := s.live(ctx, cur)
		if err != nil {
			return "", err
		}
		if rec != nil {
			return cur, nil
		}
		if _, err := s.kv.Update(ctx, key, []byte(id), e.Revision()); err == nil {
			return "", nil
		} else if !wrongRevision(err) {
			return "", fmt.Errorf("update %s: %w", key, err)
		}
	}
	return "", errContended
}

// release deletes key if it still names call id (a later call's pointer is
// left alone). Failures are logged: a stale pointer counts as absent.
func (s *Service) release(ctx context.Context, key, id string) {
	e, err := s.kv.Get(ctx, key)
	if err != nil {
		if !errors.Is(err, jetstream.ErrKeyNotFound) {
			s.log.Warn("release call pointer", "key", key, "err", err)
		}
		return
	}
	if string(e.Value()) != id {
		return
	}
	if err := s.kv.Delete(ctx, key, jetstream.LastRevision(e.Revision())); err != nil && !wrongRevision(err) {
		s.log.Warn("release call pointer", "key", key, "err", err)
	}
}
