package sdktest

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/parleychat/parley/clients/internal/parleytest"
	"github.com/parleychat/parley/clients/parley"
	gwserver "github.com/parleychat/parley/gateway/server"
	"github.com/parleychat/parley/libs/testenv"
	"github.com/parleychat/parley/standalone/server"
)

// balancer is a TCP load balancer in front of gateways, as in production:
// each new connection goes to the next gateway in turn that accepts it.
// Kill plays a gateway process dying: its connections are cut (no
// SERVER_SHUTDOWN) and it takes no new ones.
type balancer struct {
	ln net.Listener

	mu      sync.Mutex // guards the fields below
	targets []string
	dead    map[string]bool
	conns   map[string][]net.Conn // by target: both ends of each relayed pair
	next    int
}

func newBalancer(t *testing.T, targets ...string) *balancer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &balancer{ln: ln, targets: targets, dead: map[string]bool{}, conns: map[string][]net.Conn{}}
	done := make(chan struct{})
	go func() { defer close(done); b.accept() }()
	t.Cleanup(func() {
		ln.Close()
		<-done
		b.mu.Lock()
		defer b.mu.Unlock()
		for _, cs := range b.conns {
			for _, c := range cs {
				c.Close()
			}
		}
	})
	return b
}

func (b *balancer) Addr() string { return "tcp://" + b.ln.Addr().String() }

// Kill cuts every connection to target and sends it none from now on.
func (b *balancer) Kill(target string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.dead[target] = true
	for _, c := range b.conns[target] {
		c.Close()
	}
	delete(b.conns, target)
}

// accept ends when the listener closes; each pair's copiers end when
// either side is closed.
func (b *balancer) accept() {
	for {
		in, err := b.ln.Accept()
		if err != nil {
			return
		}
		target, out := b.dial()
		if out == nil {
			in.Close()
			continue
		}
		b.mu.Lock()
		b.conns[target] = append(b.conns[target], in, out)
		b.mu.Unlock()
		go func() { _, _ = io.Copy(out, in); out.Close(); in.Close() }()
		go func() { _, _ = io.Copy(in, out); out.Close(); in.Close() }()
	}
}

// dial connects to the next live target that accepts, round robin.
func (b *balancer) dial() (string, net.Conn) {
	b.mu.Lock()
	n := len(b.targets)
	b.mu.Unlock()
	for range n {
		b.mu.Lock()
		target := b.targets[b.next%n]
		b.next++
		dead := b.dead[target]
		b.mu.Unlock()
		if dead {
			continue
		}
		if c, err := net.Dial("tcp", target); err == nil {
			return target, c
		}
	}
	return "", nil
}

// startExtraGateway runs another gateway replica on p's NATS (exposed at
// natsAddr) until stop or the test's end.
func startExtraGateway(t *testing.T, natsAddr, id string) (addr string, stop func()) {
	t.Helper()
	nc, err := nats.Connect("nats://" + natsAddr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	cfg := gwserver.DefaultConfig()
	cfg.TCPAddr, cfg.HTTPAddr, cfg.UDPAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.GatewayID = id
	cfg.PresenceHeartbeat = 500 * time.Millisecond
	cfg.DrainPeriod = 200 * time.Millisecond
	srv, err := gwserver.New(cfg, gwserver.Deps{NC: nc, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	testenv.Eventually(t, 15*time.Second, id+" ready", func() bool { return srv.Ready() == nil })
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("%s: Run: %v", id, err)
			}
		})
	}
	t.Cleanup(stop)
	return srv.TCPAddr().String(), stop
}

// When a gateway dies (killed: its connections just break) or stops
// (SERVER_SHUTDOWN over its drain period), its clients reconnect through
// the load balancer to the gateways that remain and resume their sessions
// there (docs/protocol.md §12); everyone then sees everyone online.
func TestKilledGatewayClientsReconnectElsewhere(t *testing.T) {
	natsAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	p := parleytest.Start(t, func(c *server.Config) { c.NATSListen = natsAddr })
	gw2, stop2 := startExtraGateway(t, natsAddr, "gw-2")
	gw3, _ := startExtraGateway(t, natsAddr, "gw-3")
	lb := newBalancer(t, p.HostPort(), gw2, gw3)

	const users = 9
	clients := make([]*parley.Client, users)
	sessions := make([]string, users)
	var names []string
	for i := range clients {
		name := fmt.Sprintf("user%d", i)
		names = append(names, name)
		clients[i] = dial(t, lb.Addr())
		sessions[i] = register(t, clients[i], name).SessionID
	}
	on := func(gw string) (n int) {
		for _, c := range clients {
			if c.Welcome().GatewayID == gw {
				n++
			}
		}
		return n
	}
	for _, gw := range []string{"gw-test", "gw-2", "gw-3"} {
		if n := on(gw); n != users/3 {
			t.Fatalf("%d clients on %s, want %d (round robin)", n, gw, users/3)
		}
	}

	// reconnected waits until every client that was on gone (before is
	// where each was) has reconnected, with its session, to one of alive.
	where := func() []string {
		var gws []string
		for _, c := range clients {
			gws = append(gws, c.Welcome().GatewayID)
		}
		return gws
	}
	reconnected := func(before []string, gone string, alive ...string) {
		t.Helper()
		for i, c := range clients {
			if before[i] != gone {
				continue
			}
			re := next[parley.ReconnectedEvent](t, c, nil)
			if re.Session == nil || re.Session.SessionID != sessions[i] {
				t.Fatalf("%s reconnected with %+v, want session %s", names[i], re.Session, sessions[i])
			}
			if gw := c.Welcome().GatewayID; !slices.Contains(alive, gw) {
				t.Fatalf("%s reconnected to %q, want one of %v", names[i], gw, alive)
			}
		}
	}

	before := where()
	lb.Kill(gw3)
	reconnected(before, "gw-3", "gw-test", "gw-2")
	before = where()
	stop2()
	reconnected(before, "gw-2", "gw-test")
	if n := on("gw-test"); n != users {
		t.Fatalf("%d of %d clients on the last gateway", n, users)
	}
	testenv.Eventually(t, wait, "everyone online for everyone", func() bool {
		for _, c := range clients {
			us, err := c.Who(ctxT(t))
			if err != nil || !slices.Equal(names, sortedNames(us)) {
				return false
			}
		}
		return true
	})
}

func sortedNames(us []parley.OnlineUser) []string {
	n := names(us)
	slices.Sort(n)
	return n
}
