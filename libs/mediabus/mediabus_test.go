package mediabus

import (
	"bytes"
	"errors"
	"slices"
	"testing"

	"github.com/parleychat/parley/protocol/media"
)

func TestAudioRoundTrip(t *testing.T) {
	h := media.Header{Type: media.TypeAudio, Flags: media.FlagVoice, Level: 30, StreamID: 0xdeadbeef, Seq: 7, Timestamp: 960}
	payload := []byte("opus frame")
	b := AppendAudio(nil, h, payload)
	if KindOf(b) != KindAudio {
		t.Fatalf("kind %d", KindOf(b))
	}
	a, err := ParseAudio(b)
	if err != nil {
		t.Fatal(err)
	}
	if a.Header != h || !bytes.Equal(a.Payload, payload) {
		t.Fatalf("got %+v %q", a.Header, a.Payload)
	}
}

func TestRosterAndAlive(t *testing.T) {
	ids := []uint32{1, 0xffffffff, 42}
	r, err := ParseRoster(AppendRoster(nil, Roster{Rev: 1<<40 + 7, Streams: ids}), nil)
	if err != nil || r.Rev != 1<<40+7 || !slices.Equal(r.Streams, ids) {
		t.Fatalf("roster %+v %v", r, err)
	}
	if r, err := ParseRoster(AppendRoster(nil, Roster{Rev: 3}), nil); err != nil || r.Rev != 3 || len(r.Streams) != 0 {
		t.Fatalf("empty roster %+v %v", r, err)
	}
	// What relays sent before the revision: the same ids, revision 0.
	old := []byte{3, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 42}
	if r, err := ParseRoster(old, nil); err != nil || r.Rev != 0 || !slices.Equal(r.Streams, ids) {
		t.Fatalf("unordered roster %+v %v", r, err)
	}
	gw, a, err := ParseAlive(AppendAlive(nil, "gw-1", ids), nil)
	if err != nil || gw != "gw-1" || !slices.Equal(a, ids) {
		t.Fatalf("alive %q %v %v", gw, a, err)
	}
}

func TestMalformed(t *testing.T) {
	h := media.Header{Type: media.TypeAudio, StreamID: 1}
	good := AppendAudio(nil, h, []byte{1, 2})
	bad := slices.Clone(good)
	bad[1+4] = 0 // stream id 0
	bad[1+5], bad[1+6], bad[1+7] = 0, 0, 0
	cases := []struct {
		name string
		err  error
		fn   func() error
	}{
		{"audio short", ErrShort, func() error { _, err := ParseAudio(good[:10]); return err }},
		{"audio kind", ErrKind, func() error {
			_, err := ParseAudio(AppendRoster(nil, Roster{Rev: 1, Streams: []uint32{1, 2, 3, 4}}))
			return err
		}},
		{"audio stream 0", media.ErrStreamID, func() error { _, err := ParseAudio(bad); return err }},
		{"audio too large", ErrTooLarge, func() error { _, err := ParseAudio(AppendAudio(nil, h, make([]byte, media.MaxPayload+1))); return err }},
		{"roster ragged", ErrLength, func() error { _, err := ParseRoster([]byte{4, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 1}, nil); return err }},
		{"roster no revision", ErrShort, func() error { _, err := ParseRoster([]byte{4, 0, 0, 0, 0, 0, 0, 1}, nil); return err }},
		{"unordered roster ragged", ErrLength, func() error { _, err := ParseRoster([]byte{3, 0, 0, 1}, nil); return err }},
		{"roster empty", ErrShort, func() error { _, err := ParseRoster(nil, nil); return err }},
		{"roster kind", ErrKind, func() error { _, err := ParseRoster(good, nil); return err }},
		{"alive no gateway", ErrGateway, func() error { _, _, err := ParseAlive([]byte{2, 0}, nil); return err }},
		{"alive truncated gateway", ErrGateway, func() error { _, _, err := ParseAlive([]byte{2, 5, 'a'}, nil); return err }},
		{"alive short", ErrShort, func() error { _, _, err := ParseAlive([]byte{2}, nil); return err }},
	}
	for _, c := range cases {
		if err := c.fn(); !errors.Is(err, c.err) {
			t.Errorf("%s: %v, want %v", c.name, err, c.err)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add(AppendAudio(nil, media.Header{Type: media.TypeAudio, StreamID: 1}, []byte{1}))
	f.Add(AppendAlive(nil, "gw", []uint32{1}))
	f.Add(AppendRoster(nil, Roster{Rev: 9, Streams: []uint32{1}}))
	f.Add([]byte{3, 0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		switch KindOf(b) {
		case KindAudio:
			if a, err := ParseAudio(b); err == nil {
				if re := AppendAudio(nil, a.Header, a.Payload); !bytes.Equal(re, b) {
					t.Fatalf("audio re-encodes differently")
				}
			}
		case KindAlive:
			if gw, ids, err := ParseAlive(b, nil); err == nil {
				if re := AppendAlive(nil, gw, ids); !bytes.Equal(re, b) {
					t.Fatalf("alive re-encodes differently")
				}
			}
		case KindRoster:
			if r, err := ParseRoster(b, nil); err == nil {
				if re := AppendRoster(nil, r); !bytes.Equal(re, b) {
					t.Fatalf("roster re-encodes differently")
				}
			}
		case KindRosterUnordered:
			if r, err := ParseRoster(b, nil); err == nil {
				if r.Rev != 0 || !bytes.Equal(AppendRoster(nil, r)[9:], b[1:]) {
					t.Fatalf("unordered roster re-encodes differently")
				}
			}
		}
	})
}
