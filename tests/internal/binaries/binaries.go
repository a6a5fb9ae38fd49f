// Package binaries builds Parley's real binaries for the tests that run
// them as separate processes (tests/e2e, tests/natlab).
package binaries

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// Targets maps each binary's name to its package. They are built from
// the tests module, whose go.mod (and the workspace) points at this
// checkout, so the binaries are the code under test.
var Targets = map[string]string{
	"nats-server": "github.com/nats-io/nats-server/v2",
	"gateway":     "github.com/parleychat/parley/gateway/cmd/gateway",
	"auth":        "github.com/parleychat/parley/services/auth/cmd/auth",
	"presence":    "github.com/parleychat/parley/services/presence/cmd/presence",
	"messaging":   "github.com/parleychat/parley/services/messaging/cmd/messaging",
	"file":        "github.com/parleychat/parley/services/file/cmd/file",
	"media-relay": "github.com/parleychat/parley/services/mediarelay/cmd/media-relay",
	"rendezvous":  "github.com/parleychat/parley/services/rendezvous/cmd/rendezvous",
	"parleyd":     "github.com/parleychat/parley/standalone/cmd/parleyd",
	"parley":      "github.com/parleychat/parley/clients/cmd/parley",
}

// Build compiles the named binaries (every target when none is named)
// into dir, two at a time, and reports every failure.
func Build(dir string, names ...string) error { return BuildFlags(dir, nil, names...) }

// BuildFlags is Build with extra `go build` flags (the Makefile's
// -ldflags, say).
func BuildFlags(dir string, flags []string, names ...string) error {
	if len(names) == 0 {
		for name := range Targets {
			names = append(names, name)
		}
	}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	sem := make(chan struct{}, 2)
	for _, name := range names {
		pkg, ok := Targets[name]
		if !ok {
			return fmt.Errorf("binaries: no target %q", name)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			args := append(append([]string{"build"}, flags...), "-o", filepath.Join(dir, name), pkg)
			out, err := exec.Command("go", args...).CombinedOutput()
			if err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("%s: %v\n%s", name, err, out))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		return fmt.Errorf("%v", errs)
	}
	return nil
}

// Main is a test package's TestMain: it builds the named binaries (every
// target when none is named) into a temporary directory, sets *dir to it,
// runs the tests and removes the directory; a build failure ends the
// process with status 1.
func Main(m *testing.M, dir *string, names ...string) { MainFlags(m, dir, nil, names...) }

// MainFlags is Main building with extra `go build` flags.
func MainFlags(m *testing.M, dir *string, flags []string, names ...string) {
	d, err := os.MkdirTemp("", "parley-test-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	*dir = d
	if err := BuildFlags(d, flags, names...); err != nil {
		fmt.Fprintln(os.Stderr, "building binaries:", err)
		os.RemoveAll(d)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(d)
	os.Exit(code)
}
