package audiodev

import (
	"io"
	"sync"
	"time"

	"github.com/parleychat/parley/clients/parley/voice"
)

// ring is a fixed-size FIFO of samples. Writing more than it holds drops
// the oldest: for live audio, late is worse than lost. Not safe for
// concurrent use.
type ring struct {
	buf  []int16
	head int // index of the oldest sample
	n    int // samples held
}

func newRing(size int) *ring { return &ring{buf: make([]int16, size)} }

// len is how many samples it holds.
func (r *ring) len() int { return r.n }

// write appends p, dropping the oldest samples if it overflows; it
// returns how many were dropped.
func (r *ring) write(p []int16) (dropped int) {
	if len(p) >= len(r.buf) {
		dropped = r.n + len(p) - len(r.buf)
		copy(r.buf, p[len(p)-len(r.buf):])
		r.head, r.n = 0, len(r.buf)
		return dropped
	}
	if over := r.n + len(p) - len(r.buf); over > 0 {
		r.discard(over)
		dropped = over
	}
	tail := (r.head + r.n) % len(r.buf)
	k := copy(r.buf[tail:], p)
	copy(r.buf, p[k:])
	r.n += len(p)
	return dropped
}

// read moves up to len(p) of the oldest samples into p and returns how
// many.
func (r *ring) read(p []int16) int {
	k := min(len(p), r.n)
	first := min(k, len(r.buf)-r.head)
	copy(p, r.buf[r.head:r.head+first])
	copy(p[first:k], r.buf)
	r.discard(k)
	return k
}

// discard drops the oldest k samples (k <= len).
func (r *ring) discard(k int) {
	r.head = (r.head + k) % len(r.buf)
	r.n -= k
	if r.n == 0 {
		r.head = 0
	}
}

// Buffering between a device's callbacks and the call's 20 ms frames.
const (
	bufferFrames = 10 // the ring holds 200 ms
	// A capture buffer holding more than maxLagFrames (the device's clock
	// runs faster than the call's) drops the oldest down to keepFrames, so
	// what is said never lags far behind.
	maxLagFrames = 4
	keepFrames   = 2
	// frameWait is how long ReadFrame waits for the device to deliver the
	// rest of a frame before padding it with silence.
	frameWait = 10 * time.Millisecond
)

// captureBuffer takes a capture device's callbacks in and hands out
// frames (voice.PCMSource).
type captureBuffer struct {
	mu     sync.Mutex // guards r and closed
	r      *ring
	closed bool
	more   chan struct{} // a token when samples arrive
}

func newCaptureBuffer() *captureBuffer {
	return &captureBuffer{r: newRing(bufferFrames * voice.FrameSamples), more: make(chan struct{}, 1)}
}

// push takes a callback's samples (from the device's thread).
func (b *captureBuffer) push(p []int16) {
	b.mu.Lock()
	b.r.write(p)
	b.mu.Unlock()
	select {
	case b.more <- struct{}{}:
	default:
	}
}

// ReadFrame implements voice.PCMSource: the next 20 ms, waiting up to
// frameWait for the device, padded with silence if it is late. After
// close: io.EOF (the call sends nothing more).
func (b *captureBuffer) ReadFrame(pcm []int16) error {
	if len(pcm) != voice.FrameSamples {
		return voice.ErrFrameSize
	}
	deadline := time.Now().Add(frameWait)
	var timer *time.Timer
	for {
		b.mu.Lock()
		if b.closed {
			b.mu.Unlock()
			clear(pcm)
			return io.EOF
		}
		if n := b.r.len(); n > maxLagFrames*voice.FrameSamples {
			b.r.discard(n - keepFrames*voice.FrameSamples)
		}
		left := time.Until(deadline)
		if b.r.len() >= len(pcm) || left <= 0 {
			k := b.r.read(pcm)
			b.mu.Unlock()
			clear(pcm[k:])
			if timer != nil {
				timer.Stop()
			}
			return nil
		}
		b.mu.Unlock()
		if timer == nil {
			timer = time.NewTimer(left)
		}
		select {
		case <-b.more:
		case <-timer.C:
		}
	}
}

func (b *captureBuffer) close() {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
}

// playbackBuffer takes the call's frames (voice.PCMSink) and feeds a
// playback device's callbacks.
type playbackBuffer struct {
	mu     sync.Mutex // guards r and closed
	r      *ring
	closed bool
}

func newPlaybackBuffer() *playbackBuffer {
	return &playbackBuffer{r: newRing(bufferFrames * voice.FrameSamples)}
}

// WriteFrame implements voice.PCMSink. If the device plays slower than
// the call writes, the oldest is dropped down to keepFrames of delay.
func (b *playbackBuffer) WriteFrame(pcm []int16) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil // nobody listens anymore
	}
	if n := b.r.len(); n > maxLagFrames*voice.FrameSamples {
		b.r.discard(n - keepFrames*voice.FrameSamples)
	}
	b.r.write(pcm)
	return nil
}

// pull fills a callback's buffer (on the device's thread), with silence
// for what the call has not written yet.
func (b *playbackBuffer) pull(p []int16) {
	b.mu.Lock()
	k := b.r.read(p)
	b.mu.Unlock()
	clear(p[k:])
}

func (b *playbackBuffer) close() {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
}
