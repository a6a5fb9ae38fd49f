// Package buildinfo_test checks that every Parley binary says which build
// it is: built the way the Makefile and the Dockerfile build them (version
// and commit given with -ldflags -X), each answers -version with one line
// and status 0, and a running service exports parley_build_info on its
// admin port.
package buildinfo_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/parleychat/parley/libs/testenv"
	"github.com/parleychat/parley/tests/internal/binaries"
)

const (
	testVersion = "9.8.7-test.1"
	testCommit  = "feedc0ffee12"
)

// binDir holds every binary the Makefile builds (binaries.Targets but
// the NATS server), built with the Makefile's -X flags.
var binDir string

// names are the binaries under test.
func names() []string {
	var out []string
	for name := range binaries.Targets {
		if name != "nats-server" {
			out = append(out, name)
		}
	}
	return out
}

func TestMain(m *testing.M) {
	ldflags := fmt.Sprintf("-X github.com/parleychat/parley/libs/version.Version=%s -X github.com/parleychat/parley/libs/version.Commit=%s", testVersion, testCommit)
	binaries.MainFlags(m, &binDir, []string{"-ldflags", ldflags}, names()...)
}

func TestVersionFlag(t *testing.T) {
	dir := binDir
	for _, name := range names() {
		t.Run(name, func(t *testing.T) {
			// An environment variable of the same name must not change the
			// answer (nor, for a service, stop it: see libs/service).
			cmd := exec.Command(filepath.Join(dir, name), "-version")
			cmd.Env = append(os.Environ(), "PARLEY_VERSION=0.0.1")
			var stdout, stderr strings.Builder
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Run(); err != nil {
				t.Fatalf("%s -version: %v (want status 0)\nstderr: %s", name, err, stderr.String())
			}
			want := fmt.Sprintf("%s %s (commit %s, %s)\n", name, testVersion, testCommit, runtime.Version())
			if stdout.String() != want {
				t.Errorf("%s -version printed %q, want %q", name, stdout.String(), want)
			}
		})
	}
}

// The client also has a version command.
func TestClientVersionCommand(t *testing.T) {
	out, err := exec.Command(filepath.Join(binDir, "parley"), "version").Output()
	if err != nil {
		t.Fatalf("parley version: %v", err)
	}
	if want := fmt.Sprintf("parley %s (commit %s, %s)\n", testVersion, testCommit, runtime.Version()); string(out) != want {
		t.Errorf("parley version printed %q, want %q", out, want)
	}
}

// A service started against NATS and the one-process parleyd both export
// parley_build_info on their admin port.
func TestBuildInfoMetric(t *testing.T) {
	dir := binDir
	ns := testenv.NATS(t)
	want := fmt.Sprintf(`parley_build_info{commit="%s",goversion="%s",version="%s"} 1`, testCommit, runtime.Version(), testVersion)

	t.Run("auth", func(t *testing.T) {
		admin := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
		start(t, filepath.Join(dir, "auth"), "-nats-url", ns.ClientURL(), "-admin-addr", admin)
		if m := metrics(t, admin); !strings.Contains(m, want) {
			t.Errorf("auth /metrics lacks %s:\n%s", want, grep(m, "parley_build_info"))
		}
	})
	t.Run("parleyd", func(t *testing.T) {
		admin := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
		start(t, filepath.Join(dir, "parleyd"), "-data-dir", t.TempDir(),
			"-tcp-addr", fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)),
			"-http-addr", fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)),
			"-admin-addr", admin)
		if m := metrics(t, admin); !strings.Contains(m, want) {
			t.Errorf("parleyd /metrics lacks %s:\n%s", want, grep(m, "parley_build_info"))
		}
	})
}

// start runs bin until the test ends.
func start(t *testing.T, bin string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, args...)
	var logs strings.Builder
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("%s output:\n%s", filepath.Base(bin), logs.String())
		}
	})
}

// metrics fetches /metrics from the admin address once it answers.
func metrics(t *testing.T, admin string) string {
	t.Helper()
	var body string
	testenv.Eventually(t, 30*time.Second, "GET http://"+admin+"/metrics answers 200", func() bool {
		resp, err := http.Get("http://" + admin + "/metrics")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != http.StatusOK {
			return false
		}
		body = string(b)
		return true
	})
	return body
}

func grep(text, substr string) string {
	var lines []string
	for l := range strings.SplitSeq(text, "\n") {
		if strings.Contains(l, substr) {
			lines = append(lines, l)
		}
	}
	if len(lines) == 0 {
		return "(no " + substr + " line)"
	}
	return strings.Join(lines, "\n")
}
