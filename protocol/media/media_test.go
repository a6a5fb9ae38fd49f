package media_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/parleychat/parley/protocol/media"
)

func testKey(t testing.TB, b byte) *media.Key {
	t.Helper()
	k, err := media.NewKey(bytes.Repeat([]byte{b}, media.KeyLen))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// opus is a stand-in for an 80-byte Opus frame (about 32 kb/s at 20 ms).
var opus = func() []byte {
	b := make([]byte, 80)
	for i := range b {
		b[i] = byte(i*7 + 3)
	}
	return b
}()

var speaking = media.Header{
	Type: media.TypeAudio, Flags: media.FlagVoice, Level: 30,
	StreamID: 0x01020304, Seq: 0xFFFFFFFF, Timestamp: 960 * 7,
}

// TestLayout pins the bytes of the package comment's table, so another
// implementation can be checked against it.
func TestLayout(t *testing.T) {
	k := testKey(t, 1)
	pkt, err := k.Seal(nil, media.Up, speaking, opus)
	if err != nil {
		t.Fatal(err)
	}
	want := []byte{1, 1, 0x01, 30, 1, 2, 3, 4, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0x1A, 0x40}
	if !bytes.Equal(pkt[:media.HeaderLen], want) {
		t.Fatalf("header % x, want % x", pkt[:media.HeaderLen], want)
	}
	if len(pkt) != len(opus)+media.Overhead || media.Overhead != 32 || media.MaxPacket != 1232 {
		t.Fatalf("packet of %d bytes for a %d-byte payload", len(pkt), len(opus))
	}
}

// TestKnownAnswer seals with an all-zero key and checks the packet against
// AES-256-GCM computed independently of this package's nonce code (the
// nonce written out by hand as the package comment lays it out), so the
// layout cannot drift silently.
func TestKnownAnswer(t *testing.T) {
	k := testKey(t, 0)
	h := media.Header{Type: media.TypeProbe, StreamID: 0xA1B2C3D4, Seq: 5, Timestamp: 6}
	pkt, err := k.Seal(nil, media.Down, h, []byte("ping"))
	if err != nil {
		t.Fatal(err)
	}
	want := referenceSeal(t, make([]byte, 32),
		[]byte{1, 0, 0, 0, 0xA1, 0xB2, 0xC3, 0xD4, 0, 0, 0, 5},
		[]byte{1, 2, 0, 0, 0xA1, 0xB2, 0xC3, 0xD4, 0, 0, 0, 5, 0, 0, 0, 6},
		[]byte("ping"))
	if !bytes.Equal(pkt, want) {
		t.Fatalf("sealed\n% x\nwant\n% x", pkt, want)
	}
}

func TestRoundTrip(t *testing.T) {
	k := testKey(t, 1)
	for _, tc := range []struct {
		name    string
		dir     media.Direction
		h       media.Header
		payload []byte
	}{
		{"speaker to server", media.Up, speaking, opus},
		{"server to listener", media.Down, speaking, opus},
		{"comfort noise", media.Up, media.Header{Type: media.TypeAudio, Flags: media.FlagDTX, Level: 127, StreamID: 1}, []byte{0xF8}},
		{"both flags", media.Down, media.Header{Type: media.TypeAudio, Flags: media.FlagVoice | media.FlagDTX, StreamID: 9}, opus[:3]},
		{"empty probe", media.Up, media.Header{Type: media.TypeProbe, StreamID: 7, Seq: 100}, nil},
		{"probe reply echoing a body", media.Down, media.Header{Type: media.TypeProbeReply, StreamID: 7, Seq: 100}, []byte("nonce-1234")},
		{"keepalive", media.Up, media.Header{Type: media.TypeKeepalive, StreamID: 0xFFFFFFFF, Seq: 0, Timestamp: 0xFFFFFFFF}, nil},
		{"largest payload", media.Up, speaking, make([]byte, media.MaxPayload)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pkt, err := k.Seal(nil, tc.dir, tc.h, tc.payload)
			if err != nil {
				t.Fatal(err)
			}
			if ph, err := media.ParseHeader(pkt); err != nil || ph != tc.h {
				t.Fatalf("ParseHeader = %+v, %v; sealed %+v", ph, err, tc.h)
			}
			h, got, err := k.Open(nil, tc.dir, pkt)
			if err != nil || h != tc.h || !bytes.Equal(got, tc.payload) {
				t.Fatalf("Open = %+v, %x, %v; sealed %+v, %x", h, got, err, tc.h, tc.payload)
			}
			// In place: the payload decrypted over the ciphertext.
			cp := bytes.Clone(pkt)
			h, got, err = k.Open(cp[media.HeaderLen:media.HeaderLen], tc.dir, cp)
			if err != nil || h != tc.h || !bytes.Equal(got, tc.payload) {
				t.Fatalf("Open in place = %+v, %x, %v", h, got, err)
			}
		})
	}
}

// TestRelay is the server's path: open the speaker's packet with the
// speaker's key (up), re-seal it with the listener's (down), keeping the
// header; the listener opens it, and nobody else can.
func TestRelay(t *testing.T) {
	speaker, listener, other := testKey(t, 1), testKey(t, 2), testKey(t, 3)
	up, _ := speaker.Seal(nil, media.Up, speaking, opus)
	h, payload, err := speaker.Open(nil, media.Up, up)
	if err != nil {
		t.Fatal(err)
	}
	down, err := listener.Seal(nil, media.Down, h, payload)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(down[:media.HeaderLen], up[:media.HeaderLen]) {
		t.Fatal("the relay changed the header")
	}
	if bytes.Equal(down[media.HeaderLen:], up[media.HeaderLen:]) {
		t.Fatal("the relay forwarded the speaker's ciphertext")
	}
	if _, got, err := listener.Open(nil, media.Down, down); err != nil || !bytes.Equal(got, opus) {
		t.Fatalf("listener: %x, %v", got, err)
	}
	for name, k := range map[string]*media.Key{"speaker": speaker, "another listener": other} {
		if _, _, err := k.Open(nil, media.Down, down); !errors.Is(err, media.ErrAuth) {
			t.Errorf("%s opened the listener's packet: %v", name, err)
		}
	}
}

// TestWrongDirectionOrKey: a packet opens only with the key and direction
// it was sealed with, so a client cannot reflect the server's packets back
// as its own, nor the server's re-sealed packets be taken for a client's.
func TestWrongDirectionOrKey(t *testing.T) {
	a, b := testKey(t, 1), testKey(t, 2)
	for _, tc := range []struct {
		name     string
		seal     *media.Key
		sealDir  media.Direction
		open     *media.Key
		openDir  media.Direction
		opensToo bool
	}{
		{"up opened as down", a, media.Up, a, media.Down, false},
		{"down opened as up", a, media.Down, a, media.Up, false},
		{"another key, up", a, media.Up, b, media.Up, false},
		{"another key, down", a, media.Down, b, media.Down, false},
		{"same key and direction", a, media.Up, a, media.Up, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pkt, _ := tc.seal.Seal(nil, tc.sealDir, speaking, opus)
			_, _, err := tc.open.Open(nil, tc.openDir, pkt)
			if tc.opensToo && err != nil {
				t.Fatal(err)
			}
			if !tc.opensToo && !errors.Is(err, media.ErrAuth) {
				t.Fatalf("got %v, want ErrAuth", err)
			}
		})
	}
}

// TestBitFlips flips every bit of a packet in turn: none opens. A flip that
// leaves the header well-formed (stream id, sequence, timestamp, flags,
// level, payload, tag) fails authentication; one that breaks it (version,
// type, a reserved flag, the level's top bit) is refused for that reason
// first.
func TestBitFlips(t *testing.T) {
	k := testKey(t, 1)
	pkt, _ := k.Seal(nil, media.Up, speaking, opus)
	auth := 0
	for i := range len(pkt) * 8 {
		bad := bytes.Clone(pkt)
		bad[i/8] ^= 1 << (i % 8)
		h, got, err := k.Open(nil, media.Up, bad)
		if err == nil {
			t.Fatalf("bit %d flipped: opened as %+v, %x", i, h, got)
		}
		if _, perr := media.ParseHeader(bad); perr == nil {
			if !errors.Is(err, media.ErrAuth) {
				t.Fatalf("bit %d flipped: %v, want ErrAuth", i, err)
			}
			auth++
		} else if !errors.Is(err, perr) {
			t.Fatalf("bit %d flipped: Open says %v, ParseHeader %v", i, err, perr)
		}
	}
	// All but the version's 8 bits, the type's 8 (the one flip leaving
	// 1-4 makes it a probe reply, which may not carry the voice flag), the
	// 6 reserved flags and the level's top bit.
	if want := len(pkt)*8 - 8 - 8 - 6 - 1; auth != want {
		t.Fatalf("%d flips reached authentication, want %d", auth, want)
	}
}

// TestHeaderRules: what the package comment refuses, ParseHeader, Open and
// Seal refuse with the same error.
func TestHeaderRules(t *testing.T) {
	k := testKey(t, 1)
	valid, _ := k.Seal(nil, media.Up, speaking, opus)
	with := func(i int, b byte) []byte {
		p := bytes.Clone(valid)
		p[i] = b
		return p
	}
	for _, tc := range []struct {
		name string
		pkt  []byte
		err  error
	}{
		{"empty", nil, media.ErrShort},
		{"header only", valid[:media.HeaderLen], media.ErrShort},
		{"no room for the tag", valid[:media.Overhead-1], media.ErrShort},
		{"over the MTU", make([]byte, media.MaxPacket+1), media.ErrTooLarge},
		{"version 0", with(0, 0), media.ErrVersion},
		{"version 2", with(0, 2), media.ErrVersion},
		{"type 0", with(1, 0), media.ErrType},
		{"type 5", with(1, 5), media.ErrType},
		{"type 255", with(1, 255), media.ErrType},
		{"reserved flag 0x04", with(2, 0x04|0x01), media.ErrFlags},
		{"reserved flag 0x80", with(2, 0x80), media.ErrFlags},
		{"voice flag on a probe", append(with(1, 2)[:2:2], append([]byte{0x01, 0}, valid[4:]...)...), media.ErrFlags},
		{"level 128", with(3, 128), media.ErrLevel},
		{"level 255", with(3, 255), media.ErrLevel},
		{"level on a keepalive", append(with(1, 4)[:2:2], append([]byte{0, 127}, valid[4:]...)...), media.ErrLevel},
		{"stream id 0", append(bytes.Clone(valid[:4]), append([]byte{0, 0, 0, 0}, valid[8:]...)...), media.ErrStreamID},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := media.ParseHeader(tc.pkt); !errors.Is(err, tc.err) {
				t.Errorf("ParseHeader: %v, want %v", err, tc.err)
			}
			if h, p, err := k.Open(nil, media.Up, tc.pkt); !errors.Is(err, tc.err) || h != (media.Header{}) || p != nil {
				t.Errorf("Open: %+v, %x, %v, want %v", h, p, err, tc.err)
			}
		})
	}
	for _, tc := range []struct {
		name string
		h    media.Header
		err  error
	}{
		{"type 0", media.Header{StreamID: 1}, media.ErrType},
		{"type 5", media.Header{Type: 5, StreamID: 1}, media.ErrType},
		{"reserved flag", media.Header{Type: media.TypeAudio, Flags: 0x04, StreamID: 1}, media.ErrFlags},
		{"DTX on a keepalive", media.Header{Type: media.TypeKeepalive, Flags: media.FlagDTX, StreamID: 1}, media.ErrFlags},
		{"level 128", media.Header{Type: media.TypeAudio, Level: 128, StreamID: 1}, media.ErrLevel},
		{"level on a probe reply", media.Header{Type: media.TypeProbeReply, Level: 1, StreamID: 1}, media.ErrLevel},
		{"stream id 0", media.Header{Type: media.TypeAudio}, media.ErrStreamID},
	} {
		t.Run("seal "+tc.name, func(t *testing.T) {
			dst := []byte("keep")
			out, err := k.Seal(dst, media.Up, tc.h, opus)
			if !errors.Is(err, tc.err) || string(out) != "keep" {
				t.Errorf("Seal: %q, %v, want %v and dst unchanged", out, err, tc.err)
			}
		})
	}
}

func TestPayloadSize(t *testing.T) {
	k := testKey(t, 1)
	if _, err := k.Seal(nil, media.Up, speaking, make([]byte, media.MaxPayload+1)); !errors.Is(err, media.ErrTooLarge) {
		t.Fatalf("sealing %d bytes: %v, want ErrTooLarge", media.MaxPayload+1, err)
	}
	pkt, err := k.Seal(nil, media.Up, speaking, make([]byte, media.MaxPayload))
	if err != nil || len(pkt) != media.MaxPacket {
		t.Fatalf("sealing MaxPayload: %d bytes, %v", len(pkt), err)
	}
}

func TestBadArguments(t *testing.T) {
	for _, n := range []int{0, 16, 24, 31, 33, 64} {
		if k, err := media.NewKey(make([]byte, n)); k != nil || !errors.Is(err, media.ErrKeySize) {
			t.Errorf("NewKey of %d bytes: %v, %v", n, k, err)
		}
	}
	k := testKey(t, 1)
	if _, err := k.Seal(nil, 2, speaking, opus); !errors.Is(err, media.ErrDirection) {
		t.Errorf("Seal direction 2: %v", err)
	}
	pkt, _ := k.Seal(nil, media.Up, speaking, opus)
	if _, _, err := k.Open(nil, 255, pkt); !errors.Is(err, media.ErrDirection) {
		t.Errorf("Open direction 255: %v", err)
	}
}

// TestSealAppends: Seal appends after what dst holds, without allocating
// when dst has room, and can seal in place.
func TestSealAppends(t *testing.T) {
	k := testKey(t, 1)
	want, _ := k.Seal(nil, media.Up, speaking, opus)

	buf := make([]byte, 3, 3+media.MaxPacket)
	copy(buf, "abc")
	out, err := k.Seal(buf, media.Up, speaking, opus)
	if err != nil || string(out[:3]) != "abc" || !bytes.Equal(out[3:], want) || &out[0] != &buf[0] {
		t.Fatalf("Seal into dst with room: %x, %v", out, err)
	}
	if allocs := testing.AllocsPerRun(1000, func() {
		_, _ = k.Seal(buf[:0], media.Up, speaking, opus)
	}); allocs != 0 {
		t.Errorf("Seal with room in dst: %v allocations, want 0", allocs)
	}
	if allocs := testing.AllocsPerRun(1000, func() {
		_, _, _ = k.Open(buf[media.MaxPacket-100:media.MaxPacket-100], media.Up, want)
	}); allocs != 0 {
		t.Errorf("Open with room in dst: %v allocations, want 0", allocs)
	}

	// In place: the payload already after room for the header.
	inplace := make([]byte, media.MaxPacket)
	copy(inplace[media.HeaderLen:], opus)
	out, err = k.Seal(inplace[:0], media.Up, speaking, inplace[media.HeaderLen:media.HeaderLen+len(opus)])
	if err != nil || !bytes.Equal(out, want) {
		t.Fatalf("Seal in place: %x, %v", out, err)
	}

	// Without room, dst is copied, not overwritten.
	short := []byte("abc")
	out, _ = k.Seal(short[:2], media.Up, speaking, opus)
	if string(short) != "abc" || string(out[:2]) != "ab" || !bytes.Equal(out[2:], want) {
		t.Fatalf("Seal into full dst: %q, %x", short, out)
	}
}
