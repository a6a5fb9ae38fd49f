package main

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/parleychat/parley/bench/internal/child"
	"github.com/parleychat/parley/clients/parley"
	"github.com/parleychat/parley/clients/parley/voice"
	"github.com/parleychat/parley/libs/testenv"
)

// Mouth-to-ear through the real SDK path: a mouth plays a known signal
// (chirp bursts, testenv.Bursts) into a CallSession, which encodes it with
// Opus and sends it over UDP; the other side's session puts it through
// its jitter buffer and decoder and plays it into an ear that remembers
// when each frame came out. Cross-correlation finds each burst in what was
// heard and tells its delay: encoding, the network, the gateway and relay,
// the jitter buffer, decoding. Sound card buffers are not part of it.

const frameSamples = voice.FrameSamples

// mouth is a voice.PCMSource of bursts, gated by start.
type mouth struct {
	b     testenv.Bursts
	mu    sync.Mutex // guards on, reads
	on    bool
	reads []time.Time // reads[i]: when frame i of b.PCM was read (sent)
}

// ReadFrame implements voice.PCMSource.
func (m *mouth) ReadFrame(pcm []int16) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	clear(pcm)
	off := len(m.reads) * frameSamples
	if !m.on || off >= len(m.b.PCM) {
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

func (m *mouth) done() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.reads)*frameSamples >= len(m.b.PCM)
}

func (m *mouth) sentAt(i int) time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.reads[i/frameSamples].Add(samplesDur(i % frameSamples))
}

func samplesDur(n int) time.Duration { return time.Duration(n) * time.Second / testenv.AudioRate }

// ear is a voice.PCMSink that remembers when each frame was played.
type ear struct {
	mu  sync.Mutex // guards pcm, at
	pcm []int16
	at  []time.Time
}

// WriteFrame implements voice.PCMSink.
func (e *ear) WriteFrame(pcm []int16) error {
	e.mu.Lock()
	e.pcm = append(e.pcm, pcm...)
	e.at = append(e.at, time.Now())
	e.mu.Unlock()
	return nil
}

// delays finds each burst of m's signal in e (within 1 s of when it was
// said) and returns the delays of those matching at minScore or better,
// and every burst's best score.
func delays(m *mouth, e *ear, minScore float64) ([]time.Duration, []float64) {
	e.mu.Lock()
	pcm, at := slices.Clone(e.pcm), slices.Clone(e.at)
	e.mu.Unlock()
	var out []time.Duration
	var scores []float64
	for k, start := range m.b.Starts {
		sent := m.sentAt(start)
		first, _ := slices.BinarySearchFunc(at, sent, func(a, b time.Time) int { return a.Compare(b) })
		lo := first * frameSamples
		hi := lo + testenv.AudioRate
		pos, score := m.b.Find(pcm, k, lo, hi)
		scores = append(scores, score)
		if pos >= 0 && score >= minScore {
			out = append(out, at[pos/frameSamples].Add(samplesDur(pos%frameSamples)).Sub(sent))
		}
	}
	return out, scores
}

// m2eResult is mouth-to-ear over a few calls, both directions.
type m2eResult struct {
	calls, heard, bursts int
	scores               []float64 // every burst's best correlation
	p50, p90, max        time.Duration
	err                  error
}

// runMouthToEar places o.m2eCalls calls between SDK clients (caller on
// the first gateway, callee on the last), both sides saying o.m2eBursts
// bursts at once, and measures mouth-to-ear.
func runMouthToEar(ctx context.Context, c *cluster, o options, logf logFunc) (res m2eResult) {
	res.calls = o.m2eCalls
	sig := testenv.MakeBursts(o.m2eBursts, 100*time.Millisecond, 200*time.Millisecond, 600*time.Millisecond).Primed(300 * time.Millisecond)
	type side struct {
		cl   *parley.Client
		name string
		m    *mouth
		e    *ear
		s    *parley.CallSession
	}
	sides := make([]*side, 2*o.m2eCalls)
	defer func() {
		for _, s := range sides {
			if s != nil {
				if s.s != nil {
					hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
					_ = s.s.Hangup(hctx)
					cancel()
				}
				s.cl.Close()
			}
		}
	}()
	for i := range sides {
		addr := c.gateways[0].tcp
		if i%2 == 1 {
			addr = c.gateways[len(c.gateways)-1].tcp
		}
		cl, err := parley.Dial(ctx, addr, parley.WithPresenceFeed(false), parley.WithDevice("callbench"))
		if err != nil {
			res.err = err
			return res
		}
		name := fmt.Sprintf("ear%03d", i)
		sides[i] = &side{cl: cl, name: name, m: &mouth{b: sig}, e: &ear{}}
		if _, err := cl.Register(ctx, name, benchPassword); err != nil {
			res.err = err
			return res
		}
	}
	for i := 0; i < len(sides); i += 2 {
		a, b := sides[i], sides[i+1]
		var err error
		if a.s, err = a.cl.PlaceCallTo(ctx, b.name, parley.CallOptions{Input: a.m, Output: a.e}); err != nil {
			res.err = fmt.Errorf("place: %w", err)
			return res
		}
		if b.s, err = b.cl.JoinCall(ctx, a.s.ID(), parley.CallOptions{Input: b.m, Output: b.e}); err != nil {
			res.err = fmt.Errorf("join: %w", err)
			return res
		}
		wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		err = a.s.WaitActive(wctx)
		cancel()
		if err != nil {
			res.err = fmt.Errorf("wait active: %w", err)
			return res
		}
	}
	// Wait until every session sends over UDP (the probes answered).
	deadline := time.Now().Add(15 * time.Second)
	for _, s := range sides {
		for s.s.Stats().Transport != parley.TransportUDP {
			if time.Now().After(deadline) {
				res.err = fmt.Errorf("%s's media not on UDP: %s", s.name, s.s.Stats().Transport)
				return res
			}
			if err := child.Sleep(ctx, 50*time.Millisecond); err != nil {
				res.err = err
				return res
			}
		}
	}
	logf("mouth-to-ear: %d calls on UDP; playing %d bursts each way", o.m2eCalls, o.m2eBursts)
	for _, s := range sides {
		s.m.start()
	}
	for _, s := range sides {
		for !s.m.done() {
			if err := child.Sleep(ctx, 50*time.Millisecond); err != nil {
				res.err = err
				return res
			}
		}
	}
	_ = child.Sleep(ctx, time.Second) // the last burst's way to the ear
	var all []time.Duration
	for i, s := range sides {
		ds, scores := delays(s.m, sides[i^1].e, 0.6)
		all = append(all, ds...)
		res.bursts += len(scores)
		res.scores = append(res.scores, scores...)
	}
	res.heard = len(all)
	if len(all) > 0 {
		slices.Sort(all)
		res.p50 = all[len(all)/2]
		res.p90 = all[len(all)*9/10]
		res.max = all[len(all)-1]
	}
	return res
}
