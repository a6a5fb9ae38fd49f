package rdvsvc_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/pion/stun/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	"github.com/parleychat/parley/libs/identity"
	"github.com/parleychat/parley/libs/proto/internalv1"
	"github.com/parleychat/parley/libs/rpc"
	"github.com/parleychat/parley/libs/service"
	"github.com/parleychat/parley/libs/subject"
	"github.com/parleychat/parley/libs/testenv"
	"github.com/parleychat/parley/protocol/errcode"
	"github.com/parleychat/parley/protocol/parleyv1"
	"github.com/parleychat/parley/services/rendezvous/rdvsvc"
)

// user is an account as the gateway knows it from the session.
type user struct{ id, name string }

var (
	alice = user{"ualice", "alice"}
	bob   = user{"ubob", "bob"}
	carol = user{"ucarol", "carol"} // blocked by bob
	users = []user{alice, bob, carol}
)

// clock is the services' time: the real time plus an offset a test moves
// forward (offers expire after 60 s, sessions after 24 h).
type clock struct{ offset atomic.Int64 }

func (c *clock) now() time.Time          { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *clock) advance(d time.Duration) { c.offset.Add(int64(d)) }

// env is a NATS with stand-ins for messaging and auth, and rendezvous
// replicas started on it.
type env struct {
	t     *testing.T
	ns    *server.Server
	nc    *nats.Conn // the test's own connection: requests as the gateway, event subscriptions
	clock *clock

	mu      sync.Mutex
	devices map[string][]*parleyv1.DeviceKey // user id -> registered devices
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{t: t, ns: testenv.NATS(t), clock: &clock{}, devices: map[string][]*parleyv1.DeviceKey{}}
	e.nc = testenv.Connect(t, e.ns)
	e.standIns()
	return e
}

// standIns answers subject.MsgCallResolve (messaging, not this service:
// users by name, bob blocked carol, alice and bob are friends) and
// subject.AuthDeviceKeys (auth: the devices registered with addDevice).
func (e *env) standIns() {
	t := e.t
	byName := map[string]user{}
	for _, u := range users {
		byName[u.name] = u
	}
	serve := func(subj, queue string, h func(me identity.Caller, data []byte) (proto.Message, error)) {
		if _, err := e.nc.QueueSubscribe(subj, queue, func(m *nats.Msg) {
			me, err := identity.Read(m.Header)
			var resp proto.Message
			if err != nil {
				err = errcode.New(parleyv1.ErrorCode_ERROR_CODE_UNAUTHENTICATED, "log in first")
			} else {
				resp, err = h(me, m.Data)
			}
			if err != nil {
				_ = rpc.RespondError(m, err)
				return
			}
			_ = rpc.Respond(m, resp)
		}); err != nil {
			t.Fatal(err)
		}
	}
	serve(subject.MsgCallResolve, subject.QueueMessaging, func(me identity.Caller, data []byte) (proto.Message, error) {
		var req internalv1.CallResolveRequest
		if err := proto.Unmarshal(data, &req); err != nil {
			return nil, err
		}
		to, ok := byName[req.ToUsername]
		switch {
		case req.ToUsername == "" || req.Conversation != "":
			return nil, errcode.New(parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "rendezvous asks by name")
		case !ok:
			return nil, errcode.New(parleyv1.ErrorCode_ERROR_CODE_NOT_FOUND, "no such user")
		case to.id == me.UserID:
			return nil, errcode.New(parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "you cannot call yourself")
		case to.id == bob.id && me.UserID == carol.id || to.id == carol.id && me.UserID == bob.id:
			return nil, errcode.New(parleyv1.ErrorCode_ERROR_CODE_BLOCKED, "blocked")
		}
		friends := to.id == bob.id && me.UserID == alice.id || to.id == alice.id && me.UserID == bob.id
		return &internalv1.CallResolveReply{Conversation: "dm.x", Kind: parleyv1.ConversationKind_CONVERSATION_KIND_DIRECT,
			MemberIds: []string{me.UserID, to.id}, PeerName: to.name, PeerIsFriend: friends}, nil
	})
	serve(subject.AuthDeviceKeys, "parley-auth", func(_ identity.Caller, data []byte) (proto.Message, error) {
		var req parleyv1.DeviceKeysRequest
		if err := proto.Unmarshal(data, &req); err != nil {
			return nil, err
		}
		var u user
		for _, x := range users {
			if x.id == req.UserId || x.name == req.Username {
				u = x
			}
		}
		if u.id == "" {
			return nil, errcode.New(parleyv1.ErrorCode_ERROR_CODE_NOT_FOUND, "no such user")
		}
		e.mu.Lock()
		defer e.mu.Unlock()
		return &parleyv1.DeviceKeysReply{UserId: u.id, Username: u.name, Devices: e.devices[u.id]}, nil
	})
}

// addDevice registers a new device key of u with the stand-in auth.
func (e *env) addDevice(u user) *parleyv1.DeviceKey {
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		e.t.Fatal(err)
	}
	sum := sha256.Sum256(pub)
	d := &parleyv1.DeviceKey{DeviceId: hex.EncodeToString(sum[:8]), PublicKey: pub, Name: u.name + "'s device",
		RegisteredAtUnixMs: time.Now().UnixMilli()}
	e.mu.Lock()
	e.devices[u.id] = append([]*parleyv1.DeviceKey{d}, e.devices[u.id]...)
	e.mu.Unlock()
	return d
}

// testConfig is the default configuration on free loopback ports: the
// primary on 127.0.0.1, the alternate on 127.0.0.2 (both loopback on
// Linux), a sweep every 50 ms.
func testConfig() rdvsvc.Config {
	c := rdvsvc.DefaultConfig()
	c.STUNAddr, c.STUNAltAddr = "127.0.0.1:0", "127.0.0.2:0"
	c.SweepInterval = 50 * time.Millisecond
	c.STUNRate, c.STUNBurst = 0, 0
	return c
}

// replica is one running rendezvous.
type replica struct {
	svc     *rdvsvc.Service
	reg     *prometheus.Registry
	stop    func()
	primary netip.AddrPort
	alt     netip.AddrPort
}

// start runs a replica with cfg until the test ends (or stop), and waits
// until it serves.
func (e *env) start(cfg rdvsvc.Config) *replica {
	t := e.t
	t.Helper()
	reg := prometheus.NewRegistry()
	nc := testenv.Connect(t, e.ns)
	log := slog.New(slog.DiscardHandler)
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	svc, err := rdvsvc.New(cfg, service.Deps{NC: nc, Log: log, Registry: reg, Clock: e.clock.now})
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	var once sync.Once
	r := &replica{svc: svc, reg: reg}
	r.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(r.stop)
	r.primary, r.alt = svc.Addrs()
	testenv.Eventually(t, 10*time.Second, "rendezvous ready", func() bool { return svc.Ready() == nil })
	return r
}

// socketAddr is the bound address of the replica's socket with the i-th IP
// and the j-th port (0 primary, 1 alternate).
func (r *replica) socketAddr(i, j int) netip.AddrPort {
	ips := [2]netip.Addr{r.primary.Addr(), r.alt.Addr()}
	ports := [2]uint16{r.primary.Port(), r.alt.Port()}
	return netip.AddrPortFrom(ips[i], ports[j])
}

// counter reads a counter (with labels name=value pairs) of the replica.
func (r *replica) counter(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := r.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue metric
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

// header is what the gateway sets from u's session (conn names the
// connection) on a request.
func header(u user, conn string) nats.Header {
	return identity.Header(identity.Caller{UserID: u.id, SessionID: "s" + u.name, Username: u.name},
		identity.Origin{RemoteAddr: "127.0.0.1:1", GatewayID: "gw-test", ConnID: conn})
}

// call sends a signalling request as u (from connection "conn-<name>")
// and decodes the reply into resp.
func (e *env) call(u user, subj string, req, resp proto.Message) error {
	return e.callConn(u, "conn-"+u.name, subj, req, resp)
}

// callConn is call from connection conn.
func (e *env) callConn(u user, conn, subj string, req, resp proto.Message) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return rpc.Request(ctx, e.nc, subj, header(u, conn), req, resp)
}

// mustCall is call that fails the test on an error.
func (e *env) mustCall(u user, subj string, req, resp proto.Message) {
	e.t.Helper()
	if err := e.call(u, subj, req, resp); err != nil {
		e.t.Fatalf("%s as %s: %v", subj, u.name, err)
	}
}

// wantCode fails the test unless err carries code.
func wantCode(t *testing.T, what string, err error, code parleyv1.ErrorCode) {
	t.Helper()
	var e *errcode.Error
	if !errors.As(err, &e) || e.Code != code {
		t.Fatalf("%s: %v, want %s", what, err, code)
	}
}

// events collects the P2PEvents of one user.
type events struct {
	t  *testing.T
	ch chan *parleyv1.P2PEvent
}

func (e *env) events(u user) *events {
	t := e.t
	ev := &events{t: t, ch: make(chan *parleyv1.P2PEvent, 256)}
	sub, err := e.nc.Subscribe(subject.UserP2PEvents(u.id), func(m *nats.Msg) {
		var x parleyv1.P2PEvent
		if err := proto.Unmarshal(m.Data, &x); err != nil {
			t.Errorf("undecodable P2PEvent: %v", err)
			return
		}
		ev.ch <- &x
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	return ev
}

// next returns the next event, which must be of kind.
func (ev *events) next(kind parleyv1.P2PEvent_Kind) *parleyv1.P2PSession {
	ev.t.Helper()
	select {
	case x := <-ev.ch:
		if x.Kind != kind {
			ev.t.Fatalf("event %s (%v), want %s", x.Kind, x.Session, kind)
		}
		return x.Session
	case <-time.After(10 * time.Second):
		ev.t.Fatalf("no %s event within 10s", kind)
	}
	return nil
}

// none checks that no event arrives within d.
func (ev *events) none(d time.Duration) {
	ev.t.Helper()
	select {
	case x := <-ev.ch:
		ev.t.Fatalf("unexpected event %s (%v)", x.Kind, x.Session)
	case <-time.After(d):
	}
}

// record reads a session's record straight from the bucket (nil: none).
func (e *env) record(id string) *internalv1.P2PRecord {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	js, err := jetstream.New(e.nc)
	if err != nil {
		e.t.Fatal(err)
	}
	kv, err := js.KeyValue(ctx, subject.BucketP2P)
	if err != nil {
		e.t.Fatal(err)
	}
	entry, err := kv.Get(ctx, "s."+id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	if err != nil {
		e.t.Fatal(err)
	}
	var rec internalv1.P2PRecord
	if err := proto.Unmarshal(entry.Value(), &rec); err != nil {
		e.t.Fatal(err)
	}
	return &rec
}

// client is a UDP socket speaking STUN, as a device's session socket.
type client struct {
	t    *testing.T
	conn *net.UDPConn
}

// newClient binds a client on ip (a loopback address) and any port.
func newClient(t *testing.T, ip string) *client {
	t.Helper()
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(ip), 0)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &client{t: t, conn: c}
}

func (c *client) addr() netip.AddrPort { return c.conn.LocalAddr().(*net.UDPAddr).AddrPort() }

// request builds a Binding request with a fresh transaction id.
func request(setters ...stun.Setter) *stun.Message {
	m, err := stun.Build(append([]stun.Setter{stun.TransactionID, stun.BindingRequest}, setters...)...)
	if err != nil {
		panic(err)
	}
	return m
}

// send sends req to to once.
func (c *client) send(to netip.AddrPort, req *stun.Message) {
	c.t.Helper()
	if _, err := c.conn.WriteToUDPAddrPort(req.Raw, to); err != nil {
		c.t.Fatal(err)
	}
}

// receive waits up to d for the answer to req: the response and where it
// came from; ok false when none came.
func (c *client) receive(req *stun.Message, d time.Duration) (*stun.Message, netip.AddrPort, bool) {
	c.t.Helper()
	deadline := time.Now().Add(d)
	buf := make([]byte, 2048)
	for {
		if err := c.conn.SetReadDeadline(deadline); err != nil {
			c.t.Fatal(err)
		}
		n, from, err := c.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return nil, netip.AddrPort{}, false
			}
			c.t.Fatal(err)
		}
		res := new(stun.Message)
		if err := stun.Decode(buf[:n], res); err != nil {
			c.t.Fatalf("undecodable answer from %s: %v", from, err)
		}
		if res.TransactionID == req.TransactionID {
			return res, netip.AddrPortFrom(from.Addr().Unmap(), from.Port()), true
		}
	}
}

// do sends req to to every 200 ms until answered (RFC 8489 timing,
// shortened as Parley's client does), for at most 5 s.
func (c *client) do(to netip.AddrPort, req *stun.Message) (*stun.Message, netip.AddrPort) {
	c.t.Helper()
	for range 25 {
		c.send(to, req)
		if res, from, ok := c.receive(req, 200*time.Millisecond); ok {
			return res, from
		}
	}
	c.t.Fatalf("no answer from %s within 5s", to)
	return nil, netip.AddrPort{}
}

// register registers the client's socket for a session at to (§20.3) and
// returns the mapped address, checking the answer's MESSAGE-INTEGRITY:
// the first request is answered 438 with the NONCE for this socket's
// address, which the second carries.
func (c *client) register(to netip.AddrPort, username string, key []byte) netip.AddrPort {
	c.t.Helper()
	res, _ := c.do(to, request(stun.NewUsername(username), stun.MessageIntegrity(key), stun.Fingerprint))
	if res.Type == stun.BindingError && errorOf(res) == stun.CodeStaleNonce {
		res, _ = c.do(to, request(stun.NewUsername(username), c.nonceOf(res, key), stun.MessageIntegrity(key), stun.Fingerprint))
	}
	if res.Type != stun.BindingSuccess {
		c.t.Fatalf("registration at %s answered %s (%d)", to, res.Type, errorOf(res))
	}
	if err := stun.MessageIntegrity(key).Check(res); err != nil {
		c.t.Fatalf("registration answer's MESSAGE-INTEGRITY: %v", err)
	}
	if err := stun.Fingerprint.Check(res); err != nil {
		c.t.Fatalf("registration answer's FINGERPRINT: %v", err)
	}
	return mapped(c.t, res)
}

// nonceOf is the NONCE of a 438 answer to a registration, checking that
// the answer is signed with the register key.
func (c *client) nonceOf(res *stun.Message, key []byte) stun.Nonce {
	c.t.Helper()
	if err := stun.MessageIntegrity(key).Check(res); err != nil {
		c.t.Fatalf("438's MESSAGE-INTEGRITY: %v", err)
	}
	var n stun.Nonce
	if err := n.GetFrom(res); err != nil {
		c.t.Fatalf("438 without a NONCE: %v", err)
	}
	return n
}

// mapped is a response's XOR-MAPPED-ADDRESS.
func mapped(t *testing.T, res *stun.Message) netip.AddrPort {
	t.Helper()
	var x stun.XORMappedAddress
	if err := x.GetFrom(res); err != nil {
		t.Fatalf("no XOR-MAPPED-ADDRESS: %v", err)
	}
	return addrPort(t, x.IP, x.Port)
}

func addrPort(t *testing.T, ip net.IP, port int) netip.AddrPort {
	t.Helper()
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		t.Fatalf("bad IP %v", ip)
	}
	return netip.AddrPortFrom(a.Unmap(), uint16(port))
}

// errorOf is a response's ERROR-CODE (0 when none).
func errorOf(res *stun.Message) stun.ErrorCode {
	var ec stun.ErrorCodeAttribute
	if err := ec.GetFrom(res); err != nil {
		return 0
	}
	return ec.Code
}
