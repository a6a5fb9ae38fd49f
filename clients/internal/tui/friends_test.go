package tui

import (
	"strings"
	"testing"
	"time"

	tea "github.com/charmbracelet/bubbletea"

	"github.com/parleychat/parley/clients/parley"
)

func header(m *model) string { return strings.SplitN(m.View(), "\n", 2)[0] }

// clock is a settable time for the model.
type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }
func withClock(m *model) *clock          { c := &clock{t: t0}; m.now = c.now; return c }
func openChat(m *model, id, title string) {
	m.onOpened(openedMsg{conv: &parley.Conversation{ID: id, Kind: parley.ConversationDirect, Title: title}})
}
func screenHas(t *testing.T, m *model, want ...string) {
	t.Helper()
	v := m.View()
	for _, w := range want {
		if !strings.Contains(v, w) {
			t.Errorf("screen lacks %q:\n%s", w, v)
		}
	}
}

func TestFriendNotices(t *testing.T) {
	m := loggedIn(t)
	m.onEvent(parley.FriendEvent{Kind: parley.FriendEventRequest, UserID: "u2", Username: "bob"})
	m.onEvent(parley.FriendEvent{Kind: parley.FriendEventAccepted, UserID: "u3", Username: "carol"})
	m.onEvent(parley.FriendEvent{Kind: parley.FriendEventDeclined, UserID: "u4", Username: "dave"})
	m.onEvent(parley.FriendEvent{Kind: parley.FriendEventRemoved, UserID: "u5", Username: "eve"})
	screenHas(t, m,
		"* bob asks to be friends: /friend accept bob or /friend decline",
		"* carol accepted: you are friends now",
		"* dave declined your friend request",
		"* eve is no longer your friend")
}

func TestFriendCommands(t *testing.T) {
	m := loggedIn(t)
	for _, tt := range []struct{ input, want string }{
		{"/friend", "usage: /friend add|accept|decline|remove USER"},
		{"/friend hug bob", "usage: /friend add|accept|decline|remove USER"},
		{"/friend add bob carol", "usage: /friend add|accept|decline|remove USER"},
		{"/block", "usage: /block USER"},
		{"/unblock a b", "usage: /unblock USER"},
	} {
		if got := enter(m, tt.input); got != nil {
			t.Errorf("%s produced %#v", tt.input, got)
		}
		screenHas(t, m, tt.want)
	}
	for _, tt := range []struct{ input, op, user string }{
		{"/friend add @bob", "/friend add", "bob"},
		{"/friend accept bob", "/friend accept", "bob"},
		{"/friend decline bob", "/friend decline", "bob"},
		{"/friend remove bob", "/friend remove", "bob"},
		{"/friends", "/friends", ""},
		{"/block bob", "/block", "bob"},
		{"/unblock @bob", "/unblock", "bob"},
	} {
		if got, ok := enter(m, tt.input).(friendMsg); !ok || got.op != tt.op || got.user != tt.user {
			t.Errorf("%s produced %#v", tt.input, got)
		}
	}

	// The server's answers.
	m.Update(friendMsg{op: "/friend add", user: "bob", state: parley.FriendOutgoing})
	m.Update(friendMsg{op: "/friend add", user: "carol", state: parley.FriendFriend})
	m.Update(friendMsg{op: "/block", user: "mallory"})
	m.Update(friendMsg{op: "/friend accept", user: "dave", err: &parley.Error{Code: parley.CodeNotFound, Message: "no friend request from dave"}})
	m.Update(friendMsg{op: "/friends", friends: []parley.Friend{
		{UserID: "u2", Username: "bob", State: parley.FriendOutgoing},
		{UserID: "u3", Username: "carol", State: parley.FriendFriend, Online: true},
		{UserID: "u4", Username: "dave", State: parley.FriendIncoming},
		{UserID: "u5", Username: "erin", State: parley.FriendFriend},
		{UserID: "u6", Username: "mallory", State: parley.FriendBlocked},
	}})
	screenHas(t, m,
		"* asked bob to be friends",
		"* you and carol are friends now",
		"* blocked mallory",
		"! /friend accept: no friend request from dave",
		"* friends (5):",
		"bob — request sent",
		"carol — online",
		"dave — asks to be friends (/friend accept dave)",
		"erin — offline",
		"mallory — blocked")
}

// TestTypingHint: the header of a private chat says the peer types for
// typingShown after their last notice, and not once their message came.
func TestTypingHint(t *testing.T) {
	m := loggedIn(t)
	clk := withClock(m)
	openChat(m, dmAB, "bob")
	if cmd := m.onEvent(parley.TypingEvent{Conversation: dmAB, UserID: "u2", Username: "bob"}); cmd == nil {
		t.Error("no re-render scheduled for the hint's end")
	}
	if h := header(m); !strings.Contains(h, "bob is typing…") {
		t.Errorf("header %q lacks the hint", h)
	}
	clk.advance(4 * time.Second)
	if h := header(m); !strings.Contains(h, "bob is typing…") {
		t.Errorf("hint gone after 4s: %q", h)
	}
	clk.advance(time.Second)
	m.Update(typingExpiredMsg{})
	if h := header(m); strings.Contains(h, "typing") {
		t.Errorf("hint still there after 5s: %q", h)
	}

	m.onEvent(parley.TypingEvent{Conversation: dmAB, UserID: "u2", Username: "bob"})
	m.onEvent(message(dmAB, 1, "u2", "bob", "done typing"))
	if h := header(m); strings.Contains(h, "typing") {
		t.Errorf("hint still there after bob's message: %q", h)
	}
	// Only the selected private chat's hint shows.
	m.onEvent(parley.TypingEvent{Conversation: dmAB, UserID: "u2", Username: "bob"})
	m.Update(tea.KeyMsg{Type: tea.KeyTab})
	if m.chat.selected().id != parley.PublicRoom {
		t.Fatal("tab did not go to the room")
	}
	if h := header(m); strings.Contains(h, "typing") {
		t.Errorf("room's header shows the hint: %q", h)
	}
}

// TestTypingSent: typing in a private chat tells the peer at most every
// typingEvery; typing in the room, or a command, does not.
func TestTypingSent(t *testing.T) {
	m := loggedIn(t)
	clk := withClock(m)
	typeText(m, "hi room")
	if m.typingConv != "" {
		t.Errorf("typing in the room was told (%s)", m.typingConv)
	}
	m.chat.input.Reset()
	openChat(m, dmAB, "bob")
	typeText(m, "/who")
	if m.typingConv != "" {
		t.Error("typing a command was told")
	}
	m.chat.input.Reset()

	typeText(m, "h")
	if m.typingConv != dmAB || !m.typingSent.Equal(t0) {
		t.Fatalf("typing in bob's chat not told: %q at %v", m.typingConv, m.typingSent)
	}
	clk.advance(2 * time.Second)
	typeText(m, "el")
	if !m.typingSent.Equal(t0) {
		t.Errorf("told again after 2s (at %v)", m.typingSent)
	}
	clk.advance(time.Second)
	typeText(m, "lo")
	if !m.typingSent.Equal(t0.Add(3 * time.Second)) {
		t.Errorf("not told again after 3s (last %v)", m.typingSent)
	}
}

// TestSeenMarker: the user's last message in a private chat is marked
// once the peer's receipt covers it.
func TestSeenMarker(t *testing.T) {
	m := loggedIn(t)
	openChat(m, dmAB, "bob")
	m.onEvent(message(dmAB, 1, "u1", "alice", "first"))
	m.onEvent(message(dmAB, 2, "u1", "alice", "second"))
	if strings.Contains(m.View(), "seen") {
		t.Error("marked seen before any receipt")
	}
	m.onEvent(parley.ReceiptEvent{Conversation: dmAB, UserID: "u2", Seq: 1})
	if strings.Contains(m.View(), "seen") {
		t.Error("marked seen though the last message is not")
	}
	m.onEvent(parley.ReceiptEvent{Conversation: dmAB, UserID: "u1", Seq: 2}) // this user's other device
	if strings.Contains(m.View(), "seen") {
		t.Error("the user's own ack marked the message seen")
	}
	m.onEvent(parley.ReceiptEvent{Conversation: dmAB, UserID: "u2", Seq: 2})
	screenHas(t, m, "alice: second  ✓ seen")
	if n := strings.Count(m.View(), "✓ seen"); n != 1 {
		t.Errorf("%d seen markers, want 1", n)
	}
	m.onEvent(message(dmAB, 3, "u2", "bob", "ok"))
	screenHas(t, m, "alice: second  ✓ seen")
	m.onEvent(message(dmAB, 4, "u1", "alice", "third"))
	if strings.Contains(m.View(), "seen") {
		t.Error("still marked after a newer message")
	}
	// After a reconnect the listing tells the same.
	m.onEvent(parley.SyncedEvent{Conversations: []parley.Conversation{
		room(0), {ID: dmAB, Kind: parley.ConversationDirect, Title: "bob", LastSeq: 4, AckedSeq: 4, PeerAckedSeq: 4},
	}})
	screenHas(t, m, "alice: third  ✓ seen")
}
