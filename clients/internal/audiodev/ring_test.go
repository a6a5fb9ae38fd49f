package audiodev

import (
	"errors"
	"io"
	"slices"
	"testing"

	"github.com/parleychat/parley/clients/parley/voice"
)

// seq returns n samples counting from first: a stream whose every sample
// says where it belongs.
func seq(first, n int) []int16 {
	p := make([]int16, n)
	for i := range p {
		p[i] = int16(first + i)
	}
	return p
}

func TestRing(t *testing.T) {
	for _, tt := range []struct {
		name    string
		size    int
		writes  []int // sizes written, counting on from the last
		read    int
		want    []int16
		dropped int
	}{
		{"empty", 8, nil, 4, []int16{}, 0},
		{"fits", 8, []int{3, 2}, 8, seq(0, 5), 0},
		{"partial read", 8, []int{6}, 4, seq(0, 4), 0},
		{"wraps", 8, []int{6, 6}, 8, seq(4, 8), 4},
		{"larger than the ring", 4, []int{2, 9}, 8, seq(7, 4), 7},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := newRing(tt.size)
			next, dropped := 0, 0
			for _, n := range tt.writes {
				dropped += r.write(seq(next, n))
				next += n
			}
			got := make([]int16, tt.read)
			got = got[:r.read(got)]
			if !slices.Equal(got, tt.want) || dropped != tt.dropped {
				t.Errorf("read %v (dropped %d), want %v (dropped %d)", got, dropped, tt.want, tt.dropped)
			}
		})
	}
}

// A device delivering 10 ms callbacks of 441 and 480 samples: the call
// reads the same stream back in 960-sample frames, nothing lost or
// repeated.
func TestCaptureFramesFromCallbacks(t *testing.T) {
	b := newCaptureBuffer()
	next := 0
	for _, n := range []int{441, 480, 441, 480, 441, 480, 441, 480} {
		b.push(seq(next, n))
		next += n
	}
	frame := make([]int16, voice.FrameSamples)
	for i := range 3 {
		if err := b.ReadFrame(frame); err != nil {
			t.Fatal(err)
		}
		if want := seq(i*voice.FrameSamples, voice.FrameSamples); !slices.Equal(frame, want) {
			t.Fatalf("frame %d starts at %d, want %d", i, frame[0], want[0])
		}
	}
	// Less than a frame left: the device is late with the rest, so the
	// frame is padded with silence rather than waiting on.
	left := next - 3*voice.FrameSamples
	if err := b.ReadFrame(frame); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(frame[:left], seq(3*voice.FrameSamples, left)) || slices.ContainsFunc(frame[left:], func(v int16) bool { return v != 0 }) {
		t.Errorf("a late frame is not its samples then silence")
	}
	if err := b.ReadFrame(make([]int16, 10)); !errors.Is(err, voice.ErrFrameSize) {
		t.Errorf("a short frame: %v", err)
	}
	b.close()
	if err := b.ReadFrame(frame); !errors.Is(err, io.EOF) {
		t.Errorf("read after close: %v, want io.EOF", err)
	}
}

// A device running ahead of the call (clock drift) does not make what is
// said lag ever more: the oldest is dropped down to keepFrames.
func TestCaptureLagBounded(t *testing.T) {
	b := newCaptureBuffer()
	b.push(seq(0, 8*voice.FrameSamples))
	frame := make([]int16, voice.FrameSamples)
	if err := b.ReadFrame(frame); err != nil {
		t.Fatal(err)
	}
	if want := int16(6 * voice.FrameSamples); frame[0] != want {
		t.Errorf("frame starts at sample %d, want %d (the newest %d frames kept)", frame[0], want, keepFrames)
	}
}

// The call's frames come out of the playback callbacks as one stream,
// whatever the callbacks' size; an underrun plays silence.
func TestPlaybackCallbacksFromFrames(t *testing.T) {
	b := newPlaybackBuffer()
	for i := range 2 {
		if err := b.WriteFrame(seq(i*voice.FrameSamples, voice.FrameSamples)); err != nil {
			t.Fatal(err)
		}
	}
	var got []int16
	for _, n := range []int{441, 480, 441, 480, 600} {
		p := make([]int16, n)
		b.pull(p)
		got = append(got, p...)
	}
	n := 2 * voice.FrameSamples
	if !slices.Equal(got[:n], seq(0, n)) {
		t.Error("the frames did not come out in order")
	}
	if slices.ContainsFunc(got[n:], func(v int16) bool { return v != 0 }) {
		t.Error("an underrun did not play silence")
	}
	b.close()
	if err := b.WriteFrame(seq(0, voice.FrameSamples)); err != nil {
		t.Errorf("write after close: %v", err)
	}
}

// Playback falling behind the call drops the oldest.
func TestPlaybackLagBounded(t *testing.T) {
	b := newPlaybackBuffer()
	for i := range 8 {
		_ = b.WriteFrame(seq(i*voice.FrameSamples, voice.FrameSamples))
	}
	p := make([]int16, 1)
	b.pull(p)
	if back := 8*voice.FrameSamples - int(p[0]); back > (maxLagFrames+1)*voice.FrameSamples {
		t.Errorf("playback starts %d samples back; the delay is not bounded", back)
	}
}
