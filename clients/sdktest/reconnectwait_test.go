package sdktest

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/parleychat/parley/clients/internal/parleytest"
	"github.com/parleychat/parley/clients/parley"
	"github.com/parleychat/parley/standalone/server"
)

// refusals records the SDK's "reconnect failed" log lines: when each came
// and the retry_after the refusal carried.
type refusals struct {
	mu   sync.Mutex
	at   []time.Time
	wait []time.Duration
}

func (r *refusals) Enabled(context.Context, slog.Level) bool { return true }
func (r *refusals) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *refusals) WithGroup(string) slog.Handler            { return r }
func (r *refusals) Handle(_ context.Context, rec slog.Record) error {
	if rec.Message != "parley: reconnect failed" {
		return nil
	}
	var wait time.Duration
	rec.Attrs(func(a slog.Attr) bool {
		if a.Key == "retry_after" {
			wait = a.Value.Duration()
		}
		return true
	})
	r.mu.Lock()
	defer r.mu.Unlock()
	r.at = append(r.at, time.Now())
	r.wait = append(r.wait, wait)
	return nil
}

// A gateway at its per-address cap refuses a reconnect with RATE_LIMITED
// and retry_after_ms (protocol §5, §11); the SDK waits that long before it
// dials again, however short its own backoff, and reconnects once a place
// is free.
func TestReconnectWaitsRetryAfter(t *testing.T) {
	p := parleytest.Start(t, func(c *server.Config) {
		c.Gateway.MaxUnauthConnsPerAddr = 1
		c.Gateway.ConnLimitExempt = nil // loopback is exempt by default
	})
	relay := parleytest.NewRelay(t, p.HostPort())
	log := &refusals{}
	alice := dial(t, relay.Addr(), parley.WithLogger(slog.New(log)), parley.WithBackoff(10*time.Millisecond, 20*time.Millisecond))
	s := register(t, alice, "alice")
	next(t, alice, snapshotWith("alice"))

	// With a session, alice's connection no longer counts as one without:
	// another client from the same address takes the only such place.
	squatter := dial(t, p.TCPAddr(), parley.WithReconnect(false))
	relay.Cut()
	next[parley.DisconnectedEvent](t, alice, nil)
	// Two refusals at least: the longest retry_after_ms is 2 s.
	time.Sleep(3500 * time.Millisecond)
	squatter.Close()

	re := next[parley.ReconnectedEvent](t, alice, nil)
	if re.Session == nil || re.Session.SessionID != s.SessionID {
		t.Fatalf("reconnected with %+v, want session %s", re.Session, s.SessionID)
	}
	log.mu.Lock()
	defer log.mu.Unlock()
	if len(log.at) < 2 {
		t.Fatalf("%d refused reconnects while the place was taken, want at least 2", len(log.at))
	}
	for i, w := range log.wait {
		if w < time.Second || w > 2*time.Second {
			t.Errorf("refusal %d asked to wait %v, want 1-2 s (§11)", i+1, w)
		}
		if i+1 < len(log.at) {
			if gap := log.at[i+1].Sub(log.at[i]); gap < w {
				t.Errorf("attempt %d came %v after a refusal asking for %v", i+2, gap, w)
			}
		}
	}
}
