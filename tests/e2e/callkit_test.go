package e2e

import (
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parleychat/parley/clients/parley"
	"github.com/parleychat/parley/clients/parley/voice"
	"github.com/parleychat/parley/libs/testenv"
)

// The audio side of the call tests: a mouth plays a known signal into a
// call (silence until started) and remembers when each frame went in; an
// ear keeps what a call played out and when. Cross-correlating the ear's
// samples with each burst of the mouth's signal finds the burst again and
// tells the delay from the mouth to the ear (mouth-to-ear: encoding, the
// network, relaying, the jitter buffer, decoding).

const frameSamples = voice.FrameSamples

// mouth is a voice.PCMSource of bursts, gated by start.
type mouth struct {
	b  testenv.Bursts
	mu sync.Mutex
	on bool
	// reads[i] is when frame i of b.PCM was read (sent).
	reads []time.Time
	tone  float64 // > 0: a continuous tone of this frequency instead of bursts
	phase float64
}

func newMouth(b testenv.Bursts) *mouth { return &mouth{b: b} }

// ReadFrame implements voice.PCMSource.
func (m *mouth) ReadFrame(pcm []int16) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	clear(pcm)
	if !m.on {
		return nil
	}
	if m.tone > 0 {
		for i := range pcm {
			pcm[i] = int16(12000 * math.Sin(m.phase))
			m.phase += 2 * math.Pi * m.tone / testenv.AudioRate
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

func (m *mouth) start() {
	m.mu.Lock()
	m.on = true
	m.mu.Unlock()
}

// done reports whether the whole signal went in.
func (m *mouth) done() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.tone == 0 && len(m.reads)*frameSamples >= len(m.b.PCM)
}

// sentAt is when sample i of the signal went in.
func (m *mouth) sentAt(i int) time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.reads[i/frameSamples].Add(samplesDur(i % frameSamples))
}

func samplesDur(n int) time.Duration {
	return time.Duration(n) * time.Second / testenv.AudioRate
}

// ear is a voice.PCMSink that remembers when each frame was played.
type ear struct {
	mu  sync.Mutex
	pcm []int16
	at  []time.Time // when frame i was played
}

// WriteFrame implements voice.PCMSink.
func (e *ear) WriteFrame(pcm []int16) error {
	e.mu.Lock()
	e.pcm = append(e.pcm, pcm...)
	e.at = append(e.at, time.Now())
	e.mu.Unlock()
	return nil
}

// snapshot returns the samples and frame times so far.
func (e *ear) snapshot() ([]int16, []time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.pcm), slices.Clone(e.at)
}

// heard is one burst found (or not) at an ear.
type heard struct {
	burst int
	score float64       // normalised cross-correlation at the best match
	delay time.Duration // mouth to ear
}

// listen finds each burst of m's signal in e, looking from when it was sent
// to within (the longest delay believed).
func listen(m *mouth, e *ear, within time.Duration) []heard {
	pcm, at := e.snapshot()
	var out []heard
	for k, start := range m.b.Starts {
		sent := m.sentAt(start)
		first, _ := slices.BinarySearchFunc(at, sent, func(a, b time.Time) int { return a.Compare(b) })
		lo := first * frameSamples
		hi := lo + int(within.Seconds()*testenv.AudioRate)
		pos, score := m.b.Find(pcm, k, lo, hi)
		h := heard{burst: k, score: score}
		if pos >= 0 {
			h.delay = at[pos/frameSamples].Add(samplesDur(pos % frameSamples)).Sub(sent)
		}
		out = append(out, h)
	}
	return out
}

// requireHeard fails unless every burst was found with at least minScore,
// and returns the delays' median and largest for the report.
func requireHeard(t *testing.T, what string, hs []heard, minScore float64) (p50, worst time.Duration) {
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

// silentRun returns the longest run of silent 20 ms frames in e after
// from, as a duration: how long the audio stopped.
func silentRun(e *ear, from time.Time) time.Duration {
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

// loudSince reports the share of frames after from that carry sound.
func loudSince(e *ear, from time.Time) float64 {
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

// ringing waits for c's next ringing call.
func ringing(t *testing.T, c *parley.Client) parley.Call {
	t.Helper()
	ev := waitEvent(t, c, 15*time.Second, "a ringing call", func(ev parley.Event) bool {
		_, ok := ev.(parley.CallRingingEvent)
		return ok
	})
	return ev.(parley.CallRingingEvent).Call
}

// onTransport waits until s carries its media over transport.
func onTransport(t *testing.T, s *parley.CallSession, transport string) {
	t.Helper()
	testenv.Eventually(t, 10*time.Second, "media over "+transport, func() bool { return s.Stats().Transport == transport })
}

// callEnded waits for c's CallEndedEvent of call id and returns it.
func callEnded(t *testing.T, c *parley.Client, id string, within time.Duration) parley.Call {
	t.Helper()
	ev := waitEvent(t, c, within, "the call's end", func(ev parley.Event) bool {
		e, ok := ev.(parley.CallEndedEvent)
		return ok && e.Call.ID == id
	})
	return ev.(parley.CallEndedEvent).Call
}

// playAll starts the mouths and waits until each has played its signal,
// then lets the last burst arrive.
func playAll(t *testing.T, ms ...*mouth) {
	t.Helper()
	for _, m := range ms {
		m.start()
	}
	testenv.Eventually(t, 60*time.Second, "every signal played", func() bool {
		for _, m := range ms {
			if !m.done() {
				return false
			}
		}
		return true
	})
	time.Sleep(time.Second) // the last burst's way to the ear
}

// standardBursts is the signal of most call tests: n bursts of 200 ms,
// 600 ms apart (more than any delay looked for, so bursts never overlap
// the search of another), after a primer tone (testenv.Bursts.Primed).
func standardBursts(n int) testenv.Bursts {
	return testenv.MakeBursts(n, 100*time.Millisecond, 200*time.Millisecond, 600*time.Millisecond).Primed(300 * time.Millisecond)
}

// metric reads the sum of a Prometheus counter or gauge (every series of
// name whose labels contain each of labels, e.g. `reason="auth"`) from an
// admin port's /metrics.
func metric(t *testing.T, admin, name string, labels ...string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		t.Fatalf("metrics of %s: %v", admin, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("metrics of %s: %v", admin, err)
	}
	var sum float64
	for _, line := range strings.Split(string(body), "\n") {
		if !strings.HasPrefix(line, name) || (len(line) > len(name) && line[len(name)] != '{' && line[len(name)] != ' ') {
			continue
		}
		ok := true
		for _, l := range labels {
			ok = ok && strings.Contains(line, l)
		}
		if !ok {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err == nil {
			sum += v
		}
	}
	return sum
}

// toneMouth is a mouth saying a continuous tone once started.
func toneMouth(hz float64) *mouth { return &mouth{tone: hz} }
