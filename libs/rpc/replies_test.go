package rpc_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/parleychat/parley/libs/rpc"
	"github.com/parleychat/parley/libs/testenv"
)

// echo answers every request on subj with its own data, after the delay
// delays gives for it (nil: none), and records the reply subjects it saw.
type echo struct {
	mu      sync.Mutex
	replyTo map[string]int // reply subject -> requests answered on it
}

func startEcho(t *testing.T, nc *nats.Conn, subj string, delay func(data string) time.Duration) *echo {
	t.Helper()
	e := &echo{replyTo: map[string]int{}}
	sub, err := nc.Subscribe(subj, func(m *nats.Msg) {
		e.mu.Lock()
		e.replyTo[m.Reply]++
		e.mu.Unlock()
		if delay != nil {
			if d := delay(string(m.Data)); d > 0 {
				go func() { time.Sleep(d); _ = m.RespondMsg(&nats.Msg{Data: m.Data, Header: m.Header}) }()
				return
			}
		}
		_ = m.RespondMsg(&nats.Msg{Data: m.Data, Header: m.Header})
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	flush(t, nc)
	return e
}

func (e *echo) subjects() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.replyTo)
}

func request(t *testing.T, r rpc.Requester, subj, data string, timeout time.Duration) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	reply, err := r.RequestMsgWithContext(ctx, &nats.Msg{Subject: subj, Data: []byte(data)})
	if err != nil {
		return "", err
	}
	return string(reply.Data), nil
}

// Every request gets its own answer, and the reply subjects used are as
// many as the requests in flight at once, not one per request (what
// nats-server would otherwise look up, cache and evict each time).
func TestRepliesReuseSubjects(t *testing.T) {
	ns := testenv.NATS(t)
	srv, cli := testenv.Connect(t, ns), testenv.Connect(t, ns)
	e := startEcho(t, srv, "test.echo", nil)
	r := rpc.NewReplies(cli)
	t.Cleanup(func() { _ = r.Close() })

	for i := range 100 {
		want := fmt.Sprint("one at a time ", i)
		if got, err := request(t, r, "test.echo", want, 5*time.Second); err != nil || got != want {
			t.Fatalf("request %d: %q, %v; want %q", i, got, err, want)
		}
	}
	if n := e.subjects(); n != 1 {
		t.Fatalf("100 requests one after another used %d reply subjects, want 1", n)
	}

	const workers = 8
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			for i := range 200 {
				want := fmt.Sprintf("worker %d request %d", w, i)
				got, err := request(t, r, "test.echo", want, 5*time.Second)
				if err != nil || got != want {
					errs <- fmt.Errorf("%q, %v; want %q", got, err, want)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := e.subjects(); n > workers {
		t.Fatalf("%d requests at a time used %d reply subjects, want at most %d", workers, n, workers)
	}
}

// A request that ends before its answer retires its reply subject: the late
// answer must not be taken for the next request's.
func TestRepliesLateAnswerIsNotTheNextOnes(t *testing.T) {
	ns := testenv.NATS(t)
	srv, cli := testenv.Connect(t, ns), testenv.Connect(t, ns)
	startEcho(t, srv, "test.echo", func(data string) time.Duration {
		switch data {
		case "slow":
			return 300 * time.Millisecond
		case "next":
			return 600 * time.Millisecond // still waiting when slow's answer lands
		}
		return 0
	})
	r := rpc.NewReplies(cli)
	t.Cleanup(func() { _ = r.Close() })

	if _, err := request(t, r, "test.echo", "slow", 50*time.Millisecond); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("slow request: %v, want context.DeadlineExceeded", err)
	}
	got, err := request(t, r, "test.echo", "next", 5*time.Second)
	if err != nil || got != "next" {
		t.Fatalf("the next request got %q, %v; want its own answer %q", got, err, "next")
	}
}

// No responders is nats.ErrNoResponders, as from nats.go's requests; the
// message sent is not changed; headers travel.
func TestRepliesNoRespondersAndHeaders(t *testing.T) {
	ns := testenv.NATS(t)
	srv, cli := testenv.Connect(t, ns), testenv.Connect(t, ns)
	startEcho(t, srv, "test.echo", nil)
	r := rpc.NewReplies(cli)
	t.Cleanup(func() { _ = r.Close() })

	if _, err := request(t, r, "test.nobody", "x", 5*time.Second); !errors.Is(err, nats.ErrNoResponders) {
		t.Fatalf("request to nobody: %v, want nats.ErrNoResponders", err)
	}
	m := &nats.Msg{Subject: "test.echo", Data: []byte("h"), Header: nats.Header{"Parley-Test": {"v"}}}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	reply, err := r.RequestMsgWithContext(ctx, m)
	if err != nil {
		t.Fatal(err)
	}
	if reply.Header.Get("Parley-Test") != "v" {
		t.Errorf("header not carried: %v", reply.Header)
	}
	if m.Reply != "" {
		t.Errorf("the caller's message was given reply subject %q", m.Reply)
	}
}

// Close ends a waiting request at once, and later ones fail.
func TestRepliesClose(t *testing.T) {
	ns := testenv.NATS(t)
	srv, cli := testenv.Connect(t, ns), testenv.Connect(t, ns)
	startEcho(t, srv, "test.echo", func(string) time.Duration { return time.Hour })
	r := rpc.NewReplies(cli)

	done := make(chan error, 1)
	go func() {
		_, err := request(t, r, "test.echo", "never answered", time.Minute)
		done <- err
	}()
	time.Sleep(100 * time.Millisecond) // the request is waiting
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, rpc.ErrRepliesClosed) {
			t.Fatalf("waiting request: %v, want ErrRepliesClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a waiting request outlived Close")
	}
	if _, err := request(t, r, "test.echo", "after", time.Second); !errors.Is(err, rpc.ErrRepliesClosed) {
		t.Fatalf("request after Close: %v, want ErrRepliesClosed", err)
	}
}
