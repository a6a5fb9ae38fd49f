package e2e

import (
	"testing"
	"time"

	"github.com/parleychat/parley/clients/parley"
)

// TestTakeoverAcrossGateways: with -session-policy takeover, a login on gw2
// pushes alice's older session on gw1 out with LOGGED_IN_ELSEWHERE, and the
// old token no longer resumes.
func TestTakeoverAcrossGateways(t *testing.T) {
	c := newCluster(t, 2, clusterOpts{sessionPolicy: "takeover"})
	old, s := registered(t, "tcp://"+c.gateways[0].tcp, "alice")
	other, _ := registered(t, "tcp://"+c.gateways[0].tcp, "bob")

	fresh := dial(t, "tcp://"+c.gateways[1].tcp)
	if _, err := fresh.Login(ctxS(t), s.Username, pw); err != nil {
		t.Fatalf("second login: %v", err)
	}
	ev := waitEvent(t, old, 10*time.Second, "SessionEnded", func(ev parley.Event) bool {
		_, ok := ev.(parley.SessionEndedEvent)
		return ok
	}).(parley.SessionEndedEvent)
	wantErr(t, ev.Err(), parley.ErrLoggedInElsewhere)

	again := dial(t, "tcp://"+c.gateways[1].tcp)
	_, err := again.Resume(ctxS(t), s.Token)
	wantErr(t, err, parley.ErrSessionRevoked)

	// alice is still online (the new session), and bob never noticed a gap.
	seesOnline(t, other, s.Username, true, 5*time.Second)
	if _, err := fresh.Who(ctxS(t)); err != nil {
		t.Fatalf("new session unusable: %v", err)
	}
}

// TestRejectPolicy: with -session-policy reject, a second login while the
// account is online is refused; after logout it succeeds.
func TestRejectPolicy(t *testing.T) {
	c := newCluster(t, 2, clusterOpts{sessionPolicy: "reject"})
	first, s := registered(t, "tcp://"+c.gateways[0].tcp, "alice")

	second := dial(t, "tcp://"+c.gateways[1].tcp)
	_, err := second.Login(ctxS(t), s.Username, pw)
	wantErr(t, err, parley.ErrAlreadyLoggedIn)

	if err := first.Logout(ctxS(t)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err = second.Login(ctxS(t), s.Username, pw)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("login after the first session logged out: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
