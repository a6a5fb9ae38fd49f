package identity_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/parleychat/parley/libs/identity"
	"github.com/parleychat/parley/libs/subject"
	"github.com/parleychat/parley/libs/testenv"
)

// TestRoundTrip: what the gateway writes is what a service reads, across a
// real NATS server.
func TestRoundTrip(t *testing.T) {
	nc := testenv.Connect(t, testenv.NATS(t))
	sub, err := nc.SubscribeSync("identity.test")
	if err != nil {
		t.Fatal(err)
	}
	who := identity.Caller{UserID: "uabcdefghijklmnopqrst", SessionID: "sabcdefghijklmnopqrst", Username: "Alice.B-2"}
	from := identity.Origin{RemoteAddr: "[2001:db8::1]:51234", GatewayID: "gw-1", ConnID: "x1-7"}
	msg := &nats.Msg{Subject: "identity.test", Header: identity.Header(who, from)}
	if err := nc.PublishMsg(msg); err != nil {
		t.Fatal(err)
	}
	got, err := sub.NextMsg(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if c, err := identity.Read(got.Header); err != nil || c != who {
		t.Errorf("Read = %+v, %v; want %+v", c, err, who)
	}
	if c, err := identity.ReadSession(got.Header); err != nil || c != who {
		t.Errorf("ReadSession = %+v, %v", c, err)
	}
	if o := identity.ReadOrigin(got.Header); o != from || !o.NamesConn() {
		t.Errorf("ReadOrigin = %+v, want %+v", o, from)
	}
}

// TestRead: the rules a service applies to the headers it trusts.
func TestRead(t *testing.T) {
	h := func(kv ...string) nats.Header {
		out := nats.Header{}
		for i := 0; i < len(kv); i += 2 {
			out.Set(kv[i], kv[i+1])
		}
		return out
	}
	const u, s, n = subject.HeaderUserID, subject.HeaderSessionID, subject.HeaderUsername
	for _, tc := range []struct {
		name       string
		hdr        nats.Header
		err        error
		sessionErr error // ReadSession's answer
	}{
		{"user, session, name", h(u, "u1", s, "s1", n, "alice"), nil, nil},
		{"between services: user and name", h(u, "u1", n, "alice"), nil, identity.ErrMissing},
		{"user only", h(u, "u1"), nil, identity.ErrMissing},
		{"no headers", nil, identity.ErrMissing, identity.ErrMissing},
		{"session without user", h(s, "s1", n, "alice"), identity.ErrMissing, identity.ErrMissing},
		{"user with a dot", h(u, "u.1"), identity.ErrMalformed, identity.ErrMalformed},
		{"user wildcard", h(u, ">"), identity.ErrMalformed, identity.ErrMalformed},
		{"user too long", h(u, strings.Repeat("u", identity.MaxLen+1)), identity.ErrMalformed, identity.ErrMalformed},
		{"longest user", h(u, strings.Repeat("u", identity.MaxLen), s, "s1"), nil, nil},
		{"session with a space", h(u, "u1", s, "s 1"), identity.ErrMalformed, identity.ErrMalformed},
		{"name not ASCII", h(u, "u1", n, "alicé"), identity.ErrMalformed, identity.ErrMalformed},
		{"name with a control character", h(u, "u1", n, "a\x7fb"), identity.ErrMalformed, identity.ErrMalformed},
		{"name too long", h(u, "u1", n, strings.Repeat("a", identity.MaxLen+1)), identity.ErrMalformed, identity.ErrMalformed},
	} {
		c, err := identity.Read(tc.hdr)
		if !errors.Is(err, tc.err) || (err != nil && c != identity.Caller{}) {
			t.Errorf("%s: Read = %+v, %v; want %v", tc.name, c, err, tc.err)
		}
		if _, err := identity.ReadSession(tc.hdr); !errors.Is(err, tc.sessionErr) {
			t.Errorf("%s: ReadSession = %v; want %v", tc.name, err, tc.sessionErr)
		}
	}
}

// TestSetLeavesOutEmpty: a service calling another for a user without a
// session sends no session header at all.
func TestSetLeavesOutEmpty(t *testing.T) {
	hdr := identity.Caller{UserID: "u1"}.Header()
	identity.Origin{GatewayID: "gw"}.Set(hdr)
	for _, k := range []string{subject.HeaderSessionID, subject.HeaderUsername, subject.HeaderRemoteAddr, subject.HeaderConnID} {
		if _, ok := hdr[k]; ok {
			t.Errorf("%s set: %v", k, hdr)
		}
	}
	if hdr.Get(subject.HeaderUserID) != "u1" || hdr.Get(subject.HeaderGatewayID) != "gw" {
		t.Errorf("header %v", hdr)
	}
	if identity.ReadOrigin(hdr).NamesConn() {
		t.Errorf("an origin without a connection id names a connection")
	}
}
