package voice

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// TestPlayerThroughBadNetwork: speech encoded, sent through a simulated
// network with 5 % random loss and 0-30 ms of jitter on 10 ms of delay,
// and played on a 20 ms clock comes out as the same speech; the test
// reports the delay from mouth to ear and what the buffer did.
func TestPlayerThroughBadNetwork(t *testing.T) {
	for _, tc := range []struct {
		name   string
		loss   float64
		jitter time.Duration
		minCor float64
	}{
		{"clean", 0, 0, 0.9},
		{"5% loss, 30 ms jitter", 0.05, 30 * time.Millisecond, 0.75},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(11, 12))
			in := speech(500) // 10 s
			pkts := encodeAll(t, in, Options{})
			t0 := time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)
			type arrival struct {
				at      time.Time
				seq, ts uint32
				pkt     []byte
			}
			var arr []arrival
			seq := uint32(1000)
			for i, p := range pkts {
				if len(p) <= 2 {
					continue // DTX: the sender sends nothing
				}
				seq++
				if r.Float64() < tc.loss {
					continue
				}
				d := 10 * time.Millisecond
				if tc.jitter > 0 {
					d += time.Duration(r.Int64N(int64(tc.jitter)))
				}
				arr = append(arr, arrival{t0.Add(time.Duration(i)*20*time.Millisecond + d), seq, uint32(i * FrameSamples), p})
			}
			// Arrival order.
			slices.SortStableFunc(arr, func(a, b arrival) int { return a.at.Compare(b.at) })
			dec, err := NewOpusDecoder()
			if err != nil {
				t.Fatal(err)
			}
			pl := NewPlayer(dec)
			var out []int16
			frame := make([]int16, FrameSamples)
			next := 0
			for now := t0.Add(3 * time.Millisecond); now.Before(t0.Add(11 * time.Second)); now = now.Add(20 * time.Millisecond) {
				for ; next < len(arr) && !arr[next].at.After(now); next++ {
					pl.Push(arr[next].seq, arr[next].ts, arr[next].pkt, arr[next].at)
				}
				if err := pl.Frame(now, frame); err != nil {
					t.Fatal(err)
				}
				out = append(out, frame...)
			}
			// Output sample k plays at t0+3ms+k/48 ms: the lag is the
			// delay from mouth to ear (network, buffer, codec).
			best, bc := 0, -2.0
			for lag := 0; lag < 10*FrameSamples; lag += 8 {
				if c := corr(in, out, lag); c > bc {
					best, bc = lag, c
				}
			}
			for lag := max(0, best-8); lag < best+8; lag++ {
				if c := corr(in, out, lag); c > bc {
					best, bc = lag, c
				}
			}
			st := pl.Stats()
			mouthToEar := time.Duration(best)*time.Second/SampleRate + 3*time.Millisecond
			t.Logf("mouth to ear %v (network 10 ms + up to %v jitter), correlation %.3f; %+v", mouthToEar, tc.jitter, bc, st)
			if bc < tc.minCor {
				t.Errorf("what was played correlates %.3f with what was said, want >= %.2f", bc, tc.minCor)
			}
			if mouthToEar > 150*time.Millisecond {
				t.Errorf("mouth to ear %v", mouthToEar)
			}
			if tc.loss > 0 && (st.Lost == 0 || st.Recovered == 0) {
				t.Errorf("loss not seen or not recovered: %+v", st)
			}
		})
	}
}
