package tui

import (
	"fmt"
	"strings"
	"testing"
	"time"

	tea "github.com/charmbracelet/bubbletea"

	"github.com/parleychat/parley/clients/parley"
)

const dmAB = "dm.u1.u2" // alice (u1) and bob (u2)

var t0 = time.Date(2030, 5, 6, 9, 41, 0, 0, time.Local)

func message(conv string, seq uint64, fromID, from, text string) parley.MessageEvent {
	return parley.MessageEvent{Message: parley.Message{Conversation: conv, Seq: seq, SenderID: fromID, SenderName: from,
		Text: text, SentAt: t0.Add(time.Duration(seq) * time.Minute)}}
}

// sidePane returns the conversation rows of the side pane, as shown.
func paneRows(m *model) []string {
	var rows []string
	for _, r := range strings.Split(m.chat.sidePane(), "\n")[1:] {
		if strings.TrimSpace(r) == "" {
			break
		}
		rows = append(rows, strings.TrimSpace(r))
	}
	return rows
}

func TestConversationsPane(t *testing.T) {
	m := loggedIn(t)
	m.onEvent(parley.SyncedEvent{Conversations: []parley.Conversation{
		{ID: parley.PublicRoom, Kind: parley.ConversationRoom, Title: "public", LastSeq: 10, AckedSeq: 4},
		{ID: "dm.u1.u3", Kind: parley.ConversationDirect, Title: "carol", LastSeq: 2, AckedSeq: 2},
		{ID: dmAB, Kind: parley.ConversationDirect, Title: "bob", LastSeq: 5, AckedSeq: 2},
	}})
	// The room first, then private chats by name; the selected room is
	// being read, so it counts nothing unread.
	want := []string{"› #public", "@bob (3)", "@carol"}
	if got := paneRows(m); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("pane = %q, want %q", got, want)
	}
	// Others' messages in a chat not shown add to its count; one's own do not.
	m.onEvent(message(dmAB, 6, "u2", "bob", "there?"))
	m.onEvent(message(dmAB, 7, "u1", "alice", "from my phone"))
	if got := paneRows(m)[1]; got != "@bob (4)" {
		t.Errorf("bob's row = %q, want 4 unread", got)
	}
	// Selecting the chat reads it.
	m.Update(tea.KeyMsg{Type: tea.KeyTab})
	if got := paneRows(m); got[1] != "› @bob" {
		t.Errorf("after tab the pane = %q", got)
	}
	if cv := m.chat.selected(); cv.id != dmAB || cv.acked != 7 {
		t.Errorf("selected %s acked %d, want bob's chat acked to 7", cv.id, cv.acked)
	}
	m.Update(tea.KeyMsg{Type: tea.KeyShiftTab})
	if m.chat.selected().id != parley.PublicRoom {
		t.Error("shift+tab did not go back to the room")
	}
}

func TestMessageRendering(t *testing.T) {
	m := loggedIn(t)
	m.onEvent(message(parley.PublicRoom, 1, "u1", "alice", "hi all"))
	m.onEvent(message(parley.PublicRoom, 2, "u2", "bob", "你好 👋\nsecond line"))
	m.onEvent(parley.UserOnlineEvent{User: parley.OnlineUser{UserID: "u3", Username: "carol"}})
	cv := m.chat.selected()
	var kinds []lineKind
	for _, l := range cv.lines {
		if l.seq > 0 {
			kinds = append(kinds, l.kind)
		}
	}
	if len(kinds) != 2 || kinds[0] != lineOwn || kinds[1] != lineOther {
		t.Errorf("kinds = %v, want own then other", kinds)
	}
	v := m.View()
	hhmm := func(seq int) string { return t0.Add(time.Duration(seq) * time.Minute).Format("15:04") }
	for _, want := range []string{
		hhmm(1) + " alice: hi all",
		hhmm(2) + " bob: 你好 👋",
		"second line",
		"* carol came online",
	} {
		if !strings.Contains(v, want) {
			t.Errorf("screen lacks %q:\n%s", want, v)
		}
	}
	// A duplicate (a history page overlapping live delivery) shows once.
	m.onEvent(message(parley.PublicRoom, 2, "u2", "bob", "你好 👋\nsecond line"))
	if n := strings.Count(m.View(), "second line"); n != 1 {
		t.Errorf("message shown %d times", n)
	}
}

func TestPrivateChatOpensOnFirstMessage(t *testing.T) {
	m := loggedIn(t)
	m.onEvent(message(dmAB, 1, "u2", "bob", "psst"))
	if got := paneRows(m); len(got) != 2 || got[1] != "@bob (1)" {
		t.Fatalf("pane = %q, want bob's chat with 1 unread", got)
	}
	if m.chat.selected().id != parley.PublicRoom {
		t.Error("the new chat took the selection away while typing")
	}
	if v := m.View(); !strings.Contains(v, "private chat with bob opened") || strings.Contains(v, "psst") {
		t.Errorf("want a notice in the room, not the message:\n%s", v)
	}
	m.Update(tea.KeyMsg{Type: tea.KeyTab})
	if v := m.View(); !strings.Contains(v, "bob: psst") {
		t.Errorf("bob's chat does not show his message:\n%s", v)
	}
	// Enter now sends to bob's chat.
	typeText(m, "hey")
	if sent, ok := press(m, tea.KeyEnter)().(sentMsg); !ok || sent.conv != dmAB {
		t.Errorf("enter sent %#v, want to %s", sent, dmAB)
	}
}

func TestPgUpLoadsOlderHistory(t *testing.T) {
	m := loggedIn(t)
	// A fresh client's sync: the room's last messages, then the listing.
	for s := uint64(71); s <= 80; s++ {
		m.onEvent(message(parley.PublicRoom, s, "u2", "bob", fmt.Sprint("m", s)))
	}
	m.onEvent(parley.SyncedEvent{Conversations: []parley.Conversation{
		{ID: parley.PublicRoom, Kind: parley.ConversationRoom, Title: "public", LastSeq: 80, AckedSeq: 80},
	}})
	cv := m.chat.selected()
	m.chat.messages.GotoTop()
	cmd := press(m, tea.KeyPgUp)
	if !cv.loading || cmd == nil {
		t.Fatal("pgup at the top requested no older page")
	}
	if press(m, tea.KeyPgUp); !cv.loading {
		t.Fatal("loading state lost")
	}
	// (No connection here: the request reports that; the page is fed by hand.)
	var older []parley.Message
	for s := uint64(21); s <= 72; s++ { // overlaps what is shown
		older = append(older, message(parley.PublicRoom, s, "u2", "bob", fmt.Sprint("m", s)).Message)
	}
	m.Update(historyMsg{conv: parley.PublicRoom, msgs: older, more: true})
	var got []uint64
	for _, l := range cv.lines {
		if l.seq > 0 {
			got = append(got, l.seq)
		}
	}
	if len(got) != 60 || got[0] != 21 || got[59] != 80 {
		t.Fatalf("after the page: %d messages %v…", len(got), got[:3])
	}
	for i := 1; i < len(got); i++ {
		if got[i] != got[i-1]+1 {
			t.Fatalf("out of order: %v", got)
		}
	}
	if cv.loading || cv.oldest() != 21 {
		t.Errorf("loading %v oldest %d", cv.loading, cv.oldest())
	}
	// The next pgup at the top asks for the page before 21; the last page
	// (more=false) ends the paging.
	m.chat.messages.GotoTop()
	press(m, tea.KeyPgUp)
	if !cv.loading {
		t.Fatal("no request for the page before 21")
	}
	m.Update(historyMsg{conv: parley.PublicRoom, msgs: older[:0], more: false})
	m.chat.messages.GotoTop()
	press(m, tea.KeyPgUp)
	if cv.loading {
		t.Error("asked for more after the first message")
	}
}

func TestMsgCommand(t *testing.T) {
	m := loggedIn(t)
	typeText(m, "/msg")
	press(m, tea.KeyEnter)
	if !strings.Contains(m.View(), "usage: /msg USER") {
		t.Errorf("no usage hint:\n%s", m.View())
	}
	// The server's answer opens and selects the chat, then sends the text.
	cmd := m.onOpened(openedMsg{conv: &parley.Conversation{ID: dmAB, Kind: parley.ConversationDirect, Title: "bob"}, text: "hi bob"})
	if cv := m.chat.selected(); cv.id != dmAB || cv.name() != "@bob" {
		t.Errorf("selected %s (%s), want bob's chat", cv.id, cv.name())
	}
	if cmd == nil {
		t.Error("the text given with /msg was not sent")
	}
	m.onOpened(openedMsg{err: parley.ErrNotFound})
	if !strings.Contains(m.View(), "/msg:") {
		t.Errorf("an unknown user is not reported:\n%s", m.View())
	}
}
