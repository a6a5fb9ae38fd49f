// Package testenv starts the real servers Parley's tests run against: an
// in-process nats-server with JetStream, and a private redis-server process
// on a free port. Nothing here is a fake.
package testenv

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// NATS starts an in-process nats-server with JetStream in a temporary
// directory and returns it; it is shut down when the test ends.
func NATS(t testing.TB) *server.Server {
	t.Helper()
	return NATSAt(t, -1, t.TempDir())
}

// NATSAt starts an in-process nats-server on port (-1: any free port) with
// JetStream stored in dir, so a test can restart a server on the same data.
func NATSAt(t testing.TB, port int, dir string) *server.Server {
	t.Helper()
	return StartNATS(t, &server.Options{
		Host:      "127.0.0.1",
		Port:      port,
		JetStream: true,
		StoreDir:  dir,
	})
}

// StartNATS starts an in-process nats-server with opts (logging and signal
// handling off) and waits until it accepts connections; it is shut down
// when the test ends.
func StartNATS(t testing.TB, opts *server.Options) *server.Server {
	t.Helper()
	opts.NoLog, opts.NoSigs = true, true
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatalf("nats-server: %v", err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready within 10s")
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	return s
}

// Connect returns a client connection to s, closed when the test ends.
func Connect(t testing.TB, s *server.Server) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(s.ClientURL(), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatalf("nats connect: %v", err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// Redis is a redis-server process started for one test.
type Redis struct {
	Addr string
	Port int
	cmd  *exec.Cmd
	bin  string
}

// RedisBinary finds redis-server: $PARLEY_REDIS_SERVER, then PATH. The
// project's `make test` installs it when missing.
func RedisBinary() (string, error) {
	if p := os.Getenv("PARLEY_REDIS_SERVER"); p != "" {
		return p, nil
	}
	p, err := exec.LookPath("redis-server")
	if err != nil {
		return "", fmt.Errorf("redis-server not found: run `make test` (it installs it) or set PARLEY_REDIS_SERVER")
	}
	return p, nil
}

// StartRedis starts a private redis-server without persistence on a free
// port; it is killed when the test ends. A missing redis-server fails the
// test: presence cannot be tested without it.
func StartRedis(t testing.TB) *Redis {
	t.Helper()
	bin, err := RedisBinary()
	if err != nil {
		t.Fatal(err)
	}
	r := &Redis{bin: bin, Port: FreePort(t)}
	r.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(r.Port))
	r.Start(t)
	t.Cleanup(r.Stop)
	return r
}

// Start (re)starts the server on its port, empty.
func (r *Redis) Start(t testing.TB) {
	t.Helper()
	dir := t.TempDir()
	r.cmd = exec.Command(r.bin, "--port", strconv.Itoa(r.Port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--daemonize", "no", "--dir", dir,
		"--logfile", filepath.Join(dir, "redis.log"))
	if err := r.cmd.Start(); err != nil {
		t.Fatalf("start redis-server: %v", err)
	}
	WaitTCP(t, r.Addr, 10*time.Second)
}

// Stop kills the server (its data is gone: it never persists).
func (r *Redis) Stop() {
	if r.cmd != nil && r.cmd.Process != nil {
		_ = r.cmd.Process.Kill()
		_ = r.cmd.Wait()
		r.cmd = nil
	}
}

// FreePort returns a TCP port that was free a moment ago on 127.0.0.1, for
// a server the test starts next. It is chosen below the kernel's ephemeral
// range (ip_local_port_range), where the outgoing connections of every
// process on the machine take their ports: a port from ":0" could be taken
// by one of them before the server binds it ("address already in use"),
// which happened with MinIO, NATS and many clients running at once. A
// port is never handed out twice by one test binary.
func FreePort(t testing.TB) int {
	t.Helper()
	return freePort(t, func(addr string) error {
		ln, err := net.Listen("tcp", addr)
		if err == nil {
			ln.Close()
		}
		return err
	})
}

// FreeUDPPort is FreePort for a UDP port (a call gateway's media port). The
// ports of FreePort and FreeUDPPort are never the same number.
func FreeUDPPort(t testing.TB) int {
	t.Helper()
	return freePort(t, func(addr string) error {
		pc, err := net.ListenPacket("udp", addr)
		if err == nil {
			pc.Close()
		}
		return err
	})
}

func freePort(t testing.TB, try func(addr string) error) int {
	t.Helper()
	portsMu.Lock()
	defer portsMu.Unlock()
	low := ephemeralLow()
	for range 1000 {
		p := portsLow + rand.IntN(low-portsLow)
		if portsGiven[p] {
			continue
		}
		if try("127.0.0.1:"+strconv.Itoa(p)) != nil {
			continue
		}
		portsGiven[p] = true
		return p
	}
	t.Fatalf("no free port in %d-%d", portsLow, low-1)
	return 0
}

// portsLow is the lowest port FreePort hands out.
const portsLow = 20000

var (
	portsMu    sync.Mutex
	portsGiven = map[int]bool{}
)

// ephemeralLow is the first port of the kernel's ephemeral range (32768
// when it cannot be read, or when the range leaves too little below it).
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	var lo, hi int
	if _, err := fmt.Sscan(string(b), &lo, &hi); err != nil || lo < portsLow+1000 {
		return 32768
	}
	return lo
}

// WaitTCP waits until addr accepts TCP connections.
func WaitTCP(t testing.TB, addr string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not accepting connections after %s: %v", addr, within, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Eventually polls cond every 20ms until it holds or within passes.
func Eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not true after %s: %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
