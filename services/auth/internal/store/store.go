// Package store keeps accounts, sessions and the token signing key in NATS
// JetStream key-value buckets, so every auth replica shares them and they
// survive restarts (with -kv-replicas > 1, the loss of NATS nodes too).
//
// Buckets (names in libs/subject):
//
//	parley_accounts  <account key>       -> Account (JSON)
//	                 id.<user id>        -> canonical username; the id index (byid.go)
//	parley_devices   <user id>.<device>  -> internalv1.DeviceRecord (protobuf; devices.go)
//	parley_sessions  <session id>        -> Session (JSON)
//	                 u.<user id>.<sid>   -> empty; the per-user index
//	parley_authkeys  token-hmac-v1       -> raw signing key
//
// Uniqueness comes from KV Create, which is a compare-and-set on "no value
// yet" evaluated by the stream leader: of two replicas racing to create one
// username or one signing key, exactly one wins and the other gets
// ErrExists.
//
// The per-user session index is one key per session under u.<uid>., listed
// with a subject filter (u.<uid>.*). The server answers such a filter from
// its per-subject index, so the cost is proportional to that user's
// sessions, not to the bucket size, and there is no shared list to
// compare-and-set under contention. Index keys are written and refreshed
// together with their session and age out with the same bucket TTL, so an
// index entry that outlives its session (a crash between the two deletes)
// is harmless and temporary.
package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/parleychat/parley/libs/subject"
	"github.com/parleychat/parley/services/auth/internal/familiar"
)

// Errors returned by Store.
var (
	ErrNotFound = errors.New("not found")
	ErrExists   = errors.New("already exists")
	// ErrConflict means a compare-and-set lost to a concurrent write.
	ErrConflict = errors.New("concurrent update")
)

// Account is an account record, keyed by canonical username.
type Account struct {
	UserID       string    `json:"user_id"`
	Username     string    `json:"username"` // display form, as registered
	PasswordHash string    `json:"password_hash"`
	Created      time.Time `json:"created"`
	// Familiar is where the account logged in from recently (login rate
	// limiting exempts these networks from the stranger's allowance).
	Familiar familiar.List `json:"familiar,omitempty"`
}

// Session is a session record, keyed by session id.
type Session struct {
	SessionID string    `json:"session_id"`
	UserID    string    `json:"user_id"`
	Username  string    `json:"username"`
	Device    string    `json:"device,omitempty"`
	Created   time.Time `json:"created"`
	Active    time.Time `json:"active"` // last login or resume
	Expires   time.Time `json:"expires"`
	// Gen is the generation of the session's newest token (token.Claims
	// .Gen); PrevUntil is when the token of generation Gen-1 stops being
	// accepted (the grace after a rotation). Records written before
	// generations existed have neither, and accept their tokens (which
	// have no generation either) until the next resume rotates them.
	Gen       uint64    `json:"gen,omitempty"`
	PrevUntil time.Time `json:"prev_until,omitzero"`
}

// Options configure the buckets.
type Options struct {
	Replicas   int           // JetStream replicas per bucket
	SessionTTL time.Duration // sessions bucket max age; at least the token TTL
}

// Store is the auth service's persistent state.
type Store struct {
	accounts, sessions, keys, devices jetstream.KeyValue
}

// Open creates the buckets if missing (or updates their configuration) and
// returns a Store on them.
func Open(ctx context.Context, js jetstream.JetStream, o Options) (*Store, error) {
	if o.Replicas < 1 {
		o.Replicas = 1
	}
	open := func(cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
		cfg.Replicas = o.Replicas
		cfg.History = 1
		cfg.Storage = jetstream.FileStorage
		kv, err := js.CreateOrUpdateKeyValue(ctx, cfg)
		if err != nil {
			return nil, fmt.Errorf("bucket %s: %w", cfg.Bucket, err)
		}
		return kv, nil
	}
	var s Store
	var err error
	if s.accounts, err = open(jetstream.KeyValueConfig{Bucket: subject.BucketAccounts,
		Description: "Parley accounts by canonical username"}); err != nil {
		return nil, err
	}
	if s.sessions, err = open(jetstream.KeyValueConfig{Bucket: subject.BucketSessions,
		Description: "Parley sessions by id, and u.<user>.<session> index keys",
		TTL:         o.SessionTTL}); err != nil {
		return nil, err
	}
	if s.keys, err = open(jetstream.KeyValueConfig{Bucket: subject.BucketAuthKeys,
		Description: "Parley token signing key"}); err != nil {
		return nil, err
	}
	if s.devices, err = open(jetstream.KeyValueConfig{Bucket: subject.BucketDevices,
		Description: "Parley device public keys by <user id>.<device id>"}); err != nil {
		return nil, err
	}
	return &s, nil
}

// accountNameRe is what accountKey accepts: canonical (lowercase) names in
// the username alphabet.
var accountNameRe = regexp.MustCompile(`^[a-z0-9_.-]+$`)

// accountKey maps a canonical username to its KV key. A '.' separates
// subject tokens, so "bob." or "a..b" would be invalid keys; usernames never
// contain '=', so writing '.' as '=' is one-to-one. Names outside the
// username alphabet have no key (ok=false) and so no account.
func accountKey(canonical string) (string, bool) {
	if !accountNameRe.MatchString(canonical) {
		return "", false
	}
	return strings.ReplaceAll(canonical, ".", "="), true
}

// CreateAccount stores a new account under canonical; ErrExists if the name
// is taken. The account's user id index entry (byid.go) is written first,
// so no account exists without one; when the name turns out to be taken
// the entry is deleted again (one left behind by a failure names an
// account with another id, which AccountByID refuses).
func (s *Store) CreateAccount(ctx context.Context, canonical string, a Account) error {
	key, ok := accountKey(canonical)
	if !ok {
		return fmt.Errorf("username %q has no key: %w", canonical, ErrNotFound)
	}
	data, err := json.Marshal(a)
	if err != nil {
		return err
	}
	if err := s.indexID(ctx, a.UserID, canonical); err != nil {
		return err
	}
	if _, err := s.accounts.Create(ctx, key, data); err != nil {
		if validID(a.UserID) {
			_ = s.accounts.Delete(ctx, idIndexKey(a.UserID))
		}
		if errors.Is(err, jetstream.ErrKeyExists) {
			return ErrExists
		}
		return fmt.Errorf("create account: %w", err)
	}
	return nil
}

// Account returns the account under canonical and its revision.
func (s *Store) Account(ctx context.Context, canonical string) (Account, uint64, error) {
	var a Account
	key, ok := accountKey(canonical)
	if !ok {
		return a, 0, ErrNotFound
	}
	rev, err := get(ctx, s.accounts, key, &a)
	return a, rev, err
}

// UpdateAccount replaces the account if it is still at revision rev.
func (s *Store) UpdateAccount(ctx context.Context, canonical string, a Account, rev uint64) error {
	key, ok := accountKey(canonical)
	if !ok {
		return ErrNotFound
	}
	return update(ctx, s.accounts, key, a, rev)
}

func sessionIndexKey(userID, sessionID string) string { return "u." + userID + "." + sessionID }

// CreateSession stores a new session and then its index entry, and returns
// the index entry's revision: the session's place in the takeover order
// (see UserSessions).
func (s *Store) CreateSession(ctx context.Context, sess Session) (uint64, error) {
	data, err := json.Marshal(sess)
	if err != nil {
		return 0, err
	}
	if _, err := s.sessions.Create(ctx, sess.SessionID, data); err != nil {
		return 0, fmt.Errorf("create session: %w", err)
	}
	rev, err := s.sessions.Put(ctx, sessionIndexKey(sess.UserID, sess.SessionID), nil)
	if err != nil {
		_ = s.sessions.Delete(ctx, sess.SessionID)
		return 0, fmt.Errorf("index session: %w", err)
	}
	return rev, nil
}

// Session returns the session and its revision; ErrNotFound once it was
// deleted or aged out.
func (s *Store) Session(ctx context.Context, sessionID string) (Session, uint64, error) {
	var sess Session
	if !validID(sessionID) {
		return sess, 0, ErrNotFound
	}
	rev, err := get(ctx, s.sessions, sessionID, &sess)
	return sess, rev, err
}

// RefreshSession rewrites a session read at revision rev (new expiry and
// activity; the write also restarts its bucket TTL), then its index entry,
// and returns the index entry's new revision. ErrConflict if the record
// changed since; ErrNotFound if it was deleted since, so a logout racing a
// resume always wins.
func (s *Store) RefreshSession(ctx context.Context, sess Session, rev uint64) (uint64, error) {
	data, err := json.Marshal(sess)
	if err != nil {
		return 0, err
	}
	_, err = s.sessions.Update(ctx, sess.SessionID, data, rev)
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		if _, _, gerr := s.Session(ctx, sess.SessionID); errors.Is(gerr, ErrNotFound) {
			return 0, ErrNotFound
		}
		return 0, ErrConflict
	}
	if err != nil {
		return 0, fmt.Errorf("refresh session: %w", err)
	}
	irev, err := s.sessions.Put(ctx, sessionIndexKey(sess.UserID, sess.SessionID), nil)
	if err != nil {
		return 0, fmt.Errorf("index session: %w", err)
	}
	return irev, nil
}

// DeleteSession deletes a session and its index entry. Deleting a session
// that does not exist is not an error.
func (s *Store) DeleteSession(ctx context.Context, userID, sessionID string) error {
	if !validID(sessionID) || !validID(userID) {
		return nil
	}
	// The record first: it is what resume checks.
	if err := s.sessions.Delete(ctx, sessionID); err != nil {
		return fmt.Errorf("delete session: %w", err)
	}
	if err := s.sessions.Delete(ctx, sessionIndexKey(userID, sessionID)); err != nil {
		return fmt.Errorf("delete session index: %w", err)
	}
	return nil
}

// SessionRef is one entry of a user's session index.
type SessionRef struct {
	SessionID string
	// Order is the revision of the index entry, written after the record
	// on every create and refresh. Revisions come from the stream in one
	// global order (no replica clocks involved), and an entry written
	// before a listing started is always in that listing. So of two
	// sessions that each write their entry and then list, the one with the
	// higher Order is sure to see the other with its lower Order.
	Order uint64
}

// UserSessions lists the user's sessions from the index (a session deleted
// a moment ago may still be listed).
func (s *Store) UserSessions(ctx context.Context, userID string) ([]SessionRef, error) {
	if !validID(userID) {
		return nil, nil
	}
	prefix := "u." + userID + "."
	w, err := s.sessions.WatchFiltered(ctx, []string{prefix + "*"}, jetstream.IgnoreDeletes(), jetstream.MetaOnly())
	if err != nil {
		return nil, fmt.Errorf("list sessions: %w", err)
	}
	defer w.Stop()
	var refs []SessionRef
	for {
		select {
		case e := <-w.Updates():
			if e == nil { // the initial values are all delivered
				return refs, nil
			}
			refs = append(refs, SessionRef{SessionID: strings.TrimPrefix(e.Key(), prefix), Order: e.Revision()})
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

const signingKeyName = "token-hmac-v1"

// SigningKey returns the shared token signing key, creating it with
// generate() if there is none yet. Replicas racing at first start converge:
// one Create wins and the others read the winner's key back.
func (s *Store) SigningKey(ctx context.Context, generate func() []byte) ([]byte, error) {
	if e, err := s.keys.Get(ctx, signingKeyName); err == nil {
		return e.Value(), nil
	} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, fmt.Errorf("read signing key: %w", err)
	}
	key := generate()
	if _, err := s.keys.Create(ctx, signingKeyName, key); err != nil {
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return nil, fmt.Errorf("store signing key: %w", err)
		}
		e, err := s.keys.Get(ctx, signingKeyName)
		if err != nil {
			return nil, fmt.Errorf("read signing key after lost race: %w", err)
		}
		return e.Value(), nil
	}
	return key, nil
}

// validID accepts the ids this package makes (and anything else that is a
// single valid key token), so user-controlled strings never form another key.
var idRe = regexp.MustCompile(`^[a-z0-9]{1,64}$`)

func validID(id string) bool { return idRe.MatchString(id) }

func get(ctx context.Context, kv jetstream.KeyValue, key string, v any) (uint64, error) {
	e, err := kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return 0, ErrNotFound
	}
	if err != nil {
		return 0, fmt.Errorf("get %s: %w", key, err)
	}
	if err := json.Unmarshal(e.Value(), v); err != nil {
		return 0, fmt.Errorf("decode %s: %w", key, err)
	}
	return e.Revision(), nil
}

func update(ctx context.Context, kv jetstream.KeyValue, key string, v any, rev uint64) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if _, err := kv.Update(ctx, key, data, rev); err != nil {
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return ErrConflict
		}
		return fmt.Errorf("update %s: %w", key, err)
	}
	return nil
}
