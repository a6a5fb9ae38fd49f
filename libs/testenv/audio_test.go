package testenv

import (
	"testing"
	"time"
)

// TestBurstsFound checks the detector the call tests rely on: every burst
// is found where it is, delayed, in noise, and a burst is not mistaken for
// another.
func TestBurstsFound(t *testing.T) {
	b := MakeBursts(8, 100*time.Millisecond, 150*time.Millisecond, 250*time.Millisecond)
	const delay = 3333
	rec := make([]int16, len(b.PCM)+delay)
	for i, v := range b.PCM {
		rec[i+delay] = v / 2
	}
	for i := range rec { // a little noise
		rec[i] += int16((i*7919)%201) - 100
	}
	for k, s := range b.Starts {
		at, score := b.Find(rec, k, s, s+AudioRate/2)
		if at != s+delay || score < 0.9 {
			t.Errorf("burst %d: found at %d (score %.2f), want %d", k, at, score, s+delay)
		}
	}
	// No burst matches where another one is, near its start.
	for k, s := range b.Starts {
		for j := range b.Starts {
			if j == k {
				continue
			}
			if _, score := b.Find(rec, j, s+delay-2400, s+delay+2400); score > 0.5 {
				t.Errorf("burst %d matches burst %d with score %.2f", j, k, score)
			}
		}
	}
	// Silence is not a burst.
	if _, score := b.Find(make([]int16, AudioRate), 0, 0, AudioRate/2); score > 0.1 {
		t.Errorf("silence scores %.2f", score)
	}
}
