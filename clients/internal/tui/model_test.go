package tui

import (
	"context"
	"strings"
	"testing"

	tea "github.com/charmbracelet/bubbletea"

	"github.com/parleychat/parley/clients/parley"
)

func typeText(m *model, s string) {
	for _, r := range s {
		m.Update(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune{r}})
	}
}

func press(m *model, k tea.KeyType) tea.Cmd {
	_, cmd := m.Update(tea.KeyMsg{Type: k})
	return cmd
}

func newTestModel() *model {
	m := newModel(context.Background(), Config{Server: "tcp://127.0.0.1:1"})
	m.Update(tea.WindowSizeMsg{Width: 100, Height: 30})
	return m
}

func TestRegisterPasswordsMustMatch(t *testing.T) {
	m := newTestModel()
	press(m, tea.KeyCtrlR) // switch to register
	typeText(m, "alice")
	press(m, tea.KeyEnter)
	typeText(m, "correct horse")
	press(m, tea.KeyEnter)
	typeText(m, "correct hrose")
	cmd := press(m, tea.KeyEnter)

	if cmd != nil {
		t.Error("a request was started although the passwords differ")
	}
	if m.login.busy {
		t.Error("login screen is busy although nothing was sent")
	}
	if v := m.View(); !strings.Contains(v, "passwords do not match") {
		t.Errorf("screen does not say the passwords differ:\n%s", v)
	}
	if strings.Contains(m.View(), "correct") {
		t.Error("the password is shown in clear")
	}

	// Typing it right sends the registration.
	typeText(m, "correct horse")
	if cmd := press(m, tea.KeyEnter); cmd == nil || !m.login.busy {
		t.Error("matching passwords did not start the registration")
	}
}

func TestLoginNeedsUsernameAndPassword(t *testing.T) {
	m := newTestModel()
	press(m, tea.KeyDown)
	if cmd := press(m, tea.KeyEnter); cmd != nil {
		t.Error("a login without username was sent")
	}
	if !strings.Contains(m.View(), "enter a username") {
		t.Errorf("no hint about the missing username:\n%s", m.View())
	}
}

func loggedIn(t *testing.T) *model {
	t.Helper()
	m := newTestModel()
	m.onAuth(authMsg{kind: authLogin, session: &parley.Session{Username: "alice", UserID: "u1"}})
	if m.screen != screenChat {
		t.Fatal("not on the chat screen after login")
	}
	return m
}

func TestPresenceNotices(t *testing.T) {
	m := loggedIn(t)
	alice := parley.OnlineUser{UserID: "u1", Username: "alice", Sessions: 1}
	bob := parley.OnlineUser{UserID: "u2", Username: "bob", Sessions: 1}
	m.onEvent(parley.PresenceSnapshotEvent{Users: []parley.OnlineUser{alice}})
	m.onEvent(parley.UserOnlineEvent{User: bob})
	v := m.View()
	for _, want := range []string{"bob came online", "Online (2)", "alice (you)"} {
		if !strings.Contains(v, want) {
			t.Errorf("screen lacks %q:\n%s", want, v)
		}
	}
	m.onEvent(parley.UserOfflineEvent{User: bob})
	m.onEvent(parley.DisconnectedEvent{Err: parley.ErrConnectionLost})
	v = m.View()
	for _, want := range []string{"bob went offline", "Online (1)", "reconnecting…"} {
		if !strings.Contains(v, want) {
			t.Errorf("screen lacks %q:\n%s", want, v)
		}
	}
}

func TestChatInput(t *testing.T) {
	m := loggedIn(t)
	typeText(m, "hello")
	m.Update(tea.KeyMsg{Type: tea.KeyEnter, Alt: true}) // newline, not send
	typeText(m, "world")
	if got := m.chat.input.Value(); got != "hello\nworld" {
		t.Fatalf("input = %q, want two lines", got)
	}
	cmd := press(m, tea.KeyEnter)
	if m.chat.input.Value() != "" {
		t.Error("input not cleared after sending")
	}
	// Sent to the selected conversation (here without a connection).
	if cmd == nil {
		t.Fatal("enter sent nothing")
	}
	sent, ok := cmd().(sentMsg)
	if !ok || sent.conv != parley.PublicRoom {
		t.Fatalf("enter produced %#v, want a send to the room", sent)
	}
	m.Update(sent)
	if v := m.View(); !strings.Contains(v, "not sent: not connected") {
		t.Errorf("a failed send is not reported:\n%s", v)
	}

	typeText(m, "/quit")
	if cmd := press(m, tea.KeyEnter); cmd == nil {
		t.Error("/quit did not quit")
	} else if _, ok := cmd().(tea.QuitMsg); !ok {
		t.Error("/quit did not quit")
	}
}

func TestSessionEndedReturnsToLogin(t *testing.T) {
	m := loggedIn(t)
	var forgot string
	m.cfg.ForgetSession = func(u string) error { forgot = u; return nil }
	m.onEvent(parley.SessionEndedEvent{Reason: parley.ErrLoggedInElsewhere.Code, Message: "logged in elsewhere"})
	if m.screen != screenLogin || forgot != "alice" {
		t.Fatalf("screen %v, forgot %q: want the login screen and the token forgotten", m.screen, forgot)
	}
	if !strings.Contains(m.View(), "logged in elsewhere") {
		t.Errorf("login screen does not say why:\n%s", m.View())
	}
}
