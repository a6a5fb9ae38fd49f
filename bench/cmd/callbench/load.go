package main

import (
	"context"
	"encoding/binary"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parleychat/parley/protocol/media"
)

// The packet load: every leg (one participant of a call) sends an audio
// packet every 20 ms (50 a second) on its own UDP socket and reads what
// arrives on it. The payload is a stand-in for a 60-byte Opus frame (no
// encoder runs): its first 8 bytes are the send time, so the receiver
// knows each packet's one-way delay (sender and receiver share this
// process's monotonic clock). Through Parley the packet is sealed with the
// leg's key (direction up) and the receiver opens what the gateway
// re-sealed with its own key (direction down); through TURN the packet is
// the same sealed bytes in a ChannelData message, opened by the receiver
// with the sender's key.

const frameInterval = 20 * time.Millisecond

// leg is one side of a call in the load.
type leg struct {
	sock     *net.UDPConn // connected to the gateway's media port, or to the TURN server
	key      *media.Key   // seals what this leg sends
	stream   uint32
	level    uint8
	openKey  *media.Key // opens what it receives
	openDir  media.Direction
	channel  uint16 // TURN: the ChannelData channel to send on; 0: plain packets
	payload  int
	received atomic.Int64 // packets and bytes (UDP payload) received in the window
	bytes    atomic.Int64
	speakers sync.Map // stream ids heard in the window (group calls)
}

// window is the measured interval, in nanoseconds since the recorder's base.
type recorder struct {
	base       time.Time
	t0, t1     int64
	sent, recv atomic.Int64 // packets sent, received in the window
	dupes, bad atomic.Int64
	hist       [histBuckets]atomic.Int64
}

// Latency histogram: 10 µs buckets up to 2 s (the last catches the rest).
const (
	histRes     = 10 * time.Microsecond
	histBuckets = 200000
)

func newRecorder(warmup, measure time.Duration) *recorder {
	r := &recorder{base: time.Now()}
	r.t0 = int64(warmup)
	r.t1 = int64(warmup + measure)
	return r
}

func (r *recorder) now() int64 { return int64(time.Since(r.base)) }

func (r *recorder) inWindow(t int64) bool { return t >= r.t0 && t < r.t1 }

// quantile returns the q-quantile of the latencies recorded.
func (r *recorder) quantile(q float64) time.Duration {
	var total int64
	for i := range r.hist {
		total += r.hist[i].Load()
	}
	if total == 0 {
		return 0
	}
	want := int64(q*float64(total-1)) + 1
	var n int64
	for i := range r.hist {
		if n += r.hist[i].Load(); n >= want {
			return time.Duration(i+1) * histRes
		}
	}
	return histBuckets * histRes
}

func (r *recorder) max() time.Duration {
	for i := histBuckets - 1; i >= 0; i-- {
		if r.hist[i].Load() > 0 {
			return time.Duration(i+1) * histRes
		}
	}
	return 0
}

// run sends and receives on every leg until the window (plus drain) is
// over or ctx ends; the caller closes the legs' sockets.
func (r *recorder) run(ctx context.Context, legs []*leg, drain time.Duration) {
	end := r.base.Add(time.Duration(r.t1) + drain)
	ctx, cancel := context.WithDeadline(ctx, end)
	defer cancel()
	var wg sync.WaitGroup
	for _, l := range legs {
		wg.Add(2)
		go func() { defer wg.Done(); r.receive(l) }()
		go func() { defer wg.Done(); r.send(ctx, l, time.Duration(r.t1)) }()
	}
	<-ctx.Done()
	for _, l := range legs {
		_ = l.sock.SetReadDeadline(time.Now()) // the receiver returns
	}
	wg.Wait()
	for _, l := range legs {
		_ = l.sock.SetReadDeadline(time.Time{})
	}
}

// send sends a packet every 20 ms, starting at a random phase so the legs
// spread over the interval, until stop (since base) or ctx ends.
func (r *recorder) send(ctx context.Context, l *leg, stop time.Duration) {
	t := time.NewTimer(rand.N(frameInterval))
	defer t.Stop()
	seq := rand.Uint32()
	ts := rand.Uint32()
	payload := make([]byte, l.payload)
	buf := make([]byte, 0, 4+media.MaxPacket)
	next := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := r.now()
		if now >= int64(stop) {
			return
		}
		binary.BigEndian.PutUint64(payload, uint64(now))
		h := media.Header{Type: media.TypeAudio, Flags: media.FlagVoice, Level: l.level, StreamID: l.stream, Seq: seq, Timestamp: ts}
		seq++
		ts += media.FrameTicks
		pkt := buf[:0]
		if l.channel != 0 {
			pkt = binary.BigEndian.AppendUint16(pkt, l.channel)
			pkt = binary.BigEndian.AppendUint16(pkt, uint16(l.payload+media.Overhead))
		}
		pkt, err := l.key.Seal(pkt, media.Up, h, payload)
		if err == nil {
			if _, err := l.sock.Write(pkt); err == nil && r.inWindow(now) {
				r.sent.Add(1)
			}
		}
		// Keep the 20 ms cadence (a late wake-up sends the next one sooner).
		if next.IsZero() || time.Since(next) > frameInterval {
			next = time.Now()
		}
		next = next.Add(frameInterval)
		t.Reset(time.Until(next))
	}
}

// receive reads the leg's socket until a read fails (run sets a deadline).
func (r *recorder) receive(l *leg) {
	buf := make([]byte, 2048)
	out := make([]byte, 0, media.MaxPayload)
	windows := map[uint32]*media.ReplayWindow{}
	for {
		n, err := l.sock.Read(buf)
		if err != nil {
			return
		}
		pkt := buf[:n]
		if l.channel != 0 {
			// ChannelData (RFC 8656 §12.4): channel 0x4000-0x7FFF, length.
			if n < 4 || pkt[0]&0xC0 != 0x40 {
				continue // a STUN message (a late response): not media
			}
			ln := int(binary.BigEndian.Uint16(pkt[2:4]))
			if 4+ln > n {
				r.bad.Add(1)
				continue
			}
			pkt = pkt[4 : 4+ln]
		}
		h, body, err := l.openKey.Open(out[:0], l.openDir, pkt)
		if err != nil || len(body) < 8 {
			r.bad.Add(1)
			continue
		}
		w := windows[h.StreamID]
		if w == nil {
			w = &media.ReplayWindow{}
			windows[h.StreamID] = w
		}
		if !w.Accept(h.Seq) {
			r.dupes.Add(1)
			continue
		}
		sentAt := int64(binary.BigEndian.Uint64(body))
		if !r.inWindow(sentAt) {
			continue
		}
		d := time.Duration(r.now() - sentAt)
		i := int(d / histRes)
		if i >= histBuckets {
			i = histBuckets - 1
		}
		r.hist[i].Add(1)
		r.recv.Add(1)
		l.received.Add(1)
		l.bytes.Add(int64(n))
		l.speakers.Store(h.StreamID, true)
	}
}
