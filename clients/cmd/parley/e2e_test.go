package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"image"
	"image/jpeg"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
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
	cmd.Dir = c.t.TempDir() // what lands in "the current folder" stays out of the source tree
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

// TestBinaryGroups drives a group from the command line: create, invite,
// join by the invitee, chat with send and history, members, and the
// owner's rename and remove.
func TestBinaryGroups(t *testing.T) {
	p := parleytest.Start(t, nil)
	alice := cli{t: t, bin: buildBinary(t), server: p.TCPAddr(), config: t.TempDir()}
	bob := cli{t: t, bin: alice.bin, server: p.TCPAddr(), config: t.TempDir()}
	carol := cli{t: t, bin: alice.bin, server: p.TCPAddr(), config: t.TempDir()}
	withPW := []string{"PARLEY_PASSWORD=" + pw}
	alice.ok(withPW, "", "register", "alice")
	bob.ok(withPW, "", "register", "bob")
	carol.ok(withPW, "", "register", "carol")

	out := alice.ok(nil, "", "group", "create", "Team")
	g := strings.TrimSuffix(out, "\n")
	if !strings.HasPrefix(g, "group.") || strings.Contains(g, "\n") {
		t.Fatalf("group create printed %q, want the group's id", out)
	}
	alice.fails(nil, "", "NOT_FOUND", "group", "create", "Other", "nobody")
	alice.fails(nil, "", "INVALID_NAME", "group", "create", " ")
	if out := alice.ok(nil, "", "group", "invite", g, "@bob"); out != "invited bob to "+g+"\n" {
		t.Errorf("invite printed %q", out)
	}

	// Bob finds the invitation in his list; he reads nothing before joining.
	if out := bob.ok(nil, "", "conversations"); !regexpLines(out, `^room\.public\s+public\s+0$`, `^`+regexp.QuoteMeta(g)+`\s+Team \(invited\)\s+\d+$`) {
		t.Errorf("bob's conversations printed %q", out)
	}
	var convs []struct {
		ID      string `json:"id"`
		Kind    string `json:"kind"`
		Invited bool   `json:"invited"`
		OwnerID string `json:"owner_id"`
	}
	if err := json.Unmarshal([]byte(bob.ok(nil, "", "conversations", "--json")), &convs); err != nil {
		t.Fatalf("conversations --json: %v", err)
	}
	if len(convs) != 2 || convs[1].ID != g || convs[1].Kind != "group" || !convs[1].Invited || convs[1].OwnerID == "" {
		t.Errorf("bob's conversations --json = %+v", convs)
	}
	bob.fails(nil, "", "PERMISSION_DENIED", "history", g)
	if out := bob.ok(nil, "", "group", "join", g); out != "joined "+g+" (Team)\n" {
		t.Errorf("join printed %q", out)
	}
	bob.fails(nil, "", "ALREADY_MEMBER", "group", "join", g)

	if out := alice.ok(nil, "", "send", g, "hello", "team"); out != "sent "+g+" 4\n" {
		t.Errorf("send to the group printed %q", out)
	}
	bob.ok(nil, "", "send", g, "hi alice")
	out = bob.ok(nil, "", "history", g)
	if !regexpLines(out,
		`^1 \S+ \S+ \* alice created the group "Team"$`,
		`^2 \S+ \S+ \* alice invited bob$`,
		`^3 \S+ \S+ \* bob joined$`,
		`^4 \S+ \S+ alice: hello team$`,
		`^5 \S+ \S+ bob: hi alice$`) {
		t.Errorf("bob's history of the group printed %q", out)
	}
	var hist struct {
		Messages []struct {
			Seq    uint64 `json:"seq"`
			Text   string `json:"text"`
			System bool   `json:"system"`
		} `json:"messages"`
	}
	if err := json.Unmarshal([]byte(alice.ok(nil, "", "history", g, "--json")), &hist); err != nil {
		t.Fatalf("history --json: %v", err)
	}
	if len(hist.Messages) != 5 || !hist.Messages[2].System || hist.Messages[2].Text != "bob joined" || hist.Messages[3].System {
		t.Errorf("history --json = %+v", hist.Messages)
	}

	if out := bob.ok(nil, "", "group", "members", g); !regexpLines(out, `^alice\s+owner$`, `^bob\s+member$`) {
		t.Errorf("members printed %q", out)
	}
	bob.ok(nil, "", "group", "invite", g, "carol")
	var members []struct {
		UserID   string `json:"user_id"`
		Username string `json:"username"`
		Role     string `json:"role"`
	}
	if err := json.Unmarshal([]byte(alice.ok(nil, "", "group", "members", g, "--json")), &members); err != nil {
		t.Fatalf("members --json: %v", err)
	}
	if len(members) != 3 || members[0].Username != "alice" || members[0].Role != "owner" || members[0].UserID == "" ||
		members[1].Role != "member" || members[2].Username != "carol" || members[2].Role != "invited" {
		t.Errorf("members --json = %+v", members)
	}
	// Carol, only invited, cannot post; she declines.
	carol.fails(nil, "", "PERMISSION_DENIED", "send", g, "hi")
	if out := carol.ok(nil, "", "group", "leave", g); out != "left "+g+"\n" {
		t.Errorf("leave printed %q", out)
	}

	// Only the owner renames and removes.
	bob.fails(nil, "", "PERMISSION_DENIED", "group", "rename", g, "Mine")
	bob.fails(nil, "", "PERMISSION_DENIED", "group", "remove", g, "alice")
	if out := alice.ok(nil, "", "group", "rename", g, "Team", "2"); out != "renamed "+g+" to Team 2\n" {
		t.Errorf("rename printed %q", out)
	}
	if out := alice.ok(nil, "", "group", "remove", g, "bob"); out != "removed bob from "+g+"\n" {
		t.Errorf("remove printed %q", out)
	}
	bob.fails(nil, "", "PERMISSION_DENIED", "send", g, "still here?")
	out = alice.ok(nil, "", "history", g, "--limit", "3")
	if !regexpLines(out, `^7 .* \* carol declined the invitation$`, `^8 .* \* alice renamed the group to "Team 2"$`, `^9 .* \* alice removed bob$`) {
		t.Errorf("history after the changes printed %q", out)
	}
}

// TestBinaryFriends drives friend requests both ways, the list with online
// state, and blocking.
func TestBinaryFriends(t *testing.T) {
	p := parleytest.Start(t, nil)
	alice := cli{t: t, bin: buildBinary(t), server: p.TCPAddr(), config: t.TempDir()}
	bob := cli{t: t, bin: alice.bin, server: p.TCPAddr(), config: t.TempDir()}
	carol := cli{t: t, bin: alice.bin, server: p.TCPAddr(), config: t.TempDir()}
	withPW := []string{"PARLEY_PASSWORD=" + pw}
	alice.ok(withPW, "", "register", "alice")
	bob.ok(withPW, "", "register", "bob")
	carol.ok(withPW, "", "register", "carol")

	if out := alice.ok(nil, "", "friend", "add", "@bob"); out != "asked bob to be friends\n" {
		t.Errorf("friend add printed %q", out)
	}
	alice.fails(nil, "", "NOT_FOUND", "friend", "add", "nobody")
	if out := alice.ok(nil, "", "friends"); !regexpLines(out, `^bob\s+outgoing$`) {
		t.Errorf("alice's friends printed %q", out)
	}
	if out := bob.ok(nil, "", "friends"); !regexpLines(out, `^alice\s+incoming$`) {
		t.Errorf("bob's friends printed %q", out)
	}
	if out := bob.ok(nil, "", "friend", "accept", "alice"); out != "you and alice are friends now\n" {
		t.Errorf("friend accept printed %q", out)
	}
	alice.fails(nil, "", "ALREADY_FRIENDS", "friend", "add", "bob")

	// Carol asked alice first: alice's add makes them friends at once.
	carol.ok(nil, "", "friend", "add", "alice")
	if out := alice.ok(nil, "", "friend", "add", "carol"); out != "you and carol are friends now\n" {
		t.Errorf("friend add of someone who asked printed %q", out)
	}

	// While bob listens he is online in alice's list.
	listen := bob.cmd(nil, "listen")
	if err := listen.Start(); err != nil {
		t.Fatal(err)
	}
	type jsonFriend struct {
		UserID   string `json:"user_id"`
		Username string `json:"username"`
		State    string `json:"state"`
		Online   bool   `json:"online"`
	}
	var friends []jsonFriend
	deadline := time.Now().Add(15 * time.Second)
	for {
		friends = nil
		if err := json.Unmarshal([]byte(alice.ok(nil, "", "friends", "--json")), &friends); err != nil {
			t.Fatalf("friends --json: %v", err)
		}
		if len(friends) == 2 && friends[0].Online || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(friends) != 2 || friends[0].Username != "bob" || friends[0].State != "friend" || !friends[0].Online || friends[0].UserID == "" ||
		friends[1].Username != "carol" || friends[1].State != "friend" || friends[1].Online {
		t.Errorf("friends --json = %+v, want bob (online) and carol (offline)", friends)
	}
	if out := alice.ok(nil, "", "friends"); !regexpLines(out, `^bob\s+friend\s+online$`, `^carol\s+friend\s+offline$`) {
		t.Errorf("friends printed %q", out)
	}
	_ = listen.Process.Signal(syscall.SIGINT)
	_ = listen.Wait()

	if out := alice.ok(nil, "", "friend", "remove", "carol"); out != "removed carol from your friends\n" {
		t.Errorf("friend remove printed %q", out)
	}
	carol.ok(nil, "", "friend", "add", "alice")
	if out := alice.ok(nil, "", "friend", "decline", "carol"); out != "declined the request of carol\n" {
		t.Errorf("friend decline printed %q", out)
	}
	alice.fails(nil, "", "NOT_FOUND", "friend", "accept", "carol")

	// Blocking ends the friendship and refuses private messages.
	if out := bob.ok(nil, "", "block", "alice"); out != "blocked alice\n" {
		t.Errorf("block printed %q", out)
	}
	if out := bob.ok(nil, "", "friends"); !regexpLines(out, `^alice\s+blocked$`) {
		t.Errorf("bob's friends after block printed %q", out)
	}
	alice.fails(nil, "", "BLOCKED", "send", "@bob", "hello?")
	alice.fails(nil, "", "BLOCKED", "friend", "add", "bob")
	if out := bob.ok(nil, "", "unblock", "alice"); out != "unblocked alice\n" {
		t.Errorf("unblock printed %q", out)
	}
	alice.ok(nil, "", "send", "@bob", "hello again")
}

// TestBinaryFiles: `parley file send` offers and uploads a file to a user
// (progress on stderr), the recipient lists it, accepts it and `file get`
// downloads it intact into a folder, whatever the sender called it.
func TestBinaryFiles(t *testing.T) {
	p := parleytest.Start(t, nil)
	httpEnv := []string{"PARLEY_HTTP=" + p.HTTPBase()}
	alice := cli{t: t, bin: buildBinary(t), server: p.TCPAddr(), config: t.TempDir()}
	bob := cli{t: t, bin: alice.bin, server: p.TCPAddr(), config: t.TempDir()}
	withPW := []string{"PARLEY_PASSWORD=" + pw}
	alice.ok(withPW, "", "register", "alice")
	bob.ok(withPW, "", "register", "bob")

	data := []byte(strings.Repeat("Parley 文件 🎉\n", 300_000)) // ~5 MiB
	src := filepath.Join(t.TempDir(), "notes.txt")
	if err := os.WriteFile(src, data, 0o644); err != nil {
		t.Fatal(err)
	}
	r := alice.run(httpEnv, "", "file", "send", "--progress", "@bob", src)
	if r.code != 0 || !strings.Contains(r.stderr, "MiB/s") {
		t.Fatalf("file send: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	id := strings.TrimSpace(r.stdout)
	if out := bob.ok(httpEnv, "", "file", "ls"); !strings.HasPrefix(out, id+"\tnotes.txt\t"+strconv.Itoa(len(data))+"\talice\t") || !strings.Contains(out, "\tavailable\n") {
		t.Fatalf("bob's offers: %q", out)
	}
	if out := bob.ok(httpEnv, "", "file", "accept", id); out != "accepted "+id+"\n" {
		t.Errorf("accept printed %q", out)
	}
	dir := t.TempDir()
	// bob has a notes.txt of his own there: it is never touched.
	mine := filepath.Join(dir, "notes.txt")
	if err := os.WriteFile(mine, []byte("bob's own notes"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := bob.ok(httpEnv, "", "file", "get", id, dir)
	if got, err := os.ReadFile(strings.TrimSpace(out)); err != nil || !bytes.Equal(got, data) || strings.TrimSpace(out) != filepath.Join(dir, "notes (1).txt") {
		t.Fatalf("file get wrote %q (%v), equal %v", out, err, bytes.Equal(got, data))
	}
	if b, _ := os.ReadFile(mine); string(b) != "bob's own notes" {
		t.Fatalf("file get changed bob's own notes.txt: %q", b)
	}
	bob.fails(httpEnv, "", "NOT_FOUND", "file", "get", "f000000000000000000000000", dir)

	// Without a folder: the platform's download folder.
	xdg := filepath.Join(t.TempDir(), "Téléchargements")
	out = bob.ok(append(httpEnv, "XDG_DOWNLOAD_DIR="+xdg), "", "file", "get", id)
	if got, err := os.ReadFile(strings.TrimSpace(out)); err != nil || !bytes.Equal(got, data) || strings.TrimSpace(out) != filepath.Join(xdg, "notes.txt") {
		t.Fatalf("file get without a folder wrote %q (%v), want it in $XDG_DOWNLOAD_DIR", out, err)
	}
	home := t.TempDir()
	must(t, os.Mkdir(filepath.Join(home, "Downloads"), 0o700))
	out = bob.ok(append(httpEnv, "HOME="+home), "", "file", "get", id)
	if strings.TrimSpace(out) != filepath.Join(home, "Downloads", "notes.txt") {
		t.Fatalf("file get without a folder wrote %q, want it in ~/Downloads", out)
	}

	// A picture: `file thumb` saves its thumbnail; a text file has none.
	img := image.NewGray(image.Rect(0, 0, 640, 320))
	for i := range img.Pix {
		img.Pix[i] = uint8(i)
	}
	var png8 bytes.Buffer
	if err := png.Encode(&png8, img); err != nil {
		t.Fatal(err)
	}
	pic := filepath.Join(t.TempDir(), "chart.png")
	if err := os.WriteFile(pic, png8.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	picID := strings.TrimSpace(alice.ok(httpEnv, "", "file", "send", "@bob", pic))
	thumbPath := filepath.Join(t.TempDir(), "t.jpg")
	if out := bob.ok(httpEnv, "", "file", "thumb", picID, thumbPath); strings.TrimSpace(out) != thumbPath {
		t.Fatalf("file thumb printed %q", out)
	}
	b, err := os.ReadFile(thumbPath)
	if err != nil {
		t.Fatal(err)
	}
	th, err := jpeg.Decode(bytes.NewReader(b))
	if err != nil || th.Bounds().Dx() != 160 || th.Bounds().Dy() != 80 {
		t.Fatalf("thumbnail: %v, %v", th.Bounds(), err)
	}
	bob.fails(httpEnv, "", "not a picture", "file", "thumb", id, thumbPath)
}
