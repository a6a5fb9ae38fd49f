package jitter

import (
	"encoding/binary"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

const step = 960 // 20 ms at 48 kHz

var t0 = time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)

// net describes what the network does to packet i: its one-way delay and
// whether it is lost.
type net struct {
	delay func(i int) time.Duration
	lost  func(i int) bool
	dup   func(i int) bool
}

// sim is one run: n packets sent every 20 ms from t0 with sequence numbers
// from seq0 and timestamps from ts0 (skip[i] extra frames of DTX before
// packet i), through nw, into a Buffer the player pops every 20 ms from
// t0+phase until the last packet's time plus a second.
type sim struct {
	frames []Frame
	pops   []time.Time
	b      *Buffer
}

func run(t *testing.T, cfg Config, n int, seq0, ts0 uint32, nw net, skip map[int]int) *sim {
	t.Helper()
	type arrival struct {
		at time.Time
		p  Packet
	}
	var arr []arrival
	ts, sent := ts0, t0
	for i := range n {
		ts += uint32(skip[i] * step)
		sent = sent.Add(time.Duration(skip[i]) * 20 * time.Millisecond)
		if nw.lost == nil || !nw.lost(i) {
			at := sent.Add(nw.delay(i))
			p := Packet{Seq: seq0 + uint32(i), TS: ts, Payload: binary.BigEndian.AppendUint32(nil, ts)}
			arr = append(arr, arrival{at, p})
			if nw.dup != nil && nw.dup(i) {
				arr = append(arr, arrival{at.Add(time.Millisecond), p})
			}
		}
		ts += step
		sent = sent.Add(20 * time.Millisecond)
	}
	slices.SortStableFunc(arr, func(a, b arrival) int { return a.at.Compare(b.at) })
	s := &sim{b: New(cfg)}
	end := sent.Add(time.Second)
	next := 0
	for pop := t0.Add(7 * time.Millisecond); pop.Before(end); pop = pop.Add(20 * time.Millisecond) {
		for ; next < len(arr) && !arr[next].at.After(pop); next++ {
			p := arr[next].p
			p.Arrival = arr[next].at
			s.b.Push(p)
		}
		s.frames = append(s.frames, s.b.Pop(pop))
		s.pops = append(s.pops, pop)
	}
	return s
}

func constant(d time.Duration) func(int) time.Duration { return func(int) time.Duration { return d } }

// check asserts the frames are sane: every Play or FEC frame carries the
// packet of its timestamp (FEC: the next one), timestamps advance a frame
// at a time except over a skip, and a Stretch repeats the next timestamp.
func (s *sim) check(t *testing.T) {
	t.Helper()
	var last uint32
	var seen bool
	for i, f := range s.frames {
		switch f.Kind {
		case Play:
			if got := binary.BigEndian.Uint32(f.Payload); got != f.TS {
				t.Fatalf("frame %d plays the packet of %d at %d", i, got, f.TS)
			}
		case FEC:
			if got := binary.BigEndian.Uint32(f.Payload); got != f.TS+step {
				t.Fatalf("frame %d recovers %d from the packet of %d", i, f.TS, got)
			}
		}
		if f.Kind == Silence || f.Kind == Stretch {
			continue
		}
		if seen && int32(f.TS-last) <= 0 {
			t.Fatalf("frame %d at %d after %d", i, f.TS, last)
		}
		last, seen = f.TS, true
	}
}

func (s *sim) count(k Kind, from int) int {
	n := 0
	for _, f := range s.frames[from:] {
		if f.Kind == k {
			n++
		}
	}
	return n
}

// TestSteadyNetwork: a network without jitter is played whole, with the
// smallest delay the buffer allows (a frame), after the initial target.
func TestSteadyNetwork(t *testing.T) {
	s := run(t, Config{}, 500, 100, 5000, net{delay: constant(15 * time.Millisecond)}, nil)
	s.check(t)
	st := s.b.Stats()
	t.Logf("%+v", st)
	// Frames skipped to bring the delay down count as Dropped; the
	// stream's end is concealed for concealFrames, then silent.
	if st.Played+st.Dropped != 500 || st.Lost != 0 || st.Late != 0 || st.Concealed != concealFrames || st.Recovered != 0 {
		t.Fatalf("steady network: %+v", st)
	}
	if st.Target != 20*time.Millisecond {
		t.Errorf("target %v with no jitter, want the 20 ms minimum", st.Target)
	}
	// It started at 60 ms and came down by skipping frames.
	if st.Dropped == 0 || st.Delay > 40*time.Millisecond {
		t.Errorf("delay %v (dropped %d) after starting at 60 ms; want it down near the target", st.Delay, st.Dropped)
	}
}

// TestJitterRaisesTarget: 30 ms of random jitter raises the target to
// cover it, and once it has, almost nothing arrives too late; when the
// network calms down the delay comes back down.
func TestJitterRaisesTarget(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	jit := make([]time.Duration, 1500)
	for i := range jit {
		jit[i] = 10 * time.Millisecond
		if i >= 200 && i < 1000 {
			jit[i] += time.Duration(r.Int64N(int64(60 * time.Millisecond)))
		}
	}
	s := run(t, Config{}, 1500, 7, 0, net{delay: func(i int) time.Duration {
		return jit[i]
	}}, nil)
	s.check(t)
	st := s.b.Stats()
	t.Logf("%+v", st)
	if st.Stretched == 0 {
		t.Errorf("the delay never grew when jitter began: %+v", st)
	}
	if st.Late > 30 { // 2 % of 1,500
		t.Errorf("%d packets late with 60 ms of jitter: %+v", st.Late, st)
	}
	if st.Played+st.Late+st.Dropped < 1500 {
		t.Errorf("played %d of 1500: %+v", st.Played, st)
	}
	if st.Target > 30*time.Millisecond || st.Delay > 45*time.Millisecond {
		t.Errorf("after the network calmed: target %v, delay %v; want back near 20 ms", st.Target, st.Delay)
	}
	if st.Jitter > 5*time.Millisecond {
		t.Errorf("jitter %v at the end of a calm second", st.Jitter)
	}
}

// TestJitterTarget: while the network jitters by up to 30 ms the target
// holds 30–60 ms, and the jitter reported is of that order.
func TestJitterTarget(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	s := run(t, Config{}, 500, 0, 0, net{delay: func(int) time.Duration {
		return 5*time.Millisecond + time.Duration(r.Int64N(int64(30*time.Millisecond)))
	}}, nil)
	s.check(t)
	st := s.b.Stats()
	t.Logf("%+v", st)
	if st.Target < 40*time.Millisecond || st.Target > 60*time.Millisecond {
		t.Errorf("target %v under 30 ms of uniform jitter, want 40-60 ms (95th percentile + a frame)", st.Target)
	}
	if st.Jitter < 5*time.Millisecond || st.Jitter > 15*time.Millisecond {
		t.Errorf("RFC 3550 jitter %v for uniform 0-30 ms delays, want about 10 ms", st.Jitter)
	}
	if st.Late > 10 {
		t.Errorf("%d of 500 late: %+v", st.Late, st)
	}
}

// TestLossRecoveredOrConcealed: 5 % random loss is counted from sequence
// numbers; a lost frame whose next packet is here is recovered with FEC,
// others are concealed; every frame period gets something.
func TestLossRecoveredOrConcealed(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	lost := make([]bool, 2000)
	nlost := 0
	for i := 1; i < len(lost)-1; i++ {
		if r.Float64() < 0.05 {
			lost[i] = true
			nlost++
		}
	}
	s := run(t, Config{}, 2000, 1, 1, net{delay: constant(20 * time.Millisecond), lost: func(i int) bool { return lost[i] }}, nil)
	s.check(t)
	st := s.b.Stats()
	t.Logf("%+v", st)
	if st.Lost != uint64(nlost) {
		t.Errorf("lost %d, sent %d fewer", st.Lost, nlost)
	}
	wantFEC := 0
	for i := 1; i < len(lost)-1; i++ {
		if lost[i] && !lost[i+1] {
			wantFEC++
		}
	}
	// A frame skipped to shrink the delay may have been the one a lost
	// frame's FEC would have come from.
	if st.Recovered+st.Dropped < uint64(wantFEC) || st.Recovered > uint64(wantFEC) ||
		st.Recovered+st.Concealed+st.Skipped-st.Dropped != uint64(nlost+concealFrames) {
		t.Errorf("recovered %d concealed %d dropped %d; want %d recovered of %d lost (+%d concealed at the end): %+v",
			st.Recovered, st.Concealed, st.Dropped, wantFEC, nlost, concealFrames, st)
	}
	if st.Played+st.Dropped != uint64(2000-nlost) {
		t.Errorf("played %d (+%d skipped), want %d", st.Played, st.Dropped, 2000-nlost)
	}
}

// TestReorderAndDuplicates: packets swapped in pairs are all played in
// order; duplicates are dropped and counted.
func TestReorderAndDuplicates(t *testing.T) {
	delay := func(i int) time.Duration {
		if i%2 == 0 {
			return 45 * time.Millisecond // overtaken by the next one
		}
		return 10 * time.Millisecond
	}
	s := run(t, Config{}, 400, 0, 0, net{delay: delay, dup: func(i int) bool { return i%10 == 3 }}, nil)
	s.check(t)
	st := s.b.Stats()
	t.Logf("%+v", st)
	if st.Played+st.Dropped != 400 || st.Late != 0 || st.Lost != 0 || st.Duplicates != 40 || st.Recovered != 0 {
		t.Fatalf("reordered pairs with duplicates: %+v", st)
	}
}

// TestWrapAndPause: timestamps and sequence numbers wrapping at 2^32, and
// a second of DTX (timestamps jump, sequence numbers do not): nothing
// counted lost, the pause concealed.
func TestWrapAndPause(t *testing.T) {
	s := run(t, Config{}, 300, 1<<32-100, 1<<32-50*step, net{delay: constant(10 * time.Millisecond)}, map[int]int{150: 50})
	s.check(t)
	st := s.b.Stats()
	t.Logf("%+v", st)
	if st.Played+st.Dropped != 300 || st.Lost != 0 || st.Late != 0 || st.Resyncs != 0 || st.Recovered != 0 {
		t.Fatalf("across the wrap and a pause: %+v", st)
	}
	// The pause and the end: concealed a while, then silence (and the
	// frame just before speech resumes, already due when its successor
	// arrives, is concealed too).
	if st.Concealed < 2*concealFrames || st.Concealed > 2*concealFrames+1 {
		t.Errorf("concealed %d frames over a 50-frame pause and the end, want %d", st.Concealed, 2*concealFrames)
	}
	silent := 0
	for _, f := range s.frames[100:] {
		if f.Kind == Silence {
			silent++
		}
	}
	if silent < 40 {
		t.Errorf("%d silent frames in a second-long pause", silent)
	}
}

// TestSenderRestart: a stream whose timestamps jump by hours (the sender
// restarted its clock) starts over rather than waiting for it.
func TestSenderRestart(t *testing.T) {
	b := New(Config{})
	at := t0
	var played []uint32
	feed := func(seq, ts uint32, n int) {
		for i := range n {
			b.Push(Packet{Seq: seq + uint32(i), TS: ts + uint32(i*step), Payload: []byte{1}, Arrival: at.Add(10 * time.Millisecond)})
			if f := b.Pop(at); f.Kind == Play {
				played = append(played, f.TS)
			}
			at = at.Add(20 * time.Millisecond)
		}
	}
	feed(10, 1000, 100)
	feed(110, 1000+3600*48000, 100)
	st := b.Stats()
	if st.Resyncs != 1 || st.Lost != 0 {
		t.Fatalf("after the jump: %+v", st)
	}
	if last := played[len(played)-1]; last < 1000+3600*48000 {
		t.Fatalf("the new stream is not played: last frame %d", last)
	}
}

// TestSilenceBeforeStart: before any packet, and while the first wait for
// the target, the player gets silence.
func TestSilenceBeforeStart(t *testing.T) {
	b := New(Config{})
	if f := b.Pop(t0); f.Kind != Silence {
		t.Fatalf("empty buffer: %v", f.Kind)
	}
	b.Push(Packet{Seq: 1, TS: 0, Payload: []byte{1}, Arrival: t0})
	if f := b.Pop(t0.Add(10 * time.Millisecond)); f.Kind != Silence {
		t.Fatalf("10 ms after the first packet, the target 60 ms: %v", f.Kind)
	}
	if f := b.Pop(t0.Add(60 * time.Millisecond)); f.Kind != Play {
		t.Fatalf("at the target: %v", f.Kind)
	}
	if b.Push(Packet{Seq: 0, TS: 1<<32 - step, Payload: []byte{1}, Arrival: t0.Add(61 * time.Millisecond)}) {
		t.Fatal("a packet before the one played was kept")
	}
}

func BenchmarkPushPop(b *testing.B) {
	buf := New(Config{})
	at := t0
	payload := make([]byte, 80)
	b.ReportAllocs()
	for i := range b.N {
		buf.Push(Packet{Seq: uint32(i), TS: uint32(i * step), Payload: payload, Arrival: at.Add(time.Duration(i%3) * time.Millisecond)})
		buf.Pop(at)
		at = at.Add(20 * time.Millisecond)
	}
}

// FuzzBuffer: any sequence of packets (any sequence numbers, timestamps
// and arrival times, as a misbehaving peer may send) and pops: no panic,
// a bounded buffer, and every frame played is one of the packets pushed.
func FuzzBuffer(f *testing.F) {
	f.Add([]byte{0, 0, 0, 1, 0, 0, 3, 192, 5, 1, 0, 0, 0, 2, 0, 0, 7, 128, 5, 1})
	f.Add([]byte{255, 255, 255, 255, 255, 255, 255, 255, 255, 0})
	f.Fuzz(func(t *testing.T, in []byte) {
		b := New(Config{})
		at := t0
		pushed := map[uint32]bool{}
		for len(in) >= 10 {
			seq, ts := binary.BigEndian.Uint32(in), binary.BigEndian.Uint32(in[4:])
			at = at.Add(time.Duration(in[8]) * time.Millisecond)
			b.Push(Packet{Seq: seq, TS: ts, Payload: binary.BigEndian.AppendUint32(nil, ts), Arrival: at})
			pushed[ts] = true
			for range in[9] % 4 {
				f := b.Pop(at)
				if f.Kind == Play && (binary.BigEndian.Uint32(f.Payload) != f.TS || !pushed[f.TS]) {
					t.Fatalf("played %v, not a packet pushed for its timestamp", f)
				}
			}
			if len(b.pkts) > b.maxPkts {
				t.Fatalf("%d packets held, at most %d", len(b.pkts), b.maxPkts)
			}
			in = in[10:]
		}
		_ = b.Stats()
	})
}

// TestFreshAfterPause: the first frame after a sender's pause (DTX) is
// marked Fresh, so the player starts its decoder anew, whether its packet
// arrived (Play) or was lost and recovered from the next one (FEC); frames
// after a mere loss, or with a probe's sequence number in between, are
// not.
func TestFreshAfterPause(t *testing.T) {
	cases := []struct {
		name string
		lost func(i int) bool
		skip map[int]int
		want map[int]Kind // packet index -> kind of its Fresh frame
	}{
		{"pause", nil, map[int]int{50: 30}, map[int]Kind{50: Play}},
		{"pause, first packet lost", func(i int) bool { return i == 50 }, map[int]int{50: 30}, map[int]Kind{50: FEC}},
		{"loss, no pause", func(i int) bool { return i == 50 || i == 51 }, nil, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := run(t, Config{}, 100, 7, 0, net{delay: constant(10 * time.Millisecond), lost: c.lost}, c.skip)
			got := map[int]Kind{}
			for _, f := range s.frames {
				if f.Fresh {
					// Packet i's timestamp: i frames plus the skipped ones before it.
					i := int(f.TS) / step
					for at, n := range c.skip {
						if i >= at+n {
							i -= n
						}
					}
					got[i] = f.Kind
				}
			}
			if !maps.Equal(got, c.want) {
				t.Errorf("fresh frames %v, want %v", got, c.want)
			}
		})
	}
	// A probe between two packets (a sequence number the player never
	// sees) is not a pause.
	b := New(Config{})
	b.Push(Packet{Seq: 1, TS: 0, Payload: []byte{1}, Arrival: t0})
	b.Push(Packet{Seq: 3, TS: step, Payload: []byte{2}, Arrival: t0.Add(20 * time.Millisecond)})
	for i := range 10 {
		if f := b.Pop(t0.Add(time.Duration(60+20*i) * time.Millisecond)); f.Fresh {
			t.Errorf("pop %d: %v marked fresh after a probe's gap", i, f.Kind)
		}
	}
}
