package authsvc_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parleychat/parley/libs/service"
	"github.com/parleychat/parley/libs/testenv"
	"github.com/parleychat/parley/protocol/parleyv1"
	"github.com/parleychat/parley/services/auth/authsvc"
)

func TestRegisterLoginResume(t *testing.T) {
	ns := testenv.NATS(t)
	clk := newClock()
	cfg := fastConfig()
	startAuthClock(t, ns.ClientURL(), cfg, clk.Now)
	nc := testenv.Connect(t, ns)

	reg := mustRegister(t, nc, "Alice", "correct horse battery")
	if !strings.HasPrefix(reg.UserId, "u") || len(reg.UserId) != 21 || strings.ToLower(reg.UserId) != reg.UserId {
		t.Errorf("user id %q: want u + 20 lowercase base32 characters", reg.UserId)
	}
	if !strings.HasPrefix(reg.SessionId, "s") || len(reg.SessionId) != 21 {
		t.Errorf("session id %q", reg.SessionId)
	}
	if reg.Username != "Alice" || reg.Token == "" || reg.Resumed {
		t.Errorf("register session = %+v", reg)
	}
	if want := clk.Now().Add(7 * 24 * time.Hour).UnixMilli(); reg.ExpiresAtUnixMs != want {
		t.Errorf("expires %d, want now+7d = %d", reg.ExpiresAtUnixMs, want)
	}

	// Login is case-insensitive on the name and keeps the display form.
	li, err := login(nc, clientAddr, "aLiCe", "correct horse battery")
	if err != nil {
		t.Fatalf("login: %v", err)
	}
	if li.UserId != reg.UserId || li.Username != "Alice" || li.SessionId == reg.SessionId || li.Resumed {
		t.Errorf("login session = %+v (registered %+v)", li, reg)
	}

	clk.Advance(time.Hour)
	re, err := resume(nc, li.Token)
	if err != nil {
		t.Fatalf("resume: %v", err)
	}
	if re.SessionId != li.SessionId || re.UserId != li.UserId || !re.Resumed || re.Token == li.Token ||
		re.ExpiresAtUnixMs != clk.Now().Add(7*24*time.Hour).UnixMilli() {
		t.Errorf("resume session = %+v (login %+v)", re, li)
	}
	// The fresh token continues the session; the one it replaced is
	// retired (TestTokenRotation has the details).
	if _, err := resume(nc, re.Token); err != nil {
		t.Errorf("resume with fresh token: %v", err)
	}
	clk.Advance(cfg.TokenGrace)
	_, err = resume(nc, li.Token)
	wantCode(t, err, parleyv1.ErrorCode_ERROR_CODE_TOKEN_INVALID)
	// The register session is independent of the login session.
	if _, err := resume(nc, reg.Token); err != nil {
		t.Errorf("resume register session: %v", err)
	}
}

func TestRegisterRejections(t *testing.T) {
	ns := testenv.NATS(t)
	cfg := fastConfig()
	cfg.RegisterIPLimit = 0 // this test is about the rules, not the limit
	startAuth(t, ns.ClientURL(), cfg)
	nc := testenv.Connect(t, ns)
	mustRegister(t, nc, "taken.Name", "a fine password")

	for _, tc := range []struct {
		name, user, pw string
		code           parleyv1.ErrorCode
		msg            string
	}{
		{"missing username", "", "a fine password", parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "required"},
		{"missing password", "bob", "", parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "required"},
		{"short username", "bo", "a fine password", parleyv1.ErrorCode_ERROR_CODE_INVALID_USERNAME, "3-32 characters"},
		{"long username", strings.Repeat("b", 33), "a fine password", parleyv1.ErrorCode_ERROR_CODE_INVALID_USERNAME, "3-32 characters"},
		{"bad character", "bob smith", "a fine password", parleyv1.ErrorCode_ERROR_CODE_INVALID_USERNAME, "letters, digits"},
		{"leading dot", ".bob", "a fine password", parleyv1.ErrorCode_ERROR_CODE_INVALID_USERNAME, "starting with a letter or digit"},
		{"short password", "bob", "seven77", parleyv1.ErrorCode_ERROR_CODE_WEAK_PASSWORD, "at least 8"},
		{"long password", "bob", strings.Repeat("p", 257), parleyv1.ErrorCode_ERROR_CODE_WEAK_PASSWORD, "at most 256"},
		{"password is username", "robert.smith", "Robert.Smith", parleyv1.ErrorCode_ERROR_CODE_WEAK_PASSWORD, "username"},
		{"common password", "bob", "qwertyuiop", parleyv1.ErrorCode_ERROR_CODE_WEAK_PASSWORD, "commonly used"},
		{"taken, same case", "taken.Name", "another password", parleyv1.ErrorCode_ERROR_CODE_USERNAME_TAKEN, "taken"},
		{"taken, other case", "TAKEN.name", "another password", parleyv1.ErrorCode_ERROR_CODE_USERNAME_TAKEN, "taken"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := register(nc, clientAddr, tc.user, tc.pw)
			e := wantCode(t, err, tc.code)
			if !strings.Contains(e.Message, tc.msg) {
				t.Errorf("message %q does not mention %q", e.Message, tc.msg)
			}
		})
	}
	// Names that are awkward as KV keys still work.
	for _, name := range []string{"dots.end.", "a..b", "x-_-y"} {
		s := mustRegister(t, nc, name, "a fine password")
		if _, err := login(nc, clientAddr, strings.ToUpper(name), "a fine password"); err != nil || s.Username != name {
			t.Errorf("%q: login %v, display %q", name, err, s.Username)
		}
	}
}

func TestConcurrentRegistrationAcrossReplicas(t *testing.T) {
	ns := testenv.NATS(t)
	cfg := fastConfig()
	a := startAuth(t, ns.ClientURL(), cfg)
	b := startAuth(t, ns.ClientURL(), cfg)
	nc := testenv.Connect(t, ns)

	const names, racers = 20, 2
	var wg sync.WaitGroup
	wins := make([]int, names)
	var mu sync.Mutex
	for i := range names {
		for r := range racers {
			wg.Go(func() {
				from := fmt.Sprintf("198.51.100.%d:%d", i, 1000+r) // under the per-IP limit
				_, err := register(nc, from, "racer"+strings.Repeat("x", i), "a fine password")
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					wins[i]++
				case !strings.Contains(err.Error(), "USERNAME_TAKEN"):
					t.Errorf("name %d: %v", i, err)
				}
			})
		}
	}
	wg.Wait()
	for i, w := range wins {
		if w != 1 {
			t.Errorf("name %d registered %d times, want exactly once", i, w)
		}
	}
	// Both replicas served registrations (the queue group spread them).
	for name, in := range map[string]*instance{"a": a, "b": b} {
		if n := metricValue(t, in.reg, "parley_auth_registrations_total", nil); n == 0 {
			t.Errorf("replica %s handled no registration", name)
		}
	}
}

func TestBadCredentialsIndistinguishable(t *testing.T) {
	ns := testenv.NATS(t)
	in := startAuth(t, ns.ClientURL(), fastConfig())
	nc := testenv.Connect(t, ns)
	mustRegister(t, nc, "carol", "carol's password")

	verifies := func() float64 {
		return metricValue(t, in.reg, "parley_auth_password_hash_seconds", map[string]string{"op": "verify"})
	}
	before := verifies()
	_, errUnknown := login(nc, clientAddr, "nobody", "carol's password")
	eu := wantCode(t, errUnknown, parleyv1.ErrorCode_ERROR_CODE_BAD_CREDENTIALS)
	// An unknown user still costs a full password verification.
	if got := verifies() - before; got != 1 {
		t.Errorf("unknown user: %v verifications, want 1 (the dummy hash)", got)
	}
	_, errWrong := login(nc, clientAddr, "carol", "not carol's password")
	ew := wantCode(t, errWrong, parleyv1.ErrorCode_ERROR_CODE_BAD_CREDENTIALS)
	if eu.Message != ew.Message {
		t.Errorf("messages differ: unknown user %q, wrong password %q", eu.Message, ew.Message)
	}
	if _, err := login(nc, clientAddr, "carol", "carol's password"); err != nil {
		t.Errorf("right password: %v", err)
	}
	_, err := login(nc, clientAddr, "carol", "")
	wantCode(t, err, parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT)
	if n := metricValue(t, in.reg, "parley_auth_logins_total", map[string]string{"result": "bad_credentials"}); n != 2 {
		t.Errorf("logins{bad_credentials} = %v, want 2", n)
	}
	// libs/rpc counts a request just after replying.
	testenv.Eventually(t, 5*time.Second, "rpc metrics count 5 requests", func() bool {
		return metricValue(t, in.reg, "parley_rpc_requests_total", map[string]string{"service": "auth"}) == 5
	})
}

func TestLoginRateLimits(t *testing.T) {
	ns := testenv.NATS(t)
	clk := newClock()
	cfg := fastConfig()
	startAuthClock(t, ns.ClientURL(), cfg, clk.Now)
	nc := testenv.Connect(t, ns)
	mustRegister(t, nc, "dave", "dave's password")

	// Per account: 5 failures (from different addresses), then limited,
	// even with the right password.
	for i := range 5 {
		_, err := login(nc, "203.0.113."+string(rune('1'+i))+":4000", "dave", "guess")
		wantCode(t, err, parleyv1.ErrorCode_ERROR_CODE_BAD_CREDENTIALS)
	}
	_, err := login(nc, "203.0.113.99:4000", "DAVE", "dave's password")
	e := wantCode(t, err, parleyv1.ErrorCode_ERROR_CODE_RATE_LIMITED)
	if e.RetryAfter != 12000 { // 5 per minute: one attempt back every 12s
		t.Errorf("retry after %d ms, want 12000", e.RetryAfter)
	}
	clk.Advance(time.Duration(e.RetryAfter) * time.Millisecond)
	if _, err := login(nc, "203.0.113.99:4000", "dave", "dave's password"); err != nil {
		t.Errorf("after waiting retry-after: %v", err)
	}
	// Successful logins do not use up the allowance.
	for range 10 {
		if _, err := login(nc, clientAddr, "dave", "dave's password"); err != nil {
			t.Fatalf("repeated good logins: %v", err)
		}
	}

	// Per source address: 20 failures over many accounts, then limited;
	// another address is unaffected. IPv6 addresses count per /64.
	from := "[2001:db8:1:2::1]:5000"
	for i := range 20 {
		_, err := login(nc, from, "user"+strings.Repeat("z", i), "guess")
		wantCode(t, err, parleyv1.ErrorCode_ERROR_CODE_BAD_CREDENTIALS)
	}
	_, err = login(nc, "[2001:db8:1:2::ffff]:5001", "someone", "guess")
	e = wantCode(t, err, parleyv1.ErrorCode_ERROR_CODE_RATE_LIMITED)
	if e.RetryAfter != 3000 { // 20 per minute
		t.Errorf("retry after %d ms, want 3000", e.RetryAfter)
	}
	_, err = login(nc, "[2001:db8:1:3::1]:5000", "someone", "guess")
	wantCode(t, err, parleyv1.ErrorCode_ERROR_CODE_BAD_CREDENTIALS)

	// Registrations per source address: 10 per minute.
	for i := range 10 {
		if _, err := register(nc, "192.0.2.77:1", "newbie"+strings.Repeat("n", i), "a fine password"); err != nil {
			t.Fatalf("registration %d: %v", i+1, err)
		}
	}
	_, err = register(nc, "192.0.2.77:2", "newbie11", "a fine password")
	e = wantCode(t, err, parleyv1.ErrorCode_ERROR_CODE_RATE_LIMITED)
	if e.RetryAfter != 6000 || !strings.Contains(e.Message, "6s") {
		t.Errorf("register limit: retry after %d ms, message %q", e.RetryAfter, e.Message)
	}
}

func TestTokens(t *testing.T) {
	ns := testenv.NATS(t)
	clk := newClock()
	cfg := fastConfig()
	cfg.TokenTTL = 24 * time.Hour
	startAuthClock(t, ns.ClientURL(), cfg, clk.Now)
	nc := testenv.Connect(t, ns)
	s := mustRegister(t, nc, "erin", "erin's password")

	if _, err := resume(nc, s.Token); err != nil {
		t.Fatalf("valid token: %v", err)
	}
	mac := s.Token[strings.LastIndexByte(s.Token, '.')+1:]
	forged := s.Token[:len(s.Token)-len(mac)] + strings.Map(func(r rune) rune {
		if r == 'A' {
			return 'B'
		}
		return 'A'
	}, mac[:1]) + mac[1:]
	for name, tok := range map[string]string{
		"forged mac":   forged,
		"malformed":    "not-a-token",
		"no signature": s.Token[:strings.LastIndexByte(s.Token, '.')],
	} {
		_, err := resume(nc, tok)
		wantCode(t, err, parleyv1.ErrorCode_ERROR_CODE_TOKEN_INVALID)
		_ = name
	}
	_, err := resume(nc, "")
	wantCode(t, err, parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT)

	// A replica with a different configured key rejects our tokens.
	other := fastConfig()
	other.TokenKey = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=" // 32 bytes
	ns2 := testenv.NATS(t)
	startAuth(t, ns2.ClientURL(), other)
	_, err = resume(testenv.Connect(t, ns2), s.Token)
	wantCode(t, err, parleyv1.ErrorCode_ERROR_CODE_TOKEN_INVALID)

	// Expiry.
	clk.Advance(24 * time.Hour)
	_, err = resume(nc, s.Token)
	wantCode(t, err, parleyv1.ErrorCode_ERROR_CODE_TOKEN_EXPIRED)

	// Revoked after logout, also with a token refreshed before.
	s2, err := login(nc, clientAddr, "erin", "erin's password")
	if err != nil {
		t.Fatal(err)
	}
	fresh, err := resume(nc, s2.Token)
	if err != nil {
		t.Fatal(err)
	}
	if err := logout(nc, s2.UserId, s2.SessionId); err != nil {
		t.Fatalf("logout: %v", err)
	}
	for _, tok := range []string{s2.Token, fresh.Token} {
		_, err = resume(nc, tok)
		wantCode(t, err, parleyv1.ErrorCode_ERROR_CODE_SESSION_REVOKED)
	}
	// Logout is idempotent, needs the gateway's headers, and only ends
	// the user's own sessions.
	if err := logout(nc, s2.UserId, s2.SessionId); err != nil {
		t.Errorf("second logout: %v", err)
	}
	wantCode(t, logout(nc, "", ""), parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT)
	frank := mustRegister(t, nc, "frank", "frank's password")
	wantCode(t, logout(nc, s2.UserId, frank.SessionId), parleyv1.ErrorCode_ERROR_CODE_PERMISSION_DENIED)
	if _, err := resume(nc, frank.Token); err != nil {
		t.Errorf("frank's session ended by another user's logout: %v", err)
	}
}

func TestConfigValidation(t *testing.T) {
	ns := testenv.NATS(t)
	nc := testenv.Connect(t, ns)
	for name, mutate := range map[string]func(*authsvc.Config){
		"short token key": func(c *authsvc.Config) { c.TokenKey = "c2hvcnQ=" },
		"bad base64 key":  func(c *authsvc.Config) { c.TokenKey = "%%%" },
		"bad policy":      func(c *authsvc.Config) { c.SessionPolicy = "sometimes" },
		"weak min length": func(c *authsvc.Config) { c.PasswordMinLen = 6 },
		"argon2 memory":   func(c *authsvc.Config) { c.Argon2Memory = 1 },
		"kv replicas":     func(c *authsvc.Config) { c.KVReplicas = 0 },
		"token ttl":       func(c *authsvc.Config) { c.TokenTTL = 500 * time.Millisecond },
		"negative grace":  func(c *authsvc.Config) { c.TokenGrace = -time.Second },
		"long grace":      func(c *authsvc.Config) { c.TokenGrace = 2 * time.Hour },
	} {
		c := fastConfig()
		mutate(&c)
		if _, err := authsvc.New(c, service.Deps{NC: nc}); err == nil {
			t.Errorf("%s: New accepted the config", name)
		}
	}
	if _, err := authsvc.New(fastConfig(), service.Deps{NC: nc}); err != nil {
		t.Errorf("valid config: %v", err)
	}
}

// TestPasswordUnicodeNormalization: a passphrase registered with composed
// characters logs in when typed with decomposed ones (NFKC, SP 800-63B).
func TestPasswordUnicodeNormalization(t *testing.T) {
	ns := testenv.NATS(t)
	startAuth(t, ns.ClientURL(), fastConfig())
	nc := testenv.Connect(t, ns)
	mustRegister(t, nc, "zoe", "crème brûlée 密码")
	if _, err := login(nc, clientAddr, "zoe", "cre\u0300me bru\u0302le\u0301e 密码"); err != nil {
		t.Fatalf("login with decomposed accents: %v", err)
	}
	if _, err := login(nc, clientAddr, "zoe", "creme brulee 密码"); err == nil {
		t.Fatal("login without the accents succeeded")
	}
}
