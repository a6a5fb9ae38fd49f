package objstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/prometheus/client_golang/prometheus"
)

// ErrUnavailable: the store's server cannot be reached now, or its bucket
// is not there yet (a Gate that has not seen it up). It passes: retry
// later.
var ErrUnavailable = errors.New("objstore: storage unavailable")

// Gate is a Store whose server may be down, as a MinIO is while it starts
// or restarts: a process that uses files must not wait for it, nor exit
// for it. Every call answers ErrUnavailable at once while the server is
// known to be down; a prober checks it (and creates the bucket if
// missing) with a backoff while down and every GateOptions.HealthInterval
// while up. A call that finds the server unreachable marks it down and wakes the
// prober. Available says which state it is in; the state is also the
// parley_storage_up gauge and a log line at each change.
type Gate struct {
	st    Store
	probe func(context.Context) error
	log   *slog.Logger
	gauge prometheus.Gauge

	health, retryMax time.Duration // GateOptions

	up   atomic.Bool
	kick chan struct{} // a call saw the server unreachable: probe now

	mu      sync.Mutex // guards lastErr
	lastErr error      // why the store is down (nil while up)

	stop context.CancelFunc
	done chan struct{} // closed when the prober has ended
}

// GateOptions are a Gate's log, metrics and probe intervals; nil or 0
// takes the default (discard, unregistered, 15 s, 5 s).
type GateOptions struct {
	Log      *slog.Logger
	Registry prometheus.Registerer
	// HealthInterval is how often a store that is up is checked.
	HealthInterval time.Duration
	// RetryMax is the longest wait between probes while it is down (they
	// start at 100 ms and double).
	RetryMax time.Duration
}

// probeTimeout bounds one probe; probeFirstRetry is the first wait after
// a failed one.
const (
	probeTimeout    = 10 * time.Second
	probeFirstRetry = 100 * time.Millisecond
)

// NewGate wraps st, whose server probe checks (making it ready, e.g.
// creating the bucket, if it can). It starts down and starts its prober
// at once; the prober runs until ctx ends or Close.
func NewGate(ctx context.Context, st Store, probe func(context.Context) error, o GateOptions) (*Gate, error) {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.HealthInterval <= 0 {
		o.HealthInterval = 15 * time.Second
	}
	if o.RetryMax <= 0 {
		o.RetryMax = 5 * time.Second
	}
	g := &Gate{st: st, probe: probe, log: o.Log, health: o.HealthInterval, retryMax: o.RetryMax, kick: make(chan struct{}, 1), done: make(chan struct{}),
		lastErr: errors.New("not checked yet"),
		gauge: prometheus.NewGauge(prometheus.GaugeOpts{Name: "parley_storage_up",
			Help: "1 while the file storage (MinIO/S3) answers and its bucket exists, 0 while it is down: file transfers then fail with 503/UNAVAILABLE."})}
	if o.Registry != nil {
		if err := o.Registry.Register(g.gauge); err != nil {
			return nil, fmt.Errorf("objstore: metrics: %w", err)
		}
	}
	ctx, g.stop = context.WithCancel(ctx)
	go g.run(ctx)
	return g, nil
}

// Close stops the prober and waits for it. The store is not closed.
func (g *Gate) Close() {
	g.stop()
	<-g.done
}

// Available is nil while the store's server is up, else an error wrapping
// ErrUnavailable saying why not.
func (g *Gate) Available() error {
	if g.up.Load() {
		return nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return fmt.Errorf("%w: %v", ErrUnavailable, g.lastErr)
}

// run probes until ctx ends.
func (g *Gate) run(ctx context.Context) {
	defer close(g.done)
	backoff, first := probeFirstRetry, true
	for {
		pctx, cancel := context.WithTimeout(ctx, probeTimeout)
		err := g.probe(pctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		g.set(err, first)
		first = false
		wait := g.health
		if err != nil {
			wait, backoff = backoff, min(2*backoff, g.retryMax)
		} else {
			backoff = probeFirstRetry
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-g.kick:
			t.Stop()
		case <-t.C:
		}
	}
}

// set records a probe's result, logging a change (and the first result).
func (g *Gate) set(err error, first bool) {
	g.mu.Lock()
	g.lastErr = err
	g.mu.Unlock()
	was := g.up.Swap(err == nil)
	switch {
	case err == nil && (!was || first):
		g.gauge.Set(1)
		g.log.Info("file storage available")
	case err != nil && (was || first):
		g.gauge.Set(0)
		g.log.Warn("file storage unavailable: file transfers answer 503/UNAVAILABLE until it is back; chat is not affected", "err", err)
	}
}

// check is called before each operation: ErrUnavailable while down.
func (g *Gate) check() error {
	if g.up.Load() {
		return nil
	}
	return g.Available()
}

// saw notes an operation's error: one that finds the server unreachable
// marks it down and has the prober check it now.
func (g *Gate) saw(err error) error {
	if err != nil && errors.Is(err, ErrUnavailable) && g.up.CompareAndSwap(true, false) {
		g.mu.Lock()
		g.lastErr = err
		g.mu.Unlock()
		g.gauge.Set(0)
		g.log.Warn("file storage unavailable: file transfers answer 503/UNAVAILABLE until it is back; chat is not affected", "err", err)
		select {
		case g.kick <- struct{}{}:
		default:
		}
	}
	return err
}

// unreachable reports whether err means the server could not be reached
// or is not serving: nothing listening, no route, no such host, a
// connection it dropped mid-request (a server stopping while a kept-alive
// connection is reused: broken pipe, reset, a response cut short), a
// server still starting or overloaded, the bucket gone. A context ending
// is not.
func unreachable(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var op *net.OpError
	var dns *net.DNSError
	switch {
	case errors.As(err, &op) && op.Op == "dial", errors.As(err, &dns),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH),
		errors.Is(err, syscall.EPIPE), errors.Is(err, syscall.ECONNRESET), errors.Is(err, io.ErrUnexpectedEOF):
		return true
	}
	resp := errorResponse(err)
	return resp.Code == "XMinioServerNotInitialized" || resp.Code == minio.NoSuchBucket || resp.StatusCode == 503
}

// The Store methods: each answers ErrUnavailable while the server is down.

func (g *Gate) NewUpload(ctx context.Context, key string) (string, error) {
	if err := g.check(); err != nil {
		return "", err
	}
	id, err := g.st.NewUpload(ctx, key)
	return id, g.saw(err)
}

func (g *Gate) PutPart(ctx context.Context, key, uploadID string, number int, r io.Reader, size int64) (Part, error) {
	if err := g.check(); err != nil {
		return Part{}, err
	}
	p, err := g.st.PutPart(ctx, key, uploadID, number, r, size)
	return p, g.saw(err)
}

func (g *Gate) ListParts(ctx context.Context, key, uploadID string) ([]Part, error) {
	if err := g.check(); err != nil {
		return nil, err
	}
	p, err := g.st.ListParts(ctx, key, uploadID)
	return p, g.saw(err)
}

func (g *Gate) Complete(ctx context.Context, key, uploadID string, parts []Part) (Info, error) {
	if err := g.check(); err != nil {
		return Info{}, err
	}
	i, err := g.st.Complete(ctx, key, uploadID, parts)
	return i, g.saw(err)
}

func (g *Gate) Abort(ctx context.Context, key, uploadID string) error {
	if err := g.check(); err != nil {
		return err
	}
	return g.saw(g.st.Abort(ctx, key, uploadID))
}

func (g *Gate) ListUploads(ctx context.Context, prefix string) ([]Upload, error) {
	if err := g.check(); err != nil {
		return nil, err
	}
	u, err := g.st.ListUploads(ctx, prefix)
	return u, g.saw(err)
}

func (g *Gate) Put(ctx context.Context, key string, r io.Reader, size int64, contentType string) (Info, error) {
	if err := g.check(); err != nil {
		return Info{}, err
	}
	i, err := g.st.Put(ctx, key, r, size, contentType)
	return i, g.saw(err)
}

func (g *Gate) Get(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	if err := g.check(); err != nil {
		return nil, err
	}
	rc, err := g.st.Get(ctx, key, offset, length)
	return rc, g.saw(err)
}

func (g *Gate) Stat(ctx context.Context, key string) (Info, error) {
	if err := g.check(); err != nil {
		return Info{}, err
	}
	i, err := g.st.Stat(ctx, key)
	return i, g.saw(err)
}

func (g *Gate) Delete(ctx context.Context, key string) error {
	if err := g.check(); err != nil {
		return err
	}
	return g.saw(g.st.Delete(ctx, key))
}

func (g *Gate) List(ctx context.Context, prefix string) ([]Info, error) {
	if err := g.check(); err != nil {
		return nil, err
	}
	i, err := g.st.List(ctx, prefix)
	return i, g.saw(err)
}

var _ Store = (*Gate)(nil)
