package p2pchan

import (
	"bytes"
	"errors"
	"sync"
	"testing"
)

func TestCallAudio(t *testing.T) {
	a, b := newSide(t), newSide(t)
	var mu sync.Mutex
	var calls []Call
	var got []Audio
	b.cfg.OnCall = func(c Call) { mu.Lock(); calls = append(calls, c); mu.Unlock() }
	b.cfg.OnAudio = func(a Audio) { mu.Lock(); got = append(got, a); mu.Unlock() }
	ca, _ := connect(t, a, b, nil)

	if err := ca.SendCall("call-1", true); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the DirectCall", func() bool { mu.Lock(); defer mu.Unlock(); return len(calls) == 1 })
	if calls[0] != (Call{ID: "call-1", Direct: true}) {
		t.Fatalf("call %+v", calls[0])
	}

	// 50 frames of 20 ms, the last one the largest Opus frame allowed.
	const n = 50
	frame := func(i int) []byte {
		if i == n-1 {
			return bytes.Repeat([]byte{0xab}, MaxOpusBytes)
		}
		return bytes.Repeat([]byte{byte(i)}, 20+i)
	}
	for i := range n {
		if err := ca.SendAudio(0x01, uint8(i), uint32(1000+i), uint32(960*i), frame(i)); err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
	}
	waitFor(t, "the audio frames", func() bool { mu.Lock(); defer mu.Unlock(); return len(got) == n })
	mu.Lock()
	for _, au := range got {
		i := int(au.Seq) - 1000
		if i < 0 || i >= n || au.Flags != 1 || au.Level != uint8(i) || au.Timestamp != uint32(960*i) || !bytes.Equal(au.Opus, frame(i)) {
			t.Fatalf("frame %+v", au)
		}
	}
	mu.Unlock()

	if err := ca.SendAudio(0, 0, 0, 0, make([]byte, MaxOpusBytes+1)); !errors.Is(err, ErrInvalid) {
		t.Errorf("oversize Opus frame: %v", err)
	}
	if err := ca.SendCall("call-1", false); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the second DirectCall", func() bool { mu.Lock(); defer mu.Unlock(); return len(calls) == 2 })
	if calls[1].Direct {
		t.Fatal("direct: false arrived as true")
	}
	if err := ca.SendCall("", true); !errors.Is(err, ErrInvalid) {
		t.Errorf("empty call id: %v", err)
	}
}

func TestAudioDatagram(t *testing.T) {
	a := Audio{Flags: 3, Level: 127, Seq: 0x01020304, Timestamp: 0xa0b0c0d0, Opus: []byte{9, 8, 7}}
	b := AppendAudio(nil, a)
	want := []byte{1, 3, 127, 0, 1, 2, 3, 4, 0xa0, 0xb0, 0xc0, 0xd0, 9, 8, 7}
	if !bytes.Equal(b, want) {
		t.Fatalf("datagram % x, want % x", b, want)
	}
	back, err := ParseAudio(b)
	if err != nil || back.Seq != a.Seq || back.Timestamp != a.Timestamp || back.Flags != 3 || back.Level != 127 || !bytes.Equal(back.Opus, a.Opus) {
		t.Fatalf("ParseAudio = %+v, %v", back, err)
	}
	with := func(i int, v byte) []byte { d := append([]byte{}, want...); d[i] = v; return d }
	for name, d := range map[string][]byte{
		"empty":          nil,
		"type 0":         with(0, 0),
		"other type":     with(0, 2),
		"a sealed media": with(0, 0xff),
		"short":          want[:11],
		"opus > 1200":    append(append([]byte{}, want[:12]...), make([]byte, 1201)...),
		"reserved flag":  with(1, 0x04),
		"level 128":      with(2, 128),
		"byte 3 not 0":   with(3, 1),
	} {
		if _, err := ParseAudio(d); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	for name, d := range map[string][]byte{
		"an empty Opus frame (DTX)": want[:12],
		"opus = 1200":               append(append([]byte{}, want[:12]...), make([]byte, 1200)...),
		"level 127, both flags":     with(1, 3),
	} {
		if _, err := ParseAudio(d); err != nil {
			t.Errorf("%s refused: %v", name, err)
		}
	}
}

func FuzzParseAudio(f *testing.F) {
	f.Add(AppendAudio(nil, Audio{Seq: 1, Opus: []byte{1, 2, 3}}))
	f.Add([]byte{1})
	f.Add(AppendAudio(nil, Audio{Flags: 3, Level: 127, Seq: 0xffffffff, Timestamp: 960, Opus: bytes.Repeat([]byte{0xfc}, MaxOpusBytes)}))
	f.Add(append(AppendAudio(nil, Audio{}), make([]byte, MaxOpusBytes+1)...))
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := ParseAudio(b)
		if err != nil {
			return
		}
		if len(a.Opus) > MaxOpusBytes || a.Flags&^3 != 0 || a.Level > 127 {
			t.Fatalf("accepted %+v", a)
		}
		if again := AppendAudio(nil, a); !bytes.Equal(again, b) {
			t.Fatalf("round trip % x -> % x", b, again)
		}
	})
}
