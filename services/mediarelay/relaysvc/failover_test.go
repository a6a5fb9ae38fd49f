package relaysvc_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parleychat/parley/libs/testenv"
)

// The replica forwarding a call dies (its NATS connection drops, as in a
// kill -9): another replica takes the call over and the gateway's audio,
// published on the same subject all along (nobody redials), is forwarded
// again within about 1.25 s.
func TestFailover(t *testing.T) {
	e := newEnv(t, 2, nil)
	a := e.place(alice, "bob")
	id := a.Call.CallId
	b := e.join(bob, id)
	d := e.downlink(id)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var seq atomic.Uint32
	go func() { // alice talks, 20 ms frames, as her gateway publishes them
		for ctx.Err() == nil {
			e.send(id, a.StreamId, seq.Add(1), 20, true)
			time.Sleep(20 * time.Millisecond)
		}
	}()
	testenv.Eventually(t, 10*time.Second, "alice heard", func() bool { return len(d.audioFrom(a.StreamId)) > 10 })

	owner := e.record(id).GetOwner()
	var dead, survivor *replica
	for _, r := range e.replicas {
		if r.svc.ID() == owner {
			dead = r
		} else {
			survivor = r
		}
	}
	if dead == nil {
		t.Fatalf("the call's owner %q is not a replica", owner)
	}
	killedAt := time.Now()
	dead.nc.Close() // abrupt: no goodbye, its heartbeats and subscriptions just stop
	lastBefore := seq.Load()

	var resumed received
	testenv.Eventually(t, 15*time.Second, "alice heard again after the owner died", func() bool {
		for _, r := range d.audioFrom(a.StreamId) {
			if r.h.Seq > lastBefore+1 && r.at.After(killedAt) {
				resumed = r
				return true
			}
		}
		return false
	})
	gap := resumed.at.Sub(killedAt)
	t.Logf("forwarding resumed %v after the owner died", gap.Round(time.Millisecond))
	if got := e.record(id).GetOwner(); got != survivor.svc.ID() {
		t.Fatalf("owner after the failover %q, want %q", got, survivor.svc.ID())
	}
	// The call goes on: bob is still in it and his audio is forwarded too.
	e.forwarded(d, id, b.StreamId, 1)
	if gap > 2*time.Second {
		t.Errorf("forwarding resumed %v after the owner died, want under 2 s (1.25 s by design)", gap)
	}
	cancel()
}
