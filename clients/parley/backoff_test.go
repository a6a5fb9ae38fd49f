package parley

import (
	"testing"
	"time"
)

func TestBackoffBounds(t *testing.T) {
	tests := []struct {
		name     string
		min, max time.Duration
	}{
		{"defaults", DefaultBackoffMin, DefaultBackoffMax},
		{"tight", 10 * time.Millisecond, 20 * time.Millisecond},
		{"equal", time.Second, time.Second},
		{"max below min", time.Second, time.Millisecond},
		{"zero min", 0, 50 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBackoff(tt.min, tt.max)
			for i := range 200 {
				d := b.next()
				if d < b.min || d > b.max {
					t.Fatalf("attempt %d: delay %v outside [%v, %v]", i, d, b.min, b.max)
				}
			}
		})
	}
}

func TestBackoffCeilingGrows(t *testing.T) {
	// With the random draw pinned to its top, the delays show the ceiling:
	// doubling from min, capped at max.
	b := newBackoff(100*time.Millisecond, time.Second)
	b.rand = func(n int64) int64 { return n - 1 }
	want := []time.Duration{100, 200, 400, 800, 1000, 1000}
	for i, w := range want {
		if got := b.next(); got != w*time.Millisecond {
			t.Errorf("attempt %d: %v, want %v", i, got, w*time.Millisecond)
		}
	}
	b.reset()
	if got := b.next(); got != 100*time.Millisecond {
		t.Errorf("after reset: %v, want 100ms", got)
	}
	// Many attempts do not overflow the shift.
	for range 100 {
		b.next()
	}
	if d := b.next(); d != time.Second {
		t.Fatalf("attempt %d: %v, want the 1s cap", b.attempt, d)
	}
}

func TestBackoffJitterSpreads(t *testing.T) {
	b := newBackoff(time.Millisecond, time.Second)
	b.attempt = 20 // ceiling at max
	seen := map[time.Duration]bool{}
	for range 50 {
		seen[b.next()] = true
	}
	if len(seen) < 10 {
		t.Errorf("50 delays took only %d distinct values: no jitter", len(seen))
	}
}
