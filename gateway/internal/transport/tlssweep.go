package transport

import (
	"sync"
	"sync/atomic"
	"time"
)

// The AEADs of the TLS record layer (tlsrecord.go) are built on first use
// and released once unused for a sweep period, so an idle connection holds
// its keys (about 100 bytes a direction) but no AEAD (about 1 KiB for two
// AES-GCM ones, the expanded key schedule and GHASH tables). One goroutine
// per process does the releasing. A direction is in its set only while it
// holds an AEAD, so an idle connection costs the set nothing.

// sweepPeriod is how long an AEAD may stay unused before it is released
// (between one and two periods, as sweeps fall). Tests shorten it.
var sweepPeriod atomic.Int64

func init() { sweepPeriod.Store(int64(5 * time.Second)) }

// aeadSweeper is the set of directions holding an AEAD. Lock order: a
// halfConn's mu, then the sweeper's; the sweeper, holding its own, only
// tries a halfConn's (TryLock), so neither waits for the other.
type aeadSweeper struct {
	mu      sync.Mutex
	set     map[*halfConn]struct{}
	running bool // the sweeping goroutine runs; it ends when the set empties
}

var sweeper aeadSweeper

// add puts h, which just built its AEAD, in the set, starting the sweeping
// goroutine if it is not running. Called with h.mu held.
func (s *aeadSweeper) add(h *halfConn) {
	s.mu.Lock()
	if s.set == nil {
		s.set = make(map[*halfConn]struct{})
	}
	s.set[h] = struct{}{}
	if !s.running {
		s.running = true
		go s.run()
	}
	s.mu.Unlock()
}

// remove takes h out of the set (its connection closed). Called with h.mu
// held.
func (s *aeadSweeper) remove(h *halfConn) {
	s.mu.Lock()
	delete(s.set, h)
	s.mu.Unlock()
}

// run sweeps every period until the set is empty, then ends (add starts it
// again).
func (s *aeadSweeper) run() {
	for {
		time.Sleep(time.Duration(sweepPeriod.Load()))
		if !s.sweep() {
			return
		}
	}
}

// sweep releases the AEADs unused since the last sweep (a direction busy
// now is left for the next) and reports whether any are left to watch.
func (s *aeadSweeper) sweep() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for h := range s.set {
		if !h.mu.TryLock() {
			continue
		}
		if h.used {
			h.used = false
		} else {
			h.aead = nil
			delete(s.set, h)
		}
		h.mu.Unlock()
	}
	if len(s.set) == 0 {
		s.running = false
		s.set = nil // a map keeps its buckets after deletes
		return false
	}
	return true
}
