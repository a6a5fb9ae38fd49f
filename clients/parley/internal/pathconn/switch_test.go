package pathconn_test

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/parleychat/parley/clients/parley/internal/natsim"
	"github.com/parleychat/parley/clients/parley/internal/pathconn"
	"github.com/parleychat/parley/clients/parley/internal/punch"
)

// device is one side: a punch agent behind a simulated NAT (natsim
// stands in for the namespace NAT lab) and its Conn.
type device struct {
	nat    *natsim.NAT
	host   netip.AddrPort
	user   string
	agent  *punch.Agent
	conn   *pathconn.Conn
	states chan pathconn.State
}

func key() []byte {
	k := make([]byte, 32)
	rand.Read(k)
	return k
}

// TestSwitching streams numbered packets from a to b while the path goes
// relay → direct → (b's NAT forgets its mappings) dead → relay → (a new
// introduction) direct. Both paths deliver, and no packet arrives twice.
func TestSwitching(t *testing.T) {
	t.Parallel()
	rv, err := natsim.NewRendezvous(netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.2"), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer rv.Close()
	checkKey := key()
	devs := map[string]*device{}
	// The relay stands in for the gateway's P2PRelay path: it hands a
	// packet to the other side's Conn.
	relayTo := func(to string) func([]byte) error {
		return func(pkt []byte) error {
			devs[to].conn.DeliverRelay(pkt)
			return nil
		}
	}
	for _, side := range []string{"a", "b"} {
		peer := map[string]string{"a": "b", "b": "a"}[side]
		nat, err := natsim.New(natsim.NextPublic(), natsim.PortRestrictedCone, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer nat.Close()
		sock, err := nat.Listen()
		if err != nil {
			t.Fatal(err)
		}
		d := &device{nat: nat, host: sock.LocalAddr().(*net.UDPAddr).AddrPort(), user: "reg-" + side, states: make(chan pathconn.State, 16)}
		regKey := key()
		rv.AddSession(d.user, regKey)
		d.agent, err = punch.New(punch.Config{
			Conn: sock, SessionID: "switch", Side: side, PeerSide: peer, CheckKey: checkKey, Controlling: side == "a",
			RegisterUsername: d.user, RegisterKey: regKey, STUNAddr: rv.Primary().String(), STUNAltAddr: rv.Alternate().String(),
			OnPacket: func(pkt []byte) { d.conn.DeliverDirect(pkt) },
			OnEvent:  func(ev punch.Event) { d.conn.SetDirect(ev.Kind == punch.EventDirect) },
		})
		if err != nil {
			t.Fatal(err)
		}
		defer d.agent.Close()
		d.conn, err = pathconn.New(pathconn.Config{
			Direct:  d.agent.Send,
			Relay:   relayTo(peer),
			OnState: func(s pathconn.State) { d.states <- s },
		})
		if err != nil {
			t.Fatal(err)
		}
		defer d.conn.Close()
		devs[side] = d
	}
	a, b := devs["a"], devs["b"]

	// Each side sends a numbered packet every 10 ms (as QUIC would, data
	// one way and acknowledgements the other) and counts what it reads.
	type stream struct {
		mu       sync.Mutex
		seen     map[uint32]int
		sent     uint32
		readDone chan struct{}
		sendDone chan struct{}
	}
	stop := make(chan struct{})
	streams := map[*device]*stream{}
	for _, p := range [][2]*device{{a, b}, {b, a}} {
		from, to := p[0], p[1]
		st := &stream{seen: map[uint32]int{}, readDone: make(chan struct{}), sendDone: make(chan struct{})}
		streams[to] = st // what to receives
		go func() {
			defer close(st.readDone)
			buf := make([]byte, 1500)
			for {
				n, addr, err := to.conn.ReadFrom(buf)
				if err != nil {
					return
				}
				if n != 5 || addr.String() != pathconn.PeerAddr.String() {
					t.Errorf("read %d bytes from %v", n, addr)
					continue
				}
				st.mu.Lock()
				st.seen[binary.BigEndian.Uint32(buf[1:])]++
				st.mu.Unlock()
			}
		}()
		go func() {
			defer close(st.sendDone)
			tick := time.NewTicker(10 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
					st.mu.Lock()
					st.sent++
					seq := st.sent
					st.mu.Unlock()
					pkt := []byte{0x40, 0, 0, 0, 0}
					binary.BigEndian.PutUint32(pkt[1:], seq)
					if _, err := from.conn.WriteTo(pkt, from.conn.RemoteAddr()); err != nil {
						t.Errorf("write: %v", err)
					}
				}
			}
		}()
	}
	expect := func(d *device, want pathconn.State, within time.Duration) {
		t.Helper()
		select {
		case s := <-d.states:
			if s != want {
				t.Fatalf("state %v, want %v", s, want)
			}
		case <-time.After(within):
			t.Fatalf("no change to %v within %v", want, within)
		}
	}
	waitRelayed := func(n uint64) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for b.conn.Stats().RelayReceived < n {
			if time.Now().After(deadline) {
				t.Fatalf("b received %+v", b.conn.Stats())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	intro := func(n uint32) {
		for _, p := range [][2]*device{{a, b}, {b, a}} {
			self, peer := p[0], p[1]
			sr, _ := rv.Registration(self.user)
			pr, _ := rv.Registration(peer.user)
			mapping := func(r natsim.Registration) punch.Mapping {
				if r.EndpointDependent() {
					return punch.EndpointDependent
				}
				return punch.EndpointIndependent
			}
			if err := self.agent.Introduce(punch.Intro{Number: n, Candidates: []punch.Candidate{
				{Kind: punch.Host, Addr: peer.host}, {Kind: punch.ServerReflexive, Addr: pr.Srflx},
			}, Mapping: mapping(sr), PeerMapping: mapping(pr)}); err != nil {
				t.Fatal(err)
			}
			self.conn.Accepted()
		}
	}

	// 1. Before any introduction: through the relay.
	waitRelayed(10)
	if a.conn.State() != pathconn.Connecting {
		t.Errorf("state %v before the introduction", a.conn.State())
	}
	// 2. Registered and introduced: direct.
	for _, d := range []*device{a, b} {
		if _, err := d.agent.Register(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	intro(1)
	expect(a, pathconn.Direct, 5*time.Second)
	expect(b, pathconn.Direct, 5*time.Second)
	time.Sleep(200 * time.Millisecond)
	direct1 := map[*device]uint64{}
	for _, d := range []*device{a, b} {
		if direct1[d] = d.conn.Stats().DirectReceived; direct1[d] == 0 {
			t.Fatalf("nothing came direct: %+v", d.conn.Stats())
		}
	}
	// 3. b's NAT forgets: packets are lost until each side finds the path
	// dead (5 s after its first unanswered one), then relayed.
	b.nat.DropMappings()
	relayed := b.conn.Stats().RelayReceived
	expect(a, pathconn.Relayed, 10*time.Second)
	expect(b, pathconn.Relayed, 10*time.Second)
	waitRelayed(relayed + 10)
	// 4. b registered again by itself from its new mapping; a new
	// introduction: direct again.
	deadline := time.Now().Add(10 * time.Second)
	for {
		r, _ := rv.Registration(b.user)
		if r.Count >= 4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("b did not register again: %+v", r)
		}
		time.Sleep(20 * time.Millisecond)
	}
	intro(2)
	expect(a, pathconn.Direct, 5*time.Second)
	expect(b, pathconn.Direct, 5*time.Second)
	time.Sleep(200 * time.Millisecond)
	close(stop)
	for _, st := range streams {
		<-st.sendDone
	}
	time.Sleep(100 * time.Millisecond)
	a.conn.Close()
	b.conn.Close()

	for _, d := range []*device{a, b} {
		st := streams[d]
		<-st.readDone
		cs := d.conn.Stats()
		if cs.DirectReceived <= direct1[d] || cs.RelayReceived == 0 {
			t.Errorf("stats %+v: want packets from both paths, and direct ones after the recovery", cs)
		}
		st.mu.Lock()
		for seq, n := range st.seen {
			if n != 1 {
				t.Errorf("packet %d arrived %d times", seq, n)
			}
			if seq == 0 || seq > st.sent {
				t.Errorf("packet %d was never sent", seq)
			}
		}
		t.Logf("sent %d, received %d (%d direct, %d relayed); lost while the path was dying: %d",
			st.sent, len(st.seen), cs.DirectReceived, cs.RelayReceived, int(st.sent)-len(st.seen))
		st.mu.Unlock()
	}
	for _, d := range []*device{a, b} {
		peer := map[*device]*device{a: b, b: a}[d]
		cs := d.conn.Stats()
		streams[peer].mu.Lock()
		sent := streams[peer].sent
		streams[peer].mu.Unlock()
		if cs.DirectSent+cs.RelaySent+cs.SendDropped != uint64(sent) {
			t.Errorf("sent %d packets, counted %+v", sent, cs)
		}
	}
}
