package punch_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/parleychat/parley/clients/parley/internal/natsim"
	"github.com/parleychat/parley/clients/parley/internal/punch"
)

// TestDirectLoopback: two devices on one host, no NAT. The host pair is
// chosen, packets flow both ways, and packets from an address that never
// passed a check are not passed on.
func TestDirectLoopback(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	a, b := l.newSide("a", nil), l.newSide("b", nil)

	// A stranger's QUIC-looking packet before and after: never delivered.
	stranger, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer stranger.Close()
	junk := []byte{0x41, 'j', 'u', 'n', 'k'}
	stranger.WriteToUDPAddrPort(junk, b.host)

	if err := a.agent.Send([]byte{0x40}); !errors.Is(err, punch.ErrNoPath) {
		t.Fatalf("send before a path: %v, want ErrNoPath", err)
	}
	l.register(a, b)
	l.introduce(1, a, b)
	evA := a.waitEvent(t, punch.EventDirect, 5*time.Second)
	evB := b.waitEvent(t, punch.EventDirect, 5*time.Second)
	if evA.Pair.Remote != b.host || evB.Pair.Remote != a.host || evA.Pair.Kind != punch.Host {
		t.Errorf("pairs: a %+v, b %+v; want the host candidates", evA.Pair, evB.Pair)
	}
	stranger.WriteToUDPAddrPort(junk, b.host)
	exchange(t, a, b)
	for len(b.packets) > 0 {
		if pkt := <-b.packets; string(pkt) == string(junk) {
			t.Fatal("a stranger's packet was passed on")
		}
	}
	st := a.agent.Stats()
	if !st.Direct || st.TimeToFirstPair <= 0 || st.TimeToDirect < st.TimeToFirstPair || st.ChecksSent == 0 || st.Intro != 1 {
		t.Errorf("stats %+v", st)
	}
	if st := b.agent.Stats(); st.ChecksAnswered == 0 || st.Srflx != b.host {
		t.Errorf("b stats %+v", st)
	}
}

// TestRegisterRefused: a registration with the wrong key gets 401 and
// changes nothing at the rendezvous.
func TestRegisterRefused(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	s := l.newSide("a", nil, func(c *punch.Config) { c.RegisterKey = randomKey() })
	_, err := s.agent.Register(context.Background())
	if !errors.Is(err, punch.ErrRegisterRefused) {
		t.Fatalf("register with a wrong key: %v, want ErrRegisterRefused", err)
	}
	if r, ok := l.rv.Registration(s.user); ok {
		t.Errorf("the rendezvous recorded %+v", r)
	}
	// The right key works on the same socket.
	s2 := l.newSide("b", nil)
	if _, err := s2.agent.Register(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestRegisterBlocked: no answer in 5 s is ErrRegisterTimeout, after
// retries every 200 ms to both addresses.
func TestRegisterBlocked(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	nat := newNAT(t, natsim.Behavior{BlockUDP: true})
	s := l.newSide("a", nat)
	start := time.Now()
	_, err := s.agent.Register(context.Background())
	if !errors.Is(err, punch.ErrRegisterTimeout) {
		t.Fatalf("%v, want ErrRegisterTimeout", err)
	}
	if d := time.Since(start); d < 5*time.Second {
		t.Errorf("gave up after %v", d)
	}
	// At most 25 rounds (0, 200 ms, ... 4.8 s) to two addresses; fewer
	// when the machine is busy.
	if n := nat.Dropped(); n < 4 || n > 50 {
		t.Errorf("%d registration requests, want retries to both addresses, 50 at most", n)
	}
}

// TestNATPairs: checks and nomination through every pair of NAT kinds
// that can connect, each side as controlling; two symmetric NATs cannot.
func TestNATPairs(t *testing.T) {
	t.Parallel()
	kinds := map[string]natsim.Behavior{
		"full":      natsim.FullCone,
		"restr":     natsim.RestrictedCone,
		"portrestr": natsim.PortRestrictedCone,
		"sym":       natsim.Symmetric,
	}
	tests := []struct{ a, b string }{
		{"full", "full"}, {"full", "restr"}, {"restr", "full"}, {"full", "portrestr"}, {"portrestr", "full"},
		{"restr", "restr"}, {"restr", "portrestr"}, {"portrestr", "restr"}, {"portrestr", "portrestr"},
		{"sym", "full"}, {"full", "sym"}, {"sym", "restr"}, {"restr", "sym"},
	}
	for _, tt := range tests {
		t.Run(tt.a+"-"+tt.b, func(t *testing.T) {
			t.Parallel()
			l := newLab(t)
			a := l.newSide("a", newNAT(t, kinds[tt.a]))
			b := l.newSide("b", newNAT(t, kinds[tt.b]))
			l.register(a, b)
			l.introduce(1, a, b)
			evA := a.waitEvent(t, punch.EventDirect, 10*time.Second)
			evB := b.waitEvent(t, punch.EventDirect, 10*time.Second)
			// The path is between the two NATs' public addresses.
			if evA.Pair.Remote.Addr() != b.nat.Public() || evB.Pair.Remote.Addr() != a.nat.Public() {
				t.Errorf("pairs a %+v, b %+v", evA.Pair, evB.Pair)
			}
			if evA.Pair.Birthday || evB.Pair.Birthday {
				t.Errorf("birthday pairs a %+v, b %+v: cones and a cone do not need it", evA.Pair, evB.Pair)
			}
			exchange(t, a, b)
		})
	}
	t.Run("sym-sym", func(t *testing.T) {
		t.Parallel()
		l := newLab(t)
		a := l.newSide("a", newNAT(t, natsim.Symmetric))
		b := l.newSide("b", newNAT(t, natsim.Symmetric))
		l.register(a, b)
		l.introduce(1, a, b)
		// The checks run on (every 100 ms after the first second); none
		// gets an answer through.
		time.Sleep(2500 * time.Millisecond)
		for _, s := range []*side{a, b} {
			st := s.agent.Stats()
			if st.Direct || st.TimeToFirstPair != 0 || st.ExtraSockets != 0 || st.ChecksSent == 0 {
				t.Errorf("%s: %+v; want no pair, no birthday sockets, checks sent", s.name, st)
			}
			if err := s.agent.Send([]byte{0x40}); !errors.Is(err, punch.ErrNoPath) {
				t.Errorf("%s: send: %v", s.name, err)
			}
			select {
			case ev := <-s.events:
				t.Errorf("%s: event %+v", s.name, ev)
			default:
			}
		}
	})
}

// TestBirthday: a symmetric NAT against a port-restricted cone connects
// only by the birthday technique. The symmetric NAT's ports and the
// probes are kept to 1024 ports so that it takes a round or two.
func TestBirthday(t *testing.T) {
	t.Parallel()
	for _, symSide := range []string{"a", "b"} {
		t.Run("symmetric-"+symSide, func(t *testing.T) {
			t.Parallel()
			base := 20000 + rand.IntN(10000)
			symB := natsim.Behavior{Mapping: natsim.MapAddressPortDependent, Filtering: natsim.FilterAddressPortDependent,
				PortMin: base, PortMax: base + 1023}
			probe := func(c *punch.Config) { c.ProbePortMin, c.ProbePortMax = uint16(base), uint16(base+1023) }
			l := newLab(t)
			var a, b, sym, cone *side
			if symSide == "a" {
				a = l.newSide("a", newNAT(t, symB), probe)
				b = l.newSide("b", newNAT(t, natsim.PortRestrictedCone), probe)
				sym, cone = a, b
			} else {
				a = l.newSide("a", newNAT(t, natsim.PortRestrictedCone), probe)
				b = l.newSide("b", newNAT(t, symB), probe)
				sym, cone = b, a
			}
			l.register(a, b)
			l.introduce(1, a, b)
			evSym := sym.waitEvent(t, punch.EventDirect, 15*time.Second)
			evCone := cone.waitEvent(t, punch.EventDirect, 15*time.Second)
			// The cone side found the symmetric side's port by probing.
			if !evCone.Pair.Birthday || evCone.Pair.Remote.Addr() != sym.nat.Public() {
				t.Errorf("cone side's pair %+v: want one found by the birthday technique", evCone.Pair)
			}
			// Usually a probe hits one of the 256 extra sockets' ports and
			// the symmetric side keeps that socket; a probe may also hit the
			// session socket's own port for the cone, which then works.
			reg, _ := l.rv.Registration(cone.user)
			wantExtras := 0
			if evSym.Pair.Birthday {
				wantExtras = 1
			}
			if evSym.Pair.Remote != reg.Srflx || (evSym.Pair.Local == sym.host) == evSym.Pair.Birthday {
				t.Errorf("symmetric side's pair %+v: want one to the cone's srflx %v, on an extra socket if found by the birthday technique", evSym.Pair, reg.Srflx)
			}
			exchange(t, a, b)
			// The unused extra sockets are closed: the symmetric NAT keeps
			// only the session socket's mappings (rendezvous, cone) and the
			// chosen one's.
			deadline := time.Now().Add(5 * time.Second)
			for sym.agent.Stats().ExtraSockets != wantExtras || sym.nat.Mappings() > 3+wantExtras {
				if time.Now().After(deadline) {
					t.Fatalf("extra sockets %d, NAT mappings %d", sym.agent.Stats().ExtraSockets, sym.nat.Mappings())
				}
				time.Sleep(50 * time.Millisecond)
			}
		})
	}
}

// TestDeadPath: the NAT in front of b forgets its mappings; both sides
// find the path dead within 5 s of sending into the silence, register
// again by themselves (b from a new port), and a new introduction gets
// them direct again.
func TestDeadPath(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	a := l.newSide("a", newNAT(t, natsim.PortRestrictedCone))
	b := l.newSide("b", newNAT(t, natsim.PortRestrictedCone))
	l.register(a, b)
	l.introduce(1, a, b)
	a.waitEvent(t, punch.EventDirect, 5*time.Second)
	b.waitEvent(t, punch.EventDirect, 5*time.Second)
	exchange(t, a, b)
	oldB, _ := l.rv.Registration(b.user)

	b.nat.DropMappings()
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { // QUIC would keep sending; so do we, every 100 ms
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
				a.agent.Send([]byte{0x40, 1})
				b.agent.Send([]byte{0x40, 2})
			}
		}
	}()
	start := time.Now()
	a.waitEvent(t, punch.EventDead, 10*time.Second)
	b.waitEvent(t, punch.EventDead, 10*time.Second)
	if d := time.Since(start); d < 4*time.Second {
		t.Errorf("declared dead after %v; the silence must last 5 s", d)
	}
	close(stop)
	<-done
	for _, s := range []*side{a, b} {
		if err := s.agent.Send([]byte{0x40}); !errors.Is(err, punch.ErrNoPath) {
			t.Errorf("%s: send after death: %v", s.name, err)
		}
	}
	// b registered again from its new mapping.
	deadline := time.Now().Add(10 * time.Second)
	for {
		r, _ := l.rv.Registration(b.user)
		if r.Srflx.IsValid() && r.Srflx != oldB.Srflx {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("b did not register again: %+v (was %+v)", r, oldB)
		}
		time.Sleep(50 * time.Millisecond)
	}
	l.introduce(2, a, b)
	evA := a.waitEvent(t, punch.EventDirect, 10*time.Second)
	b.waitEvent(t, punch.EventDirect, 10*time.Second)
	if r, _ := l.rv.Registration(b.user); evA.Pair.Remote != r.Srflx {
		t.Errorf("a's new pair %+v, b's new srflx %v", evA.Pair, r.Srflx)
	}
	exchange(t, a, b)
}

// TestOldIntroIgnored: an introduction not newer than the last changes
// nothing.
func TestOldIntroIgnored(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	a, b := l.newSide("a", nil), l.newSide("b", nil)
	l.register(a, b)
	l.introduce(5, a, b)
	a.waitEvent(t, punch.EventDirect, 5*time.Second)
	if err := a.agent.Introduce(punch.Intro{Number: 4}); err != nil {
		t.Fatal(err)
	}
	if st := a.agent.Stats(); st.Intro != 5 || !st.Direct {
		t.Errorf("stats %+v", st)
	}
	a.agent.Close()
	if err := a.agent.Introduce(punch.Intro{Number: 6}); !errors.Is(err, punch.ErrClosed) {
		t.Errorf("after close: %v", err)
	}
	if _, err := a.agent.Register(context.Background()); !errors.Is(err, punch.ErrClosed) {
		t.Errorf("register after close: %v", err)
	}
}

func TestNewValidates(t *testing.T) {
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	good := punch.Config{Conn: conn, SessionID: "s", Side: "a", PeerSide: "b", CheckKey: []byte("k"), OnPacket: func([]byte) {}}
	tests := []struct {
		name string
		mod  func(*punch.Config)
	}{
		{"no conn", func(c *punch.Config) { c.Conn = nil }},
		{"no session", func(c *punch.Config) { c.SessionID = "" }},
		{"same sides", func(c *punch.Config) { c.PeerSide = "a" }},
		{"no key", func(c *punch.Config) { c.CheckKey = nil }},
		{"no OnPacket", func(c *punch.Config) { c.OnPacket = nil }},
		{"ports", func(c *punch.Config) { c.ProbePortMin, c.ProbePortMax = 2000, 1000 }},
	}
	for _, tt := range tests {
		c := good
		tt.mod(&c)
		if _, err := punch.New(c); !errors.Is(err, punch.ErrBadConfig) {
			t.Errorf("%s: %v, want ErrBadConfig", tt.name, err)
		}
	}
	ag, err := punch.New(good)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ag.Register(context.Background()); !errors.Is(err, punch.ErrBadConfig) {
		t.Errorf("register without rendezvous: %v", err)
	}
	ag.Close()
	ag.Close() // twice is fine
}

func TestHostCandidates(t *testing.T) {
	cands, err := punch.HostCandidates(4242)
	if err != nil {
		t.Fatal(err)
	}
	if len(cands) == 0 || len(cands) > punch.MaxCandidates {
		t.Fatalf("%d candidates: %v", len(cands), cands)
	}
	for _, c := range cands {
		if c.Port() != 4242 || c.Addr().IsLinkLocalUnicast() || c.Addr().IsUnspecified() {
			t.Errorf("candidate %v", c)
		}
	}
	if !slices.Contains(cands, netip.MustParseAddrPort("127.0.0.1:4242")) && len(cands) < punch.MaxCandidates {
		t.Errorf("no loopback candidate in %v", cands)
	}
	// Loopback comes after the others.
	seenLoop := false
	for _, c := range cands {
		if c.Addr().IsLoopback() {
			seenLoop = true
		} else if seenLoop {
			t.Errorf("loopback before %v in %v", c, cands)
		}
	}
}

// TestStartDelay: the first check leaves Intro.StartDelay after the
// introduction, not before.
func TestStartDelay(t *testing.T) {
	t.Parallel()
	l := newLab(t)
	a := l.newSide("a", nil)
	nobody, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer nobody.Close()
	start := time.Now()
	a.agent.Introduce(punch.Intro{Number: 1, StartDelay: time.Second, Candidates: []punch.Candidate{
		{Kind: punch.Host, Addr: nobody.LocalAddr().(*net.UDPAddr).AddrPort()},
	}})
	buf := make([]byte, 1500)
	nobody.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, _, err := nobody.ReadFromUDP(buf); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < time.Second {
		t.Errorf("first check after %v, before the start delay", d)
	}
}
