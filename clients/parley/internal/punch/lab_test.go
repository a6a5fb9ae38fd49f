package punch_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parleychat/parley/clients/parley/internal/natsim"
	"github.com/parleychat/parley/clients/parley/internal/punch"
)

// The lab: two devices, each behind a simulated NAT (natsim stands in for
// the network-namespace NAT lab, which comes later) or on a plain loopback
// socket, and a simulated rendezvous. The tests play the rendezvous's
// introductions from what it recorded.

var sessionCount atomic.Int64

type lab struct {
	t         *testing.T
	rv        *natsim.Rendezvous
	sessionID string
	checkKey  []byte
}

func newLab(t *testing.T) *lab {
	t.Helper()
	rv, err := natsim.NewRendezvous(netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.2"), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rv.Close() })
	return &lab{t: t, rv: rv, sessionID: fmt.Sprintf("s%d", sessionCount.Add(1)), checkKey: randomKey()}
}

func randomKey() []byte {
	k := make([]byte, 32)
	rand.Read(k)
	return k
}

func testLog(t *testing.T) *slog.Logger {
	if os.Getenv("PUNCH_DEBUG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test", t.Name())
	}
	return nil
}

type side struct {
	name    string
	agent   *punch.Agent
	host    netip.AddrPort
	user    string
	events  chan punch.Event
	packets chan []byte
	nat     *natsim.NAT
}

type sideOpt func(*punch.Config)

// newSide makes side name ("a" controls) behind nat, or on a loopback
// socket when nat is nil.
func (l *lab) newSide(name string, nat *natsim.NAT, opts ...sideOpt) *side {
	t := l.t
	t.Helper()
	var conn net.PacketConn
	var err error
	if nat != nil {
		conn, err = nat.Listen()
	} else {
		conn, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	}
	if err != nil {
		t.Fatal(err)
	}
	s := &side{
		name:    name,
		host:    conn.LocalAddr().(*net.UDPAddr).AddrPort(),
		user:    l.sessionID + "-reg-" + name,
		events:  make(chan punch.Event, 16),
		packets: make(chan []byte, 1024),
		nat:     nat,
	}
	regKey := randomKey()
	l.rv.AddSession(s.user, regKey)
	peer := "b"
	if name == "b" {
		peer = "a"
	}
	cfg := punch.Config{
		Conn:             conn,
		SessionID:        l.sessionID,
		Side:             name,
		PeerSide:         peer,
		CheckKey:         l.checkKey,
		Controlling:      name == "a",
		RegisterUsername: s.user,
		RegisterKey:      regKey,
		STUNAddr:         l.rv.Primary().String(),
		STUNAltAddr:      l.rv.Alternate().String(),
		OnPacket: func(pkt []byte) {
			select {
			case s.packets <- bytes.Clone(pkt):
			default:
			}
		},
		OnEvent: func(ev punch.Event) { s.events <- ev },
		Log:     testLog(t),
	}
	if nat != nil {
		cfg.ListenExtra = func() (net.PacketConn, error) { return nat.Listen() }
	}
	for _, o := range opts {
		o(&cfg)
	}
	s.agent, err = punch.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.agent.Close() })
	return s
}

func (l *lab) register(sides ...*side) {
	l.t.Helper()
	for _, s := range sides {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		srflx, err := s.agent.Register(ctx)
		cancel()
		if err != nil {
			l.t.Fatalf("%s: register: %v", s.name, err)
		}
		reg, ok := l.rv.Registration(s.user)
		if !ok || reg.Srflx != srflx {
			l.t.Fatalf("%s: registered %v, the rendezvous saw %+v", s.name, srflx, reg)
		}
	}
}

func mappingOf(r natsim.Registration) punch.Mapping {
	if r.EndpointDependent() {
		return punch.EndpointDependent
	}
	return punch.EndpointIndependent
}

// intro is the introduction the rendezvous would send self.
func (l *lab) intro(n uint32, self, peer *side) punch.Intro {
	l.t.Helper()
	sr, ok1 := l.rv.Registration(self.user)
	pr, ok2 := l.rv.Registration(peer.user)
	if !ok1 || !ok2 {
		l.t.Fatal("introducing unregistered sides")
	}
	return punch.Intro{
		Number: n,
		Candidates: []punch.Candidate{
			{Kind: punch.Host, Addr: peer.host},
			{Kind: punch.ServerReflexive, Addr: pr.Srflx},
		},
		Mapping:     mappingOf(sr),
		PeerMapping: mappingOf(pr),
	}
}

func (l *lab) introduce(n uint32, a, b *side) {
	l.t.Helper()
	ia, ib := l.intro(n, a, b), l.intro(n, b, a)
	if err := a.agent.Introduce(ia); err != nil {
		l.t.Fatal(err)
	}
	if err := b.agent.Introduce(ib); err != nil {
		l.t.Fatal(err)
	}
}

// waitEvent waits for an event of kind.
func (s *side) waitEvent(t *testing.T, kind punch.EventKind, within time.Duration) punch.Event {
	t.Helper()
	deadline := time.After(within)
	for {
		select {
		case ev := <-s.events:
			if ev.Kind == kind {
				return ev
			}
		case <-deadline:
			t.Fatalf("%s: no %v event within %v (stats %+v)", s.name, kind, within, s.agent.Stats())
		}
	}
}

// exchange sends packets both ways on the direct path and checks that
// they arrive (QUIC-like: first byte 0x40 and above).
func exchange(t *testing.T, x, y *side) {
	t.Helper()
	for _, d := range [][2]*side{{x, y}, {y, x}} {
		from, to := d[0], d[1]
		want := []byte{0x40 | 0x3, 'h', 'i', ' ', from.name[0]}
		deadline := time.After(5 * time.Second)
		got := false
		for !got {
			if err := from.agent.Send(want); err != nil {
				t.Fatalf("%s: send: %v", from.name, err)
			}
			select {
			case pkt := <-to.packets:
				if len(pkt) == 2 && pkt[0] == 0x40 {
					// keepSending's, in flight when it stopped and
					// drained (roam_test.go): not this exchange's.
					continue
				}
				if !bytes.Equal(pkt, want) {
					t.Fatalf("%s got %q, want %q", to.name, pkt, want)
				}
				got = true
			case <-time.After(200 * time.Millisecond):
			case <-deadline:
				t.Fatalf("%s -> %s: nothing arrived", from.name, to.name)
			}
		}
	}
}

func newNAT(t *testing.T, b natsim.Behavior) *natsim.NAT {
	t.Helper()
	n, err := natsim.New(natsim.NextPublic(), b, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}
