package e2e

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

type cliResult struct {
	out string
	err error
}

// runParley runs the real `parley` binary with the password on stdin.
func runParley(t *testing.T, server, cfgDir string, args ...string) cliResult {
	t.Helper()
	return runParleyArgs(t, "tcp://"+server, cfgDir, args...)
}

// runParleyArgs is runParley with a full server URL (tls://, ws://, ...).
func runParleyArgs(t *testing.T, serverURL, cfgDir string, args ...string) cliResult {
	t.Helper()
	full := append([]string{"--server", serverURL, "--config-dir", cfgDir}, args...)
	cmd := exec.Command(filepath.Join(bins, "parley"), full...)
	cmd.Stdin = strings.NewReader(pw + "\n")
	cmd.Env = append(cmd.Environ(), "PARLEY_PASSWORD=")
	done := make(chan struct{})
	var out []byte
	var err error
	go func() { out, err = cmd.CombinedOutput(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("parley %v did not finish in 30s: %s", args, out)
	}
	return cliResult{out: string(out), err: err}
}

// startParley starts a long-running `parley` subcommand (watch).
func startParley(t *testing.T, server, cfgDir string, args ...string) *proc {
	t.Helper()
	full := append([]string{"--server", "tcp://" + server, "--config-dir", cfgDir}, args...)
	return start(t, "parley", nil, full...)
}

// waitOutput waits until the process printed a line containing s.
func (p *proc) waitOutput(t *testing.T, s string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !strings.Contains(p.out.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("%s did not print %q within %s; output:\n%s", p.name, s, within, p.out.String())
		}
		time.Sleep(25 * time.Millisecond)
	}
}
