package server_test

import (
	"encoding/binary"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/parleychat/parley/gateway/server"
	"github.com/parleychat/parley/protocol/parleyv1"
)

func TestHandshake(t *testing.T) {
	e := startGateway(t, nil)
	c := dialTCP(t, e)
	c.nextID = 41
	w := c.hello()
	want := &parleyv1.Welcome{
		Version:             1,
		Server:              "parley-gateway/" + server.Version,
		GatewayId:           "gw-test",
		MaxFrameSize:        1 << 20,
		HeartbeatIntervalMs: 30000,
		IdleTimeoutMs:       90000,
	}
	if w.String() != want.String() {
		t.Fatalf("Welcome = %v, want %v", w, want)
	}
	c.ping(7)
}

func TestHandshakeFailures(t *testing.T) {
	e := startGateway(t, func(c *server.Config) { c.HandshakeTimeout = 300 * time.Millisecond })
	tests := []struct {
		name      string
		first     *parleyv1.Frame // nil: send nothing
		code      parleyv1.ErrorCode
		requestID uint32
	}{
		{
			name:      "only version 2",
			first:     &parleyv1.Frame{RequestId: 5, Body: &parleyv1.Frame_Hello{Hello: &parleyv1.Hello{Versions: []uint32{2}}}},
			code:      parleyv1.ErrorCode_ERROR_CODE_UNSUPPORTED_VERSION,
			requestID: 5,
		},
		{
			name:  "no versions",
			first: &parleyv1.Frame{RequestId: 1, Body: &parleyv1.Frame_Hello{Hello: &parleyv1.Hello{}}},
			code:  parleyv1.ErrorCode_ERROR_CODE_UNSUPPORTED_VERSION, requestID: 1,
		},
		{
			name:  "login before hello",
			first: loginFrame("alice", "secret", nil),
			code:  parleyv1.ErrorCode_ERROR_CODE_HANDSHAKE_REQUIRED,
		},
		{
			name:  "ping before hello",
			first: &parleyv1.Frame{RequestId: 1, Body: &parleyv1.Frame_Ping{Ping: &parleyv1.Ping{}}},
			code:  parleyv1.ErrorCode_ERROR_CODE_HANDSHAKE_REQUIRED,
		},
		{
			name: "silence",
			code: parleyv1.ErrorCode_ERROR_CODE_HANDSHAKE_REQUIRED,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := dialTCP(t, e)
			if tt.first != nil {
				c.send(tt.first)
			}
			f := c.expectError(tt.code, true)
			if f.GetRequestId() != tt.requestID {
				t.Errorf("request_id = %d, want %d", f.GetRequestId(), tt.requestID)
			}
			if tt.code == parleyv1.ErrorCode_ERROR_CODE_UNSUPPORTED_VERSION && !strings.Contains(f.GetError().GetMessage(), "[1]") {
				t.Errorf("message %q does not list the supported versions", f.GetError().GetMessage())
			}
			c.expectClosed()
		})
	}
	if n := e.metric("parley_gateway_handshake_failures_total", nil); n != float64(len(tests)) {
		t.Errorf("handshake failures metric = %v, want %d", n, len(tests))
	}
}

// Hand-built frames: protobuf marshalling refuses to produce strings that
// are not UTF-8, so these are assembled field by field.

// rawFrame is Frame{request_id: id, <body field>: body}.
func rawFrame(id uint32, body protowire.Number, fields ...[]byte) []byte {
	var f []byte
	f = protowire.AppendTag(f, 1, protowire.VarintType)
	f = protowire.AppendVarint(f, uint64(id))
	f = protowire.AppendTag(f, body, protowire.BytesType)
	return protowire.AppendBytes(f, slices.Concat(fields...))
}

// rawField is one length-delimited field: a string or a nested message.
func rawField(num protowire.Number, v []byte) []byte {
	return protowire.AppendBytes(protowire.AppendTag(nil, num, protowire.BytesType), v)
}

var notUTF8 = []byte("al\xffice")

// TestInvalidUTF8: a request whose strings are not UTF-8, at any depth, is
// answered INVALID_UTF8 (non-fatal) with its own request_id, on every
// transport; an undecodable frame whose request_id can be read gets
// BAD_FRAME with that id. Nothing in such a frame is acted upon.
func TestInvalidUTF8(t *testing.T) {
	e := startGateway(t, nil)
	const (
		register = 10
		login    = 11
		resume   = 12
		send     = 15
		group    = 40
	)
	pw := rawField(2, []byte("secret"))
	tests := []struct {
		name    string
		session bool // log in first
		frame   []byte
		id      uint32
		code    parleyv1.ErrorCode
	}{
		{"login username", false, rawFrame(101, login, rawField(1, notUTF8), pw), 101, parleyv1.ErrorCode_ERROR_CODE_INVALID_UTF8},
		{"login password", false, rawFrame(102, login, rawField(1, []byte("alice")), rawField(2, notUTF8)), 102, parleyv1.ErrorCode_ERROR_CODE_INVALID_UTF8},
		{"login options.device", false, rawFrame(103, login, rawField(1, []byte("alice")), pw, rawField(3, rawField(1, notUTF8))), 103, parleyv1.ErrorCode_ERROR_CODE_INVALID_UTF8},
		{"register username", false, rawFrame(104, register, rawField(1, notUTF8), pw), 104, parleyv1.ErrorCode_ERROR_CODE_INVALID_UTF8},
		{"register options.device", false, rawFrame(105, register, rawField(1, []byte("alice")), pw, rawField(3, rawField(1, notUTF8))), 105, parleyv1.ErrorCode_ERROR_CODE_INVALID_UTF8},
		{"resume token", false, rawFrame(106, resume, rawField(1, notUTF8)), 106, parleyv1.ErrorCode_ERROR_CODE_INVALID_UTF8},
		{"send text", true, rawFrame(107, send, rawField(1, []byte("room.public")), rawField(3, notUTF8)), 107, parleyv1.ErrorCode_ERROR_CODE_INVALID_UTF8},
		{"send to_username", true, rawFrame(108, send, rawField(2, notUTF8), rawField(3, []byte("hi"))), 108, parleyv1.ErrorCode_ERROR_CODE_INVALID_UTF8},
		{"create_group usernames", true, rawFrame(109, group, rawField(1, []byte("team")), rawField(2, []byte("bob")), rawField(2, notUTF8)), 109, parleyv1.ErrorCode_ERROR_CODE_INVALID_UTF8},
		{"truncated login", false, rawFrame(110, login, rawField(1, []byte("alice")))[:6], 110, parleyv1.ErrorCode_ERROR_CODE_BAD_FRAME},
		{"garbage", false, []byte{0xff, 0xff, 0xff}, 0, parleyv1.ErrorCode_ERROR_CODE_BAD_FRAME},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := dialTCP(t, e)
			c.hello()
			if tt.session {
				c.login("alice", noFeed)
			}
			if err := c.write(tt.frame); err != nil {
				t.Fatal(err)
			}
			f := c.expectError(tt.code, false)
			if f.GetRequestId() != tt.id {
				t.Errorf("request_id = %d, want %d", f.GetRequestId(), tt.id)
			}
			c.ping(1)
			if !tt.session {
				c.login("alice", noFeed)
			}
		})
	}
	if n := len(e.auth.Logins()); n != len(tests) { // each case logs in once, before or after
		t.Errorf("auth saw %d requests, want %d: a refused frame reached it", n, len(tests))
	}

	t.Run("websocket", func(t *testing.T) {
		c := dialWS(t, "ws://"+e.srv.HTTPAddr().String()+server.WebSocketPath, nil)
		c.hello()
		if err := c.write(rawFrame(111, login, rawField(1, notUTF8), pw)); err != nil {
			t.Fatal(err)
		}
		if f := c.expectError(parleyv1.ErrorCode_ERROR_CODE_INVALID_UTF8, false); f.GetRequestId() != 111 {
			t.Errorf("request_id = %d, want 111", f.GetRequestId())
		}
		c.ping(2)
	})
}

// TestBadInputIsolated: garbage on some connections closes them with the
// right error while an authenticated client on the same gateway keeps
// working and receiving events.
func TestBadInputIsolated(t *testing.T) {
	e := startGateway(t, nil)
	bob := dialTCP(t, e)
	bob.login("bob", nil)
	bob.snapshot()

	oversized := make([]byte, 4)
	binary.BigEndian.PutUint32(oversized, 1<<20+1)
	tests := []struct {
		name  string
		hello bool   // complete the handshake first
		bytes []byte // then write these raw bytes
		code  parleyv1.ErrorCode
	}{
		{"random bytes", false, []byte("\xde\xad\xbe\xef GET / HTTP/1.1\r\n\r\n"), parleyv1.ErrorCode_ERROR_CODE_FRAME_TOO_LARGE},
		{"garbage body before hello", false, append([]byte{0, 0, 0, 6}, "\xff\xff\xff\xff\xff\xff"...), parleyv1.ErrorCode_ERROR_CODE_BAD_FRAME},
		{"oversized length prefix", true, oversized, parleyv1.ErrorCode_ERROR_CODE_FRAME_TOO_LARGE},
		{"truncated frame", true, []byte{0, 0, 0, 100, 1, 2, 3}, parleyv1.ErrorCode_ERROR_CODE_BAD_FRAME},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := dialTCP(t, e)
			if tt.hello {
				c.hello()
			}
			if _, err := c.raw.Write(tt.bytes); err != nil {
				t.Fatal(err)
			}
			if tt.name == "truncated frame" {
				// The gateway learns the frame is cut short when the
				// client stops sending.
				_ = c.raw.(interface{ CloseWrite() error }).CloseWrite()
			}
			c.expectError(tt.code, true)
			c.expectClosed()
		})
	}

	t.Run("too many bad frames", func(t *testing.T) {
		c := dialTCP(t, e)
		c.hello()
		bad := []byte{0, 0, 0, 2, 0xff, 0xff}
		for range 10 {
			if _, err := c.raw.Write(bad); err != nil {
				t.Fatal(err)
			}
			c.expectError(parleyv1.ErrorCode_ERROR_CODE_BAD_FRAME, false)
		}
		c.ping(3) // still usable after 10
		if _, err := c.raw.Write(bad); err != nil {
			t.Fatal(err)
		}
		c.expectError(parleyv1.ErrorCode_ERROR_CODE_BAD_FRAME, true)
		c.expectClosed()
	})

	bob.ping(99)
	carol := dialTCP(t, e)
	carol.login("carol", nil)
	bob.change("carol", true)
}

// TestRequestRules: what a handshaken client gets for each kind of frame,
// before and after logging in.
func TestRequestRules(t *testing.T) {
	e := startGateway(t, nil)
	c := dialTCP(t, e)
	c.hello()
	code := func(f *parleyv1.Frame) parleyv1.ErrorCode {
		t.Helper()
		r := c.request(f)
		if r.GetError().GetFatal() {
			t.Fatalf("fatal error %v", r)
		}
		return r.GetError().GetCode()
	}
	const (
		unauth  = parleyv1.ErrorCode_ERROR_CODE_UNAUTHENTICATED
		unknown = parleyv1.ErrorCode_ERROR_CODE_UNKNOWN_REQUEST
	)
	before := []struct {
		name string
		f    *parleyv1.Frame
		want parleyv1.ErrorCode
	}{
		{"who", &parleyv1.Frame{Body: &parleyv1.Frame_Who{Who: &parleyv1.WhoRequest{}}}, unauth},
		{"logout", &parleyv1.Frame{Body: &parleyv1.Frame_Logout{Logout: &parleyv1.LogoutRequest{}}}, unauth},
		{"hello again", &parleyv1.Frame{Body: &parleyv1.Frame_Hello{Hello: &parleyv1.Hello{Versions: []uint32{1}}}}, parleyv1.ErrorCode_ERROR_CODE_HANDSHAKE_REQUIRED},
		{"welcome", &parleyv1.Frame{Body: &parleyv1.Frame_Welcome{Welcome: &parleyv1.Welcome{}}}, unknown},
		{"session", &parleyv1.Frame{Body: &parleyv1.Frame_Session{Session: &parleyv1.Session{UserId: "u-x"}}}, unknown},
		{"error", &parleyv1.Frame{Body: &parleyv1.Frame_Error{Error: &parleyv1.Error{}}}, unknown},
		{"presence change", &parleyv1.Frame{Body: &parleyv1.Frame_PresenceChange{PresenceChange: &parleyv1.PresenceChange{}}}, unknown},
		{"session ended", &parleyv1.Frame{Body: &parleyv1.Frame_SessionEnded{SessionEnded: &parleyv1.SessionEnded{}}}, unknown},
		{"wrong password", loginFrame("alice", "wrong", nil), parleyv1.ErrorCode_ERROR_CODE_BAD_CREDENTIALS},
	}
	for _, tt := range before {
		if got := code(tt.f); got != tt.want {
			t.Errorf("%s before login: %v, want %v", tt.name, got, tt.want)
		}
	}

	// A request needs a request_id.
	c.send(&parleyv1.Frame{Body: &parleyv1.Frame_Who{Who: &parleyv1.WhoRequest{}}})
	if f := c.expectError(parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, false); f.GetRequestId() != 0 {
		t.Errorf("request_id = %d", f.GetRequestId())
	}

	// Service errors keep their retry hint.
	r := c.request(loginFrame("alice", "slow-down", nil))
	if r.GetError().GetCode() != parleyv1.ErrorCode_ERROR_CODE_RATE_LIMITED || r.GetError().GetRetryAfterMs() != 1500 {
		t.Errorf("rate limited login: %v", r)
	}

	c.login("alice", &parleyv1.ClientOptions{SkipPresenceFeed: true})
	if got := code(loginFrame("alice", "secret", nil)); got != parleyv1.ErrorCode_ERROR_CODE_ALREADY_AUTHENTICATED {
		t.Errorf("second login: %v", got)
	}
	resume := &parleyv1.Frame{Body: &parleyv1.Frame_Resume{Resume: &parleyv1.ResumeRequest{Token: "tok-alice"}}}
	if got := code(resume); got != parleyv1.ErrorCode_ERROR_CODE_ALREADY_AUTHENTICATED {
		t.Errorf("resume with a session: %v", got)
	}
	who := c.request(&parleyv1.Frame{Body: &parleyv1.Frame_Who{Who: &parleyv1.WhoRequest{}}})
	if users := who.GetWhoReply().GetUsers(); len(users) != 1 || users[0].GetUsername() != "alice" {
		t.Errorf("who: %v", who)
	}
	if n := e.metric("parley_gateway_errors_sent_total", map[string]string{"code": "UNKNOWN_REQUEST"}); n != 5 {
		t.Errorf("UNKNOWN_REQUEST errors metric = %v, want 5", n)
	}
}

// TestUnknownBodyMember: a frame whose body is a member this gateway's
// schema does not know (field 99: a later version's request) is answered
// UNKNOWN_REQUEST with its request_id, like a body only servers send, and
// is not a bad frame: a newer client may try any number of them. As a
// first frame it is not a Hello.
func TestUnknownBodyMember(t *testing.T) {
	e := startGateway(t, nil)
	unknown := func(id uint32) []byte { return rawFrame(id, 99, rawField(1, []byte("x"))) }
	c := dialTCP(t, e)
	c.hello()
	for i := range uint32(12) { // more than the 10 bad frames a connection may send
		if err := c.write(unknown(200 + i)); err != nil {
			t.Fatal(err)
		}
		if f := c.expectError(parleyv1.ErrorCode_ERROR_CODE_UNKNOWN_REQUEST, false); f.GetRequestId() != 200+i {
			t.Fatalf("request_id = %d, want %d", f.GetRequestId(), 200+i)
		}
	}
	c.login("alice", noFeed)

	c = dialTCP(t, e)
	if err := c.write(unknown(7)); err != nil {
		t.Fatal(err)
	}
	c.expectError(parleyv1.ErrorCode_ERROR_CODE_HANDSHAKE_REQUIRED, true)
	c.expectClosed()
}
