package authsvc_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/parleychat/parley/libs/proto/internalv1"
	"github.com/parleychat/parley/libs/rpc"
	"github.com/parleychat/parley/libs/subject"
	"github.com/parleychat/parley/libs/testenv"
	"github.com/parleychat/parley/protocol/parleyv1"
	"github.com/parleychat/parley/services/auth/authsvc"
)

// verify is exactly what the gateway does for an HTTP request carrying a
// session token.
func verify(nc *nats.Conn, tok string) (*parleyv1.Session, error) {
	var reply internalv1.AuthReply
	err := rpc.Request(context.Background(), nc, subject.AuthVerify, nil, &internalv1.TokenVerifyRequest{Token: tok}, &reply)
	return reply.Session, err
}

// sessionRevision is the KV revision of a session's record: it changes with
// every write to the session (a refresh, an extension).
func sessionRevision(t *testing.T, nc *nats.Conn, sessionID string) uint64 {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(t.Context(), subject.BucketSessions)
	if err != nil {
		t.Fatal(err)
	}
	e, err := kv.Get(t.Context(), sessionID)
	if err != nil {
		t.Fatalf("session %s record: %v", sessionID, err)
	}
	return e.Revision()
}

// A valid token names its session; verifying neither changes the token nor
// writes to the session, and the token still resumes afterwards.
func TestVerifyValidToken(t *testing.T) {
	ns := testenv.NATS(t)
	clk := newClock()
	cfg := fastConfig()
	in := startAuthClock(t, ns.ClientURL(), cfg, clk.Now)
	nc := testenv.Connect(t, ns)
	mustRegister(t, nc, "Ivan", "ivan's password")
	li, err := login(nc, clientAddr, "ivan", "ivan's password")
	if err != nil {
		t.Fatal(err)
	}
	rev := sessionRevision(t, nc, li.SessionId)

	clk.Advance(time.Hour)
	for i := range 3 {
		got, err := verify(nc, li.Token)
		if err != nil {
			t.Fatalf("verify %d: %v", i, err)
		}
		if got.UserId != li.UserId || got.SessionId != li.SessionId || got.Username != "Ivan" {
			t.Errorf("verify %d = %+v, want the login's session %+v", i, got, li)
		}
		if got.Token != "" || got.Resumed {
			t.Errorf("verify %d issued a token or claims a resume: %+v", i, got)
		}
		if got.ExpiresAtUnixMs != li.ExpiresAtUnixMs {
			t.Errorf("verify %d: expires %d, want the token's own expiry %d (not extended)", i, got.ExpiresAtUnixMs, li.ExpiresAtUnixMs)
		}
	}
	if now := sessionRevision(t, nc, li.SessionId); now != rev {
		t.Errorf("session record revision went %d -> %d: verify wrote to the session", rev, now)
	}
	if n := metricValue(t, in.reg, "parley_auth_verifies_total", map[string]string{"result": "ok"}); n != 3 {
		t.Errorf("verifies{ok} = %v, want 3", n)
	}

	re, err := resume(nc, li.Token)
	if err != nil {
		t.Fatalf("resume after verify: %v", err)
	}
	if re.SessionId != li.SessionId || re.Token == li.Token {
		t.Errorf("resume after verify = %+v", re)
	}
	// The refreshed token verifies too, with its later expiry.
	if got, err := verify(nc, re.Token); err != nil || got.SessionId != li.SessionId || got.ExpiresAtUnixMs != re.ExpiresAtUnixMs {
		t.Errorf("verify refreshed token = %+v, %v", got, err)
	}
}

func TestVerifyRejections(t *testing.T) {
	ns := testenv.NATS(t)
	clk := newClock()
	cfg := fastConfig()
	cfg.TokenTTL = 24 * time.Hour
	in := startAuthClock(t, ns.ClientURL(), cfg, clk.Now)
	nc := testenv.Connect(t, ns)

	judy := mustRegister(t, nc, "judy", "judy's password")
	mac := judy.Token[strings.LastIndexByte(judy.Token, '.')+1:]
	flipped := byte('A')
	if mac[0] == 'A' {
		flipped = 'B'
	}
	forged := judy.Token[:len(judy.Token)-len(mac)] + string(flipped) + mac[1:]

	// oscar's token is past its expiry by the end; peggy's and mallory's
	// are not, but mallory logged out.
	old := mustRegister(t, nc, "oscar", "oscar's password")
	clk.Advance(23 * time.Hour)
	fresh := mustRegister(t, nc, "peggy", "peggy's password")
	out := mustRegister(t, nc, "mallory", "mallory's password")
	if err := logout(nc, out.UserId, out.SessionId); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Hour)

	for _, tc := range []struct {
		name, token string
		code        parleyv1.ErrorCode
	}{
		{"empty", "", parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT},
		{"forged mac", forged, parleyv1.ErrorCode_ERROR_CODE_TOKEN_INVALID},
		{"not a token", "not-a-token", parleyv1.ErrorCode_ERROR_CODE_TOKEN_INVALID},
		{"no signature", judy.Token[:strings.LastIndexByte(judy.Token, '.')], parleyv1.ErrorCode_ERROR_CODE_TOKEN_INVALID},
		{"expired", old.Token, parleyv1.ErrorCode_ERROR_CODE_TOKEN_EXPIRED},
		{"logged out", out.Token, parleyv1.ErrorCode_ERROR_CODE_SESSION_REVOKED},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := verify(nc, tc.token)
			wantCode(t, err, tc.code)
			if s != nil {
				t.Errorf("error reply carries a session: %+v", s)
			}
		})
	}
	// Still inside its TTL: fine.
	if _, err := verify(nc, fresh.Token); err != nil {
		t.Errorf("unexpired token: %v", err)
	}

	// A body that is not a TokenVerifyRequest.
	m, err := nc.Request(subject.AuthVerify, []byte{0xff, 0xff, 0xff}, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	e := rpc.ErrorOf(m)
	if e == nil || e.Code != parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT {
		t.Fatalf("malformed body: got %v (data %q), want INVALID_ARGUMENT", e, m.Data)
	}
	for result, want := range map[string]float64{"token_invalid": 3, "token_expired": 1, "session_revoked": 1, "invalid_argument": 2, "ok": 1} {
		if n := metricValue(t, in.reg, "parley_auth_verifies_total", map[string]string{"result": result}); n != want {
			t.Errorf("verifies{%s} = %v, want %v", result, n, want)
		}
	}
}

// A session replaced under the takeover policy is revoked for verify as
// for resume.
func TestVerifyAfterTakeover(t *testing.T) {
	ns := testenv.NATS(t)
	cfg := fastConfig()
	cfg.SessionPolicy = authsvc.PolicyTakeover
	startAuth(t, ns.ClientURL(), cfg)
	nc := testenv.Connect(t, ns)
	first := mustRegister(t, nc, "rupert", "rupert's password")
	second, err := login(nc, clientAddr, "rupert", "rupert's password")
	if err != nil {
		t.Fatal(err)
	}
	_, err = verify(nc, first.Token)
	wantCode(t, err, parleyv1.ErrorCode_ERROR_CODE_SESSION_REVOKED)
	if got, err := verify(nc, second.Token); err != nil || got.SessionId != second.SessionId {
		t.Fatalf("verify the current session = %+v, %v", got, err)
	}
}

// Verify starts no session, so the reject policy does not apply and the
// presence service is not asked: it answers even with presence down, where
// resume fails closed.
func TestVerifyDoesNotNeedPresence(t *testing.T) {
	ns := testenv.NATS(t)
	cfg := fastConfig()
	cfg.SessionPolicy = authsvc.PolicyReject
	cfg.PresenceTimeout = 200 * time.Millisecond
	startAuth(t, ns.ClientURL(), cfg)
	nc := testenv.Connect(t, ns)
	s := mustRegister(t, nc, "sybil", "sybil's password")

	_, err := resume(nc, s.Token)
	wantCode(t, err, parleyv1.ErrorCode_ERROR_CODE_UNAVAILABLE) // no presence service
	if got, err := verify(nc, s.Token); err != nil || got.SessionId != s.SessionId {
		t.Fatalf("verify with presence down = %+v, %v", got, err)
	}
}
