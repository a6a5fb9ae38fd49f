package server_test

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/parleychat/parley/gateway/server"
	"github.com/parleychat/parley/libs/subject"
	"github.com/parleychat/parley/libs/testenv"
	"github.com/parleychat/parley/protocol/parleyv1"
)

// Direct sessions (docs/protocol.md §20): the device key requests, the
// rendezvous's requests and the relay, against the stand-ins of
// standin_p2p_test.go.

// p2pEnv is a gateway with a stand-in rendezvous.
type p2pEnv struct {
	*env
	rv *standInRendezvous
}

func startP2PGateway(t *testing.T, mutate func(*server.Config)) *p2pEnv {
	t.Helper()
	e := startGateway(t, mutate)
	return &p2pEnv{env: e, rv: startStandInRendezvous(t, e.nc)}
}

// loginP2P connects a client to g and logs username in.
func loginP2P(t *testing.T, g *env, username string) *client {
	t.Helper()
	cl := dialTCP(t, g)
	cl.login(username, &parleyv1.ClientOptions{SkipPresenceFeed: true})
	return cl
}

func (c *client) p2pOpen(to string) *parleyv1.Frame {
	c.t.Helper()
	return c.request(&parleyv1.Frame{Body: &parleyv1.Frame_P2POpen{P2POpen: &parleyv1.P2POpenRequest{ToUsername: to, DeviceId: "d1"}}})
}

// openSession has from open a session to to's user and to accept it; it
// returns the session id.
func openSession(t *testing.T, from, to *client, toName string) string {
	t.Helper()
	r := from.p2pOpen(toName)
	s := r.GetP2PSession()
	if s.GetState() != parleyv1.P2PSession_STATE_OFFERED || s.GetSide() != "a" {
		t.Fatalf("p2p_open answered %v", r)
	}
	r = to.request(&parleyv1.Frame{Body: &parleyv1.Frame_P2PAnswer{P2PAnswer: &parleyv1.P2PAnswerRequest{SessionId: s.GetSessionId(), Accept: true, DeviceId: "d2"}}})
	if a := r.GetP2PSession(); a.GetState() != parleyv1.P2PSession_STATE_ACCEPTED || a.GetSide() != "b" || a.GetSessionId() != s.GetSessionId() {
		t.Fatalf("p2p_answer answered %v", r)
	}
	return s.GetSessionId()
}

func (c *client) relay(id string, pkt []byte) {
	c.t.Helper()
	c.send(&parleyv1.Frame{Body: &parleyv1.Frame_P2PRelay{P2PRelay: &parleyv1.P2PRelay{SessionId: id, Packet: pkt}}})
}

// recvRelay waits for the next p2p_relay frame.
func (c *client) recvRelay() *parleyv1.P2PRelay {
	c.t.Helper()
	f := c.waitFor("p2p_relay frame", func(f *parleyv1.Frame) bool { return f.GetP2PRelay() != nil })
	if f.GetRequestId() != 0 {
		c.t.Fatalf("p2p_relay frame with request_id %d", f.GetRequestId())
	}
	return f.GetP2PRelay()
}

// noRelay fails if a p2p_relay frame arrives before the answer to a Ping
// (so far as the connection has read).
func (c *client) noRelay() {
	c.t.Helper()
	c.ping(77)
	for _, f := range c.stash {
		if f.GetP2PRelay() != nil {
			c.t.Fatalf("unexpected p2p_relay frame %v", f)
		}
	}
}

// wantError fails unless f is a non-fatal Error with code.
func wantError(t *testing.T, f *parleyv1.Frame, code parleyv1.ErrorCode) {
	t.Helper()
	if e := f.GetError(); e.GetCode() != code || e.GetFatal() {
		t.Fatalf("got %v, want a non-fatal %v", f, code)
	}
}

func (e *env) relayDrops(reason string) float64 {
	return e.metric("parley_gateway_p2p_relay_drops_total", map[string]string{"reason": reason})
}

func (e *env) waitRelayDrops(t *testing.T, reason string, n float64) {
	t.Helper()
	testenv.Eventually(t, readTimeout, fmt.Sprintf("%v p2p relay drops for %s (have %v)", n, reason, e.relayDrops(reason)),
		func() bool { return e.relayDrops(reason) >= n })
}

// relayed is a gateway's count of relayed packets in direction ("up",
// "down").
func (e *env) relayed(direction string) float64 {
	return e.metric("parley_gateway_p2p_relay_packets_total", map[string]string{"direction": direction})
}

func (e *env) relaySessions() float64 { return e.metric("parley_gateway_p2p_relay_sessions", nil) }

// interest reports whether anything on e's NATS server subscribes subj.
func (e *env) interest(subj string) bool { return e.ns.GlobalAccount().SubscriptionInterest(subj) }

// TestDeviceKeysForwarded: register_device and device_keys reach auth
// unchanged with who asks in the headers, and its replies and errors
// come back.
func TestDeviceKeysForwarded(t *testing.T) {
	e := startP2PGateway(t, nil)
	cl := loginP2P(t, e.env, "alice")
	key := bytes.Repeat([]byte{7}, 32)
	req := &parleyv1.RegisterDeviceRequest{PublicKey: key, Name: "laptop"}
	r := cl.request(&parleyv1.Frame{Body: &parleyv1.Frame_RegisterDevice{RegisterDevice: req}})
	want := &parleyv1.DeviceKeysReply{UserId: "u-alice", Username: "alice",
		Devices: []*parleyv1.DeviceKey{{DeviceId: "d-alice", PublicKey: key, Name: "laptop"}}}
	if !proto.Equal(r.GetDeviceKeysReply(), want) {
		t.Fatalf("register_device answered %v", r)
	}
	calls := e.rv.requests(subject.AuthDeviceRegister)
	if len(calls) != 1 {
		t.Fatalf("%d register requests", len(calls))
	}
	h := calls[0].header
	if h.Get(subject.HeaderUserID) != "u-alice" || h.Get(subject.HeaderUsername) != "alice" || h.Get(subject.HeaderSessionID) == "" ||
		h.Get(subject.HeaderGatewayID) != "gw-test" || h.Get(subject.HeaderConnID) == "" {
		t.Fatalf("headers %v", h)
	}
	var got parleyv1.RegisterDeviceRequest
	if err := proto.Unmarshal(calls[0].data, &got); err != nil || !proto.Equal(&got, req) {
		t.Fatalf("auth got %v (%v), want %v", &got, err, req)
	}

	r = cl.request(&parleyv1.Frame{Body: &parleyv1.Frame_DeviceKeys{DeviceKeys: &parleyv1.DeviceKeysRequest{Username: "bob"}}})
	if !proto.Equal(r.GetDeviceKeysReply(), &parleyv1.DeviceKeysReply{UserId: "u-bob", Username: "bob"}) {
		t.Fatalf("device_keys answered %v", r)
	}
	wantError(t, cl.request(&parleyv1.Frame{Body: &parleyv1.Frame_DeviceKeys{DeviceKeys: &parleyv1.DeviceKeysRequest{Username: "nobody"}}}),
		parleyv1.ErrorCode_ERROR_CODE_NOT_FOUND)

	anon := dialTCP(t, e.env)
	anon.hello()
	wantError(t, anon.request(&parleyv1.Frame{Body: &parleyv1.Frame_RegisterDevice{RegisterDevice: req}}),
		parleyv1.ErrorCode_ERROR_CODE_UNAUTHENTICATED)
	if n := len(e.rv.requests(subject.AuthDeviceRegister)); n != 1 {
		t.Fatalf("%d register requests reached auth, want 1", n)
	}
}

// TestP2PRelayTwoGateways: alice on one gateway opens a session to bob on
// another; once both are attached, their packets cross in both
// directions, in order, as p2p_relay frames with the session's id.
func TestP2PRelayTwoGateways(t *testing.T) {
	e1 := startP2PGateway(t, nil)
	e2 := e1.replica("gw-two", nil)
	alice, bob := loginP2P(t, e1.env, "alice"), loginP2P(t, e2, "bob")
	id := openSession(t, alice, bob, "bob")
	for _, g := range []*env{e1.env, e2} {
		if n := g.relaySessions(); n != 1 {
			t.Fatalf("%v sessions attached on a gateway, want 1", n)
		}
	}
	if !e1.interest(subject.P2PRelay(id, "a")) || !e1.interest(subject.P2PRelay(id, "b")) {
		t.Fatal("the sides are not subscribed")
	}
	big := bytes.Repeat([]byte{0xc0}, 1500)
	for i := range 3 {
		alice.relay(id, fmt.Appendf(nil, "a%d", i))
		bob.relay(id, fmt.Appendf(nil, "b%d", i))
	}
	alice.relay(id, big)
	for _, tc := range []struct {
		to   *client
		from string
	}{{bob, "a"}, {alice, "b"}} {
		for i := range 3 {
			if got := tc.to.recvRelay(); got.GetSessionId() != id || string(got.GetPacket()) != fmt.Sprint(tc.from, i) {
				t.Fatalf("got %v, want %s%d of %s", got, tc.from, i, id)
			}
		}
	}
	if got := bob.recvRelay(); !bytes.Equal(got.GetPacket(), big) {
		t.Fatalf("the 1500-byte packet arrived as %d bytes", len(got.GetPacket()))
	}
	// A packet is counted just after it is published or queued for the
	// client, so the client may read it first: wait for the counts.
	upBytes := func() float64 {
		return e1.metric("parley_gateway_p2p_relay_bytes_total", map[string]string{"direction": "up"})
	}
	testenv.Eventually(t, readTimeout, "alice's gateway counts 4 packets (1506 bytes) up, bob's 4 down", func() bool {
		return e1.relayed("up") == 4 && e2.relayed("down") == 4 && upBytes() == 1506
	})
	alice.ping(1) // anything counted late would be by now
	if up, down, n := e1.relayed("up"), e2.relayed("down"), upBytes(); up != 4 || down != 4 || n != 1506 {
		t.Fatalf("alice's gateway relayed %v packets (%v bytes) up, bob's %v down; want 4 (1506), 4", up, n, down)
	}
	// A declined offer attaches nothing.
	r := bob.p2pOpen("alice")
	declined := r.GetP2PSession().GetSessionId()
	r = alice.request(&parleyv1.Frame{Body: &parleyv1.Frame_P2PAnswer{P2PAnswer: &parleyv1.P2PAnswerRequest{SessionId: declined}}})
	if r.GetP2PSession().GetState() != parleyv1.P2PSession_STATE_CLOSED {
		t.Fatalf("decline answered %v", r)
	}
	if e1.relaySessions() != 1 {
		t.Fatalf("%v sessions on alice's gateway after declining, want 1", e1.relaySessions())
	}
}

// TestP2PRelayDrops: packets for a session not attached to the sending
// connection (unknown, another connection's, before login), empty or
// above 1500 bytes are dropped and counted, never answered.
func TestP2PRelayDrops(t *testing.T) {
	e := startP2PGateway(t, nil)
	alice, bob := loginP2P(t, e.env, "alice"), loginP2P(t, e.env, "bob")
	id := openSession(t, alice, bob, "bob")
	alice2 := loginP2P(t, e.env, "alice") // alice's other device: not attached
	anon := dialTCP(t, e.env)
	anon.hello()

	alice.relay("p999", []byte("unknown session"))
	alice2.relay(id, []byte("not this connection's"))
	anon.relay(id, []byte("no session"))
	e.waitRelayDrops(t, "unattached", 3)
	alice.relay(id, nil)
	alice.relay(id, make([]byte, 1501))
	e.waitRelayDrops(t, "size", 2)
	alice.relay(id, []byte("after"))
	if got := bob.recvRelay(); string(got.GetPacket()) != "after" {
		t.Fatalf("bob got %q first, want the only packet relayed", got.GetPacket())
	}
	for _, c := range []*client{alice, alice2, anon} {
		c.noRelay()
		for _, f := range c.stash {
			if f.GetError() != nil {
				t.Fatalf("a dropped packet was answered: %v", f)
			}
		}
	}
	if n := e.metric("parley_gateway_errors_sent_total", nil); n != 0 {
		t.Fatalf("%v errors sent", n)
	}
}

// TestP2PRelayRate: a connection relays -p2p-relay-burst bytes at once,
// then -p2p-relay-rate bytes a second; the rest is dropped before the
// bus.
func TestP2PRelayRate(t *testing.T) {
	e := startP2PGateway(t, func(c *server.Config) { c.P2PRelayRate, c.P2PRelayBurst = 1, 5000 })
	alice, bob := loginP2P(t, e.env, "alice"), loginP2P(t, e.env, "bob")
	id := openSession(t, alice, bob, "bob")
	for i := range 10 {
		pkt := bytes.Repeat([]byte{byte(i)}, 1000)
		alice.relay(id, pkt)
	}
	e.waitRelayDrops(t, "rate", 5)
	if up := e.relayed("up"); up != 5 {
		t.Fatalf("%v packets relayed, want the burst's 5", up)
	}
	for i := range 5 {
		if got := bob.recvRelay(); len(got.GetPacket()) != 1000 || got.GetPacket()[0] != byte(i) {
			t.Fatalf("packet %d: %d bytes of %d", i, len(got.GetPacket()), got.GetPacket()[0])
		}
	}
	// Bob's own allowance is his.
	bob.relay(id, make([]byte, 1000))
	alice.recvRelay()
}

// TestP2PRelayDetach: a session's relay leaves a connection when its
// p2p_close is answered, when a P2PEvent{CLOSED} for it arrives, and when
// the connection ends: no more packets, no subscription.
func TestP2PRelayDetach(t *testing.T) {
	t.Run("close reply", func(t *testing.T) {
		e := startP2PGateway(t, nil)
		e.rv.setQuietClose(true) // no CLOSED events: the reply alone
		alice, bob := loginP2P(t, e.env, "alice"), loginP2P(t, e.env, "bob")
		id := openSession(t, alice, bob, "bob")
		r := alice.request(&parleyv1.Frame{Body: &parleyv1.Frame_P2PClose{P2PClose: &parleyv1.P2PCloseRequest{SessionId: id}}})
		if r.GetOk() == nil {
			t.Fatalf("p2p_close answered %v", r)
		}
		if n := e.relaySessions(); n != 1 {
			t.Fatalf("%v sessions attached after alice's close, want bob's 1", n)
		}
		testenv.Eventually(t, readTimeout, "alice's side unsubscribed", func() bool { return !e.interest(subject.P2PRelay(id, "a")) })
		bob.relay(id, []byte("late"))
		testenv.Eventually(t, readTimeout, "bob's packet published", func() bool { return e.relayed("up") == 1 })
		alice.noRelay()
		alice.relay(id, []byte("late too"))
		e.waitRelayDrops(t, "unattached", 1)
		// Closing it again: NOT_FOUND, and nothing changes.
		wantError(t, alice.request(&parleyv1.Frame{Body: &parleyv1.Frame_P2PClose{P2PClose: &parleyv1.P2PCloseRequest{SessionId: id}}}),
			parleyv1.ErrorCode_ERROR_CODE_NOT_FOUND)
	})
	t.Run("closed event", func(t *testing.T) {
		e := startP2PGateway(t, nil)
		alice, bob := loginP2P(t, e.env, "alice"), loginP2P(t, e.env, "bob")
		id := openSession(t, alice, bob, "bob")
		// Another session's CLOSED leaves this one attached.
		e.rv.publishEvent("u-alice", &parleyv1.P2PEvent{Kind: parleyv1.P2PEvent_KIND_CLOSED, Session: &parleyv1.P2PSession{SessionId: "p777"}})
		alice.waitFor("the other session's CLOSED", func(f *parleyv1.Frame) bool { return f.GetP2PEvent() != nil })
		if n := e.relaySessions(); n != 2 {
			t.Fatalf("%v sessions attached, want 2", n)
		}
		// Bob closes: both users get CLOSED, both sides detach.
		if r := bob.request(&parleyv1.Frame{Body: &parleyv1.Frame_P2PClose{P2PClose: &parleyv1.P2PCloseRequest{SessionId: id}}}); r.GetOk() == nil {
			t.Fatalf("p2p_close answered %v", r)
		}
		f := alice.waitFor("CLOSED", func(f *parleyv1.Frame) bool { return f.GetP2PEvent() != nil })
		if ev := f.GetP2PEvent(); ev.GetKind() != parleyv1.P2PEvent_KIND_CLOSED || ev.GetSession().GetSessionId() != id || f.GetRequestId() != 0 {
			t.Fatalf("alice got %v", f)
		}
		if n := e.relaySessions(); n != 0 {
			t.Fatalf("%v sessions attached after the CLOSED events, want 0", n)
		}
		testenv.Eventually(t, readTimeout, "both sides unsubscribed", func() bool {
			return !e.interest(subject.P2PRelay(id, "a")) && !e.interest(subject.P2PRelay(id, "b"))
		})
		alice.relay(id, []byte("late"))
		e.waitRelayDrops(t, "unattached", 1)
	})
	t.Run("connection close", func(t *testing.T) {
		e := startP2PGateway(t, nil)
		alice, bob := loginP2P(t, e.env, "alice"), loginP2P(t, e.env, "bob")
		id := openSession(t, alice, bob, "bob")
		alice.close()
		testenv.Eventually(t, readTimeout, "alice's side unsubscribed", func() bool {
			return !e.interest(subject.P2PRelay(id, "a")) && e.relaySessions() == 1
		})
		// The session lives on: after a reconnect p2p_update attaches it
		// to the new connection.
		again := loginP2P(t, e.env, "alice")
		r := again.request(&parleyv1.Frame{Body: &parleyv1.Frame_P2PUpdate{P2PUpdate: &parleyv1.P2PUpdateRequest{SessionId: id, DeviceId: "d1"}}})
		if r.GetP2PSession().GetSide() != "a" {
			t.Fatalf("p2p_update answered %v", r)
		}
		bob.relay(id, []byte("hello again"))
		if got := again.recvRelay(); string(got.GetPacket()) != "hello again" {
			t.Fatalf("got %q", got.GetPacket())
		}
		// Logging out detaches too.
		if r := again.request(&parleyv1.Frame{Body: &parleyv1.Frame_Logout{Logout: &parleyv1.LogoutRequest{}}}); r.GetOk() == nil {
			t.Fatalf("logout answered %v", r)
		}
		if n := e.relaySessions(); n != 1 {
			t.Fatalf("%v sessions attached after logout, want bob's 1", n)
		}
	})
}

// TestP2PSessionLimit: a connection relays at most 8 sessions; a request
// for a ninth is refused before it reaches the rendezvous, one about an
// attached session is not, and closing one frees its place.
func TestP2PSessionLimit(t *testing.T) {
	e := startP2PGateway(t, nil)
	alice := loginP2P(t, e.env, "alice")
	var ids []string
	for i := range 8 {
		r := alice.p2pOpen(fmt.Sprint("user", i))
		if r.GetP2PSession() == nil {
			t.Fatalf("open %d: %v", i, r)
		}
		ids = append(ids, r.GetP2PSession().GetSessionId())
	}
	wantError(t, alice.p2pOpen("user8"), parleyv1.ErrorCode_ERROR_CODE_QUOTA_EXCEEDED)
	if n := len(e.rv.requests(subject.P2POpen)); n != 8 {
		t.Fatalf("%d opens reached the rendezvous, want 8", n)
	}
	if r := alice.request(&parleyv1.Frame{Body: &parleyv1.Frame_P2PUpdate{P2PUpdate: &parleyv1.P2PUpdateRequest{SessionId: ids[3]}}}); r.GetP2PSession() == nil {
		t.Fatalf("update of an attached session: %v", r)
	}
	if r := alice.request(&parleyv1.Frame{Body: &parleyv1.Frame_P2PClose{P2PClose: &parleyv1.P2PCloseRequest{SessionId: ids[0]}}}); r.GetOk() == nil {
		t.Fatalf("close: %v", r)
	}
	if r := alice.p2pOpen("user8"); r.GetP2PSession() == nil {
		t.Fatalf("open after a close: %v", r)
	}
}

// TestP2PRelayOff: with -p2p-relay-rate 0 the requests still pass, but
// nothing is attached and p2p_relay frames are dropped.
func TestP2PRelayOff(t *testing.T) {
	e := startP2PGateway(t, func(c *server.Config) { c.P2PRelayRate = 0 })
	alice, bob := loginP2P(t, e.env, "alice"), loginP2P(t, e.env, "bob")
	id := openSession(t, alice, bob, "bob")
	if e.interest(subject.P2PRelay(id, "a")) || e.interest(subject.P2PRelay(id, "b")) {
		t.Fatal("a side is subscribed with the relay off")
	}
	alice.relay(id, []byte("x"))
	e.waitRelayDrops(t, "disabled", 1)
	alice.noRelay()
}

// TestP2PEvent: a P2PEvent published on a user's subject reaches each of
// the user's connections, on every gateway, as p2p_event.
func TestP2PEvent(t *testing.T) {
	e1 := startP2PGateway(t, nil)
	e2 := e1.replica("gw-two", nil)
	a1, a2 := loginP2P(t, e1.env, "alice"), loginP2P(t, e2, "alice")
	ev := &parleyv1.P2PEvent{Kind: parleyv1.P2PEvent_KIND_OFFER, Session: &parleyv1.P2PSession{
		SessionId: "p5", State: parleyv1.P2PSession_STATE_OFFERED, PeerId: "u-bob", PeerName: "bob", PeerIsFriend: true,
		ExpiresAtUnixMs: time.Now().Add(time.Minute).UnixMilli()}}
	e1.rv.publishEvent("u-alice", ev)
	for _, c := range []*client{a1, a2} {
		f := c.waitFor("p2p event", func(f *parleyv1.Frame) bool { return f.GetP2PEvent() != nil })
		if !proto.Equal(f.GetP2PEvent(), ev) || f.GetRequestId() != 0 {
			t.Fatalf("got %v, want %v", f, ev)
		}
	}
}

// TestWelcomeSTUNAddr: -stun-addr is what Welcome.stun_addr says; the
// direct session flags are validated.
func TestWelcomeSTUNAddr(t *testing.T) {
	e := startGateway(t, func(c *server.Config) { c.STUNAddr = "stun.example.com:3478" })
	if got := dialTCP(t, e).hello().GetStunAddr(); got != "stun.example.com:3478" {
		t.Fatalf("stun_addr %q", got)
	}
	if got := dialTCP(t, startGateway(t, nil)).hello().GetStunAddr(); got != "" {
		t.Fatalf("stun_addr %q without -stun-addr", got)
	}
	for _, tt := range []struct {
		name   string
		mutate func(*server.Config)
		want   error
	}{
		{"stun addr without port", func(c *server.Config) { c.STUNAddr = "stun.example.com" }, server.ErrUDPAddr},
		{"stun addr port 0", func(c *server.Config) { c.STUNAddr = "stun.example.com:0" }, server.ErrUDPAddr},
		{"stun addr without host", func(c *server.Config) { c.STUNAddr = ":3478" }, server.ErrUDPAddr},
		{"negative relay rate", func(c *server.Config) { c.P2PRelayRate = -1 }, server.ErrInvalidLimit},
		{"burst below a packet", func(c *server.Config) { c.P2PRelayBurst = 1499 }, server.ErrInvalidLimit},
	} {
		cfg := testConfig()
		tt.mutate(&cfg)
		if err := cfg.Validate(); !errors.Is(err, tt.want) {
			t.Errorf("%s: Validate() = %v, want %v", tt.name, err, tt.want)
		}
	}
	for _, ok := range []func(*server.Config){
		func(c *server.Config) { c.STUNAddr = "[2001:db8::1]:3478" },
		func(c *server.Config) { c.STUNAddr = "192.0.2.1:3478" },
		func(c *server.Config) { c.P2PRelayRate, c.P2PRelayBurst = 0, 0 }, // relay off: no burst needed
	} {
		cfg := testConfig()
		ok(&cfg)
		if err := cfg.Validate(); err != nil {
			t.Errorf("Validate() = %v", err)
		}
	}
}
