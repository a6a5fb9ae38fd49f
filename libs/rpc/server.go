package rpc

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/parleychat/parley/protocol/errcode"
	"github.com/parleychat/parley/protocol/parleyv1"
)

// Metrics are the request counters and latencies of one service's handlers.
type Metrics struct {
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
}

// NewMetrics registers parley_rpc_* metrics for service on reg.
func NewMetrics(reg prometheus.Registerer, service string) *Metrics {
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
	reg.MustRegister(m.requests, m.latency)
	return m
}

// Server subscribes request handlers in one queue group and serves them until
// Close. Requests are handled by a bounded pool of goroutines so a slow
// request (a password hash) does not hold up the rest. The goroutines are
// kept between requests: starting one per request made each grow its stack
// again (a handler needs more than a new goroutine's stack), and messaging
// used ~10 % more CPU at 2,000 msg/s (msgbench, 0.38–0.39 against 0.34–0.35
// cores).
type Server struct {
	nc      *nats.Conn
	queue   string
	log     *slog.Logger
	metrics *Metrics
	workers int

	mu      sync.Mutex // guards subs and spawned
	subs    []*nats.Subscription
	spawned int            // pool goroutines started (at most workers)
	wg      sync.WaitGroup // requests taken and not yet answered
	jobs    chan job       // hands a request to an idle pool goroutine
	quit    chan struct{}  // closed by Close: pool goroutines end
	closed  sync.Once
	ctx     context.Context
	stop    context.CancelFunc
}

// job is one request for the pool.
type job struct {
	subj string
	h    Handler
	m    *nats.Msg
}

// NewServer returns a Server answering in queue group queue with at most
// workers concurrent handlers (0 means 64).
func NewServer(nc *nats.Conn, queue string, log *slog.Logger, m *Metrics, workers int) *Server {
	if workers <= 0 {
		workers = 64
	}
	ctx, stop := context.WithCancel(context.Background())
	return &Server{nc: nc, queue: queue, log: log, metrics: m, workers: workers,
		jobs: make(chan job), quit: make(chan struct{}), ctx: ctx, stop: stop}
}

// Handle subscribes h to subj.
func (s *Server) Handle(subj string, h Handler) error {
	sub, err := s.nc.QueueSubscribe(subj, s.queue, func(m *nats.Msg) {
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
// fewer than workers, or else waits for one to be free (the subscription's
// pending messages queue meanwhile).
func (s *Server) dispatch(j job) {
	s.wg.Add(1)
	select {
	case s.jobs <- j:
		return
	default:
	}
	s.mu.Lock()
	spawn := s.spawned < s.workers
	if spawn {
		s.spawned++
	}
	s.mu.Unlock()
	if spawn {
		go s.work(j)
		return
	}
	select {
	case s.jobs <- j:
	case <-s.quit: // closed while waiting: unanswered, the caller times out
		s.wg.Done()
	}
}

// work is a pool goroutine: it serves j, then whatever it is handed, until
// Close.
func (s *Server) work(j job) {
	for {
		s.serve(j.subj, j.h, j.m)
		s.wg.Done()
		select {
		case j = <-s.jobs:
		case <-s.quit:
			return
		}
	}
}

func (s *Server) serve(subj string, h Handler, m *nats.Msg) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(s.ctx, 30*time.Second)
	defer cancel()
	resp, err := h(ctx, m)
	code := "OK"
	if err != nil {
		e := errcode.From(err)
		code = errcode.ShortName(e.Code)
		var coded *errcode.Error
		if !errors.As(err, &coded) || e.Code == parleyv1.ErrorCode_ERROR_CODE_INTERNAL {
			s.log.Error("request failed", "subject", subj, "err", err)
		} else {
			s.log.Debug("request refused", "subject", subj, "code", code, "msg", e.Message)
		}
		if m.Reply != "" {
			_ = RespondError(m, err)
		}
	} else if m.Reply != "" {
		if rerr := Respond(m, resp); rerr != nil {
			s.log.Error("reply failed", "subject", subj, "err", rerr)
		}
	}
	if s.metrics != nil {
		s.metrics.requests.WithLabelValues(subj, code).Inc()
		s.metrics.latency.WithLabelValues(subj).Observe(time.Since(start).Seconds())
	}
}

// Close drains the subscriptions (no new requests are taken, queued ones are
// still answered) and waits for in-flight handlers.
func (s *Server) Close() {
	s.mu.Lock()
	subs := s.subs
	s.subs = nil
	s.mu.Unlock()
	for _, sub := range subs {
		_ = sub.Drain()
	}
	deadline := time.Now().Add(5 * time.Second)
	for _, sub := range subs {
		for sub.IsValid() && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
	}
	s.wg.Wait()
	s.closed.Do(func() { close(s.quit) })
	s.stop()
}

// Code formats a wire code for metrics labels.
func Code(c parleyv1.ErrorCode) string { return strconv.Itoa(int(c)) }
