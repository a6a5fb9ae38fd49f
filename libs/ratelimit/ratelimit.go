// Package ratelimit is a keyed token-bucket limiter (one bucket per account,
// source address or user) whose memory stays bounded: a bucket that has been idle
// long enough to refill completely is indistinguishable from a new one, so it
// is dropped. Sweeping is lazy (at most once per refill period, on the
// calling goroutine), so the limiter starts no goroutines.
//
// State is in process memory: with N replicas of a service behind one queue
// group a client can get up to N times the configured rate. That is the
// accepted trade-off for not putting a shared store in every request's
// path; the limits exist to make abuse slow, not to be exact.
package ratelimit

import (
	"math"
	"net/netip"
	"sync"
	"time"
)

// Source is the source a client address is limited under: an IPv4
// address (also when written as IPv4-mapped IPv6), or the /64 of an IPv6
// address, the usual allocation to one host or home, so that hopping
// through one's own addresses (or spoofing sources within one /64) does
// not multiply a limit. The zone is dropped.
func Source(ip netip.Addr) netip.Prefix {
	ip = ip.Unmap().WithZone("")
	bits := 32
	if ip.Is6() {
		bits = 64
	}
	p, _ := ip.Prefix(bits)
	return p
}

// Limiter holds one token bucket per key. A zero-rate Limiter (Every <= 0)
// allows everything.
type Limiter struct {
	rate  float64 // tokens per second
	burst float64
	now   func() time.Time
	full  time.Duration // time for an empty bucket to refill
	every time.Duration // the sweep's period (sweep)

	mu        sync.Mutex // guards keys and lastSweep
	keys      map[string]*bucket
	lastSweep time.Time
}

// epsilon absorbs float error in refills (12s at 5/min is 0.99999999
// tokens otherwise).
const epsilon = 1e-6

type bucket struct {
	tokens float64
	last   time.Time // when tokens was computed
}

// New returns a Limiter allowing `per` events per `window` per key with the
// given burst (burst < 1 means per). per <= 0 disables limiting. now is the
// clock (nil: time.Now).
func New(per int, window time.Duration, burst int, now func() time.Time) *Limiter {
	if now == nil {
		now = time.Now
	}
	l := &Limiter{now: now, keys: make(map[string]*bucket)}
	if per <= 0 || window <= 0 {
		return l
	}
	if burst < 1 {
		burst = per
	}
	l.rate = float64(per) / window.Seconds()
	l.burst = float64(burst)
	l.full = time.Duration(l.burst / l.rate * float64(time.Second))
	l.every = max(l.full/sweepsPerRefill, time.Duration(float64(time.Second)/l.rate))
	return l
}

// Take consumes one token from key's bucket. When the bucket is empty it
// consumes nothing and returns false with the time until a token is
// available.
func (l *Limiter) Take(key string) (ok bool, retryAfter time.Duration) {
	return l.TakeN(key, 1)
}

// TakeN consumes n tokens from key's bucket at once (a request that costs
// several units, such as one lookup per name). When fewer than n are there
// it consumes nothing and returns false with the time until n are; n above
// the burst can never be granted (false, with the time to refill the whole
// bucket). n < 1 is always granted.
func (l *Limiter) TakeN(key string, n int) (ok bool, retryAfter time.Duration) {
	if l.rate == 0 || n < 1 {
		return true, 0
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sweep(now)
	b := l.refill(key, now)
	need := float64(n)
	if need > l.burst {
		return false, l.full
	}
	if b.tokens >= need-epsilon {
		b.tokens = math.Max(0, b.tokens-need)
		return true, 0
	}
	// Whole milliseconds (the wire unit), rounded up so a client that waits
	// exactly this long finds the tokens; the epsilon absorbs float error.
	ms := math.Ceil((need-b.tokens)/l.rate*1000 - epsilon)
	return false, time.Duration(ms) * time.Millisecond
}

// Burst is the bucket size: the most TakeN can ever grant at once (0 when
// the limiter is disabled).
func (l *Limiter) Burst() int { return int(l.burst) }

// Refund returns one token to key's bucket (a login that turned out to
// succeed should not count against the user).
func (l *Limiter) Refund(key string) {
	if l.rate == 0 {
		return
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if b, ok := l.keys[key]; ok {
		l.refill(key, now)
		b.tokens = math.Min(l.burst, b.tokens+1)
	}
}

// Len is the number of keys held (for tests and metrics).
func (l *Limiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.keys)
}

// refill returns key's bucket brought up to now. l.mu is held.
func (l *Limiter) refill(key string, now time.Time) *bucket {
	b, ok := l.keys[key]
	if !ok {
		b = &bucket{tokens: l.burst, last: now}
		l.keys[key] = b
		return b
	}
	if el := now.Sub(b.last); el > 0 {
		b.tokens = math.Min(l.burst, b.tokens+el.Seconds()*l.rate)
		b.last = now
	}
	return b
}

// sweepsPerRefill: the map is swept this many times per refill period
// (but not more often than a token comes).
const sweepsPerRefill = 8

// sweep drops the buckets that are full again (indistinguishable from
// new), at most once per l.every: every eighth of a refill period, or the
// time one token takes if longer. A key that took one token is gone about
// a token's time later; one that emptied its bucket stays up to a refill
// period. So a flood of sources that each send a request or two (spoofed
// addresses) holds only those of the last fraction of a refill period,
// not all of the last two periods, and each call pays for a few entries of
// the walk at most. l.mu is held.
func (l *Limiter) sweep(now time.Time) {
	if now.Sub(l.lastSweep) < l.every {
		return
	}
	l.lastSweep = now
	for k, b := range l.keys {
		if b.tokens+now.Sub(b.last).Seconds()*l.rate >= l.burst-epsilon {
			delete(l.keys, k)
		}
	}
}
