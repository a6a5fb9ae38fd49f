// Package service is the runtime every Parley binary shares: flag and
// PARLEY_* environment parsing, structured logging, the NATS connection, the
// admin HTTP port (/healthz, /readyz, /metrics) and running components until
// a signal.
package service

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/peterbourgon/ff/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Common holds the settings every binary has.
type Common struct {
	NATSURL         string
	NATS            NATSAuth // TLS and credentials for the NATS connection (Setup's flags)
	LogFormat       string   // text or json
	LogLevel        string   // debug, info, warn, error
	AdminAddr       string   // admin HTTP listen address; empty disables it
	AdminToken      string   // bearer token /metrics requires; empty: /metrics is open
	Pprof           bool     // serve net/http/pprof on the admin port
	ShutdownTimeout time.Duration
}

// MinTokenLen is the shortest credential Parley accepts for its admin port
// or embedded NATS: a token is only as good as it is hard to guess.
const MinTokenLen = 16

// RegisterCommon defines the common flags on fs with the given admin address
// default.
func RegisterCommon(fs *flag.FlagSet, c *Common, adminDefault string) {
	fs.StringVar(&c.NATSURL, "nats-url", nats.DefaultURL, "NATS server URL(s), comma separated")
	fs.StringVar(&c.LogFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&c.LogLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.StringVar(&c.AdminAddr, "admin-addr", adminDefault, "admin HTTP address for /healthz, /readyz and /metrics (empty disables)")
	fs.StringVar(&c.AdminToken, "admin-token", "", fmt.Sprintf("with it, /metrics answers only requests with 'Authorization: Bearer <token>' (at least %d characters); /healthz and /readyz stay open for probes", MinTokenLen))
	fs.BoolVar(&c.Pprof, "pprof", false, "also serve Go's profiles (net/http/pprof) under /debug/pprof/ on the admin port, behind -admin-token like /metrics")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", 10*time.Second, "longest graceful shutdown before exiting")
}

// Parse parses args into fs; every flag can also be set by the environment
// variable PARLEY_<FLAG> with dashes as underscores (-nats-url: PARLEY_NATS_URL).
// -version (defined here on every binary) prints the build and returns flag.ErrHelp.
func Parse(fs *flag.FlagSet, args []string) error {
	return parseWithVersion(fs, args, func(fs *flag.FlagSet, args []string) error {
		return ff.Parse(fs, args, ff.WithEnvVarPrefix("PARLEY"))
	})
}

// NewLogger builds the process logger.
func NewLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("-log-level %q: %w", level, err)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch strings.ToLower(format) {
	case "text", "":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	default:
		return nil, fmt.Errorf("-log-format %q: want text or json", format)
	}
}

// ConnectNATS connects to url and keeps reconnecting forever; connection
// changes are logged. extra (NATSAuth.Options, an inbox prefix) come
// last.
func ConnectNATS(url, name string, log *slog.Logger, extra ...nats.Option) (*nats.Conn, error) {
	opts := []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(500 * time.Millisecond),
		nats.RetryOnFailedConnect(true),
		nats.PingInterval(10 * time.Second),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			log.Warn("nats disconnected", "err", err)
		}),
		nats.ReconnectHandler(func(c *nats.Conn) {
			log.Info("nats reconnected", "url", c.ConnectedUrlRedacted())
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subj := ""
			if sub != nil {
				subj = sub.Subject
			}
			log.Error("nats async error", "subject", subj, "err", err)
		}),
	}
	return nats.Connect(url, append(opts, extra...)...)
}

// NATSReady is a readiness check for a NATS connection.
func NATSReady(nc *nats.Conn) func() error {
	return func() error {
		if !nc.IsConnected() {
			return errors.New("nats not connected")
		}
		return nil
	}
}

// NewRegistry returns a Prometheus registry with the Go and process collectors.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg.MustRegister(buildInfo())
	return reg
}

// Admin serves /healthz (the process is up), /readyz (every check passes)
// and /metrics. With a Token, /metrics needs "Authorization: Bearer
// <Token>" (401 otherwise): metrics tell an outsider a lot (traffic,
// users online, versions), while probes must work without a secret and
// say only "ok".
type Admin struct {
	Addr   string
	Token  string
	Gather prometheus.Gatherer
	Checks map[string]func() error
	Log    *slog.Logger
	// Pprof serves net/http/pprof under /debug/pprof/, behind Token.
	Pprof bool

	mu sync.Mutex // guards ln
	ln net.Listener
}

// Listen binds the admin port (so tests can learn the address before Run).
func (a *Admin) Listen() (net.Addr, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.ln != nil {
		return a.ln.Addr(), nil
	}
	ln, err := net.Listen("tcp", a.Addr)
	if err != nil {
		return nil, fmt.Errorf("admin listen: %w", err)
	}
	a.ln = ln
	return ln.Addr(), nil
}

// Handler returns the admin HTTP handler.
func (a *Admin) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		var failed []string
		for name, check := range a.Checks {
			if err := check(); err != nil {
				failed = append(failed, name+": "+err.Error())
			}
		}
		if len(failed) > 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = io.WriteString(w, strings.Join(failed, "\n")+"\n")
			return
		}
		_, _ = io.WriteString(w, "ready\n")
	})
	if a.Gather != nil {
		mux.Handle("/metrics", requireBearer(a.Token, promhttp.HandlerFor(a.Gather, promhttp.HandlerOpts{})))
	}
	if a.Pprof {
		mux.Handle("/debug/pprof/", requireBearer(a.Token, http.HandlerFunc(pprof.Index)))
		mux.Handle("/debug/pprof/cmdline", requireBearer(a.Token, http.HandlerFunc(pprof.Cmdline)))
		mux.Handle("/debug/pprof/profile", requireBearer(a.Token, http.HandlerFunc(pprof.Profile)))
		mux.Handle("/debug/pprof/symbol", requireBearer(a.Token, http.HandlerFunc(pprof.Symbol)))
		mux.Handle("/debug/pprof/trace", requireBearer(a.Token, http.HandlerFunc(pprof.Trace)))
	}
	return mux
}

// requireBearer lets through only requests carrying "Authorization: Bearer
// token" (RFC 6750 §2.1), compared in constant time; an empty token lets
// everything through.
func requireBearer(token string, next http.Handler) http.Handler {
	if token == "" {
		return next
	}
	want := sha256.Sum256([]byte(token))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		// Hashing both sides makes the comparison constant-time whatever
		// the lengths.
		gotSum := sha256.Sum256([]byte(got))
		if !ok || subtle.ConstantTimeCompare(gotSum[:], want[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="parley-admin"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// CheckToken returns an error unless token is empty or at least
// MinTokenLen characters; flag names the setting in the message.
func CheckToken(flag, token string) error {
	if token != "" && len(token) < MinTokenLen {
		return fmt.Errorf("%s must be at least %d characters", flag, MinTokenLen)
	}
	return nil
}

// IsLoopback reports whether addr ("host:port") binds only loopback. An
// empty host (all interfaces) is not loopback; the only name trusted is
// "localhost".
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

// Run serves until ctx ends.
func (a *Admin) Run(ctx context.Context) error {
	if _, err := a.Listen(); err != nil {
		return err
	}
	srv := &http.Server{Handler: a.Handler(), ReadHeaderTimeout: 5 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(a.ln) }()
	a.Log.Info("admin listening", "addr", a.ln.Addr().String())
	select {
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		return nil
	case err := <-errc:
		return err
	}
}

// Group runs components until ctx ends or one of them fails; then it cancels
// the rest and waits for all of them. It returns the first failure.
func Group(ctx context.Context, runs ...func(context.Context) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg    sync.WaitGroup
		once  sync.Once
		first error
	)
	for _, run := range runs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := run(ctx); err != nil && !errors.Is(err, context.Canceled) {
				once.Do(func() { first = err })
				cancel()
			}
		}()
	}
	wg.Wait()
	return first
}

// NewAdmin returns the admin server for c with the given readiness checks,
// already listening, or nil when c.AdminAddr is empty (admin disabled).
func (c Common) NewAdmin(gather prometheus.Gatherer, log *slog.Logger, checks map[string]func() error) (*Admin, error) {
	if c.AdminAddr == "" {
		return nil, nil
	}
	if err := CheckToken("-admin-token", c.AdminToken); err != nil {
		return nil, err
	}
	a := &Admin{Addr: c.AdminAddr, Token: c.AdminToken, Gather: gather, Log: log, Checks: checks, Pprof: c.Pprof}
	if _, err := a.Listen(); err != nil {
		return nil, err
	}
	return a, nil
}

// Serve runs components (and admin, when not nil) until sigCtx ends — the
// process got SIGINT or SIGTERM — or one of them fails. The components run
// on their own context, so after the signal their shutdown can be bounded:
// Serve returns an error if they take longer than timeout.
func Serve(sigCtx context.Context, log *slog.Logger, timeout time.Duration, admin *Admin, runs ...func(context.Context) error) error {
	if admin != nil {
		runs = append(runs, admin.Run)
	}
	runCtx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- Group(runCtx, runs...) }()
	select {
	case err := <-done:
		return err
	case <-sigCtx.Done():
	}
	log.Info("shutting down", "timeout", timeout)
	cancel()
	select {
	case err := <-done:
		return err
	case <-time.After(timeout):
		return fmt.Errorf("graceful shutdown took longer than %s", timeout)
	}
}

// Retry calls open until it succeeds or ctx ends: at startup NATS may still
// be connecting, or JetStream electing a leader. It waits 250 ms after the
// first failure, doubling up to 5 s, and logs each failure as "<what> not
// ready; retrying". It returns ctx's error when ctx ends first.
func Retry(ctx context.Context, log *slog.Logger, what string, open func(context.Context) error) error {
	backoff := 250 * time.Millisecond
	for {
		err := open(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		log.Warn(what+" not ready; retrying", "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}
