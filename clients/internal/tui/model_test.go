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
	m.onAuth(authMsg{kind: authLogin, session: &parley.Session{Username: "alice", UserID: "u1", SessionID: "s1"}})
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
	tests := []struct {
		ev         parley.SessionEndedEvent
		wantForget bool
	}{
		// Logged out elsewhere: the session is over for every process.
		{parley.SessionEndedEvent{Reason: parley.CodeSessionRevoked, Message: "logged out"}, true},
		// Under takeover another process resumed the session: it lives on
		// there, and stays saved.
		{parley.SessionEndedEvent{Reason: parley.CodeLoggedInElsewhere, Message: "logged in elsewhere"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.ev.Message, func(t *testing.T) {
			m := loggedIn(t)
			var forgot []string
			m.cfg.ForgetSession = func(u, sid, tok string) error { forgot = append(forgot, u+"/"+sid+"/"+tok); return nil }
			m.onEvent(tt.ev)
			if m.screen != screenLogin {
				t.Fatal("not back on the login screen")
			}
			if want := []string{"alice/s1/"}; tt.wantForget != (len(forgot) == 1 && forgot[0] == want[0]) {
				t.Errorf("forgot %q, want forgotten: %v", forgot, tt.wantForget)
			}
			if !strings.Contains(m.View(), tt.ev.Message) {
				t.Errorf("login screen does not say why:\n%s", m.View())
			}
		})
	}
}

// A client started next to one that saved alice's session starts on the
// login screen and offers to continue as alice; registering bob from it is
// what the keys typed do, never a message sent as alice.
func TestSavedSessionIsOfferedNotTaken(t *testing.T) {
	cfg := Config{Server: "tcp://127.0.0.1:1", SavedUsers: func() []string { return []string{"alice"} }}
	m := newModel(context.Background(), cfg)
	m.Update(tea.WindowSizeMsg{Width: 100, Height: 30})
	if m.Init() != nil || m.login.busy {
		t.Fatal("the saved session was resumed without being chosen")
	}
	if v := m.View(); !strings.Contains(v, "Continue as alice") {
		t.Fatalf("the saved session is not offered:\n%s", v)
	}

	// Register bob: ctrl+r, then the form.
	press(m, tea.KeyCtrlR)
	typeText(m, "bob")
	press(m, tea.KeyTab)
	typeText(m, "correct horse")
	press(m, tea.KeyTab)
	typeText(m, "correct horse")
	if got := m.login.inputs[fieldUser].Value(); got != "bob" {
		t.Fatalf("username field = %q, want bob", got)
	}
	if cmd := press(m, tea.KeyEnter); cmd == nil || m.login.status != "creating the account…" {
		t.Errorf("enter did not register bob (status %q)", m.login.status)
	}
}

func TestContinueAsSavedUser(t *testing.T) {
	var loaded []string
	cfg := Config{Server: "tcp://127.0.0.1:1",
		SavedUsers: func() []string { return []string{"alice", "bob"} },
		LoadSession: func(user string) (*parley.Session, error) {
			loaded = append(loaded, user)
			return &parley.Session{Username: user, SessionID: "s-" + user, Token: "tok-" + user}, nil
		}}

	// Typing on the "continue as" row types a username instead.
	m := newModel(context.Background(), cfg)
	typeText(m, "carol")
	if got := m.login.inputs[fieldUser].Value(); got != "carol" || m.login.field() != fieldUser {
		t.Errorf("typing on the continue row: username %q, field %d; want carol in the username", got, m.login.field())
	}

	// Down to bob, enter: bob's session is read when it is resumed.
	m = newModel(context.Background(), cfg)
	press(m, tea.KeyDown)
	cmd := press(m, tea.KeyEnter)
	if cmd == nil || m.login.status != "resuming the session of bob…" {
		t.Fatalf("enter on bob's row: status %q", m.login.status)
	}
	if len(loaded) != 0 {
		t.Errorf("the token was read before the resume started: %q", loaded)
	}
	msg, ok := cmd().(authMsg)
	if !ok || msg.kind != authResume || msg.tried == nil || msg.tried.Token != "tok-bob" {
		t.Fatalf("resume attempt = %+v, want bob's saved token", msg)
	}
}
