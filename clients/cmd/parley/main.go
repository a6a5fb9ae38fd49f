// Command parley is the Parley terminal client: a full-screen chat UI
// (`parley`, `parley tui`) and scriptable subcommands (`parley login`,
// `parley who --json`, `parley watch`, ...) that exit non-zero with a
// one-line message on stderr when something fails.
//
// Session tokens are kept in the config directory (sessions.json, mode 0600)
// so that later commands resume the session without the password. Several
// processes (TUIs in several terminals, commands) share that file and may
// share a session: see store.go.
package main

import (
	"bufio"
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	stdin := bufio.NewReader(os.Stdin)
	a := &app{
		stdin:  stdin,
		stdout: os.Stdout,
		stderr: os.Stderr,
		getenv: os.Getenv,
		term:   ttyTerminal{in: os.Stdin, out: os.Stderr, buf: stdin},
	}
	code := a.run(ctx, os.Args[1:])
	stop()
	os.Exit(code)
}
