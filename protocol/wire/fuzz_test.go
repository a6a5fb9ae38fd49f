package wire

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"testing"
)

// FuzzDecode feeds arbitrary bytes to the frame body decoder: it must return
// a frame or one of the package's errors, never panic, and a frame it accepts
// must survive a re-encode. The refusal must name the right fault: a frame
// refused as INVALID_UTF8 decodes once its strings are made UTF-8, one
// refused as BAD_FRAME does not. RequestID must read what the decoder reads.
func FuzzDecode(f *testing.F) {
	for _, fr := range seedFrames() {
		b, _ := Marshal(fr)
		f.Add(b)
	}
	for _, b := range [][]byte{
		frameWith(9, 11, cat(field(1, notUTF8), field(2, []byte("pw")))),
		frameWith(15, 11, cat(field(1, []byte("bob")), field(3, field(1, notUTF8)))),
		frameWith(13, 15, cat(field(1, []byte("room.public")), field(3, notUTF8))),
		frameWith(17, 40, cat(field(1, []byte("team")), field(2, notUTF8))),
		cat(frameWith(26, 11, field(1, notUTF8)), []byte{0x12, 0x05, 'x'}),
	} {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		id := RequestID(b) // any bytes: never panics
		fr, err := Decode(b)
		if err != nil {
			fixed := fixUTF8(b)
			_, ferr := Decode(fixed)
			switch {
			case CodeOf(err) == 44: // INTERNAL would mean an unclassified decode error
				t.Fatalf("unclassified error %v", err)
			case errors.Is(err, ErrInvalidUTF8) && ferr != nil:
				t.Fatalf("refused as invalid UTF-8, but with valid strings it is %v", ferr)
			case errors.Is(err, ErrBadFrame) && ferr == nil:
				t.Fatalf("refused as a bad frame, but only its UTF-8 was wrong: %v", err)
			case errors.Is(err, ErrInvalidUTF8):
				if fr, _ := Decode(fixed); RequestID(b) != fr.GetRequestId() {
					t.Fatalf("RequestID %d, the frame says %d", RequestID(b), fr.GetRequestId())
				}
			}
			return
		}
		if id != fr.GetRequestId() {
			t.Fatalf("RequestID %d, decoded %d", id, fr.GetRequestId())
		}
		if !bytes.Equal(fixUTF8(b), b) {
			t.Fatal("accepted a frame with a string that is not UTF-8")
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
// a small limit: every frame read is either decoded or refused with an error,
// and calling Wait before each read (as the gateway's reader does while a
// frame is handled) changes nothing that is read.
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
		plain, waited := readOutcomes(b, false), readOutcomes(b, true)
		if !slices.Equal(plain, waited) {
			t.Fatalf("with Wait the stream reads %q, without %q", waited, plain)
		}
	})
}

// readOutcomes reads up to 64 frames of b, one byte per Read (so Wait takes
// exactly one), with Wait before each read if wait is set, and describes
// what each read gave.
func readOutcomes(b []byte, wait bool) []string {
	r := NewReader(oneByteReader{bytes.NewReader(b)}, 4096)
	var out []string
	for range 64 {
		if wait {
			_ = r.Wait() // its error recurs in the read
		}
		raw, err := r.ReadRaw()
		if err != nil {
			out = append(out, "error: "+err.Error())
			if CodeOf(err) == 44 {
				return out
			}
			continue
		}
		out = append(out, fmt.Sprintf("frame %x", *raw))
		PutRaw(raw)
	}
	return out
}
