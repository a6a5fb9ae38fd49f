package wire

import (
	"bytes"
	"errors"
	"testing"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
)

// Hand-built encodings: protobuf marshalling refuses to produce strings
// that are not UTF-8, so the frames below are assembled field by field.

// frameWith is Frame{request_id: id, <field>: body}.
func frameWith(id uint64, field protowire.Number, body []byte) []byte {
	var f []byte
	f = protowire.AppendTag(f, 1, protowire.VarintType)
	f = protowire.AppendVarint(f, id)
	f = protowire.AppendTag(f, field, protowire.BytesType)
	return protowire.AppendBytes(f, body)
}

// field is one length-delimited field (a string or a nested message).
func field(num protowire.Number, v []byte) []byte {
	b := protowire.AppendTag(nil, num, protowire.BytesType)
	return protowire.AppendBytes(b, v)
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

var notUTF8 = []byte("al\xffice")

// TestInvalidUTF8 pins the classification of refused frames: a string that
// is not UTF-8, wherever it is nested, is INVALID_UTF8 and the frame's
// request_id is still read; broken encodings are BAD_FRAME, with the id
// when field 1 came before the damage.
func TestInvalidUTF8(t *testing.T) {
	ok := []byte("secret")
	cases := []struct {
		name string
		in   []byte
		want error // nil: accepted
		id   uint32
	}{
		{"login username", frameWith(9, 11, cat(field(1, notUTF8), field(2, ok))), ErrInvalidUTF8, 9},
		{"login password", frameWith(10, 11, cat(field(1, ok), field(2, notUTF8))), ErrInvalidUTF8, 10},
		{"register username", frameWith(11, 10, field(1, notUTF8)), ErrInvalidUTF8, 11},
		{"resume token", frameWith(12, 12, field(1, notUTF8)), ErrInvalidUTF8, 12},
		{"send text", frameWith(13, 15, cat(field(1, []byte("room.public")), field(3, notUTF8))), ErrInvalidUTF8, 13},
		{"send conversation", frameWith(14, 15, field(1, notUTF8)), ErrInvalidUTF8, 14},
		{"login options.device", frameWith(15, 11, cat(field(1, ok), field(3, field(1, notUTF8)))), ErrInvalidUTF8, 15},
		{"register options.device", frameWith(16, 10, field(3, field(1, notUTF8))), ErrInvalidUTF8, 16},
		{"create_group usernames, second", frameWith(17, 40, cat(field(1, ok), field(2, ok), field(2, notUTF8))), ErrInvalidUTF8, 17},
		{"hello client", frameWith(18, 2, field(2, notUTF8)), ErrInvalidUTF8, 18},
		{"overlong encoding", frameWith(19, 15, field(3, []byte{0xc0, 0xaf})), ErrInvalidUTF8, 19},
		{"surrogate half", frameWith(20, 15, field(3, []byte{0xed, 0xa0, 0x80})), ErrInvalidUTF8, 20},
		{"request_id after the body", cat(field(15, field(3, notUTF8)), []byte{0x08, 0x15}), ErrInvalidUTF8, 21},
		{"request_id beyond 32 bits", frameWith(1<<32+22, 15, field(3, notUTF8)), ErrInvalidUTF8, 22},
		{"no request_id", field(15, field(3, notUTF8)), ErrInvalidUTF8, 0},
		// Unknown fields are kept, not validated, as the runtime does.
		{"unknown field", cat(frameWith(23, 5, nil), field(99, notUTF8)), nil, 23},
		{"unknown nested field", frameWith(24, 15, cat(field(3, ok), field(99, notUTF8))), nil, 24},
		// Broken encodings are BAD_FRAME even when a string is bad too.
		{"garbage", []byte{0xff, 0xff, 0xff, 0xff}, ErrBadFrame, 0},
		{"garbage after the id", []byte{0x08, 0x07, 0xff, 0xff, 0xff}, ErrBadFrame, 7},
		{"truncated body", frameWith(25, 11, field(1, ok))[:6], ErrBadFrame, 25},
		{"bad string then truncation", cat(frameWith(26, 11, field(1, notUTF8)), []byte{0x12, 0x05, 'x'}), ErrBadFrame, 26},
		{"truncated nested message", frameWith(27, 11, []byte{0x1a, 0x05, 0x0a}), ErrBadFrame, 27},
		{"field number 0", []byte{0x08, 0x1c, 0x02, 0x00}, ErrBadFrame, 28},
		{"broken packed versions", frameWith(29, 2, []byte{0x0a, 0x01, 0x80}), ErrBadFrame, 29},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Decode(tc.in)
			if !errors.Is(err, tc.want) && !(tc.want == nil && err == nil) {
				t.Fatalf("Decode: %v, want %v", err, tc.want)
			}
			if got := RequestID(tc.in); got != tc.id {
				t.Fatalf("RequestID = %d, want %d", got, tc.id)
			}
		})
	}
}

// fixUTF8 returns b with every byte of a non-UTF-8 sequence in its string
// fields replaced by '?' (same length, so the encoding stays valid).
func fixUTF8(b []byte) []byte {
	b = bytes.Clone(b)
	scanStrings(b, frameDesc, 0, func(v []byte) {
		for i := 0; i < len(v); {
			r, size := utf8.DecodeRune(v[i:])
			if r == utf8.RuneError && size == 1 {
				v[i] = '?'
			}
			i += size
		}
	})
	return b
}
