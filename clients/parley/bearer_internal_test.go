package parley

import (
	"testing"
	"time"
)

// File transfers authorize with the newest token any process sharing the
// session saved (WithTokenSource, protocol §8.3 rotates the token on every
// resume), never with an older one, and never with another session's.
func TestBearerPresentsNewestSavedToken(t *testing.T) {
	now := time.Now()
	saved := map[string]struct {
		token   string
		expires time.Time
	}{}
	cfg := defaultConfig()
	cfg.newestToken = func(id string) (string, time.Time) {
		s := saved[id]
		return s.token, s.expires
	}
	c := &Client{cfg: cfg, session: &Session{SessionID: "s1", Token: "mine", ExpiresAt: now.Add(time.Hour)}}

	if got := c.bearer(); got != "Bearer mine" {
		t.Fatalf("nothing saved: bearer = %q, want its own token", got)
	}
	saved["s1"] = struct {
		token   string
		expires time.Time
	}{"older", now.Add(time.Minute)}
	if got := c.bearer(); got != "Bearer mine" {
		t.Fatalf("an older saved token: bearer = %q, want its own newer token", got)
	}
	saved["s2"] = struct {
		token   string
		expires time.Time
	}{"other-session", now.Add(3 * time.Hour)}
	saved["s1"] = struct {
		token   string
		expires time.Time
	}{"newer", now.Add(2 * time.Hour)}
	if got := c.bearer(); got != "Bearer newer" {
		t.Fatalf("a newer saved token: bearer = %q, want it", got)
	}
	if s := c.Session(); s.Token != "newer" || !s.ExpiresAt.Equal(now.Add(2*time.Hour)) {
		t.Fatalf("session after adopting = %+v, want the newer token and expiry", s)
	}
}
