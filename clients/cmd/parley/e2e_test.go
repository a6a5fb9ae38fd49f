package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/parleychat/parley/clients/internal/parleytest"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// buildBinary compiles the parley command once per test run.
func buildBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
		if _, err := os.Stat(goBin); err != nil {
			goBin = "go"
		}
		dir, err := os.MkdirTemp("", "parley-cli-test")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "parley")
		if out, err := exec.Command(goBin, "build", "-o", binPath, ".").CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

// cli runs the binary against one server with a private config directory.
type cli struct {
	t      *testing.T
	bin    string
	server string
	config string
}

type result struct {
	code           int
	stdout, stderr string
}

func (c cli) cmd(env []string, args ...string) *exec.Cmd {
	cmd := exec.Command(c.bin, args...)
	cmd.Env = append([]string{
		"HOME=" + c.t.TempDir(),
		"PATH=" + os.Getenv("PATH"),
		"XDG_CONFIG_HOME=" + c.config,
		"PARLEY_SERVER=" + c.server,
	}, env...)
	return cmd
}

func (c cli) run(env []string, stdin string, args ...string) result {
	c.t.Helper()
	cmd := c.cmd(env, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		c.t.Fatalf("run parley %v: %v", args, err)
	}
	return result{code, out.String(), errb.String()}
}

// ok runs a command that must succeed and returns its stdout.
func (c cli) ok(env []string, stdin string, args ...string) string {
	c.t.Helper()
	r := c.run(env, stdin, args...)
	if r.code != 0 {
		c.t.Fatalf("parley %s: exit %d, stderr %q", strings.Join(args, " "), r.code, r.stderr)
	}
	return r.stdout
}

// fails runs a command that must fail with one line on stderr containing
// want.
func (c cli) fails(env []string, stdin, want string, args ...string) {
	c.t.Helper()
	r := c.run(env, stdin, args...)
	if r.code != exitError {
		c.t.Errorf("parley %s: exit %d, want %d (stdout %q)", strings.Join(args, " "), r.code, exitError, r.stdout)
	}
	if !strings.Contains(r.stderr, want) || strings.Count(r.stderr, "\n") != 1 {
		c.t.Errorf("parley %s: stderr %q, want one line containing %q", strings.Join(args, " "), r.stderr, want)
	}
}

const pw = "correct horse battery"

func TestBinaryAgainstParley(t *testing.T) {
	p := parleytest.Start(t, nil)
	c := cli{t: t, bin: buildBinary(t), server: p.TCPAddr(), config: t.TempDir()}
	withPW := []string{"PARLEY_PASSWORD=" + pw}

	out := c.ok(withPW, "", "register", "alice")
	if !strings.HasPrefix(out, "registered and logged in as alice (user ") {
		t.Errorf("register printed %q", out)
	}
	c.fails(withPW, "", "USERNAME_TAKEN", "register", "alice")
	c.fails(nil, "wrong password!\n", "BAD_CREDENTIALS", "login", "--password-stdin", "alice")

	out = c.ok(nil, pw+"\n", "--user", "alice", "login", "--password-stdin")
	if !strings.HasPrefix(out, "logged in as alice (user ") || !strings.Contains(out, "session ") {
		t.Errorf("login printed %q", out)
	}
	fi, err := os.Stat(filepath.Join(c.config, "parley", sessionFile))
	if err != nil {
		t.Fatalf("no token file: %v", err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("token file mode %v, want 0600", fi.Mode().Perm())
	}
	if out := c.ok(nil, "", "whoami"); out != "alice\n" {
		t.Errorf("whoami = %q, want alice", out)
	}
	if out := c.ok(nil, "", "ping"); !strings.HasPrefix(out, "pong from "+p.TCPAddr()) {
		t.Errorf("ping printed %q", out)
	}

	// watch prints the online list as it changes.
	watch := c.cmd(nil, "watch", "--user", "alice")
	stdout, err := watch.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var watchErr strings.Builder
	watch.Stderr = &watchErr
	if err := watch.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	expectLine := func(want string) {
		t.Helper()
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("watch ended (stderr %q) before printing %q", watchErr.String(), want)
			}
			if l != want {
				t.Fatalf("watch printed %q, want %q", l, want)
			}
		case <-time.After(15 * time.Second):
			t.Fatalf("watch did not print %q", want)
		}
	}
	expectLine("online alice") // from the snapshot: alice's own watch session

	// bob registers from another config dir; his command's connection
	// comes and goes.
	bobCLI := cli{t: t, bin: c.bin, server: c.server, config: t.TempDir()}
	bobCLI.ok(withPW, "", "register", "bob")
	expectLine("online bob")
	expectLine("offline bob")

	if out := c.ok(nil, "", "who", "--user", "alice"); out != "alice\n" {
		t.Errorf("who = %q, want alice", out)
	}
	var users []struct {
		UserID   string `json:"user_id"`
		Username string `json:"username"`
		Sessions int    `json:"sessions"`
	}
	if err := json.Unmarshal([]byte(c.ok(nil, "", "who", "--json")), &users); err != nil {
		t.Fatalf("who --json: %v", err)
	}
	// alice is there twice over: the watch and the who command itself.
	if len(users) != 1 || users[0].Username != "alice" || users[0].UserID == "" || users[0].Sessions != 2 {
		t.Errorf("who --json = %+v", users)
	}

	if err := watch.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	for range lines { // drain until the watch exits
	}
	if err := watch.Wait(); err != nil {
		t.Errorf("watch after SIGINT: %v (stderr %q), want exit 0", err, watchErr.String())
	}

	if out := c.ok(nil, "", "logout"); out != "logged out alice\n" {
		t.Errorf("logout printed %q", out)
	}
	c.fails(nil, "", "not logged in", "whoami")
	c.fails(nil, "", "not logged in as alice", "who", "--user", "alice")
	// bob's stored session is still good.
	if out := bobCLI.ok(nil, "", "whoami"); out != "bob\n" {
		t.Errorf("bob's whoami = %q", out)
	}
}

func TestBinaryOverWebSocket(t *testing.T) {
	p := parleytest.Start(t, nil)
	c := cli{t: t, bin: buildBinary(t), server: p.WSAddr(), config: t.TempDir()}
	c.ok([]string{"PARLEY_PASSWORD=" + pw}, "", "register", "carol")
	if out := c.ok(nil, "", "who"); out != "carol\n" {
		t.Errorf("who over websocket = %q", out)
	}
}

// TestBinaryChat drives send, history, conversations and listen.
func TestBinaryChat(t *testing.T) {
	p := parleytest.Start(t, nil)
	alice := cli{t: t, bin: buildBinary(t), server: p.TCPAddr(), config: t.TempDir()}
	bob := cli{t: t, bin: alice.bin, server: p.TCPAddr(), config: t.TempDir()}
	withPW := []string{"PARLEY_PASSWORD=" + pw}
	alice.ok(withPW, "", "register", "alice")
	bob.ok(withPW, "", "register", "bob")

	listen := bob.cmd(nil, "listen")
	stdout, err := listen.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var listenErr strings.Builder
	listen.Stderr = &listenErr
	if err := listen.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()

	if out := alice.ok(nil, "", "send", "room.public", "hello", "world"); out != "sent room.public 1\n" {
		t.Errorf("send printed %q", out)
	}
	out := alice.ok(nil, "line one\nline two\n", "send", "@bob", "-")
	dm, ok := strings.CutPrefix(strings.TrimSpace(out), "sent ")
	dm, _, _ = strings.Cut(dm, " ")
	if !ok || !strings.HasPrefix(dm, "dm.") || !strings.HasSuffix(out, " 1\n") {
		t.Fatalf("send @bob printed %q", out)
	}

	want := map[string]bool{
		"room.public 1 alice: hello world":  true,
		dm + ` 1 alice: line one\nline two`: true,
	}
	for len(want) > 0 {
		select {
		case l, open := <-lines:
			if !open {
				t.Fatalf("listen ended (stderr %q) still waiting for %v", listenErr.String(), want)
			}
			if !want[l] {
				t.Fatalf("listen printed %q, want one of %v", l, want)
			}
			delete(want, l)
		case <-time.After(15 * time.Second):
			t.Fatalf("listen did not print %v", want)
		}
	}

	if out := bob.ok(nil, "", "conversations"); !regexpLines(out, `^room\.public\s+public\s+1$`, `^`+dm+`\s+alice\s+1$`) {
		t.Errorf("conversations printed %q", out)
	}
	var convs []struct {
		ID     string `json:"id"`
		Kind   string `json:"kind"`
		Title  string `json:"title"`
		Unread int    `json:"unread"`
	}
	if err := json.Unmarshal([]byte(bob.ok(nil, "", "conversations", "--json")), &convs); err != nil {
		t.Fatalf("conversations --json: %v", err)
	}
	if len(convs) != 2 || convs[0].ID != "room.public" || convs[0].Kind != "room" || convs[1].ID != dm ||
		convs[1].Kind != "direct" || convs[1].Title != "alice" || convs[1].Unread != 1 {
		t.Errorf("conversations --json = %+v", convs)
	}

	var hist struct {
		Messages []struct {
			Seq        uint64 `json:"seq"`
			SenderName string `json:"sender_name"`
			Text       string `json:"text"`
		} `json:"messages"`
		More bool `json:"more"`
	}
	if err := json.Unmarshal([]byte(bob.ok(nil, "", "history", "@alice", "--json")), &hist); err != nil {
		t.Fatalf("history --json: %v", err)
	}
	if len(hist.Messages) != 1 || hist.Messages[0].Text != "line one\nline two" || hist.Messages[0].SenderName != "alice" || hist.More {
		t.Errorf("history @alice --json = %+v", hist)
	}
	alice.ok(nil, "", "send", "room.public", "second")
	out = bob.ok(nil, "", "history", "room.public", "--limit", "1")
	if !regexpLines(out, `^2 \d{4}-\d\d-\d\d \d\d:\d\d alice: second$`) {
		t.Errorf("history --limit 1 printed %q", out)
	}
	if out := bob.ok(nil, "", "history", "room.public", "--before", "2"); !regexpLines(out, `^1 .* alice: hello world$`) {
		t.Errorf("history --before 2 printed %q", out)
	}

	alice.fails(nil, "", "EMPTY_MESSAGE", "send", "room.public", " ")
	alice.fails(nil, "", "NOT_FOUND", "history", "room.nope")
	alice.fails(nil, "", "NOT_FOUND", "send", "@nobody", "hi")

	if err := listen.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	for l := range lines {
		if !strings.HasPrefix(l, "room.public 2 alice: second") {
			t.Errorf("listen printed %q", l)
		}
	}
	if err := listen.Wait(); err != nil {
		t.Errorf("listen after SIGINT: %v (stderr %q), want exit 0", err, listenErr.String())
	}
}

// regexpLines reports whether out has exactly one line per pattern, in
// order, each matching.
func regexpLines(out string, patterns ...string) bool {
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) != len(patterns) {
		return false
	}
	for i, p := range patterns {
		if !regexp.MustCompile(p).MatchString(lines[i]) {
			return false
		}
	}
	return true
}
