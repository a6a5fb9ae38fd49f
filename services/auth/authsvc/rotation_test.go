package authsvc_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/parleychat/parley/libs/subject"
	"github.com/parleychat/parley/libs/testenv"
	"github.com/parleychat/parley/protocol/parleyv1"
	"github.com/parleychat/parley/services/auth/internal/token"
)

// wantReplaced fails unless err is the refusal of a retired token.
func wantReplaced(t *testing.T, err error) {
	t.Helper()
	e := wantCode(t, err, parleyv1.ErrorCode_ERROR_CODE_TOKEN_INVALID)
	if !strings.Contains(e.Message, "replaced by a newer one") {
		t.Errorf("message %q does not say the token was replaced", e.Message)
	}
}

// A resume that issues a new token retires the one it replaced, after a
// grace in which a client whose reply was lost can resume again; the same
// holds for HTTP bearer verification.
func TestTokenRotation(t *testing.T) {
	ns := testenv.NATS(t)
	clk := newClock()
	cfg := fastConfig()
	startAuthClock(t, ns.ClientURL(), cfg, clk.Now)
	nc := testenv.Connect(t, ns)
	if cfg.TokenGrace != time.Minute {
		t.Fatalf("default -token-grace = %v, want 1m (docs/protocol.md §8.3)", cfg.TokenGrace)
	}
	t1 := mustRegister(t, nc, "zelda", "zelda's password").Token

	clk.Advance(time.Hour)
	s2, err := resume(nc, t1)
	if err != nil {
		t.Fatal(err)
	}
	// The reply was lost: the client still holds t1 and tries again within
	// the grace. It gets a token of the current generation again.
	clk.Advance(30 * time.Second)
	s2again, err := resume(nc, t1)
	if err != nil {
		t.Fatalf("previous token within the grace: %v", err)
	}
	if _, err := verify(nc, t1); err != nil {
		t.Fatalf("verify the previous token within the grace: %v", err)
	}
	// Reusing the previous token did not extend its grace.
	clk.Advance(30 * time.Second)
	_, err = resume(nc, t1)
	wantReplaced(t, err)
	_, err = verify(nc, t1)
	wantReplaced(t, err)
	// Both copies of the current generation work (one client's lost reply
	// and its retry); the session itself is unharmed by the refusals.
	if _, err := verify(nc, s2.Token); err != nil {
		t.Fatalf("verify the token of the lost reply: %v", err)
	}
	s3, err := resume(nc, s2again.Token)
	if err != nil {
		t.Fatalf("resume with the retry's token: %v", err)
	}
	// That resume retired generation 2, s2 with it, after the grace.
	if _, err := verify(nc, s2.Token); err != nil {
		t.Fatalf("generation 2 within its grace: %v", err)
	}
	clk.Advance(time.Minute)
	for _, tok := range []string{s2.Token, s2again.Token} {
		_, err = resume(nc, tok)
		wantReplaced(t, err)
	}
	if _, err := resume(nc, s3.Token); err != nil {
		t.Fatalf("newest token: %v", err)
	}
}

func TestTokenGraceZero(t *testing.T) {
	ns := testenv.NATS(t)
	cfg := fastConfig()
	cfg.TokenGrace = 0
	startAuth(t, ns.ClientURL(), cfg)
	nc := testenv.Connect(t, ns)
	s := mustRegister(t, nc, "yusuf", "yusuf's password")
	re, err := resume(nc, s.Token)
	if err != nil {
		t.Fatal(err)
	}
	_, err = resume(nc, s.Token)
	wantReplaced(t, err)
	_, err = verify(nc, s.Token)
	wantReplaced(t, err)
	if _, err := verify(nc, re.Token); err != nil {
		t.Fatalf("the new token: %v", err)
	}
}

// Sessions and tokens written before token generations existed keep
// working, every copy of the token, until the next resume rotates them:
// an upgrade logs nobody out.
func TestTokensFromBeforeRotation(t *testing.T) {
	ns := testenv.NATS(t)
	clk := newClock()
	cfg := fastConfig()
	key := []byte("0123456789abcdef0123456789abcdef")
	cfg.TokenKey = base64.StdEncoding.EncodeToString(key)
	startAuthClock(t, ns.ClientURL(), cfg, clk.Now)
	nc := testenv.Connect(t, ns)
	acct := mustRegister(t, nc, "walter", "walter's password")

	// A session record exactly as the previous release wrote it (no
	// generation fields) and a token as it signed them (no "gen" claim).
	const sid = "slegacysession000000"
	now := clk.Now()
	rec, err := json.Marshal(map[string]any{
		"session_id": sid, "user_id": acct.UserId, "username": "walter", "device": "laptop",
		"created": now.Add(-time.Hour), "active": now.Add(-time.Hour), "expires": now.Add(6 * 24 * time.Hour),
	})
	if err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(context.Background(), subject.BucketSessions)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(context.Background(), sid, rec); err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(context.Background(), "u."+acct.UserId+"."+sid, nil); err != nil {
		t.Fatal(err)
	}
	signer, err := token.NewSigner(key, clk.Now)
	if err != nil {
		t.Fatal(err)
	}
	legacy, err := signer.Sign(token.Claims{SessionID: sid, UserID: acct.UserId, Username: "walter",
		IssuedAt: now.Add(-time.Hour), ExpiresAt: now.Add(6 * 24 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if payload, _ := base64.RawURLEncoding.DecodeString(strings.Split(legacy, ".")[1]); strings.Contains(string(payload), "gen") {
		t.Fatalf("the legacy token carries a generation: %s", payload)
	}

	for range 3 {
		if _, err := verify(nc, legacy); err != nil {
			t.Fatalf("verify the legacy token: %v", err)
		}
	}
	re, err := resume(nc, legacy)
	if err != nil {
		t.Fatalf("resume with the legacy token: %v", err)
	}
	if re.SessionId != sid || !re.Resumed {
		t.Fatalf("resume = %+v", re)
	}
	// From here on it is a rotated session like any other.
	clk.Advance(time.Minute)
	_, err = resume(nc, legacy)
	wantReplaced(t, err)
	if _, err := resume(nc, re.Token); err != nil {
		t.Fatalf("resume with the rotated token: %v", err)
	}
}
