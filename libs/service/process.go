package service

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/parleychat/parley/libs/subject"
)

// Process is what every Parley binary sets up before it builds its
// component: parsed common settings, the logger, the metrics registry and
// the NATS connection.
type Process struct {
	Common   Common
	Runner   RunnerConfig // set by Run
	Log      *slog.Logger
	Registry *prometheus.Registry
	NC       *nats.Conn

	closers []func() // Defer's, run by Close last first
}

// Setup parses args into the common flags (with adminDefault) and the
// component's own (defined by register), then builds the logger, the
// registry and a NATS connection named "parley-"+name, with the TLS and
// credentials of the -nats-* flags and reply subjects under
// subject.InboxPrefix(name). flag.ErrHelp is returned unchanged after -h
// printed the usage: callers exit 0.
func Setup(name, adminDefault string, args []string, register func(*flag.FlagSet)) (*Process, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	p := &Process{}
	RegisterCommon(fs, &p.Common, adminDefault)
	p.Common.NATS.RegisterFlags(fs)
	register(fs)
	if err := Parse(fs, args); err != nil {
		return nil, err
	}
	log, err := NewLogger(os.Stderr, p.Common.LogFormat, p.Common.LogLevel)
	if err != nil {
		return nil, err
	}
	p.Log = log
	p.Registry = NewRegistry()
	natsOpts, err := p.Common.NATS.Options()
	if err != nil {
		return nil, err
	}
	// Its own reply subjects: the server lets each identity read only its
	// own (subject.Identities).
	natsOpts = append(natsOpts, nats.CustomInboxPrefix(subject.InboxPrefix(name)))
	if p.NC, err = ConnectNATS(p.Common.NATSURL, "parley-"+name, log, natsOpts...); err != nil {
		return nil, fmt.Errorf("nats: %w", err)
	}
	return p, nil
}

// Deps are the process's parts a service is built from.
func (p *Process) Deps() Deps {
	return Deps{NC: p.NC, Log: p.Log, Registry: p.Registry, Runner: p.Runner}
}

// Defer has Close call f (a store client's Close) before it closes the
// NATS connection.
func (p *Process) Defer(f func()) { p.closers = append(p.closers, f) }

// Close runs what Defer registered, flushes what the process published
// (events still buffered in the client) and closes the NATS connection.
func (p *Process) Close() {
	for i := len(p.closers) - 1; i >= 0; i-- {
		p.closers[i]()
	}
	if p.NC.IsConnected() {
		if err := p.NC.FlushTimeout(time.Second); err != nil {
			p.Log.Warn("nats flush on shutdown", "err", err)
		}
	}
	p.NC.Close()
}

// Component is what Run serves: it serves until its context ends, and
// says whether it is ready (/readyz).
type Component interface {
	Run(ctx context.Context) error
	Ready() error
}

// Main is a binary's main function: it calls run with the command-line
// arguments and a context that ends at SIGINT or SIGTERM, then exits (Exit).
func Main(name string, run func(ctx context.Context, args []string) error) {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	Exit(name, err)
}

// Run is the whole of a service binary: it parses args (the common flags,
// the runner's and the service's, defined by register), sets up the
// process, builds the component and serves it and the admin port until
// sigCtx ends, then shuts down within -shutdown-timeout.
func Run(sigCtx context.Context, name, adminDefault string, args []string, register func(*flag.FlagSet), build func(ctx context.Context, p *Process) (Component, error)) error {
	var rc RunnerConfig
	p, err := Setup(name, adminDefault, args, func(fs *flag.FlagSet) {
		rc.RegisterFlags(fs)
		register(fs)
	})
	if err != nil {
		return err
	}
	defer p.Close()
	if err := rc.Check(p.Common.ShutdownTimeout); err != nil {
		return err
	}
	p.Runner = rc
	c, err := build(sigCtx, p)
	if err != nil {
		return err
	}
	admin, err := p.Common.NewAdmin(p.Registry, p.Log, map[string]func() error{"nats": NATSReady(p.NC), name: c.Ready})
	if err != nil {
		return err
	}
	return Serve(sigCtx, p.Log, p.Common.ShutdownTimeout, admin, c.Run)
}

// Exit ends main: status 0 for a nil error or -h, else the error on stderr
// and status 1.
func Exit(name string, err error) {
	if err == nil || errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	fmt.Fprintln(os.Stderr, name+":", err)
	os.Exit(1)
}
