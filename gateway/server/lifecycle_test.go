package server_test

import (
	"context"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/parleychat/parley/gateway/server"
	"github.com/parleychat/parley/libs/testenv"
	"github.com/parleychat/parley/protocol/parleyv1"
	"github.com/parleychat/parley/protocol/wire"
)

func TestHeartbeatResync(t *testing.T) {
	e := startGateway(t, func(c *server.Config) { c.PresenceHeartbeat = 50 * time.Millisecond })
	var want []string
	for _, name := range []string{"alice", "bob", "carol"} {
		c := dialTCP(t, e)
		s := c.login(name, &parleyv1.ClientOptions{SkipPresenceFeed: true})
		want = append(want, e.presence.connOf(s.GetSessionId()).GetConnId())
	}
	anon := dialTCP(t, e) // handshaken but not logged in: not counted
	anon.hello()
	slices.Sort(want)

	testenv.Eventually(t, 5*time.Second, "a heartbeat counting 3 connections", func() bool {
		hbs := e.presence.Heartbeats()
		return len(hbs) > 0 && hbs[len(hbs)-1].GetConns() == 3 && hbs[len(hbs)-1].GetGatewayId() == "gw-test"
	})
	if len(e.presence.Resyncs()) != 0 {
		t.Fatal("resync sent without being asked")
	}

	// Presence lost its state (say, Redis restarted) and asks for a resync.
	e.presence.setResync(true)
	testenv.Eventually(t, 5*time.Second, "a complete resync", func() bool {
		for _, r := range e.presence.Resyncs() {
			if r.GetLast() {
				return true
			}
		}
		return false
	})
	e.presence.setResync(false)
	rs := e.presence.Resyncs()
	id := rs[0].GetResyncId()
	var got []string
	for _, r := range rs {
		if r.GetResyncId() != id {
			break // a later resync
		}
		if r.GetGatewayId() != "gw-test" {
			t.Errorf("resync gateway id %q", r.GetGatewayId())
		}
		for _, c := range r.GetConns() {
			got = append(got, c.GetConnId())
			if c.GetUserId() == "" || c.GetSessionId() == "" || c.GetGatewayId() != "gw-test" {
				t.Errorf("incomplete conn record %v", c)
			}
		}
		if r.GetLast() {
			if r.GetChunks() != 1 {
				t.Errorf("last chunk says %d chunks, want 1", r.GetChunks())
			}
			break
		}
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("resync conns %v, want %v", got, want)
	}
}

func TestShutdown(t *testing.T) {
	e := startGateway(t, nil)
	alice := dialTCP(t, e)
	s := alice.login("alice", nil)
	alice.snapshot()
	connID := e.presence.connOf(s.GetSessionId()).GetConnId()
	ws := dialWS(t, "ws://"+e.srv.HTTPAddr().String()+server.WebSocketPath, nil)
	ws.hello()
	idle := dialTCP(t, e) // not even handshaken

	e.stop()
	alice.expectError(parleyv1.ErrorCode_ERROR_CODE_SERVER_SHUTDOWN, true)
	alice.expectClosed()
	ws.expectError(parleyv1.ErrorCode_ERROR_CODE_SERVER_SHUTDOWN, true)
	ws.expectClosed()
	idle.expectError(parleyv1.ErrorCode_ERROR_CODE_SERVER_SHUTDOWN, true)
	if !e.presence.Disconnected(connID) {
		t.Error("no PresenceDisconnect for alice by the end of shutdown")
	}
	if e.srv.Ready() == nil {
		t.Error("still ready after shutdown")
	}
}

// TestShutdownRightAfterStart: a gateway stopped the moment it is ready
// stops (parleyd's TestRendezvous hung in CI: the HTTP server's shutdown
// came before fasthttp's Serve had taken the listener, so Serve went on
// accepting and Run waited for it for good).
func TestShutdownRightAfterStart(t *testing.T) {
	ns := testenv.NATS(t)
	for i := range 100 {
		cfg := testConfig()
		cfg.DrainPeriod = 0
		srv, err := server.New(cfg, server.Deps{NC: testenv.Connect(t, ns), Log: testLogger(t), Registry: prometheus.NewRegistry()})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- srv.Run(ctx) }()
		for srv.Ready() != nil { // stop at once: no settling between
			select {
			case err := <-done:
				t.Fatalf("round %d: Run ended before it served: %v", i, err)
			default:
				runtime.Gosched()
			}
		}
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("round %d: Run: %v", i, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("round %d: the gateway did not stop within 10 s of being stopped right after it started", i)
		}
	}
}

// TestShutdownDrainsGradually: at shutdown the gateway tells its clients
// SERVER_SHUTDOWN spread over -drain-period, not all in the same moment, so
// they reconnect to the other gateways gradually; every client is told,
// and the gateway stops being ready at once.
func TestShutdownDrainsGradually(t *testing.T) {
	const (
		clients = 20
		drain   = time.Second
	)
	e := startGateway(t, func(c *server.Config) { c.DrainPeriod = drain })
	conns := make([]*client, clients)
	for i := range conns {
		conns[i] = dialTCP(t, e)
		conns[i].hello()
	}

	stopped := make(chan struct{})
	go func() { e.stop(); close(stopped) }()
	told := make(chan time.Time, clients)
	for _, c := range conns {
		go func() {
			// read, not expectError: Fatal only from the test's goroutine.
			for {
				b, err := c.read(readTimeout)
				if err != nil {
					told <- time.Time{}
					return
				}
				if f, err := wire.Decode(b); err == nil && f.GetError().GetCode() == parleyv1.ErrorCode_ERROR_CODE_SERVER_SHUTDOWN {
					told <- time.Now()
					return
				}
			}
		}()
	}
	var first, last time.Time
	for range clients {
		at := <-told
		if at.IsZero() {
			t.Fatal("a client's connection ended without SERVER_SHUTDOWN")
		}
		if first.IsZero() {
			first = at
			if e.srv.Ready() == nil {
				t.Error("still ready while draining")
			}
		}
		last = at
	}
	<-stopped
	// A lower bound only: a loaded machine stretches the drain, never
	// shortens it. The shares go every 100 ms over 1 s: the first and the
	// last client are told at least 0.8 s apart.
	if spread := last.Sub(first); spread < drain*8/10 {
		t.Errorf("the %d clients were told within %s of each other, want them spread over about %s", clients, spread, drain)
	}
}
