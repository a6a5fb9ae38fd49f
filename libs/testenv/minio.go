package testenv

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// MinIO is a MinIO server process (the real binary, run as a separate
// program: it is AGPL and never imported) started for a test.
type MinIO struct {
	Endpoint  string // "127.0.0.1:port", for objstore.MinIOConfig
	AccessKey string
	SecretKey string
	Port      int
	DataDir   string // survives Stop/Start
	LogFile   string // the server's output, appended across restarts

	bin         string
	consolePort int
	cmd         *exec.Cmd
	exited      chan struct{} // closed when cmd has exited
}

// minioStartTimeout bounds the wait for a started server to become ready.
const minioStartTimeout = 60 * time.Second

// MinIOBinary finds the minio server binary: $PARLEY_MINIO_BIN, then
// .tools/bin/minio in the repository (the directory holding go.work, found
// by walking up from the working directory), then PATH.
func MinIOBinary() (string, error) {
	if p := os.Getenv("PARLEY_MINIO_BIN"); p != "" {
		return p, nil
	}
	if dir, err := os.Getwd(); err == nil {
		for {
			if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
				p := filepath.Join(dir, ".tools", "bin", "minio")
				if _, err := os.Stat(p); err == nil {
					return p, nil
				}
				break
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				break
			}
			dir = parent
		}
	}
	if p, err := exec.LookPath("minio"); err == nil {
		return p, nil
	}
	return "", errors.New("minio server binary not found: run scripts/deps.sh (it builds .tools/bin/minio) or set PARLEY_MINIO_BIN")
}

// StartMinIO starts a MinIO server with a fresh data directory on a free
// port of 127.0.0.1 and waits until it is live; it is killed when the test
// ends, and its log is printed if the test failed. A missing binary fails
// the test: file storage cannot be tested without it.
func StartMinIO(t testing.TB) *MinIO {
	t.Helper()
	bin, err := MinIOBinary()
	if err != nil {
		t.Fatal(err)
	}
	m := &MinIO{
		AccessKey:   "parley-test",
		SecretKey:   "parley-test-secret",
		Port:        FreePort(t),
		consolePort: FreePort(t),
		DataDir:     t.TempDir(),
		bin:         bin,
	}
	for m.consolePort == m.Port {
		m.consolePort = FreePort(t)
	}
	m.LogFile = filepath.Join(t.TempDir(), "minio.log")
	m.Endpoint = net.JoinHostPort("127.0.0.1", strconv.Itoa(m.Port))
	t.Cleanup(func() {
		m.Stop()
		if t.Failed() {
			t.Logf("minio log (%s):\n%s", m.LogFile, m.readLog())
		}
	})
	m.Start(t)
	return m
}

// Start (re)starts the server on its port and data directory, so objects
// and unfinished uploads survive a Stop, and waits until it serves requests.
func (m *MinIO) Start(t testing.TB) {
	t.Helper()
	m.Spawn(t)
	m.waitReady(t)
}

// Spawn starts the server process like Start but returns at once, before it
// listens or serves: for tests of clients that must cope with a server that
// is still starting.
func (m *MinIO) Spawn(t testing.TB) {
	t.Helper()
	if m.cmd != nil {
		t.Fatal("minio: Start while running")
	}
	logf, err := os.OpenFile(m.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatalf("minio log: %v", err)
	}
	defer logf.Close() // the child has its own copy
	cmd := exec.Command(m.bin, "server", m.DataDir,
		"--address", m.Endpoint,
		"--console-address", net.JoinHostPort("127.0.0.1", strconv.Itoa(m.consolePort)))
	cmd.Env = append(os.Environ(),
		"MINIO_ROOT_USER="+m.AccessKey,
		"MINIO_ROOT_PASSWORD="+m.SecretKey,
		"MINIO_BROWSER=off",
		"MINIO_UPDATE=off",
	)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("start minio: %v", err)
	}
	m.cmd = cmd
	m.exited = make(chan struct{})
	go func(exited chan struct{}) { _ = cmd.Wait(); close(exited) }(m.exited)
}

// waitReady polls the cluster health endpoint: /minio/health/live and
// /ready answer 200 before the object layer is initialized, and requests in
// that window fail with XMinioServerNotInitialized.
func (m *MinIO) waitReady(t testing.TB) {
	t.Helper()
	cmd := m.cmd
	url := "http://" + m.Endpoint + "/minio/health/cluster"
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(minioStartTimeout)
	for {
		select {
		case <-m.exited:
			m.cmd = nil
			t.Fatalf("minio exited while starting (%s):\n%s", cmd.ProcessState, m.readLog())
		default:
		}
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			m.Stop()
			t.Fatalf("minio not ready at %s after %s (last: %v):\n%s", url, minioStartTimeout, describe(resp, err), m.readLog())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func describe(resp *http.Response, err error) string {
	if err != nil {
		return err.Error()
	}
	return resp.Status
}

// Stop kills the server and waits for it to exit; its data stays for the
// next Start. Stopping a stopped server does nothing.
func (m *MinIO) Stop() {
	if m.cmd == nil {
		return
	}
	_ = m.cmd.Process.Kill()
	<-m.exited
	m.cmd = nil
}

func (m *MinIO) readLog() string {
	b, err := os.ReadFile(m.LogFile)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	const max = 16 << 10
	if len(b) > max {
		b = append([]byte("...\n"), b[len(b)-max:]...)
	}
	return string(b)
}
