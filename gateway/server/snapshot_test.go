package server_test

import (
	"fmt"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/parleychat/parley/gateway/server"
	"github.com/parleychat/parley/libs/proto/internalv1"
	"github.com/parleychat/parley/libs/testenv"
	"github.com/parleychat/parley/protocol/parleyv1"
)

// snapshotFrames reads the frames that follow the Session reply up to the
// snapshot's last one, failing on anything else in between.
func (c *client) snapshotFrames() []*parleyv1.PresenceSnapshot {
	c.t.Helper()
	var frames []*parleyv1.PresenceSnapshot
	for {
		f := c.recv()
		s := f.GetPresenceSnapshot()
		if s == nil {
			c.t.Fatalf("frame %v inside the snapshot", f)
		}
		frames = append(frames, s)
		if s.GetLast() {
			return frames
		}
	}
}

// TestSnapshotPages: an online list of several presence pages reaches the
// client as one snapshot: every user exactly once although presence listed
// some twice, frames of at most 500 users all with the first page's seq,
// last=true only on the final frame.
func TestSnapshotPages(t *testing.T) {
	e := startGateway(t, nil)
	e.presence.preload(2400)
	e.presence.mu.Lock()
	e.presence.dupes = true
	e.presence.mu.Unlock()
	c := dialTCP(t, e)
	c.login("alice", nil)
	frames := c.snapshotFrames()

	count := map[string]int{}
	for i, s := range frames {
		if len(s.GetUsers()) > 500 || s.GetSeq() != frames[0].GetSeq() || s.GetLast() != (i == len(frames)-1) {
			t.Errorf("frame %d of %d: %d users, last=%v, seq %d (first %d)",
				i, len(frames), len(s.GetUsers()), s.GetLast(), s.GetSeq(), frames[0].GetSeq())
		}
		for _, u := range s.GetUsers() {
			count[u.GetUserId()]++
		}
	}
	if len(count) != 2401 || count["u-alice"] != 1 || count["u-extra0"] != 1 || count["u-extra2399"] != 1 {
		t.Fatalf("snapshot holds %d distinct users, want 2401 with alice", len(count))
	}
	for id, n := range count {
		if n != 1 {
			t.Fatalf("user %s sent %d times in one snapshot", id, n)
		}
	}
	lists := e.presence.Lists()
	if len(lists) != 5 {
		t.Fatalf("the gateway asked for %d pages, want 5", len(lists))
	}
	for i, l := range lists {
		if l.GetLimit() != 500 || (l.GetCursor() == "") != (i == 0) {
			t.Errorf("list request %d: cursor %q limit %d", i, l.GetCursor(), l.GetLimit())
		}
	}
}

// TestSnapshotSeqIsFirstPage: changes made while later pages are read come
// after the snapshot as events, although later pages may already show
// them; the snapshot's seq is the first page's. Applied in order (the
// snapshot replaces the list, then each change), the client's list is
// right.
func TestSnapshotSeqIsFirstPage(t *testing.T) {
	e := startGateway(t, nil)
	e.presence.preload(1200) // three pages
	p := e.presence
	p.mu.Lock()
	first := p.seq
	p.afterPage = func(page int) {
		if page != 1 {
			return
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		// extra0 (on page 1) leaves; zlate arrives and sorts last, so page
		// 3 lists it too.
		p.publishLocked(&internalv1.Conn{UserId: "u-extra0", Username: "extra0"}, false)
		late := &parleyv1.OnlineUser{UserId: "u-zlate", Username: "zlate", Sessions: 1}
		p.extra = append(p.extra, late)
		p.publishLocked(&internalv1.Conn{UserId: late.UserId, Username: late.Username}, true)
	}
	p.mu.Unlock()

	c := dialTCP(t, e)
	c.login("alice", nil)
	view := map[string]bool{}
	frames := c.snapshotFrames()
	for _, s := range frames {
		if s.GetSeq() != first+1 { // alice's own connect was first+1
			t.Errorf("snapshot frame seq %d, want the first page's %d", s.GetSeq(), first+1)
		}
		for _, u := range s.GetUsers() {
			view[u.GetUserId()] = true
		}
	}
	if !view["u-zlate"] || !view["u-extra0"] {
		t.Fatalf("later page should list zlate and page 1 extra0: %v %v", view["u-zlate"], view["u-extra0"])
	}
	var seqs []uint64
	for range 2 {
		ch := c.recv().GetPresenceChange()
		if ch == nil {
			t.Fatal("expected the changes made during the snapshot")
		}
		seqs = append(seqs, ch.GetSeq())
		view[ch.GetUser().GetUserId()] = ch.GetOnline()
	}
	if seqs[0] != first+2 || seqs[1] != first+3 {
		t.Errorf("changes with seq %v, want [%d %d]", seqs, first+2, first+3)
	}
	if view["u-extra0"] || !view["u-zlate"] || !view["u-alice"] {
		t.Errorf("client's list after the changes: extra0=%v zlate=%v alice=%v", view["u-extra0"], view["u-zlate"], view["u-alice"])
	}
}

// TestLargeSnapshotSmallQueue: a snapshot many times the send queue's byte
// limit reaches a client that reads, whole and without SLOW_CONSUMER; a
// client that reads nothing is still disconnected as a slow consumer.
func TestLargeSnapshotSmallQueue(t *testing.T) {
	e := startGateway(t, func(c *server.Config) {
		c.SendQueueBytes = 64 << 10
		c.WriteTimeout = time.Second
	})
	// About 6 MB of snapshot: more than the kernel buffers for one
	// loopback connection (Linux grows a socket's send buffer to 4 MiB).
	const n = 20_000
	name := strings.Repeat("n", 270)
	e.presence.mu.Lock()
	for i := range n {
		e.presence.extra = append(e.presence.extra, &parleyv1.OnlineUser{UserId: fmt.Sprintf("u-big%05d", i), Username: fmt.Sprint(name, i), Sessions: 1})
	}
	e.presence.mu.Unlock()

	reader := dialTCP(t, e)
	reader.login("reader", nil)
	users, frames := reader.snapshot()
	if len(users) != n+1 {
		t.Fatalf("reader got %d users in %d frames, want %d", len(users), len(frames), n+1)
	}
	reader.ping(1) // still connected
	if v := e.metric("parley_gateway_slow_consumer_disconnects_total", nil); v != 0 {
		t.Fatalf("slow consumer disconnects = %v after a reading client's snapshot", v)
	}

	// The idle client asks for a tiny receive buffer so the kernel cannot
	// absorb the snapshot for it, logs in and then reads nothing.
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
	}}
	raw, err := d.Dial("tcp", e.srv.TCPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	idle := newStreamClient(t, raw)
	s := idle.login("idle", nil)
	connID := e.presence.connOf(s.GetSessionId()).GetConnId()
	testenv.Eventually(t, 20*time.Second, "idle client disconnected", func() bool { return e.presence.Disconnected(connID) })
	if v := e.metric("parley_gateway_slow_consumer_disconnects_total", nil); v != 1 {
		t.Errorf("slow consumer disconnects = %v, want 1", v)
	}
}

// TestWhoPaging: Who returns one page per request; following next_cursor
// lists everyone. Cursor and limit go to presence as the client sent them
// (presence applies the default and clamps); a bad cursor is a non-fatal
// INVALID_ARGUMENT.
func TestWhoPaging(t *testing.T) {
	e := startGateway(t, nil)
	e.presence.preload(1200)
	c := dialTCP(t, e)
	c.login("alice", &parleyv1.ClientOptions{SkipPresenceFeed: true})

	cases := []struct {
		limit uint32
		most  int
		pages int
	}{
		{0, 500, 3},
		{300, 300, 5},
		{5000, 1000, 2},
	}
	for _, tc := range cases {
		seen := map[string]bool{}
		cursor, pages := "", 0
		for {
			r := c.request(&parleyv1.Frame{Body: &parleyv1.Frame_Who{Who: &parleyv1.WhoRequest{Cursor: cursor, Limit: tc.limit}}})
			w := r.GetWhoReply()
			if w == nil {
				t.Fatalf("limit %d: %v", tc.limit, r)
			}
			last := e.presence.Lists()[len(e.presence.Lists())-1]
			if last.GetCursor() != cursor || last.GetLimit() != tc.limit {
				t.Fatalf("presence got cursor %q limit %d, client sent %q %d", last.GetCursor(), last.GetLimit(), cursor, tc.limit)
			}
			if len(w.GetUsers()) > tc.most {
				t.Fatalf("limit %d: a page of %d users", tc.limit, len(w.GetUsers()))
			}
			pages++
			for _, u := range w.GetUsers() {
				seen[u.GetUserId()] = true
			}
			if w.GetNextCursor() == "" {
				break
			}
			cursor = w.GetNextCursor()
		}
		if len(seen) != 1201 || pages != tc.pages {
			t.Errorf("limit %d: %d users in %d pages, want 1201 in %d", tc.limit, len(seen), pages, tc.pages)
		}
	}

	r := c.request(&parleyv1.Frame{Body: &parleyv1.Frame_Who{Who: &parleyv1.WhoRequest{Cursor: "not-a-cursor"}}})
	if r.GetError().GetCode() != parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT || r.GetError().GetFatal() {
		t.Fatalf("bad cursor: %v", r)
	}
	c.ping(7)
}

// TestSnapshotWaitsForPresenceRestart: presence has no responder for a
// moment (restarting, or still starting next to the gateway) when a client
// logs in; the gateway asks again and the client still gets its snapshot.
func TestSnapshotWaitsForPresenceRestart(t *testing.T) {
	e := startGateway(t, nil)
	e.presence.stopList()
	go func() {
		time.Sleep(300 * time.Millisecond)
		e.presence.startList(t)
	}()
	c := dialTCP(t, e)
	c.login("alice", nil)
	users, _ := c.snapshot()
	if len(users) != 1 || users[0].GetUsername() != "alice" {
		t.Fatalf("snapshot after presence came back = %v, want alice", users)
	}
}
