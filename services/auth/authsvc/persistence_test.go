package authsvc_test

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/parleychat/parley/libs/subject"
	"github.com/parleychat/parley/libs/testenv"
	"github.com/parleychat/parley/services/auth/authsvc"
)

func TestSigningKeySharedAndPersistent(t *testing.T) {
	ns := testenv.NATS(t)
	cfg := fastConfig() // no -token-key: generated and kept in KV
	// Two replicas start at once and race to create the key.
	var a, b *instance
	var wg sync.WaitGroup
	wg.Go(func() { a = startAuth(t, ns.ClientURL(), cfg) })
	wg.Go(func() { b = startAuth(t, ns.ClientURL(), cfg) })
	wg.Wait()
	nc := testenv.Connect(t, ns)

	var tokens []string
	for _, name := range []string{"ivan", "judy", "ken", "leo", "mallory", "niaj"} {
		tokens = append(tokens, mustRegister(t, nc, name, "a fine password").Token)
	}
	check := func(when string) {
		t.Helper()
		for _, tok := range tokens {
			if _, err := resume(nc, tok); err != nil {
				t.Fatalf("%s: resume: %v", when, err)
			}
		}
	}
	// Whichever replica issued a token, the other accepts it.
	a.stop()
	check("only replica b running")
	c := startAuth(t, ns.ClientURL(), cfg)
	b.stop()
	check("after restart, only the new replica running")
	c.stop()
}

func TestAccountsSurviveNATSRestart(t *testing.T) {
	dir := t.TempDir()
	port := testenv.FreePort(t)
	ns := testenv.NATSAt(t, port, dir)
	in := startAuth(t, ns.ClientURL(), fastConfig())
	nc := testenv.Connect(t, ns)
	s := mustRegister(t, nc, "olivia", "olivia's password")

	ns.Shutdown()
	ns.WaitForShutdown()
	testenv.Eventually(t, 5*time.Second, "auth not ready while NATS is down", func() bool { return in.svc.Ready() != nil })

	testenv.NATSAt(t, port, dir)
	testenv.Eventually(t, 10*time.Second, "auth ready after NATS restart", func() bool { return in.svc.Ready() == nil })
	// Clients and the service reconnect on their own; JetStream needs a
	// moment to recover the streams.
	testenv.Eventually(t, 10*time.Second, "login after NATS restart", func() bool {
		_, err := login(nc, clientAddr, "olivia", "olivia's password")
		return err == nil
	})
	if _, err := resume(nc, s.Token); err != nil {
		t.Errorf("token from before the restart: %v", err)
	}
	_, err := register(nc, clientAddr, "Olivia", "another password")
	if err == nil || !strings.Contains(err.Error(), "USERNAME_TAKEN") {
		t.Errorf("re-register after restart: %v, want USERNAME_TAKEN", err)
	}
}

// storedHash reads an account's password hash straight from the bucket.
func storedHash(t *testing.T, url, key string) string {
	t.Helper()
	nc := testenvConnectURL(t, url)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	kv, err := js.KeyValue(ctx, subject.BucketAccounts)
	if err != nil {
		t.Fatal(err)
	}
	e, err := kv.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	var rec struct {
		UserID       string `json:"user_id"`
		Username     string `json:"username"`
		PasswordHash string `json:"password_hash"`
	}
	if err := json.Unmarshal(e.Value(), &rec); err != nil {
		t.Fatal(err)
	}
	if rec.UserID == "" || rec.Username == "" {
		t.Fatalf("account record %s", e.Value())
	}
	return rec.PasswordHash
}

func TestDefaultArgon2AndParameterChange(t *testing.T) {
	ns := testenv.NATS(t)
	old := startAuth(t, ns.ClientURL(), authsvc.DefaultConfig()) // the real OWASP parameters
	nc := testenv.Connect(t, ns)
	mustRegister(t, nc, "Peggy", "peggy's passphrase")
	if _, err := login(nc, clientAddr, "peggy", "peggy's passphrase"); err != nil {
		t.Fatalf("login with default parameters: %v", err)
	}
	if h := storedHash(t, ns.ClientURL(), "peggy"); !strings.HasPrefix(h, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Fatalf("stored hash %q does not use the defaults", h)
	}
	old.stop()

	// The operator changes the parameters: old hashes still verify (their
	// parameters are read from the hash) and are upgraded on login.
	startAuth(t, ns.ClientURL(), fastConfig())
	_, err := login(nc, clientAddr, "peggy", "wrong password")
	if err == nil {
		t.Fatal("wrong password accepted")
	}
	if _, err := login(nc, clientAddr, "peggy", "peggy's passphrase"); err != nil {
		t.Fatalf("login after parameter change: %v", err)
	}
	if h := storedHash(t, ns.ClientURL(), "peggy"); !strings.HasPrefix(h, "$argon2id$v=19$m=64,t=1,p=1$") {
		t.Fatalf("hash not upgraded: %q", h)
	}
	if _, err := login(nc, clientAddr, "peggy", "peggy's passphrase"); err != nil {
		t.Fatalf("login with upgraded hash: %v", err)
	}
}
