package tui

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/parleychat/parley/clients/parley"
)

// Direct sessions (docs/protocol.md §20) between TUIs, and between a TUI
// and an SDK client, through a real in-process Parley with its rendezvous.
// On one machine the host candidates work: a session goes direct unless a
// side keeps to the relay (WithDirectRelayOnly).

// headerShows waits until u's header (the status line) shows want.
func (u *user) headerShows(want string) {
	u.w.t.Helper()
	u.w.until(u.name+"'s header to show "+want, func() bool { return strings.Contains(header(u.m), want) }, u)
}

// withState keeps u's device key, pins and direct history in dir.
func withState(dir string) func(*Config) {
	return func(c *Config) { c.StateDir = func(string) string { return dir } }
}

// sdkUser is a user of the SDK alone (no TUI), registered as name.
func (w *world) sdkUser(name string, opts ...parley.Option) *parley.Client {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	c, err := parley.Dial(ctx, w.p.TCPAddr(), append([]parley.Option{parley.WithHTTPBase(w.httpBase)}, opts...)...)
	if err != nil {
		w.t.Fatal(err)
	}
	w.t.Cleanup(func() { c.Close() })
	if _, err := c.Register(ctx, name, "correct horse battery"); err != nil {
		w.t.Fatal(err)
	}
	return c
}

// directLines are the texts of conversation cv's direct messages.
func directLines(cv *convView) []string {
	var out []string
	for _, l := range cv.direct {
		out = append(out, l.from+": "+l.text)
	}
	return out
}

// TestDirectSessionBetweenTUIs: alice offers bob a direct session from
// their private chat; bob sees the offer in the chat and the header and
// accepts; both headers say "⇄ direct"; what they type goes over the
// session, marked ⇄ (the server stores none of it); both see the same
// safety number; a file goes over it into bob's download folder; /direct
// off ends it (messages go through the server again); a later run of
// alice's TUI shows the direct messages from her own store.
func TestDirectSessionBetweenTUIs(t *testing.T) {
	w := newWorld(t, nil)
	aliceState := t.TempDir()
	alice := w.start("alice", authRegister, withState(aliceState))
	bob := w.join("bob")
	directChat(alice, bob)

	alice.enter("/direct")
	alice.sees("offering bob a direct session")
	alice.headerShows("connecting…")
	bob.sees("alice offers a direct session (peer to peer, end-to-end encrypted): /accept-direct or /reject-direct")
	bob.headerShows("⇄ alice offers direct: /accept-direct")
	bob.enter("/accept-direct")
	alice.sees("⇄ direct session with bob open (bob accepted)")
	bob.sees("⇄ direct session with alice open (accepted)")
	alice.headerShows("⇄ direct")
	bob.headerShows("⇄ direct")
	if strings.Contains(header(bob.m), "offers direct") {
		t.Errorf("bob's header still shows the offer: %q", header(bob.m))
	}

	alice.enter("hello over the direct path")
	bob.sees("⇄ alice: hello over the direct path")
	w.until("alice's message to be confirmed", func() bool {
		cv := alice.m.chat.selected()
		return len(cv.direct) == 1 && cv.direct[0].note == "" && cv.direct[0].id != ""
	}, alice)
	alice.sees("⇄ alice: hello over the direct path")
	bob.enter("hi alice, peer to peer")
	alice.sees("⇄ bob: hi alice, peer to peer")
	// The server has only the message that opened the chat.
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	msgs, _, err := alice.m.client.History(ctx, alice.m.chat.selectedID(), 0, 50)
	if err != nil || len(msgs) != 1 || msgs[0].Text != "hello bob" {
		t.Fatalf("the server's history of the chat: %+v, %v; want only \"hello bob\"", msgs, err)
	}

	// The same safety number on both screens.
	alice.enter("/safety")
	bob.enter("/safety")
	number := alice.m.chat.direct.sessions[alice.m.peerOf(alice.m.chat.selectedID())].SafetyNumber()
	if len(strings.Fields(number)) != 12 {
		t.Fatalf("safety number %q", number)
	}
	alice.sees("safety number with bob (their device ", number)
	bob.sees("safety number with alice (their device ", number)

	// A file over the session, with the transfer in the pane.
	src, data := randomFile(t, t.TempDir(), "holiday.bin", 2<<20)
	alice.enter("/sendfile " + src)
	alice.sees("⇄ sending holiday.bin (2.0 MiB) as #1 over the direct session")
	alice.sees("⇄ holiday.bin sent over the direct session (2.0 MiB): bob has it (SHA-256 checked)")
	bob.sees("⇄ received holiday.bin (2.0 MiB) from alice over the direct session (SHA-256 checked): saved to " + bob.dir)
	sameFile(t, filepath.Join(bob.dir, "holiday.bin"), data)
	if len(alice.m.chat.transfers) != 0 {
		t.Errorf("the finished transfer stays in alice's pane")
	}
	for _, u := range []*user{alice, bob} {
		if n := strings.Count(u.m.View(), "direct: packets go straight to the peer"); n != 1 {
			t.Errorf("%s was told %d times that the session is direct", u.name, n)
		}
	}

	alice.enter("/direct off")
	alice.sees("direct session with bob closed: messages go through the server again")
	bob.sees("direct session with alice ended (closed): messages go through the server again")
	for _, u := range []*user{alice, bob} {
		if h := header(u.m); strings.Contains(h, "⇄ direct") {
			t.Errorf("%s's header still says direct: %q", u.name, h)
		}
	}
	alice.enter("through the server again")
	bob.sees("alice: through the server again")
	if got := directLines(bob.m.chat.selected()); len(got) != 2 {
		t.Errorf("bob's direct messages after the session: %q", got)
	}

	// alice's next run reads her direct messages from her own store.
	alice.m.client.Close()
	again := w.start("alice", authLogin, withState(aliceState))
	again.open("bob")
	again.sees("⇄ alice: hello over the direct path", "⇄ bob: hi alice, peer to peer", "alice: through the server again")
}

// TestDirectRelayedWithSDKPeer: carol (an SDK client that keeps to the
// relay) offers alice's TUI a direct session; alice sees the offer in the
// header from any chat and accepts; the header says "↻ relayed"; carol's
// message shows marked ⇄; carol declines files and alice is told. dave's
// offer alice declines: dave's client gets ErrDirectRejected. /nat
// classifies this machine.
func TestDirectRelayedWithSDKPeer(t *testing.T) {
	w := newWorld(t, nil)
	alice := w.join("alice")
	carol := w.sdkUser("carol", parley.WithDirectRelayOnly(true))
	dave := w.sdkUser("dave")
	ctx, cancel := context.WithTimeout(context.Background(), 2*waitLimit)
	defer cancel()

	type opened struct {
		s   *parley.DirectSession
		err error
	}
	carolDone := make(chan opened, 1)
	go func() {
		s, err := carol.GoDirect(ctx, "alice")
		carolDone <- opened{s, err}
	}()
	alice.headerShows("⇄ carol offers direct: /accept-direct carol")
	alice.sees("@carol: carol offers a direct session")
	alice.enter("/accept-direct")
	alice.sees("⇄ direct session with carol open (accepted)")
	r := <-carolDone
	if r.err != nil {
		t.Fatalf("carol's offer: %v", r.err)
	}
	alice.open("carol")
	alice.headerShows("↻ relayed")
	alice.sees("↻ relayed through the server (it cannot read them: end-to-end encrypted)")

	if _, err := r.s.Send(ctx, "from the SDK, relayed"); err != nil {
		t.Fatal(err)
	}
	alice.sees("⇄ carol: from the SDK, relayed")
	alice.enter("back from the TUI")
	w.until("carol to get alice's message", func() bool {
		h, _ := carol.DirectHistory(alice.m.chat.myID)
		return len(h) == 2 && h[1].Text == "back from the TUI" && !h[1].Outgoing
	}, alice)

	src, _ := randomFile(t, t.TempDir(), "notes.txt", 1000)
	alice.enter("/sendfile " + src)
	alice.sees("the peer declined the file: this client does not accept files over direct sessions")
	w.until("the declined transfer to leave the pane", func() bool { return len(alice.m.chat.transfers) == 0 }, alice)

	daveDone := make(chan error, 1)
	go func() {
		_, err := dave.GoDirect(ctx, "alice")
		daveDone <- err
	}()
	alice.headerShows("⇄ dave offers direct: /accept-direct dave")
	alice.enter("/reject-direct dave")
	alice.sees("declined dave's direct session")
	if err := <-daveDone; !errors.Is(err, parley.ErrDirectRejected) {
		t.Fatalf("dave's offer after alice declined: %v", err)
	}
	if h := header(alice.m); strings.Contains(h, "dave") {
		t.Errorf("the declined offer stays in the header: %q", h)
	}

	alice.enter("/nat")
	alice.sees("NAT: open internet · public address 127.0.0.1:", "direct sessions: direct with almost every peer")
}

// TestDirectKeyChangeNeedsTrust: bob comes back on a new device (a new
// key); alice's TUI refuses to connect, warns with the safety number, and
// sends what she types through the server; a wrong /trust changes
// nothing; /trust with the number connects.
func TestDirectKeyChangeNeedsTrust(t *testing.T) {
	w := newWorld(t, nil)
	alice, bob := w.join("alice"), w.join("bob")
	directChat(alice, bob)
	alice.enter("/direct")
	bob.sees("alice offers a direct session")
	bob.enter("/accept-direct")
	alice.headerShows("⇄ direct")
	alice.enter("/direct off")
	alice.sees("direct session with bob closed")

	// bob's new device: the same account, another key.
	bob.m.client.Close()
	bob2 := w.login("bob")
	alice.enter("/direct")
	bob2.sees("alice offers a direct session")
	bob2.enter("/accept-direct")
	alice.sees("⚠ bob's device key changed (device ", "Not connected.")
	alice.headerShows("⚠ bob's key changed: /safety · /trust NUMBER")
	pk := alice.m.chat.direct.keys[alice.m.peerOf(alice.m.chat.selectedID())]
	if pk == nil {
		t.Fatal("no changed key waits for /trust")
	}
	alice.sees("safety number: " + pk.SafetyNumber)
	if len(alice.m.chat.direct.sessions) != 0 {
		t.Fatal("alice connected to a key she never saw")
	}
	bob2.open("alice")
	alice.enter("not over a changed key")
	bob2.sees("alice: not over a changed key")
	if got := directLines(bob2.m.chat.selected()); len(got) != 0 {
		t.Errorf("sent directly over an untrusted key: %q", got)
	}
	alice.enter("/direct") // refused again, with the warning
	w.until("alice to be warned again", func() bool { return strings.Count(alice.m.View(), "Not connected.") == 2 }, alice)

	alice.enter("/trust 12345 67890")
	alice.sees("/trust: that is not the safety number of bob's new key; nothing trusted")
	if len(alice.m.chat.direct.keys) != 1 {
		t.Fatal("a wrong number trusted the key")
	}
	alice.enter("/trust " + pk.SafetyNumber)
	alice.sees("trusted bob's new key (device " + pk.Device.DeviceID + "); offering the direct session again")
	w.until("bob's new device to see the offer", func() bool { return len(bob2.m.chat.direct.offers) == 1 }, bob2)
	bob2.enter("/accept-direct")
	alice.headerShows("⇄ direct")
	s := alice.m.session(alice.m.chat.selectedID())
	if s == nil || s.PeerDevice().DeviceID != pk.Device.DeviceID || s.SafetyNumber() != pk.SafetyNumber {
		t.Fatalf("after /trust alice's session is not with bob's new key: %+v", s)
	}
	alice.enter("now with the new key")
	bob2.sees("⇄ alice: now with the new key")
}

// TestDirectFriendsPolicy: with --direct friends (Config.DirectPolicy) a
// friend's offer is accepted without asking.
func TestDirectFriendsPolicy(t *testing.T) {
	w := newWorld(t, nil)
	alice := w.join("alice")
	bob := w.start("bob", authRegister, func(c *Config) { c.DirectPolicy = parley.DirectFriends })
	alice.enter("/friend add bob")
	bob.sees("alice asks to be friends")
	bob.enter("/friend accept alice")
	alice.sees("bob accepted: you are friends now")
	directChat(alice, bob)
	alice.enter("/direct")
	bob.sees("⇄ direct session with alice open (accepted by itself: alice is a friend)")
	alice.headerShows("⇄ direct")
	bob.headerShows("⇄ direct")
}

// TestDirectCommandsWithoutSession: the commands say what is missing.
func TestDirectCommandsWithoutSession(t *testing.T) {
	m := loggedIn(t)
	for _, tt := range []struct{ input, want string }{
		{"/direct", "/direct: select a private chat"},
		{"/direct off", "/direct off: no direct session in this chat"},
		{"/accept-direct", "/accept-direct: no offer to go direct"},
		{"/reject-direct bob", "/reject-direct: no offer to go direct"},
		{"/trust", "usage: /trust NUMBER"},
		{"/trust 123", "/trust: no changed key is waiting to be trusted"},
		{"/sendfile", "usage: /sendfile PATH"},
		{"/sendfile /etc/hostname", "/sendfile: no direct session in this chat"},
	} {
		if got := enter(m, tt.input); got != nil {
			t.Errorf("%s produced %#v", tt.input, got)
		}
		screenHas(t, m, tt.want)
	}
	openChat(m, dmAB, "bob")
	enter(m, "/safety")
	screenHas(t, m, "/safety: no direct session in this chat")
}

// TestDirectLinesByTime: direct messages are shown among the server's by
// time, marked ⇄, with how their sending goes.
func TestDirectLinesByTime(t *testing.T) {
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	lines := []line{{kind: lineOther, at: at(1), text: "one"}, {kind: lineOther, at: at(3), text: "three"}}
	direct := []line{{kind: lineOther, at: at(0), text: "zero", direct: true}, {kind: lineOwn, at: at(2), text: "two", direct: true},
		{kind: lineOwn, at: at(4), from: "alice", text: "four", direct: true, note: "sending…"}}
	var got []string
	for _, l := range mergeByTime(lines, direct) {
		got = append(got, l.text)
	}
	if strings.Join(got, " ") != "zero one two three four" {
		t.Errorf("merged %q", got)
	}
	if r := stripANSI(renderLine(direct[2], 80)); !strings.Contains(r, "⇄ alice: four  (sending…)") {
		t.Errorf("rendered %q", r)
	}
}
