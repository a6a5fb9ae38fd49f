package tui

import (
	"context"
	"testing"

	tea "github.com/charmbracelet/bubbletea"

	"github.com/parleychat/parley/clients/internal/parleytest"
	"github.com/parleychat/parley/clients/parley"
)

// Continuing a saved session whose token another process has just
// replaced (the server refuses a retired token, protocol §8.3): the
// client reads the store again and resumes with the newer token, instead
// of asking for the password and forgetting the session.
func TestResumeRereadsReplacedToken(t *testing.T) {
	p := parleytest.Start(t, nil)
	c, err := parley.Dial(context.Background(), p.TCPAddr())
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.Register(context.Background(), "alice", "correct horse battery")
	c.Close()
	if err != nil {
		t.Fatal(err)
	}
	// The first read finds a token the server refuses (TOKEN_INVALID, as
	// a retired one is); by the second, the newest one is saved.
	stale := *s
	stale.Token = "v1.retired"
	reads := []*parley.Session{&stale, s}
	var forgot []string
	cfg := Config{Server: p.TCPAddr(),
		SavedUsers: func() []string { return []string{"alice"} },
		LoadSession: func(string) (*parley.Session, error) {
			r := reads[0]
			if len(reads) > 1 {
				reads = reads[1:]
			}
			return r, nil
		},
		ForgetSession: func(u, sid, tok string) error { forgot = append(forgot, tok); return nil }}
	m := newModel(context.Background(), cfg)
	cmd := press(m, tea.KeyEnter) // continue as alice
	if cmd == nil {
		t.Fatal("enter did not resume")
	}
	msg := cmd().(authMsg)
	t.Cleanup(func() {
		if msg.client != nil {
			msg.client.Close()
		}
	})
	m.Update(msg)
	if m.screen != screenChat || m.chat.me != "alice" {
		t.Fatalf("not resumed (err %v):\n%s", msg.err, m.View())
	}
	if len(forgot) > 0 {
		t.Errorf("forgot %q", forgot)
	}
}
