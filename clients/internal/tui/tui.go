// Package tui is the full-screen terminal client: a login/register screen,
// then a chat screen with the live online list, the message area and a
// multi-line input. It drives a parley.Client; every network call runs as a
// bubbletea command so the UI never blocks.
package tui

import (
	"context"
	"errors"

	tea "github.com/charmbracelet/bubbletea"

	"github.com/parleychat/parley/clients/parley"
)

// Config is what the TUI needs from the command line.
type Config struct {
	Server  string          // gateway address, as for parley.Dial
	User    string          // prefilled username
	Options []parley.Option // TLS, logger, device, token source
	// Resume: resume User's saved session at start instead of showing the
	// login screen (the user named User explicitly).
	Resume bool

	// The sessions saved on this machine, shared with the user's other
	// Parley processes (TUIs in other terminals, CLI commands). All may be
	// nil. SavedUsers lists the users whose session can be continued
	// without the password, offered on the login screen; LoadSession reads
	// user's newest saved session (nil: none), just before it is resumed.
	// SaveSession stores a session's token (called with every token
	// received: fresh for a login or registration, not for a resume);
	// ForgetSession drops user's saved session if it is still sessionID
	// and, unless token is "", still that token.
	SavedUsers    func() []string
	LoadSession   func(user string) (*parley.Session, error)
	SaveSession   func(s *parley.Session, fresh bool) error
	ForgetSession func(user, sessionID, token string) error

	// DownloadDir is where received files are saved ("": the current
	// folder; the command passes the platform's download folder); /dir
	// changes it while running.
	DownloadDir string

	// DirectPolicy: what the client does with offers to go direct
	// (docs/protocol.md §20; the default asks: /accept-direct).
	DirectPolicy parley.DirectPolicy
	// StateDir is where a user's device key, the peers' pinned keys and
	// the history of direct messages are kept (parley.WithStateDir), by
	// username; nil: in memory, for as long as the connection lives.
	StateDir func(user string) string

	// Audio opens a call's microphone and speaker (audiodev.System);
	// nil: calls run without sound, as the user is told.
	Audio AudioDevices
}

// Run shows the TUI until the user quits or ctx ends. Quitting keeps the
// session (resumed next time); /logout ends it.
func Run(ctx context.Context, cfg Config) error {
	m := newModel(ctx, cfg)
	p := tea.NewProgram(m, tea.WithAltScreen(), tea.WithContext(ctx))
	final, err := p.Run()
	if fm, ok := final.(*model); ok && fm.client != nil {
		fm.client.Close()
	}
	if err != nil && (errors.Is(err, tea.ErrProgramKilled) || errors.Is(err, context.Canceled)) {
		return nil
	}
	return err
}
