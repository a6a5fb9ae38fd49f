package tui

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	tea "github.com/charmbracelet/bubbletea"

	"github.com/parleychat/parley/clients/parley"
	"github.com/parleychat/parley/protocol/filename"
)

// paneRow is the transfers pane's row of file #n as shown.
func paneRow(t *testing.T, m *model, n int) string {
	t.Helper()
	for _, r := range strings.Split(m.View(), "\n") {
		if strings.Contains(r, "#"+strconv.Itoa(n)+" ") && (strings.Contains(r, "↑") || strings.Contains(r, "↓")) {
			return r
		}
	}
	t.Fatalf("no pane row for #%d:\n%s", n, m.View())
	return ""
}

// running puts a transfer of e in the pane as if its command were running.
func running(m *model, kind transferKind, e *fileEntry) *transfer {
	tr := newTransfer(kind, e, "/somewhere")
	e.tr = tr
	m.chat.transfers = append(m.chat.transfers, tr)
	m.chat.relayout()
	tr.start(context.Background(), m.now())
	tr.phase = phaseRunning
	return tr
}

// TestTransferProgress: the goroutine's counters, read on each tick, move
// the bar and give the rate over the last seconds and the time left;
// several transfers show at once; the end of one takes it out of the pane.
func TestTransferProgress(t *testing.T) {
	m := loggedIn(t)
	m.Update(tea.WindowSizeMsg{Width: 160, Height: 30})
	clk := withClock(m)
	openChat(m, dmAB, "bob")
	// The offers' messages, as the file service posts them.
	offer := func(seq uint64, fromID, from, id, name string, size uint64) *fileEntry {
		ev := message(dmAB, seq, fromID, from, name)
		ev.Message.File = &parley.FileInfo{ID: id, Name: name}
		m.onEvent(ev)
		e := m.chat.fileIDs[id]
		e.size = size
		return e
	}
	up := running(m, upload, offer(1, "u1", "alice", "f1", "big.iso", 10<<20))
	up.offer = &parley.FileOffer{File: &parley.FileInfo{ID: "f1", Size: 10 << 20}}
	down := running(m, download, offer(2, "u2", "bob", "f2", "photo.jpg", 4<<20))

	if cmd := m.ensureTick(); cmd == nil {
		t.Fatal("no redraw scheduled while transfers run")
	}
	up.cnt.done.Store(3 << 20)
	down.cnt.remote.Store(1<<20 + 1) // bob's upload is at 1 MiB
	clk.advance(time.Second)
	m.Update(transferTickMsg{})

	row := paneRow(t, m, 1)
	for _, want := range []string{"↑ #1 big.iso", " 30% 3.0 MiB/10.0 MiB", "3.0 MiB/s", "ETA 2s"} {
		if !strings.Contains(row, want) {
			t.Errorf("upload row lacks %q: %q", want, row)
		}
	}
	if n := strings.Count(row, "█"); n != 6 {
		t.Errorf("bar at 30%% of 20 cells fills %d: %q", n, row)
	}
	if row := paneRow(t, m, 2); !strings.Contains(row, "↓ #2 photo.jpg waiting for the upload (25%)") {
		t.Errorf("download row: %q", row)
	}
	screenHas(t, m, "[#1] big.iso · 10.0 MiB — uploading 30%")

	// Next second: 2 MiB more; the rate is over both seconds.
	up.cnt.done.Store(5 << 20)
	down.cnt.remote.Store(0)
	down.cnt.done.Store(1 << 20)
	clk.advance(time.Second)
	m.Update(transferTickMsg{})
	row = paneRow(t, m, 1)
	for _, want := range []string{" 50% 5.0 MiB/10.0 MiB", "2.5 MiB/s", "ETA 2s"} {
		if !strings.Contains(row, want) {
			t.Errorf("upload row lacks %q: %q", want, row)
		}
	}
	if n := strings.Count(row, "█"); n != 10 {
		t.Errorf("bar at 50%% fills %d cells: %q", n, row)
	}
	if row := paneRow(t, m, 2); !strings.Contains(row, " 25% 1.0 MiB/4.0 MiB") {
		t.Errorf("download row: %q", row)
	}

	// Nothing moves for a while: the row says so (the SDK is retrying).
	clk.advance(stallShown)
	m.Update(transferTickMsg{})
	if row := paneRow(t, m, 1); !strings.Contains(row, "no progress for 3s: retrying…") {
		t.Errorf("stalled row: %q", row)
	}

	// A message of an earlier attempt changes nothing; the attempt's own
	// end takes the upload out of the pane and says what comes next.
	m.Update(transferDoneMsg{tr: up, attempt: up.attempt - 1, err: errors.New("old attempt")})
	if up.phase != phaseRunning {
		t.Fatalf("a stale message ended the upload: phase %v", up.phase)
	}
	m.Update(transferDoneMsg{tr: up, attempt: up.attempt})
	if strings.Contains(m.View(), "↑ #1") {
		t.Errorf("the finished upload is still in the pane:\n%s", m.View())
	}
	screenHas(t, m, "big.iso sent (10.0 MiB): waiting for bob's answer", "[#1] big.iso · 10.0 MiB — sent · waiting for bob's answer", "↓ #2 photo.jpg")

	// A broken download stays, saying how to go on.
	m.Update(transferDoneMsg{tr: down, attempt: down.attempt, err: &parley.HTTPError{Status: 503, Message: "storage down"}})
	screenHas(t, m, "download of photo.jpg: file storage unavailable (storage down) (/resume 2 to continue)")
	if row := paneRow(t, m, 2); !strings.Contains(row, "interrupted at 25%") || !strings.Contains(row, "/resume 2") {
		t.Errorf("interrupted row: %q", row)
	}
	// No ticks once nothing runs.
	m.Update(transferTickMsg{})
	if m.ticking {
		t.Error("redraws go on with nothing running")
	}
}

// TestTransfersPaneBounded: many transfers take at most five rows, and the
// message area gives them the room.
func TestTransfersPaneBounded(t *testing.T) {
	m := loggedIn(t)
	openChat(m, dmAB, "bob")
	h := m.chat.messages.Height
	for i := range 6 {
		running(m, upload, m.chat.addFile(&fileEntry{id: "f" + strconv.Itoa(i+1), conv: dmAB, name: "f.bin", size: 100, outgoing: true}))
	}
	if got := m.chat.messages.Height; got != h-maxTransferRows-1 {
		t.Errorf("message area %d rows, want %d", got, h-maxTransferRows-1)
	}
	screenHas(t, m, "… 2 more")
	if v := m.View(); strings.Count(v, "\n")+1 > 30 {
		t.Errorf("screen is %d rows high in a 30-row terminal", strings.Count(v, "\n")+1)
	}
}

func TestTransferErrors(t *testing.T) {
	for _, tc := range []struct {
		kind      transferKind
		err       error
		want      string
		resumable bool
	}{
		{upload, &parley.Error{Code: parley.CodeFileTooLarge, Message: "the file is too large (at most 10 bytes)"}, "the file is too large (at most 10 bytes)", false},
		{upload, errors.Join(parley.ErrChecksum), "checksum mismatch: the server received bytes that do not match", false},
		{download, parley.ErrChecksum, "checksum mismatch: the downloaded bytes were discarded", true},
		{upload, &parley.HTTPError{Status: 404, Message: "no such upload"}, "the file is gone (rejected, cancelled or expired)", false},
		{download, &parley.Error{Code: parley.CodePermissionDenied, Message: "you rejected this file"}, "you rejected this file", false},
		{upload, &parley.HTTPError{Status: 409, Message: "conflict"}, "still uploading, or another upload took over", true},
		{download, parley.ErrConnectionLost, "offline: connection lost", true},
		{download, context.Canceled, "cancelled", true},
		{upload, errFileChanged, "the file changed since it was offered", false},
	} {
		if got := transferError(tc.kind, tc.err); !strings.Contains(got, tc.want) {
			t.Errorf("transferError(%v) = %q, want %q", tc.err, got, tc.want)
		}
		if got := resumable(tc.kind, tc.err); got != tc.resumable {
			t.Errorf("resumable(%v) = %v", tc.err, got)
		}
	}
}

func TestSafeName(t *testing.T) {
	long := strings.Repeat("ä", 200) + ".tar.gz"
	for _, tc := range []struct{ in, want string }{
		{"report.pdf", "report.pdf"},
		{"../../etc/passwd", "passwd"},
		{`..\..\Windows\win.ini`, "win.ini"},
		{"..", "file"},
		{"", "file"},
		{" . ", "file"},
		{".bashrc", "bashrc"},
		{"\x1b[31mred\x07.txt", "[31mred.txt"},
		{"photo\u202egnp.exe", "photognp.exe"},
		{`a<b>:c"d|e?f*.txt`, "a_b__c_d_e_f_.txt"},
		{"CON", "_CON"},
		{"nul.txt", "_nul.txt"},
		{"com1.log", "_com1.log"},
		{"console.txt", "console.txt"},
		{"報告 2030.txt", "報告 2030.txt"},
		{"bad\xffutf8", "badutf8"},
	} {
		if got := safeName(tc.in); got != tc.want {
			t.Errorf("safeName(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	if got := safeName(long); len(got) > filename.MaxBytes || !strings.HasSuffix(got, ".gz") || !strings.HasPrefix(got, "ää") {
		t.Errorf("long name became %q (%d bytes)", got, len(got))
	}
}

func TestHumanFormats(t *testing.T) {
	for _, tc := range []struct {
		got, want string
	}{
		{humanSize(512), "512 B"},
		{humanSize(1536), "1.5 KiB"},
		{humanSize(10 << 20), "10.0 MiB"},
		{humanSize(3 << 30), "3.0 GiB"},
		{humanETA(8 * time.Second), "8s"},
		{humanETA(65 * time.Second), "1m05s"},
		{humanETA(2*time.Hour + 3*time.Minute), "2h03m"},
		{displayType("text/plain; charset=utf-8"), "text/plain"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}

// TestFilesOffline: without a connection every file command answers with
// an error line, nothing crashes, and a transfer that could not start can
// be resumed or cleared.
func TestFilesOffline(t *testing.T) {
	m := loggedIn(t)
	m.Update(tea.WindowSizeMsg{Width: 160, Height: 30})
	const group = "group.g1"
	offer := func(conv string, seq uint64, id, name string) {
		ev := message(conv, seq, "u2", "bob", name)
		ev.Message.File = &parley.FileInfo{ID: id, Name: name}
		m.onEvent(ev)
	}
	offer(dmAB, 1, "f1", "a.txt")
	offer(group, 1, "f2", "b.txt")
	openChat(m, dmAB, "bob")
	screenHas(t, m, "bob: [#1] a.txt — /accept 1 · /reject 1")

	enter(m, "/accept")
	screenHas(t, m, "/accept: not connected")
	enter(m, "/reject 1")
	screenHas(t, m, "/reject: not connected")

	enter(m, "/get 2") // a group's file needs no answer: the download starts, and fails
	screenHas(t, m, "download of b.txt: offline: not connected (/resume 2 to continue)", "↓ #2 b.txt interrupted at 0%")
	enter(m, "/resume")
	screenHas(t, m, "↓ #2 b.txt interrupted at 0%")
	enter(m, "/cancel 2")
	if len(m.chat.transfers) != 0 {
		t.Errorf("/cancel left %d transfers in the pane", len(m.chat.transfers))
	}
	enter(m, "/send "+t.TempDir())
	screenHas(t, m, "is not a regular file")
	enter(m, "/shelf")
	screenHas(t, m, "/shelf: not connected")
	enter(m, "/cancel")
	screenHas(t, m, "usage: /cancel N")
	enter(m, "/get x")
	screenHas(t, m, "usage: /get [N]")
}

// TestFileStateFromEventsAndLists: events and file lists keep a file's
// line up to date; a list read before the file was listed does not make it
// "gone", a later one without it does; an answer event tells the sender
// and stops an upload nobody will receive.
func TestFileStateFromEventsAndLists(t *testing.T) {
	m := loggedIn(t)
	m.Update(tea.WindowSizeMsg{Width: 160, Height: 30})
	openChat(m, dmAB, "bob")
	info := func(id, name, senderID, sender string) *parley.FileInfo {
		return &parley.FileInfo{ID: id, Name: name, Size: 2048, ContentType: "text/plain", SenderID: senderID,
			SenderName: sender, Conversation: dmAB, State: parley.FileStateUploading, Uploaded: 1024}
	}
	// bob's offer: its message, a list already asked for (1), then the
	// offer's event.
	ev := message(dmAB, 1, "u2", "bob", "a.txt")
	ev.Message.File = info("f1", "a.txt", "u2", "bob")
	m.onEvent(ev)
	m.filesReq = 1
	m.onEvent(parley.FileEvent{Kind: parley.FileEventOffered, File: info("f1", "a.txt", "u2", "bob")})
	screenHas(t, m, "bob: [#1] a.txt · 2.0 KiB · text/plain — /accept 1 · /reject 1 (being uploaded: 50%)")

	m.Update(filesMsg{req: 1, conv: dmAB, purpose: filesRefresh}) // read before the file was listed
	if e := m.chat.fileByNum(1); e.removed {
		t.Fatal("a list read before the offer existed removed it")
	}
	done := info("f1", "a.txt", "u2", "bob")
	done.State, done.Uploaded = parley.FileStateAvailable, 2048
	m.onEvent(parley.FileEvent{Kind: parley.FileEventAvailable, File: done})
	screenHas(t, m, "[#1] a.txt · 2.0 KiB · text/plain — /accept 1 · /reject 1")
	if strings.Contains(m.View(), "being uploaded") {
		t.Error("the line still says the file is being uploaded")
	}
	m.Update(filesMsg{req: 2, conv: dmAB, purpose: filesWatch}) // asked later: the file is gone
	screenHas(t, m, "a.txt expired or was removed", "[#1] a.txt · 2.0 KiB · text/plain — expired or removed")

	// alice's offer, uploading, rejected by bob.
	own := message(dmAB, 2, "u1", "alice", "b.bin")
	own.Message.File = info("f2", "b.bin", "u1", "alice")
	m.onEvent(own)
	e := m.chat.fileIDs["f2"]
	up := running(m, upload, e)
	up.offer = &parley.FileOffer{File: e.info}
	rejected := info("f2", "b.bin", "u1", "alice")
	rejected.State, rejected.Answer = parley.FileStateExpired, parley.FileAnswerRejected
	m.onEvent(parley.FileEvent{Kind: parley.FileEventRejected, File: rejected, Username: "bob"})
	screenHas(t, m, "bob rejected b.bin", "[#2] b.bin · 2.0 KiB · text/plain — bob rejected it")
	if len(m.chat.transfers) != 0 || up.ctx.Err() == nil {
		t.Error("the upload of a rejected file goes on")
	}
}
