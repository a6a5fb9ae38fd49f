package e2e

import (
	"crypto/tls"
	"strings"
	"testing"
	"time"

	"github.com/parleychat/parley/clients/parley"
	"github.com/parleychat/parley/libs/testenv"
)

// TestTLSTransports: a gateway with a certificate speaks TLS on its TCP
// port and WSS on its HTTP port; the SDK and the parley binary connect over
// both, plaintext clients are refused, and a client that does not trust the
// certificate fails the handshake.
func TestTLSTransports(t *testing.T) {
	certFile, keyFile, pool := testenv.SelfSigned(t)
	tcp, httpAddr, admin := addr(testenv.FreePort(t)), addr(testenv.FreePort(t)), addr(testenv.FreePort(t))
	p := start(t, "parleyd", []string{"PARLEY_REGISTER_IP_LIMIT=0", "PARLEY_TLS_CERT=" + certFile, "PARLEY_TLS_KEY=" + keyFile},
		"-data-dir", t.TempDir(), "-tcp-addr", tcp, "-http-addr", httpAddr, "-admin-addr", admin)
	waitReady(t, p, admin)

	tlsConf := parley.WithTLSConfig(&tls.Config{RootCAs: pool})
	alice, as := registered(t, "tls://"+tcp, "alice", tlsConf)
	bob, bs := registered(t, "wss://"+httpAddr+"/v1/ws", "bob", tlsConf)
	seesOnline(t, alice, bs.Username, true, 10*time.Second)
	seesOnline(t, bob, as.Username, true, 10*time.Second)

	// The terminal client with --tls-ca.
	cfgDir := t.TempDir()
	carol := uniq("carol")
	if r := runParleyArgs(t, "tls://"+tcp, cfgDir, "--tls-ca", certFile, "register", "--user", carol, "--password-stdin"); r.err != nil {
		t.Fatalf("parley register over TLS: %v\n%s", r.err, r.out)
	}
	r := runParleyArgs(t, "tls://"+tcp, cfgDir, "--tls-ca", certFile, "who")
	if r.err != nil || !strings.Contains(r.out, as.Username) || !strings.Contains(r.out, bs.Username) {
		t.Fatalf("parley who over TLS: %v\n%s", r.err, r.out)
	}
	// Without trusting the certificate the command fails with a message.
	if r := runParleyArgs(t, "tls://"+tcp, cfgDir, "who"); r.err == nil || strings.TrimSpace(r.out) == "" {
		t.Fatalf("parley who with an untrusted certificate: %v %q", r.err, r.out)
	}

	// Plaintext on the TLS port: the handshake never completes.
	if c, err := parley.Dial(ctxT(t, 3*time.Second), "tcp://"+tcp, parley.WithReconnect(false)); err == nil {
		c.Close()
		t.Fatal("plaintext client got through to a TLS port")
	}
	// A client that does not trust the certificate.
	if c, err := parley.Dial(ctxT(t, 3*time.Second), "tls://"+tcp, parley.WithReconnect(false)); err == nil {
		c.Close()
		t.Fatal("untrusted certificate accepted")
	}
}
