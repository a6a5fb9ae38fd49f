package server_test

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/coder/websocket"
	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/parleychat/parley/gateway/server"
	"github.com/parleychat/parley/libs/testenv"
	"github.com/parleychat/parley/protocol/parleyv1"
	"github.com/parleychat/parley/protocol/wire"
)

// env is one running gateway with its NATS server and service stand-ins.
type env struct {
	t        testing.TB
	srv      *server.Server
	ns       *natsserver.Server
	nc       *nats.Conn // a test-side NATS connection (acting as a service)
	auth     *standInAuth
	presence *standInPresence
	reg      *prometheus.Registry
	stop     func() // cancels Run and waits for it
}

func testConfig() server.Config {
	cfg := server.DefaultConfig()
	cfg.TCPAddr = "127.0.0.1:0"
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.UDPAddr = "127.0.0.1:0"
	cfg.GatewayID = "gw-test"
	cfg.PresenceHeartbeat = time.Hour // tests that need heartbeats shorten it
	cfg.RequestTimeout = 3 * time.Second
	return cfg
}

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("PARLEY_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// startGateway starts NATS, the stand-ins and a gateway with testConfig
// changed by mutate.
func startGateway(t testing.TB, mutate func(*server.Config)) *env {
	t.Helper()
	return startGatewayDeps(t, mutate, nil)
}

// startGatewayDeps is startGateway with the gateway's dependencies changed
// by deps (after NC, Log and Registry are set).
func startGatewayDeps(t testing.TB, mutate func(*server.Config), deps func(*server.Deps)) *env {
	t.Helper()
	ns := testenv.NATS(t)
	e := &env{t: t, ns: ns, nc: testenv.Connect(t, ns)}
	e.auth = startStandInAuth(t, e.nc)
	e.presence = startStandInPresence(t, e.nc)
	if err := e.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	e.launch(mutate, deps)
	return e
}

// replica starts another gateway replica on e's NATS server, with the
// same stand-ins, its own NATS connection and metrics, and gateway id
// id.
func (e *env) replica(id string, mutate func(*server.Config)) *env {
	e.t.Helper()
	r := &env{t: e.t, ns: e.ns, nc: e.nc, auth: e.auth, presence: e.presence}
	r.launch(func(c *server.Config) {
		c.GatewayID = id
		if mutate != nil {
			mutate(c)
		}
	}, nil)
	return r
}

// launch starts a gateway with testConfig changed by mutate on e's NATS
// server, until the test ends (or e.stop).
func (e *env) launch(mutate func(*server.Config), deps func(*server.Deps)) {
	t := e.t
	t.Helper()
	e.reg = prometheus.NewRegistry()
	cfg := testConfig()
	if mutate != nil {
		mutate(&cfg)
	}
	gnc := testenv.Connect(t, e.ns)
	d := server.Deps{NC: gnc, Log: testLogger(t), Registry: e.reg}
	if deps != nil {
		deps(&d)
	}
	srv, err := server.New(cfg, d)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	e.srv = srv
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	stopped := false
	e.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Error("gateway did not stop within 15s")
		}
	}
	t.Cleanup(e.stop)
	testenv.Eventually(t, 5*time.Second, "gateway ready", func() bool { return srv.Ready() == nil })
}

// metric returns the value of a counter or gauge (summed over labels
// matching the given label values).
func (e *env) metric(name string, labels map[string]string) float64 {
	mfs, err := e.reg.Gather()
	if err != nil {
		e.t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for k, v := range labels {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == k && lp.GetValue() == v {
						found = true
					}
				}
				if !found {
					continue next
				}
			}
			if m.GetCounter() != nil {
				sum += m.GetCounter().GetValue()
			}
			if m.GetGauge() != nil {
				sum += m.GetGauge().GetValue()
			}
		}
	}
	return sum
}

// client is a test client speaking the wire protocol over one transport.
type client struct {
	t      testing.TB
	write  func(frame []byte) error // one frame's encoding, no prefix
	read   func(timeout time.Duration) ([]byte, error)
	raw    net.Conn // stream transports only
	close  func()
	nextID uint32
	stash  []*parleyv1.Frame // frames read while waiting for another

	writeText func(s string) error // WebSocket only
}

const readTimeout = 10 * time.Second

func newStreamClient(t testing.TB, c net.Conn) *client {
	r := wire.NewReader(c, 64<<20)
	cl := &client{t: t, raw: c, close: func() { _ = c.Close() }}
	cl.write = func(frame []byte) error {
		b := make([]byte, 4, 4+len(frame))
		b[0], b[1], b[2], b[3] = byte(len(frame)>>24), byte(len(frame)>>16), byte(len(frame)>>8), byte(len(frame))
		_, err := c.Write(append(b, frame...))
		return err
	}
	cl.read = func(timeout time.Duration) ([]byte, error) {
		_ = c.SetReadDeadline(time.Now().Add(timeout))
		b, err := r.ReadRaw()
		if err != nil {
			return nil, err
		}
		defer wire.PutRaw(b)
		return append([]byte(nil), *b...), nil
	}
	t.Cleanup(cl.close)
	return cl
}

func dialTCP(t testing.TB, e *env) *client {
	t.Helper()
	c, err := net.Dial("tcp", e.srv.TCPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	return newStreamClient(t, c)
}

func dialTLS(t *testing.T, e *env, conf *tls.Config) *client {
	t.Helper()
	c, err := tls.Dial("tcp", e.srv.TCPAddr().String(), conf)
	if err != nil {
		t.Fatal(err)
	}
	return newStreamClient(t, c)
}

func dialWS(t *testing.T, url string, httpClient *http.Client) *client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), readTimeout)
	defer cancel()
	c, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPClient: httpClient})
	if err != nil {
		t.Fatal(err)
	}
	return wsClient(t, c)
}

// wsClient is the client of an open WebSocket.
func wsClient(t *testing.T, c *websocket.Conn) *client {
	c.SetReadLimit(64 << 20)
	cl := &client{t: t, close: func() { _ = c.CloseNow() }}
	cl.write = func(frame []byte) error {
		ctx, cancel := context.WithTimeout(context.Background(), readTimeout)
		defer cancel()
		return c.Write(ctx, websocket.MessageBinary, frame)
	}
	cl.read = func(timeout time.Duration) ([]byte, error) {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		typ, b, err := c.Read(ctx)
		if err != nil {
			return nil, err
		}
		if typ != websocket.MessageBinary {
			return nil, errors.New("server sent a text message")
		}
		return b, nil
	}
	cl.writeText = func(s string) error {
		ctx, cancel := context.WithTimeout(context.Background(), readTimeout)
		defer cancel()
		return c.Write(ctx, websocket.MessageText, []byte(s))
	}
	t.Cleanup(cl.close)
	return cl
}

// send encodes and writes f.
func (c *client) send(f *parleyv1.Frame) {
	c.t.Helper()
	b, err := wire.Marshal(f)
	if err != nil {
		c.t.Fatal(err)
	}
	if err := c.write(b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// recv returns the next frame (stashed ones first).
func (c *client) recv() *parleyv1.Frame {
	c.t.Helper()
	if len(c.stash) > 0 {
		f := c.stash[0]
		c.stash = c.stash[1:]
		return f
	}
	return c.recvWire()
}

func (c *client) recvWire() *parleyv1.Frame {
	c.t.Helper()
	b, err := c.read(readTimeout)
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	f, err := wire.Decode(b)
	if err != nil {
		c.t.Fatalf("decode a server frame: %v", err)
	}
	return f
}

// waitFor returns the first frame matching pred, keeping the others (in
// order) for later recv calls.
func (c *client) waitFor(what string, pred func(*parleyv1.Frame) bool) *parleyv1.Frame {
	c.t.Helper()
	for i, f := range c.stash {
		if pred(f) {
			c.stash = append(c.stash[:i:i], c.stash[i+1:]...)
			return f
		}
	}
	deadline := time.Now().Add(readTimeout)
	for time.Now().Before(deadline) {
		f := c.recvWire()
		if pred(f) {
			return f
		}
		c.stash = append(c.stash, f)
	}
	c.t.Fatalf("no %s within %s", what, readTimeout)
	return nil
}

// request sends a request with a fresh id and returns its reply.
func (c *client) request(f *parleyv1.Frame) *parleyv1.Frame {
	c.t.Helper()
	c.nextID++
	f.RequestId = c.nextID
	c.send(f)
	id := c.nextID
	return c.waitFor("reply", func(r *parleyv1.Frame) bool { return r.GetRequestId() == id })
}

func (c *client) hello() *parleyv1.Welcome {
	c.t.Helper()
	r := c.request(&parleyv1.Frame{Body: &parleyv1.Frame_Hello{Hello: &parleyv1.Hello{Versions: []uint32{1}, Client: "gateway-test"}}})
	if r.GetWelcome() == nil {
		c.t.Fatalf("Hello answered with %v", r)
	}
	return r.GetWelcome()
}

func loginFrame(username, password string, opts *parleyv1.ClientOptions) *parleyv1.Frame {
	return &parleyv1.Frame{Body: &parleyv1.Frame_Login{Login: &parleyv1.LoginRequest{Username: username, Password: password, Options: opts}}}
}

// login performs Hello (if needed) and a successful Login.
func (c *client) login(username string, opts *parleyv1.ClientOptions) *parleyv1.Session {
	c.t.Helper()
	if c.nextID == 0 {
		c.hello()
	}
	r := c.request(loginFrame(username, "secret", opts))
	if r.GetSession() == nil {
		c.t.Fatalf("login %s: %v", username, r)
	}
	return r.GetSession()
}

// snapshot reads PresenceSnapshot frames up to the one with last=true.
func (c *client) snapshot() (users []*parleyv1.OnlineUser, frames []*parleyv1.PresenceSnapshot) {
	c.t.Helper()
	for {
		f := c.waitFor("presence snapshot", func(f *parleyv1.Frame) bool { return f.GetPresenceSnapshot() != nil })
		s := f.GetPresenceSnapshot()
		frames = append(frames, s)
		users = append(users, s.GetUsers()...)
		if s.GetLast() {
			return users, frames
		}
	}
}

// change waits for a PresenceChange about username.
func (c *client) change(username string, online bool) *parleyv1.PresenceChange {
	c.t.Helper()
	f := c.waitFor("presence change for "+username, func(f *parleyv1.Frame) bool {
		ch := f.GetPresenceChange()
		return ch != nil && ch.GetUser().GetUsername() == username && ch.GetOnline() == online
	})
	return f.GetPresenceChange()
}

func (c *client) ping(nonce uint64) {
	c.t.Helper()
	r := c.request(&parleyv1.Frame{Body: &parleyv1.Frame_Ping{Ping: &parleyv1.Ping{Nonce: nonce}}})
	if r.GetPong().GetNonce() != nonce {
		c.t.Fatalf("Ping %d answered with %v", nonce, r)
	}
}

// expectError reads frames until an Error and checks its code and fatality.
func (c *client) expectError(code parleyv1.ErrorCode, fatal bool) *parleyv1.Frame {
	c.t.Helper()
	f := c.waitFor("error "+code.String(), func(f *parleyv1.Frame) bool { return f.GetError() != nil })
	if got := f.GetError(); got.GetCode() != code || got.GetFatal() != fatal {
		c.t.Fatalf("got error %v fatal=%v (%q), want %v fatal=%v", got.GetCode(), got.GetFatal(), got.GetMessage(), code, fatal)
	}
	return f
}

// expectClosed reads until the server closes the connection; it fails if
// the connection stays open for readTimeout.
func (c *client) expectClosed() {
	c.t.Helper()
	for {
		_, err := c.read(readTimeout)
		if err == nil {
			continue
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, context.DeadlineExceeded) {
			c.t.Fatalf("connection still open after %s", readTimeout)
		}
		return // EOF, reset or a WebSocket close
	}
}
