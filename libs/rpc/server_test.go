package rpc_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"

	"github.com/parleychat/parley/libs/rpc"
	"github.com/parleychat/parley/libs/testenv"
	"github.com/parleychat/parley/protocol/parleyv1"
)

// The pool answers every request and never runs more than its workers at
// once.
func TestServerPool(t *testing.T) {
	ns := testenv.NATS(t)
	srvConn, cliConn := testenv.Connect(t, ns), testenv.Connect(t, ns)
	const workers, requests = 3, 40
	var running, most atomic.Int32
	release := make(chan struct{})
	s := rpc.NewServer(srvConn, rpc.ServerConfig{Queue: "q", Workers: workers})
	if err := s.Handle("test.pool", func(ctx context.Context, m *nats.Msg) (proto.Message, error) {
		n := running.Add(1)
		for {
			if old := most.Load(); n <= old || most.CompareAndSwap(old, n) {
				break
			}
		}
		<-release
		running.Add(-1)
		return &parleyv1.Pong{Nonce: uint64(len(m.Data))}, nil
	}); err != nil {
		t.Fatal(err)
	}
	flush(t, srvConn)
	var wg sync.WaitGroup
	errs := make(chan error, requests)
	for i := range requests {
		wg.Go(func() {
			var pong parleyv1.Pong
			err := rpc.Request(context.Background(), cliConn, "test.pool", nil, &parleyv1.Ping{Nonce: uint64(i)}, &pong)
			errs <- err
		})
	}
	testenv.Eventually(t, 5*time.Second, "the pool is busy", func() bool { return running.Load() == workers })
	time.Sleep(50 * time.Millisecond) // a fourth handler, if the bound failed, would have started
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("request: %v", err)
		}
	}
	if got := most.Load(); got != workers {
		t.Errorf("at most %d handlers ran at once, want %d", got, workers)
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// Shutdown waits for the handlers in flight, whose replies still go out.
func TestServerShutdownWaits(t *testing.T) {
	ns := testenv.NATS(t)
	srvConn, cliConn := testenv.Connect(t, ns), testenv.Connect(t, ns)
	s := rpc.NewServer(srvConn, rpc.ServerConfig{Queue: "q"})
	started, release := make(chan struct{}), make(chan struct{})
	if err := s.Handle("test.close", func(context.Context, *nats.Msg) (proto.Message, error) {
		close(started)
		<-release
		return &parleyv1.Pong{Nonce: 7}, nil
	}); err != nil {
		t.Fatal(err)
	}
	flush(t, srvConn)
	reply := make(chan error, 1)
	go func() {
		var pong parleyv1.Pong
		err := rpc.Request(context.Background(), cliConn, "test.close", nil, &parleyv1.Ping{}, &pong)
		if err == nil && pong.Nonce != 7 {
			err = context.Canceled
		}
		reply <- err
	}()
	select {
	case <-started:
	case err := <-reply:
		t.Fatalf("request answered before its handler started: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("the handler did not start")
	}
	closed := make(chan struct{})
	go func() { _ = s.Shutdown(context.Background()); close(closed) }()
	select {
	case <-closed:
		t.Fatal("Shutdown returned with a handler in flight")
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Shutdown did not return after the handler finished")
	}
	if err := <-reply; err != nil {
		t.Fatalf("the request in flight at Shutdown: %v", err)
	}
}

// flush makes the server register nc's subscriptions before another
// connection publishes to them.
func flush(t *testing.T, nc *nats.Conn) {
	t.Helper()
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
}
