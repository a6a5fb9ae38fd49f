package wire

import (
	"bytes"
	"testing"
)

// FuzzDecode feeds arbitrary bytes to the frame body decoder: it must return
// a frame or one of the package's errors, never panic, and a frame it accepts
// must survive a re-encode.
func FuzzDecode(f *testing.F) {
	for _, fr := range seedFrames() {
		b, _ := Marshal(fr)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := Decode(b)
		if err != nil {
			if CodeOf(err) == 44 { // INTERNAL would mean an unclassified decode error
				t.Fatalf("unclassified error %v", err)
			}
			return
		}
		out, err := Marshal(fr)
		if err != nil {
			t.Fatalf("re-encode accepted frame: %v", err)
		}
		if _, err := Decode(out); err != nil {
			t.Fatalf("re-decode: %v", err)
		}
	})
}

// FuzzReader feeds arbitrary byte streams to the length-prefixed reader with
// a small limit: every frame read is either decoded or refused with an error.
func FuzzReader(f *testing.F) {
	for _, fr := range seedFrames() {
		b, _ := AppendFrame(nil, fr)
		f.Add(b)
	}
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		r := NewReader(bytes.NewReader(b), 4096)
		for i := 0; i < 64; i++ {
			fr, err := r.ReadFrame()
			if err != nil {
				if CodeOf(err) == 44 { // I/O end of stream, or unclassified
					return
				}
				continue
			}
			if fr.Body == nil {
				t.Fatal("frame without body accepted")
			}
		}
	})
}
