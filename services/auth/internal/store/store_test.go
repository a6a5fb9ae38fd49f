package store

import (
	"bytes"
	"context"
	"errors"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/parleychat/parley/libs/testenv"
)

func open(t *testing.T) *Store {
	t.Helper()
	js, err := jetstream.New(testenv.Connect(t, testenv.NATS(t)))
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(context.Background(), js, Options{Replicas: 1, SessionTTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestIDs(t *testing.T) {
	re := regexp.MustCompile(`^[us][a-z2-7]{20}$`)
	seen := map[string]bool{}
	for range 1000 {
		for _, id := range []string{NewUserID(), NewSessionID()} {
			if !re.MatchString(id) || seen[id] {
				t.Fatalf("bad or repeated id %q", id)
			}
			seen[id] = true
		}
	}
}

func TestAccountKeys(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	// "a.b" and "a=b" must not collide, and awkward dots must work.
	for _, name := range []string{"a.b", "a..b", "end.", "x-y_z"} {
		if err := s.CreateAccount(ctx, name, Account{UserID: name}); err != nil {
			t.Fatalf("create %q: %v", name, err)
		}
		a, _, err := s.Account(ctx, name)
		if err != nil || a.UserID != name {
			t.Fatalf("account %q = %+v, %v", name, a, err)
		}
	}
	if _, _, err := s.Account(ctx, "a=b"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a=b: %v, want ErrNotFound", err)
	}
	for _, bad := range []string{"", "a b", "a*", "a>", "ünï"} {
		if _, _, err := s.Account(ctx, bad); !errors.Is(err, ErrNotFound) {
			t.Errorf("Account(%q) = %v, want ErrNotFound", bad, err)
		}
	}
	if err := s.CreateAccount(ctx, "a.b", Account{}); !errors.Is(err, ErrExists) {
		t.Fatalf("duplicate create: %v", err)
	}
}

func TestSessionsAndIndex(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	uid := NewUserID()
	if refs, err := s.UserSessions(ctx, uid); err != nil || len(refs) != 0 {
		t.Fatalf("no sessions yet: %v, %v", refs, err)
	}
	a := Session{SessionID: NewSessionID(), UserID: uid}
	b := Session{SessionID: NewSessionID(), UserID: uid}
	oa, err := s.CreateSession(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	ob, err := s.CreateSession(ctx, b)
	if err != nil || ob <= oa {
		t.Fatalf("order a=%d b=%d, %v", oa, ob, err)
	}
	refs, err := s.UserSessions(ctx, uid)
	if err != nil || len(refs) != 2 {
		t.Fatalf("sessions = %v, %v", refs, err)
	}
	// Refreshing a moves it after b.
	_, rev, err := s.Session(ctx, a.SessionID)
	if err != nil {
		t.Fatal(err)
	}
	oa2, err := s.RefreshSession(ctx, a, rev)
	if err != nil || oa2 <= ob {
		t.Fatalf("refresh order %d (b %d), %v", oa2, ob, err)
	}
	if _, err := s.RefreshSession(ctx, a, rev); !errors.Is(err, ErrConflict) {
		t.Fatalf("stale refresh: %v, want ErrConflict", err)
	}
	if err := s.DeleteSession(ctx, uid, a.SessionID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RefreshSession(ctx, a, rev); !errors.Is(err, ErrNotFound) {
		t.Fatalf("refresh after delete: %v, want ErrNotFound", err)
	}
	if refs, _ := s.UserSessions(ctx, uid); len(refs) != 1 || refs[0].SessionID != b.SessionID {
		t.Fatalf("after delete: %v", refs)
	}
}

func TestSigningKeyRace(t *testing.T) {
	js, err := jetstream.New(testenv.Connect(t, testenv.NATS(t)))
	if err != nil {
		t.Fatal(err)
	}
	keys := make([][]byte, 8)
	var wg sync.WaitGroup
	for i := range keys {
		wg.Go(func() {
			s, err := Open(context.Background(), js, Options{SessionTTL: time.Hour})
			if err != nil {
				t.Error(err)
				return
			}
			keys[i], err = s.SigningKey(context.Background(), func() []byte { return bytes.Repeat([]byte{byte(i)}, 32) })
			if err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	for i := range keys {
		if !bytes.Equal(keys[i], keys[0]) {
			t.Fatalf("replicas disagree on the key: %x vs %x", keys[i], keys[0])
		}
	}
}

// Every account is found by its id; an account that lost its name to
// another leaves no entry that finds anything.
func TestAccountByID(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	a := Account{UserID: NewUserID(), Username: "Ivy.M"}
	if err := s.CreateAccount(ctx, "ivy.m", a); err != nil {
		t.Fatal(err)
	}
	got, canonical, err := s.AccountByID(ctx, a.UserID)
	if err != nil || got.Username != "Ivy.M" || canonical != "ivy.m" {
		t.Fatalf("AccountByID = %+v %q %v", got, canonical, err)
	}
	loser := Account{UserID: NewUserID(), Username: "IVY.M"}
	if err := s.CreateAccount(ctx, "ivy.m", loser); !errors.Is(err, ErrExists) {
		t.Fatalf("create a taken name: %v", err)
	}
	if _, _, err := s.AccountByID(ctx, loser.UserID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("the loser's id: %v, want ErrNotFound", err)
	}
	for _, bad := range []string{"", "u.x", "u*", NewUserID()} {
		if _, _, err := s.AccountByID(ctx, bad); !errors.Is(err, ErrNotFound) {
			t.Fatalf("AccountByID(%q) = %v, want ErrNotFound", bad, err)
		}
	}
	if n, err := s.IndexAccounts(ctx); err != nil || n != 0 {
		t.Fatalf("IndexAccounts with every account indexed: %d, %v", n, err)
	}
}
