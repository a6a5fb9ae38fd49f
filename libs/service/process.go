package service

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
)

// Process is what every Parley binary sets up before it builds its
// component: parsed common settings, the logger, the metrics registry and
// the NATS connection.
type Process struct {
	Common   Common
	Log      *slog.Logger
	Registry *prometheus.Registry
	NC       *nats.Conn
}

// Setup parses args into the common flags (with adminDefault) and the
// component's own (defined by register), then builds the logger, the
// registry and a NATS connection named "parley-"+name. flag.ErrHelp is
// returned unchanged after -h printed the usage: callers exit 0.
func Setup(name, adminDefault string, args []string, register func(*flag.FlagSet)) (*Process, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	p := &Process{}
	RegisterCommon(fs, &p.Common, adminDefault)
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
	if p.NC, err = ConnectNATS(p.Common.NATSURL, "parley-"+name, log); err != nil {
		return nil, fmt.Errorf("nats: %w", err)
	}
	return p, nil
}

// Close flushes what the process published (events still buffered in the
// client) and closes the NATS connection.
func (p *Process) Close() {
	if p.NC.IsConnected() {
		if err := p.NC.FlushTimeout(time.Second); err != nil {
			p.Log.Warn("nats flush on shutdown", "err", err)
		}
	}
	p.NC.Close()
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
