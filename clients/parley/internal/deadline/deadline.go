// Package deadline is a settable read deadline for the SDK's in-memory
// net.PacketConns (pathconn's, natsim's): Wait returns a channel closed once
// the deadline has passed (net.Pipe's pattern).
package deadline

import (
	"sync"
	"time"
)

// Deadline is a read deadline; the zero value is not ready: use New.
type Deadline struct {
	mu     sync.Mutex
	timer  *time.Timer
	cancel chan struct{}
}

// New returns a Deadline that never passes until Set.
func New() *Deadline { return &Deadline{cancel: make(chan struct{})} }

// Set moves the deadline to t; the zero time means none, a time in the past
// makes Wait's channel closed at once.
func (d *Deadline) Set(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.timer != nil && !d.timer.Stop() {
		<-d.cancel // the timer fired and is closing it: wait
	}
	d.timer = nil
	closed := isClosed(d.cancel)
	if t.IsZero() {
		if closed {
			d.cancel = make(chan struct{})
		}
		return
	}
	if dur := time.Until(t); dur > 0 {
		if closed {
			d.cancel = make(chan struct{})
		}
		ch := d.cancel
		d.timer = time.AfterFunc(dur, func() { close(ch) })
		return
	}
	if !closed {
		close(d.cancel)
	}
}

// Wait returns a channel that is closed once the deadline has passed.
func (d *Deadline) Wait() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cancel
}

func isClosed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}
