package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/parleychat/parley/libs/testenv"
)

// TestOutsiderClient runs tests/outsider, a second Parley client written in
// JavaScript from docs/protocol.md, the README and the schema alone, against
// parleyd. Each of its checks asserts what the document promises, naming the
// section, so a failure is a place where the server and the document
// disagree. Its npm packages are installed by scripts/deps.sh.
func TestOutsiderClient(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("the outsider client needs Node.js 20 (scripts/deps.sh installs it): %v", err)
	}
	dir, err := filepath.Abs(filepath.Join("..", "outsider"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "protobufjs", "package.json")); err != nil {
		t.Fatalf("tests/outsider's npm packages are missing: run scripts/deps.sh (%v)", err)
	}

	// Short handshake timeout, token grace, idle timeout and heartbeat so
	// the checks that wait for them are quick; a send burst that lets one
	// user send 120 messages in a row (the catch-up check); a short ring
	// time and offer lifetime (the missed call, the expired offer) and a
	// small direct-session relay allowance (the relay's rate check). The
	// runner is told those Welcome does not announce. Call media goes to a
	// UDP port of its own; the rendezvous's STUN ports are free ones
	// (start sets them).
	tcp, httpAddr, admin := addr(testenv.FreePort(t)), addr(testenv.FreePort(t)), addr(testenv.FreePort(t))
	udp := addr(testenv.FreeUDPPort(t))
	p := start(t, "parleyd", []string{"PARLEY_REGISTER_IP_LIMIT=0", "PARLEY_LOGIN_IP_LIMIT=0"},
		"-data-dir", t.TempDir(), "-tcp-addr", tcp, "-http-addr", httpAddr, "-admin-addr", admin, "-udp-addr", udp,
		"-handshake-timeout", "2s", "-token-grace", "3s", "-idle-timeout", "4s", "-heartbeat-interval", "1s",
		"-msg-send-burst", "500", "-argon2-memory", "1024", "-argon2-time", "1",
		"-relay-ring-timeout", "8s", "-rdv-offer-timeout", "10s", "-p2p-relay-rate", "65536", "-p2p-relay-burst", "16384")
	waitReady(t, p, admin)
	p.waitOutput(t, "parleyd ready", 5*time.Second)

	cmd := exec.CommandContext(ctxT(t, 8*time.Minute), node, filepath.Join(dir, "run.js"),
		"--tcp", tcp, "--ws", "ws://"+httpAddr+"/v1/ws", "--handshake-timeout-ms", "2000", "--token-grace-ms", "3000",
		"--ring-ms", "8000", "--offer-ttl-ms", "10000", "--p2p-relay-rate", "65536", "--p2p-relay-burst", "16384")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the outsider client's checks failed (%v):\n%s", err, out)
	}
	t.Logf("%s", out)
}
