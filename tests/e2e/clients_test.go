package e2e

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parleychat/parley/clients/parley"
)

const pw = "correct horse battery staple"

var userSeq atomic.Int64

// uniq returns a fresh username with the given stem.
func uniq(stem string) string { return fmt.Sprintf("%s%d", stem, userSeq.Add(1)) }

// dial connects an SDK client; it is closed at the end of the test.
func dial(t *testing.T, addr string, opts ...parley.Option) *parley.Client {
	t.Helper()
	c, err := parley.Dial(ctxT(t, 10*time.Second), addr, opts...)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// registered dials addr and registers a new user.
func registered(t *testing.T, addr, stem string, opts ...parley.Option) (*parley.Client, *parley.Session) {
	t.Helper()
	c := dial(t, addr, opts...)
	s, err := c.Register(ctxT(t, 10*time.Second), uniq(stem), pw)
	if err != nil {
		t.Fatalf("register on %s: %v", addr, err)
	}
	return c, s
}

func onlineNames(c *parley.Client) []string {
	var out []string
	for _, u := range c.Online() {
		out = append(out, u.Username)
	}
	slices.Sort(out)
	return out
}

// seesOnline waits until c's live online list includes (or, with
// want=false, excludes) user.
func seesOnline(t *testing.T, c *parley.Client, user string, want bool, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		got := slices.Contains(onlineNames(c), user)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s online=%v in %v, want %v", within, user, got, onlineNames(c), want)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// waitEvent reads c's events until match returns true.
func waitEvent(t *testing.T, c *parley.Client, within time.Duration, what string, match func(parley.Event) bool) parley.Event {
	t.Helper()
	timer := time.NewTimer(within)
	defer timer.Stop()
	for {
		select {
		case ev, ok := <-c.Events():
			if !ok {
				t.Fatalf("event stream closed while waiting for %s", what)
			}
			if match(ev) {
				return ev
			}
		case <-timer.C:
			t.Fatalf("no %s within %s", what, within)
		}
	}
}

func wantErr(t *testing.T, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("err = %v, want %v", err, target)
	}
}

func ctxS(t *testing.T) context.Context { return ctxT(t, 10*time.Second) }
