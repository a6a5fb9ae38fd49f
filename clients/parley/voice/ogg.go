package voice

import (
	"errors"
	"fmt"
	"io"

	"github.com/thesyncim/gopus/container/ogg"
)

// Recorder writes a stream's packets as an Ogg Opus file (RFC 7845), which
// opusdec, ffmpeg, VLC and browsers play.
type Recorder struct {
	w   *ogg.Writer
	toc byte
}

// NewRecorder starts an Ogg Opus file on w.
func NewRecorder(w io.Writer) (*Recorder, error) {
	ow, err := ogg.NewWriter(w, SampleRate, 1)
	if err != nil {
		return nil, fmt.Errorf("voice: ogg: %w", err)
	}
	return &Recorder{w: ow, toc: 9 << 3}, nil // SILK wideband 20 ms until a packet says
}

// Packet records one 20 ms packet.
func (r *Recorder) Packet(pkt []byte) error {
	if len(pkt) == 0 {
		return errors.New("voice: an empty packet")
	}
	r.toc = pkt[0]
	return r.w.WritePacket(pkt, FrameSamples)
}

// Gap records a frame nothing arrived for: the previous packet's TOC with
// no frame data, which a decoder conceals (RFC 6716 §3.2.1: a zero-length
// frame is a lost or DTX frame), so the recording keeps its timing.
func (r *Recorder) Gap() error {
	return r.w.WritePacket([]byte{r.toc &^ 3}, FrameSamples) // code 0: one frame
}

// Close ends the stream (the last page); it does not close the writer.
func (r *Recorder) Close() error { return r.w.Close() }
