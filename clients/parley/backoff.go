package parley

import (
	"math/rand/v2"
	"time"
)

// Backoff is the schedule of reconnect attempts this SDK follows
// (docs/protocol.md §12), exported so that other clients written in Go
// (Parley's load generators, for one) reconnect the same way.
//
// It is exponential backoff with full jitter: attempt n waits a uniformly
// random time in [0, min(Max, Base·2^(n−1))]. Even the first attempt is
// delayed by a random share of Base, so the clients of a gateway that
// dies, all cut off in the same instant, do not all dial in the same
// millisecond: they arrive spread over Base, and those that fail spread
// over twice as long at their next attempt, and so on up to Max. A
// refusal's retry_after_ms (RATE_LIMITED) is a floor: the attempt after it
// waits retry_after plus the jittered delay, so refused clients do not
// come back in lockstep either.
type Backoff struct {
	Base time.Duration // the first attempt's ceiling; at least 1 ms
	Max  time.Duration // the largest ceiling; at least Base
	// Rand returns a uniform random number in [0, n); nil uses
	// math/rand/v2. Tests pin it.
	Rand func(n int64) int64
}

// Delay returns the wait before attempt n (1: the first after the
// connection broke). retryAfter is what the previous attempt's refusal
// asked for (RATE_LIMITED's retry_after_ms), zero if it asked nothing.
func (b Backoff) Delay(attempt int, retryAfter time.Duration) time.Duration {
	ceiling := b.Ceiling(attempt)
	draw := rand.Int64N
	if b.Rand != nil {
		draw = b.Rand
	}
	return max(retryAfter, 0) + time.Duration(draw(int64(ceiling)+1))
}

// Ceiling is the largest wait before attempt n, without a refusal's
// retry_after: min(Max, Base·2^(n−1)).
func (b Backoff) Ceiling(attempt int) time.Duration {
	base := max(b.Base, time.Millisecond)
	top := max(b.Max, base)
	if attempt < 1 {
		attempt = 1
	}
	if attempt-1 >= 62 {
		return top
	}
	if c := base << (attempt - 1); c > 0 && c < top {
		return c
	}
	return top
}
