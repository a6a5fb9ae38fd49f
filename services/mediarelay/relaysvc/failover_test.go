package relaysvc_test

import (
	"context"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/parleychat/parley/libs/subject"
	"github.com/parleychat/parley/libs/testenv"
	"github.com/parleychat/parley/services/mediarelay/relaysvc"
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
	revBefore := e.recordRev(id)
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
	// The survivor's rosters are of its takeover's revision, newer than
	// any the dead owner sent, so a gateway ignores a late repeat of the
	// dead owner's instead of the survivor's.
	testenv.Eventually(t, 10*time.Second, "a roster of the takeover's revision", func() bool {
		revs := d.rosterRevs()
		return len(revs) > 0 && revs[len(revs)-1] > revBefore
	})
	if revs := d.rosterRevs(); !slices.IsSorted(revs) {
		t.Errorf("roster revisions %v across the failover, want them never to go back", revs)
	}
	if gap > 2*time.Second {
		t.Errorf("forwarding resumed %v after the owner died, want under 2 s (1.25 s by design)", gap)
	}
	cancel()
}

// A replica whose work on one call hangs (a KV call that never answers)
// keeps heartbeating, so the other replicas do not take its calls for
// dead; and that call does not hold up the others: another call still
// ends MISSED at its ring deadline.
func TestHeartbeatsWhileWorkHangs(t *testing.T) {
	var stuck atomic.Value // the call id whose tick work hangs
	stuck.Store("")
	var hung atomic.Int32
	e := newEnvSetup(t, 1, func(c *relaysvc.Config) { c.RingTimeout = 1500 * time.Millisecond },
		func(s *relaysvc.Service) {
			relaysvc.SetTickWorkHook(s, func(ctx context.Context, id string) {
				if id == stuck.Load().(string) {
					hung.Add(1)
					<-ctx.Done()
				}
			})
		})
	var beats atomic.Int32
	sub, err := e.nc.Subscribe(subject.MediaRelayAlive, func(m *nats.Msg) {
		if string(m.Data) == e.replicas[0].svc.ID() {
			beats.Add(1)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	e.must("flush", e.nc.Flush())

	a := e.place(alice, "bob").Call.CallId
	stuck.Store(a)
	testenv.Eventually(t, 10*time.Second, "the work on alice's call hangs", func() bool { return hung.Load() > 0 })
	from := beats.Load()
	testenv.Eventually(t, 10*time.Second, "heartbeats while the work hangs", func() bool { return beats.Load() >= from+8 })

	b := e.place(carol, "dave").Call.CallId
	e.waitEvent(dave, evEnded, b, endedWith(missed))
	e.waitEvent(carol, evEnded, b, endedWith(missed))
}
