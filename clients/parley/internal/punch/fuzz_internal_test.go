package punch

import (
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/stun/v3"
)

// newBareAgent is an Agent on a loopback socket, for feeding packets to
// handle directly.
func newBareAgent(tb testing.TB, onPacket func([]byte)) *Agent {
	tb.Helper()
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		tb.Fatal(err)
	}
	a, err := New(Config{Conn: conn, SessionID: "fuzz", Side: "b", PeerSide: "a", CheckKey: []byte("0123456789abcdef0123456789abcdef"), OnPacket: onPacket})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { a.Close() })
	return a
}

func seedCheck(tb testing.TB, user string, useCandidate bool) []byte {
	b, err := buildRequest(stun.NewTransactionID(), user, stun.NewShortTermIntegrity("0123456789abcdef0123456789abcdef"), useCandidate)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// FuzzHandle feeds arbitrary datagrams to the demultiplexer and the STUN
// handling: nothing panics, nothing but QUIC's range reaches OnPacket,
// and nothing at all from an address that never passed a check.
func FuzzHandle(f *testing.F) {
	var got []byte
	a := newBareAgent(f, func(p []byte) { got = append(got[:0], p...) })
	peer := netip.MustParseAddrPort("127.0.0.1:9") // discard: answers go nowhere
	stranger := netip.MustParseAddrPort("127.0.0.1:7")
	f.Add(seedCheck(f, "fuzz:a", false), true)
	f.Add(seedCheck(f, "fuzz:a", true), true)
	f.Add(seedCheck(f, "fuzz:b", false), true)
	resp, _ := buildResponse(stun.NewTransactionID(), peer, a.checkKey)
	f.Add(resp, true)
	f.Add([]byte{0x40, 1, 2, 3}, false)
	f.Add([]byte{0xc3, 0, 0, 0, 1, 8}, true)
	f.Add([]byte{0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42}, false)
	f.Add([]byte{}, false)
	f.Add([]byte{0x16, 0xfe, 0xfd}, false)
	msg := &stun.Message{}
	f.Fuzz(func(t *testing.T, data []byte, fromPeer bool) {
		from := stranger
		if fromPeer {
			from = peer
		}
		got = got[:0]
		in := append([]byte(nil), data...)
		a.handle(a.session, from, data, msg)
		if len(got) > 0 {
			if string(got) != string(in) || in[0] < 64 {
				t.Fatalf("OnPacket got % x for input % x", got, in)
			}
			a.mu.Lock()
			p := a.pairs[pairKey{a.session, from}]
			ok := p != nil && p.validated
			a.mu.Unlock()
			if !ok {
				t.Fatalf("a packet from %v, which never passed a check, was passed on", from)
			}
		}
	})
}

// FuzzClassify: the demultiplexer's classes match RFC 7983's ranges.
func FuzzClassify(f *testing.F) {
	f.Add([]byte{0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{0x40})
	f.Add([]byte{0x3f})
	f.Fuzz(func(t *testing.T, b []byte) {
		switch classify(b) {
		case kindSTUN:
			if b[0] > 3 || len(b) < 20 || binary.BigEndian.Uint32(b[4:8]) != 0x2112A442 {
				t.Fatalf("% x taken for STUN", b)
			}
		case kindQUIC:
			if b[0] < 64 {
				t.Fatalf("% x taken for QUIC", b)
			}
		default:
			if len(b) > 0 && b[0] >= 64 {
				t.Fatalf("% x dropped", b)
			}
		}
	})
}

// BenchmarkHandleCheck is the cost of answering one check: decoding,
// FINGERPRINT and MESSAGE-INTEGRITY, the answer and its send.
func BenchmarkHandleCheck(b *testing.B) {
	sink, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	defer sink.Close()
	go func() {
		buf := make([]byte, 1500)
		for {
			if _, _, err := sink.ReadFrom(buf); err != nil {
				return
			}
		}
	}()
	a := newBareAgent(b, func([]byte) {})
	from := sink.LocalAddr().(*net.UDPAddr).AddrPort()
	check := seedCheck(b, "fuzz:a", false)
	msg := &stun.Message{}
	a.handle(a.session, from, check, msg) // the pair exists from now on
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		a.handle(a.session, from, check, msg)
	}
	b.StopTimer()
	if a.checksAns.Load() < uint64(b.N) {
		b.Fatalf("%d checks answered", a.checksAns.Load())
	}
}

// BenchmarkHandleQUIC is the demultiplexer's cost for a QUIC packet on the
// selected pair.
func BenchmarkHandleQUIC(b *testing.B) {
	a := newBareAgent(b, func([]byte) {})
	from := netip.MustParseAddrPort("127.0.0.1:9")
	p := &pair{sock: a.session, remote: from, validated: true}
	a.mu.Lock()
	a.pairs[pairKey{a.session, from}] = p
	a.selectPair(p, time.Now())
	a.mu.Unlock()
	pkt := make([]byte, 1200)
	pkt[0] = 0x40
	msg := &stun.Message{}
	b.ReportAllocs()
	for b.Loop() {
		a.handle(a.session, from, pkt, msg)
	}
}
