package server_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/pion/stun/v3"

	"github.com/parleychat/parley/libs/objstore"
	"github.com/parleychat/parley/libs/testenv"
	"github.com/parleychat/parley/protocol/parleyv1"
	"github.com/parleychat/parley/protocol/wire"
	"github.com/parleychat/parley/standalone/server"
)

const token = "a-token-of-sixteen+chars"

// testConfig is parleyd's default configuration on free loopback ports,
// with cheap password hashing.
func testConfig(t *testing.T) server.Config {
	t.Helper()
	cfg := server.DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.Gateway.TCPAddr = fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	cfg.Gateway.HTTPAddr = fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	cfg.Gateway.UDPAddr = "127.0.0.1:0" // the media port: any free one (tests run in parallel)
	cfg.Rendezvous.STUNAddr, cfg.Rendezvous.STUNAltAddr = "127.0.0.1:0", "127.0.0.2:0"
	cfg.Gateway.GatewayID = "gw-test"
	cfg.Auth.Argon2Memory, cfg.Auth.Argon2Time = 64, 1
	return cfg
}

// run starts a parleyd with cfg for the rest of the test and waits until
// every part serves.
func run(t *testing.T, cfg server.Config) *server.Server {
	t.Helper()
	srv, err := server.New(cfg, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	testenv.Eventually(t, 20*time.Second, "parleyd ready", func() bool { return srv.Ready() == nil })
	return srv
}

// Nothing is served beyond loopback without credentials unless -insecure:
// the embedded NATS needs -nats-token, the admin port -admin-token.
func TestExposureRules(t *testing.T) {
	for _, tc := range []struct {
		name     string
		listen   string
		token    string
		insecure bool
		wantErr  bool
	}{
		{"in-process only", "", "", false, false},
		{"loopback v4", "127.0.0.1:4222", "", false, false},
		{"loopback v6", "[::1]:4222", "", false, false},
		{"localhost", "localhost:4222", "", false, false},
		{"all interfaces", ":4222", "", false, true},
		{"0.0.0.0", "0.0.0.0:4222", "", false, true},
		{"a LAN address", "192.0.2.7:4222", "", false, true},
		{"a name", "parley.example:4222", "", false, true},
		{"all interfaces with a token", "0.0.0.0:4222", token, false, false},
		{"all interfaces, insecure", "0.0.0.0:4222", "", true, false},
		{"a short token", "127.0.0.1:4222", "secret", false, true},
	} {
		t.Run("nats/"+tc.name, func(t *testing.T) {
			cfg := testConfig(t)
			cfg.NATSListen, cfg.NATSToken, cfg.Gateway.Insecure = tc.listen, tc.token, tc.insecure
			_, err := server.New(cfg, slog.New(slog.DiscardHandler), nil)
			if (err != nil) != tc.wantErr {
				t.Fatalf("New: %v, want error %v", err, tc.wantErr)
			}
			if tc.wantErr && tc.token == "" && !errors.Is(err, server.ErrExposed) {
				t.Errorf("error %v is not ErrExposed", err)
			}
		})
		t.Run("admin/"+tc.name, func(t *testing.T) {
			addr := tc.listen
			err := server.CheckAdmin(addr, tc.token, tc.insecure)
			if (err != nil) != tc.wantErr {
				t.Fatalf("CheckAdmin: %v, want error %v", err, tc.wantErr)
			}
		})
	}
}

// With -nats-token the embedded NATS refuses every client without it,
// while the in-process services (which present it) serve.
func TestNATSToken(t *testing.T) {
	cfg := testConfig(t)
	cfg.NATSListen = fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	cfg.NATSToken = token
	srv := run(t, cfg)

	url := srv.NATSURL()
	for name, opts := range map[string][]nats.Option{
		"no token":    nil,
		"wrong token": {nats.Token("a-token-of-sixteen+charz")},
	} {
		nc, err := nats.Connect(url, append(opts, nats.Timeout(5*time.Second))...)
		if err == nil {
			nc.Close()
			t.Fatalf("%s: connected", name)
		}
		if !errors.Is(err, nats.ErrAuthorization) {
			t.Errorf("%s: %v, want an authorization violation", name, err)
		}
	}
	nc, err := nats.Connect(url, nats.Token(token))
	if err != nil {
		t.Fatalf("with the token: %v", err)
	}
	defer nc.Close()
	// Joining as the README says works too.
	host, port, _ := net.SplitHostPort(cfg.NATSListen)
	nc2, err := nats.Connect(fmt.Sprintf("nats://%s@%s:%s", token, host, port))
	if err != nil {
		t.Fatalf("token in the URL: %v", err)
	}
	nc2.Close()
}

// A connection keeps its session after the token it authenticated with
// expires (protocol §8.3): the expiry bounds when the token can be
// presented, and a new connection cannot resume with it.
func TestConnectionOutlivesItsToken(t *testing.T) {
	now := atomic.Int64{}
	now.Store(time.Now().UnixNano())
	cfg := testConfig(t)
	cfg.Clock = func() time.Time { return time.Unix(0, now.Load()) }
	cfg.Auth.TokenTTL = time.Hour
	run(t, cfg)

	c := dialWire(t, cfg.Gateway.TCPAddr)
	sess := c.request(t, &parleyv1.Frame{Body: &parleyv1.Frame_Register{Register: &parleyv1.RegisterRequest{
		Username: "ada", Password: "ada's password", Options: &parleyv1.ClientOptions{SkipPresenceFeed: true}}}}).GetSession()
	if sess.GetToken() == "" {
		t.Fatal("register gave no session")
	}
	now.Add(int64(2 * time.Hour)) // the token is an hour past its expiry

	if r := c.request(t, &parleyv1.Frame{Body: &parleyv1.Frame_Who{Who: &parleyv1.WhoRequest{}}}); r.GetWhoReply() == nil {
		t.Fatalf("who after the token expired: %v", r)
	}
	r := c.request(t, &parleyv1.Frame{Body: &parleyv1.Frame_Send{Send: &parleyv1.SendRequest{
		Conversation: "room.public", Text: "still here", ClientKey: "k1"}}})
	if r.GetSendReply() == nil {
		t.Fatalf("send after the token expired: %v", r)
	}

	other := dialWire(t, cfg.Gateway.TCPAddr)
	r = other.request(t, &parleyv1.Frame{Body: &parleyv1.Frame_Resume{Resume: &parleyv1.ResumeRequest{Token: sess.GetToken()}}})
	if r.GetError().GetCode() != parleyv1.ErrorCode_ERROR_CODE_TOKEN_EXPIRED {
		t.Fatalf("resume with the expired token: %v, want TOKEN_EXPIRED", r)
	}
}

// wireConn is a bare protocol client: frames over TCP (protocol §2).
type wireConn struct {
	conn net.Conn
	r    *wire.Reader
	next uint32
}

func dialWire(t *testing.T, addr string) *wireConn {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	c := &wireConn{conn: conn, r: wire.NewReader(conn, 1<<20), next: 1}
	if r := c.request(t, &parleyv1.Frame{Body: &parleyv1.Frame_Hello{Hello: &parleyv1.Hello{Versions: []uint32{1}, Client: "server_test"}}}); r.GetWelcome() == nil {
		t.Fatalf("handshake: %v", r)
	}
	return c
}

// request sends f with the next request id and returns the frame that
// answers it, skipping events.
func (c *wireConn) request(t *testing.T, f *parleyv1.Frame) *parleyv1.Frame {
	t.Helper()
	f.RequestId = c.next
	c.next++
	_ = c.conn.SetDeadline(time.Now().Add(10 * time.Second))
	if err := wire.WriteFrame(c.conn, f); err != nil {
		t.Fatal(err)
	}
	for {
		r, err := c.r.ReadFrame()
		if errors.Is(err, io.EOF) {
			t.Fatalf("connection closed while waiting for reply %d", f.RequestId)
		}
		if err != nil {
			t.Fatal(err)
		}
		if r.GetRequestId() == f.RequestId {
			return r
		}
	}
}

// TestConfigValidation: a bad value in any component's configuration
// stops parleyd in New, before anything has started, with every problem
// reported at once and named by its flag.
func TestConfigValidation(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*server.Config)
		want   []string // each must appear in the error
	}{
		{"no data dir", func(c *server.Config) { c.DataDir = "" }, []string{"-data-dir"}},
		{"gateway: zero idle timeout", func(c *server.Config) { c.Gateway.IdleTimeout = 0 }, []string{"-idle-timeout"}},
		{"gateway: missing certificate", func(c *server.Config) { c.Gateway.TLSCert, c.Gateway.TLSKey = "/nonexistent.pem", "/nonexistent.key" }, []string{"-tls-cert"}},
		{"gateway: plaintext beyond loopback", func(c *server.Config) { c.Gateway.TCPAddr = "0.0.0.0:0" }, []string{"-insecure"}},
		{"auth: unknown session policy", func(c *server.Config) { c.Auth.SessionPolicy = "some" }, []string{"-session-policy"}},
		{"auth: no argon2 threads", func(c *server.Config) { c.Auth.Argon2Threads = 0 }, []string{"-argon2-threads"}},
		{"auth: short passwords", func(c *server.Config) { c.Auth.PasswordMinLen = 4 }, []string{"-password-min-len"}},
		{"presence: zero gateway TTL", func(c *server.Config) { c.Presence.GatewayTTL = 0 }, []string{"-gateway-ttl"}},
		{"messaging: nine replicas", func(c *server.Config) { c.Messaging.StreamReplicas = 9 }, []string{"-msg-stream-replicas"}},
		{"file: zero KV replicas", func(c *server.Config) { c.File.KVReplicas = 0 }, []string{"-file-kv-replicas"}},
		{"nats: no port", func(c *server.Config) { c.NATSListen = "127.0.0.1" }, []string{"-nats-listen"}},
		{"nats: short token", func(c *server.Config) { c.NATSToken = "short" }, []string{"-nats-token"}},
		{"storage: minio endpoint with a scheme", func(c *server.Config) {
			c.Storage.MinIO = objstore.MinIOConfig{Endpoint: "http://minio:9000", AccessKey: "k", SecretKey: "s", Bucket: "parley-files"}
		}, []string{"-minio-endpoint"}},
		{"storage: a directory and minio", func(c *server.Config) {
			c.Storage.Dir = "files"
			c.Storage.MinIO = objstore.MinIOConfig{Endpoint: "minio:9000", AccessKey: "k", SecretKey: "s", Bucket: "parley-files"}
		}, []string{"-storage-dir or -minio-endpoint, not both"}},
		{"one bad value in every component", func(c *server.Config) {
			c.Gateway.IdleTimeout = 0
			c.Auth.SessionPolicy = "some"
			c.Presence.GatewayTTL = 0
			c.Messaging.StreamReplicas = 9
			c.File.KVReplicas = 0
			c.NATSListen = "127.0.0.1"
			c.Storage.MinIO.Endpoint = "http://minio:9000"
		}, []string{"-idle-timeout", "-session-policy", "-gateway-ttl", "-msg-stream-replicas", "-file-kv-replicas", "-nats-listen", "-minio-endpoint"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t)
			cfg.DataDir = filepath.Join(cfg.DataDir, "parley-data")
			tt.mutate(&cfg)
			if err := cfg.Validate(); err == nil {
				t.Fatal("Validate accepted the configuration")
			}
			srv, err := server.New(cfg, slog.New(slog.DiscardHandler), nil)
			if err == nil {
				t.Fatal("New accepted the configuration")
			}
			if srv != nil {
				t.Error("New returned a server with its error")
			}
			for _, want := range tt.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("%q does not mention %s", err, want)
				}
			}
			if cfg.DataDir != "" {
				if _, err := os.Stat(cfg.DataDir); !os.IsNotExist(err) {
					t.Errorf("the data directory exists (stat: %v)", err)
				}
			}
		})
	}
	if err := testConfig(t).Validate(); err != nil {
		t.Errorf("the test configuration: %v", err)
	}
}

// The rendezvous runs inside parleyd: its defaults are the STUN port on
// 127.0.0.1 and an alternate on 127.0.0.2, and it answers STUN on both
// (RFC 5780: OTHER-ADDRESS names the alternate).
func TestRendezvous(t *testing.T) {
	d := server.DefaultConfig()
	if d.Rendezvous.STUNAddr != "127.0.0.1:3478" || d.Rendezvous.STUNAltAddr != "127.0.0.2:3479" {
		t.Fatalf("parleyd's rendezvous defaults: %q %q", d.Rendezvous.STUNAddr, d.Rendezvous.STUNAltAddr)
	}
	fs := flag.NewFlagSet("parleyd", flag.ContinueOnError)
	var c server.Config
	c.RegisterFlags(fs)
	if err := fs.Parse([]string{"-stun-addr", "127.0.0.1:5000", "-stun-alt-addr", "", "-udp-addr", "127.0.0.1:5001"}); err != nil {
		t.Fatal(err)
	}
	if c.Rendezvous.STUNAddr != "127.0.0.1:5000" || c.Rendezvous.STUNAltAddr != "" || c.Gateway.UDPAddr != "127.0.0.1:5001" {
		t.Fatalf("flags: rendezvous %q %q, gateway udp %q", c.Rendezvous.STUNAddr, c.Rendezvous.STUNAltAddr, c.Gateway.UDPAddr)
	}

	srv := run(t, testConfig(t))
	primary, alt := srv.STUNAddrs()
	if !strings.HasPrefix(primary, "127.0.0.1:") || !strings.HasPrefix(alt, "127.0.0.2:") {
		t.Fatalf("STUN addresses %q %q", primary, alt)
	}
	conn, err := net.Dial("udp", primary)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	req := stun.MustBuild(stun.TransactionID, stun.BindingRequest, stun.Fingerprint)
	res := new(stun.Message)
	buf := make([]byte, 1500)
	for try := 0; ; try++ {
		if _, err := conn.Write(req.Raw); err != nil {
			t.Fatal(err)
		}
		_ = conn.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		n, err := conn.Read(buf)
		if err == nil && stun.Decode(buf[:n], res) == nil && res.TransactionID == req.TransactionID {
			break
		}
		if try == 10 {
			t.Fatalf("no STUN answer from %s: %v", primary, err)
		}
	}
	var other stun.OtherAddress
	if err := other.GetFrom(res); err != nil || other.String() != alt {
		t.Fatalf("OTHER-ADDRESS %v (%v), want %s", other, err, alt)
	}
	var mapped stun.XORMappedAddress
	if err := mapped.GetFrom(res); err != nil || mapped.String() != conn.LocalAddr().String() {
		t.Fatalf("XOR-MAPPED-ADDRESS %v (%v), want %s", mapped, err, conn.LocalAddr())
	}
}
