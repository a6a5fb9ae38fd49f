package sdktest

import (
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/parleychat/parley/clients/internal/parleytest"
	"github.com/parleychat/parley/clients/parley"
)

// tokenShelf plays the token store processes share (the CLI's
// sessions.json): the newest token saved for each session.
type tokenShelf struct {
	mu sync.Mutex
	s  map[string]parley.Session
}

func (ts *tokenShelf) save(s *parley.Session) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if old, ok := ts.s[s.SessionID]; !ok || s.ExpiresAt.After(old.ExpiresAt) {
		ts.s[s.SessionID] = *s
	}
}

func (ts *tokenShelf) newest(id string) (string, time.Time) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	s := ts.s[id]
	return s.Token, s.ExpiresAt
}

// resumeLater resumes token on a new connection until the fresh token
// expires after after (the server's expiries have millisecond resolution).
func resumeLater(t *testing.T, addr, token string, after time.Time) *parley.Session {
	t.Helper()
	for range 100 {
		c := dial(t, addr, parley.WithPresenceFeed(false))
		s, err := c.Resume(ctxT(t), token)
		c.Close()
		if err != nil {
			t.Fatalf("resume: %v", err)
		}
		if s.ExpiresAt.After(after) {
			return s
		}
		token = s.Token
	}
	t.Fatal("resumes never gave a later expiry")
	return nil
}

// A session shared by several processes: each resume rotates the token
// (protocol §8.3), so a long-running client must present the newest token
// any of them saved, not the one it received itself, when it resumes after
// a break (the file-transfer half: TestBearerPresentsNewestSavedToken in
// clients/parley); and never an older one.
func TestTokenSourceGivesNewestToken(t *testing.T) {
	p := parleytest.Start(t, nil)
	relay := parleytest.NewRelay(t, p.HostPort())
	shelf := &tokenShelf{s: map[string]parley.Session{}}
	alice := dial(t, relay.Addr(), parley.WithTokenSource(shelf.newest))
	s := register(t, alice, "alice")
	shelf.save(s)
	next(t, alice, snapshotWith("alice"))

	// Another process (a CLI command) resumes the saved session.
	other := resumeLater(t, p.TCPAddr(), s.Token, s.ExpiresAt)
	shelf.save(other)
	relay.Cut()
	re := next[parley.ReconnectedEvent](t, alice, nil)
	if toks := relay.ResumeTokens(); len(toks) == 0 || toks[len(toks)-1] != other.Token {
		t.Fatalf("reconnect resumed with %q, want the newest saved token", toks)
	}
	if re.Session == nil || re.Session.SessionID != s.SessionID {
		t.Fatalf("reconnected with %+v", re.Session)
	}
	// alice saves what she received (as the TUI does); the shelf now holds
	// a token older than hers only if she did not: play that.
	mine := alice.Session().Token
	relay.Cut()
	next[parley.ReconnectedEvent](t, alice, nil)
	toks := relay.ResumeTokens()
	if toks[len(toks)-1] != mine || slices.Contains(toks[:len(toks)-1], mine) {
		t.Errorf("second reconnect resumed with %q, want alice's own newer token %q (the shelf's is older)", toks[len(toks)-1], mine)
	}
}
