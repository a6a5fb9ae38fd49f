package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/parleychat/parley/clients/internal/userdirs"
	"github.com/parleychat/parley/clients/parley"
	"github.com/parleychat/parley/libs/version"
)

// Exit codes.
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

// app is one run of the command, with its environment injected so tests can
// run it in-process.
type app struct {
	stdin  *bufio.Reader
	stdout io.Writer
	stderr io.Writer
	getenv func(string) string
	term   terminal

	g globals
}

// globals are the flags every subcommand accepts, before or after its name.
type globals struct {
	server    string
	http      string
	tlsCA     string
	insecure  bool
	user      string
	configDir string
	timeout   time.Duration
	debug     bool
}

func (a *app) defaultConfigDir() string {
	if x := a.getenv("XDG_CONFIG_HOME"); x != "" {
		return filepath.Join(x, "parley")
	}
	if h := a.getenv("HOME"); h != "" {
		return filepath.Join(h, ".config", "parley")
	}
	return ".parley"
}

func (a *app) defaultGlobals() globals {
	g := globals{
		server:    parley.DefaultAddr,
		user:      a.getenv("PARLEY_USER"),
		configDir: a.defaultConfigDir(),
		timeout:   15 * time.Second,
	}
	if s := a.getenv("PARLEY_SERVER"); s != "" {
		g.server = s
	}
	if s := a.getenv("PARLEY_HTTP"); s != "" {
		g.http = s
	}
	return g
}

// registerGlobals binds the global flags, with the values parsed so far as
// defaults.
func (g *globals) register(fs *flag.FlagSet) {
	fs.StringVar(&g.server, "server", g.server, "gateway address: tcp://host:port, tls://host:port, ws://host:port/v1/ws or wss://... (env PARLEY_SERVER)")
	fs.StringVar(&g.http, "http", g.http, "gateway HTTP base URL for files (env PARLEY_HTTP); default: where the server says its files are, else the --server host, port 7480 (http, or https for tls://)")
	fs.StringVar(&g.tlsCA, "tls-ca", g.tlsCA, "PEM file of a CA certificate to trust for tls:// and wss://")
	fs.BoolVar(&g.insecure, "insecure-skip-verify", g.insecure, "do not verify the server's TLS certificate (testing only)")
	fs.StringVar(&g.user, "user", g.user, "username (env PARLEY_USER); default for session commands: the last user who logged in; the TUI resumes this user's saved session at once")
	fs.StringVar(&g.configDir, "config-dir", g.configDir, "where the session token is kept")
	fs.DurationVar(&g.timeout, "timeout", g.timeout, "how long a command may take (not watch or tui)")
	fs.BoolVar(&g.debug, "debug", g.debug, "log connection events to stderr")
}

type command struct {
	name    string
	summary string
	run     func(ctx context.Context, a *app, args []string) error
}

func commands() []command {
	return []command{
		{"tui", "full-screen chat (the default)", cmdTUI},
		{"register", "create an account and log in", cmdRegister},
		{"login", "log in and store the session token", cmdLogin},
		{"whoami", "print the logged-in username", cmdWhoami},
		{"who", "list online users (--json for JSON)", cmdWho},
		{"logout", "end the session and forget its token", cmdLogout},
		{"watch", "print presence changes: online NAME / offline NAME", cmdWatch},
		{"send", "send a message: send <conversation|@user> <text|->", cmdSend},
		{"history", "show stored messages: history <conversation|@user> [--before N] [--limit N] [--json]", cmdHistory},
		{"conversations", "list conversations: id, title, unread (--json for JSON)", cmdConversations},
		{"group", "manage groups: group create|invite|join|leave|remove|rename|members (parley group help)", cmdGroup},
		{"friends", "list friends, requests and blocked users: USER STATE [online] (--json for JSON)", cmdFriends},
		{"friend", "friend add|accept|decline|remove <user>", cmdFriend},
		{"block", "block <user>: refuse their private messages and friend requests", cmdBlock},
		{"file", "files: file send|accept|reject|get|ls (parley file help)", cmdFile},
		{"unblock", "unblock <user>", cmdUnblock},
		{"listen", "print messages as they arrive: CONVERSATION SEQ SENDER: TEXT", cmdListen},
		{"call", "voice call: call <@user|conversation> [--in voice.wav] [--out heard.wav] [--duration D] [--record call.ogg]", cmdCall},
		{"answer", "answer the next call that rings: answer [--in x.wav] [--out y.wav] [--wait 60s] [--duration D]", cmdAnswer},
		{"reject", "decline a call: reject [call-id] (default: the next that rings)", cmdReject},
		{"direct", "peer-to-peer, end-to-end encrypted chat and files: direct @user | direct --accept (stdin lines are sent)", cmdDirect},
		{"nat", "classify your NAT with the rendezvous (RFC 5780)", cmdNAT},
		{"ping", "measure the round trip to the gateway", cmdPing},
		{"version", "print the version, git commit and Go version (also: parley -version)", cmdVersion},
	}
}

func (a *app) usage(w io.Writer) {
	fmt.Fprintf(w, "usage: parley [global flags] [command] [flags]\n\ncommands:\n")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-13s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, "\nglobal flags (also accepted after the command):\n")
	fs := flag.NewFlagSet("parley", flag.ContinueOnError)
	g := a.defaultGlobals()
	g.register(fs)
	fs.Bool("version", false, "print the version, git commit and Go version, then exit")
	fs.SetOutput(w)
	fs.PrintDefaults()
}

// run executes the command line and returns the exit code.
func (a *app) run(ctx context.Context, args []string) int {
	a.g = a.defaultGlobals()
	root := flag.NewFlagSet("parley", flag.ContinueOnError)
	root.SetOutput(io.Discard)
	a.g.register(root)
	showVersion := root.Bool("version", false, "")
	if err := root.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			a.usage(a.stdout)
			return exitOK
		}
		fmt.Fprintf(a.stderr, "parley: %v\n", err)
		return exitUsage
	}
	if *showVersion {
		fmt.Fprintln(a.stdout, version.Get().String("parley"))
		return exitOK
	}
	rest := root.Args()
	name := "tui"
	if len(rest) > 0 {
		name, rest = rest[0], rest[1:]
	}
	if name == "help" {
		a.usage(a.stdout)
		return exitOK
	}
	i := slices.IndexFunc(commands(), func(c command) bool { return c.name == name })
	if i < 0 {
		fmt.Fprintf(a.stderr, "parley: unknown command %q (try parley help)\n", name)
		return exitUsage
	}
	cmd := commands()[i]
	if err := cmd.run(ctx, a, rest); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		var ue usageError
		if errors.As(err, &ue) {
			fmt.Fprintf(a.stderr, "parley %s: %v\n", cmd.name, ue.err)
			return exitUsage
		}
		fmt.Fprintf(a.stderr, "parley %s: %s\n", cmd.name, describe(err))
		return exitError
	}
	return exitOK
}

func cmdVersion(_ context.Context, a *app, args []string) error {
	if err := parse(a.flags("version", ""), args, 0); err != nil {
		return err
	}
	fmt.Fprintln(a.stdout, version.Get().String("parley"))
	return nil
}

// usageError marks a bad command line (exit code 2).
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }

// flags builds a subcommand's flag set with the global flags included.
func (a *app) flags(name, argsUsage string) *flag.FlagSet {
	fs := flag.NewFlagSet("parley "+name, flag.ContinueOnError)
	fs.SetOutput(a.stderr)
	a.g.register(fs)
	fs.Usage = func() {
		fmt.Fprintf(a.stderr, "usage: parley %s [flags] %s\n", name, argsUsage)
		fs.PrintDefaults()
	}
	return fs
}

// parse parses a subcommand's arguments, allowing at most maxArgs
// positional ones.
func parse(fs *flag.FlagSet, args []string, maxArgs int) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	if fs.NArg() > maxArgs {
		return usageError{fmt.Errorf("unexpected argument %q", fs.Arg(maxArgs))}
	}
	return nil
}

// describe renders an error as one line for a human: the server's message
// and code for protocol errors, without the package prefixes.
func describe(err error) string {
	var pe *parley.Error
	if errors.As(err, &pe) && !errors.Is(err, parley.ErrConnectionLost) {
		msg := pe.Message
		if msg == "" {
			msg = strings.ToLower(strings.ReplaceAll(pe.Code.String(), "_", " "))
		}
		if pe.RetryAfter > 0 {
			msg += fmt.Sprintf("; retry in %v", pe.RetryAfter.Round(100*time.Millisecond))
		}
		return fmt.Sprintf("%s (%s)", msg, pe.Code)
	}
	s := strings.ReplaceAll(err.Error(), "parley: ", "")
	return strings.ReplaceAll(s, "\n", " ")
}

// serverKey is the canonical server address, the key of the token store.
func (a *app) serverKey() (string, error) {
	k, err := parley.NormalizeAddr(a.g.server)
	if err != nil {
		return "", usageError{err}
	}
	return k, nil
}

func (a *app) store() store { return store{dir: a.g.configDir} }

// downloadsDefault says where downloadDir looks, for help texts.
const downloadsDefault = "$XDG_DOWNLOAD_DIR (also as set in ~/.config/user-dirs.dirs), ~/Downloads, else the current folder"

// downloadDir is where received files go when the command line names no
// folder: $PARLEY_DOWNLOAD_DIR, else the platform's download folder.
func (a *app) downloadDir() string {
	if d := a.getenv("PARLEY_DOWNLOAD_DIR"); d != "" {
		return d
	}
	return userdirs.Downloads(a.getenv)
}

func (a *app) logger() *slog.Logger {
	if !a.g.debug {
		return slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return slog.New(slog.NewTextHandler(a.stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// clientOptions are the SDK options the global flags imply.
func (a *app) clientOptions() ([]parley.Option, error) {
	opts := []parley.Option{parley.WithLogger(a.logger()), parley.WithDevice("parley-cli")}
	if key, err := parley.NormalizeAddr(a.g.server); err == nil {
		// Processes sharing a session present its newest saved token.
		st := a.store()
		opts = append(opts, parley.WithTokenSource(func(id string) (string, time.Time) { return st.newest(key, id) }))
	}
	if a.g.http != "" {
		opts = append(opts, parley.WithHTTPBase(a.g.http))
	}
	if a.g.tlsCA != "" || a.g.insecure {
		cfg := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: a.g.insecure} //nolint:gosec // opt-in flag for testing
		if a.g.tlsCA != "" {
			pem, err := os.ReadFile(a.g.tlsCA)
			if err != nil {
				return nil, fmt.Errorf("--tls-ca: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("--tls-ca: no PEM certificate in %s", a.g.tlsCA)
			}
			cfg.RootCAs = pool
		}
		opts = append(opts, parley.WithTLSConfig(cfg))
	}
	return opts, nil
}

// dial connects for a one-shot command: no reconnects, so a broken
// connection fails the command instead of hanging it.
func (a *app) dial(ctx context.Context, extra ...parley.Option) (*parley.Client, error) {
	opts, err := a.clientOptions()
	if err != nil {
		return nil, err
	}
	opts = append(opts, parley.WithReconnect(false))
	return parley.Dial(ctx, a.g.server, append(opts, extra...)...)
}

// username returns the user to log in as: an argument, --user/PARLEY_USER,
// or a prompt on a terminal.
func (a *app) username(fs *flag.FlagSet) (string, error) {
	if fs.NArg() > 0 {
		return fs.Arg(0), nil
	}
	if a.g.user != "" {
		return a.g.user, nil
	}
	if a.term != nil && a.term.isTerminal() {
		u, err := a.term.readLine("Username: ")
		if err != nil {
			return "", err
		}
		if u != "" {
			return u, nil
		}
	}
	return "", usageError{errors.New("no username: pass it as an argument, or use --user or PARLEY_USER")}
}

func (a *app) passwords(fromStdin bool) passwordSource {
	return passwordSource{fromStdin: fromStdin, stdin: a.stdin, env: a.getenv("PARLEY_PASSWORD"), term: a.term}
}

// withTimeout bounds a one-shot command.
func (a *app) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if a.g.timeout <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, a.g.timeout)
}
