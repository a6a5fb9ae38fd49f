package tui

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
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
// attempt reuses it. For a resume, tried is the saved session presented.
type authMsg struct {
	kind    authKind
	client  *parley.Client
	user    string // whom client was dialed for (its direct-session state is theirs)
	session *parley.Session
	tried   *parley.Session
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

// authCmd connects (unless client is still usable) and authenticates. A
// resume reads user's newest saved token first and, if the server refuses
// it as replaced or expired, reads the store once more: another process
// sharing the session may have saved a newer token meanwhile (protocol
// §8.3).
func authCmd(ctx context.Context, cfg Config, client *parley.Client, kind authKind, user, pass string) tea.Cmd {
	return func() tea.Msg {
		ctx, cancel := context.WithTimeout(ctx, requestTimeout)
		defer cancel()
		var tried *parley.Session
		if kind == authResume {
			s, err := loadSaved(cfg, user)
			if err != nil {
				return authMsg{kind: kind, client: client, err: err}
			}
			tried = s
		}
		if client == nil || client.Err() != nil {
			c, err := parley.Dial(ctx, cfg.Server, dialOptions(cfg, user)...)
			if err != nil {
				return authMsg{kind: kind, tried: tried, err: err}
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
			s, err = client.Resume(ctx, tried.Token)
			if sessionGone(err) {
				if again, lerr := loadSaved(cfg, user); lerr == nil && again.SessionID == tried.SessionID && again.Token != tried.Token {
					tried = again
					s, err = client.Resume(ctx, tried.Token)
				}
			}
		}
		return authMsg{kind: kind, client: client, user: user, session: s, tried: tried, err: err}
	}
}

// dialOptions are cfg's options and those of direct sessions, which are
// user's: the device key, pins and history (StateDir), the policy, and
// where files sent over them go (the download folder at login; /dir does
// not move it).
func dialOptions(cfg Config, user string) []parley.Option {
	dir := cfg.DownloadDir
	if dir == "" {
		dir = "."
	}
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs
	}
	opts := append(slices.Clone(cfg.Options), parley.WithDirectPolicy(cfg.DirectPolicy), parley.WithDirectDownloads(dir))
	if cfg.StateDir != nil && user != "" {
		opts = append(opts, parley.WithStateDir(cfg.StateDir(user)))
	}
	return opts
}

// errNoSavedSession: the session offered on the login screen is no longer
// saved (another process logged it out).
var errNoSavedSession = errors.New("no saved session: log in with the password")

func loadSaved(cfg Config, user string) (*parley.Session, error) {
	if cfg.LoadSession == nil {
		return nil, errNoSavedSession
	}
	s, err := cfg.LoadSession(user)
	if err != nil {
		return nil, err
	}
	if s == nil || s.Token == "" {
		return nil, errNoSavedSession
	}
	return s, nil
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

// sentMsg reports a Send; the message itself arrives as a MessageEvent.
type sentMsg struct {
	conv string
	err  error
}

// historyMsg carries an older page of conv (PgUp).
type historyMsg struct {
	conv string
	msgs []parley.Message
	more bool
	err  error
}

// openedMsg reports /msg USER: the private conversation, and the text to
// send in it, if any.
type openedMsg struct {
	conv *parley.Conversation
	text string
	err  error
}

// convsMsg carries a fresh conversation list (titles, unread counts).
type convsMsg struct {
	convs []parley.Conversation
	err   error
}

func sendCmd(ctx context.Context, c *parley.Client, conv, text string) tea.Cmd {
	return func() tea.Msg {
		ctx, cancel := context.WithTimeout(ctx, requestTimeout)
		defer cancel()
		_, err := c.Send(ctx, conv, text)
		return sentMsg{conv: conv, err: err}
	}
}

// historyPage is how many older messages one PgUp at the top loads.
const historyPage = 50

func historyCmd(ctx context.Context, c *parley.Client, conv string, before uint64) tea.Cmd {
	return func() tea.Msg {
		ctx, cancel := context.WithTimeout(ctx, requestTimeout)
		defer cancel()
		msgs, more, err := c.History(ctx, conv, before, historyPage)
		return historyMsg{conv: conv, msgs: msgs, more: more, err: err}
	}
}

// ackCmd acknowledges what the user has seen; a failure only leaves the
// unread count higher on other devices, so it is not reported.
func ackCmd(ctx context.Context, c *parley.Client, conv string, seq uint64) tea.Cmd {
	return func() tea.Msg {
		ctx, cancel := context.WithTimeout(ctx, requestTimeout)
		defer cancel()
		_ = c.Ack(ctx, conv, seq)
		return nil
	}
}

func openDirectCmd(ctx context.Context, c *parley.Client, user, text string) tea.Cmd {
	return func() tea.Msg {
		ctx, cancel := context.WithTimeout(ctx, requestTimeout)
		defer cancel()
		cv, err := c.OpenDirect(ctx, user)
		return openedMsg{conv: cv, text: text, err: err}
	}
}

func convsCmd(ctx context.Context, c *parley.Client) tea.Cmd {
	return func() tea.Msg {
		ctx, cancel := context.WithTimeout(ctx, requestTimeout)
		defer cancel()
		convs, err := c.Conversations(ctx)
		return convsMsg{convs: convs, err: err}
	}
}
