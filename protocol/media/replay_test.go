package media_test

import (
	"fmt"
	"testing"

	"github.com/parleychat/parley/protocol/media"
)

// step is one packet arriving: its sequence number and whether the window
// should let it through.
type step struct {
	seq  uint32
	want bool
}

func TestReplayWindow(t *testing.T) {
	const W = media.WindowSize
	seqs := func(from uint32, n int, want bool) []step {
		s := make([]step, n)
		for i := range s {
			s[i] = step{from + uint32(i), want}
		}
		return s
	}
	cat := func(parts ...[]step) []step {
		var all []step
		for _, p := range parts {
			all = append(all, p...)
		}
		return all
	}
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"in order", seqs(1000, 3000, true)},
		{"first packet anywhere, even 0", []step{{0, true}, {1, true}, {0, false}}},
		{"duplicate right away", []step{{5, true}, {5, false}}},
		{"duplicate later", cat(seqs(10, 100, true), []step{{50, false}, {109, false}, {10, false}})},
		{"reordered within the window, once each",
			cat([]step{{2000, true}}, seqs(2000-W+1, W-1, true), seqs(2000-W+1, W-1, false))},
		{"late by exactly the window is too old",
			[]step{{5000, true}, {5000 - W + 1, true}, {5000 - W, false}}},
		{"too old after moving on", cat(seqs(0, 3000, true), []step{{3000 - W - 1, false}, {100, false}})},
		{"gaps are filled later", []step{{100, true}, {102, true}, {104, true}, {103, true}, {101, true}, {102, false}}},
		{"wrap-around from 0xFFFFFF00 to 0x100",
			cat(seqs(0xFFFFFF00, 0x200, true), []step{{0xFFFFFFFF, false}, {0, false}, {0xFFFFFF80, false}}, seqs(0x100, 10, true))},
		{"reordered across the wrap",
			[]step{{0xFFFFFFFE, true}, {1, true}, {0xFFFFFFFF, true}, {0, true}, {0xFFFFFFFF, false}, {2, true}, {0, false}}},
		{"big jump clears the window",
			cat(seqs(0, 64, true), []step{{100000, true}, {63, false}, {100000 - W + 1, true}, {100000 - W, false}, {99999, true}, {99999, false}, {100000, false}})},
		{"jump by less than the window keeps the bits it should",
			cat(seqs(0, 150, true), seqs(151, 49, true), []step{{150 + W - 1, true}, {150, true}, {149, false}, {151, false}, {199, false}, {200, true}})},
		{"jump of exactly one block boundary",
			cat(seqs(63, 2, true), []step{{63 + 64*17, true}, {63 + 64*16, true}, {63 + 64*17 - W, false}})},
		{"half the sequence space away is old (RFC 1982)",
			[]step{{10, true}, {10 + 1<<31, false}, {10 + 1<<31 - 1, true}, {10, false}}},
		{"near-half jumps cannot come back round to a used number",
			[]step{{0, true}, {1<<31 - 1, true}, {1<<32 - 2, false}, {1<<32 - W, true}, {1<<32 - W + 1, false}, {0, false}, {1, false}, {1<<32 - W - 1, true}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var w media.ReplayWindow
			for i, s := range tc.steps {
				if got := w.Accept(s.seq); got != s.want {
					t.Fatalf("packet %d, seq %#x: Accept = %v, want %v", i, s.seq, got, s.want)
				}
			}
		})
	}
}

// TestReplayWindowExhausted: a hostile sender jumping by nearly half the
// sequence space, in either direction, never gets a number accepted twice
// (which the server would re-seal under a nonce it had used), and once its
// stream has been round all 2^32 numbers nothing newer is accepted.
func TestReplayWindowExhausted(t *testing.T) {
	for _, jump := range []uint32{1<<31 - 1, 1<<31 - 5, 1<<31 + 7, 1 << 30, 3 << 30, 1<<32 - media.WindowSize + 1} {
		t.Run(fmt.Sprintf("jump %#x", jump), func(t *testing.T) {
			var w media.ReplayWindow
			seen := map[uint32]bool{}
			seq := uint32(77)
			for i := 0; i < 1000; i++ {
				if w.Accept(seq) {
					if seen[seq] {
						t.Fatalf("seq %#x accepted twice", seq)
					}
					seen[seq] = true
				}
				seq += jump + uint32(i%3)
			}
		})
	}
}
