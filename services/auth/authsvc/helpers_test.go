package authsvc_test

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/parleychat/parley/libs/proto/internalv1"
	"github.com/parleychat/parley/libs/rpc"
	"github.com/parleychat/parley/libs/service"
	"github.com/parleychat/parley/libs/subject"
	"github.com/parleychat/parley/libs/testenv"
	"github.com/parleychat/parley/protocol/errcode"
	"github.com/parleychat/parley/protocol/parleyv1"
	"github.com/parleychat/parley/services/auth/authsvc"
)

// fastConfig is the default configuration with tiny argon2 parameters so
// tests stay quick; one test uses the real defaults.
func fastConfig() authsvc.Config {
	c := authsvc.DefaultConfig()
	c.Argon2Memory, c.Argon2Time, c.Argon2Threads = 64, 1, 1
	return c
}

// clock is a settable time source, safe for concurrent use.
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(time.Now().UnixNano())
	return c
}
func (c *clock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// instance is one running auth replica.
type instance struct {
	svc  *authsvc.Service
	reg  *prometheus.Registry
	stop func() // cancels Run and waits for it
}

// startAuth runs an auth replica on its own connection to the server at
// url until the test ends (or stop is called), and waits until it serves.
func startAuth(t testing.TB, url string, cfg authsvc.Config) *instance {
	t.Helper()
	return startAuthClock(t, url, cfg, nil)
}

// startAuthClock is startAuth with the time source now (nil: time.Now).
func startAuthClock(t testing.TB, url string, cfg authsvc.Config, now func() time.Time) *instance {
	t.Helper()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelError}))
	svc, err := authsvc.New(cfg, service.Deps{NC: nc, Log: log, Registry: reg, Clock: now})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	var stopped atomic.Bool
	stop := func() {
		if stopped.Swap(true) {
			return
		}
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("Run: %v", err)
		}
		nc.Close()
	}
	t.Cleanup(stop)
	testenv.Eventually(t, 10*time.Second, "auth ready", func() bool { return svc.Ready() == nil })
	return &instance{svc: svc, reg: reg, stop: stop}
}

// gatewayHeader is what the gateway sends with a client's auth request:
// the client's address and the connection's name (testGateway, testConn).
func gatewayHeader(remote string) nats.Header {
	h := nats.Header{}
	h.Set(subject.HeaderRemoteAddr, remote)
	h.Set(subject.HeaderGatewayID, testGateway)
	h.Set(subject.HeaderConnID, testConn)
	return h
}

const (
	clientAddr  = "192.0.2.10:50000"
	testGateway = "gw-test"
	testConn    = "c1"
)

// The calls below are exactly what the gateway does: rpc.Request with the
// client's request message as body.

func register(nc *nats.Conn, from, user, pw string) (*parleyv1.Session, error) {
	var reply internalv1.AuthReply
	err := rpc.Request(context.Background(), nc, subject.AuthRegister, gatewayHeader(from),
		&parleyv1.RegisterRequest{Username: user, Password: pw, Options: &parleyv1.ClientOptions{Device: "test"}}, &reply)
	return reply.Session, err
}

func login(nc *nats.Conn, from, user, pw string) (*parleyv1.Session, error) {
	var reply internalv1.AuthReply
	err := rpc.Request(context.Background(), nc, subject.AuthLogin, gatewayHeader(from),
		&parleyv1.LoginRequest{Username: user, Password: pw}, &reply)
	return reply.Session, err
}

func resume(nc *nats.Conn, tok string) (*parleyv1.Session, error) {
	return resumeWith(nc, gatewayHeader(clientAddr), tok)
}

// resumeWith resumes with the given gateway headers.
func resumeWith(nc *nats.Conn, h nats.Header, tok string) (*parleyv1.Session, error) {
	var reply internalv1.AuthReply
	err := rpc.Request(context.Background(), nc, subject.AuthResume, h, &parleyv1.ResumeRequest{Token: tok}, &reply)
	return reply.Session, err
}

func logout(nc *nats.Conn, userID, sessionID string) error {
	return logoutWith(nc, gatewayHeader(clientAddr), userID, sessionID)
}

// logoutWith logs out with the given gateway headers plus the session's.
func logoutWith(nc *nats.Conn, h nats.Header, userID, sessionID string) error {
	h.Set(subject.HeaderUserID, userID)
	h.Set(subject.HeaderSessionID, sessionID)
	return rpc.Request(context.Background(), nc, subject.AuthLogout, h, &parleyv1.LogoutRequest{}, nil)
}

func mustRegister(t testing.TB, nc *nats.Conn, user, pw string) *parleyv1.Session {
	t.Helper()
	s, err := register(nc, clientAddr, user, pw)
	if err != nil {
		t.Fatalf("register %s: %v", user, err)
	}
	return s
}

// wantCode fails unless err is a wire error with code.
func wantCode(t testing.TB, err error, code parleyv1.ErrorCode) *errcode.Error {
	t.Helper()
	if err == nil {
		t.Fatalf("got success, want %s", errcode.ShortName(code))
	}
	var e *errcode.Error
	if !errors.As(err, &e) || e.Code != code {
		t.Fatalf("got %v, want %s", err, errcode.ShortName(code))
	}
	return e
}

// metricValue sums a counter (or a histogram's sample count) over the
// series whose labels include the given ones.
func metricValue(t testing.TB, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			for k, v := range labels {
				if have[k] != v {
					continue series
				}
			}
			switch {
			case m.Counter != nil:
				sum += m.Counter.GetValue()
			case m.Histogram != nil:
				sum += float64(m.Histogram.GetSampleCount())
			default:
				t.Fatalf("metric %s: unsupported type", name)
			}
		}
	}
	return sum
}

func testenvConnectURL(t testing.TB, url string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}
