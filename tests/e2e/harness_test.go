// Package e2e runs Parley's real binaries as separate processes (nats-server,
// redis-server, auth, presence, gateway, parleyd, parley) and drives them
// with the Go SDK exactly as a user's client would.
package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/parleychat/parley/libs/testenv"
	"github.com/parleychat/parley/tests/internal/binaries"
)

// bins holds the binaries built once for the whole package.
var bins string

func TestMain(m *testing.M) { binaries.Main(m, &bins) }

// proc is one running binary.
type proc struct {
	name string
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// start runs binary name with args and PARLEY_* env; it is killed at the end
// of the test, and its output is printed if the test failed.
func start(t *testing.T, name string, env []string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, out: &syncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(filepath.Join(bins, name), args...)
	p.cmd.Env = os.Environ()
	if name == "parleyd" {
		// Its rendezvous on any free ports (tests run in parallel); env
		// may still set others.
		p.cmd.Env = append(p.cmd.Env, "PARLEY_STUN_ADDR=127.0.0.1:0", "PARLEY_STUN_ALT_ADDR=127.0.0.2:0")
	}
	p.cmd.Env = append(p.cmd.Env, env...)
	p.cmd.Stdout = p.out
	p.cmd.Stderr = p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("---- %s output ----\n%s", name, p.out.String())
		}
	})
	return p
}

// kill sends SIGKILL and waits.
func (p *proc) kill() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Kill()
	<-p.done
}

// stop sends SIGTERM and waits up to within for a clean exit.
func (p *proc) stop(t *testing.T, within time.Duration) {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		if code := p.cmd.ProcessState.ExitCode(); code != 0 {
			t.Fatalf("%s exited with %d after SIGTERM\n%s", p.name, code, p.out.String())
		}
	case <-time.After(within):
		t.Fatalf("%s did not stop within %s of SIGTERM", p.name, within)
	}
}

// waitReady polls an admin port's /readyz until it answers 200.
func waitReady(t *testing.T, p *proc, adminAddr string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			t.Fatalf("%s exited before ready:\n%s", p.name, p.out.String())
		default:
		}
		resp, err := http.Get("http://" + adminAddr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s not ready at %s within 30s:\n%s", p.name, adminAddr, p.out.String())
}

func addr(port int) string { return "127.0.0.1:" + strconv.Itoa(port) }

// cluster is a multi-process Parley: one nats-server, one redis-server, auth,
// presence, messaging, any number of gateways and, with clusterOpts.files,
// a MinIO server and the file service.
type cluster struct {
	t        *testing.T
	natsURL  string
	natsCA   *testenv.CA             // clusterOpts.secure: the CA of the NATS server's and every deployable's certificate
	natsCert map[string]testenv.Pair // each deployable's client certificate, issued once
	redis    *testenv.Redis
	auth     *proc
	presence *proc
	msgs     []*proc // messaging replicas
	gateways []*gatewayProc
	authEnv  []string

	// Files (clusterOpts.files): the object store every gateway and the
	// file service share, and the file service.
	minio      *testenv.MinIO
	storageEnv []string // PARLEY_MINIO_* for the file service and gateways
	file       *proc
	fileAdmin  string

	relays []*relayProc // media-relay replicas (clusterOpts.relays)

	// More replicas (clusterOpts.replicas): auth and presence beyond
	// c.auth and c.presence, file services beyond c.file, and the
	// rendezvous replicas (clusterOpts.rendezvous).
	extra []*proc
}

// relayProc is one media-relay replica.
type relayProc struct {
	*proc
	admin string
	id    string
}

type gatewayProc struct {
	*proc
	tcp, http, admin string
	udp              string // media port
	publicUDP        string // -public-udp-addr (an impairing proxy in front of udp); empty: the default
	id               string
	env              []string // more settings (PARLEY_*), after the harness's
}

// httpBase is the gateway's HTTP base URL (WebSocket and file transfers).
func (g *gatewayProc) httpBase() string { return "http://" + g.http }

type clusterOpts struct {
	sessionPolicy string // auth -session-policy
	gatewayTTL    string // presence -gateway-ttl
	tokenTTL      string // auth -token-ttl
	messaging     int    // messaging replicas (default 1)
	// files starts MinIO and the file service and gives every gateway the
	// file endpoints (/v1/files on its HTTP port).
	files bool
	// storageDown stops MinIO before the file service and the gateways
	// start (cluster.minio.Start brings it up).
	storageDown bool
	// relays starts this many media-relay replicas (voice calls).
	relays int
	// secure runs NATS as Kubernetes does: TLS, a client certificate
	// required and mapped to a user, the shipped permission file
	// (k8s/base/nats-auth.conf); every binary connects with its own
	// deployable's certificate (-nats-ca, -nats-cert, -nats-key).
	secure bool
	// replicas of auth, presence and (with files) the file service
	// (default 1).
	replicas int
	// rendezvous starts this many rendezvous replicas (direct sessions).
	rendezvous int
}

func newCluster(t *testing.T, gateways int, o clusterOpts) *cluster {
	t.Helper()
	c := &cluster{t: t}
	natsPort := testenv.FreePort(t)
	if o.secure {
		c.natsCA, c.natsCert = testenv.NewCA(t), map[string]testenv.Pair{}
		conf, _ := testenv.SecureNATSConfig(t, c.natsCA, addr(natsPort), t.TempDir())
		start(t, "nats-server", nil, "-c", conf)
	} else {
		start(t, "nats-server", nil, "-a", "127.0.0.1", "-p", strconv.Itoa(natsPort), "-js", "-sd", t.TempDir())
	}
	testenv.WaitTCP(t, addr(natsPort), 20*time.Second)
	c.natsURL = "nats://" + addr(natsPort)
	c.redis = testenv.StartRedis(t)

	policy := o.sessionPolicy
	if policy == "" {
		policy = "multi"
	}
	if o.tokenTTL != "" {
		c.authEnv = append(c.authEnv, "PARLEY_TOKEN_TTL="+o.tokenTTL)
	}
	authAdmin := addr(testenv.FreePort(t))
	c.authEnv = append(c.authEnv, c.natsEnv("auth")...)
	c.authEnv = append(c.authEnv, "PARLEY_SESSION_POLICY="+policy, "PARLEY_REGISTER_IP_LIMIT=0", "PARLEY_LOGIN_IP_LIMIT=0",
		// Cheaper hashing keeps the suite fast; the defaults are
		// measured by the benchmark.
		"PARLEY_ARGON2_MEMORY=1024", "PARLEY_ARGON2_TIME=1")
	c.auth = start(t, "auth", append(c.authEnv, "PARLEY_ADMIN_ADDR="+authAdmin))
	waitReady(t, c.auth, authAdmin)

	ttl := o.gatewayTTL
	if ttl == "" {
		ttl = "15s"
	}
	presEnv := append(c.natsEnv("presence"), "PARLEY_REDIS_ADDR="+c.redis.Addr, "PARLEY_GATEWAY_TTL="+ttl, "PARLEY_SWEEP_INTERVAL=500ms")
	presAdmin := addr(testenv.FreePort(t))
	c.presence = start(t, "presence", append(presEnv, "PARLEY_ADMIN_ADDR="+presAdmin))
	waitReady(t, c.presence, presAdmin)
	for range o.replicas - 1 {
		c.addReplica("auth", c.authEnv)
		c.addReplica("presence", presEnv)
	}

	replicas := o.messaging
	if replicas == 0 {
		replicas = 1
	}
	for range replicas {
		c.addMessaging()
	}

	if o.files {
		c.minio = testenv.StartMinIO(t)
		c.storageEnv = []string{"PARLEY_MINIO_ENDPOINT=" + c.minio.Endpoint, "PARLEY_MINIO_ACCESS_KEY=" + c.minio.AccessKey,
			"PARLEY_MINIO_SECRET_KEY=" + c.minio.SecretKey, "PARLEY_MINIO_BUCKET=parley-e2e"}
		c.fileAdmin = addr(testenv.FreePort(t))
		if o.storageDown {
			c.minio.Stop()
		}
		c.startFile()
		for range o.replicas - 1 {
			c.addReplica("file", append(c.natsEnv("file"), c.storageEnv...))
		}
	}
	for i := range o.rendezvous {
		// Its STUN on two addresses of its own (free ports).
		c.addReplica("rendezvous", append(c.natsEnv("rendezvous"), fmt.Sprintf("PARLEY_STUN_ADDR=127.0.0.%d:0", 2*i+1),
			fmt.Sprintf("PARLEY_STUN_ALT_ADDR=127.0.0.%d:0", 2*i+2)))
	}

	for i := range o.relays {
		c.addRelay(fmt.Sprintf("relay%d", i+1))
	}

	for i := 0; i < gateways; i++ {
		c.addGateway(fmt.Sprintf("gw%d", i+1))
	}
	return c
}

// natsEnv is how binary name (the deployable) reaches NATS: the URL and,
// with clusterOpts.secure, the CA and its own client certificate, as the
// Kubernetes manifests mount them.
func (c *cluster) natsEnv(name string) []string {
	env := []string{"PARLEY_NATS_URL=" + c.natsURL}
	if c.natsCA == nil {
		return env
	}
	pair, ok := c.natsCert[name]
	if !ok {
		pair = c.natsCA.Client(c.t, name)
		c.natsCert[name] = pair
	}
	return append(env, "PARLEY_NATS_CA="+pair.CA, "PARLEY_NATS_CERT="+pair.Cert, "PARLEY_NATS_KEY="+pair.Key)
}

// addReplica starts one more replica of a service binary with env (and an
// admin port of its own) and waits until it is ready.
func (c *cluster) addReplica(name string, env []string) *proc {
	t := c.t
	t.Helper()
	admin := addr(testenv.FreePort(t))
	p := start(t, name, append(append([]string(nil), env...), "PARLEY_ADMIN_ADDR="+admin))
	waitReady(t, p, admin)
	c.extra = append(c.extra, p)
	return p
}

// addRelay starts one more media-relay replica.
func (c *cluster) addRelay(id string) *relayProc {
	t := c.t
	t.Helper()
	r := &relayProc{id: id, admin: addr(testenv.FreePort(t))}
	r.proc = start(t, "media-relay", append(c.natsEnv("media-relay"), "PARLEY_ADMIN_ADDR="+r.admin, "PARLEY_RELAY_ID="+id))
	waitReady(t, r.proc, r.admin)
	c.relays = append(c.relays, r)
	return r
}

// addMessaging starts one more messaging replica.
func (c *cluster) addMessaging() *proc {
	t := c.t
	t.Helper()
	admin := addr(testenv.FreePort(t))
	// A burst of 500 messages per user instead of 30: TestOfflineMessagesAndHistory
	// sends 120 in a row as fast as it can; the rate itself stays as deployed.
	p := start(t, "messaging", append(c.natsEnv("messaging"), "PARLEY_ADMIN_ADDR="+admin, "PARLEY_MSG_SEND_BURST=500"))
	waitReady(t, p, admin)
	c.msgs = append(c.msgs, p)
	return p
}

// startFile starts the file service on the cluster's file admin port
// (again, after restartFile's kill); its state is in NATS KV and MinIO, so
// a restarted one carries on.
func (c *cluster) startFile() {
	t := c.t
	t.Helper()
	env := append(append(c.natsEnv("file"), "PARLEY_ADMIN_ADDR="+c.fileAdmin), c.storageEnv...)
	c.file = start(t, "file", env)
	waitReady(t, c.file, c.fileAdmin)
}

// restartFile kills the file service (SIGKILL: no clean shutdown) and
// starts it again.
func (c *cluster) restartFile() {
	c.t.Helper()
	c.file.kill()
	c.startFile()
}

func (c *cluster) addGateway(id string) *gatewayProc {
	c.t.Helper()
	return c.addGatewayWith(id, nil)
}

// addGatewayWith is addGateway with a chance to change g (its ports are
// chosen) before it starts.
func (c *cluster) addGatewayWith(id string, change func(g *gatewayProc)) *gatewayProc {
	t := c.t
	t.Helper()
	g := &gatewayProc{id: id, tcp: addr(testenv.FreePort(t)), http: addr(testenv.FreePort(t)), admin: addr(testenv.FreePort(t)),
		udp: addr(testenv.FreeUDPPort(t))}
	if change != nil {
		change(g)
	}
	c.startGateway(g)
	c.gateways = append(c.gateways, g)
	return g
}

// startGateway starts g's process on g's ports, with the file endpoints
// when the cluster has file storage.
func (c *cluster) startGateway(g *gatewayProc) {
	t := c.t
	t.Helper()
	env := append(c.natsEnv("gateway"), "PARLEY_ADMIN_ADDR="+g.admin,
		"PARLEY_TCP_ADDR="+g.tcp, "PARLEY_HTTP_ADDR="+g.http, "PARLEY_UDP_ADDR="+g.udp, "PARLEY_GATEWAY_ID="+g.id,
		"PARLEY_PRESENCE_HEARTBEAT=1s")
	if g.publicUDP != "" {
		env = append(env, "PARLEY_PUBLIC_UDP_ADDR="+g.publicUDP)
	}
	env = append(env, c.storageEnv...)
	g.proc = start(t, "gateway", append(env, g.env...))
	waitReady(t, g.proc, g.admin)
}

// restartGateway kills g (SIGKILL: its clients and uploads are cut off
// with no goodbye) and starts it again on the same ports.
func (c *cluster) restartGateway(g *gatewayProc) {
	c.t.Helper()
	g.kill()
	c.startGateway(g)
}

// stopStartGateway stops a gateway with SIGTERM (as a rollout does) and
// starts it again on the same ports.
func (c *cluster) stopStartGateway(g *gatewayProc) {
	c.t.Helper()
	g.stop(c.t, 30*time.Second)
	c.startGateway(g)
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
