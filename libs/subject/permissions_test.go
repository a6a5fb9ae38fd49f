package subject_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/parleychat/parley/libs/service"
	"github.com/parleychat/parley/libs/subject"
	"github.com/parleychat/parley/libs/testenv"
)

// TestShippedNATSAuthIsCurrent: the permission files Kubernetes loads
// (k8s/base's and the Helm chart's copy) are the table's rendering
// (regenerate both with scripts/generate.sh, or cd libs && go run
// ./cmd/natsauth -o ../<file>).
func TestShippedNATSAuthIsCurrent(t *testing.T) {
	for _, file := range []string{testenv.ShippedNATSAuth, "deploy/helm/parley/files/nats-auth.conf"} {
		got, err := os.ReadFile(filepath.Join(testenv.RepoRoot(t), file))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, subject.NATSConfig(true)) {
			t.Errorf("%s is stale: run `cd libs && go run ./cmd/natsauth -o ../%s`", file, file)
		}
	}
}

// client is one NATS connection under test with the permission errors the
// server reported to it.
type client struct {
	nc *nats.Conn
	js jetstream.JetStream

	mu     sync.Mutex // guards denied
	denied []string   // async "Permissions Violation" errors
}

// connect connects to s as deployable name (its certificate and inbox
// prefix, as libs/service does), or fails the test.
func connect(t *testing.T, s *server.Server, ca *testenv.CA, name string) *client {
	t.Helper()
	c, err := dial(t, s, ca, name)
	if err != nil {
		t.Fatalf("connect as %s: %v", name, err)
	}
	return c
}

func dial(t *testing.T, s *server.Server, ca *testenv.CA, name string) (*client, error) {
	t.Helper()
	pair := ca.Client(t, name)
	opts, err := service.NATSAuth{CA: ca.File, Cert: pair.Cert, Key: pair.Key}.Options()
	if err != nil {
		t.Fatal(err)
	}
	c := &client{}
	opts = append(opts, nats.CustomInboxPrefix(subject.InboxPrefix(name)),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			c.mu.Lock()
			defer c.mu.Unlock()
			c.denied = append(c.denied, err.Error())
		}))
	if c.nc, err = nats.Connect(s.ClientURL(), opts...); err != nil {
		return nil, err
	}
	t.Cleanup(c.nc.Close)
	if c.js, err = jetstream.New(c.nc); err != nil {
		t.Fatal(err)
	}
	return c, nil
}

func (c *client) denials() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.denied...)
}

// wasDenied waits for the server's permission error naming subj.
func (c *client) wasDenied(t *testing.T, op, subj string) {
	t.Helper()
	testenv.Eventually(t, 5*time.Second, "the server refuses to "+op+" "+subj, func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, e := range c.denied {
			if strings.Contains(e, "Permissions Violation for "+op) && strings.Contains(e, subj) {
				return true
			}
		}
		return false
	})
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	t.Cleanup(cancel)
	return c
}

// TestNATSPermissions runs a NATS server with the shipped permission file
// and the deployables' certificates, and checks the boundaries the issue
// asks for: the gateway reads neither the message stream nor a service's
// bucket, and cannot pose as a service; nobody connects without a
// certificate of the CA that maps to a user.
func TestNATSPermissions(t *testing.T) {
	ca := testenv.NewCA(t)
	s := testenv.SecureNATS(t, ca)

	// The owners create their stores, as the services do at start.
	msg := connect(t, s, ca, "messaging")
	stream, err := msg.js.CreateOrUpdateStream(ctx(t), jetstream.StreamConfig{
		Name: subject.StreamMessages, Subjects: []string{subject.StoreAll}, AllowDirect: true,
	})
	if err != nil {
		t.Fatalf("messaging creates its stream: %v", err)
	}
	if _, err := msg.js.Publish(ctx(t), subject.Store("room.public"), []byte("secret message")); err != nil {
		t.Fatalf("messaging stores a message: %v", err)
	}
	if m, err := stream.GetLastMsgForSubject(ctx(t), subject.Store("room.public")); err != nil || string(m.Data) != "secret message" {
		t.Fatalf("messaging reads its stream: %v", err)
	}
	auth := connect(t, s, ca, "auth")
	sessions, err := auth.js.CreateOrUpdateKeyValue(ctx(t), jetstream.KeyValueConfig{Bucket: subject.BucketSessions})
	if err != nil {
		t.Fatalf("auth creates its sessions bucket: %v (denied: %q)", err, auth.denials())
	}
	if _, err := sessions.Put(ctx(t), "s1", []byte("session of alice")); err != nil {
		t.Fatal(err)
	}
	if e, err := sessions.Get(ctx(t), "s1"); err != nil || string(e.Value()) != "session of alice" {
		t.Fatalf("auth reads its bucket: %v", err)
	}

	gw := connect(t, s, ca, "gateway")

	t.Run("gateway cannot read the message stream", func(t *testing.T) {
		if _, err := gw.js.Stream(ctx(t), subject.StreamMessages); err == nil {
			t.Error("stream info answered")
		}
		gw.wasDenied(t, "Publish", "$JS.API.STREAM.INFO."+subject.StreamMessages)
		if _, err := gw.js.CreateOrUpdateConsumer(ctx(t), subject.StreamMessages, jetstream.ConsumerConfig{}); err == nil {
			t.Error("consumer created on the message stream")
		}
		gw.wasDenied(t, "Publish", "$JS.API.CONSUMER.CREATE."+subject.StreamMessages)
		// A direct get, as messaging's history reads do.
		if _, err := gw.nc.Request("$JS.API.DIRECT.GET."+subject.StreamMessages, []byte(`{"seq":1}`), time.Second); err == nil {
			t.Error("direct get answered")
		}
		gw.wasDenied(t, "Publish", "$JS.API.DIRECT.GET."+subject.StreamMessages)
		// Nor the messages as they are stored.
		if _, err := gw.nc.SubscribeSync(subject.StoreAll); err != nil {
			t.Fatal(err)
		}
		gw.wasDenied(t, "Subscription", subject.StoreAll)
	})

	t.Run("gateway cannot read a service's bucket", func(t *testing.T) {
		if _, err := gw.js.KeyValue(ctx(t), subject.BucketSessions); err == nil {
			t.Error("sessions bucket opened")
		}
		gw.wasDenied(t, "Publish", "$JS.API.STREAM.INFO.KV_"+subject.BucketSessions)
		get := "$JS.API.DIRECT.GET.KV_" + subject.BucketSessions + ".$KV." + subject.BucketSessions + ".s1"
		if m, err := gw.nc.Request(get, nil, time.Second); err == nil {
			t.Errorf("direct get of a session answered %q", m.Data)
		}
		gw.wasDenied(t, "Publish", get)
		if _, err := gw.nc.SubscribeSync("$KV." + subject.BucketSessions + ".>"); err != nil {
			t.Fatal(err)
		}
		gw.wasDenied(t, "Subscription", "$KV."+subject.BucketSessions+".>")
	})

	t.Run("gateway cannot pose as a service", func(t *testing.T) {
		// Taking requests in auth's queue group (and so passwords).
		if _, err := gw.nc.QueueSubscribeSync(subject.AuthLogin, subject.QueueAuth); err != nil {
			t.Fatal(err)
		}
		gw.wasDenied(t, "Subscription", subject.AuthLogin)
		// Publishing a service's events to users: another gateway,
		// which delivers what arrives on a user's subjects, gets none.
		other := connect(t, s, ca, "gateway")
		sub, err := other.nc.SubscribeSync(subject.UserAll("*"))
		if err != nil {
			t.Fatal(err)
		}
		if err := other.nc.Flush(); err != nil {
			t.Fatal(err)
		}
		for _, subj := range []string{subject.UserMessages("bob"), subject.SessionKick("bob"), subject.PresenceEvents} {
			if err := gw.nc.Publish(subj, []byte("forged")); err != nil {
				t.Fatal(err)
			}
			gw.wasDenied(t, "Publish", subj)
		}
		// Reading a service's replies.
		if _, err := gw.nc.SubscribeSync(subject.InboxPrefix("auth") + ".>"); err != nil {
			t.Fatal(err)
		}
		gw.wasDenied(t, "Subscription", subject.InboxPrefix("auth"))
		// The internal requests only services make.
		if err := gw.nc.Publish(subject.AuthLookup, nil); err != nil {
			t.Fatal(err)
		}
		gw.wasDenied(t, "Publish", subject.AuthLookup)
		if m, err := sub.NextMsg(200 * time.Millisecond); err == nil {
			t.Errorf("a forged event reached a gateway on %s", m.Subject)
		}
	})

	t.Run("a service cannot pose as a gateway", func(t *testing.T) {
		// Reading users' events or sending as a user.
		if _, err := auth.nc.SubscribeSync(subject.UserAll("*")); err != nil {
			t.Fatal(err)
		}
		auth.wasDenied(t, "Subscription", subject.UserAll("*"))
		if err := auth.nc.Publish(subject.MsgSend, []byte("forged")); err != nil {
			t.Fatal(err)
		}
		auth.wasDenied(t, "Publish", subject.MsgSend)
		if err := msg.nc.Publish(subject.PresenceConnect, nil); err != nil {
			t.Fatal(err)
		}
		msg.wasDenied(t, "Publish", subject.PresenceConnect)
	})

	t.Run("requests and replies across identities", func(t *testing.T) {
		// The gateway asks auth; auth answers into the gateway's inbox
		// (allow_responses), which only the gateway reads.
		sub, err := auth.nc.QueueSubscribe(subject.AuthLogin, subject.QueueAuth, func(m *nats.Msg) { _ = m.Respond([]byte("welcome")) })
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = sub.Unsubscribe() }()
		if err := auth.nc.Flush(); err != nil {
			t.Fatal(err)
		}
		reply, err := gw.nc.Request(subject.AuthLogin, []byte("alice"), 2*time.Second)
		if err != nil || string(reply.Data) != "welcome" {
			t.Fatalf("login request: %v", err)
		}
		// auth may not publish to the gateway's inbox unasked.
		if err := auth.nc.Publish(subject.InboxPrefix("gateway")+".x", []byte("unasked")); err != nil {
			t.Fatal(err)
		}
		auth.wasDenied(t, "Publish", subject.InboxPrefix("gateway"))
	})

	t.Run("no certificate, no connection", func(t *testing.T) {
		// Plain, without TLS.
		if nc, err := nats.Connect(s.ClientURL(), nats.MaxReconnects(0)); err == nil {
			nc.Close()
			t.Error("connected without TLS")
		}
		// TLS that trusts the server, without a client certificate.
		if nc, err := nats.Connect(s.ClientURL(), nats.RootCAs(ca.File), nats.MaxReconnects(0)); err == nil {
			nc.Close()
			t.Error("connected without a client certificate")
		}
		// A certificate of the CA that is no deployable's.
		if _, err := dial(t, s, ca, "intruder"); err == nil || !errors.Is(err, nats.ErrAuthorization) {
			t.Errorf("unknown identity: err = %v, want an authorization violation", err)
		}
		// A deployable's name from another CA.
		other := testenv.NewCA(t)
		pair := other.Client(t, "gateway")
		if nc, err := nats.Connect(s.ClientURL(), nats.RootCAs(ca.File), nats.ClientCert(pair.Cert, pair.Key), nats.MaxReconnects(0)); err == nil {
			nc.Close()
			t.Error("connected with another CA's certificate")
		}
	})
}

// TestCertIdentityMapping records how nats-server maps a client
// certificate to a user under verify_and_map (subject.TLSUser relies on
// it): the subject DN maps, the common name alone does not.
func TestCertIdentityMapping(t *testing.T) {
	ca := testenv.NewCA(t)
	s := testenv.SecureNATS(t, ca)
	cases := []struct {
		name string
		tmpl *x509.Certificate
		ok   bool
	}{
		{"CN and O, as shipped", &x509.Certificate{Subject: pkix.Name{CommonName: "gateway", Organization: []string{"parley"}}}, true},
		{"CN alone", &x509.Certificate{Subject: pkix.Name{CommonName: "gateway"}}, false},
		{"another O", &x509.Certificate{Subject: pkix.Name{CommonName: "gateway", Organization: []string{"other"}}}, false},
	}
	for i, tc := range cases {
		tc.tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
		pair := ca.Issue(t, "case"+string(rune('a'+i)), tc.tmpl)
		nc, err := nats.Connect(s.ClientURL(), nats.RootCAs(ca.File), nats.ClientCert(pair.Cert, pair.Key), nats.MaxReconnects(0))
		if err == nil {
			nc.Close()
		}
		if (err == nil) != tc.ok {
			t.Errorf("%s: connect err = %v, want success %v", tc.name, err, tc.ok)
		}
	}
}

// TestMayPublish: the matcher the route tables are checked with agrees
// with NATS's wildcard rules.
func TestMayPublish(t *testing.T) {
	id := subject.Identity{Publish: []string{"a.b", "a.*.c", "x.>"}, Subscribe: []string{"u.*.>"}}
	for _, tc := range []struct {
		subj string
		want bool
	}{
		{"a.b", true}, {"a.b.d", false}, {"a", false},
		{"a.z.c", true}, {"a.z.d", false}, {"a.*.c", true}, {"a.>", false},
		{"x.y", true}, {"x.y.z", true}, {"x", false}, {"x.>", true},
	} {
		if got := id.MayPublish(tc.subj); got != tc.want {
			t.Errorf("MayPublish(%q) = %v, want %v", tc.subj, got, tc.want)
		}
	}
	if !id.MaySubscribe("u.bob.>") || !id.MaySubscribe("u.*.>") || id.MaySubscribe("u.>") || id.MaySubscribe(">") {
		t.Error("MaySubscribe wildcards")
	}
}
