package media_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/parleychat/parley/protocol/media"
)

var parseErrors = []error{
	media.ErrShort, media.ErrTooLarge, media.ErrVersion, media.ErrType,
	media.ErrFlags, media.ErrLevel, media.ErrStreamID,
}

func isOneOf(err error, errs ...error) bool {
	for _, e := range errs {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

func seedPackets(t testing.TB) [][]byte {
	k := testKey(t, 1)
	var out [][]byte
	for _, h := range []media.Header{
		speaking,
		{Type: media.TypeAudio, Flags: media.FlagDTX, Level: 127, StreamID: 1},
		{Type: media.TypeProbe, StreamID: 2, Seq: 3},
		{Type: media.TypeProbeReply, StreamID: 2, Seq: 3},
		{Type: media.TypeKeepalive, StreamID: 0xFFFFFFFF, Seq: 0xFFFFFFFF, Timestamp: 1},
	} {
		for _, dir := range []media.Direction{media.Up, media.Down} {
			p, _ := k.Seal(nil, dir, h, opus[:int(h.Seq%uint32(len(opus)))])
			out = append(out, p)
		}
	}
	return out
}

// FuzzParseHeader: any bytes are either refused with one of the package's
// errors or read back as the header they spell.
func FuzzParseHeader(f *testing.F) {
	for _, p := range seedPackets(f) {
		f.Add(p)
	}
	f.Add([]byte{})
	f.Add(make([]byte, media.MaxPacket+1))
	k := testKey(f, 1)
	f.Fuzz(func(t *testing.T, pkt []byte) {
		h, err := media.ParseHeader(pkt)
		if err != nil {
			if !isOneOf(err, parseErrors...) || h != (media.Header{}) {
				t.Fatalf("refused with %v, %+v", err, h)
			}
			if len(pkt) < media.Overhead && !errors.Is(err, media.ErrShort) {
				t.Fatalf("%d bytes refused with %v, want ErrShort", len(pkt), err)
			}
			return
		}
		if len(pkt) < media.Overhead || len(pkt) > media.MaxPacket {
			t.Fatalf("accepted a packet of %d bytes", len(pkt))
		}
		// The header Seal writes for h is the one read.
		out, err := k.Seal(nil, media.Up, h, pkt[media.HeaderLen:len(pkt)-media.TagLen])
		if err != nil || !bytes.Equal(out[:media.HeaderLen], pkt[:media.HeaderLen]) {
			t.Fatalf("re-sealed header % x, %v; read % x", out[:min(len(out), media.HeaderLen)], err, pkt[:media.HeaderLen])
		}
	})
}

// FuzzOpen: Open never panics and never accepts arbitrary bytes (anything
// that did open must re-seal to the same bytes); a packet sealed from the
// fuzzed header and body opens to them in its own direction only, and with
// any byte altered it does not open at all.
func FuzzOpen(f *testing.F) {
	for _, p := range seedPackets(f) {
		f.Add(p, uint16(0), byte(0))
		f.Add(p, uint16(5), byte(1))
		f.Add(p, uint16(len(p)-1), byte(0x80))
	}
	f.Add([]byte{}, uint16(0), byte(1))
	k := testKey(f, 1)
	f.Fuzz(func(t *testing.T, pkt []byte, at uint16, x byte) {
		for _, dir := range []media.Direction{media.Up, media.Down} {
			h, p, err := k.Open(nil, dir, pkt)
			if err != nil {
				if !isOneOf(err, append(parseErrors, media.ErrAuth)...) {
					t.Fatalf("refused with %v", err)
				}
				continue
			}
			again, err := k.Seal(nil, dir, h, p)
			if err != nil || !bytes.Equal(again, pkt) {
				t.Fatalf("opened %+v, %x; re-sealed to % x, %v", h, p, again, err)
			}
		}

		// A packet sealed from the fuzzed header and body.
		h, err := media.ParseHeader(pkt)
		if err != nil {
			return
		}
		body := pkt[media.HeaderLen:]
		dir := media.Direction(h.Seq & 1)
		sealed, err := k.Seal(nil, dir, h, body[:min(len(body), media.MaxPayload)])
		if err != nil {
			t.Fatalf("Seal of a header ParseHeader accepted: %v", err)
		}
		got, p, err := k.Open(make([]byte, 0, 8), dir, sealed)
		if err != nil || got != h || !bytes.Equal(p, body[:min(len(body), media.MaxPayload)]) {
			t.Fatalf("round trip: %+v, %x, %v", got, p, err)
		}
		if _, _, err := k.Open(nil, 1-dir, sealed); !errors.Is(err, media.ErrAuth) {
			t.Fatalf("opened in the other direction: %v", err)
		}
		if x != 0 {
			bad := bytes.Clone(sealed)
			bad[int(at)%len(bad)] ^= x
			if h, p, err := k.Open(nil, dir, bad); err == nil {
				t.Fatalf("byte %d ^ %#x: opened as %+v, %x", int(at)%len(bad), x, h, p)
			}
		}
	})
}

// FuzzReplayWindow runs a ReplayWindow and a reference model side by side
// over a fuzzed run of sequence numbers. The model keeps every accepted
// number in a map by its position on the unwrapped number line (RFC 1982
// arithmetic from the newest): new if not in the map, newer than the
// newest (and within 2^32 of the oldest acceptable), or fewer than
// WindowSize behind it. Independently, no 32-bit number is ever accepted
// twice.
func FuzzReplayWindow(f *testing.F) {
	f.Add(uint32(0), []byte{0, 0, 1, 0, 0, 1, 1, 0, 2})
	f.Add(uint32(0xFFFFFF00), []byte{0, 0xFF, 0, 0, 0x02, 0, 1, 0x03, 0xFF, 2, 0x10, 0})
	f.Add(uint32(5), []byte{3, 0xFF, 0xFF, 3, 0xFF, 0xFF, 3, 0xFF, 0xFF, 1, 0, 5})
	f.Fuzz(func(t *testing.T, start uint32, ops []byte) {
		var w media.ReplayWindow
		m := model{}
		once := map[uint32]bool{}
		seq := start
		for i := 0; ; i += 3 {
			got, want := w.Accept(seq), m.accept(seq)
			if got != want {
				t.Fatalf("packet %d, seq %#x: Accept = %v, the model says %v", i/3, seq, got, want)
			}
			if got {
				if once[seq] {
					t.Fatalf("seq %#x accepted twice", seq)
				}
				once[seq] = true
			}
			if i+3 > len(ops) {
				return
			}
			v := uint32(binary.BigEndian.Uint16(ops[i+1:]))
			switch ops[i] % 5 {
			case 0: // on or back a little
				seq += v%2048 - 1024
			case 1: // back, maybe out of the window
				seq -= v
			case 2: // a jump
				seq += v << 12
			case 3: // nearly half the space
				seq += 1<<31 - v
			case 4: // a number from before
				seq = start + v%4096
			}
		}
	})
}

// model is the replay window without the bitmap: a set of positions on the
// unwrapped number line.
type model struct {
	started     bool
	top, oldest int64
	seen        map[int64]bool
}

func (m *model) accept(seq uint32) bool {
	if !m.started {
		m.started, m.top, m.seen = true, int64(seq), map[int64]bool{int64(seq): true}
		m.oldest = m.top - (media.WindowSize - 1)
		return true
	}
	n := m.top + int64(int32(seq-uint32(m.top)))
	switch {
	case m.seen[n]:
		return false
	case n > m.top && n-m.oldest >= 1<<32:
		return false
	case n <= m.top-media.WindowSize:
		return false
	}
	m.seen[n] = true
	m.top = max(m.top, n)
	return true
}
