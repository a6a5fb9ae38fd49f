package tui

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"image"
	"image/png"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	tea "github.com/charmbracelet/bubbletea"

	"github.com/parleychat/parley/clients/internal/parleytest"
	"github.com/parleychat/parley/clients/parley"
	"github.com/parleychat/parley/standalone/server"
)

// These tests drive the TUI's model against a real in-process Parley
// (gateway, auth, messaging, the file service with a directory store): a
// world pumps every user's commands in goroutines, exactly as bubbletea
// would, and feeds their results back to the model on the test's
// goroutine.

// waitLimit bounds every wait for something to show on a screen.
const waitLimit = 30 * time.Second

type world struct {
	t        *testing.T
	p        *parleytest.Parley
	httpBase string
	in       chan envelope
	stop     chan struct{}
}

type envelope struct {
	u   *user
	msg tea.Msg
}

// user is one person in front of their own TUI.
type user struct {
	w    *world
	name string
	dir  string // their download folder
	m    *model
}

func newWorld(t *testing.T, edit func(*server.Config)) *world {
	t.Helper()
	p := parleytest.Start(t, edit)
	w := &world{t: t, p: p, httpBase: p.HTTPBase(), in: make(chan envelope), stop: make(chan struct{})}
	t.Cleanup(func() { close(w.stop) })
	return w
}

// join registers name and logs in through the TUI's own command.
func (w *world) join(name string) *user { w.t.Helper(); return w.start(name, authRegister) }

// login starts another TUI of an existing user.
func (w *world) login(name string) *user { w.t.Helper(); return w.start(name, authLogin) }

// start starts a TUI of name; edit, if any, adjusts its configuration.
func (w *world) start(name string, kind authKind, edit ...func(*Config)) *user {
	w.t.Helper()
	u := &user{w: w, name: name, dir: w.t.TempDir()}
	cfg := Config{Server: w.p.TCPAddr(), DownloadDir: u.dir, Options: []parley.Option{parley.WithHTTPBase(w.httpBase)}}
	for _, e := range edit {
		e(&cfg)
	}
	u.m = newModel(context.Background(), cfg)
	u.m.uploadRetries = 2 // an interrupted upload gives up after about a second, not 45
	u.m.Update(tea.WindowSizeMsg{Width: 200, Height: 60})
	w.t.Cleanup(func() {
		if u.m.client != nil {
			u.m.client.Close()
		}
	})
	u.feed(authCmd(context.Background(), u.m.cfg, nil, kind, name, "correct horse battery")())
	if u.m.screen != screenChat {
		w.t.Fatalf("%s is not logged in: %s", name, u.m.View())
	}
	return u
}

// run runs cmd as bubbletea would: in a goroutine, its message back to
// the model.
func (u *user) run(cmd tea.Cmd) {
	if cmd == nil {
		return
	}
	go func() {
		msg := cmd()
		select {
		case u.w.in <- envelope{u, msg}:
		case <-u.w.stop:
		}
	}()
}

func (u *user) feed(msg tea.Msg) {
	switch msg := msg.(type) {
	case nil:
		return
	case tea.BatchMsg:
		for _, c := range msg {
			u.run(c)
		}
		return
	}
	_, cmd := u.m.Update(msg)
	u.run(cmd)
}

// enter types text into the input and presses enter.
func (u *user) enter(text string) {
	u.m.chat.input.SetValue(text)
	u.feed(tea.KeyMsg{Type: tea.KeyEnter})
}

// until pumps everyone's messages until cond holds; on a timeout it
// shows the screens of show.
func (w *world) until(what string, cond func() bool, show ...*user) {
	w.t.Helper()
	deadline := time.After(waitLimit)
	for !cond() {
		select {
		case e := <-w.in:
			e.u.feed(e.msg)
		case <-deadline:
			var screens strings.Builder
			for _, u := range show {
				fmt.Fprintf(&screens, "\n%s's screen:\n%s", u.name, u.m.View())
			}
			w.t.Fatalf("timed out waiting for %s%s", what, screens.String())
		}
	}
}

// sees waits until u's screen shows every one of want.
func (u *user) sees(want ...string) {
	u.w.t.Helper()
	u.w.until(u.name+" to see "+strings.Join(want, ", "), func() bool {
		v := u.m.View()
		for _, s := range want {
			if !strings.Contains(v, s) {
				return false
			}
		}
		return true
	}, u)
}

// screenHas fails unless u's screen shows all of want now.
func (u *user) screenHas(want ...string) {
	u.w.t.Helper()
	v := u.m.View()
	for _, s := range want {
		if !strings.Contains(v, s) {
			u.w.t.Errorf("%s's screen lacks %q:\n%s", u.name, s, v)
		}
	}
}

// open selects the conversation titled title (waiting for it to appear).
func (u *user) open(title string) *convView {
	u.w.t.Helper()
	var cv *convView
	u.w.until(u.name+"'s chat "+title, func() bool {
		for i, c := range u.m.chat.convs {
			if c.title == title {
				cv = c
				u.run(u.m.selectConv(i))
				return true
			}
		}
		return false
	})
	return cv
}

// directChat opens a private chat between a and b, selected on both.
func directChat(a, b *user) {
	a.w.t.Helper()
	a.enter("/msg " + b.name + " hello " + b.name)
	a.open(b.name)
	b.open(a.name)
	b.sees(a.name + ": hello " + b.name)
}

// file finds u's file #n.
func (u *user) file(n int) *fileEntry { return u.m.chat.fileByNum(n) }

func randomFile(t *testing.T, dir, name string, n int) (string, []byte) {
	t.Helper()
	b := make([]byte, n)
	_, _ = rand.Read(b)
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path, b
}

// sameFile fails unless path holds exactly want (compared by SHA-256).
func sameFile(t *testing.T, path string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if sha256.Sum256(got) != sha256.Sum256(want) {
		t.Fatalf("%s: %d bytes, SHA-256 differs from the %d bytes sent", path, len(got), len(want))
	}
}

// noPartFiles fails if a download left its part file behind.
func noPartFiles(t *testing.T, dir string) {
	t.Helper()
	parts, _ := filepath.Glob(filepath.Join(dir, "*.part"))
	if len(parts) > 0 {
		t.Errorf("part files left in the download folder: %v", parts)
	}
}

// TestSendAcceptDownload: alice sends a file with /send in her private chat
// with bob; bob's screen shows the offer inline (name, size, type, from
// alice) with how to answer; /accept downloads it into his download folder
// intact, and alice is told he accepted.
func TestSendAcceptDownload(t *testing.T) {
	w := newWorld(t, nil)
	alice, bob := w.join("alice"), w.join("bob")
	directChat(alice, bob)

	src, data := randomFile(t, t.TempDir(), "report 2030.txt", 300<<10+7)
	alice.enter(`/send "` + src + `"`) // quotes, as for a path with spaces
	alice.sees("sending report 2030.txt (300.0 KiB) as #1")
	alice.sees("report 2030.txt sent (300.0 KiB): waiting for bob's answer")
	if len(alice.m.chat.transfers) != 0 {
		t.Errorf("a finished upload stays in the pane: %d rows", len(alice.m.chat.transfers))
	}

	// bob sees the offer in the chat, with everything to decide on it.
	bob.sees("alice: [#1] report 2030.txt · 300.0 KiB · text/plain", "/accept 1 · /reject 1")

	bob.enter("/accept") // the newest offer in the selected chat
	bob.sees("you accepted report 2030.txt")
	want := filepath.Join(bob.dir, "report 2030.txt")
	bob.sees("saved report 2030.txt (300.0 KiB, SHA-256 checked) to " + want)
	sameFile(t, want, data)
	noPartFiles(t, bob.dir)
	bob.screenHas("[#1] report 2030.txt · 300.0 KiB · text/plain — saved to " + want)

	// alice learns of the answer; her line says so too.
	alice.sees("bob accepted report 2030.txt", "[#1] report 2030.txt · 300.0 KiB · text/plain — bob accepted it")

	// A second /get of the same file never overwrites the first copy.
	bob.enter("/get 1")
	again := filepath.Join(bob.dir, "report 2030 (1).txt")
	bob.sees("saved report 2030.txt (300.0 KiB, SHA-256 checked) to " + again)
	sameFile(t, again, data)
	sameFile(t, want, data)
}

// TestRejectIsShownToSender: bob is offline when alice sends; at login his
// screen shows the waiting offer; he rejects it, nothing is saved, and
// alice's screen says that bob rejected it.
func TestRejectIsShownToSender(t *testing.T) {
	w := newWorld(t, nil)
	alice := w.join("alice")
	// bob exists but is offline.
	c, err := parley.Dial(context.Background(), w.p.TCPAddr())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Register(context.Background(), "bob", "correct horse battery"); err != nil {
		t.Fatal(err)
	}
	c.Close()
	alice.enter("/msg bob are you there?")
	alice.open("bob")
	src, _ := randomFile(t, t.TempDir(), "holiday.bin", 50<<10)
	alice.enter("/send " + src)
	alice.sees("holiday.bin sent (50.0 KiB): waiting for bob's answer")

	bob := w.login("bob")
	bob.open("alice")
	bob.sees("alice: [#1] holiday.bin · 50.0 KiB · application/octet-stream — /accept 1 · /reject 1")

	bob.enter("/reject 1")
	bob.sees("you rejected holiday.bin from alice", "[#1] holiday.bin · 50.0 KiB · application/octet-stream — rejected")
	alice.sees("bob rejected holiday.bin", "— bob rejected it")

	// Nothing can be fetched any more, and nothing was saved.
	bob.enter("/get 1")
	bob.sees("/get: holiday.bin was rejected or removed")
	if names, _ := os.ReadDir(bob.dir); len(names) != 0 {
		t.Errorf("bob's download folder has %d entries after a reject", len(names))
	}
}

// TestGroupShelf: a file sent to a group shows in the group for every
// member; /shelf lists the group's files and /get N downloads one.
func TestGroupShelf(t *testing.T) {
	w := newWorld(t, nil)
	alice, bob := w.join("alice"), w.join("bob")
	alice.enter("/group team bob")
	alice.sees("group +team created")
	bob.sees("alice invited you to the group +team")
	bob.open("team")
	bob.enter("/join")
	alice.sees("bob joined")

	src, data := randomFile(t, t.TempDir(), "plan.txt", 120<<10)
	alice.enter("/send " + src)
	alice.sees("plan.txt sent (120.0 KiB): it is on the group's shelf")
	bob.sees("alice: [#1] plan.txt · 120.0 KiB · text/plain — /get 1")

	src2, _ := randomFile(t, t.TempDir(), "notes.md", 2000)
	alice.enter("/send " + src2)
	alice.sees("notes.md sent (2.0 KiB)")

	bob.enter("/shelf")
	bob.sees("files in +team (2):", "[#2] notes.md · 2.0 KiB", "from alice")
	bob.enter("/get 1")
	want := filepath.Join(bob.dir, "plan.txt")
	bob.sees("saved plan.txt (120.0 KiB, SHA-256 checked) to " + want)
	sameFile(t, want, data)

	// The group has no answers; the shelf is not in the public room.
	bob.enter("/reject 2")
	bob.sees("files in a group are not answered")
	bob.open("public")
	bob.enter("/shelf")
	bob.sees("/shelf: files go to a private chat or a group, not the public room")
}

// TestSendErrors: mistakes and refusals are error lines, and nothing
// starts: a path that does not exist, a folder, an empty file, the public
// room, a file over the server's limit, answers with nothing to answer.
func TestSendErrors(t *testing.T) {
	w := newWorld(t, func(c *server.Config) { c.File.MaxFileSize = 64 << 10 })
	alice, bob := w.join("alice"), w.join("bob")
	dir := t.TempDir()

	alice.enter("/send " + filepath.Join(dir, "nope.txt"))
	alice.sees("/send: files go to a private chat or a group, not the public room")
	directChat(alice, bob)

	for _, tc := range []struct{ cmd, want string }{
		{"/send " + filepath.Join(dir, "nope.txt"), "/send: stat " + filepath.Join(dir, "nope.txt") + ": no such file or directory"},
		{"/send " + dir, "/send: " + dir + " is not a regular file"},
		{"/send", "usage: /send PATH"},
		{"/accept", "/accept: no such file in this chat"},
		{"/get 7", "/get: there is no file #7"},
		{"/resume", "/resume: no interrupted transfer"},
		{"/dir " + filepath.Join(dir, "nope"), "/dir: stat " + filepath.Join(dir, "nope") + ": no such file or directory"},
	} {
		alice.enter(tc.cmd)
		alice.sees(tc.want)
	}
	empty := filepath.Join(dir, "empty.txt")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	alice.enter("/send " + empty)
	alice.sees("empty files cannot be sent")
	if len(alice.m.chat.transfers) != 0 || len(alice.m.chat.files) != 0 {
		t.Fatalf("a refused /send left %d transfers, %d files", len(alice.m.chat.transfers), len(alice.m.chat.files))
	}

	big, _ := randomFile(t, dir, "big.bin", 64<<10+1)
	alice.enter("/send " + big)
	alice.sees("cannot send big.bin: the file is too large (at most 65536 bytes)")
	if tr := alice.file(1).tr; tr == nil || tr.resumable || slices.Contains(alice.m.chat.transfers, tr) {
		t.Error("a refused offer is offered for /resume")
	}
	bob.screenHas("hello bob")
	if strings.Contains(bob.m.View(), "big.bin") {
		t.Error("bob sees an offer the server refused")
	}
}

// cable is a TCP connection to the gateway's HTTP port that a test can
// unplug: connections through it are cut after a number of bytes, and
// while it is unplugged nothing listens on its port (connection refused).
type cable struct {
	t      *testing.T
	addr   string
	target string

	mu    sync.Mutex // guards the fields below
	ln    net.Listener
	conns []net.Conn
	limit int64 // bytes client→server before the cable is unplugged (0: none)
}

func newCable(t *testing.T, target string) *cable {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &cable{t: t, addr: ln.Addr().String(), target: target}
	c.serve(ln)
	t.Cleanup(c.unplug)
	return c
}

func (c *cable) serve(ln net.Listener) {
	c.mu.Lock()
	c.ln = ln
	c.mu.Unlock()
	go func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", c.target)
			if err != nil {
				in.Close()
				continue
			}
			c.mu.Lock()
			c.conns = append(c.conns, in, out)
			limit := c.limit
			c.mu.Unlock()
			go func() {
				var src io.Reader = in
				if limit > 0 {
					src = io.LimitReader(in, limit)
				}
				_, _ = io.Copy(out, src)
				if limit > 0 {
					c.unplug() // the network went away mid-upload
				}
				in.Close()
				out.Close()
			}()
			go func() { _, _ = io.Copy(in, out); in.Close(); out.Close() }()
		}
	}()
}

// cutAfter unplugs the cable once n more bytes went towards the server on
// a new connection.
func (c *cable) cutAfter(n int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.limit = n
}

func (c *cable) unplug() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ln != nil {
		c.ln.Close()
		c.ln = nil
	}
	for _, cn := range c.conns {
		cn.Close()
	}
	c.conns = nil
}

func (c *cable) plug() {
	c.t.Helper()
	var ln net.Listener
	var err error
	for range 50 { // the port may be held for a moment
		if ln, err = net.Listen("tcp", c.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		c.t.Fatal(err)
	}
	c.mu.Lock()
	c.limit = 0
	c.mu.Unlock()
	c.serve(ln)
}

// TestResumeInterruptedUpload: the network goes away in the middle of an
// upload; the pane and the chat say it was interrupted (offline) and how to
// go on; after the network is back /resume finishes it from where the
// server is, and bob gets the file intact.
func TestResumeInterruptedUpload(t *testing.T) {
	w := newWorld(t, nil)
	cb := newCable(t, strings.TrimPrefix(w.p.HTTPBase(), "http://"))
	w.httpBase = "http://" + cb.addr
	alice, bob := w.join("alice"), w.join("bob")
	directChat(alice, bob)

	src, data := randomFile(t, t.TempDir(), "video.bin", 3<<20)
	cb.cutAfter(1<<20 + 4321)
	alice.enter("/send " + src)
	alice.sees("upload of video.bin: offline: the server refused the connection (/resume 1 to continue)")
	tr := alice.file(1).tr
	if !slices.Contains(alice.m.chat.transfers, tr) || tr.phase != phaseFailed || !tr.resumable {
		t.Fatalf("the interrupted upload is not in the pane as resumable: phase %v", tr.phase)
	}
	alice.screenHas("↑ #1 video.bin interrupted at", "/resume 1")
	// bob already sees the offer, still being uploaded.
	bob.sees("[#1] video.bin · 3.0 MiB")

	cb.plug()
	alice.enter("/resume")
	alice.sees("video.bin sent (3.0 MiB): waiting for bob's answer")
	if len(alice.m.chat.transfers) != 0 {
		t.Errorf("the pane still has %d transfers", len(alice.m.chat.transfers))
	}

	bob.enter("/accept 1")
	bob.sees("saved video.bin (3.0 MiB, SHA-256 checked)")
	sameFile(t, filepath.Join(bob.dir, "video.bin"), data)
}

// TestDownloadResumeAndChecksum: a download continues a part file left by
// an earlier, interrupted one; a part file whose bytes are wrong fails the
// SHA-256 check, which the screen says, and /resume fetches it afresh.
func TestDownloadResumeAndChecksum(t *testing.T) {
	w := newWorld(t, nil)
	alice, bob := w.join("alice"), w.join("bob")
	directChat(alice, bob)
	src, data := randomFile(t, t.TempDir(), "data.bin", 1<<20)
	alice.enter("/send " + src)
	alice.sees("data.bin sent")
	bob.sees("[#1] data.bin")
	e := bob.file(1)

	// An earlier run got half of it.
	part := parley.PartFile(bob.dir, "data.bin", e.id)
	if err := os.WriteFile(part, data[:len(data)/2], 0o644); err != nil {
		t.Fatal(err)
	}
	bob.enter("/accept 1")
	bob.sees("saved data.bin (1.0 MiB, SHA-256 checked) to " + filepath.Join(bob.dir, "data.bin"))
	sameFile(t, filepath.Join(bob.dir, "data.bin"), data)
	noPartFiles(t, bob.dir)

	// A corrupted part file: the whole is checked, found wrong, dropped.
	bad := bytes.Repeat([]byte{0x55}, len(data)/2)
	if err := os.WriteFile(part, bad, 0o644); err != nil {
		t.Fatal(err)
	}
	bob.enter("/get 1")
	bob.sees("download of data.bin: checksum mismatch: the downloaded bytes were discarded (/resume 1 to continue)")
	noPartFiles(t, bob.dir)
	if _, err := os.Stat(filepath.Join(bob.dir, "data (1).bin")); err == nil {
		t.Fatal("a download that failed its SHA-256 check was saved")
	}
	bob.enter("/resume 1")
	bob.sees("saved data.bin (1.0 MiB, SHA-256 checked) to " + filepath.Join(bob.dir, "data (1).bin"))
	sameFile(t, filepath.Join(bob.dir, "data (1).bin"), data)
}

// TestHostileFileName: a name built to escape the download folder or to
// drive the terminal is shown and saved as a plain name in the folder.
func TestHostileFileName(t *testing.T) {
	w := newWorld(t, nil)
	alice, bob := w.join("alice"), w.join("bob")
	directChat(alice, bob)
	// Offered with the SDK, as a hostile client would.
	cv := alice.m.chat.selected()
	data := []byte("gotcha")
	sum := sha256.Sum256(data)
	offer, err := alice.m.client.OfferFile(context.Background(), parley.OfferRequest{Conversation: cv.id,
		Name: "../../.bashrc\x1b[2J\u202egnp.exe", Size: uint64(len(data)), SHA256: fmt.Sprintf("%x", sum)})
	if err != nil {
		t.Fatal(err)
	}
	if err := alice.m.client.Upload(context.Background(), offer, bytes.NewReader(data), parley.UploadOptions{}); err != nil {
		t.Fatal(err)
	}
	bob.sees("[#1] bashrc[2Jgnp.exe")
	if v := bob.m.View(); strings.Contains(v, "\x1b[2J") || strings.Contains(v, "\u202e") {
		t.Error("the name's control characters reach the terminal")
	}
	bob.enter("/accept 1")
	bob.sees("saved bashrc[2Jgnp.exe")
	entries, _ := os.ReadDir(bob.dir)
	if len(entries) != 1 || entries[0].Name() != "bashrc[2Jgnp.exe" {
		t.Fatalf("download folder holds %v", entries)
	}
}

// TestResumeAcrossRuns: alice quits while an upload is cut off; in her
// next run the chat shows where the upload stopped, and /resume N PATH
// finishes it from the server's offset; bob gets the file intact.
func TestResumeAcrossRuns(t *testing.T) {
	w := newWorld(t, nil)
	cb := newCable(t, strings.TrimPrefix(w.p.HTTPBase(), "http://"))
	w.httpBase = "http://" + cb.addr
	alice, bob := w.join("alice"), w.join("bob")
	directChat(alice, bob)

	src, data := randomFile(t, t.TempDir(), "dump.sql", 2<<20+99)
	cb.cutAfter(700 << 10)
	alice.enter("/send " + src)
	w.until("the upload to be cut off", func() bool {
		tr := alice.file(1).tr
		return tr != nil && tr.phase == phaseRunning && tr.cnt.done.Load() >= 700<<10
	})
	alice.enter("/quit") // the transfer dies with the program
	alice.m.toLogin("quit")
	alice.m.client.Close()
	cb.plug()

	again := w.login("alice")
	again.open("bob")
	again.sees("[#1] dump.sql · 2.0 MiB", "upload unfinished", "/resume 1 PATH continues it")
	again.enter("/resume 1")
	again.sees("usage: /resume 1 PATH")
	again.enter("/resume 1 " + src)
	again.sees("dump.sql sent (2.0 MiB): waiting for bob's answer")

	bob.enter("/accept 1")
	bob.sees("saved dump.sql (2.0 MiB, SHA-256 checked)")
	sameFile(t, filepath.Join(bob.dir, "dump.sql"), data)
}

// TestPicturePreview: a picture sent in a chat is drawn inline under its
// offer from the thumbnail the server made, once the upload is complete.
func TestPicturePreview(t *testing.T) {
	w := newWorld(t, nil)
	alice, bob := w.join("alice"), w.join("bob")
	directChat(alice, bob)
	img := image.NewNRGBA(image.Rect(0, 0, 320, 160))
	for i := range img.Pix {
		img.Pix[i] = uint8(i * 7)
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "sunset.png")
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	alice.enter("/send " + path)
	alice.sees("sunset.png sent")
	row := strings.Repeat("▀", previewCols)
	bob.sees("[#1] sunset.png", "      "+row)
	e := bob.file(1)
	if got := strings.Count(e.picture(), row); got != 6 {
		t.Fatalf("preview of a 2:1 picture has %d rows of %d cells, want 6:\n%s", got, previewCols, e.picture())
	}
	alice.sees("      " + row) // the sender sees it too
}

func TestThumbPreviewRefusesJunk(t *testing.T) {
	if p := thumbPreview([]byte("not a jpeg"), previewCols); p != "" {
		t.Fatalf("preview of junk: %q", p)
	}
}
