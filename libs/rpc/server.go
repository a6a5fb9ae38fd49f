package rpc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	"github.com/parleychat/parley/protocol/errcode"
	"github.com/parleychat/parley/protocol/parleyv1"
)

// Metrics are the request counters and latencies of one service's handlers.
type Metrics struct {
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
}

// NewMetrics registers parley_rpc_* metrics for service on reg; it fails
// when reg already holds them for that service.
func NewMetrics(reg prometheus.Registerer, service string) (*Metrics, error) {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name:        "parley_rpc_requests_total",
			Help:        "Requests handled, by subject and result code (OK or a wire error code name).",
			ConstLabels: prometheus.Labels{"service": service},
		}, []string{"subject", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:        "parley_rpc_request_duration_seconds",
			Help:        "Time to handle a request, by subject.",
			ConstLabels: prometheus.Labels{"service": service},
			Buckets:     prometheus.ExponentialBuckets(0.0001, 4, 10),
		}, []string{"subject"}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.latency} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("rpc metrics of %s: %w", service, err)
		}
	}
	return m, nil
}

// ServerConfig is how a Server serves.
type ServerConfig struct {
	Queue   string        // the queue group every subscription joins
	Workers int           // handlers running at once; 0: 64
	Timeout time.Duration // how long a handler may take before its request is answered TIMEOUT; 0: 30 s
	Log     *slog.Logger  // nil: discard
	Metrics *Metrics      // nil: none
}

// Server subscribes request handlers in one queue group and serves them until
// Shutdown. Requests are handled by a bounded pool of goroutines so a slow
// request (a password hash) does not hold up the rest. The goroutines are
// kept between requests: starting one per request made each grow its stack
// again (a handler needs more than a new goroutine's stack), and messaging
// used ~10 % more CPU at 2,000 msg/s (msgbench, 0.38–0.39 against 0.34–0.35
// cores).
//
// Every request gets exactly one reply: the handler's, or TIMEOUT when the
// handler outlives cfg.Timeout, or UNAVAILABLE when Shutdown's deadline cut
// it short (a handler still running then has its context cancelled).
type Server struct {
	nc  *nats.Conn
	cfg ServerConfig

	mu      sync.Mutex // guards subs, spawned and closing
	subs    []*nats.Subscription
	spawned int  // pool goroutines started (at most cfg.Workers)
	closing bool // Shutdown stopped counting requests: late ones are refused

	requests sync.WaitGroup // requests taken and not yet answered
	pool     sync.WaitGroup // pool goroutines
	jobs     chan job       // hands a request to an idle pool goroutine
	quit     chan struct{}  // closed by Shutdown: pool goroutines end
	ctx      context.Context
	cancel   context.CancelFunc // cancels every handler's context
	shutdown sync.Once
}

// job is one request for the pool.
type job struct {
	subj string
	h    Handler
	m    *nats.Msg
}

// Errors a Server answers for a handler.
var (
	// errHandlerTimeout answers a request whose handler outlived
	// ServerConfig.Timeout.
	errHandlerTimeout = errcode.New(parleyv1.ErrorCode_ERROR_CODE_TIMEOUT, "the service took too long to answer")
	// errStopping answers a request that shutdown cut short or came too
	// late; another replica, or this one restarted, will answer a retry.
	errStopping = errcode.New(parleyv1.ErrorCode_ERROR_CODE_UNAVAILABLE, "the service is stopping, try again")
)

// NewServer returns a Server on nc; it subscribes nothing until Handle.
func NewServer(nc *nats.Conn, cfg ServerConfig) *Server {
	if cfg.Workers <= 0 {
		cfg.Workers = 64
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{nc: nc, cfg: cfg, jobs: make(chan job), quit: make(chan struct{}), ctx: ctx, cancel: cancel}
}

// Handle subscribes h to subj.
func (s *Server) Handle(subj string, h Handler) error {
	sub, err := s.nc.QueueSubscribe(subj, s.cfg.Queue, func(m *nats.Msg) {
		s.dispatch(job{subj: subj, h: h, m: m})
	})
	if err != nil {
		return err
	}
	// Pending limits: a burst of requests waits in the client rather than
	// being dropped as a slow consumer.
	_ = sub.SetPendingLimits(100_000, 64<<20)
	s.mu.Lock()
	s.subs = append(s.subs, sub)
	s.mu.Unlock()
	return nil
}

// dispatch gives j to an idle pool goroutine, or starts one while there are
// fewer than Workers, or else waits for one to be free (the subscription's
// pending messages queue meanwhile).
func (s *Server) dispatch(j job) {
	s.mu.Lock()
	if s.closing {
		// Delivered after the drain finished (the client hands a message
		// to its callback just after counting it off): too late to count.
		s.mu.Unlock()
		s.reply(j, time.Now(), nil, errStopping)
		return
	}
	s.requests.Add(1)
	s.mu.Unlock()
	select {
	case s.jobs <- j:
		return
	default:
	}
	s.mu.Lock()
	spawn := s.spawned < s.cfg.Workers
	if spawn {
		s.spawned++
		s.pool.Add(1)
	}
	s.mu.Unlock()
	if spawn {
		go s.work(j)
		return
	}
	s.jobs <- j // Shutdown closes quit only after every counted request is served
}

// work is a pool goroutine: it serves j, then whatever it is handed, until
// Shutdown closes quit.
func (s *Server) work(j job) {
	defer s.pool.Done()
	for {
		s.serve(j)
		s.requests.Done()
		select {
		case j = <-s.jobs:
		case <-s.quit:
			return
		}
	}
}

// serve runs j's handler and sends the one reply j gets: the handler's, or
// the timeout's or shutdown's when they come first.
func (s *Server) serve(j job) {
	start := time.Now()
	if s.ctx.Err() != nil {
		s.reply(j, start, nil, errStopping)
		return
	}
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.Timeout)
	defer cancel()
	var answered atomic.Bool
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(fired)
		if answered.CompareAndSwap(false, true) {
			s.reply(j, start, nil, expired(ctx))
		}
	})
	resp, err := j.h(ctx, j.m)
	if !stop() {
		<-fired // the request is not done before its reply is
	}
	if !answered.CompareAndSwap(false, true) {
		return
	}
	if err != nil && ctx.Err() != nil && !refusal(err) {
		err = expired(ctx) // the handler gave up because its time ran out
	}
	s.reply(j, start, resp, err)
}

// expired is the answer for a request whose context ended: TIMEOUT at the
// handler timeout, UNAVAILABLE when shutdown cancelled it.
func expired(ctx context.Context) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return errHandlerTimeout
	}
	return errStopping
}

// refusal reports whether err carries a wire code other than INTERNAL: an
// answer meant for the caller.
func refusal(err error) bool {
	var e *errcode.Error
	return errors.As(err, &e) && e.Code != parleyv1.ErrorCode_ERROR_CODE_INTERNAL
}

// reply answers j with resp or err, logs what an operator should see and
// counts the request.
func (s *Server) reply(j job, start time.Time, resp proto.Message, err error) {
	code := "OK"
	if err != nil {
		code = errcode.ShortName(errcode.Code(err))
		s.logFailure(j.subj, err)
		if j.m.Reply != "" {
			_ = RespondError(j.m, err)
		}
	} else if j.m.Reply != "" {
		if rerr := Respond(j.m, resp); rerr != nil {
			s.cfg.Log.Error("reply failed", "subject", j.subj, "err", rerr)
		}
	}
	if s.cfg.Metrics != nil {
		s.cfg.Metrics.requests.WithLabelValues(j.subj, code).Inc()
		s.cfg.Metrics.latency.WithLabelValues(j.subj).Observe(time.Since(start).Seconds())
	}
}

// logFailure logs a failed request of subject subj: a service this one
// depends on failing, a timeout or shutdown at warn; an internal error at
// error; a refusal (a client's mistake or lack of rights) at debug.
func (s *Server) logFailure(subj string, err error) {
	log := s.cfg.Log
	switch down := Failed(err); {
	case down != nil:
		log.Warn("downstream service failed", "subject", subj, "downstream", down.Subject,
			"code", errcode.ShortName(down.Wire.Code), "err", err)
	case err == errHandlerTimeout:
		log.Warn("request outlived the handler timeout; answered TIMEOUT", "subject", subj, "timeout", s.cfg.Timeout)
	case err == errStopping:
		log.Warn("request cut short by shutdown; answered UNAVAILABLE", "subject", subj)
	case !refusal(err):
		log.Error("request failed", "subject", subj, "err", err)
	default:
		e := errcode.From(err)
		log.Debug("request refused", "subject", subj, "code", errcode.ShortName(e.Code), "msg", e.Message)
	}
}

// Shutdown stops taking requests and answers the ones taken: the
// subscriptions are drained (requests already delivered to this client are
// still served) and Shutdown waits for the handlers. When ctx ends first,
// the handlers' contexts are cancelled, their requests answered
// UNAVAILABLE, and Shutdown still waits for them to return, then returns
// ctx's error. Every pool goroutine has ended when it returns. Only the
// first call does anything.
func (s *Server) Shutdown(ctx context.Context) error {
	var err error
	s.shutdown.Do(func() { err = s.drain(ctx) })
	return err
}

func (s *Server) drain(ctx context.Context) error {
	s.mu.Lock()
	subs := s.subs
	s.subs = nil
	s.mu.Unlock()
	var err error
	for _, sub := range subs {
		drained := sub.StatusChanged(nats.SubscriptionClosed)
		if sub.Drain() != nil {
			continue // connection closed: nothing more arrives
		}
		select {
		case <-drained:
		case <-ctx.Done():
			err = ctx.Err()
		}
		if err != nil {
			break
		}
	}
	if err != nil {
		s.cancel() // cut the handlers short; undrained subscriptions end with the connection
	}
	s.mu.Lock()
	s.closing = true
	s.mu.Unlock()
	served := make(chan struct{})
	go func() { s.requests.Wait(); close(served) }()
	select {
	case <-served:
	case <-ctx.Done():
		err = ctx.Err()
		s.cancel()
		<-served
	}
	close(s.quit)
	s.pool.Wait()
	s.cancel()
	return err
}
