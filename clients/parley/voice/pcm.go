package voice

import (
	"io"
	"math"
	"sync"
)

// PCMSource is where a call's outgoing audio comes from: a microphone, a
// file, a test signal. The call reads one frame every 20 ms.
type PCMSource interface {
	// ReadFrame fills pcm (FrameSamples samples) with the next 20 ms. It
	// is called at the call's pace and should not block much longer than
	// a frame. io.EOF: the source is over; the call sends silence (no
	// audio packets) from then on. A short last frame is padded with
	// silence by the source.
	ReadFrame(pcm []int16) error
}

// PCMSink is where a call's incoming audio goes: a speaker, a file. The
// call writes one frame of the mixed output every 20 ms, silence included.
type PCMSink interface {
	// WriteFrame takes pcm (FrameSamples samples); it must not keep pcm.
	WriteFrame(pcm []int16) error
}

// SamplesSource plays a slice of samples (e.g. ReadWAV's) as a PCMSource,
// padding the last frame with silence; then io.EOF.
type SamplesSource struct {
	pcm []int16
	off int
}

// NewSamplesSource returns a source of pcm.
func NewSamplesSource(pcm []int16) *SamplesSource { return &SamplesSource{pcm: pcm} }

// ReadFrame implements PCMSource.
func (s *SamplesSource) ReadFrame(pcm []int16) error {
	if len(pcm) != FrameSamples {
		return ErrFrameSize
	}
	if s.off >= len(s.pcm) {
		return io.EOF
	}
	n := copy(pcm, s.pcm[s.off:])
	clear(pcm[n:])
	s.off += n
	return nil
}

// SampleBuffer is a PCMSink that keeps everything written to it. It is
// safe for concurrent use.
type SampleBuffer struct {
	mu  sync.Mutex // guards pcm
	pcm []int16
}

// WriteFrame implements PCMSink.
func (b *SampleBuffer) WriteFrame(pcm []int16) error {
	b.mu.Lock()
	b.pcm = append(b.pcm, pcm...)
	b.mu.Unlock()
	return nil
}

// Samples returns a copy of what was written so far.
func (b *SampleBuffer) Samples() []int16 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]int16(nil), b.pcm...)
}

// Len returns how many samples were written so far.
func (b *SampleBuffer) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.pcm)
}

// Level is a frame's audio level as RFC 6464 (§3) carries it: the RMS
// level in -dBov, 0 (full scale) to 127 (-127 dBov and below, and digital
// silence). Full scale is 32768, so a full-scale square wave is 0 and a
// full-scale sine about 3.
func Level(pcm []int16) uint8 {
	if len(pcm) == 0 {
		return 127
	}
	var sum float64
	for _, s := range pcm {
		v := float64(s)
		sum += v * v
	}
	rms := math.Sqrt(sum/float64(len(pcm))) / 32768
	if rms == 0 {
		return 127
	}
	db := -20 * math.Log10(rms)
	switch {
	case db <= 0:
		return 0
	case db >= 127:
		return 127
	}
	return uint8(math.Round(db))
}

// VoiceLevel is the level (-dBov) at or under which a frame counts as
// voice: -50 dBov is well under speech at a normal distance from a
// microphone (-20 to -35 dBov) and above a quiet room's noise.
const VoiceLevel = 50

// MixAdd adds src into acc (a running mix in 32 bits, so clipping happens
// once, at the end: Clip).
func MixAdd(acc []int32, src []int16) {
	for i, s := range src[:min(len(src), len(acc))] {
		acc[i] += int32(s)
	}
}

// Clip writes acc into dst, saturating at the 16-bit range.
func Clip(dst []int16, acc []int32) {
	for i, v := range acc[:min(len(acc), len(dst))] {
		switch {
		case v > math.MaxInt16:
			dst[i] = math.MaxInt16
		case v < math.MinInt16:
			dst[i] = math.MinInt16
		default:
			dst[i] = int16(v)
		}
	}
}
