//go:build unix

package main

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"

	"github.com/parleychat/parley/clients/internal/parleytest"
)

// ptyTUI is a parley TUI process in a pseudo-terminal, driven by keys as
// a person would type them.
type ptyTUI struct {
	t    *testing.T
	name string
	cmd  *exec.Cmd
	pty  *os.File
	done chan struct{} // closed when the output ends

	mu      sync.Mutex    // guards out and changed
	out     []byte        // everything the program printed
	changed chan struct{} // closed and replaced when out grows
}

// escapes matches terminal control sequences: CSI, OSC, and the short
// two-byte ones.
var escapes = regexp.MustCompile(`\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[()][0-9A-Za-z]|\x1b[@-Z\\-_=>]`)

// startTUI runs bin with env in a 40x120 pseudo-terminal.
func startTUI(t *testing.T, name, bin string, env []string) *ptyTUI {
	t.Helper()
	cmd := exec.Command(bin)
	cmd.Env = append([]string{"TERM=xterm-256color", "PATH=" + os.Getenv("PATH")}, env...)
	f, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 40, Cols: 120})
	if err != nil {
		t.Fatalf("start %s's TUI: %v", name, err)
	}
	tm := &ptyTUI{t: t, name: name, cmd: cmd, pty: f, done: make(chan struct{}), changed: make(chan struct{})}
	go tm.read()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		f.Close()
	})
	return tm
}

// read collects the output until the process closes the terminal.
func (tm *ptyTUI) read() {
	defer close(tm.done)
	buf := make([]byte, 32<<10)
	for {
		n, err := tm.pty.Read(buf)
		if n > 0 {
			tm.answer(buf[:n])
			tm.mu.Lock()
			tm.out = append(tm.out, buf[:n]...)
			close(tm.changed)
			tm.changed = make(chan struct{})
			tm.mu.Unlock()
		}
		if err != nil {
			return // EIO once the process has exited
		}
	}
}

// answer replies to the queries a real terminal answers: the background
// colour (OSC 11) and the cursor position (DSR), which the TUI asks for at
// start and otherwise waits seconds for.
func (tm *ptyTUI) answer(b []byte) {
	if bytes.Contains(b, []byte("\x1b]11;?")) {
		_, _ = io.WriteString(tm.pty, "\x1b]11;rgb:0000/0000/0000\x1b\\")
	}
	if bytes.Contains(b, []byte("\x1b[6n")) {
		_, _ = io.WriteString(tm.pty, "\x1b[1;1R")
	}
}

// screenText is the output so far without control sequences: every line
// the program drew, in order.
func (tm *ptyTUI) screenText() (string, chan struct{}) {
	tm.mu.Lock()
	defer tm.mu.Unlock()
	return escapes.ReplaceAllString(string(tm.out), ""), tm.changed
}

// waitFor waits (at most 30 s) until the program has drawn want.
func (tm *ptyTUI) waitFor(want string) {
	tm.t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		text, changed := tm.screenText()
		if strings.Contains(text, want) {
			return
		}
		select {
		case <-changed:
		case <-tm.done:
			if text, _ := tm.screenText(); !strings.Contains(text, want) {
				tm.t.Fatalf("%s's TUI ended without showing %q; it showed:\n%s", tm.name, want, tail(text))
			}
			return
		case <-timeout:
			tm.t.Fatalf("%s's TUI did not show %q within 30s; it showed:\n%s", tm.name, want, tail(text))
		}
	}
}

func tail(s string) string {
	if len(s) > 3000 {
		return "…" + s[len(s)-3000:]
	}
	return s
}

// keys types each string as one burst of input.
func (tm *ptyTUI) keys(keys ...string) {
	tm.t.Helper()
	for _, k := range keys {
		if _, err := io.WriteString(tm.pty, k); err != nil {
			tm.t.Fatalf("typing into %s's TUI: %v", tm.name, err)
		}
	}
}

// quit presses ctrl+c and waits (at most 30 s) for the process to exit.
func (tm *ptyTUI) quit() {
	tm.t.Helper()
	tm.keys("\x03")
	exited := make(chan error, 1)
	go func() { exited <- tm.cmd.Wait() }()
	select {
	case err := <-exited:
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			tm.t.Errorf("%s's TUI: %v", tm.name, err)
		} else if err != nil {
			tm.t.Errorf("%s's TUI exited with %v", tm.name, err)
		}
	case <-time.After(30 * time.Second):
		tm.t.Fatalf("%s's TUI did not quit on ctrl+c", tm.name)
	}
}

const (
	keyCtrlR = "\x12"
	keyTab   = "\t"
	keyEnter = "\r"
)

// register fills the registration form: ctrl+r, username, password twice.
func (tm *ptyTUI) register(user string) {
	tm.t.Helper()
	tm.keys(keyCtrlR)
	tm.waitFor("Repeat password")
	tm.keys(user, keyTab, pw, keyTab, pw, keyEnter)
}

// The README's first minutes: `./bin/parley` in two terminals of one
// machine user, registering alice in the first and bob in the second. The
// second starts on the login screen offering alice's saved session instead
// of becoming alice; both register, each sees the other online, and what
// was typed for bob's form never reached the room.
func TestTwoTerminalsRegisterTwoUsers(t *testing.T) {
	p := parleytest.Start(t, nil)
	bin := buildBinary(t)
	home := t.TempDir()
	dl := t.TempDir()
	env := []string{"HOME=" + home, "XDG_CONFIG_HOME=" + home + "/.config", "PARLEY_SERVER=" + p.TCPAddr(), "XDG_DOWNLOAD_DIR=" + dl}

	alice := startTUI(t, "alice", bin, env)
	alice.waitFor("Register")
	alice.register("alice")
	alice.waitFor("welcome, alice: your account is ready")

	bob := startTUI(t, "bob", bin, env)
	bob.waitFor("Continue as alice")
	bob.register("bob")
	bob.waitFor("welcome, bob: your account is ready")
	bob.waitFor("Online (2)")
	alice.waitFor("bob came online")
	alice.waitFor("Online (2)")

	// From a third ptyTUI: both are online, and the public room is empty
	// (nothing of bob's form was sent as alice).
	c := cli{t: t, bin: bin, server: p.TCPAddr(), config: home + "/.config"}
	if who := c.ok(nil, "", "--user", "bob", "who"); who != "alice\nbob\n" {
		t.Errorf("parley who = %q, want alice and bob", who)
	}
	if h := c.ok(nil, "", "--user", "alice", "history", "room.public"); strings.TrimSpace(h) != "" {
		t.Errorf("the public room has messages: %q", h)
	}

	// Files received go to the platform's download folder.
	alice.keys("/dir", keyEnter)
	alice.waitFor("downloads go to " + dl)

	bob.quit()
	alice.waitFor("bob went offline")
	alice.quit()
}

// A call between two real TUIs on this machine, which has no sound card:
// the caller is told plainly that nothing is sent or played (and the sound
// library's own complaints do not scribble over the screen), the callee's
// screen rings, and the answered call shows in both call bars.
func TestTUICallWithoutSoundCard(t *testing.T) {
	if _, err := os.Stat("/dev/snd"); err == nil {
		t.Skip("this machine has sound devices")
	}
	p := parleytest.Start(t, nil)
	bin := buildBinary(t)
	home := t.TempDir()
	env := []string{"HOME=" + home, "XDG_CONFIG_HOME=" + home + "/.config", "PARLEY_SERVER=" + p.TCPAddr()}

	alice := startTUI(t, "alice", bin, env)
	alice.waitFor("Register")
	alice.register("alice")
	alice.waitFor("welcome, alice: your account is ready")
	bob := startTUI(t, "bob", bin, env)
	bob.waitFor("Continue as alice")
	bob.register("bob")
	bob.waitFor("welcome, bob: your account is ready")

	alice.keys("/call @bob", keyEnter)
	alice.waitFor("no microphone found: the call continues without sending audio")
	alice.waitFor("CALLING @bob")
	bob.waitFor("Incoming call from alice · /answer · /reject")
	bob.keys("/answer", keyEnter)
	bob.waitFor("IN CALL @alice")
	alice.waitFor("IN CALL @bob")
	alice.keys("/hangup", keyEnter)
	bob.waitFor("call ended: hung up")
	for _, tm := range []*ptyTUI{alice, bob} {
		if text, _ := tm.screenText(); strings.Contains(text, "ALSA lib") {
			t.Errorf("the sound library printed over %s's screen:\n%s", tm.name, tail(text))
		}
	}
	bob.quit()
	alice.quit()
}
