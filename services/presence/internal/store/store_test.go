package store

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/parleychat/parley/libs/testenv"
)

// backend makes a Redis client for one test, plus a way to empty it as a
// restart would.
type backend struct {
	name  string
	start func(t *testing.T) redis.UniversalClient
}

// backends are the servers the store must work on: the real redis-server
// (production) and miniredis (the one-binary server's in-process Redis).
var backends = []backend{
	{"redis", func(t *testing.T) redis.UniversalClient {
		r := testenv.StartRedis(t)
		c := redis.NewClient(&redis.Options{Addr: r.Addr})
		t.Cleanup(func() { _ = c.Close() })
		return c
	}},
	{"miniredis", func(t *testing.T) redis.UniversalClient {
		m := miniredis.RunT(t)
		c := redis.NewClient(&redis.Options{Addr: m.Addr()})
		t.Cleanup(func() { _ = c.Close() })
		return c
	}},
}

// clock is a settable clock for expiry tests.
type clock struct {
	mu  sync.Mutex // guards now
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func forEachBackend(t *testing.T, f func(t *testing.T, s *Store, rdb redis.UniversalClient, clk *clock)) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			rdb := b.start(t)
			clk := &clock{now: time.Unix(1_700_000_000, 0)}
			s := New(rdb, Options{GatewayTTL: 15 * time.Second, Clock: clk.Now})
			f(t, s, rdb, clk)
		})
	}
}

func conn(gw, id, user string) Conn {
	return Conn{GatewayID: gw, ConnID: id, UserID: user, Username: "name-" + user, SessionID: "s-" + user}
}

// ev renders changes as "+u1", "-u2" for compact table expectations.
func ev(chs []Change) []string {
	var out []string
	for _, c := range chs {
		sign := "-"
		if c.Online {
			sign = "+"
		}
		out = append(out, sign+c.UserID)
	}
	return out
}

// listAll walks every page of the online list with limit and returns the
// users de-duplicated by id (as every consumer must), the first page's seq
// and how many pages it took. It fails the test when a page holds clearly
// more than limit users (or the default / maximum it stands for).
func listAll(t *testing.T, s *Store, limit int) (users map[string]OnlineUser, seq uint64, pages int) {
	t.Helper()
	want := limit
	switch {
	case limit <= 0:
		want = DefaultListLimit
	case limit > MaxListLimit:
		want = MaxListLimit
	}
	users = make(map[string]OnlineUser)
	cursor := ""
	for {
		p, err := s.List(context.Background(), cursor, limit)
		if err != nil {
			t.Fatal(err)
		}
		if pages == 0 {
			seq = p.Seq
		}
		pages++
		// A step of a large hash may exceed the limit by a few users:
		// Redis returns whole buckets.
		if len(p.Users) > want+want/10+2 {
			t.Fatalf("page %d holds %d users, limit %d", pages, len(p.Users), want)
		}
		if pages > 100_000 {
			t.Fatal("list walk does not end")
		}
		for _, u := range p.Users {
			users[u.UserID] = u
		}
		if p.Next == "" {
			return users, seq, pages
		}
		cursor = p.Next
	}
}

// online renders the list as "user:conns", sorted.
func online(t *testing.T, s *Store) []string {
	t.Helper()
	users, _, _ := listAll(t, s, 0)
	var out []string
	for _, u := range users {
		out = append(out, fmt.Sprintf("%s:%d", u.UserID, u.Conns))
	}
	sort.Strings(out)
	return out
}

// op is one step of a rules table: connect (+), disconnect (-).
type op struct {
	connect bool
	c       Conn
	want    []string // changes this step must produce
}

func TestConnectDisconnectRules(t *testing.T) {
	cases := []struct {
		name  string
		ops   []op
		final []string
	}{
		{"first connection goes online", []op{
			{true, conn("g1", "c1", "u1"), []string{"+u1"}},
		}, []string{"u1:1"}},
		{"second connection of the same user is silent", []op{
			{true, conn("g1", "c1", "u1"), []string{"+u1"}},
			{true, conn("g1", "c2", "u1"), nil},
		}, []string{"u1:2"}},
		{"last disconnect goes offline, earlier ones are silent", []op{
			{true, conn("g1", "c1", "u1"), []string{"+u1"}},
			{true, conn("g1", "c2", "u1"), nil},
			{false, conn("g1", "c1", ""), nil},
			{false, conn("g1", "c2", ""), []string{"-u1"}},
		}, nil},
		{"same user on two gateways", []op{
			{true, conn("g1", "c1", "u1"), []string{"+u1"}},
			{true, conn("g2", "c1", "u1"), nil},
			{false, conn("g1", "c1", ""), nil},
		}, []string{"u1:1"}},
		{"repeated connect is idempotent", []op{
			{true, conn("g1", "c1", "u1"), []string{"+u1"}},
			{true, conn("g1", "c1", "u1"), nil},
		}, []string{"u1:1"}},
		{"unknown disconnect is ignored", []op{
			{false, conn("g1", "nope", ""), nil},
		}, nil},
		{"repeated disconnect is ignored", []op{
			{true, conn("g1", "c1", "u1"), []string{"+u1"}},
			{false, conn("g1", "c1", ""), []string{"-u1"}},
			{false, conn("g1", "c1", ""), nil},
		}, nil},
		{"conn id reused by another user replaces the old one", []op{
			{true, conn("g1", "c1", "u1"), []string{"+u1"}},
			{true, conn("g1", "c1", "u2"), []string{"-u1", "+u2"}},
		}, []string{"u2:1"}},
		{"same conn id on different gateways are different connections", []op{
			{true, conn("g1", "c1", "u1"), []string{"+u1"}},
			{true, conn("g2", "c1", "u2"), []string{"+u2"}},
		}, []string{"u1:1", "u2:1"}},
	}
	forEachBackend(t, func(t *testing.T, _ *Store, rdb redis.UniversalClient, clk *clock) {
		for i, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				ctx := context.Background()
				s := New(rdb, Options{Prefix: fmt.Sprintf("t%d:", i), Clock: clk.Now})
				for j, o := range tc.ops {
					var chs []Change
					var err error
					if o.connect {
						chs, err = s.Connect(ctx, o.c)
					} else {
						chs, err = s.Disconnect(ctx, o.c.GatewayID, o.c.ConnID)
					}
					if err != nil {
						t.Fatalf("step %d: %v", j, err)
					}
					if got := ev(chs); !slices.Equal(got, o.want) {
						t.Fatalf("step %d: changes %v, want %v", j, got, o.want)
					}
				}
				if got := online(t, s); !slices.Equal(got, tc.final) {
					t.Fatalf("online %v, want %v", got, tc.final)
				}
			})
		}
	})
}

func TestListAndUserSessions(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store, _ redis.UniversalClient, _ *clock) {
		ctx := context.Background()
		a1 := Conn{GatewayID: "g1", ConnID: "c1", UserID: "u1", Username: "ann", SessionID: "sa"}
		a2 := Conn{GatewayID: "g2", ConnID: "c9", UserID: "u1", Username: "ann", SessionID: "sb"}
		a3 := Conn{GatewayID: "g2", ConnID: "c10", UserID: "u1", Username: "ann", SessionID: "sb"}
		b := Conn{GatewayID: "g1", ConnID: "c2", UserID: "u2", Username: "bob \"quoted\" <ü>", SessionID: "sc"}
		for _, c := range []Conn{a1, a2, a3, b} {
			if _, err := s.Connect(ctx, c); err != nil {
				t.Fatal(err)
			}
		}
		page, err := s.List(ctx, "", 0)
		if err != nil {
			t.Fatal(err)
		}
		if page.Next != "" {
			t.Errorf("two users take more than one page: next cursor %q", page.Next)
		}
		users := page.Users
		sort.Slice(users, func(i, j int) bool { return users[i].UserID < users[j].UserID })
		want := []OnlineUser{{"u1", "ann", 3}, {"u2", "bob \"quoted\" <ü>", 1}}
		if !slices.Equal(users, want) {
			t.Fatalf("list %v, want %v", users, want)
		}
		sess, err := s.UserSessions(ctx, "u1")
		if err != nil {
			t.Fatal(err)
		}
		sort.Strings(sess)
		if !slices.Equal(sess, []string{"sa", "sb"}) {
			t.Fatalf("sessions %v", sess)
		}
		if sess, _ := s.UserSessions(ctx, "nobody"); len(sess) != 0 {
			t.Fatalf("sessions of offline user: %v", sess)
		}
		if n, _ := s.OnlineCount(ctx); n != 2 {
			t.Fatalf("online count %d", n)
		}
	})
}

func TestHeartbeatCount(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store, _ redis.UniversalClient, _ *clock) {
		ctx := context.Background()
		for _, c := range []Conn{conn("g1", "c1", "u1"), conn("g1", "c2", "u2"), conn("g2", "c1", "u3")} {
			if _, err := s.Connect(ctx, c); err != nil {
				t.Fatal(err)
			}
		}
		for gw, want := range map[string]int{"g1": 2, "g2": 1, "g3": 0} {
			n, err := s.Heartbeat(ctx, gw)
			if err != nil || n != want {
				t.Fatalf("heartbeat %s: %d, %v; want %d", gw, n, err, want)
			}
		}
	})
}

func TestSweepExpiredGateway(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store, _ redis.UniversalClient, clk *clock) {
		ctx := context.Background()
		for _, c := range []Conn{conn("dead", "c1", "u1"), conn("dead", "c2", "u2"), conn("alive", "c1", "u2")} {
			if _, err := s.Connect(ctx, c); err != nil {
				t.Fatal(err)
			}
		}
		clk.Advance(10 * time.Second)
		if _, err := s.Heartbeat(ctx, "alive"); err != nil {
			t.Fatal(err)
		}
		if n, chs, err := s.Sweep(ctx); err != nil || n != 0 || len(chs) != 0 {
			t.Fatalf("early sweep: %d %v %v", n, chs, err)
		}
		clk.Advance(6 * time.Second) // dead: 16s since its last sign of life
		n, chs, err := s.Sweep(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if n != 1 || !slices.Equal(ev(chs), []string{"-u1"}) {
			t.Fatalf("sweep: %d gateways, changes %v; want 1, [-u1]", n, ev(chs))
		}
		if got := online(t, s); !slices.Equal(got, []string{"u2:1"}) {
			t.Fatalf("online %v", got)
		}
		if n, chs, _ := s.Sweep(ctx); n != 0 || len(chs) != 0 {
			t.Fatalf("second sweep removed again: %d %v", n, chs)
		}
	})
}

func TestSweepManyGateways(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store, _ redis.UniversalClient, clk *clock) {
		ctx := context.Background()
		const gws = sweepBatch*2 + 3
		for i := range gws {
			if _, err := s.Connect(ctx, conn(fmt.Sprint("g", i), "c", fmt.Sprint("u", i))); err != nil {
				t.Fatal(err)
			}
		}
		clk.Advance(time.Minute)
		n, chs, err := s.Sweep(ctx)
		if err != nil || n != gws || len(chs) != gws {
			t.Fatalf("sweep: %d gateways, %d changes, %v; want %d", n, len(chs), err, gws)
		}
	})
}

func TestResyncRules(t *testing.T) {
	cases := []struct {
		name    string
		before  []Conn   // stored for gateway g1 (and others) before the resync
		chunks  [][]Conn // resync chunks for g1, in order
		changes []string
		final   []string
	}{
		{"empty store learns everything",
			nil,
			[][]Conn{{conn("g1", "c1", "u1"), conn("g1", "c2", "u2")}, {conn("g1", "c3", "u2")}},
			[]string{"+u1", "+u2"}, []string{"u1:1", "u2:2"}},
		{"stale connections removed, missing added",
			[]Conn{conn("g1", "c1", "u1"), conn("g1", "c2", "u2"), conn("g1", "c3", "u3")},
			[][]Conn{{conn("g1", "c1", "u1")}, {conn("g1", "c4", "u4")}},
			[]string{"+u4", "-u2", "-u3"}, []string{"u1:1", "u4:1"}},
		{"user kept by another connection does not flap",
			[]Conn{conn("g1", "c1", "u1")},
			[][]Conn{{conn("g1", "c2", "u1")}},
			nil, []string{"u1:1"}},
		{"empty resync clears the gateway",
			[]Conn{conn("g1", "c1", "u1"), conn("g1", "c2", "u2")},
			[][]Conn{{}},
			[]string{"-u1", "-u2"}, nil},
		{"other gateways are untouched",
			[]Conn{conn("g1", "c1", "u1"), conn("g2", "c1", "u1"), conn("g2", "c2", "u2")},
			[][]Conn{{}},
			nil, []string{"u1:1", "u2:1"}},
		{"identical view changes nothing",
			[]Conn{conn("g1", "c1", "u1")},
			[][]Conn{{conn("g1", "c1", "u1")}},
			nil, []string{"u1:1"}},
	}
	forEachBackend(t, func(t *testing.T, _ *Store, rdb redis.UniversalClient, clk *clock) {
		for i, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				ctx := context.Background()
				s := New(rdb, Options{Prefix: fmt.Sprintf("r%d:", i), Clock: clk.Now})
				for _, c := range tc.before {
					if _, err := s.Connect(ctx, c); err != nil {
						t.Fatal(err)
					}
				}
				var all []Change
				for j, chunk := range tc.chunks {
					last := j == len(tc.chunks)-1
					applied, chs, err := s.Resync(ctx, Resync{GatewayID: "g1", ResyncID: "r", Conns: chunk, Last: last})
					if err != nil {
						t.Fatal(err)
					}
					if applied != last {
						t.Fatalf("chunk %d applied=%v", j, applied)
					}
					all = append(all, chs...)
				}
				got := ev(all)
				slices.Sort(got)
				if !slices.Equal(got, tc.changes) {
					t.Fatalf("changes %v, want %v", got, tc.changes)
				}
				if got := online(t, s); !slices.Equal(got, tc.final) {
					t.Fatalf("online %v, want %v", got, tc.final)
				}
				if n, _ := s.Heartbeat(ctx, "g1"); n != len(slices.Concat(tc.chunks...)) {
					t.Fatalf("gateway holds %d conns after resync", n)
				}
			})
		}
	})
}

// Chunks may reach different replicas out of order when the gateway sets
// Chunks on the last one; the resync applies once all are staged, and a
// chunk staged twice (retried) counts once.
func TestResyncOutOfOrderChunks(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store, _ redis.UniversalClient, _ *clock) {
		ctx := context.Background()
		if _, err := s.Connect(ctx, conn("g1", "old", "u0")); err != nil {
			t.Fatal(err)
		}
		c1 := []Conn{conn("g1", "c1", "u1")}
		c2 := []Conn{conn("g1", "c2", "u2")}
		c3 := []Conn{conn("g1", "c3", "u3")}
		steps := []struct {
			r       Resync
			applied bool
		}{
			{Resync{GatewayID: "g1", ResyncID: "x", Conns: c3, Last: true, Chunks: 3}, false},
			{Resync{GatewayID: "g1", ResyncID: "x", Conns: c1}, false},
			{Resync{GatewayID: "g1", ResyncID: "x", Conns: c1}, false}, // retry
			{Resync{GatewayID: "g1", ResyncID: "x", Conns: c2}, true},
		}
		var all []Change
		for i, st := range steps {
			applied, chs, err := s.Resync(ctx, st.r)
			if err != nil {
				t.Fatal(err)
			}
			if applied != st.applied {
				t.Fatalf("step %d applied=%v", i, applied)
			}
			all = append(all, chs...)
		}
		got := ev(all)
		sort.Strings(got)
		if want := []string{"+u1", "+u2", "+u3", "-u0"}; !slices.Equal(got, want) {
			t.Fatalf("changes %v, want %v", got, want)
		}
		if got := online(t, s); !slices.Equal(got, []string{"u1:1", "u2:1", "u3:1"}) {
			t.Fatalf("online %v", got)
		}
	})
}

func TestSeqIncreasesAcrossRedisRestart(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store, rdb redis.UniversalClient, clk *clock) {
		ctx := context.Background()
		var last uint64
		check := func(chs []Change) {
			t.Helper()
			for _, c := range chs {
				if c.Seq <= last {
					t.Fatalf("seq %d after %d", c.Seq, last)
				}
				last = c.Seq
			}
			p, err := s.List(ctx, "", 0)
			if err != nil || p.Seq != last {
				t.Fatalf("list seq %d (%v), last change %d", p.Seq, err, last)
			}
		}
		for i := range 3 {
			chs, err := s.Connect(ctx, conn("g1", fmt.Sprint("c", i), fmt.Sprint("u", i)))
			if err != nil {
				t.Fatal(err)
			}
			check(chs)
		}
		if err := rdb.FlushAll(ctx).Err(); err != nil { // what a restart without persistence leaves
			t.Fatal(err)
		}
		clk.Advance(time.Second)
		chs, err := s.Connect(ctx, conn("g1", "c0", "u0"))
		if err != nil {
			t.Fatal(err)
		}
		check(chs)
		chs, err = s.Disconnect(ctx, "g1", "c0")
		if err != nil {
			t.Fatal(err)
		}
		check(chs)
	})
}
