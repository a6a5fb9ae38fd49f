package conn

import (
	"context"
	"errors"
	"testing"
	"time"
)

// A request's context derived from the connection's ends when the
// connection does, and one that finished first leaves nothing behind in
// the connection's context (what an idle connection would keep).
func TestConnCtx(t *testing.T) {
	var cc connCtx

	done, cancelDone := context.WithTimeout(&cc, time.Minute)
	cancelDone()
	if !errors.Is(done.Err(), context.Canceled) {
		t.Fatalf("finished request: Err %v", done.Err())
	}
	if cc.Err() != nil {
		t.Fatalf("the connection's context ended with its request: %v", cc.Err())
	}
	cc.mu.Lock()
	kept := cc.after
	cc.mu.Unlock()
	if kept != nil {
		t.Fatalf("the connection's context keeps %d callbacks after its only request finished", len(kept))
	}

	running, cancelRunning := context.WithTimeout(&cc, time.Minute)
	defer cancelRunning()
	ch := cc.Done()
	cc.cancel()
	cc.cancel() // a second call does nothing
	select {
	case <-ch:
	default:
		t.Fatal("Done not closed by cancel")
	}
	select {
	case <-running.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("a running request's context did not end with the connection")
	}
	if !errors.Is(running.Err(), context.Canceled) || !errors.Is(cc.Err(), context.Canceled) {
		t.Fatalf("Err: request %v, connection %v", running.Err(), cc.Err())
	}

	// Derived after the end: ended at once.
	late, cancelLate := context.WithCancel(&cc)
	defer cancelLate()
	if !errors.Is(late.Err(), context.Canceled) {
		t.Fatalf("context derived after the end: Err %v", late.Err())
	}
	ran := make(chan struct{})
	if stop := context.AfterFunc(&cc, func() { close(ran) }); stop() {
		t.Error("stop reported stopping a callback of an ended context")
	}
	select {
	case <-ran:
	case <-time.After(5 * time.Second):
		t.Fatal("AfterFunc on an ended context never ran")
	}
}
