package rpc

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/parleychat/parley/libs/testenv"
)

// After a burst of more concurrent requests than maxFree, Replies keeps at
// most maxFree answered subjects, and every request still got its answer.
func TestRepliesFreeListBounded(t *testing.T) {
	ns := testenv.NATS(t)
	srv, cli := testenv.Connect(t, ns), testenv.Connect(t, ns)
	release := make(chan struct{})
	sub, err := srv.Subscribe("test.burst", func(m *nats.Msg) {
		go func() { <-release; _ = m.Respond(m.Data) }()
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := srv.Flush(); err != nil {
		t.Fatal(err)
	}
	r := NewReplies(cli)
	t.Cleanup(func() { _ = r.Close() })

	const n = maxFree + 500
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			want := fmt.Sprint(i)
			reply, err := r.RequestMsgWithContext(ctx, &nats.Msg{Subject: "test.burst", Data: []byte(want)})
			if err != nil || string(reply.Data) != want {
				errs <- fmt.Errorf("request %d: %v", i, err)
			}
		})
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		r.mu.Lock()
		waiting := len(r.waiting)
		r.mu.Unlock()
		if waiting == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d requests waiting", waiting, n)
		}
	}
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.free) != maxFree || r.minted != n {
		t.Fatalf("%d subjects minted, %d kept for use again; want %d and %d", r.minted, len(r.free), n, maxFree)
	}
}
