package parley

import (
	"math/rand/v2"
	"time"
)

// backoff computes reconnect delays: exponential growth from min to max with
// full jitter (each delay is drawn uniformly from [min, ceiling], where the
// ceiling doubles per attempt up to max), so a fleet of clients cut off by
// the same gateway restart does not come back in lockstep.
type backoff struct {
	min, max time.Duration
	attempt  int
	rand     func(n int64) int64 // uniform in [0, n); swapped by tests
}

func newBackoff(min, max time.Duration) *backoff {
	if min <= 0 {
		min = time.Millisecond
	}
	if max < min {
		max = min
	}
	return &backoff{min: min, max: max, rand: rand.Int64N}
}

// next returns the delay before the next attempt and counts the attempt.
func (b *backoff) next() time.Duration {
	ceiling := b.max
	if b.attempt < 62 {
		if c := b.min << b.attempt; c > 0 && c < b.max {
			ceiling = c
		}
	}
	b.attempt++
	span := int64(ceiling - b.min)
	if span <= 0 {
		return b.min
	}
	return b.min + time.Duration(b.rand(span+1))
}

// reset starts over after a success.
func (b *backoff) reset() { b.attempt = 0 }
