package media_test

import (
	"testing"

	"github.com/parleychat/parley/protocol/media"
)

// BenchmarkSeal seals an 80-byte Opus frame into a reused buffer, as the
// relay does for each listener.
func BenchmarkSeal(b *testing.B) {
	k := testKey(b, 1)
	buf := make([]byte, 0, media.MaxPacket)
	h := speaking
	b.SetBytes(int64(len(opus)))
	b.ReportAllocs()
	for b.Loop() {
		h.Seq++
		if _, err := k.Seal(buf, media.Down, h, opus); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkOpen opens an 80-byte Opus frame into a reused buffer, as the
// relay does for each packet a speaker sends.
func BenchmarkOpen(b *testing.B) {
	k := testKey(b, 1)
	pkt, _ := k.Seal(nil, media.Up, speaking, opus)
	buf := make([]byte, 0, media.MaxPayload)
	b.SetBytes(int64(len(opus)))
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := k.Open(buf, media.Up, pkt); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReplayAccept: in-order packets with one in 8 arriving late.
func BenchmarkReplayAccept(b *testing.B) {
	var w media.ReplayWindow
	seq := uint32(0xFFF00000)
	b.ReportAllocs()
	for b.Loop() {
		seq++
		s := seq
		if seq%8 == 0 {
			s -= 37
		}
		w.Accept(s)
	}
}
