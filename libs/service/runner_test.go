package service_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"

	"github.com/parleychat/parley/libs/rpc"
	"github.com/parleychat/parley/libs/service"
	"github.com/parleychat/parley/libs/testenv"
	"github.com/parleychat/parley/protocol/parleyv1"
)

// running is a Runner serving in the background.
type running struct {
	r    *service.Runner
	stop func() // cancels Run's context
	done chan error
}

// start runs a Runner for spec on its own connection to ns. The test's
// cleanup stops it and checks that Run returned nil.
func start(t *testing.T, ns *server.Server, spec service.Spec, deps service.Deps) *running {
	t.Helper()
	deps.NC = testenv.Connect(t, ns)
	r, err := service.NewRunner(spec, deps)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	run := &running{r: r, stop: cancel, done: make(chan error, 1)}
	go func() { run.done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := run.wait(t); err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return run
}

// wait returns Run's result; it fails the test if Run has not returned
// within 20 s (far beyond every timeout the tests configure).
func (run *running) wait(t *testing.T) error {
	t.Helper()
	select {
	case err := <-run.done:
		run.done <- err // for the next wait
		return err
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return")
		return nil
	}
}

func ping(ctx context.Context, nc *nats.Conn, subj string) error {
	return rpc.Request(ctx, nc, subj, nil, &parleyv1.Ping{Nonce: 1}, &parleyv1.Pong{})
}

func pong(context.Context, *nats.Msg) (proto.Message, error) { return &parleyv1.Pong{Nonce: 1}, nil }

// The moment Ready reports nil, a requester on another connection is
// answered: the subscriptions reached the NATS server first. Before Open
// has succeeded nothing is subscribed and Ready reports an error.
func TestRunnerReadyMeansReachable(t *testing.T) {
	ns := testenv.NATS(t)
	client := testenv.Connect(t, ns)
	for i := range 20 {
		subj := fmt.Sprintf("test.ready.%d", i)
		opened, release := make(chan struct{}), make(chan struct{})
		run := start(t, ns, service.Spec{Name: "test", Queue: "q",
			Endpoints: []service.Endpoint{{Subject: subj, Handler: pong}},
			Open: func(context.Context) error {
				close(opened)
				<-release
				return nil
			}}, service.Deps{})
		<-opened
		if err := run.r.Ready(); !errors.Is(err, service.ErrNotServing) {
			t.Fatalf("Ready while opening: %v, want ErrNotServing", err)
		}
		if err := ping(context.Background(), client, subj); !errors.Is(err, nats.ErrNoResponders) {
			t.Fatalf("a request while opening: %v, want no responders", err)
		}
		close(release)
		deadline := time.Now().Add(10 * time.Second)
		for run.r.Ready() != nil {
			if time.Now().After(deadline) {
				t.Fatal("never ready")
			}
			time.Sleep(50 * time.Microsecond)
		}
		if err := ping(context.Background(), client, subj); err != nil {
			t.Fatalf("round %d: a request just after Ready: %v", i, err)
		}
		run.stop()
		if err := run.wait(t); err != nil {
			t.Fatal(err)
		}
	}
}

// A second Run is refused while the first serves.
func TestRunnerRunsOnce(t *testing.T) {
	ns := testenv.NATS(t)
	run := start(t, ns, service.Spec{Name: "test", Queue: "q",
		Endpoints: []service.Endpoint{{Subject: "test.once", Handler: pong}}}, service.Deps{})
	testenv.Eventually(t, 10*time.Second, "ready", func() bool { return run.r.Ready() == nil })
	if err := run.r.Run(context.Background()); !errors.Is(err, service.ErrRunTwice) {
		t.Fatalf("second Run: %v, want ErrRunTwice", err)
	}
	if err := ping(context.Background(), testenv.Connect(t, ns), "test.once"); err != nil {
		t.Fatalf("the first Run stopped serving: %v", err)
	}
}

// When Run's context ends, the service stops being ready at once, and a
// request in flight is still answered by its handler before Run returns.
func TestRunnerDrainAnswersInFlight(t *testing.T) {
	ns := testenv.NATS(t)
	started, release := make(chan struct{}), make(chan struct{})
	run := start(t, ns, service.Spec{Name: "test", Queue: "q",
		Endpoints: []service.Endpoint{{Subject: "test.drain", Handler: func(context.Context, *nats.Msg) (proto.Message, error) {
			close(started)
			<-release
			return &parleyv1.Pong{Nonce: 42}, nil
		}}}}, service.Deps{})
	testenv.Eventually(t, 10*time.Second, "ready", func() bool { return run.r.Ready() == nil })
	client := testenv.Connect(t, ns)
	reply := make(chan error, 1)
	go func() {
		var p parleyv1.Pong
		err := rpc.Request(context.Background(), client, "test.drain", nil, &parleyv1.Ping{}, &p)
		if err == nil && p.Nonce != 42 {
			err = fmt.Errorf("reply %v, not the handler's", &p)
		}
		reply <- err
	}()
	<-started
	run.stop()
	testenv.Eventually(t, 10*time.Second, "not ready while draining", func() bool { return run.r.Ready() != nil })
	select {
	case err := <-run.done:
		t.Fatalf("Run returned (%v) with a request in flight", err)
	default:
	}
	close(release)
	if err := <-reply; err != nil {
		t.Fatalf("the request in flight at shutdown: %v", err)
	}
	if err := run.wait(t); err != nil {
		t.Fatal(err)
	}
}

// Run returns only after its loops and jobs have ended; a job started
// after the service stopped is refused.
func TestRunnerWaitsForBackgroundWork(t *testing.T) {
	ns := testenv.NATS(t)
	var loopEnded, jobEnded atomic.Bool
	loopCancelled, jobCancelled := make(chan struct{}), make(chan struct{})
	release := make(chan struct{})
	var r *service.Runner
	run := start(t, ns, service.Spec{Name: "test", Queue: "q",
		Endpoints: []service.Endpoint{{Subject: "test.work", Handler: func(context.Context, *nats.Msg) (proto.Message, error) {
			r.Go(func(ctx context.Context) { // like the file service's removal of live parts
				<-ctx.Done()
				close(jobCancelled)
				<-release
				jobEnded.Store(true)
			})
			return &parleyv1.Pong{}, nil
		}}},
		Loops: []func(context.Context){func(ctx context.Context) {
			<-ctx.Done()
			close(loopCancelled)
			<-release
			loopEnded.Store(true)
		}},
	}, service.Deps{Runner: service.RunnerConfig{DrainTimeout: 100 * time.Millisecond}})
	r = run.r
	testenv.Eventually(t, 10*time.Second, "ready", func() bool { return r.Ready() == nil })
	if err := ping(context.Background(), testenv.Connect(t, ns), "test.work"); err != nil {
		t.Fatal(err)
	}
	run.stop()
	<-loopCancelled
	<-jobCancelled // at the drain deadline
	select {
	case err := <-run.done:
		t.Fatalf("Run returned (%v) before its background work ended", err)
	default:
	}
	close(release)
	if err := run.wait(t); err != nil {
		t.Fatal(err)
	}
	if !loopEnded.Load() || !jobEnded.Load() {
		t.Fatalf("Run returned before its work ended: loop %v, job %v", loopEnded.Load(), jobEnded.Load())
	}
	if r.Go(func(context.Context) { t.Error("a job ran after Run returned") }) {
		t.Error("Go accepted a job after Run returned")
	}
}

// A request whose handler outlives -handler-timeout is answered TIMEOUT
// by the runner, whether or not the handler heeds its context.
func TestRunnerHandlerTimeout(t *testing.T) {
	ns := testenv.NATS(t)
	release := make(chan struct{})
	defer close(release)
	run := start(t, ns, service.Spec{Name: "test", Queue: "q", Endpoints: []service.Endpoint{
		{Subject: "test.deaf", Handler: func(context.Context, *nats.Msg) (proto.Message, error) {
			<-release // ignores its context
			return &parleyv1.Pong{}, nil
		}},
		{Subject: "test.heeds", Handler: func(ctx context.Context, _ *nats.Msg) (proto.Message, error) {
			<-ctx.Done()
			return nil, ctx.Err()
		}},
	}}, service.Deps{Runner: service.RunnerConfig{HandlerTimeout: 100 * time.Millisecond}})
	testenv.Eventually(t, 10*time.Second, "ready", func() bool { return run.r.Ready() == nil })
	client := testenv.Connect(t, ns)
	for _, subj := range []string{"test.deaf", "test.heeds"} {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		err := ping(ctx, client, subj)
		cancel()
		var re *rpc.Error
		if !errors.Is(err, rpc.ErrTimeout) || !errors.As(err, &re) || re.Cause != nil {
			t.Errorf("%s: %v, want TIMEOUT answered by the service", subj, err)
		}
	}
}

// Shutdown takes at most about the drain timeout even when a handler would
// run for much longer: its context is cancelled and its request answered
// UNAVAILABLE, so the caller retries elsewhere.
func TestRunnerShutdownWithinDrainTimeout(t *testing.T) {
	ns := testenv.NATS(t)
	started := make(chan struct{})
	run := start(t, ns, service.Spec{Name: "test", Queue: "q", Endpoints: []service.Endpoint{
		{Subject: "test.slow", Handler: func(ctx context.Context, _ *nats.Msg) (proto.Message, error) {
			close(started)
			<-ctx.Done() // would be an hour
			return nil, ctx.Err()
		}},
	}}, service.Deps{Runner: service.RunnerConfig{HandlerTimeout: time.Hour, DrainTimeout: 200 * time.Millisecond}})
	testenv.Eventually(t, 10*time.Second, "ready", func() bool { return run.r.Ready() == nil })
	reply := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		reply <- ping(ctx, testenv.Connect(t, ns), "test.slow")
	}()
	<-started
	run.stop()
	if err := run.wait(t); err != nil {
		t.Fatal(err)
	}
	if err := <-reply; !errors.Is(err, rpc.ErrUnavailable) {
		t.Fatalf("the request cut short: %v, want UNAVAILABLE", err)
	}
}

// A handler failing because a service it asked failed passes the failure
// on, and the runner logs it at warn with both subjects.
func TestRunnerLogsDownstreamFailureAtWarn(t *testing.T) {
	ns := testenv.NATS(t)
	var log records
	asker := testenv.Connect(t, ns)
	run := start(t, ns, service.Spec{Name: "test", Queue: "q", Endpoints: []service.Endpoint{
		{Subject: "test.front", Handler: func(ctx context.Context, _ *nats.Msg) (proto.Message, error) {
			if err := ping(ctx, asker, "test.nobody"); err != nil {
				return nil, fmt.Errorf("asking nobody: %w", err)
			}
			return &parleyv1.Pong{}, nil
		}},
	}}, service.Deps{Log: slog.New(&log)})
	testenv.Eventually(t, 10*time.Second, "ready", func() bool { return run.r.Ready() == nil })
	err := ping(context.Background(), testenv.Connect(t, ns), "test.front")
	if !errors.Is(err, rpc.ErrUnavailable) {
		t.Fatalf("request: %v, want UNAVAILABLE passed on", err)
	}
	testenv.Eventually(t, 5*time.Second, "a warning naming both subjects", func() bool {
		return log.has(slog.LevelWarn, map[string]string{"subject": "test.front", "downstream": "test.nobody", "code": "UNAVAILABLE"})
	})
}

// records is a slog.Handler keeping every record.
type records struct {
	mu sync.Mutex // guards rs
	rs []slog.Record
}

func (r *records) Enabled(context.Context, slog.Level) bool { return true }
func (r *records) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *records) WithGroup(string) slog.Handler            { return r }
func (r *records) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rs = append(r.rs, rec.Clone())
	return nil
}

// has reports whether a record at level carries every attribute in want.
func (r *records) has(level slog.Level, want map[string]string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rec := range r.rs {
		if rec.Level != level {
			continue
		}
		n := 0
		rec.Attrs(func(a slog.Attr) bool {
			if v, ok := want[a.Key]; ok && a.Value.String() == v {
				n++
			}
			return true
		})
		if n == len(want) {
			return true
		}
	}
	return false
}

// The runner's settings are refused when negative, or when draining could
// outlast the process's whole shutdown.
func TestRunnerConfigCheck(t *testing.T) {
	const shutdown = 10 * time.Second
	for _, tc := range []struct {
		name string
		cfg  service.RunnerConfig
		ok   bool
	}{
		{"defaults", service.RunnerConfig{}, true},
		{"set", service.RunnerConfig{HandlerTimeout: time.Minute, DrainTimeout: 9 * time.Second}, true},
		{"negative handler timeout", service.RunnerConfig{HandlerTimeout: -time.Second}, false},
		{"negative drain timeout", service.RunnerConfig{DrainTimeout: -time.Second}, false},
		{"drain as long as shutdown", service.RunnerConfig{DrainTimeout: shutdown}, false},
		{"drain longer than shutdown", service.RunnerConfig{DrainTimeout: time.Minute}, false},
	} {
		if err := tc.cfg.Check(shutdown); (err == nil) != tc.ok {
			t.Errorf("%s: Check = %v, want ok %v", tc.name, err, tc.ok)
		}
	}
	if err := (service.RunnerConfig{}).Check(service.DefaultDrainTimeout); err == nil {
		t.Error("the default drain timeout passed against a shutdown timeout as short")
	}
}
