package e2e

import (
	"testing"
	"time"

	"github.com/parleychat/parley/clients/parley"
	"github.com/parleychat/parley/libs/testenv"
)

// startParleyd runs the one-binary default on free ports with its data in dir.
func startParleyd(t *testing.T, dir string) (p *proc, tcp, ws string) {
	t.Helper()
	tcp, httpAddr, admin := addr(testenv.FreePort(t)), addr(testenv.FreePort(t)), addr(testenv.FreePort(t))
	p = start(t, "parleyd", []string{"PARLEY_REGISTER_IP_LIMIT=0", "PARLEY_LOGIN_IP_LIMIT=0"},
		"-data-dir", dir, "-tcp-addr", tcp, "-http-addr", httpAddr, "-admin-addr", admin)
	waitReady(t, p, admin)
	p.waitOutput(t, "parleyd ready", 5*time.Second)
	return p, tcp, "ws://" + httpAddr + "/v1/ws"
}

// TestOneBinary: the same flow as the multi-process test against parleyd,
// and accounts survive a restart of the process.
func TestOneBinary(t *testing.T) {
	dir := t.TempDir()
	pd, tcp, ws := startParleyd(t, dir)

	alice, as := registered(t, "tcp://"+tcp, "alice")
	bob, bs := registered(t, ws, "bob")
	seesOnline(t, alice, bs.Username, true, 10*time.Second)
	seesOnline(t, bob, as.Username, true, 10*time.Second)

	carol := uniq("carol")
	cfgDir := t.TempDir()
	if r := runParley(t, tcp, cfgDir, "register", "--user", carol, "--password-stdin"); r.err != nil {
		t.Fatalf("parley register: %v\n%s", r.err, r.out)
	}
	watch := startParley(t, tcp, cfgDir, "watch")
	watch.waitOutput(t, "online "+bs.Username, 10*time.Second) // its snapshot arrived
	seesOnline(t, alice, carol, true, 10*time.Second)

	if err := bob.Logout(ctxS(t)); err != nil {
		t.Fatal(err)
	}
	seesOnline(t, alice, bs.Username, false, 10*time.Second)
	watch.waitOutput(t, "offline "+bs.Username, 10*time.Second)
	watch.kill()
	seesOnline(t, alice, carol, false, 10*time.Second)

	// Restart: accounts and sessions are on disk. alice's client reconnects
	// and resumes by itself; bob logs in with his password.
	pd.stop(t, 15*time.Second)
	_, tcp2, _ := restartParleydOn(t, dir, tcp)
	waitEvent(t, alice, 30*time.Second, "reconnect", func(ev parley.Event) bool {
		_, ok := ev.(parley.ReconnectedEvent)
		return ok
	})
	if s := alice.Session(); s == nil || s.UserID != as.UserID {
		t.Fatalf("after reconnect session = %+v, want user %s", s, as.UserID)
	}
	b2 := dial(t, "tcp://"+tcp2)
	if _, err := b2.Login(ctxS(t), bs.Username, pw); err != nil {
		t.Fatalf("login after restart: %v", err)
	}
	seesOnline(t, alice, bs.Username, true, 10*time.Second)
}

// restartParleydOn starts parleyd again on the same TCP address so clients
// reconnect to where they were.
func restartParleydOn(t *testing.T, dir, tcp string) (*proc, string, string) {
	t.Helper()
	httpAddr, admin := addr(testenv.FreePort(t)), addr(testenv.FreePort(t))
	p := start(t, "parleyd", []string{"PARLEY_REGISTER_IP_LIMIT=0", "PARLEY_LOGIN_IP_LIMIT=0"},
		"-data-dir", dir, "-tcp-addr", tcp, "-http-addr", httpAddr, "-admin-addr", admin)
	waitReady(t, p, admin)
	return p, tcp, "ws://" + httpAddr + "/v1/ws"
}
