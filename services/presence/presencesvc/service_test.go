package presencesvc

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"

	"github.com/parleychat/parley/libs/proto/internalv1"
	"github.com/parleychat/parley/libs/rpc"
	"github.com/parleychat/parley/libs/service"
	"github.com/parleychat/parley/libs/subject"
	"github.com/parleychat/parley/libs/testenv"
	"github.com/parleychat/parley/protocol/errcode"
	"github.com/parleychat/parley/protocol/parleyv1"
)

func TestConnectDisconnectEvents(t *testing.T) {
	servers := map[string]func(t *testing.T) string{
		"redis":     func(t *testing.T) string { return testenv.StartRedis(t).Addr },
		"miniredis": func(t *testing.T) string { return miniredis.RunT(t).Addr() },
	}
	for name, addr := range servers {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, addr(t))
			e.start(t, testConfig())

			e.connect(t, conn("g1", "c1", "u1"))
			on := e.expect(t, "+u1")[0]
			if on.GetUser().GetUsername() != "name-u1" || on.GetUser().GetSessions() != 1 {
				t.Fatalf("online event %v", on)
			}
			e.connect(t, conn("g1", "c2", "u1"))
			e.quiet(t) // second connection: no event
			e.disconnect(t, "g1", "c1")
			e.quiet(t) // one connection left: still online
			e.disconnect(t, "g1", "c2")
			off := e.expect(t, "-u1")[0]
			if off.GetSeq() <= on.GetSeq() {
				t.Fatalf("offline seq %d not after online seq %d", off.GetSeq(), on.GetSeq())
			}
			if off.GetUser().GetUsername() != "name-u1" {
				t.Fatalf("offline event %v", off)
			}
			if users, _ := e.list(t); len(users) != 0 {
				t.Fatalf("list after last disconnect: %v", users)
			}
		})
	}
}

func TestListAndUserQueries(t *testing.T) {
	e := newEnv(t, testenv.StartRedis(t).Addr)
	e.start(t, testConfig())

	a := conn("g1", "c1", "ann")
	a2 := &internalv1.Conn{GatewayId: "g1", ConnId: "c2", UserId: "ann", Username: "name-ann", SessionId: "second"}
	b := conn("g1", "c3", "bob")
	for _, c := range []*internalv1.Conn{a, a2, b} {
		e.connect(t, c)
	}
	evs := e.expect(t, "+ann", "+bob")
	users, seq := e.list(t)
	if want := map[string]uint32{"ann": 2, "bob": 1}; !maps.Equal(users, want) {
		t.Fatalf("list %v, want %v", users, want)
	}
	if seq != evs[1].GetSeq() {
		t.Fatalf("list seq %d, last event seq %d", seq, evs[1].GetSeq())
	}

	cases := []struct {
		user string
		want []string
	}{
		{"ann", []string{"second", "sess-ann"}},
		{"bob", []string{"sess-bob"}},
		{"nobody", nil},
	}
	for _, tc := range cases {
		got := e.sessions(t, tc.user)
		slices.Sort(got)
		if !slices.Equal(got, tc.want) {
			t.Errorf("sessions of %s: %v, want %v", tc.user, got, tc.want)
		}
	}
}

func TestSameUserOnTwoGateways(t *testing.T) {
	e := newEnv(t, testenv.StartRedis(t).Addr)
	e.start(t, testConfig())

	e.connect(t, conn("g1", "c1", "u1"))
	e.expect(t, "+u1")
	e.connect(t, conn("g2", "c1", "u1")) // same conn id, other gateway
	e.quiet(t)
	if users, _ := e.list(t); users["u1"] != 2 {
		t.Fatalf("list %v, want u1 with 2 connections", users)
	}
	e.disconnect(t, "g1", "c1")
	e.quiet(t)
	if users, _ := e.list(t); users["u1"] != 1 {
		t.Fatalf("list %v, want u1 with 1 connection", users)
	}
	e.disconnect(t, "g2", "c1")
	e.expect(t, "-u1")
}

// beat heartbeats gw with conns every 200ms until the test ends, as a live
// gateway does.
func beat(t *testing.T, e *env, gw string, conns int) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	wg.Go(func() {
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			_ = rpc.Request(ctx, e.nc, subject.PresenceHeartbeat, nil,
				&internalv1.GatewayHeartbeat{GatewayId: gw, Conns: uint32(conns)}, nil)
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	})
}

func TestDeadGatewayUsersGoOffline(t *testing.T) {
	e := newEnv(t, testenv.StartRedis(t).Addr)
	r := e.start(t, testConfig()) // gateway TTL 1s, sweep every 200ms

	e.connect(t, conn("alive", "c1", "both"))
	beat(t, e, "alive", 1)
	e.connect(t, conn("dead", "c1", "only-dead"))
	e.connect(t, conn("dead", "c2", "both"))
	e.expect(t, "+both", "+only-dead")

	// "dead" never heartbeats: its TTL passes and the sweeper removes it.
	e.expect(t, "-only-dead")
	if users, _ := e.list(t); !maps.Equal(users, map[string]uint32{"both": 1}) {
		t.Fatalf("list after sweep %v, want both:1", users)
	}
	testenv.Eventually(t, 5*time.Second, "swept counter counts the gateway", func() bool {
		return testutil.ToFloat64(r.svc.metrics.swept) == 1
	})
}

func TestRedisRestartRepairsThroughResync(t *testing.T) {
	rs := testenv.StartRedis(t)
	e := newEnv(t, rs.Addr)
	e.start(t, testConfig())

	conns := []*internalv1.Conn{conn("g1", "c1", "u1"), conn("g1", "c2", "u2"), conn("g1", "c3", "u2")}
	for _, c := range conns {
		e.connect(t, c)
	}
	e.expect(t, "+u1", "+u2")
	_, seqBefore := e.list(t)
	if e.heartbeat(t, "g1", 3) {
		t.Fatal("heartbeat with matching count asked for a resync")
	}

	rs.Stop()
	rs.Start(t) // empty

	// The gateway keeps heartbeating; once presence reaches the new Redis it
	// sees the counts differ.
	testenv.Eventually(t, 10*time.Second, "heartbeat asks for resync", func() bool {
		reply := new(internalv1.GatewayHeartbeatReply)
		err := rpc.Request(context.Background(), e.nc, subject.PresenceHeartbeat, nil,
			&internalv1.GatewayHeartbeat{GatewayId: "g1", Conns: 3}, reply)
		return err == nil && reply.GetResync()
	})
	e.resync(t, "g1", "after-restart", conns, 2)

	users, seq := e.list(t)
	if want := map[string]uint32{"u1": 1, "u2": 2}; !maps.Equal(users, want) {
		t.Fatalf("list after resync %v, want %v", users, want)
	}
	if seq <= seqBefore {
		t.Fatalf("seq went from %d to %d across the restart", seqBefore, seq)
	}
	if e.heartbeat(t, "g1", 3) {
		t.Fatal("heartbeat still asks for resync after it")
	}
}

func TestResyncRemovesStaleAndAddsMissing(t *testing.T) {
	e := newEnv(t, testenv.StartRedis(t).Addr)
	e.start(t, testConfig())

	// Presence believes g1 holds stale1, stale2 (their disconnects were
	// lost) and kept; g2 holds another connection of stale2's user.
	e.connect(t, conn("g1", "c-stale1", "stale1"))
	e.connect(t, conn("g1", "c-stale2", "stale2"))
	e.connect(t, conn("g1", "c-kept", "kept"))
	e.connect(t, conn("g2", "c-other", "stale2"))
	e.expect(t, "+stale1", "+stale2", "+kept")

	if !e.heartbeat(t, "g1", 4) { // the gateway really has 4, not 3
		t.Fatal("heartbeat with a different count did not ask for resync")
	}
	var actual []*internalv1.Conn
	actual = append(actual, conn("g1", "c-kept", "kept"))
	for i := range 3 {
		actual = append(actual, conn("g1", fmt.Sprint("c-new", i), fmt.Sprint("new", i)))
	}
	e.resync(t, "g1", "r1", actual, 2)

	// stale2 keeps its g2 connection: no event for it.
	var got []string
	for range 4 {
		got = append(got, render(e.next(t)))
	}
	slices.Sort(got)
	if want := []string{"+new0", "+new1", "+new2", "-stale1"}; !slices.Equal(got, want) {
		t.Fatalf("events %v, want %v", got, want)
	}
	e.quiet(t)
	users, _ := e.list(t)
	want := map[string]uint32{"kept": 1, "new0": 1, "new1": 1, "new2": 1, "stale2": 1}
	if !maps.Equal(users, want) {
		t.Fatalf("list %v, want %v", users, want)
	}
	if e.heartbeat(t, "g1", 4) {
		t.Fatal("resync did not fix the count")
	}
}

func TestHeartbeatAsksResyncWhenCountsDiffer(t *testing.T) {
	e := newEnv(t, testenv.StartRedis(t).Addr)
	e.start(t, testConfig())
	e.connect(t, conn("g2", "c1", "u1"))
	e.connect(t, conn("g2", "c2", "u2"))

	cases := []struct {
		gw     string
		conns  int
		resync bool
	}{
		{"g1", 0, false}, // unknown gateway with nothing
		{"g1", 3, true},  // presence lost its connections
		{"g2", 2, false},
		{"g2", 1, true}, // a disconnect was lost
		{"g2", 3, true}, // a connect was lost
	}
	for _, tc := range cases {
		if got := e.heartbeat(t, tc.gw, tc.conns); got != tc.resync {
			t.Errorf("heartbeat %s with %d conns: resync=%v, want %v", tc.gw, tc.conns, got, tc.resync)
		}
	}
}

func TestTwoReplicasPublishEachChangeOnce(t *testing.T) {
	e := newEnv(t, testenv.StartRedis(t).Addr)
	r1 := e.start(t, testConfig())
	r2 := e.start(t, testConfig())

	const users = 20
	for i := range users {
		e.connect(t, conn("g1", fmt.Sprint("c", i), fmt.Sprint("u", i)))
	}
	online := map[string]int{}
	for range users {
		ev := e.next(t)
		if !ev.GetOnline() {
			t.Fatalf("unexpected %s", render(ev))
		}
		online[ev.GetUser().GetUserId()]++
	}
	e.quiet(t)
	if len(online) != users {
		t.Fatalf("online events for %d distinct users, want %d", len(online), users)
	}

	// g1 never heartbeats: both replicas sweep, each user goes offline once.
	offline := map[string]int{}
	for range users {
		ev := e.next(t)
		if ev.GetOnline() {
			t.Fatalf("unexpected %s", render(ev))
		}
		offline[ev.GetUser().GetUserId()]++
	}
	// Stop both replicas and flush what they published, then nothing more
	// may be waiting.
	for _, r := range []*replica{r1, r2} {
		r.stop()
		if err := r.nc.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	e.quiet(t)
	if len(offline) != users {
		t.Fatalf("offline events for %d distinct users, want %d", len(offline), users)
	}
	var published float64
	for _, r := range []*replica{r1, r2} {
		for _, dir := range []string{"true", "false"} {
			published += testutil.ToFloat64(r.svc.metrics.events.WithLabelValues(dir))
		}
	}
	if published != 2*users {
		t.Fatalf("replicas count %v published events, want %d", published, 2*users)
	}
}

func TestSequenceNumbersIncrease(t *testing.T) {
	e := newEnv(t, testenv.StartRedis(t).Addr)
	e.start(t, testConfig())
	e.start(t, testConfig())

	for i := range 5 {
		e.connect(t, conn("g1", fmt.Sprint("c", i), fmt.Sprint("u", i)))
		if i%2 == 1 {
			e.disconnect(t, "g1", fmt.Sprint("c", i-1))
		}
	}
	var last uint64
	for range 7 { // 5 online, 2 offline
		ev := e.next(t)
		if ev.GetSeq() <= last {
			t.Fatalf("%s has seq %d after %d", render(ev), ev.GetSeq(), last)
		}
		last = ev.GetSeq()
	}
	if _, seq := e.list(t); seq != last {
		t.Fatalf("list seq %d, last event %d", seq, last)
	}
}

func TestInvalidRequests(t *testing.T) {
	e := newEnv(t, testenv.StartRedis(t).Addr)
	e.start(t, testConfig())
	cases := []struct {
		name string
		subj string
		body []byte
	}{
		{"connect without conn", subject.PresenceConnect, nil},
		{"connect without user", subject.PresenceConnect, mustMarshal(&internalv1.PresenceConnect{Conn: &internalv1.Conn{GatewayId: "g", ConnId: "c"}})},
		{"disconnect without conn id", subject.PresenceDisconnect, mustMarshal(&internalv1.PresenceDisconnect{GatewayId: "g"})},
		{"heartbeat without gateway", subject.PresenceHeartbeat, nil},
		{"resync without resync id", subject.PresenceResync, mustMarshal(&internalv1.GatewayResync{GatewayId: "g", Last: true})},
		{"user without id", subject.PresenceUser, nil},
		{"list with a foreign cursor", subject.PresenceList, mustMarshal(&internalv1.PresenceListRequest{Cursor: "not-a-cursor"})},
		{"list garbage", subject.PresenceList, []byte{0xff, 0xff, 0xff}},
		{"garbage", subject.PresenceConnect, []byte{0xff, 0xff, 0xff}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			reply, err := e.nc.Request(tc.subj, tc.body, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if code := rpc.ErrorOf(reply); code == nil || code.Code != parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT {
				t.Fatalf("reply error %v, want INVALID_ARGUMENT", code)
			}
		})
	}
	e.quiet(t)
}

func TestReadyFollowsRedis(t *testing.T) {
	rs := testenv.StartRedis(t)
	e := newEnv(t, rs.Addr)
	r := e.start(t, testConfig())

	testenv.Eventually(t, 5*time.Second, "ready", func() bool { return r.svc.Ready() == nil })
	rs.Stop()
	testenv.Eventually(t, 5*time.Second, "not ready without redis", func() bool { return r.svc.Ready() != nil })
	// Requests fail with a code the gateway understands, not a timeout.
	err := rpc.Request(context.Background(), e.nc, subject.PresenceList, nil, nil, new(internalv1.PresenceListReply))
	var ce *errcode.Error
	if !errors.As(err, &ce) || ce.Code != parleyv1.ErrorCode_ERROR_CODE_UNAVAILABLE {
		t.Fatalf("list without redis: %v, want UNAVAILABLE", err)
	}
	rs.Start(t)
	testenv.Eventually(t, 5*time.Second, "ready again", func() bool { return r.svc.Ready() == nil })
}

func TestNewValidates(t *testing.T) {
	e := newEnv(t, "127.0.0.1:1")
	rdb := RedisConfig{Addr: "127.0.0.1:1"}.NewClient()
	defer rdb.Close()
	bad := func(f func(*Config)) Config { c := testConfig(); f(&c); return c }
	cases := []struct {
		name string
		cfg  Config
		nc   *nats.Conn
		rdb  redis.UniversalClient
		want error
	}{
		{"ok", testConfig(), e.nc, rdb, nil},
		{"no nats", testConfig(), nil, rdb, service.ErrNoNATS},
		{"no redis", testConfig(), e.nc, nil, ErrNoRedis},
		{"zero ttl", bad(func(c *Config) { c.GatewayTTL = 0 }), e.nc, rdb, ErrBadConfig},
		{"zero sweep", bad(func(c *Config) { c.SweepInterval = 0 }), e.nc, rdb, ErrBadConfig},
		{"zero resync ttl", bad(func(c *Config) { c.ResyncTTL = 0 }), e.nc, rdb, ErrBadConfig},
	}
	for _, tc := range cases {
		if _, err := New(tc.cfg, service.Deps{NC: tc.nc}, tc.rdb); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
}

// TestListPages: the online list comes in pages of about the requested
// limit (default 500, at most 1000) whose union is exactly the online
// users, on real Redis and (with fewer users: the store tests page through
// more of them) on miniredis.
func TestListPages(t *testing.T) {
	servers := []struct {
		name  string
		addr  func(t *testing.T) string
		users int // a multiple of 5
	}{
		{"redis", func(t *testing.T) string { return testenv.StartRedis(t).Addr }, 2500},
		{"miniredis", func(t *testing.T) string { return miniredis.RunT(t).Addr() }, 1100},
	}
	for _, srv := range servers {
		t.Run(srv.name, func(t *testing.T) {
			e := newEnv(t, srv.addr(t))
			cfg := testConfig()
			cfg.GatewayTTL = time.Hour // the stand-in gateways send no heartbeats
			e.start(t, cfg)
			// The users on five gateways (one resync applying thousands of
			// connections is slow on miniredis under the race detector), u7
			// with two connections.
			n := srv.users
			for g := range 5 {
				gw := fmt.Sprint("g", g)
				var conns []*internalv1.Conn
				for i := g * n / 5; i < (g+1)*n/5; i++ {
					conns = append(conns, conn(gw, fmt.Sprint("c", i), fmt.Sprint("u", i)))
				}
				if g == 4 {
					conns = append(conns, conn(gw, "c-extra", "u7"))
				}
				e.resync(t, gw, "r1", conns, 250)
			}
			var last uint64
			for range n {
				last = e.next(t).GetSeq()
			}

			cases := []struct {
				limit, most uint32
			}{
				{0, 500},
				{500, 500},
				{123, 123},
				{5000, 1000},
			}
			for _, tc := range cases {
				got := map[string]uint32{}
				seq, pages := e.listPages(t, tc.limit, func(p *internalv1.PresenceListReply) {
					// A step of a large hash may hold a few users more
					// (Redis returns whole buckets).
					if uint32(len(p.GetUsers())) > tc.most+tc.most/10+2 {
						t.Fatalf("limit %d: a page holds %d users", tc.limit, len(p.GetUsers()))
					}
					for _, u := range p.GetUsers() {
						got[u.GetUserId()] = u.GetSessions()
					}
				})
				if len(got) != n || got["u7"] != 2 || got["u0"] != 1 || got[fmt.Sprint("u", n-1)] != 1 {
					t.Fatalf("limit %d: %d users listed (u7: %d sessions), want %d", tc.limit, len(got), got["u7"], n)
				}
				if seq != last {
					t.Fatalf("limit %d: seq %d, last change %d", tc.limit, seq, last)
				}
				if pages < (n+int(tc.most)-1)/int(tc.most) {
					t.Fatalf("limit %d: %d pages", tc.limit, pages)
				}
			}
		})
	}
}
