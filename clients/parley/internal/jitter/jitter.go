// Package jitter is the SDK's adaptive jitter buffer for voice (issue 11):
// it takes audio packets as they arrive — late, early, reordered,
// duplicated or lost — and hands the player one 20 ms frame each time the
// sound card asks, saying for each whether to decode a packet, recover a
// lost one from the next packet's in-band FEC, or conceal.
//
// The delay it holds follows the network. Each packet's relative delay is
// its arrival time less its media time (RTP-style timestamp) less the
// smallest such value of the last two seconds; the target playout delay is
// the 95th percentile of those over the window plus a frame of headroom,
// between Config.Min and Config.Max, starting at Config.Initial until
// enough packets were seen. The player's actual delay is moved toward the
// target a frame at a time: a frame is skipped when the buffer holds a
// frame more than the target, and a concealed
// frame is inserted when it holds a frame less (WebRTC's NetEQ does the
// same with time stretching; Opus' concealment is our stretcher).
//
// Loss and jitter are reported as RTCP receivers do (RFC 3550 §6.4.1,
// A.3, A.8): loss from sequence numbers, so DTX pauses (which skip
// timestamps, not sequence numbers) are not counted as loss.
//
// A Buffer is not safe for concurrent use: its owner serialises Push and
// Pop (the SDK does, under one mutex).
package jitter

import (
	"slices"
	"time"
)

// Config sets a Buffer up. Zero fields take the defaults.
type Config struct {
	Rate         int           // samples per second of the timestamps; 48000
	FrameSamples int           // samples per frame; 960 (20 ms at 48 kHz)
	Initial      time.Duration // target before the network is measured; 60 ms
	Min, Max     time.Duration // bounds of the target; 20 ms and 500 ms
	Window       int           // packets the delay statistics cover; 100 (2 s)
}

func (c *Config) defaults() {
	if c.Rate <= 0 {
		c.Rate = 48000
	}
	if c.FrameSamples <= 0 {
		c.FrameSamples = c.Rate / 50
	}
	if c.Initial <= 0 {
		c.Initial = 60 * time.Millisecond
	}
	if c.Min <= 0 {
		c.Min = 20 * time.Millisecond
	}
	if c.Max <= 0 {
		c.Max = 500 * time.Millisecond
	}
	if c.Window <= 0 {
		c.Window = 100
	}
}

// Packet is one audio packet as it arrived.
type Packet struct {
	Seq     uint32    // sequence number, +1 per packet sent
	TS      uint32    // media timestamp in samples, +FrameSamples per frame
	Payload []byte    // the codec's bytes (an Opus packet); kept, not copied
	Arrival time.Time // when it was received
}

const (
	// overPops is how many frame periods the delay must stay a frame
	// above the target before a frame that is here is skipped.
	overPops = 5
	// concealFrames is how many frames past the newest packet are
	// concealed before the buffer gives silence instead: beyond 100 ms
	// concealment only smears the last sound.
	concealFrames = 5
)

// Kind says what the player does for a frame.
type Kind int

const (
	// Silence: nothing to play yet (before the first packet, or while
	// the buffer fills); the player outputs silence.
	Silence Kind = iota
	// Play: decode Frame.Payload.
	Play
	// FEC: this frame's packet is missing and the next one is here:
	// decode Frame.Payload (the next packet) with in-band FEC on, which
	// recovers this frame from the redundancy Opus put in it.
	FEC
	// Conceal: no packet for this frame; the decoder conceals (Opus PLC,
	// or comfort noise in a DTX pause).
	Conceal
	// Stretch: the buffer is below its target; the player conceals one
	// extra frame while the buffer fills, and the same frame comes next.
	Stretch
)

func (k Kind) String() string {
	switch k {
	case Silence:
		return "silence"
	case Play:
		return "play"
	case FEC:
		return "fec"
	case Conceal:
		return "conceal"
	case Stretch:
		return "stretch"
	}
	return "unknown"
}

// Frame is what to play for one frame period.
type Frame struct {
	Kind    Kind
	Payload []byte // for Play and FEC
	TS      uint32 // the frame's media timestamp (not for Silence)
	// Fresh (Play, FEC): the sender paused before this frame (DTX: it did not
	// send the frames of a silence). The decoder should start anew: its
	// state, from before the pause, is not the state the encoder coded
	// this packet against (which went on through the silent frames), and
	// a fresh decoder is the closer match (the encoder's state after
	// silence is near its initial one). Without it, tones after a pause
	// come out mangled for 100-200 ms (measured correlation 0.3-0.7,
	// against 0.86-1.0 with it).
	Fresh bool
}

// Stats are the buffer's counters and its current view of the network.
type Stats struct {
	Received   uint64        // packets pushed and kept
	Duplicates uint64        // packets dropped as seen before
	Late       uint64        // packets that arrived after their frame was played
	Lost       uint64        // packets never received (from sequence numbers)
	Played     uint64        // frames decoded from their packet
	Recovered  uint64        // frames recovered by FEC
	Concealed  uint64        // frames concealed (loss or DTX)
	Stretched  uint64        // frames inserted to grow the delay
	Skipped    uint64        // frame periods skipped to shrink the delay
	Dropped    uint64        // of those, frames whose packet was here (audio lost)
	Resyncs    uint64        // times the stream jumped and playout restarted
	Overflow   uint64        // packets refused because the buffer was full
	Jitter     time.Duration // RFC 3550 interarrival jitter
	Target     time.Duration // the delay the buffer aims at
	Delay      time.Duration // the delay it holds now (playout behind the earliest-possible arrival)
}

// Buffer is an adaptive jitter buffer for one stream.
type Buffer struct {
	cfg   Config
	frame int64 // ns per frame
	step  int64 // samples per frame

	pkts    map[int64]Packet // by extended timestamp
	maxPkts int              // the most it keeps: twice Max and a second of frames

	started  bool  // a packet was seen
	playing  bool  // playout started
	extTS    int64 // extended timestamp of the newest packet
	playTS   int64 // extended timestamp of the next frame to play
	firstSeq int64
	maxSeq   int64 // extended, of the newest sequence number
	lastSeq  uint32

	raw     []int64 // arrival − media time (ns) of the last Window packets, a ring
	rawNext int
	sorted  []int64 // scratch
	target  int64   // ns
	floor   int64   // the smallest transit of the window: the fastest the network delivered lately
	delay   int64
	over    int // consecutive pops with the delay above the target

	playedSeq uint32 // sequence number of the last packet played
	playedTS  int64  // its (extended) timestamp
	anyPlayed bool

	prevTransit int64
	jitter      float64 // ns, RFC 3550 A.8

	st Stats
}

// New returns an empty Buffer.
func New(cfg Config) *Buffer {
	cfg.defaults()
	b := &Buffer{
		cfg:    cfg,
		frame:  int64(time.Second) * int64(cfg.FrameSamples) / int64(cfg.Rate),
		step:   int64(cfg.FrameSamples),
		pkts:   make(map[int64]Packet),
		target: int64(cfg.Initial),
	}
	b.maxPkts = int((2*int64(cfg.Max) + int64(time.Second)) / b.frame)
	return b
}

// mediaNS is an extended timestamp in nanoseconds.
func (b *Buffer) mediaNS(ext int64) int64 { return ext * int64(time.Second) / int64(b.cfg.Rate) }

// extend maps a 32-bit timestamp to the extended one nearest the newest.
func (b *Buffer) extend(ts uint32) int64 { return b.extTS + int64(int32(ts-uint32(b.extTS))) }

// Push takes a packet in. It reports whether the packet was kept: false
// for a duplicate or a packet whose frame was already played.
func (b *Buffer) Push(p Packet) bool {
	if !b.started {
		b.started = true
		b.extTS = int64(p.TS)
		b.firstSeq, b.maxSeq, b.lastSeq = int64(p.Seq), int64(p.Seq), p.Seq
		b.prevTransit = p.Arrival.UnixNano() - b.mediaNS(int64(p.TS))
	}
	ext := b.extend(p.TS)
	// A stream that jumped (a restart of the sender, a long hold) by
	// more than the buffer could ever hold starts over.
	if d := ext - b.extTS; d > 2*b.samples(b.cfg.Max)+int64(b.cfg.Rate) || d < -2*b.samples(b.cfg.Max)-int64(b.cfg.Rate) {
		b.resync(p)
		ext = int64(p.TS)
	}
	seqDelta := int64(int32(p.Seq - b.lastSeq))
	if seqDelta > 0 {
		b.maxSeq += seqDelta
		b.lastSeq = p.Seq
	}
	transit := p.Arrival.UnixNano() - b.mediaNS(ext)
	b.observe(transit)

	if _, dup := b.pkts[ext]; dup {
		b.st.Duplicates++
		return false
	}
	if b.playing && ext < b.playTS {
		b.st.Late++
		return false
	}
	if len(b.pkts) >= b.maxPkts {
		// More than the buffer can ever hold (the sender is far ahead
		// of the player's clock, or sending too fast): refused.
		b.st.Overflow++
		return false
	}
	if ext > b.extTS {
		b.extTS = ext
	}
	b.pkts[ext] = p
	b.st.Received++
	return true
}

func (b *Buffer) samples(d time.Duration) int64 {
	return int64(d) * int64(b.cfg.Rate) / int64(time.Second)
}

// resync forgets the stream and starts again at p.
func (b *Buffer) resync(p Packet) {
	b.st.Resyncs++
	clear(b.pkts)
	b.playing = false
	b.extTS = int64(p.TS)
	b.firstSeq, b.maxSeq, b.lastSeq = int64(p.Seq)-(b.maxSeq-b.firstSeq+1), int64(p.Seq), p.Seq
	b.raw, b.rawNext = b.raw[:0], 0
	b.target = int64(b.cfg.Initial)
	b.prevTransit = p.Arrival.UnixNano() - b.mediaNS(int64(p.TS))
}

// observe records a packet's transit (arrival − media time) and updates
// the jitter and the target delay.
func (b *Buffer) observe(transit int64) {
	d := transit - b.prevTransit
	b.prevTransit = transit
	if d < 0 {
		d = -d
	}
	b.jitter += (float64(d) - b.jitter) / 16

	if len(b.raw) < b.cfg.Window {
		b.raw = append(b.raw, transit)
	} else {
		b.raw[b.rawNext] = transit
		b.rawNext = (b.rawNext + 1) % b.cfg.Window
	}
	if len(b.raw) < 10 {
		b.floor = slices.Min(b.raw)
		return // too few to say; keep Initial
	}
	b.sorted = append(b.sorted[:0], b.raw...)
	slices.Sort(b.sorted)
	b.floor = b.sorted[0]
	p95 := b.sorted[(len(b.sorted)*95)/100] - b.floor
	t := p95 + b.frame
	b.target = min(max(t, int64(b.cfg.Min)), int64(b.cfg.Max))
}

// Pop returns what to play for the frame period starting now. The player
// calls it once per frame (every 20 ms, on the sound card's clock).
func (b *Buffer) Pop(now time.Time) Frame {
	if !b.started || len(b.raw) == 0 {
		return Frame{Kind: Silence}
	}
	base := b.floor
	if !b.playing {
		if len(b.pkts) == 0 {
			return Frame{Kind: Silence}
		}
		first := int64(-1)
		for ts := range b.pkts {
			if first < 0 || ts < first {
				first = ts
			}
		}
		// Start once the earliest packet has waited the target beyond
		// the earliest it could have arrived.
		if now.UnixNano()-b.mediaNS(first)-base < b.target {
			return Frame{Kind: Silence}
		}
		b.playing, b.playTS = true, first
	}
	b.delay = now.UnixNano() - b.mediaNS(b.playTS) - base
	switch {
	case b.delay < b.target-b.frame:
		// Too little held: conceal one frame more and let it fill.
		b.st.Stretched++
		return Frame{Kind: Stretch, TS: uint32(b.playTS)}
	case b.delay > b.target+b.frame:
		// Too much held: skip one frame, at once if its packet is not
		// here anyway, else once the excess has lasted (a passing
		// change of the window should not cost audio).
		b.over++
		if _, here := b.pkts[b.playTS]; !here || b.over >= overPops {
			b.st.Skipped++
			if here {
				b.st.Dropped++
			}
			b.playTS += b.step
			b.delay -= b.frame
			b.over = 0
		}
	default:
		b.over = 0
	}
	if b.playTS > b.extTS+b.step*concealFrames {
		// Past the newest packet by more than concealment should
		// cover: the sender paused (DTX, mute, the end of the call).
		b.playTS += b.step
		return Frame{Kind: Silence}
	}
	f := b.take(b.playTS)
	b.playTS += b.step
	return f
}

// take returns the frame for ts and forgets everything before it.
func (b *Buffer) take(ts int64) Frame {
	b.drop(ts)
	if p, ok := b.pkts[ts]; ok {
		delete(b.pkts, ts)
		b.st.Played++
		fresh := b.afterPause(p.Seq, ts)
		b.playedSeq, b.playedTS, b.anyPlayed = p.Seq, ts, true
		return Frame{Kind: Play, Payload: p.Payload, TS: uint32(ts), Fresh: fresh}
	}
	// The next packet carries this frame's FEC only if a packet was sent
	// between it and the last played: after a DTX pause it follows the
	// last played directly, and its FEC is of that one.
	if p, ok := b.pkts[ts+b.step]; ok && (!b.anyPlayed || p.Seq-1 != b.playedSeq) {
		b.st.Recovered++
		// The frame recovered is the lost packet p.Seq-1's: it may be the
		// first after a pause, and it counts as played.
		fresh := b.afterPause(p.Seq-1, ts)
		b.playedSeq, b.playedTS, b.anyPlayed = p.Seq-1, ts, true
		return Frame{Kind: FEC, Payload: p.Payload, TS: uint32(ts), Fresh: fresh}
	}
	b.st.Concealed++
	return Frame{Kind: Conceal, TS: uint32(ts)}
}

// afterPause reports whether the packet seq at ts follows a pause of the
// sender: more frames passed since the last packet played than packets
// were sent meanwhile (lost ones, probes, keepalives), so the sender did not
// send the frames of a silence (DTX).
func (b *Buffer) afterPause(seq uint32, ts int64) bool {
	return b.anyPlayed && (ts-b.playedTS)/b.step-int64(seq-b.playedSeq) >= 2
}

// drop forgets packets at or before ts (those before it could no longer
// be played).
func (b *Buffer) drop(ts int64) {
	for k := range b.pkts {
		if k < ts {
			delete(b.pkts, k)
		}
	}
}

// Stats returns the counters and the current delays.
func (b *Buffer) Stats() Stats {
	s := b.st
	if b.started {
		expected := b.maxSeq - b.firstSeq + 1
		if lost := expected - int64(s.Received+s.Late); lost > 0 {
			s.Lost = uint64(lost)
		}
	}
	s.Jitter = time.Duration(b.jitter)
	s.Target = time.Duration(b.target)
	s.Delay = time.Duration(b.delay)
	return s
}
