package transport

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// The record layer against an independent TLS 1.3 implementation:
// openssl s_client, in all three suites, with KeyUpdates both ways.

// lockedBuffer collects a process's output for polling.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// waitFor polls out for s.
func waitFor(t *testing.T, out, errOut *lockedBuffer, s string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(out.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q from s_client; stdout:\n%s\nstderr:\n%s", s, out, errOut)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (h *halfConn) secretCopy() [maxSecretLen]byte {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.keys.secret
}

func TestTLSRecordsOpenSSL(t *testing.T) {
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Fatal("openssl not installed (scripts/deps.sh installs it): the record layer must be checked against an independent implementation")
	}
	env := newTLSEnv(t)
	conf := NewTLSConfig(env.server, true)
	for _, suite := range []uint16{tls.TLS_AES_128_GCM_SHA256, tls.TLS_AES_256_GCM_SHA384, tls.TLS_CHACHA20_POLY1305_SHA256, 0} {
		name := tls.CipherSuiteName(suite)
		version := "-tls1_3"
		suiteFlag := []string{"-ciphersuites", name}
		if suite == 0 { // TLS 1.2: crypto/tls keeps the records
			name, version, suiteFlag = "TLS 1.2", "-tls1_2", nil
		}
		t.Run(name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			streams := make(chan *Stream, 1)
			go func() {
				c, err := ln.Accept()
				if err != nil {
					close(streams)
					return
				}
				s, err := NewTLSStream(c, conf, testMaxFrame, 10*time.Second)
				if err != nil {
					t.Errorf("handshake: %v", err)
					c.Close()
					close(streams)
					return
				}
				streams <- s
			}()
			var out, errOut lockedBuffer
			args := append([]string{"s_client", "-connect", ln.Addr().String(), version,
				"-CAfile", env.caFile, "-servername", "localhost", "-verify_return_error"}, suiteFlag...)
			cmd := exec.Command(openssl, args...)
			cmd.Stdout, cmd.Stderr = &out, &errOut
			stdin, err := cmd.StdinPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
			s, ok := <-streams
			if !ok {
				t.Fatal("no stream")
			}
			defer s.Close()
			rc := s.rec
			if (rc == nil) != (suite == 0) {
				t.Fatalf("gateway's own records: %v", rc != nil)
			}
			if rc != nil && rc.suite.id != suite {
				t.Fatalf("suite %x, want %x", rc.suite.id, suite)
			}
			// The gateway's side: echo each line.
			echoed := make(chan error, 1)
			go func() {
				r := bufio.NewReader(s.c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						echoed <- err
						return
					}
					if err := s.Write([]byte("echo: " + line)); err != nil {
						echoed <- err
						return
					}
				}
			}()
			say := func(line string) {
				t.Helper()
				if _, err := io.WriteString(stdin, line+"\n"); err != nil {
					t.Fatal(err)
				}
				waitFor(t, &out, &errOut, "echo: "+line)
			}
			say("hello")
			say(strings.Repeat("long", 10000)) // several records each way
			if rc == nil {
				return
			}

			// "k": the client updates its key (update_not_requested).
			inBefore, outBefore := rc.in.secretCopy(), rc.out.secretCopy()
			command(t, stdin, "k", &errOut, 1)
			say("after k")
			if rc.in.secretCopy() == inBefore {
				t.Error("the read key did not change after the client's KeyUpdate")
			}
			if rc.out.secretCopy() != outBefore {
				t.Error("the write key changed though no update was requested")
			}
			// "K": update_requested; the gateway updates its own key, and
			// openssl reads the echo under the new one.
			outBefore = rc.out.secretCopy()
			command(t, stdin, "K", &errOut, 2)
			say("after K")
			if rc.out.secretCopy() == outBefore {
				t.Error("the write key did not change after update_requested")
			}
			say("still talking")

			// The end of s_client's input: it sends close_notify.
			stdin.Close()
			select {
			case err := <-echoed:
				if err != io.EOF {
					t.Errorf("gateway read at the end: %v, want io.EOF", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("no end of stream after s_client quit")
			}
		})
	}
}

// command sends an s_client command letter and waits until s_client has
// acted on it (its n-th KEYUPDATE on stderr). A line written right after
// might be read with the command and dropped, hence the wait.
func command(t *testing.T, stdin io.Writer, letter string, errOut *lockedBuffer, n int) {
	t.Helper()
	if _, err := io.WriteString(stdin, letter+"\n"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for strings.Count(errOut.String(), "KEYUPDATE") < n {
		if time.Now().After(deadline) {
			t.Fatalf("s_client did not act on %q: %s", letter, errOut)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
