package p2prelay

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/protobuf/proto"

	"github.com/parleychat/parley/gateway/internal/metrics"
	"github.com/parleychat/parley/libs/subject"
	"github.com/parleychat/parley/libs/testenv"
	"github.com/parleychat/parley/protocol/parleyv1"
	"github.com/parleychat/parley/protocol/wire"
)

// recorder is a Conn that keeps the frames it is given, decoded.
type recorder struct {
	mu     sync.Mutex
	frames []*parleyv1.P2PRelay
	full   bool // refuse every frame, as a full send queue does
}

func (c *recorder) PushRelay(frame []byte) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.full {
		return false
	}
	f, err := wire.Decode(frame[wire.HeaderSize:])
	if err != nil || f.GetP2PRelay() == nil || f.GetRequestId() != 0 {
		panic(fmt.Sprintf("PushRelay got a frame that is not a p2p_relay: %v", err))
	}
	c.frames = append(c.frames, f.GetP2PRelay())
	return true
}

func (c *recorder) got() []*parleyv1.P2PRelay {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*parleyv1.P2PRelay(nil), c.frames...)
}

// clock is a settable time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type testRelay struct {
	*Relay
	m  *metrics.Metrics
	nc *nats.Conn
}

// newRelay is a Relay of a gateway on ns (its own NATS connection).
func newRelay(t *testing.T, ns *natsserver.Server, mutate func(*Config)) *testRelay {
	t.Helper()
	nc := testenv.Connect(t, ns)
	m := metrics.New(prometheus.NewRegistry())
	cfg := Config{NC: nc, Metrics: m, Rate: 4 << 20, Burst: 1 << 20}
	if mutate != nil {
		mutate(&cfg)
	}
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return &testRelay{Relay: r, m: m, nc: nc}
}

func (r *testRelay) drops(reason string) float64 {
	return testutil.ToFloat64(r.m.P2PRelayDrops.WithLabelValues(reason))
}

// attach attaches and flushes, as the gateway does before its reply.
func (r *testRelay) attach(t *testing.T, c Conn, id, side string) {
	t.Helper()
	if _, err := r.Attach(c, id, side); err != nil {
		t.Fatalf("attach %s %s: %v", id, side, err)
	}
	if err := r.nc.Flush(); err != nil {
		t.Fatal(err)
	}
}

func waitFrames(t *testing.T, c *recorder, n int) []*parleyv1.P2PRelay {
	t.Helper()
	testenv.Eventually(t, 5*time.Second, fmt.Sprintf("%d frames", n), func() bool { return len(c.got()) >= n })
	return c.got()
}

// TestAppendFrame: the hand-written frame is the protobuf encoding of
// Frame{p2p_relay: P2PRelay{session_id, packet}} with protocol/wire's
// length prefix, for every packet size class.
func TestAppendFrame(t *testing.T) {
	for _, id := range []string{"p1", strings.Repeat("s", 64)} {
		for _, n := range []int{1, 100, 127, 128, 1000, MaxPacket} {
			pkt := bytes.Repeat([]byte{byte(n)}, n)
			got := AppendFrame([]byte("junk"), id, pkt)[4:]
			want, err := wire.AppendFrame(nil, &parleyv1.Frame{Body: &parleyv1.Frame_P2PRelay{P2PRelay: &parleyv1.P2PRelay{SessionId: id, Packet: pkt}}})
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("id %d bytes, packet %d bytes: % x\nwant % x", len(id), n, got[:16], want[:16])
			}
		}
	}
}

// TestRelay: packets cross between two gateways' relays both ways, each
// side receiving only what the other sent, in order.
func TestRelay(t *testing.T) {
	ns := testenv.NATS(t)
	gw1, gw2 := newRelay(t, ns, nil), newRelay(t, ns, nil)
	alice, bob := &recorder{}, &recorder{}
	gw1.attach(t, alice, "s1", "a")
	gw2.attach(t, bob, "s1", "b")
	for i := range 3 {
		gw1.Packet(alice, "s1", []byte{'a', byte(i)})
		gw2.Packet(bob, "s1", []byte{'b', byte(i)})
	}
	for _, tc := range []struct {
		c    *recorder
		from byte
	}{{bob, 'a'}, {alice, 'b'}} {
		got := waitFrames(t, tc.c, 3)
		for i, f := range got {
			if want := (&parleyv1.P2PRelay{SessionId: "s1", Packet: []byte{tc.from, byte(i)}}); !proto.Equal(f, want) || len(got) != 3 {
				t.Fatalf("frame %d = %v, want %v (of 3)", i, f, want)
			}
		}
	}
	if up := testutil.ToFloat64(gw1.m.P2PRelayBytes.WithLabelValues("up")); up != 6 {
		t.Fatalf("gw1 relayed %v bytes up, want 6", up)
	}
	// A packet is counted just after it is queued for the connection,
	// which may have it first.
	testenv.Eventually(t, 5*time.Second, "gw2 counts 3 packets down", func() bool {
		return testutil.ToFloat64(gw2.m.P2PRelayPackets.WithLabelValues("down")) == 3
	})

	// Dropped: unattached, empty, too large; and at a full queue.
	gw1.Packet(alice, "s2", []byte("x"))
	gw1.Packet(&recorder{}, "s1", []byte("x"))
	gw1.Packet(alice, "s1", nil)
	gw1.Packet(alice, "s1", make([]byte, MaxPacket+1))
	if gw1.drops(DropUnattached) != 2 || gw1.drops(DropSize) != 2 {
		t.Fatalf("drops: unattached %v, size %v", gw1.drops(DropUnattached), gw1.drops(DropSize))
	}
	bob.mu.Lock()
	bob.full = true
	bob.mu.Unlock()
	gw1.Packet(alice, "s1", make([]byte, MaxPacket))
	testenv.Eventually(t, 5*time.Second, "a queue drop", func() bool { return gw2.drops(DropQueue) == 1 })
}

// TestTakeOver: a side has one connection. Attaching it from another
// connection, on another gateway or the same one (a device reconnected,
// or sent p2p_update on a second connection), detaches the older: it gets
// none of the session's packets, its own are dropped as unattached, and it
// no longer counts the session.
func TestTakeOver(t *testing.T) {
	ns := testenv.NATS(t)
	gw1, gw2, gwB := newRelay(t, ns, nil), newRelay(t, ns, nil), newRelay(t, ns, nil)
	old, fresh, newest, bob := &recorder{}, &recorder{}, &recorder{}, &recorder{}
	gwB.attach(t, bob, "s1", "b")
	gw1.attach(t, old, "s1", "a")
	gw2.attach(t, fresh, "s1", "a")
	testenv.Eventually(t, 5*time.Second, "the old connection detached", func() bool {
		return testutil.ToFloat64(gw1.m.P2PRelaySessions) == 0
	})
	if !gw1.CanAttach(old, "s1") {
		t.Fatal("the old connection cannot attach the session again")
	}
	gwB.Packet(bob, "s1", []byte("to a"))
	if got := waitFrames(t, fresh, 1); string(got[0].Packet) != "to a" {
		t.Fatalf("fresh got %q", got[0].Packet)
	}
	gw1.Packet(old, "s1", []byte("from the old one"))
	if gw1.drops(DropUnattached) != 1 {
		t.Fatalf("the old connection's packet: unattached drops %v, want 1", gw1.drops(DropUnattached))
	}
	gw2.Packet(fresh, "s1", []byte("from a"))
	if got := waitFrames(t, bob, 1); len(got) != 1 || string(got[0].Packet) != "from a" {
		t.Fatalf("bob got %v", got)
	}

	// On one gateway: the newest connection takes it from fresh.
	gw2.attach(t, newest, "s1", "a")
	testenv.Eventually(t, 5*time.Second, "fresh detached", func() bool { return !gw2.attachedTo(fresh, "s1") })
	gwB.Packet(bob, "s1", []byte("to a again"))
	if got := waitFrames(t, newest, 1); string(got[0].Packet) != "to a again" {
		t.Fatalf("newest got %q", got[0].Packet)
	}
	// fresh re-attaching (its p2p_update) takes it back; newest lets go.
	gw2.attach(t, fresh, "s1", "a")
	testenv.Eventually(t, 5*time.Second, "newest detached", func() bool { return !gw2.attachedTo(newest, "s1") && gw2.attachedTo(fresh, "s1") })
	if len(old.got()) != 0 {
		t.Fatalf("the old connection got %d frames after it was taken over", len(old.got()))
	}
	if g := testutil.ToFloat64(gw2.m.P2PRelaySessions); g != 1 {
		t.Fatalf("gw2 counts %v attachments, want 1", g)
	}
}

// TestTakeOverAtOnce: two connections on two gateways attaching one side
// at the same moment each read the other's notice; exactly one, the
// newer, keeps the side.
func TestTakeOverAtOnce(t *testing.T) {
	ns := testenv.NATS(t)
	gw1, gw2 := newRelay(t, ns, nil), newRelay(t, ns, nil)
	for i := range 50 {
		id := fmt.Sprint("s", i)
		c1, c2 := &recorder{}, &recorder{}
		var wg sync.WaitGroup
		wg.Go(func() { gw1.attach(t, c1, id, "a") })
		wg.Go(func() { gw2.attach(t, c2, id, "a") })
		wg.Wait()
		testenv.Eventually(t, 5*time.Second, "exactly one attached", func() bool {
			return gw1.attachedTo(c1, id) != gw2.attachedTo(c2, id)
		})
		time.Sleep(10 * time.Millisecond) // any notice still on its way
		if gw1.attachedTo(c1, id) == gw2.attachedTo(c2, id) {
			t.Fatalf("round %d: both or neither attached", i)
		}
	}
}

// attachedTo reports whether conn has session id attached.
func (r *testRelay) attachedTo(conn Conn, id string) bool {
	attached, _ := r.state(conn, id)
	return attached
}

// TestAllowance: a connection sends Burst bytes at once, then Rate bytes
// a second; the excess is dropped, before the bus.
func TestAllowance(t *testing.T) {
	ns := testenv.NATS(t)
	clk := &clock{t: time.Unix(1000, 0)}
	r := newRelay(t, ns, func(c *Config) { c.Rate, c.Burst, c.Now = 1000, 3000, clk.Now })
	c := &recorder{}
	r.attach(t, c, "s1", "a")
	sent := func() float64 { return testutil.ToFloat64(r.m.P2PRelayPackets.WithLabelValues("up")) }
	for range 3 {
		r.Packet(c, "s1", make([]byte, 1500))
	}
	if sent() != 2 || r.drops(DropRate) != 1 {
		t.Fatalf("burst: %v sent, %v dropped; want 2, 1", sent(), r.drops(DropRate))
	}
	clk.Advance(1400 * time.Millisecond) // 1400 bytes: not enough for 1500
	r.Packet(c, "s1", make([]byte, 1500))
	clk.Advance(100 * time.Millisecond)
	r.Packet(c, "s1", make([]byte, 1500))
	if sent() != 3 || r.drops(DropRate) != 2 {
		t.Fatalf("after 1.5s: %v sent, %v dropped; want 3, 2", sent(), r.drops(DropRate))
	}
	clk.Advance(time.Hour) // the allowance tops up to Burst, no more
	for range 3 {
		r.Packet(c, "s1", make([]byte, 1500))
	}
	if sent() != 5 || r.drops(DropRate) != 3 {
		t.Fatalf("after an hour: %v sent, %v dropped; want 5, 3", sent(), r.drops(DropRate))
	}
}

// TestAttach: a connection holds at most MaxSessions; attaching again
// changes nothing or the side; detaching and dropping free the places and
// end the subscriptions.
func TestAttach(t *testing.T) {
	ns := testenv.NATS(t)
	r := newRelay(t, ns, nil)
	c := &recorder{}
	interest := func(subj string) bool { return ns.GlobalAccount().SubscriptionInterest(subj) }
	for i := range DefaultMaxSessions {
		if sub, err := r.Attach(c, fmt.Sprint("s", i), "a"); err != nil || !sub {
			t.Fatalf("attach %d: %v, %v", i, sub, err)
		}
	}
	if r.CanAttach(c, "s8") || !r.CanAttach(c, "s0") || !r.CanAttach(&recorder{}, "s8") {
		t.Fatal("CanAttach wrong at the limit")
	}
	if _, err := r.Attach(c, "s8", "a"); !errors.Is(err, ErrTooMany) {
		t.Fatalf("ninth: %v", err)
	}
	if sub, err := r.Attach(c, "s0", "a"); err != nil || sub {
		t.Fatalf("again: %v, %v", sub, err)
	}
	if sub, err := r.Attach(c, "s0", "b"); err != nil || !sub {
		t.Fatalf("other side: %v, %v", sub, err)
	}
	if err := r.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	if interest(subject.P2PRelay("s0", "a")) || !interest(subject.P2PRelay("s0", "b")) {
		t.Fatal("changing the side did not move the subscription")
	}
	if g := testutil.ToFloat64(r.m.P2PRelaySessions); g != DefaultMaxSessions {
		t.Fatalf("sessions gauge %v", g)
	}
	r.Detach(c, "s1")
	r.Detach(c, "nothing")
	if _, err := r.Attach(c, "s8", "a"); err != nil {
		t.Fatalf("after a detach: %v", err)
	}
	r.DropConn(c)
	if err := r.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	for i := range 9 {
		if interest(subject.P2PRelay(fmt.Sprint("s", i), "a")) || interest(subject.P2PRelay(fmt.Sprint("s", i), "b")) {
			t.Fatalf("s%d still subscribed after DropConn", i)
		}
	}
	if g := testutil.ToFloat64(r.m.P2PRelaySessions); g != 0 {
		t.Fatalf("sessions gauge %v after DropConn", g)
	}
	for _, bad := range [][2]string{{"s1", "c"}, {"s1", ""}, {"a.b", "a"}, {"", "a"}, {"s*", "b"}, {strings.Repeat("s", 65), "a"}} {
		if _, err := r.Attach(c, bad[0], bad[1]); !errors.Is(err, ErrSession) {
			t.Fatalf("attach %q: %v", bad, err)
		}
	}
	r.Close()
	if _, err := r.Attach(c, "s1", "a"); !errors.Is(err, ErrClosed) {
		t.Fatalf("after Close: %v", err)
	}
}

func TestConfig(t *testing.T) {
	nc := testenv.Connect(t, testenv.NATS(t))
	m := metrics.New(prometheus.NewRegistry())
	for _, cfg := range []Config{
		{Metrics: m, Rate: 1, Burst: MaxPacket},
		{NC: nc, Rate: 1, Burst: MaxPacket},
		{NC: nc, Metrics: m, Rate: 0, Burst: MaxPacket},
		{NC: nc, Metrics: m, Rate: 1, Burst: MaxPacket - 1},
		{NC: nc, Metrics: m, Rate: 1, Burst: MaxPacket, MaxSessions: -1},
	} {
		if _, err := New(cfg); !errors.Is(err, ErrConfig) {
			t.Errorf("New(%+v) = %v", cfg, err)
		}
	}
}
