package voice

import (
	"time"

	"github.com/parleychat/parley/clients/parley/internal/jitter"
)

// PlayerStats are a Player's counters and its view of the network: loss
// and jitter as RTCP counts them, the target and current buffering delay,
// frames recovered by FEC and concealed.
type PlayerStats = jitter.Stats

// Player turns one incoming stream's packets, as they arrive, into PCM at
// the pace of the sound card: an adaptive jitter buffer (its target
// starts at 60 ms and follows the measured jitter), the decoder, and Opus'
// FEC and concealment for what is missing. Not safe for concurrent use.
type Player struct {
	buf *jitter.Buffer
	dec Decoder
}

// NewPlayer returns a Player decoding with dec.
func NewPlayer(dec Decoder) *Player {
	return &Player{buf: jitter.New(jitter.Config{Rate: SampleRate, FrameSamples: FrameSamples}), dec: dec}
}

// Push takes a packet in as it arrives (seq and ts from its header).
func (p *Player) Push(seq, ts uint32, payload []byte, arrival time.Time) {
	p.buf.Push(jitter.Packet{Seq: seq, TS: ts, Payload: payload, Arrival: arrival})
}

// Frame fills pcm (FrameSamples samples) with the audio due now; the
// player calls it every 20 ms. A packet that fails to decode is concealed
// (and its error returned, for the log).
func (p *Player) Frame(now time.Time, pcm []int16) error {
	if len(pcm) != FrameSamples {
		return ErrFrameSize
	}
	f := p.buf.Pop(now)
	if r, ok := p.dec.(resetter); ok && f.Fresh {
		r.Reset()
	}
	switch f.Kind {
	case jitter.Play:
		return p.dec.Decode(f.Payload, pcm)
	case jitter.FEC:
		return p.dec.DecodeFEC(f.Payload, pcm)
	case jitter.Conceal, jitter.Stretch:
		return p.dec.Conceal(pcm)
	default:
		clear(pcm)
		return nil
	}
}

// resetter is a Decoder that can start anew (OpusDecoder): the player
// resets it when a packet follows a pause of the sender (DTX).
type resetter interface{ Reset() }

// Stats returns the player's counters.
func (p *Player) Stats() PlayerStats { return p.buf.Stats() }
