package conn

import (
	"context"
	"sync"
	"time"
)

// connCtx is a connection's context: it ends when the connection does
// (cancel), abandoning the requests still running for it.
//
// It exists for idle memory. The requests' contexts derive from it, and
// a context.WithCancel parent keeps the map of its children once it has
// had one, empty or not: ~0.35 KiB of live heap per connection that has
// made a request, for the connection's whole life (measured with
// gatewayprof; RSS is about twice the live heap). connCtx implements
// AfterFunc, which the context package uses for a parent that is not its
// own (propagateCancel), and drops its list of callbacks whenever it
// empties.
type connCtx struct {
	mu    sync.Mutex
	done  chan struct{} // made on the first Done
	err   error
	after []*func() // AfterFunc callbacks not yet stopped
}

var _ context.Context = (*connCtx)(nil)

func (c *connCtx) Deadline() (time.Time, bool) { return time.Time{}, false }
func (c *connCtx) Value(any) any               { return nil }

func (c *connCtx) Done() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done == nil {
		c.done = make(chan struct{})
		if c.err != nil {
			close(c.done)
		}
	}
	return c.done
}

func (c *connCtx) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// cancel ends the context (context.Canceled) and runs the AfterFunc
// callbacks, each on a goroutine of its own as context.AfterFunc does.
// Calls after the first do nothing.
func (c *connCtx) cancel() {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	c.err = context.Canceled
	if c.done != nil {
		close(c.done)
	}
	after := c.after
	c.after = nil
	c.mu.Unlock()
	for _, f := range after {
		go (*f)()
	}
}

// AfterFunc arranges for f to run (on its own goroutine) once the context
// ends, at once if it has; stop cancels that and reports whether it did.
func (c *connCtx) AfterFunc(f func()) (stop func() bool) {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		go f()
		return func() bool { return false }
	}
	p := &f
	c.after = append(c.after, p)
	c.mu.Unlock()
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		for i, q := range c.after {
			if q == p {
				c.after = append(c.after[:i], c.after[i+1:]...)
				if len(c.after) == 0 {
					c.after = nil // an idle connection keeps no list
				}
				return true
			}
		}
		return false
	}
}
