package punch_test

import (
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/parleychat/parley/clients/parley/internal/natsim"
	"github.com/parleychat/parley/clients/parley/internal/punch"
)

// Repairing a pair without the server (§20.4 Moving): a NAT that maps a
// side anew, or a side that moved, takes the pair with it.

// keepSending sends a packet from each side every 100 ms, as QUIC would,
// until the returned function (or the test's end) stops it and drops what
// arrived meanwhile.
func keepSending(t *testing.T, sides ...*side) (stopAndDrain func()) {
	stop := make(chan struct{})
	done := make(chan struct{})
	var once sync.Once
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
				for _, s := range sides {
					s.agent.Send([]byte{0x40, s.name[0]})
				}
			}
		}
	}()
	end := func() {
		once.Do(func() {
			close(stop)
			<-done
			for _, s := range sides {
				for len(s.packets) > 0 {
					<-s.packets
				}
			}
		})
	}
	t.Cleanup(end)
	return end
}

// noDead fails if a side declared its pair dead.
func noDead(t *testing.T, sides ...*side) {
	t.Helper()
	for _, s := range sides {
		for {
			select {
			case ev := <-s.events:
				if ev.Kind == punch.EventDead {
					t.Errorf("%s: the pair died (%+v) instead of moving", s.name, ev.Pair)
				}
				continue
			default:
			}
			break
		}
	}
}

// waitRemote waits until s's selected pair goes to a remote other than old.
func waitRemote(t *testing.T, s *side, old netip.AddrPort, within time.Duration) punch.Pair {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		st := s.agent.Stats()
		if st.Direct && st.Pair.Remote != old {
			return st.Pair
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: the pair did not move from %v within %v (stats %+v)", s.name, old, within, st)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// The controlling side's NAT maps it anew: its liveness probes carry
// USE-CANDIDATE, so the controlled side moves its end of the pair to the
// new mapping; neither side declares the pair dead.
func TestControllingRemapped(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	a := l.newSide("a", newNAT(t, natsim.PortRestrictedCone))
	b := l.newSide("b", newNAT(t, natsim.FullCone))
	l.register(a, b)
	l.introduce(1, a, b)
	a.waitEvent(t, punch.EventDirect, 5*time.Second)
	b.waitEvent(t, punch.EventDirect, 5*time.Second)
	exchange(t, a, b)
	old := b.agent.Stats().Pair.Remote

	a.nat.DropMappings()
	stop := keepSending(t, a, b)
	moved := waitRemote(t, b, old, 8*time.Second)
	stop()
	exchange(t, a, b)
	noDead(t, a, b)
	if moved.Remote.Addr() != a.nat.Public() {
		t.Errorf("b's pair moved to %v, not to a's NAT %v", moved.Remote, a.nat.Public())
	}
}

// The controlled side's NAT maps it anew: its probes reach the controlling
// side from the new mapping while the pair is silent, and the controlling
// side nominates the pair there.
func TestControlledRemapped(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	a := l.newSide("a", newNAT(t, natsim.FullCone))
	b := l.newSide("b", newNAT(t, natsim.PortRestrictedCone))
	l.register(a, b)
	l.introduce(1, a, b)
	a.waitEvent(t, punch.EventDirect, 5*time.Second)
	b.waitEvent(t, punch.EventDirect, 5*time.Second)
	exchange(t, a, b)
	old := a.agent.Stats().Pair.Remote

	b.nat.DropMappings()
	stop := keepSending(t, a, b)
	moved := waitRemote(t, a, old, 8*time.Second)
	stop()
	exchange(t, a, b)
	noDead(t, a, b)
	if moved.Remote.Addr() != b.nat.Public() {
		t.Errorf("a's pair moved to %v, not to b's NAT %v", moved.Remote, b.nat.Public())
	}
}

// A side that learns it moved (Moved) tells the peer at once with
// USE-CANDIDATE checks from its new address: the pair is repaired before
// the liveness probes would even start (3 s of silence), from either side,
// and the side registers again.
func TestMoved(t *testing.T) {
	t.Parallel()
	for _, mover := range []string{"a", "b"} {
		t.Run(mover, func(t *testing.T) {
			t.Parallel()
			l := newLab(t)
			a := l.newSide("a", newNAT(t, natsim.FullCone))
			b := l.newSide("b", newNAT(t, natsim.FullCone))
			l.register(a, b)
			l.introduce(1, a, b)
			a.waitEvent(t, punch.EventDirect, 5*time.Second)
			b.waitEvent(t, punch.EventDirect, 5*time.Second)
			exchange(t, a, b)
			m, other := a, b
			if mover == "b" {
				m, other = b, a
			}
			old := other.agent.Stats().Pair.Remote
			oldReg, _ := l.rv.Registration(m.user)

			m.nat.DropMappings() // its packets leave from a new address now
			m.agent.Moved()
			stop := keepSending(t, a, b)
			waitRemote(t, other, old, 2*time.Second)
			stop()
			exchange(t, a, b)
			noDead(t, a, b)
			deadline := time.Now().Add(5 * time.Second)
			for {
				r, _ := l.rv.Registration(m.user)
				if r.Srflx.IsValid() && r.Srflx != oldReg.Srflx {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s did not register again after moving: %+v", mover, r)
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
}

// The peer's first checks can arrive before this side's own introduction
// (the rendezvous sends both at once; one travels faster): the
// peer-reflexive candidate they teach must survive the introduction. A
// symmetric peer's check comes from a mapping the introduction does not
// name, and once the peer's pair works it checks no more, so forgetting it
// left the pair to the birthday technique's luck (found by the NAT lab).
func TestCheckBeforeIntroduction(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	a := l.newSide("a", newNAT(t, natsim.FullCone))
	b := l.newSide("b", newNAT(t, natsim.Symmetric))
	l.register(a, b)
	ia, ib := l.intro(1, a, b), l.intro(1, b, a)
	if err := b.agent.Introduce(ib); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for a.agent.Stats().ChecksAnswered == 0 {
		if time.Now().After(deadline) {
			t.Fatal("b's checks never reached a")
		}
		time.Sleep(time.Millisecond)
	}
	if err := a.agent.Introduce(ia); err != nil {
		t.Fatal(err)
	}
	ev := a.waitEvent(t, punch.EventDirect, 3*time.Second)
	b.waitEvent(t, punch.EventDirect, 3*time.Second)
	if ev.Pair.Birthday {
		t.Errorf("found by the birthday technique, not by b's checks: %+v", ev.Pair)
	}
	exchange(t, a, b)
}
