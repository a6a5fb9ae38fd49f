// Package voice is the SDK's audio side of calls (issue 11): the codec
// behind small interfaces, 16-bit PCM in and out, WAV files for headless
// use (`parley call --in voice.wav --out heard.wav`) and Ogg Opus
// recordings any player decodes.
//
// Audio is 48 kHz mono, in 20 ms frames of 960 samples. The codec is Opus
// (RFC 6716) through github.com/thesyncim/gopus, a pure-Go implementation:
// binaries stay static (CGO_ENABLED=0), its decoder is bit-exact with
// libopus 1.3.1, and an encode plus a decode of a frame costs about
// 0.3 ms here (libopus through cgo: ~0.2 ms). The encoder is set for
// speech: VoIP application, 24 kbit/s, in-band FEC (each packet carries a
// low-bitrate copy of the one before, so a single lost packet is
// recovered from the next) and DTX (about one packet in 400 ms during
// silence). Another codec fits behind Encoder and Decoder.
//
// DTX is done here, not by the codec: gopus' own DTX (v0.1.1) takes some
// tones (a whistle, a slow sweep) for silence and stops sending in the
// middle of them (a 200 ms sweep after a pause came out with correlation
// 0.37 to what went in). So the encoder always encodes (its state follows
// the signal), and after dtxHangover frames quieter than dtxLevel it
// returns only the packet's first byte, which callers do not send, except
// one frame in dtxUpdate (comfort noise, the decoder's state). The
// receiving Player starts its decoder anew after such a pause (see
// jitter.Frame.Fresh).
package voice

import (
	"errors"
	"fmt"

	"github.com/thesyncim/gopus"
)

const (
	// SampleRate is the rate of all PCM here.
	SampleRate = 48000
	// FrameSamples is one 20 ms frame.
	FrameSamples = SampleRate / 50
	// MaxPacket is the largest encoded frame.
	MaxPacket = 1276
)

// ErrFrameSize: PCM passed to an encoder or decoder is not one frame.
var ErrFrameSize = errors.New("voice: PCM is not one 20 ms frame of 960 samples")

// Encoder turns one frame of PCM into a packet.
type Encoder interface {
	// Encode encodes pcm (FrameSamples samples) into out and returns the
	// packet's length. During silence with DTX the packet may be 1-2
	// bytes, which the sender need not send.
	Encode(pcm []int16, out []byte) (int, error)
}

// Decoder turns packets back into frames of PCM, and fills the frames
// whose packets were lost.
type Decoder interface {
	// Decode decodes a packet into pcm (FrameSamples samples).
	Decode(pkt []byte, pcm []int16) error
	// DecodeFEC recovers the frame before next, whose packet was lost,
	// from the redundancy in next (concealing when next has none).
	DecodeFEC(next []byte, pcm []int16) error
	// Conceal fills a frame nothing arrived for.
	Conceal(pcm []int16) error
}

// Options tune the Opus encoder. Zero fields take the defaults.
type Options struct {
	Bitrate    int // bits per second; 24000
	Complexity int // 0-10; 5
	LossPerc   int // expected packet loss in percent, for FEC; 10
	NoFEC      bool
	NoDTX      bool
	// ConstantBitrate makes every packet the same size. Variable-bitrate
	// packet sizes can tell an observer of the encrypted stream what is
	// said (RFC 6562); at 24 kbit/s, CBR sends 60-byte packets where VBR
	// averages 33. (gopus' constrained VBR is no different from VBR for
	// speech, so it is not offered.) With DTX on, silence still shows.
	ConstantBitrate bool
}

// DTX (see the package comment).
const (
	dtxLevel    = 60 // -dBov: a frame quieter than -60 dBov is silence (speech is -20 to -35)
	dtxHangover = 10 // silent frames still sent after sound (200 ms), the tail of a word
	dtxUpdate   = 20 // during silence one frame in 20 is sent (every 400 ms, as libopus does)
)

// OpusEncoder is the Opus Encoder.
type OpusEncoder struct {
	enc   *gopus.Encoder
	f     [FrameSamples]float32
	dtx   bool
	quiet int // silent frames in a row
}

// NewOpusEncoder returns an Opus encoder for speech.
func NewOpusEncoder(o Options) (*OpusEncoder, error) {
	if o.Bitrate == 0 {
		o.Bitrate = 24000
	}
	if o.Complexity == 0 {
		o.Complexity = 5
	}
	if o.LossPerc == 0 {
		o.LossPerc = 10
	}
	enc, err := gopus.NewEncoder(gopus.EncoderConfig{SampleRate: SampleRate, Channels: 1, Application: gopus.ApplicationVoIP})
	if err != nil {
		return nil, fmt.Errorf("voice: opus encoder: %w", err)
	}
	if err := enc.SetBitrate(o.Bitrate); err != nil {
		return nil, fmt.Errorf("voice: bitrate %d: %w", o.Bitrate, err)
	}
	if err := enc.SetComplexity(o.Complexity); err != nil {
		return nil, fmt.Errorf("voice: complexity %d: %w", o.Complexity, err)
	}
	if err := enc.SetPacketLoss(o.LossPerc); err != nil {
		return nil, fmt.Errorf("voice: packet loss %d %%: %w", o.LossPerc, err)
	}
	if err := enc.SetSignal(gopus.SignalVoice); err != nil {
		return nil, fmt.Errorf("voice: signal: %w", err)
	}
	if o.ConstantBitrate {
		if err := enc.SetBitrateMode(gopus.BitrateModeCBR); err != nil {
			return nil, fmt.Errorf("voice: constant bitrate: %w", err)
		}
	}
	enc.SetFEC(!o.NoFEC)
	enc.SetDTX(false)
	return &OpusEncoder{enc: enc, dtx: !o.NoDTX}, nil
}

// Encode implements Encoder.
func (e *OpusEncoder) Encode(pcm []int16, out []byte) (int, error) {
	if len(pcm) != FrameSamples {
		return 0, ErrFrameSize
	}
	for i, s := range pcm {
		e.f[i] = float32(s) / 32768
	}
	n, err := e.enc.Encode(e.f[:], out)
	if err != nil {
		return 0, fmt.Errorf("voice: encode: %w", err)
	}
	if !e.dtx {
		return n, nil
	}
	if Level(pcm) > dtxLevel {
		e.quiet++
	} else {
		e.quiet = 0
	}
	if q := e.quiet - dtxHangover; q > 0 && q%dtxUpdate != 0 && n > 0 {
		// The TOC byte alone: a packet with no frame data, which a decoder
		// treats as a lost frame (RFC 6716 §3.2.1). Not sent.
		return 1, nil
	}
	return n, nil
}

// OpusDecoder is the Opus Decoder.
type OpusDecoder struct {
	dec *gopus.Decoder
	f   [FrameSamples]float32
}

// NewOpusDecoder returns an Opus decoder for one stream.
func NewOpusDecoder() (*OpusDecoder, error) {
	dec, err := gopus.NewDecoder(gopus.DecoderConfig{SampleRate: SampleRate, Channels: 1})
	if err != nil {
		return nil, fmt.Errorf("voice: opus decoder: %w", err)
	}
	return &OpusDecoder{dec: dec}, nil
}

// Decode implements Decoder. A packet that is not one 20 ms frame, or not
// Opus at all, is an error and pcm is concealment.
func (d *OpusDecoder) Decode(pkt []byte, pcm []int16) error {
	return d.run(pkt, pcm, false)
}

// DecodeFEC implements Decoder.
func (d *OpusDecoder) DecodeFEC(next []byte, pcm []int16) error {
	return d.run(next, pcm, true)
}

// Conceal implements Decoder.
func (d *OpusDecoder) Conceal(pcm []int16) error {
	return d.run(nil, pcm, false)
}

func (d *OpusDecoder) run(pkt []byte, pcm []int16, fec bool) error {
	if len(pcm) != FrameSamples {
		return ErrFrameSize
	}
	n, err := d.dec.DecodeWithFEC(pkt, d.f[:], fec)
	if err == nil && n != FrameSamples {
		err = fmt.Errorf("a packet of %d samples", n)
	}
	if err != nil {
		// The frame is lost; conceal it so the output keeps its pace.
		clear(pcm)
		if _, cerr := d.dec.DecodeWithFEC(nil, d.f[:], false); cerr == nil {
			toInt16(d.f[:], pcm)
		}
		return fmt.Errorf("voice: decode: %w", err)
	}
	toInt16(d.f[:], pcm)
	return nil
}

func toInt16(f []float32, pcm []int16) {
	for i, v := range f {
		v *= 32768
		switch {
		case v > 32767:
			pcm[i] = 32767
		case v < -32768:
			pcm[i] = -32768
		default:
			pcm[i] = int16(v)
		}
	}
}

// Reset forgets the stream so far, as a new decoder would.
func (d *OpusDecoder) Reset() { d.dec.Reset() }
