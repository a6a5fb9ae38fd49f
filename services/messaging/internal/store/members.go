package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
)

// maxCASTries bounds compare-and-set loops on a KV key.
const maxCASTries = 16

// userKey is the cursors/memberships key of a user's conversation.
func userKey(uid, conv string) string { return uid + "." + conv }

// Member is a user's membership of a direct or group conversation.
type Member struct {
	Conversation string `json:"-"`                   // from the key
	PeerID       string `json:"peer_id,omitempty"`   // direct: the other user
	PeerName     string `json:"peer_name,omitempty"` // direct: their name, empty while unknown
	// Group entries index the group record (BucketGroups), which is the
	// truth about membership; Invited marks an invitation not yet accepted.
	Group   bool `json:"group,omitempty"`
	Invited bool `json:"invited,omitempty"`
}

// EnsureMember records that uid is in m.Conversation. An existing entry
// is kept, except that a missing peer name is filled in once known. Entries
// this replica has seen stored cost no I/O.
func (s *Store) EnsureMember(ctx context.Context, uid string, m Member) error {
	key := userKey(uid, m.Conversation)
	s.mu.Lock()
	name, ok := s.known[key]
	s.mu.Unlock()
	if ok && (name != "" || m.PeerName == "") {
		return nil
	}
	val, err := json.Marshal(m)
	if err != nil {
		return err
	}
	stored := m.PeerName
	e, err := s.members.Get(ctx, key)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		if _, err := s.members.Create(ctx, key, val); err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
			return fmt.Errorf("membership: %w", err)
		}
		// On ErrKeyExists a concurrent request stored it first; a missing
		// name is filled in by a later call.
	case err != nil:
		return fmt.Errorf("membership: %w", err)
	default:
		var cur Member
		if json.Unmarshal(e.Value(), &cur) == nil && (cur.PeerName != "" || m.PeerName == "") {
			stored = cur.PeerName
			break
		}
		if _, err := s.members.Update(ctx, key, val, e.Revision()); err != nil &&
			!errors.Is(err, jetstream.ErrKeyExists) && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return fmt.Errorf("membership: %w", err)
		}
	}
	s.mu.Lock()
	if len(s.known) >= maxCachedConvs {
		clear(s.known)
	}
	s.known[key] = stored
	s.mu.Unlock()
	return nil
}

// Memberships lists uid's direct and group conversations.
func (s *Store) Memberships(ctx context.Context, uid string) ([]Member, error) {
	var out []Member
	err := s.scan(ctx, s.members, uid, func(conv string, v []byte) {
		var m Member
		if json.Unmarshal(v, &m) != nil {
			s.log.Warn("undecodable membership", "user_id", uid, "conversation", conv)
			return
		}
		m.Conversation = conv
		out = append(out, m)
	})
	return out, err
}

// Cursor returns uid's acknowledged seq in conv (0: none).
func (s *Store) Cursor(ctx context.Context, uid, conv string) (uint64, error) {
	n, _, err := s.cursor(ctx, uid, conv)
	return n, err
}

func (s *Store) cursor(ctx context.Context, uid, conv string) (seq, rev uint64, err error) {
	e, err := s.cursors.Get(ctx, userKey(uid, conv))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return 0, 0, nil
	}
	if err != nil {
		return 0, 0, fmt.Errorf("cursor: %w", err)
	}
	n, err := strconv.ParseUint(string(e.Value()), 10, 64)
	if err != nil {
		return 0, e.Revision(), nil // unreadable: overwrite
	}
	return n, e.Revision(), nil
}

// AdvanceCursor sets uid's acknowledged seq in conv to max(current, seq)
// with compare-and-set, so concurrent acks from several devices never move
// it backwards. It returns the resulting cursor and whether this call moved
// it (read receipts are sent only then).
func (s *Store) AdvanceCursor(ctx context.Context, uid, conv string, seq uint64) (uint64, bool, error) {
	key := userKey(uid, conv)
	val := []byte(strconv.FormatUint(seq, 10))
	for range maxCASTries {
		cur, rev, err := s.cursor(ctx, uid, conv)
		if err != nil {
			return 0, false, err
		}
		if rev != 0 && cur >= seq {
			return cur, false, nil
		}
		if rev == 0 {
			_, err = s.cursors.Create(ctx, key, val)
		} else {
			_, err = s.cursors.Update(ctx, key, val, rev)
		}
		if err == nil {
			return seq, true, nil
		}
		// Both a lost Create and a lost Update surface as ErrKeyExists
		// (wrong last sequence): someone else wrote; read again.
		if !errors.Is(err, jetstream.ErrKeyExists) && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return 0, false, fmt.Errorf("cursor: %w", err)
		}
	}
	return 0, false, ErrBusy
}

// scan calls fn for every current key "<uid>.<conv>" in kv with one
// filtered watch (one request however many conversations the user has).
func (s *Store) scan(ctx context.Context, kv jetstream.KeyValue, uid string, fn func(conv string, v []byte)) error {
	w, err := kv.Watch(ctx, uid+".>", jetstream.IgnoreDeletes())
	if err != nil {
		return fmt.Errorf("list %s: %w", kv.Bucket(), err)
	}
	defer func() { _ = w.Stop() }()
	prefix := uid + "."
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case e, ok := <-w.Updates():
			if !ok {
				return fmt.Errorf("list %s: watcher closed", kv.Bucket())
			}
			if e == nil { // initial values done
				return nil
			}
			fn(strings.TrimPrefix(e.Key(), prefix), e.Value())
		}
	}
}

// Member reads uid's entry for conv; false when there is none.
func (s *Store) Member(ctx context.Context, uid, conv string) (Member, bool, error) {
	e, err := s.members.Get(ctx, userKey(uid, conv))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Member{}, false, nil
	}
	if err != nil {
		return Member{}, false, fmt.Errorf("membership: %w", err)
	}
	var m Member
	if json.Unmarshal(e.Value(), &m) != nil {
		return Member{}, false, nil // unreadable: as absent (EnsureMember rewrites it)
	}
	m.Conversation = conv
	return m, true, nil
}
