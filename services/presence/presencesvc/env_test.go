package presencesvc

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	"github.com/parleychat/parley/libs/proto/internalv1"
	"github.com/parleychat/parley/libs/rpc"
	"github.com/parleychat/parley/libs/service"
	"github.com/parleychat/parley/libs/subject"
	"github.com/parleychat/parley/libs/testenv"
	"github.com/parleychat/parley/protocol/parleyv1"
)

// env is one NATS server and one Redis address with a client connection
// that plays the gateways and watches the presence events.
type env struct {
	ns        *server.Server
	redisAddr string
	nc        *nats.Conn
	events    chan *nats.Msg
}

func newEnv(t *testing.T, redisAddr string) *env {
	t.Helper()
	e := &env{ns: testenv.NATS(t), redisAddr: redisAddr, events: make(chan *nats.Msg, 10_000)}
	e.nc = testenv.Connect(t, e.ns)
	if _, err := e.nc.ChanSubscribe(subject.PresenceEvents, e.events); err != nil {
		t.Fatal(err)
	}
	if err := e.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return e
}

// replica is one running presence service.
type replica struct {
	svc  *Service
	nc   *nats.Conn
	reg  *prometheus.Registry
	stop func() // cancels Run and waits for it; idempotent
}

func testConfig() Config {
	cfg := DefaultConfig()
	cfg.GatewayTTL = time.Second
	cfg.SweepInterval = 200 * time.Millisecond
	return cfg
}

// start runs a presence replica on its own NATS connection and Redis client.
func (e *env) start(t *testing.T, cfg Config) *replica {
	t.Helper()
	nc := testenv.Connect(t, e.ns)
	rdb := RedisConfig{Addr: e.redisAddr}.NewClient()
	t.Cleanup(func() { _ = rdb.Close() })
	reg := prometheus.NewRegistry()
	svc, err := New(cfg, service.Deps{NC: nc, Registry: reg}, rdb)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("presence run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	// Ready to serve once a request is answered.
	testenv.Eventually(t, 5*time.Second, "presence answers", func() bool {
		return rpc.Request(context.Background(), e.nc, subject.PresenceList, nil, nil, new(internalv1.PresenceListReply)) == nil
	})
	return &replica{svc: svc, nc: nc, reg: reg, stop: stop}
}

func conn(gw, id, user string) *internalv1.Conn {
	return &internalv1.Conn{GatewayId: gw, ConnId: id, UserId: user, Username: "name-" + user, SessionId: "sess-" + user}
}

func (e *env) request(t *testing.T, subj string, req, resp proto.Message) {
	t.Helper()
	if err := rpc.Request(context.Background(), e.nc, subj, nil, req, resp); err != nil {
		t.Fatalf("%s: %v", subj, err)
	}
}

func (e *env) connect(t *testing.T, c *internalv1.Conn) {
	t.Helper()
	e.request(t, subject.PresenceConnect, &internalv1.PresenceConnect{Conn: c}, nil)
}

func (e *env) disconnect(t *testing.T, gw, id string) {
	t.Helper()
	e.request(t, subject.PresenceDisconnect, &internalv1.PresenceDisconnect{GatewayId: gw, ConnId: id}, nil)
}

func (e *env) heartbeat(t *testing.T, gw string, conns int) bool {
	t.Helper()
	reply := new(internalv1.GatewayHeartbeatReply)
	e.request(t, subject.PresenceHeartbeat, &internalv1.GatewayHeartbeat{GatewayId: gw, Conns: uint32(conns)}, reply)
	return reply.GetResync()
}

// resync sends conns as a gateway does: sequential chunks of at most size.
func (e *env) resync(t *testing.T, gw, id string, conns []*internalv1.Conn, size int) {
	t.Helper()
	for {
		n := min(len(conns), size)
		e.request(t, subject.PresenceResync,
			&internalv1.GatewayResync{GatewayId: gw, ResyncId: id, Conns: conns[:n], Last: n == len(conns)}, nil)
		conns = conns[n:]
		if len(conns) == 0 {
			return
		}
	}
}

// list walks every page of the online list as the gateway does and returns
// user -> sessions (de-duplicated by user id) and the first page's seq.
func (e *env) list(t *testing.T) (map[string]uint32, uint64) {
	t.Helper()
	out := map[string]uint32{}
	seq, _ := e.listPages(t, 0, func(p *internalv1.PresenceListReply) {
		for _, u := range p.GetUsers() {
			out[u.GetUserId()] = u.GetSessions()
		}
	})
	return out, seq
}

// listPages requests pages with limit (the first with an empty body, as an
// older gateway sends) until next_cursor is empty, hands each to page and
// returns the first page's seq and the number of pages.
func (e *env) listPages(t *testing.T, limit uint32, page func(*internalv1.PresenceListReply)) (seq uint64, pages int) {
	t.Helper()
	var req *internalv1.PresenceListRequest
	if limit != 0 {
		req = &internalv1.PresenceListRequest{Limit: limit}
	}
	for {
		reply := new(internalv1.PresenceListReply)
		e.request(t, subject.PresenceList, req, reply)
		if pages == 0 {
			seq = reply.GetSeq()
		}
		pages++
		page(reply)
		if reply.GetNextCursor() == "" {
			return seq, pages
		}
		req = &internalv1.PresenceListRequest{Cursor: reply.GetNextCursor(), Limit: limit}
	}
}

func (e *env) sessions(t *testing.T, user string) []string {
	t.Helper()
	reply := new(internalv1.UserPresenceReply)
	e.request(t, subject.PresenceUser, &internalv1.UserPresenceRequest{UserId: user}, reply)
	return reply.GetSessionIds()
}

// next waits for the next presence event.
func (e *env) next(t *testing.T) *parleyv1.PresenceChange {
	t.Helper()
	select {
	case m := <-e.events:
		ev := new(parleyv1.PresenceChange)
		if err := proto.Unmarshal(m.Data, ev); err != nil {
			t.Fatal(err)
		}
		return ev
	case <-time.After(10 * time.Second):
		t.Fatal("no presence event within 10s")
		return nil
	}
}

// expect reads len(want) events and checks them ("+user" online, "-user"
// offline), in order.
func (e *env) expect(t *testing.T, want ...string) []*parleyv1.PresenceChange {
	t.Helper()
	var evs []*parleyv1.PresenceChange
	for _, w := range want {
		ev := e.next(t)
		if got := render(ev); got != w {
			t.Fatalf("event %s, want %s", got, w)
		}
		evs = append(evs, ev)
	}
	return evs
}

func render(ev *parleyv1.PresenceChange) string {
	if ev.GetOnline() {
		return "+" + ev.GetUser().GetUserId()
	}
	return "-" + ev.GetUser().GetUserId()
}

// quiet asserts no event is waiting. Presence publishes a request's events
// on the same connection before its reply, and the test client both
// requests and subscribes, so once a request returned its events are in
// e.events already.
func (e *env) quiet(t *testing.T) {
	t.Helper()
	if err := e.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-e.events:
		ev := new(parleyv1.PresenceChange)
		_ = proto.Unmarshal(m.Data, ev)
		t.Fatalf("unexpected presence event %s", render(ev))
	default:
	}
}

func mustMarshal(m proto.Message) []byte {
	b, err := proto.Marshal(m)
	if err != nil {
		panic(err)
	}
	return b
}
