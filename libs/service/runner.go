package service

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/parleychat/parley/libs/rpc"
)

// The service runtime. Every Parley service (auth, presence, messaging,
// file) is a Runner in the manner of nats.go's micro package: it describes
// itself as data (a Spec: its endpoints, what it opens before serving, its
// background loops) and the Runner owns the lifecycle:
//
//  1. Open, retried with backoff while NATS or JetStream is not ready;
//  2. every endpoint subscribed in the service's queue group, then a flush
//     (retried while NATS is down), so the NATS server routes requests to
//     the subscriptions before the service says it is ready;
//  3. Ready reports nil; the loops start;
//  4. when Run's context ends: Ready fails, the subscriptions are drained
//     and the requests taken are answered (a handler still running at the
//     drain timeout has its context cancelled and is answered UNAVAILABLE),
//     the loops are stopped, jobs (Go) get what is left of the drain
//     timeout, a final flush sends the last replies and events, and Run
//     returns once every goroutine it started has ended.
//
// A request whose handler outlives the handler timeout is answered
// TIMEOUT. Both timeouts are RunnerConfig, parsed once in main.

// Errors of a Runner, wrapped with the service's name.
var (
	ErrNoNATS     = errors.New("nats connection required")
	ErrRunTwice   = errors.New("Run called twice")
	ErrNotServing = errors.New("not serving")
	ErrNATSDown   = errors.New("nats not connected")
)

// RunnerConfig is how every service of a process runs its requests.
// RegisterFlags defines it; a zero field means its default.
type RunnerConfig struct {
	// HandlerTimeout bounds one request's handler; past it the request is
	// answered TIMEOUT and the handler's context ends.
	HandlerTimeout time.Duration
	// DrainTimeout bounds a service's shutdown: draining its requests,
	// stopping its background work, the final flush.
	DrainTimeout time.Duration
}

// Runner defaults.
const (
	DefaultHandlerTimeout = 30 * time.Second
	DefaultDrainTimeout   = 5 * time.Second
)

// RegisterFlags defines -handler-timeout and -drain-timeout on fs.
func (c *RunnerConfig) RegisterFlags(fs *flag.FlagSet) {
	fs.DurationVar(&c.HandlerTimeout, "handler-timeout", DefaultHandlerTimeout, "longest a service spends on one request before answering TIMEOUT")
	fs.DurationVar(&c.DrainTimeout, "drain-timeout", DefaultDrainTimeout, "longest a service spends at shutdown answering the requests it has taken (must be below -shutdown-timeout)")
}

// Check validates c against the process's shutdown timeout: a service
// must finish draining before the process gives up on it.
func (c RunnerConfig) Check(shutdown time.Duration) error {
	var errs []error
	if c.HandlerTimeout < 0 {
		errs = append(errs, errors.New("-handler-timeout must not be negative"))
	}
	if c.DrainTimeout < 0 {
		errs = append(errs, errors.New("-drain-timeout must not be negative"))
	}
	if c.withDefaults().DrainTimeout >= shutdown {
		errs = append(errs, fmt.Errorf("-drain-timeout (%s) must be below -shutdown-timeout (%s)", c.withDefaults().DrainTimeout, shutdown))
	}
	return errors.Join(errs...)
}

func (c RunnerConfig) withDefaults() RunnerConfig {
	if c.HandlerTimeout == 0 {
		c.HandlerTimeout = DefaultHandlerTimeout
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = DefaultDrainTimeout
	}
	return c
}

// Deps are what a service is built from: the process's parts, made once
// in main (Process.Deps) or, in the one-binary server, once per service.
type Deps struct {
	NC       *nats.Conn
	Log      *slog.Logger          // nil: discard
	Registry prometheus.Registerer // nil: a private registry
	Clock    func() time.Time      // nil: time.Now
	Runner   RunnerConfig
}

// WithDefaults returns d with a nil Log, Registry or Clock replaced by its
// default; it fails without a NATS connection.
func (d Deps) WithDefaults() (Deps, error) {
	if d.NC == nil {
		return d, ErrNoNATS
	}
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	if d.Registry == nil {
		d.Registry = prometheus.NewRegistry()
	}
	if d.Clock == nil {
		d.Clock = time.Now
	}
	d.Runner = d.Runner.withDefaults()
	return d, nil
}

// Endpoint is one subject a service answers.
type Endpoint struct {
	Subject string
	Handler rpc.Handler
}

// Spec describes a service to its Runner.
type Spec struct {
	Name      string // "auth": errors, log lines, the service label of parley_rpc_* metrics
	Queue     string // queue group of every endpoint
	Workers   int    // requests handled at once; 0: 64
	Endpoints []Endpoint
	// Open, when set, prepares what the handlers use (buckets, streams)
	// before anything is subscribed. It is retried with backoff until it
	// succeeds or Run's context ends.
	Open func(ctx context.Context) error
	// Loops run in the background while the service serves, from ready
	// until the requests are drained; each returns when its context ends.
	Loops []func(ctx context.Context)
	// Attrs are logged with the "serving" line (the settings that matter).
	Attrs []any
}

// Runner runs one service (see the top of this file).
type Runner struct {
	spec    Spec
	nc      *nats.Conn
	log     *slog.Logger
	cfg     RunnerConfig
	metrics *rpc.Metrics

	running atomic.Bool
	ready   atomic.Bool // subscribed, flushed and not stopping

	// Background work: loops end when loopCtx does (after the drain), jobs
	// when jobCtx does (at the drain deadline). work counts both.
	loopCtx, jobCtx       context.Context
	stopLoops, cancelJobs context.CancelFunc
	mu                    sync.Mutex // guards stopped, and orders work.Add before work.Wait
	stopped               bool
	work                  sync.WaitGroup
}

// NewRunner returns a Runner for spec; it contacts nothing. It registers
// the parley_rpc_* metrics of spec.Name on deps.Registry.
func NewRunner(spec Spec, deps Deps) (*Runner, error) {
	deps, err := deps.WithDefaults()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", spec.Name, err)
	}
	if deps.Runner.HandlerTimeout < 0 || deps.Runner.DrainTimeout < 0 {
		return nil, fmt.Errorf("%s: negative handler or drain timeout", spec.Name)
	}
	m, err := rpc.NewMetrics(deps.Registry, spec.Name)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", spec.Name, err)
	}
	r := &Runner{spec: spec, nc: deps.NC, log: deps.Log, cfg: deps.Runner, metrics: m}
	r.loopCtx, r.stopLoops = context.WithCancel(context.Background())
	r.jobCtx, r.cancelJobs = context.WithCancel(context.Background())
	return r, nil
}

// Ready reports whether the service answers requests: subscribed, not
// stopping, NATS connected. It backs /readyz.
func (r *Runner) Ready() error {
	if !r.ready.Load() {
		return fmt.Errorf("%s: %w", r.spec.Name, ErrNotServing)
	}
	if !r.nc.IsConnected() {
		return fmt.Errorf("%s: %w", r.spec.Name, ErrNATSDown)
	}
	return nil
}

// Go runs job in its own goroutine, owned by the Runner: Run waits for it
// before returning. job's context ends at the drain deadline (work not
// done by then is abandoned; make it safe to redo or to sweep up). Go
// returns false, and runs nothing, once the service has stopped.
func (r *Runner) Go(job func(ctx context.Context)) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopped {
		return false
	}
	r.work.Add(1)
	go func() {
		defer r.work.Done()
		job(r.jobCtx)
	}()
	return true
}

// Run serves until ctx ends (see the top of this file). It returns nil
// after a clean stop, also when ctx ended before the service could serve.
func (r *Runner) Run(ctx context.Context) error {
	if !r.running.CompareAndSwap(false, true) {
		return fmt.Errorf("%s: %w", r.spec.Name, ErrRunTwice)
	}
	defer r.stopWork()
	if r.spec.Open != nil {
		if err := Retry(ctx, r.log, r.spec.Name+" store", r.spec.Open); err != nil {
			if ctx.Err() != nil {
				return nil // stopped before it could serve
			}
			return err
		}
	}
	srv := rpc.NewServer(r.nc, rpc.ServerConfig{Queue: r.spec.Queue, Workers: r.spec.Workers,
		Timeout: r.cfg.HandlerTimeout, Log: r.log, Metrics: r.metrics})
	for _, ep := range r.spec.Endpoints {
		if err := srv.Handle(ep.Subject, ep.Handler); err != nil {
			_ = srv.Shutdown(context.Background())
			return fmt.Errorf("%s: subscribe %s: %w", r.spec.Name, ep.Subject, err)
		}
	}
	// The NATS server has the subscriptions once a flush came back; while
	// NATS is down they are sent on reconnect, and the flush is retried.
	err := Retry(ctx, r.log, r.spec.Name+" subscriptions", func(ctx context.Context) error {
		fctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		return r.nc.FlushWithContext(fctx)
	})
	if err == nil {
		r.ready.Store(true)
		r.log.Info(r.spec.Name+" serving", r.spec.Attrs...)
		for _, loop := range r.spec.Loops {
			r.Go(func(context.Context) { loop(r.loopCtx) })
		}
		<-ctx.Done()
		r.ready.Store(false)
	}
	r.shutdown(srv)
	r.log.Info(r.spec.Name + " stopped")
	return nil
}

// shutdown drains srv, stops the loops, lets jobs finish until the drain
// deadline and flushes what the handlers published.
func (r *Runner) shutdown(srv *rpc.Server) {
	dctx, cancel := context.WithTimeout(context.Background(), r.cfg.DrainTimeout)
	defer cancel()
	if err := srv.Shutdown(dctx); err != nil {
		r.log.Warn(r.spec.Name+": requests still running at the drain timeout were cancelled", "drain_timeout", r.cfg.DrainTimeout)
	}
	r.stopLoops()
	stop := context.AfterFunc(dctx, r.cancelJobs)
	r.stopWork()
	stop()
	if r.nc.IsConnected() {
		if err := r.nc.FlushWithContext(dctx); err != nil {
			r.log.Warn(r.spec.Name+": final flush", "err", err)
		}
	}
}

// stopWork refuses new background work and waits for what runs.
func (r *Runner) stopWork() {
	r.mu.Lock()
	r.stopped = true
	r.mu.Unlock()
	r.stopLoops()
	r.work.Wait()
	r.cancelJobs()
}
