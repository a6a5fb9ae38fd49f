package e2e

import (
	"testing"
	"time"

	"github.com/parleychat/parley/clients/parley"
)

// TestOnlineOfflineAcrossGateways: real nats-server, redis-server, auth,
// presence and two gateway processes. Users on different gateways (and
// transports) see each other come online; one logs out, one client process
// is killed, and the others see each go offline.
func TestOnlineOfflineAcrossGateways(t *testing.T) {
	c := newCluster(t, 2, clusterOpts{})
	gw1, gw2 := c.gateways[0], c.gateways[1]

	alice, as := registered(t, "tcp://"+gw1.tcp, "alice")
	bob, bs := registered(t, "ws://"+gw2.http+"/v1/ws", "bob")
	seesOnline(t, alice, bs.Username, true, 10*time.Second)
	seesOnline(t, bob, as.Username, true, 10*time.Second)

	// A third user, carol, runs the real terminal client in watch mode as
	// its own process on gw2.
	carol := uniq("carol")
	reg := runParley(t, gw2.tcp, t.TempDir(), "register", "--user", carol, "--password-stdin")
	if reg.err != nil {
		t.Fatalf("parley register: %v\n%s", reg.err, reg.out)
	}
	cfgDir := t.TempDir()
	if r := runParley(t, gw2.tcp, cfgDir, "login", "--user", carol, "--password-stdin"); r.err != nil {
		t.Fatalf("parley login: %v\n%s", r.err, r.out)
	}
	watch := startParley(t, gw2.tcp, cfgDir, "watch")
	watch.waitOutput(t, "online "+bs.Username, 10*time.Second) // its snapshot arrived
	seesOnline(t, alice, carol, true, 10*time.Second)
	// carol's watch sees bob leave below; first, bob's logout.
	if err := bob.Logout(ctxS(t)); err != nil {
		t.Fatalf("logout: %v", err)
	}
	seesOnline(t, alice, bs.Username, false, 10*time.Second)
	watch.waitOutput(t, "offline "+bs.Username, 10*time.Second)

	// kill -9 of carol's client: the gateway sees the socket close.
	watch.kill()
	seesOnline(t, alice, carol, false, 10*time.Second)

	// A logged-out connection is unauthenticated but still usable.
	if _, err := bob.Who(ctxS(t)); err == nil {
		t.Fatal("who after logout succeeded, want UNAUTHENTICATED")
	} else {
		wantErr(t, err, parley.ErrUnauthenticated)
	}
	if _, err := bob.Login(ctxS(t), bs.Username, pw); err != nil {
		t.Fatalf("login again on the same connection: %v", err)
	}
	seesOnline(t, alice, bs.Username, true, 10*time.Second)
}

// TestGatewayKilledUsersGoOffline: a gateway killed with SIGKILL cannot say
// goodbye; presence notices its heartbeats stopped and everyone sees its
// users offline within 30 seconds (default TTL 15s).
func TestGatewayKilledUsersGoOffline(t *testing.T) {
	c := newCluster(t, 2, clusterOpts{})
	gw1, gw2 := c.gateways[0], c.gateways[1]
	alice, _ := registered(t, "tcp://"+gw1.tcp, "alice")
	_, bs := registered(t, "tcp://"+gw2.tcp, "bob", parley.WithReconnect(false))
	seesOnline(t, alice, bs.Username, true, 10*time.Second)

	gw2.kill()
	start := time.Now()
	seesOnline(t, alice, bs.Username, false, 30*time.Second)
	t.Logf("offline seen %.1fs after SIGKILL", time.Since(start).Seconds())
}

// TestRedisRestartRebuildsPresence: Redis loses everything; gateways'
// heartbeats rebuild the online list, and a fresh client sees everyone.
func TestRedisRestartRebuildsPresence(t *testing.T) {
	c := newCluster(t, 2, clusterOpts{})
	_, as := registered(t, "tcp://"+c.gateways[0].tcp, "alice")
	_, bs := registered(t, "tcp://"+c.gateways[1].tcp, "bob")
	c.redis.Stop()
	c.redis.Start(t)
	watcher, _ := registered(t, "tcp://"+c.gateways[0].tcp, "watcher")
	deadline := time.Now().Add(15 * time.Second)
	for {
		users, err := watcher.Who(ctxS(t))
		names := map[string]bool{}
		for _, u := range users {
			names[u.Username] = true
		}
		if err == nil && names[as.Username] && names[bs.Username] && names[watcher.Session().Username] {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after Redis restart: who = %v, %v; want alice, bob and watcher", users, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestGracefulShutdown: SIGTERM stops every binary cleanly within its bound,
// and clients of a stopping gateway are told SERVER_SHUTDOWN.
func TestGracefulShutdown(t *testing.T) {
	c := newCluster(t, 1, clusterOpts{})
	cl, _ := registered(t, "tcp://"+c.gateways[0].tcp, "alice", parley.WithReconnect(false))
	c.gateways[0].stop(t, 10*time.Second)
	ev := waitEvent(t, cl, 10*time.Second, "disconnect", func(ev parley.Event) bool {
		_, ok := ev.(parley.DisconnectedEvent)
		return ok
	})
	wantErr(t, ev.(parley.DisconnectedEvent).Err, parley.ErrServerShutdown)
	c.presence.stop(t, 10*time.Second)
	c.auth.stop(t, 10*time.Second)
}
