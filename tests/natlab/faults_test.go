package natlab

import (
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/parleychat/parley/libs/testenv/natlab"
)

// TestNATFaults breaks a working direct session in the ways networks do
// and checks that users do not lose it:
//
//   - rendezvous-gone: the rendezvous goes silent after the introduction.
//     parleyd hosts the rendezvous with everything else, so its STUN ports
//     are blocked with nftables in the public namespace (it stays up for
//     TCP; `parley nat` from elsewhere then finds UDP blocked). The direct
//     session needs no server: messages keep flowing direct, and nothing
//     goes through the relay.
//   - flush: a NAT forgets its bindings (conntrack flushed, as after a
//     router reboot) mid-session; a symmetric NAT maps the side anew on
//     another port. The session recovers direct, and a message sent during
//     the break arrives exactly once.
//   - move: a device changes its address mid-session (its NAT maps it
//     anew). The session recovers direct, and a message sent during the
//     break arrives exactly once.
func TestNATFaults(t *testing.T) {
	t.Parallel()
	// The rendezvous case blocks the lab's rendezvous: a lab of its own.
	lr := natlab.New(t)
	startParleyd(t, lr)
	l := natlab.New(t)
	startParleyd(t, l)

	type fault struct {
		name  string
		lab   *natlab.Lab
		a, b  natlab.Kind
		run   func(t *testing.T, p pair, ha, hb *natlab.Client)
		hosts [2]*natlab.Client
	}
	faults := []*fault{
		{name: "rendezvous-gone", lab: lr, a: natlab.PortRestrictedCone, b: natlab.PortRestrictedCone,
			run: func(t *testing.T, p pair, _, _ *natlab.Client) { rendezvousGone(t, lr, p) }},
		{name: "flush/symmetric-controlled", lab: l, a: natlab.FullCone, b: natlab.Symmetric,
			run: func(t *testing.T, p pair, _, hb *natlab.Client) {
				breakAndRecover(t, p, "flush", func() { hb.NAT().Flush(t) })
			}},
		{name: "flush/symmetric-controlling", lab: l, a: natlab.Symmetric, b: natlab.RestrictedCone,
			run: func(t *testing.T, p pair, ha, _ *natlab.Client) {
				breakAndRecover(t, p, "flush", func() { ha.NAT().Flush(t) })
			}},
		{name: "flush/both-port-restricted", lab: l, a: natlab.PortRestrictedCone, b: natlab.PortRestrictedCone,
			run: func(t *testing.T, p pair, ha, hb *natlab.Client) {
				breakAndRecover(t, p, "flush", func() { ha.NAT().Flush(t); hb.NAT().Flush(t) })
			}},
		{name: "move/controlling", lab: l, a: natlab.PortRestrictedCone, b: natlab.FullCone,
			run: func(t *testing.T, p pair, ha, _ *natlab.Client) {
				breakAndRecover(t, p, "move", func() { ha.Move(t) })
			}},
		{name: "move/controlled", lab: l, a: natlab.PortRestrictedCone, b: natlab.PortRestrictedCone,
			run: func(t *testing.T, p pair, _, hb *natlab.Client) {
				breakAndRecover(t, p, "move", func() { hb.Move(t) })
			}},
	}
	for _, f := range faults {
		f.hosts = [2]*natlab.Client{f.lab.AddNAT(f.a).AddClient(), f.lab.AddNAT(f.b).AddClient()}
	}
	var wg sync.WaitGroup
	for i, f := range faults {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t.Run(f.name, func(t *testing.T) {
				a := newUser(t, f.hosts[0], fmt.Sprintf("alice%d", i))
				b := newUser(t, f.hosts[1], fmt.Sprintf("bob%d", i))
				p := connect(t, a, b)
				p.a.wait(t, 0, 15*time.Second, "direct path", isPath("direct"))
				p.b.wait(t, 0, 15*time.Second, "direct path", isPath("direct"))
				exchange(t, p.a, p.b, "before", 15*time.Second)
				f.run(t, p, f.hosts[0], f.hosts[1])
			})
		}()
	}
	wg.Wait()
}

// stats asks c for /stats.
func stats(t *testing.T, c *cli) event {
	t.Helper()
	m := c.mark()
	c.send(t, "/stats")
	st, _ := c.wait(t, m, 5*time.Second, "stats", isEvent("stats"))
	return st
}

// rendezvousGone silences the rendezvous and checks the session goes on
// direct.
func rendezvousGone(t *testing.T, l *natlab.Lab, p pair) {
	before := [2]event{stats(t, p.a), stats(t, p.b)}
	l.Public().BlockUDPPorts(t, stunPort, altPort)
	// It is gone: a NAT check from another host finds no UDP.
	probe := &user{name: "prober", host: l.AddPublicHost(), dir: t.TempDir()}
	var r natReport
	if err := json.Unmarshal([]byte(probe.run(t, "nat", "--json", "--stun", stunAddr)), &r); err != nil || !r.UDPBlocked {
		t.Fatalf("the blocked rendezvous still answers: %+v (%v)", r, err)
	}
	// The session lives on: messages both ways, direct, for a while.
	for i := range 5 {
		for _, d := range [][2]*cli{{p.a, p.b}, {p.b, p.a}} {
			sent := exchange(t, d[0], d[1], fmt.Sprintf("%s without the rendezvous %d", d[0].u.name, i), 15*time.Second)
			if got := sent.str("path"); got != "direct" {
				t.Errorf("a message went %s without the rendezvous", got)
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	after := [2]event{stats(t, p.a), stats(t, p.b)}
	for i, side := range []string{"a", "b"} {
		if after[i].str("path") != "direct" {
			t.Errorf("%s: path %s without the rendezvous", side, after[i].str("path"))
		}
		if after[i].num("relay_sent") != before[i].num("relay_sent") {
			t.Errorf("%s sent %v packets through the relay without the rendezvous", side,
				after[i].num("relay_sent")-before[i].num("relay_sent"))
		}
		if after[i].num("direct_sent") <= before[i].num("direct_sent") {
			t.Errorf("%s sent nothing direct without the rendezvous", side)
		}
	}
}

// breakAndRecover breaks the path, has both sides send a message at once
// (they cannot get through until the session recovers), and checks that
// both arrive exactly once and the session comes back direct.
//
// Both send: a side whose NAT lost its binding cannot be reached until it
// sends something itself (its NAT drops what comes in meanwhile), and its
// keepalive (a QUIC PING after 15 s without sending) is its only packet
// when it has nothing to say; the test does not wait for that.
func breakAndRecover(t *testing.T, p pair, what string, brk func()) {
	ma, mb := p.a.mark(), p.b.mark()
	start := time.Now()
	brk()
	during := "sent during the " + what
	p.a.send(t, during+" by a")
	p.b.send(t, during+" by b")
	p.b.wait(t, 0, 30*time.Second, "a's message sent during the "+what, isMessage(during+" by a"))
	p.a.wait(t, 0, 30*time.Second, "b's message sent during the "+what, isMessage(during+" by b"))
	arrived := time.Since(start)
	// Back to direct (if it left it at all), and messages both ways.
	for _, c := range []struct {
		c    *cli
		mark int
	}{{p.a, ma}, {p.b, mb}} {
		if st := stats(t, c.c); st.str("path") != "direct" {
			c.c.wait(t, c.mark, 30*time.Second, "direct path again", isPath("direct"))
		}
	}
	for i := range 2 {
		for _, d := range [][2]*cli{{p.a, p.b}, {p.b, p.a}} {
			sent := exchange(t, d[0], d[1], fmt.Sprintf("%s after the %s %d", d[0].u.name, what, i), 15*time.Second)
			if got := sent.str("path"); got != "direct" {
				t.Errorf("after the %s a message went %s", what, got)
			}
		}
	}
	time.Sleep(300 * time.Millisecond) // a duplicate would arrive by now
	if n := p.b.count(isMessage(during + " by a")); n != 1 {
		t.Errorf("a's message sent during the %s arrived %d times", what, n)
	}
	if n := p.a.count(isMessage(during + " by b")); n != 1 {
		t.Errorf("b's message sent during the %s arrived %d times", what, n)
	}
	t.Logf("the messages sent during the %s arrived after %v; paths a %v, b %v", what, arrived.Round(time.Millisecond),
		pathsSince(p.a, ma), pathsSince(p.b, mb))
}

// pathsSince lists the path events from index from on.
func pathsSince(c *cli, from int) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, e := range c.events[from:] {
		if e.str("event") == "path" {
			out = append(out, e.str("path"))
		}
	}
	return out
}
