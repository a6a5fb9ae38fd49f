package testenv

import (
	"fmt"
	"math"
	"slices"
	"sync"
	"testing"
	"time"
)

// The audio side of the call tests: a Mouth plays a known signal into a
// call (silence until started) and remembers when each frame went in; an
// Ear keeps what a call played out and when. Cross-correlating the ear's
// samples with each burst of the mouth's signal finds the burst again and
// tells the delay from the mouth to the ear (mouth-to-ear: encoding, the
// network, relaying, the jitter buffer, decoding).

// frameSamples is one 20 ms frame, the unit calls read and play.
const frameSamples = AudioRate / 50

// Mouth is a call's input (the SDK's voice.PCMSource) saying Bursts, or a
// tone, once started; silence before.
type Mouth struct {
	b  Bursts
	mu sync.Mutex
	on bool
	// reads[i] is when frame i of b.PCM was read (sent).
	reads []time.Time
	tone  float64 // > 0: a continuous tone of this frequency instead of bursts
	phase float64
}

// NewMouth returns a Mouth that will say b.
func NewMouth(b Bursts) *Mouth { return &Mouth{b: b} }

// Signal is what m says.
func (m *Mouth) Signal() Bursts { return m.b }

// ReadFrame is the PCM source's: the next 20 ms.
func (m *Mouth) ReadFrame(pcm []int16) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	clear(pcm)
	if !m.on {
		return nil
	}
	if m.tone > 0 {
		for i := range pcm {
			pcm[i] = int16(12000 * math.Sin(m.phase))
			m.phase += 2 * math.Pi * m.tone / AudioRate
		}
		return nil
	}
	off := len(m.reads) * frameSamples
	if off >= len(m.b.PCM) {
		return nil
	}
	m.reads = append(m.reads, time.Now())
	copy(pcm, m.b.PCM[off:])
	return nil
}

// Start makes m speak from its next frame on.
func (m *Mouth) Start() {
	m.mu.Lock()
	m.on = true
	m.mu.Unlock()
}

// Done reports whether the whole signal went in.
func (m *Mouth) Done() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.tone == 0 && len(m.reads)*frameSamples >= len(m.b.PCM)
}

// sentAt is when sample i of the signal went in.
func (m *Mouth) sentAt(i int) time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.reads[i/frameSamples].Add(samplesDur(i % frameSamples))
}

func samplesDur(n int) time.Duration {
	return time.Duration(n) * time.Second / AudioRate
}

// Ear is a call's output (the SDK's voice.PCMSink) that remembers when
// each frame was played.
type Ear struct {
	mu  sync.Mutex
	pcm []int16
	at  []time.Time // when frame i was played
}

// WriteFrame is the PCM sink's: the next 20 ms played.
func (e *Ear) WriteFrame(pcm []int16) error {
	e.mu.Lock()
	e.pcm = append(e.pcm, pcm...)
	e.at = append(e.at, time.Now())
	e.mu.Unlock()
	return nil
}

// snapshot returns the samples and frame times so far.
func (e *Ear) snapshot() ([]int16, []time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.pcm), slices.Clone(e.at)
}

// Heard is one burst found (or not) at an Ear.
type Heard struct {
	burst int
	score float64       // normalised cross-correlation at the best match
	delay time.Duration // mouth to ear
}

// Listen finds each burst of m's signal in e, looking from when it was sent
// to within (the longest delay believed).
func Listen(m *Mouth, e *Ear, within time.Duration) []Heard {
	pcm, at := e.snapshot()
	var out []Heard
	for k, start := range m.b.Starts {
		sent := m.sentAt(start)
		first, _ := slices.BinarySearchFunc(at, sent, func(a, b time.Time) int { return a.Compare(b) })
		lo := first * frameSamples
		hi := lo + int(within.Seconds()*AudioRate)
		pos, score := m.b.Find(pcm, k, lo, hi)
		h := Heard{burst: k, score: score}
		if pos >= 0 {
			h.delay = at[pos/frameSamples].Add(samplesDur(pos % frameSamples)).Sub(sent)
		}
		out = append(out, h)
	}
	return out
}

// RequireHeard fails unless every burst was found with at least minScore,
// and returns the delays' median and largest for the report.
func RequireHeard(t testing.TB, what string, hs []Heard, minScore float64) (p50, worst time.Duration) {
	t.Helper()
	var ds []time.Duration
	var scores []string
	for _, h := range hs {
		scores = append(scores, fmt.Sprintf("%.2f", h.score))
		if h.score < minScore {
			t.Errorf("%s: burst %d not heard (best match %.2f, want >= %.2f)", what, h.burst, h.score, minScore)
			continue
		}
		ds = append(ds, h.delay)
	}
	if len(ds) == 0 {
		return 0, 0
	}
	slices.Sort(ds)
	p50, worst = ds[len(ds)/2], ds[len(ds)-1]
	t.Logf("%s: %d/%d bursts heard, scores %v, mouth-to-ear p50 %s, max %s", what, len(ds), len(hs), scores, p50.Round(time.Millisecond), worst.Round(time.Millisecond))
	return p50, worst
}

// SilentRun returns the longest run of silent 20 ms frames in e after
// from, as a duration: how long the audio stopped.
func SilentRun(e *Ear, from time.Time) time.Duration {
	pcm, at := e.snapshot()
	var run, longest int
	for i, t := range at {
		if t.Before(from) {
			continue
		}
		var sum float64
		for _, v := range pcm[i*frameSamples : (i+1)*frameSamples] {
			sum += float64(v) * float64(v)
		}
		if math.Sqrt(sum/frameSamples) < 300 { // far below the 12000-amplitude tone
			run++
			longest = max(longest, run)
		} else {
			run = 0
		}
	}
	return time.Duration(longest) * 20 * time.Millisecond
}

// LoudSince reports the share of frames after from that carry sound.
func LoudSince(e *Ear, from time.Time) float64 {
	pcm, at := e.snapshot()
	var n, loud int
	for i, t := range at {
		if t.Before(from) {
			continue
		}
		n++
		var sum float64
		for _, v := range pcm[i*frameSamples : (i+1)*frameSamples] {
			sum += float64(v) * float64(v)
		}
		if math.Sqrt(sum/frameSamples) >= 300 {
			loud++
		}
	}
	if n == 0 {
		return 0
	}
	return float64(loud) / float64(n)
}

// PlayAll starts the mouths and waits until each has played its signal,
// then lets the last burst arrive.
func PlayAll(t testing.TB, ms ...*Mouth) {
	t.Helper()
	for _, m := range ms {
		m.Start()
	}
	Eventually(t, 60*time.Second, "every signal played", func() bool {
		for _, m := range ms {
			if !m.Done() {
				return false
			}
		}
		return true
	})
	time.Sleep(time.Second) // the last burst's way to the ear
}

// StandardBursts is the signal of most call tests: n bursts of 200 ms,
// 600 ms apart (more than any delay looked for, so bursts never overlap
// the search of another), after a primer tone (Bursts.Primed).
func StandardBursts(n int) Bursts {
	return MakeBursts(n, 100*time.Millisecond, 200*time.Millisecond, 600*time.Millisecond).Primed(300 * time.Millisecond)
}

// ToneMouth is a mouth saying a continuous tone once started.
func ToneMouth(hz float64) *Mouth { return &Mouth{tone: hz} }
