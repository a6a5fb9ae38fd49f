package callmedia

import (
	"bytes"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/parleychat/parley/gateway/internal/metrics"
	"github.com/parleychat/parley/libs/mediabus"
	"github.com/parleychat/parley/libs/subject"
	"github.com/parleychat/parley/libs/testenv"
	"github.com/parleychat/parley/protocol/media"
	"github.com/parleychat/parley/protocol/parleyv1"
	"github.com/parleychat/parley/protocol/wire"
)

// frameConn is a Conn that keeps the media frames it is given.
type frameConn struct {
	mu     sync.Mutex
	frames [][]byte
	full   bool // refuse every frame, as a full send queue does
	keep   bool // keep copies (else only count)
	n      int
}

func (c *frameConn) PushMedia(frame []byte) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.full {
		return false
	}
	c.n++
	if c.keep {
		c.frames = append(c.frames, bytes.Clone(frame))
	}
	return true
}

// TestMediaFrame: the hand-written media frame is the protobuf encoding
// of Frame{media: MediaPacket{packet}} for every packet size (32 to
// 1232 bytes: a packet is never empty), with the
// length prefix of protocol/wire.
func TestMediaFrame(t *testing.T) {
	for _, n := range []int{media.Overhead, 100, 124, 125, 126, 127, 128, 1000, media.MaxPacket} {
		pkt := bytes.Repeat([]byte{byte(n)}, n)
		got := append(appendMediaFrameHeader(nil, n), pkt...)
		want, err := wire.AppendFrame(nil, &parleyv1.Frame{Body: &parleyv1.Frame_Media{Media: &parleyv1.MediaPacket{Packet: pkt}}})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("%d bytes: % x\nwant % x", n, got[:min(len(got), 16)], want[:min(len(want), 16)])
		}
		if len(got)-n > mediaFramePrefix {
			t.Fatalf("%d bytes: prefix %d > %d", n, len(got)-n, mediaFramePrefix)
		}
	}
}

// testPlane is a Plane on an in-process NATS server, without a media
// port unless udp.
func testPlane(tb testing.TB, udp bool) (*Plane, *nats.Conn) {
	tb.Helper()
	ns := testenv.NATS(tb)
	nc := testenv.Connect(tb, ns)
	reg := prometheus.NewRegistry()
	cfg := Config{NC: nc, Metrics: metrics.New(reg), GatewayID: "gw", AliveInterval: time.Hour}
	if udp {
		cfg.UDPAddr = "127.0.0.1:0"
	}
	p, err := New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	if err := p.Listen(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(p.Close)
	regs[p] = reg
	return p, nc
}

func testKey(tb testing.TB, b byte) ([]byte, *media.Key) {
	raw := bytes.Repeat([]byte{b}, media.KeyLen)
	k, err := media.NewKey(raw)
	if err != nil {
		tb.Fatal(err)
	}
	return raw, k
}

// FuzzReceive: any bytes, from UDP or as a frame, are dropped or handled
// without panicking; what is published upstream is only ever audio that
// the stream's key authenticated, once.
func FuzzReceive(f *testing.F) {
	p, nc := testPlane(f, false)
	raw, k := testKey(f, 1)
	conn := &frameConn{}
	if _, err := p.Install(conn, "c1", 7, raw); err != nil {
		f.Fatal(err)
	}
	var mu sync.Mutex
	published := map[uint32]int{}
	sub, err := nc.Subscribe(subject.MediaUp("c1"), func(m *nats.Msg) {
		a, err := mediabus.ParseAudio(m.Data)
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			published[0]++ // never: checked below
			return
		}
		published[a.Header.Seq]++
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = sub.Unsubscribe() })
	for i, h := range []media.Header{
		{Type: media.TypeAudio, Flags: media.FlagVoice, Level: 3, StreamID: 7, Seq: 1},
		{Type: media.TypeProbe, StreamID: 7, Seq: 2},
		{Type: media.TypeKeepalive, StreamID: 7, Seq: 3},
		{Type: media.TypeAudio, StreamID: 8, Seq: 4},
	} {
		pkt, _ := k.Seal(nil, media.Up, h, bytes.Repeat([]byte{1}, i*40))
		f.Add(pkt, false)
		f.Add(pkt, true)
	}
	f.Add([]byte{1, 1, 0, 0, 0, 0, 0, 7}, false)
	src := netip.MustParseAddrPort("127.0.0.1:9")
	b := newBuffers()
	f.Fuzz(func(t *testing.T, pkt []byte, frame bool) {
		if frame {
			p.Packet(conn, pkt)
		} else {
			p.receive(pkt, src, nil, b)
		}
	})
	_ = nc.Flush()
	mu.Lock()
	defer mu.Unlock()
	if published[0] != 0 {
		f.Fatalf("%d malformed bus messages published", published[0])
	}
	for seq, n := range published {
		if n > 1 {
			f.Fatalf("seq %d published %d times", seq, n)
		}
	}
}

// BenchmarkUp is the per-packet up path of an audio packet: parse, open,
// replay check, publish to NATS.
func BenchmarkUp(b *testing.B) {
	p, _ := testPlane(b, false)
	raw, k := testKey(b, 1)
	conn := &frameConn{}
	if _, err := p.Install(conn, "c1", 7, raw); err != nil {
		b.Fatal(err)
	}
	payload := bytes.Repeat([]byte{0x55}, 80)
	pkts := make([][]byte, 1024)
	bufs := newBuffers()
	src := netip.MustParseAddrPort("127.0.0.1:9")
	seq := uint32(0)
	b.SetBytes(int64(len(payload)))
	b.ReportAllocs()
	for b.Loop() {
		// Sealed outside the timing would need b.N packets up front;
		// seal a batch at a time, untimed.
		if seq%uint32(len(pkts)) == 0 {
			b.StopTimer()
			for i := range pkts {
				h := media.Header{Type: media.TypeAudio, Flags: media.FlagVoice, Level: 20, StreamID: 7, Seq: seq + uint32(i) + 1}
				pkts[i], _ = k.Seal(pkts[i][:0], media.Up, h, payload)
			}
			b.StartTimer()
		}
		p.receive(pkts[seq%uint32(len(pkts))], src, nil, bufs)
		seq++
	}
	if d := testutilDrops(p); d != 0 {
		b.Fatalf("%v packets dropped", d)
	}
}

// BenchmarkDown is the down path of one audio packet to a call with 4
// local listeners (the speaker elsewhere): re-sealed per listener, 2 sent
// over UDP, 2 queued as frames.
func BenchmarkDown(b *testing.B) {
	p, _ := testPlane(b, true)
	sink, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	defer sink.Close()
	go func() { // drain, so the socket's queue never fills
		buf := make([]byte, 2048)
		for {
			if _, err := sink.Read(buf); err != nil {
				return
			}
		}
	}()
	for i := range 4 {
		raw, _ := testKey(b, byte(i+1))
		if _, err := p.Install(&frameConn{}, "c1", uint32(i+1), raw); err != nil {
			b.Fatal(err)
		}
	}
	p.mu.Lock()
	c := p.calls["c1"]
	for i, s := range c.streams {
		if i%2 == 0 {
			s.addr = sink.LocalAddr().(*net.UDPAddr).AddrPort()
		} else {
			s.framed = true
		}
	}
	p.mu.Unlock()
	msg := mediabus.AppendAudio(nil, media.Header{Type: media.TypeAudio, Flags: media.FlagVoice, Level: 20, StreamID: 99}, bytes.Repeat([]byte{0x55}, 80))
	b.ReportAllocs()
	for b.Loop() {
		p.down(c, msg)
	}
	if d := testutilDrops(p); d != 0 {
		b.Fatalf("%v packets dropped", d)
	}
}

// testutilDrops sums the plane's drop counters.
func testutilDrops(p *Plane) float64 {
	mfs, err := regs[p].Gather()
	if err != nil {
		panic(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() == "parley_gateway_media_drops_total" {
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

// regs are the test planes' metric registries.
var regs = map[*Plane]*prometheus.Registry{}
