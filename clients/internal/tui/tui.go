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
	Token   string          // a stored session token: resumed at start when set
	Options []parley.Option // TLS, logger, device
	// SaveSession stores a session's token for later runs (called after
	// every login and token refresh); ForgetSession drops it (logout, or
	// the server ended the session). Both may be nil.
	SaveSession   func(*parley.Session) error
	ForgetSession func(user string) error
	// DownloadDir is where received files are saved ("": the current
	// folder, as `parley file get`); /dir changes it while running.
	DownloadDir string
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
