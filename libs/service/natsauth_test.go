package service_test

import (
	"errors"
	"flag"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/parleychat/parley/libs/service"
	"github.com/parleychat/parley/libs/subject"
	"github.com/parleychat/parley/libs/testenv"
)

// TestNATSAuthFlags: every mistake in the -nats-* flags stops the binary
// at start with a message naming the flag, rather than a reconnect loop.
func TestNATSAuthFlags(t *testing.T) {
	ca := testenv.NewCA(t)
	gw := ca.Client(t, "gateway")
	other := ca.Client(t, "auth")
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not.pem")
	creds := filepath.Join(dir, "user.creds")
	for f, data := range map[string]string{notPEM: "hello\n", creds: "placeholder\n"} {
		if err := os.WriteFile(f, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	missing := filepath.Join(dir, "missing.pem")
	cases := []struct {
		name string
		args []string
		env  map[string]string
		is   error  // errors.Is target
		msg  string // substring of the error; "" with is nil: no error
	}{
		{name: "nothing: plain connection"},
		{name: "CA only", args: []string{"-nats-ca", ca.File}},
		{name: "mutual TLS", args: []string{"-nats-ca", ca.File, "-nats-cert", gw.Cert, "-nats-key", gw.Key}},
		{name: "from the environment", env: map[string]string{"PARLEY_NATS_CA": ca.File, "PARLEY_NATS_CERT": gw.Cert, "PARLEY_NATS_KEY": gw.Key}},
		{name: "creds", args: []string{"-nats-creds", creds}},
		{name: "cert without key", args: []string{"-nats-cert", gw.Cert}, is: service.ErrNATSCertKey},
		{name: "key without cert", args: []string{"-nats-key", gw.Key}, is: service.ErrNATSCertKey},
		{name: "creds and nkey", args: []string{"-nats-creds", creds, "-nats-nkey", creds}, is: service.ErrNATSCredsNkey},
		{name: "CA missing", args: []string{"-nats-ca", missing}, msg: "-nats-ca: open " + missing},
		{name: "CA not PEM", args: []string{"-nats-ca", notPEM}, msg: "-nats-ca: no PEM certificate"},
		{name: "cert missing", args: []string{"-nats-cert", missing, "-nats-key", gw.Key}, msg: "-nats-cert/-nats-key: open " + missing},
		{name: "key of another cert", args: []string{"-nats-cert", gw.Cert, "-nats-key", other.Key}, msg: "-nats-cert/-nats-key: tls: private key does not match"},
		{name: "creds missing", args: []string{"-nats-creds", missing}, msg: "-nats-creds: open " + missing},
		{name: "nkey missing", args: []string{"-nats-nkey", missing}, msg: "-nats-nkey: open " + missing},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			fs := flag.NewFlagSet("test", flag.ContinueOnError)
			var a service.NATSAuth
			a.RegisterFlags(fs)
			if err := service.Parse(fs, tc.args); err != nil {
				t.Fatal(err)
			}
			_, err := a.Options()
			switch {
			case tc.is != nil:
				if !errors.Is(err, tc.is) {
					t.Fatalf("err = %v, want %v", err, tc.is)
				}
			case tc.msg != "":
				if err == nil || !strings.Contains(err.Error(), tc.msg) {
					t.Fatalf("err = %v, want it to contain %q", err, tc.msg)
				}
			case err != nil:
				t.Fatalf("err = %v, want none", err)
			}
		})
	}
}

// TestNATSRenewedCertApplies: the client certificate is read from disk at
// every reconnect, so a renewal (cert-manager rewrites the Secret's files)
// takes effect without a restart — here seen as the server mapping the new
// certificate to another user.
func TestNATSRenewedCertApplies(t *testing.T) {
	ca := testenv.NewCA(t)
	s := testenv.SecureNATS(t, ca)
	first := ca.Client(t, "gateway")
	a := service.NATSAuth{CA: ca.File, Cert: first.Cert, Key: first.Key}
	opts, err := a.Options()
	if err != nil {
		t.Fatal(err)
	}
	opts = append(opts, nats.CustomInboxPrefix(subject.InboxPrefix("gateway")))
	nc, err := service.ConnectNATS(s.ClientURL(), "parley-test", slog.New(slog.DiscardHandler), opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	// ConnectNATS returns before the first connection (it retries).
	var cid uint64
	testenv.Eventually(t, 10*time.Second, "connected as the gateway", func() bool {
		var user string
		cid, user = authorizedUser(t, s)
		return nc.IsConnected() && user == subject.TLSUser("gateway")
	})

	// "Renew": the files now hold the auth deployable's certificate.
	second := ca.Client(t, "auth")
	for src, dst := range map[string]string{second.Cert: first.Cert, second.Key: first.Key} {
		data, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.DisconnectClientByID(cid); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, "reconnected with the renewed certificate", func() bool {
		_, user := authorizedUser(t, s)
		return nc.IsConnected() && user == subject.TLSUser("auth")
	})
}

// authorizedUser is the server's one client connection and the user it
// authenticated as.
func authorizedUser(t *testing.T, s *server.Server) (cid uint64, user string) {
	t.Helper()
	cz, err := s.Connz(&server.ConnzOptions{Username: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(cz.Conns) != 1 {
		return 0, ""
	}
	return cz.Conns[0].Cid, cz.Conns[0].AuthorizedUser
}

// TestNATSNkeyAndCreds: -nats-nkey and -nats-creds authenticate against a
// real server run with nkey users, and with an operator, an account and a
// user JWT (the .creds file nsc writes); a seed the server does not know
// is refused.
func TestNATSNkeyAndCreds(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		t.Helper()
		f := filepath.Join(dir, name)
		if err := os.WriteFile(f, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return f
	}
	connect := func(t *testing.T, s *server.Server, a service.NATSAuth) *nats.Conn {
		t.Helper()
		opts, err := a.Options()
		if err != nil {
			t.Fatal(err)
		}
		// Without RetryOnFailedConnect's retries, so a refusal is an error.
		opts = append(opts, nats.MaxReconnects(0), nats.RetryOnFailedConnect(false))
		nc, err := nats.Connect(s.ClientURL(), opts...)
		if err != nil {
			return nil
		}
		t.Cleanup(nc.Close)
		return nc
	}

	t.Run("nkey", func(t *testing.T) {
		user, err := nkeys.CreateUser()
		if err != nil {
			t.Fatal(err)
		}
		pub, _ := user.PublicKey()
		seed, _ := user.Seed()
		stranger, _ := nkeys.CreateUser()
		strangerSeed, _ := stranger.Seed()

		s := testenv.StartNATS(t, &server.Options{Host: "127.0.0.1", Port: -1, Nkeys: []*server.NkeyUser{{Nkey: pub}}})
		if nc := connect(t, s, service.NATSAuth{Nkey: write("user.nk", seed)}); nc == nil {
			t.Fatal("the server's nkey user was refused")
		}
		if _, got := authorizedUser(t, s); got != pub {
			t.Fatalf("authenticated as %q, want the nkey %q", got, pub)
		}
		if nc := connect(t, s, service.NATSAuth{Nkey: write("stranger.nk", strangerSeed)}); nc != nil {
			t.Fatal("an nkey the server does not know was accepted")
		}
		if nc := connect(t, s, service.NATSAuth{}); nc != nil {
			t.Fatal("a connection without credentials was accepted")
		}
	})

	t.Run("creds", func(t *testing.T) {
		okp, _ := nkeys.CreateOperator()
		opub, _ := okp.PublicKey()
		oc := jwt.NewOperatorClaims(opub)
		ojwt, err := oc.Encode(okp)
		if err != nil {
			t.Fatal(err)
		}
		akp, _ := nkeys.CreateAccount()
		apub, _ := akp.PublicKey()
		ac := jwt.NewAccountClaims(apub)
		ajwt, err := ac.Encode(okp)
		if err != nil {
			t.Fatal(err)
		}
		ukp, _ := nkeys.CreateUser()
		upub, _ := ukp.PublicKey()
		useed, _ := ukp.Seed()
		uc := jwt.NewUserClaims(upub)
		ujwt, err := uc.Encode(akp)
		if err != nil {
			t.Fatal(err)
		}
		creds, err := jwt.FormatUserConfig(ujwt, useed)
		if err != nil {
			t.Fatal(err)
		}
		opc, err := jwt.DecodeOperatorClaims(ojwt)
		if err != nil {
			t.Fatal(err)
		}
		resolver := &server.MemAccResolver{}
		if err := resolver.Store(apub, ajwt); err != nil {
			t.Fatal(err)
		}
		s := testenv.StartNATS(t, &server.Options{Host: "127.0.0.1", Port: -1, TrustedOperators: []*jwt.OperatorClaims{opc}, AccountResolver: resolver})
		if nc := connect(t, s, service.NATSAuth{Creds: write("user.creds", creds)}); nc == nil {
			t.Fatal("the account's user was refused")
		}
		if _, got := authorizedUser(t, s); got != upub {
			t.Fatalf("authenticated as %q, want the user %q", got, upub)
		}
		if nc := connect(t, s, service.NATSAuth{}); nc != nil {
			t.Fatal("a connection without credentials was accepted in operator mode")
		}
	})
}
