package authsvc_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/parleychat/parley/libs/testenv"
	"github.com/parleychat/parley/protocol/errcode"
	"github.com/parleychat/parley/protocol/parleyv1"
)

// attack sends n wrong passwords for user, each from a different address
// (none of them in the owner's networks), and returns how many were
// answered BAD_CREDENTIALS (the rest must be RATE_LIMITED).
func attack(t *testing.T, nc *nats.Conn, user string, n int) (guesses int) {
	t.Helper()
	for i := range n {
		from := fmt.Sprintf("203.0.%d.%d:4444", 113+i/250, 1+i%250)
		_, err := login(nc, from, user, fmt.Sprintf("guess %d", i))
		switch errcode.Code(err) {
		case parleyv1.ErrorCode_ERROR_CODE_BAD_CREDENTIALS:
			guesses++
		case parleyv1.ErrorCode_ERROR_CODE_RATE_LIMITED:
		default:
			t.Fatalf("attack attempt %d from %s: %v", i, from, err)
		}
	}
	return guesses
}

// A stranger's failures from other addresses use up only the strangers'
// allowance: the owner logs in from the networks the account was used
// from, with the right password, and may mistype once there too.
func TestStrangersCannotLockTheOwnerOut(t *testing.T) {
	ns := testenv.NATS(t)
	clk := newClock()
	cfg := fastConfig()
	startAuthClock(t, ns.ClientURL(), cfg, clk.Now)
	nc := testenv.Connect(t, ns)
	if _, err := register(nc, "192.0.2.10:1000", "ruth", "ruth's password"); err != nil { // home, IPv4
		t.Fatal(err)
	}
	if _, err := login(nc, "[2001:db8:aa:1::5]:1000", "ruth", "ruth's password"); err != nil { // work, IPv6
		t.Fatal(err)
	}

	if got := attack(t, nc, "ruth", 60); got != cfg.LoginAccountBurst {
		t.Fatalf("the attack got %d guesses in, want %d (the per-account burst)", got, cfg.LoginAccountBurst)
	}
	for _, from := range []string{
		"192.0.2.10:1000",          // where the account was registered
		"192.0.2.200:2000",         // the same /24: the home router got another address
		"[2001:db8:aa:1::5]:1000",  // where the owner logged in
		"[2001:db8:aa:77::1]:3000", // the same /48: another /64 of that network
		"[::ffff:192.0.2.11]:1000", // IPv4 written as mapped IPv6
	} {
		if _, err := login(nc, from, "ruth", "ruth's password"); err != nil {
			t.Errorf("owner from %s during the attack: %v", from, err)
		}
	}
	// A typo at home is one failure of home's own allowance.
	_, err := login(nc, "192.0.2.10:1000", "ruth", "ruth's pasword")
	wantCode(t, err, parleyv1.ErrorCode_ERROR_CODE_BAD_CREDENTIALS)
	if _, err := login(nc, "192.0.2.10:1000", "ruth", "ruth's password"); err != nil {
		t.Errorf("owner after a typo: %v", err)
	}
}

// Guessing stays slow: from one address, from many addresses, from inside
// one of the owner's networks, and for names that do not exist.
func TestGuessingIsSlowed(t *testing.T) {
	ns := testenv.NATS(t)
	clk := newClock()
	cfg := fastConfig()
	startAuthClock(t, ns.ClientURL(), cfg, clk.Now)
	nc := testenv.Connect(t, ns)
	mustRegister(t, nc, "sam", "sam's password") // from clientAddr, 192.0.2.10
	if _, err := login(nc, "[2001:db8:bb::1]:1", "sam", "sam's password"); err != nil {
		t.Fatal(err)
	}

	// One address, one account: five guesses, then one every 12 s.
	for i := range 5 {
		_, err := login(nc, "198.51.100.1:1", "sam", fmt.Sprint("guess ", i))
		wantCode(t, err, parleyv1.ErrorCode_ERROR_CODE_BAD_CREDENTIALS)
	}
	_, err := login(nc, "198.51.100.1:1", "sam", "guess 5")
	if e := wantCode(t, err, parleyv1.ErrorCode_ERROR_CODE_RATE_LIMITED); e.RetryAfter != 12000 {
		t.Errorf("retry after %d ms, want 12000", e.RetryAfter)
	}

	// Many addresses: the same allowance, shared; it refills at 5 a minute
	// whatever the number of addresses.
	if got := attack(t, nc, "sam", 40); got != 0 {
		t.Fatalf("%d more guesses from new addresses, want 0", got)
	}
	clk.Advance(12 * time.Second)
	if got := attack(t, nc, "sam", 40); got != 1 {
		t.Fatalf("%d guesses 12 s later, want 1", got)
	}

	// Inside the owner's network: that network's own allowance, five
	// then limited; the owner's other network is untouched.
	for i := range 5 {
		_, err := login(nc, fmt.Sprintf("192.0.2.%d:1", 100+i), "sam", "guess")
		wantCode(t, err, parleyv1.ErrorCode_ERROR_CODE_BAD_CREDENTIALS)
	}
	_, err = login(nc, "192.0.2.10:1", "sam", "sam's password")
	wantCode(t, err, parleyv1.ErrorCode_ERROR_CODE_RATE_LIMITED)
	if _, err := login(nc, "[2001:db8:bb::2]:1", "sam", "sam's password"); err != nil {
		t.Errorf("owner from the other network: %v", err)
	}

	// A name that does not exist is limited exactly like one that does,
	// so the limit does not reveal which accounts exist.
	if got := attack(t, nc, "nosuchuser", 40); got != cfg.LoginAccountBurst {
		t.Fatalf("unknown account: %d guesses, want %d", got, cfg.LoginAccountBurst)
	}
	_, errUnknown := login(nc, "198.51.100.9:1", "nosuchuser", "x")
	_, errKnown := login(nc, "198.51.100.9:1", "sam", "x")
	eu := wantCode(t, errUnknown, parleyv1.ErrorCode_ERROR_CODE_RATE_LIMITED)
	ek := wantCode(t, errKnown, parleyv1.ErrorCode_ERROR_CODE_RATE_LIMITED)
	if eu.Message != ek.Message {
		t.Errorf("messages differ: unknown %q, known %q", eu.Message, ek.Message)
	}
}

// The owner on a network never used before is a stranger while the
// account is attacked: refused (RATE_LIMITED, with a retry time) until an
// attempt is free. A session the owner holds goes on, and once the owner
// is in, that network is familiar.
func TestOwnerOnNewNetworkDuringAttack(t *testing.T) {
	ns := testenv.NATS(t)
	clk := newClock()
	cfg := fastConfig()
	startAuthClock(t, ns.ClientURL(), cfg, clk.Now)
	nc := testenv.Connect(t, ns)
	phone := mustRegister(t, nc, "tess", "tess's password")

	attack(t, nc, "tess", 20)
	_, err := login(nc, "198.51.100.7:1", "tess", "tess's password")
	e := wantCode(t, err, parleyv1.ErrorCode_ERROR_CODE_RATE_LIMITED)
	if e.RetryAfter == 0 || e.RetryAfter > 12000 {
		t.Errorf("retry after %d ms, want at most 12000 (one attempt every 12 s)", e.RetryAfter)
	}
	if _, err := resume(nc, phone.Token); err != nil {
		t.Fatalf("the owner's session during the attack: %v", err)
	}
	// The owner gets the next free attempt (the attacker did not take it).
	clk.Advance(time.Duration(e.RetryAfter) * time.Millisecond)
	if _, err := login(nc, "198.51.100.7:1", "tess", "tess's password"); err != nil {
		t.Fatalf("owner after retry-after: %v", err)
	}
	attack(t, nc, "tess", 20)
	if _, err := login(nc, "198.51.100.8:1", "tess", "tess's password"); err != nil {
		t.Fatalf("owner's new network, now familiar, during the attack: %v", err)
	}
}

// Familiar locations are kept with the account in KV: a replica that never
// saw the owner (restarted, or another one) knows them; they are forgotten
// 30 days after the last login from them.
func TestFamiliarLocationsPersist(t *testing.T) {
	ns := testenv.NATS(t)
	clk := newClock()
	cfg := fastConfig()
	first := startAuthClock(t, ns.ClientURL(), cfg, clk.Now)
	nc := testenv.Connect(t, ns)
	mustRegister(t, nc, "uri", "uri's password")
	if _, err := login(nc, "198.51.100.7:1", "uri", "uri's password"); err != nil {
		t.Fatal(err)
	}
	first.stop()
	startAuthClock(t, ns.ClientURL(), cfg, clk.Now)

	attack(t, nc, "uri", 20)
	if _, err := login(nc, "198.51.100.9:1", "uri", "uri's password"); err != nil {
		t.Fatalf("owner from a network the previous replica saw: %v", err)
	}

	clk.Advance(30 * 24 * time.Hour)
	attack(t, nc, "uri", 20)
	for _, from := range []string{"198.51.100.9:1", clientAddr} {
		_, err := login(nc, from, "uri", "uri's password")
		wantCode(t, err, parleyv1.ErrorCode_ERROR_CODE_RATE_LIMITED)
	}
}
