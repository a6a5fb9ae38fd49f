package sdktest

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/parleychat/parley/clients/parley"
)

// The reconnect schedule (docs/protocol.md §12): attempt n waits a uniform
// random time in [0, min(max, base·2^(n−1))]. Checked on the delays the
// algorithm draws, not on the clock.
func TestBackoffCeilingGrows(t *testing.T) {
	b := parley.Backoff{Base: 200 * time.Millisecond, Max: 10 * time.Second}
	// With the draw pinned to its top, the delay is the ceiling.
	b.Rand = func(n int64) int64 { return n - 1 }
	want := []time.Duration{200, 400, 800, 1600, 3200, 6400, 10000, 10000}
	for i, w := range want {
		if got := b.Delay(i+1, 0); got != w*time.Millisecond {
			t.Errorf("attempt %d: %v, want %v", i+1, got, w*time.Millisecond)
		}
	}
	if got := b.Delay(500, 0); got != 10*time.Second {
		t.Errorf("attempt 500: %v, want the 10s cap (no overflow)", got)
	}
	// Pinned to the bottom: any attempt may come at once.
	b.Rand = func(int64) int64 { return 0 }
	if got := b.Delay(1, 0); got != 0 {
		t.Errorf("attempt 1 at the bottom: %v, want 0", got)
	}
	// A refusal's retry_after is a floor, the jitter comes on top.
	if got := b.Delay(3, 1500*time.Millisecond); got != 1500*time.Millisecond {
		t.Errorf("after retry_after 1.5s, bottom draw: %v, want 1.5s", got)
	}
	b.Rand = func(n int64) int64 { return n - 1 }
	if got := b.Delay(3, 1500*time.Millisecond); got != 2300*time.Millisecond {
		t.Errorf("after retry_after 1.5s, top draw: %v, want 2.3s", got)
	}
}

// 10,000 clients cut off at once draw their attempts spread evenly over
// each attempt's window: no two clients share a schedule, none waits
// beyond the ceiling, and every tenth of the window gets about a tenth of
// them (a chi-square test against the uniform distribution).
func TestBackoffJitterIsUniform(t *testing.T) {
	const clients = 10000
	rng := rand.New(rand.NewPCG(1, 2))
	b := parley.Backoff{Base: 200 * time.Millisecond, Max: 10 * time.Second, Rand: rng.Int64N}
	for attempt := 1; attempt <= 8; attempt++ {
		ceiling := b.Ceiling(attempt)
		var bins [10]int
		var sum time.Duration
		for range clients {
			d := b.Delay(attempt, 0)
			if d < 0 || d > ceiling {
				t.Fatalf("attempt %d: delay %v outside [0, %v]", attempt, d, ceiling)
			}
			sum += d
			bins[min(int(int64(d)*10/int64(ceiling)), 9)]++
		}
		chi2 := 0.0
		for _, n := range bins {
			diff := float64(n) - clients/10
			chi2 += diff * diff / (clients / 10)
		}
		// 9 degrees of freedom: P(chi2 > 27.9) = 0.001.
		if chi2 > 27.9 {
			t.Errorf("attempt %d: delays not uniform over [0, %v]: bins %v (chi2 %.1f)", attempt, ceiling, bins, chi2)
		}
		if mean := sum / clients; mean < ceiling*45/100 || mean > ceiling*55/100 {
			t.Errorf("attempt %d: mean delay %v, want about %v", attempt, mean, ceiling/2)
		}
	}
	// With the real random source, the first attempts of a crowd do not
	// collide on the millisecond: 10,000 over 200 ms is 50 a millisecond.
	b.Rand = nil
	perMs := map[time.Duration]int{}
	for range clients {
		perMs[b.Delay(1, 0)/time.Millisecond]++
	}
	if len(perMs) < 195 {
		t.Errorf("10,000 first attempts fell in only %d distinct milliseconds of 201", len(perMs))
	}
	for ms, n := range perMs {
		if n > 120 {
			t.Errorf("%d of 10,000 first attempts in millisecond %d", n, ms)
		}
	}
}

func TestBackoffBounds(t *testing.T) {
	tests := []struct {
		name      string
		base, max time.Duration
		wantTop   time.Duration
	}{
		{"defaults", parley.DefaultBackoffMin, parley.DefaultBackoffMax, parley.DefaultBackoffMax},
		{"equal", time.Second, time.Second, time.Second},
		{"max below base", time.Second, time.Millisecond, time.Second},
		{"zero base", 0, 50 * time.Millisecond, 50 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := parley.Backoff{Base: tt.base, Max: tt.max}
			for attempt := 1; attempt < 200; attempt++ {
				if d := b.Delay(attempt, 0); d < 0 || d > tt.wantTop {
					t.Fatalf("attempt %d: delay %v outside [0, %v]", attempt, d, tt.wantTop)
				}
			}
			if c := b.Ceiling(199); c != tt.wantTop {
				t.Errorf("ceiling %v, want %v", c, tt.wantTop)
			}
		})
	}
}
