// Package natlab runs Parley's real binaries inside the NAT lab
// (libs/testenv/natlab): parleyd, with its rendezvous on two addresses, in
// the lab's public namespace, and `parley` clients behind real nftables
// NATs of every kind, going direct with each other as users do.
package natlab

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parleychat/parley/libs/testenv/natlab"
	"github.com/parleychat/parley/tests/internal/binaries"
)

// bins holds the binaries built once for the package.
var bins string

func TestMain(m *testing.M) { binaries.Main(m, &bins, "parleyd", "parley") }

const (
	password = "correct horse battery staple"
	tcpPort  = 7420
	stunPort = 3478
	altPort  = 3479
)

// The server's addresses in the lab's public namespace.
var (
	serverURL = fmt.Sprintf("tcp://%s:%d", natlab.RendezvousIP, tcpPort)
	stunAddr  = fmt.Sprintf("%s:%d", natlab.RendezvousIP, stunPort)
)

// syncBuffer is an output buffer written by a process and read by the test.
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

// startParleyd runs parleyd in the lab's public namespace: clients on
// RendezvousIP:7420, the rendezvous on RendezvousIP:3478 and
// RendezvousAltIP:3479. It is killed when the test ends.
func startParleyd(t testing.TB, l *natlab.Lab) {
	t.Helper()
	out := &syncBuffer{}
	cmd := l.Public().Command(filepath.Join(bins, "parleyd"),
		"-insecure", "-data-dir", t.TempDir(),
		"-tcp-addr", fmt.Sprintf("%s:%d", natlab.RendezvousIP, tcpPort),
		"-http-addr", "", "-udp-addr", "", "-admin-addr", "",
		"-stun-addr", stunAddr,
		"-stun-alt-addr", fmt.Sprintf("%s:%d", natlab.RendezvousAltIP, altPort),
		// Cheap password hashes: the lab tests NAT traversal, and
		// registers dozens of users on two cores.
		"-argon2-memory", "1024", "-argon2-time", "1",
	)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start parleyd: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("---- parleyd ----\n%s", out.String())
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(out.String(), "parleyd ready") {
		select {
		case <-done:
			t.Fatalf("parleyd exited:\n%s", out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("parleyd not ready within 30s:\n%s", out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// user is an account whose `parley` runs in a lab namespace.
type user struct {
	name string
	host *natlab.Client
	dir  string // --config-dir
}

// newUser registers name with parley from host's namespace.
func newUser(t testing.TB, host *natlab.Client, name string) *user {
	t.Helper()
	u := &user{name: name, host: host, dir: t.TempDir()}
	u.run(t, "register", name)
	return u
}

func (u *user) args(args ...string) []string {
	return append([]string{"--server", serverURL, "--config-dir", u.dir, "--timeout", "30s"}, args...)
}

// run runs a one-shot parley command and returns its standard output.
func (u *user) run(t testing.TB, args ...string) string {
	t.Helper()
	cmd := u.host.Command(filepath.Join(bins, "parley"), u.args(args...)...)
	cmd.Env = append(os.Environ(), "PARLEY_PASSWORD="+password)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s: parley %s: %v\n%s%s", u.name, strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

// event is one JSON line of `parley direct --json`.
type event map[string]any

func (e event) str(k string) string {
	s, _ := e[k].(string)
	return s
}

func (e event) num(k string) float64 {
	f, _ := e[k].(float64)
	return f
}

// cli is a running `parley direct`: lines written to its stdin, events
// read from its stdout.
type cli struct {
	u      *user
	stdin  io.WriteCloser
	stderr *syncBuffer
	done   chan struct{}
	err    error // set before done closes

	mu     sync.Mutex
	events []event
	raw    []string
	wake   chan struct{}
}

// direct starts `parley direct --json --debug args...`.
func (u *user) direct(t testing.TB, args ...string) *cli {
	t.Helper()
	cmd := u.host.Command(filepath.Join(bins, "parley"), u.args(append([]string{"--debug", "direct", "--json"}, args...)...)...)
	c := &cli{u: u, stderr: &syncBuffer{}, done: make(chan struct{}), wake: make(chan struct{}, 1)}
	cmd.Stderr = c.stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if c.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start parley direct: %v", err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			var ev event
			_ = json.Unmarshal([]byte(line), &ev)
			c.mu.Lock()
			c.raw = append(c.raw, line)
			if ev != nil {
				c.events = append(c.events, ev)
			}
			c.mu.Unlock()
			c.nudge()
		}
		c.err = cmd.Wait()
		close(c.done)
		c.nudge()
	}()
	t.Cleanup(func() {
		c.stdin.Close()
		select {
		case <-c.done:
		case <-time.After(3 * time.Second):
			_ = cmd.Process.Kill()
			<-c.done
		}
		if t.Failed() || os.Getenv("NATLAB_LOGS") != "" {
			t.Logf("---- %s: parley direct %s ----\n%s\n---- stderr ----\n%s", u.name, strings.Join(args, " "),
				c.output(), tail(c.stderr.String(), 200))
		}
	})
	return c
}

func (c *cli) nudge() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

func (c *cli) output() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return strings.Join(c.raw, "\n")
}

// tail is the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("[… %d lines]", len(lines)-n)}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}

// send writes a line to the client's stdin (a message, or a command such
// as /stats).
func (c *cli) send(t testing.TB, line string) {
	t.Helper()
	if _, err := io.WriteString(c.stdin, line+"\n"); err != nil {
		t.Fatalf("%s: writing %q: %v", c.u.name, line, err)
	}
}

// wait waits for the first event, from index from on, that match accepts;
// it returns the event and its index.
func (c *cli) wait(t testing.TB, from int, within time.Duration, what string, match func(event) bool) (event, int) {
	t.Helper()
	deadline := time.After(within)
	for {
		c.mu.Lock()
		for i := from; i < len(c.events); i++ {
			if match(c.events[i]) {
				ev := c.events[i]
				c.mu.Unlock()
				return ev, i
			}
		}
		from = len(c.events)
		c.mu.Unlock()
		select {
		case <-c.wake:
		case <-c.done:
			// Read what the last lines brought before giving up.
			c.mu.Lock()
			n := len(c.events)
			c.mu.Unlock()
			if from == n {
				t.Fatalf("%s: parley direct ended (%v) before %s", c.u.name, c.err, what)
			}
		case <-deadline:
			t.Fatalf("%s: no %s within %v", c.u.name, what, within)
		}
	}
}

// count is how many events match.
func (c *cli) count(match func(event) bool) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, ev := range c.events {
		if match(ev) {
			n++
		}
	}
	return n
}

// mark is the index the next event will have.
func (c *cli) mark() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.events)
}

func isEvent(kind string) func(event) bool {
	return func(e event) bool { return e.str("event") == kind }
}

func isPath(path string) func(event) bool {
	return func(e event) bool { return e.str("event") == "path" && e.str("path") == path }
}

func isMessage(text string) func(event) bool {
	return func(e event) bool { return e.str("event") == "message" && e.str("text") == text }
}

// pair is a connected direct session between a (who offered: the
// controlling side) and b (who accepted).
type pair struct {
	a, b *cli
}

// connect has b wait for a's offer and a offer; it returns once both are
// connected (the path is whatever it is by then).
func connect(t testing.TB, a, b *user) pair {
	t.Helper()
	cb := b.direct(t, "--accept", "--from", a.name, "--wait", "60s")
	cb.wait(t, 0, 30*time.Second, "waiting for an offer", func(e event) bool {
		return e.str("event") == "status" && strings.Contains(e.str("text"), "waiting for an offer")
	})
	ca := a.direct(t, "@"+b.name)
	ca.wait(t, 0, 30*time.Second, "connected", isEvent("connected"))
	cb.wait(t, 0, 30*time.Second, "connected", isEvent("connected"))
	return pair{ca, cb}
}

// exchange sends text from one side and waits until the other received
// it; it returns the sender's "sent" event.
func exchange(t testing.TB, from, to *cli, text string, within time.Duration) event {
	t.Helper()
	mf := from.mark()
	from.send(t, text)
	to.wait(t, 0, within, fmt.Sprintf("message %q", text), isMessage(text))
	// The sent event follows the peer's acknowledgement.
	sent, _ := from.wait(t, mf, within, "sent event", isEvent("sent"))
	return sent
}
