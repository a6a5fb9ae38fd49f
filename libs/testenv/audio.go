package testenv

import (
	"math"
	"time"
)

// AudioRate is the sample rate of the test signals (Opus's 48 kHz).
const AudioRate = 48000

// Bursts is a test signal for voice calls: chirps separated by silence,
// each one different (its sweep's width and direction), so
// that cross-correlation finds every burst again in what a listener heard,
// after a lossy codec, a jitter buffer and a lossy network, and tells them
// apart.
type Bursts struct {
	PCM    []int16 // 48 kHz mono
	Starts []int   // sample index where each burst starts
	Len    int     // samples per burst
	chirps [][]float64
}

// MakeBursts returns n bursts of length burst, the first after lead, each
// followed by gap of silence, then a final gap.
func MakeBursts(n int, lead, burst, gap time.Duration) Bursts {
	samples := func(d time.Duration) int { return int(d.Seconds() * AudioRate) }
	b := Bursts{Len: samples(burst)}
	total := samples(lead) + n*(b.Len+samples(gap))
	b.PCM = make([]int16, total)
	at := samples(lead)
	for k := range n {
		// Sweeps of different widths and alternating direction: two
		// linear chirps of the same rate would match each other shifted
		// in time (a chirp's range-Doppler coupling).
		f0, f1 := 400.0, 1200+450*float64(k%8)
		if k%2 == 1 {
			f0, f1 = f1, f0
		}
		c := make([]float64, b.Len)
		T := float64(b.Len) / AudioRate
		for i := range c {
			t := float64(i) / AudioRate
			phase := 2 * math.Pi * (f0*t + (f1-f0)*t*t/(2*T))
			w := 0.5 - 0.5*math.Cos(2*math.Pi*float64(i)/float64(b.Len-1)) // Hann taper
			c[i] = math.Sin(phase) * w
			b.PCM[at+i] = int16(c[i] * 16000)
		}
		b.chirps = append(b.chirps, c)
		b.Starts = append(b.Starts, at)
		at += b.Len + samples(gap)
	}
	return b
}

// Find looks for burst k in rec at sample offsets lo..hi (clamped to rec)
// and returns the offset where it matches best and the normalised
// cross-correlation there (1: identical up to gain; a clean Opus round trip
// gives about 0.9, noise near 0).
//
// A jitter buffer may insert or drop a 20 ms frame in the middle of a
// burst to follow the network's delay (that is its job); the two halves
// then match at lags 20 ms apart, and the whole burst at neither. So where
// the whole burst matches below 0.9, each half is also looked for within
// 25 ms of where the whole matched best, and the score is the better of
// the whole's and the halves' mean. Garbled or missing audio still scores
// low either way.
func (b Bursts) Find(rec []int16, k, lo, hi int) (at int, score float64) {
	at, score = find(rec, b.chirps[k], lo, hi)
	if at < 0 || score >= 0.9 {
		return at, score
	}
	half := len(b.chirps[k]) / 2
	slack := AudioRate / 40
	_, s1 := find(rec, b.chirps[k][:half], at-slack, at+slack)
	_, s2 := find(rec, b.chirps[k][half:], at+half-slack, at+half+slack)
	return at, max(score, (s1+s2)/2)
}

// find is the cross-correlation search of Find for one template c.
func find(rec []int16, c []float64, lo, hi int) (at int, score float64) {
	lo = max(lo, 0)
	hi = min(hi, len(rec)-len(c))
	var cc float64
	for _, v := range c {
		cc += v * v
	}
	corrAt := func(off int) float64 {
		var dot, rr float64
		for i, v := range c {
			r := float64(rec[off+i])
			dot += v * r
			rr += r * r
		}
		if rr == 0 {
			return 0
		}
		return dot / math.Sqrt(cc*rr)
	}
	at, score = -1, math.Inf(-1)
	// Coarse steps, then the neighbourhood of the best one sample by sample.
	const step = 8
	for off := lo; off <= hi; off += step {
		if s := corrAt(off); s > score {
			at, score = off, s
		}
	}
	if at < 0 {
		return -1, 0
	}
	best := at
	for off := max(lo, best-step); off <= min(hi, best+step); off++ {
		if s := corrAt(off); s > score {
			at, score = off, s
		}
	}
	return at, score
}

// Primed returns b with a steady 1 kHz tone of d and 300 ms of silence in
// front. Opus codes the first tone it meets while it switches from its
// speech mode (SILK) to its music mode (CELT), which garbles 100-200 ms of
// it; the primer takes that, so every burst measures the call, not the
// switch.
func (b Bursts) Primed(d time.Duration) Bursts {
	n := int(d.Seconds() * AudioRate)
	lead := n + int(0.3*AudioRate)
	out := Bursts{Len: b.Len, chirps: b.chirps, PCM: make([]int16, lead+len(b.PCM))}
	for i := range n {
		out.PCM[i] = int16(8000 * math.Sin(2*math.Pi*1000*float64(i)/AudioRate))
	}
	copy(out.PCM[lead:], b.PCM)
	for _, s := range b.Starts {
		out.Starts = append(out.Starts, s+lead)
	}
	return out
}
