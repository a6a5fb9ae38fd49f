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
	// user send 120 messages in a row (the catch-up check). The runner is
	// told the first two; the others it reads from Welcome.
	tcp, httpAddr, admin := addr(testenv.FreePort(t)), addr(testenv.FreePort(t)), addr(testenv.FreePort(t))
	p := start(t, "parleyd", []string{"PARLEY_REGISTER_IP_LIMIT=0", "PARLEY_LOGIN_IP_LIMIT=0"},
		"-data-dir", t.TempDir(), "-tcp-addr", tcp, "-http-addr", httpAddr, "-admin-addr", admin,
		"-handshake-timeout", "2s", "-token-grace", "3s", "-idle-timeout", "4s", "-heartbeat-interval", "1s",
		"-msg-send-burst", "500", "-argon2-memory", "1024", "-argon2-time", "1")
	waitReady(t, p, admin)
	p.waitOutput(t, "parleyd ready", 5*time.Second)

	cmd := exec.CommandContext(ctxT(t, 8*time.Minute), node, filepath.Join(dir, "run.js"),
		"--tcp", tcp, "--ws", "ws://"+httpAddr+"/v1/ws", "--handshake-timeout-ms", "2000", "--token-grace-ms", "3000")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the outsider client's checks failed (%v):\n%s", err, out)
	}
	t.Logf("%s", out)
}
