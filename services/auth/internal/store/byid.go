package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
)

// The user id index: accounts are keyed by name, but device keys
// (DeviceKeysRequest{user_id}) are asked for by id. Each account has an
// entry "id.<user id>" -> its canonical username in parley_accounts. An
// account key never contains '.' (accountKey writes it as '='), so the
// entries cannot collide with accounts, and the filter "*" still lists the
// accounts alone.
//
// The entry is written right after the account (CreateAccount), and
// repaired by EnsureIDIndex where the service learns an account's id and
// name together (a login, a device registration). Accounts made before the
// index existed get theirs from IndexAccounts, run once per bucket.

// idIndexDone marks a bucket whose accounts IndexAccounts has indexed.
const idIndexDone = "meta.id-index-v1"

func idIndexKey(userID string) string { return "id." + userID }

// indexID writes uid's index entry unless it exists (Create: an entry is
// never changed, since ids and names are never reused).
func (s *Store) indexID(ctx context.Context, userID, canonical string) error {
	if !validID(userID) {
		return nil // not one of this package's ids: never asked for by id
	}
	if _, ok := accountKey(canonical); !ok {
		return nil
	}
	_, err := s.accounts.Create(ctx, idIndexKey(userID), []byte(canonical))
	if err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
		return fmt.Errorf("index account id: %w", err)
	}
	return nil
}

// EnsureIDIndex writes the index entry of the account (user id, canonical
// name) if it is missing. It reads first, so the common case costs no
// write.
func (s *Store) EnsureIDIndex(ctx context.Context, userID, canonical string) error {
	if !validID(userID) {
		return nil
	}
	_, err := s.accounts.Get(ctx, idIndexKey(userID))
	switch {
	case err == nil:
		return nil
	case !errors.Is(err, jetstream.ErrKeyNotFound):
		return fmt.Errorf("read account id index: %w", err)
	}
	return s.indexID(ctx, userID, canonical)
}

// AccountByID returns the account with user id userID and its canonical
// username; ErrNotFound when the index has no entry (no such account, or
// one not indexed yet).
func (s *Store) AccountByID(ctx context.Context, userID string) (Account, string, error) {
	if !validID(userID) {
		return Account{}, "", ErrNotFound
	}
	e, err := s.accounts.Get(ctx, idIndexKey(userID))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Account{}, "", ErrNotFound
	}
	if err != nil {
		return Account{}, "", fmt.Errorf("read account id index: %w", err)
	}
	canonical := string(e.Value())
	a, _, err := s.Account(ctx, canonical)
	if err != nil {
		return Account{}, "", err
	}
	if a.UserID != userID {
		return Account{}, "", fmt.Errorf("account id index: %s names %q, whose id is %s: %w", userID, canonical, a.UserID, ErrNotFound)
	}
	return a, canonical, nil
}

// IndexAccounts writes the missing index entries of every account, unless
// a previous run finished (a marker key says so), and returns how many it
// wrote. Several replicas may run it at once: the writes are Creates of
// the same values. It reads every account, once per bucket's life.
func (s *Store) IndexAccounts(ctx context.Context) (int, error) {
	if _, err := s.accounts.Get(ctx, idIndexDone); err == nil {
		return 0, nil
	} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
		return 0, fmt.Errorf("read %s: %w", idIndexDone, err)
	}
	keys, err := s.accounts.ListKeysFiltered(ctx, "*")
	if err != nil {
		return 0, fmt.Errorf("list accounts: %w", err)
	}
	var names []string
	for k := range keys.Keys() {
		names = append(names, k)
	}
	_ = keys.Stop()
	if ctx.Err() != nil {
		return 0, ctx.Err()
	}
	n := 0
	for _, key := range names {
		e, err := s.accounts.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return n, fmt.Errorf("read account %s: %w", key, err)
		}
		var a Account
		if json.Unmarshal(e.Value(), &a) != nil {
			continue
		}
		canonical := strings.ReplaceAll(key, "=", ".")
		if _, err := s.accounts.Get(ctx, idIndexKey(a.UserID)); err == nil {
			continue
		}
		if err := s.indexID(ctx, a.UserID, canonical); err != nil {
			return n, err
		}
		n++
	}
	if _, err := s.accounts.Put(ctx, idIndexDone, nil); err != nil {
		return n, fmt.Errorf("write %s: %w", idIndexDone, err)
	}
	return n, nil
}
