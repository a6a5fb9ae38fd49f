package tui

import (
	"context"
	"time"

	tea "github.com/charmbracelet/bubbletea"

	"github.com/parleychat/parley/clients/parley"
)

// requestTimeout bounds each network call started from the UI.
const requestTimeout = 15 * time.Second

type authKind int

const (
	authLogin authKind = iota
	authRegister
	authResume
)

// authMsg reports a login, register or resume attempt. client is set
// whenever a connection exists, even if authentication failed, so the next
// attempt reuses it.
type authMsg struct {
	kind    authKind
	client  *parley.Client
	session *parley.Session
	err     error
}

// eventMsg carries one event of client.
type eventMsg struct {
	client *parley.Client
	ev     parley.Event
}

// eventsDoneMsg: client's event channel closed; the client has ended.
type eventsDoneMsg struct {
	client *parley.Client
	err    error
}

type whoMsg struct {
	users []parley.OnlineUser
	err   error
}

type logoutMsg struct{ err error }

// authCmd connects (unless client is still usable) and authenticates.
func authCmd(ctx context.Context, cfg Config, client *parley.Client, kind authKind, user, pass, token string) tea.Cmd {
	return func() tea.Msg {
		ctx, cancel := context.WithTimeout(ctx, requestTimeout)
		defer cancel()
		if client == nil || client.Err() != nil {
			c, err := parley.Dial(ctx, cfg.Server, cfg.Options...)
			if err != nil {
				return authMsg{kind: kind, err: err}
			}
			client = c
		}
		var s *parley.Session
		var err error
		switch kind {
		case authLogin:
			s, err = client.Login(ctx, user, pass)
		case authRegister:
			s, err = client.Register(ctx, user, pass)
		case authResume:
			s, err = client.Resume(ctx, token)
		}
		return authMsg{kind: kind, client: client, session: s, err: err}
	}
}

// waitEvent delivers client's next event; the model asks again after each.
func waitEvent(c *parley.Client) tea.Cmd {
	return func() tea.Msg {
		ev, ok := <-c.Events()
		if !ok {
			return eventsDoneMsg{client: c, err: c.Err()}
		}
		return eventMsg{client: c, ev: ev}
	}
}

func whoCmd(ctx context.Context, c *parley.Client) tea.Cmd {
	return func() tea.Msg {
		ctx, cancel := context.WithTimeout(ctx, requestTimeout)
		defer cancel()
		users, err := c.Who(ctx)
		return whoMsg{users: users, err: err}
	}
}

func logoutCmd(ctx context.Context, c *parley.Client) tea.Cmd {
	return func() tea.Msg {
		ctx, cancel := context.WithTimeout(ctx, requestTimeout)
		defer cancel()
		return logoutMsg{err: c.Logout(ctx)}
	}
}
