package sdktest

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parleychat/parley/clients/internal/parleytest"
	"github.com/parleychat/parley/clients/parley"
)

// chatter is a logged-in client whose message events are collected in the
// background, so a test can wait for them while other events flow.
type chatter struct {
	*parley.Client
	t    *testing.T
	sess *parley.Session

	mu     sync.Mutex
	msgs   []parley.Message
	synced int
	cond   chan struct{} // closed and replaced on every new event
}

// chat dials addr (nil: Parley's TCP address), registers or logs in user,
// and collects messages until the test ends.
func chat(t *testing.T, addr, user string, registerUser bool, opts ...parley.Option) *chatter {
	t.Helper()
	c := dial(t, addr, append([]parley.Option{parley.WithPresenceFeed(false)}, opts...)...)
	ch := &chatter{Client: c, t: t, cond: make(chan struct{})}
	if registerUser {
		ch.sess = register(t, c, user)
	} else {
		ch.sess = login(t, c, user)
	}
	go func() {
		for ev := range c.Events() {
			ch.mu.Lock()
			switch ev := ev.(type) {
			case parley.MessageEvent:
				ch.msgs = append(ch.msgs, ev.Message)
			case parley.SyncedEvent:
				ch.synced++
			}
			close(ch.cond)
			ch.cond = make(chan struct{})
			ch.mu.Unlock()
		}
	}()
	return ch
}

// waitFor waits until ok holds for the messages received so far.
func (c *chatter) waitFor(what string, ok func(msgs []parley.Message, synced int) bool) []parley.Message {
	c.t.Helper()
	timeout := time.After(wait)
	for {
		c.mu.Lock()
		msgs, synced, cond := append([]parley.Message(nil), c.msgs...), c.synced, c.cond
		c.mu.Unlock()
		if ok(msgs, synced) {
			return msgs
		}
		select {
		case <-cond:
		case <-timeout:
			c.t.Fatalf("%s: not within %v (have %d messages: %s)", what, wait, len(msgs), brief(msgs))
		}
	}
}

// waitSynced waits for the n-th SyncedEvent.
func (c *chatter) waitSynced(n int) {
	c.t.Helper()
	c.waitFor(fmt.Sprintf("sync #%d", n), func(_ []parley.Message, s int) bool { return s >= n })
}

// inConv waits for n messages in conv and returns them.
func (c *chatter) inConv(conv string, n int) []parley.Message {
	c.t.Helper()
	ms := c.waitFor(fmt.Sprintf("%d messages in %s", n, conv), func(ms []parley.Message, _ int) bool {
		return len(only(ms, conv)) >= n
	})
	return only(ms, conv)
}

func (c *chatter) received() []parley.Message {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]parley.Message(nil), c.msgs...)
}

func only(ms []parley.Message, conv string) []parley.Message {
	var out []parley.Message
	for _, m := range ms {
		if m.Conversation == conv {
			out = append(out, m)
		}
	}
	return out
}

func texts(ms []parley.Message) []string {
	out := []string{}
	for _, m := range ms {
		out = append(out, m.Text)
	}
	return out
}

func brief(ms []parley.Message) string {
	var b strings.Builder
	for i, m := range ms {
		if i == 10 {
			fmt.Fprintf(&b, " …")
			break
		}
		fmt.Fprintf(&b, " %s#%d(%q)", m.Conversation, m.Seq, m.Text)
	}
	return b.String()
}

// checkInOrder asserts seqs from..to, each once, in order.
func checkInOrder(t *testing.T, ms []parley.Message, from, to uint64) {
	t.Helper()
	if uint64(len(ms)) != to-from+1 {
		t.Fatalf("%d messages, want %d (seq %d..%d): %s", len(ms), to-from+1, from, to, brief(ms))
	}
	for i, m := range ms {
		if m.Seq != from+uint64(i) {
			t.Fatalf("message %d has seq %d, want %d: %s", i, m.Seq, from+uint64(i), brief(ms))
		}
	}
}

func dmID(a, b string) string {
	if a > b {
		a, b = b, a
	}
	return "dm." + a + "." + b
}

func TestRoomChat(t *testing.T) {
	p := parleytest.Start(t, nil)
	ctx := ctxT(t)
	alice := chat(t, p.TCPAddr(), "alice", true)
	bob := chat(t, p.TCPAddr(), "bob", true)
	alice.waitSynced(1)
	bob.waitSynced(1)

	text := "你好 👋\nsecond line"
	m, err := alice.Send(ctx, parley.PublicRoom, text)
	if err != nil {
		t.Fatalf("send: %v", err)
	}
	if m.Conversation != parley.PublicRoom || m.Seq != 1 || m.SenderName != "alice" || m.SenderID != alice.sess.UserID ||
		m.Text != text || m.ID == 0 || m.SentAt.IsZero() || m.ClientKey == "" {
		t.Errorf("stored message = %+v", m)
	}
	if _, err := bob.Send(ctx, parley.PublicRoom, "hi alice"); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*chatter{alice, bob} {
		got := c.inConv(parley.PublicRoom, 2)
		if !reflect.DeepEqual(texts(got), []string{text, "hi alice"}) || got[0].SenderName != "alice" || got[1].SenderName != "bob" {
			t.Errorf("%s received %s", c.sess.Username, brief(got))
		}
	}
	msgs, more, err := bob.History(ctx, parley.PublicRoom, 0, 10)
	if err != nil || more || !reflect.DeepEqual(texts(msgs), []string{text, "hi alice"}) {
		t.Errorf("history = %s, more %v, %v", brief(msgs), more, err)
	}
	convs, err := bob.Conversations(ctx)
	if err != nil || len(convs) == 0 || convs[0].ID != parley.PublicRoom || convs[0].Kind != parley.ConversationRoom || convs[0].LastSeq != 2 {
		t.Errorf("conversations = %+v, %v", convs, err)
	}
}

// TestPrivateChat: a direct conversation reaches its two members only; a
// third user sees neither its events nor its history.
func TestPrivateChat(t *testing.T) {
	p := parleytest.Start(t, nil)
	ctx := ctxT(t)
	alice := chat(t, p.TCPAddr(), "alice", true)
	bob := chat(t, p.TCPAddr(), "bob", true)
	carol := chat(t, p.TCPAddr(), "carol", true)
	for _, c := range []*chatter{alice, bob, carol} {
		c.waitSynced(1)
	}
	dm := dmID(alice.sess.UserID, bob.sess.UserID)

	cv, err := alice.OpenDirect(ctx, "bob")
	if err != nil || cv.ID != dm || cv.Kind != parley.ConversationDirect || cv.Title != "bob" || cv.PeerID != bob.sess.UserID {
		t.Fatalf("open direct = %+v, %v; want %s titled bob", cv, err, dm)
	}
	m, err := alice.SendTo(ctx, "bob", "just between us")
	if err != nil || m.Conversation != dm || m.Seq != 1 {
		t.Fatalf("send to bob = %+v, %v", m, err)
	}
	if _, err := bob.Send(ctx, dm, "sure"); err != nil {
		t.Fatalf("bob replies: %v", err)
	}
	for _, c := range []*chatter{alice, bob} {
		if got := texts(c.inConv(dm, 2)); !reflect.DeepEqual(got, []string{"just between us", "sure"}) {
			t.Errorf("%s's private chat = %q", c.sess.Username, got)
		}
	}
	convs, err := bob.Conversations(ctx)
	if err != nil || len(convs) != 2 || convs[1].ID != dm || convs[1].Title != "alice" || convs[1].LastSeq != 2 {
		t.Errorf("bob's conversations = %+v, %v", convs, err)
	}

	// carol: a room message sent after the private ones reaches her; the
	// private ones never do.
	if _, err := alice.Send(ctx, parley.PublicRoom, "hello all"); err != nil {
		t.Fatal(err)
	}
	carol.inConv(parley.PublicRoom, 1)
	if got := only(carol.received(), dm); len(got) != 0 {
		t.Errorf("carol received the private chat: %s", brief(got))
	}
	if _, _, err := carol.History(ctx, dm, 0, 10); !errors.Is(err, parley.ErrPermissionDenied) {
		t.Errorf("carol reads the private history: %v, want PERMISSION_DENIED", err)
	}
	if _, err := carol.Send(ctx, dm, "let me in"); !errors.Is(err, parley.ErrPermissionDenied) {
		t.Errorf("carol posts in the private chat: %v, want PERMISSION_DENIED", err)
	}
	if err := carol.Ack(ctx, dm, 1); !errors.Is(err, parley.ErrPermissionDenied) {
		t.Errorf("carol acks the private chat: %v, want PERMISSION_DENIED", err)
	}
	convs, err = carol.Conversations(ctx)
	if err != nil || len(convs) != 1 || convs[0].ID != parley.PublicRoom {
		t.Errorf("carol's conversations = %+v, %v: want the room only", convs, err)
	}
}

// TestOfflineMessages: messages sent while a user is offline arrive, in
// order, when a new client logs in, and count as unread until acked.
func TestOfflineMessages(t *testing.T) {
	p := parleytest.Start(t, nil)
	ctx := ctxT(t)
	bob := chat(t, p.TCPAddr(), "bob", true)
	bob.Close()
	alice := chat(t, p.TCPAddr(), "alice", true)
	want := []string{"one", "two\nlines", "three 🎉"}
	for _, text := range want {
		if _, err := alice.SendTo(ctx, "bob", text); err != nil {
			t.Fatal(err)
		}
	}
	dm := dmID(alice.sess.UserID, bob.sess.UserID)

	bob2 := chat(t, p.TCPAddr(), "bob", false)
	got := bob2.inConv(dm, 3)
	checkInOrder(t, got, 1, 3)
	if !reflect.DeepEqual(texts(got), want) || got[0].SenderName != "alice" {
		t.Errorf("offline messages = %s", brief(got))
	}
	unread := func(c *chatter) uint64 {
		t.Helper()
		convs, err := c.Conversations(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, cv := range convs {
			if cv.ID == dm {
				return cv.Unread()
			}
		}
		t.Fatalf("%s not listed: %+v", dm, convs)
		return 0
	}
	if n := unread(bob2); n != 3 {
		t.Errorf("unread before the ack = %d, want 3", n)
	}
	if err := bob2.Ack(ctx, dm, 3); err != nil {
		t.Fatal(err)
	}
	if n := unread(bob2); n != 0 {
		t.Errorf("unread after the ack = %d, want 0", n)
	}
	if err := bob2.Ack(ctx, dm, 1); err != nil {
		t.Errorf("an older ack: %v, want accepted (and ignored)", err)
	}
	if err := bob2.Ack(ctx, dm, 4); !errors.Is(err, parley.ErrInvalidArgument) {
		t.Errorf("ack beyond the last message: %v, want INVALID_ARGUMENT", err)
	}
	if n := unread(bob2); n != 0 {
		t.Errorf("unread after an older ack = %d, want 0", n)
	}

	// Acked messages are not delivered again to the next client; a new one is.
	bob3 := chat(t, p.TCPAddr(), "bob", false)
	bob3.waitSynced(1)
	if _, err := alice.SendTo(ctx, "bob", "four"); err != nil {
		t.Fatal(err)
	}
	if got := bob3.inConv(dm, 1); got[0].Seq != 4 || len(got) != 1 {
		t.Errorf("after the ack a new client received %s, want only #4", brief(got))
	}
}

func TestAutoAck(t *testing.T) {
	p := parleytest.Start(t, nil)
	ctx := ctxT(t)
	alice := chat(t, p.TCPAddr(), "alice", true)
	bob := chat(t, p.TCPAddr(), "bob", true, parley.WithAutoAck(true))
	for i := range 5 {
		if _, err := alice.SendTo(ctx, "bob", fmt.Sprint("m", i)); err != nil {
			t.Fatal(err)
		}
	}
	dm := dmID(alice.sess.UserID, bob.sess.UserID)
	bob.inConv(dm, 5)
	parleytestEventually(t, "bob's private chat read", func() bool {
		convs, err := bob.Conversations(ctx)
		return err == nil && len(convs) == 2 && convs[1].AckedSeq == 5 && convs[1].Unread() == 0
	})
}

func parleytestEventually(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, wait)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestHistoryPaging walks the room backwards a page at a time.
func TestHistoryPaging(t *testing.T) {
	p := parleytest.Start(t, nil)
	ctx := ctxT(t)
	alice := chat(t, p.TCPAddr(), "alice", true)
	for i := 1; i <= 120; i++ {
		if _, err := alice.Send(ctx, parley.PublicRoom, fmt.Sprint("msg ", i)); err != nil {
			t.Fatal(err)
		}
	}
	var all []parley.Message
	before, pages := uint64(0), 0
	for {
		ms, more, err := alice.History(ctx, parley.PublicRoom, before, 50)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		if len(ms) == 0 || pages > 5 {
			t.Fatalf("page %d (before %d): %d messages, more %v", pages, before, len(ms), more)
		}
		all = append(ms, all...)
		before = ms[0].Seq
		if !more {
			break
		}
	}
	if pages != 3 {
		t.Errorf("%d pages, want 3 (50 + 50 + 20)", pages)
	}
	checkInOrder(t, all, 1, 120)
	for i, m := range all {
		if m.Text != fmt.Sprint("msg ", i+1) {
			t.Fatalf("message %d = %q", i+1, m.Text)
		}
	}
	// A fresh client starts the room 50 back: the rest is History's.
	bob := chat(t, p.TCPAddr(), "bob", true)
	bob.waitSynced(1)
	checkInOrder(t, only(bob.received(), parley.PublicRoom), 71, 120)
}

// TestReconnectMidBurst: the connection breaks twice while 200 messages
// stream in; every one is delivered once, in order, with no gap.
func TestReconnectMidBurst(t *testing.T) {
	p := parleytest.Start(t, nil)
	relay := parleytest.NewRelay(t, p.HostPort())
	ctx := ctxT(t)
	alice := chat(t, p.TCPAddr(), "alice", true)
	bob := chat(t, relay.Addr(), "bob", true)
	bob.waitSynced(1)

	const n = 200
	sent := make(chan error, 1)
	go func() {
		for i := 1; i <= n; i++ {
			if _, err := alice.Send(ctx, parley.PublicRoom, fmt.Sprint("burst ", i)); err != nil {
				sent <- err
				return
			}
		}
		sent <- nil
	}()
	bob.inConv(parley.PublicRoom, 50)
	relay.Cut()
	// The first reconnect's sync is done before the second break: a break
	// during a sync ends it without a SyncedEvent (the next connection
	// syncs instead), and sync #3 below would never come.
	bob.waitSynced(2)
	bob.inConv(parley.PublicRoom, 120)
	relay.Cut()
	if err := <-sent; err != nil {
		t.Fatalf("alice's burst: %v", err)
	}
	got := bob.inConv(parley.PublicRoom, n)
	bob.waitSynced(3) // both reconnects synced: nothing more is coming
	checkInOrder(t, only(bob.received(), parley.PublicRoom), 1, n)
	for i, m := range got {
		if m.Text != fmt.Sprint("burst ", i+1) {
			t.Fatalf("message %d = %q", i+1, m.Text)
		}
	}
}

// TestSendRetriedAcrossReconnect: the server stores a message but the reply
// is lost in a break; Send re-sends the same key after the reconnect and
// gets the stored message: it is there once.
func TestSendRetriedAcrossReconnect(t *testing.T) {
	p := parleytest.Start(t, nil)
	relay := parleytest.NewRelay(t, p.HostPort())
	ctx := ctxT(t)
	alice := chat(t, relay.Addr(), "alice", true)
	bob := chat(t, p.TCPAddr(), "bob", true)
	alice.waitSynced(1)

	relay.StallReplies()
	type result struct {
		m   *parley.Message
		err error
	}
	res := make(chan result, 1)
	go func() {
		m, err := alice.Send(ctx, parley.PublicRoom, "once")
		res <- result{m, err}
	}()
	stored := bob.inConv(parley.PublicRoom, 1)[0] // stored; alice heard nothing
	relay.Cut()
	r := <-res
	if r.err != nil {
		t.Fatalf("send across the break: %v", r.err)
	}
	if r.m.ID != stored.ID || r.m.Seq != 1 || r.m.ClientKey != stored.ClientKey {
		t.Errorf("send returned %+v, want the stored message %+v", r.m, stored)
	}
	msgs, _, err := bob.History(ctx, parley.PublicRoom, 0, 10)
	if err != nil || len(msgs) != 1 {
		t.Errorf("history = %s, %v: want the message once", brief(msgs), err)
	}
	if got := alice.inConv(parley.PublicRoom, 1); len(got) != 1 {
		t.Errorf("alice received %s", brief(got))
	}
}

func TestMessageErrors(t *testing.T) {
	p := parleytest.Start(t, nil)
	ctx := ctxT(t)
	anon := dial(t, p.TCPAddr(), parley.WithPresenceFeed(false))
	if _, err := anon.Send(ctx, parley.PublicRoom, "hi"); !errors.Is(err, parley.ErrUnauthenticated) {
		t.Errorf("send before login: %v, want UNAUTHENTICATED", err)
	}
	alice := chat(t, p.TCPAddr(), "alice", true)
	register(t, dial(t, p.TCPAddr(), parley.WithPresenceFeed(false)), "bob")
	longest := strings.Repeat("字", 4000) // 4,000 characters, 12,000 bytes
	if _, err := alice.Send(ctx, parley.PublicRoom, longest); err != nil {
		t.Errorf("4,000 characters: %v", err)
	}
	tests := []struct {
		name string
		send func() error
		want error
	}{
		{"empty", func() error { _, err := alice.Send(ctx, parley.PublicRoom, ""); return err }, parley.ErrEmptyMessage},
		{"white space", func() error { _, err := alice.Send(ctx, parley.PublicRoom, " \n\t "); return err }, parley.ErrEmptyMessage},
		{"4,001 characters", func() error {
			_, err := alice.Send(ctx, parley.PublicRoom, longest+"x")
			return err
		}, parley.ErrMessageTooLarge},
		{"unknown conversation", func() error { _, err := alice.Send(ctx, "room.nope", "hi"); return err }, parley.ErrNotFound},
		{"others' private chat", func() error { _, err := alice.Send(ctx, "dm.x1.x2", "hi"); return err }, parley.ErrPermissionDenied},
		{"unknown user", func() error { _, err := alice.SendTo(ctx, "nobody", "hi"); return err }, parley.ErrNotFound},
		{"to oneself", func() error { _, err := alice.SendTo(ctx, "alice", "hi"); return err }, parley.ErrInvalidArgument},
		{"history of an unknown conversation", func() error { _, _, err := alice.History(ctx, "room.nope", 0, 0); return err }, parley.ErrNotFound},
		{"open unknown user", func() error { _, err := alice.OpenDirect(ctx, "nobody"); return err }, parley.ErrNotFound},
		{"ack beyond the last", func() error { return alice.Ack(ctx, parley.PublicRoom, 99) }, parley.ErrInvalidArgument},
	}
	for _, tt := range tests {
		if err := tt.send(); !errors.Is(err, tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, err, tt.want)
		}
	}
	msgs, _, err := alice.History(ctx, parley.PublicRoom, 0, 0)
	if err != nil || len(msgs) != 1 || msgs[0].Text != longest {
		t.Errorf("history after the errors: %d messages, %v: want only the valid one", len(msgs), err)
	}
}

// gapSetup has alice on Parley and bob behind a relay, with their private
// chat already known to bob (a new one is listed and read in full, which
// would hide what the gap tests look at), and after alice's first message
// "hi". It returns alice, bob, the relay, the chat's id, and how many
// history reads bob had sent by then.
func gapSetup(t *testing.T) (alice, bob *chatter, relay *parleytest.Relay, dm string, historyBefore int) {
	t.Helper()
	p := parleytest.Start(t, nil)
	relay = parleytest.NewRelay(t, p.HostPort())
	alice = chat(t, p.TCPAddr(), "alice", true)
	bob = chat(t, relay.Addr(), "bob", true)
	bob.waitSynced(1)
	dm = dmID(alice.sess.UserID, bob.sess.UserID)
	sendTo(t, alice, "bob", "hi")
	bob.inConv(dm, 1)
	time.Sleep(2 * catchUpGrace) // the listing's reads are done
	return alice, bob, relay, dm, relay.HistoryRequests()
}

func sendTo(t *testing.T, from *chatter, to string, msgs ...string) {
	t.Helper()
	for _, text := range msgs {
		if _, err := from.SendTo(ctxT(t), to, text); err != nil {
			t.Fatal(err)
		}
	}
}

// TestLostEventRepaired: a live event that never arrives (at most once)
// leaves a gap the next message shows; the client reads it from history
// and delivers both, in order, once.
func TestLostEventRepaired(t *testing.T) {
	alice, bob, relay, dm, before := gapSetup(t)
	relay.DropMessageEvents(1)
	sendTo(t, alice, "bob", "lost on the way", "arrives")
	if got := texts(bob.inConv(dm, 3)); !reflect.DeepEqual(got, []string{"hi", "lost on the way", "arrives"}) {
		t.Fatalf("bob got %q", got)
	}
	checkInOrder(t, only(bob.received(), dm), 1, 3)
	if relay.HistoryRequests() == before {
		t.Error("the gap was filled without reading history: the event was not lost")
	}
}

// TestOvertakenEventReadsNoHistory: an event that is only late (overtaken
// by the next one, as a Send reply overtakes a busy room's batched events)
// fills its gap itself: the client waits for it rather than reading
// history, and still delivers both in order.
func TestOvertakenEventReadsNoHistory(t *testing.T) {
	alice, bob, relay, dm, before := gapSetup(t)
	relay.DelayMessageEvents(1, 80*time.Millisecond)
	sendTo(t, alice, "bob", "late", "early")
	if got := texts(bob.inConv(dm, 3)); !reflect.DeepEqual(got, []string{"hi", "late", "early"}) {
		t.Fatalf("bob got %q", got)
	}
	time.Sleep(2 * catchUpGrace) // a catch-up, had one been scheduled, is sent by now
	if n := relay.HistoryRequests() - before; n != 0 {
		t.Errorf("bob read history %d times for a gap the late event filled", n)
	}
	checkInOrder(t, only(bob.received(), dm), 1, 3)
}

// catchUpGrace is how long the SDK lets a gap wait for late live events
// before it reads the history (catchUpGrace in clients/parley/sync.go).
const catchUpGrace = 250 * time.Millisecond
