package p2pchan

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/parleychat/parley/protocol/parleyv1"
)

func sampleFrames() []*parleyv1.DirectFrame {
	return []*parleyv1.DirectFrame{
		{Body: &parleyv1.DirectFrame_Hello{Hello: &parleyv1.DirectHello{DeviceId: "630dcd2966c43366", Client: "parley-go/0.3.0"}}},
		{Body: &parleyv1.DirectFrame_Chat{Chat: &parleyv1.DirectChat{Id: "m1", Text: "hi ☺", SentAtUnixMs: 1700000000000}}},
		{Body: &parleyv1.DirectFrame_ChatAck{ChatAck: &parleyv1.DirectChatAck{Id: "m1"}}},
		{Body: &parleyv1.DirectFrame_FileOffer{FileOffer: &parleyv1.DirectFileOffer{TransferId: "t1", Name: "a.txt", Size: 5, Sha256: make([]byte, 32), MediaType: "text/plain"}}},
		{Body: &parleyv1.DirectFrame_FileAnswer{FileAnswer: &parleyv1.DirectFileAnswer{Accept: true, Offset: 3}}},
		{Body: &parleyv1.DirectFrame_FileDone{FileDone: &parleyv1.DirectFileDone{Ok: false, Error: "sha-256 mismatch"}}},
		{Body: &parleyv1.DirectFrame_Call{Call: &parleyv1.DirectCall{CallId: "c1", Direct: true}}},
	}
}

func TestFrameRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	for _, f := range sampleFrames() {
		if err := WriteFrame(&buf, f); err != nil {
			t.Fatal(err)
		}
	}
	for _, want := range sampleFrames() {
		got, err := ReadFrame(&buf)
		if err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(got, want) {
			t.Fatalf("read %v, want %v", got, want)
		}
	}
	if _, err := ReadFrame(&buf); err != io.EOF {
		t.Fatalf("at the end: %v, want io.EOF", err)
	}
}

func TestReadFrameLimits(t *testing.T) {
	hdr := func(n uint32) []byte { return binary.BigEndian.AppendUint32(nil, n) }
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"length above 1 MiB", hdr(MaxFrameSize + 1), ErrFrameTooLarge},
		{"length 4 GiB", hdr(0xffffffff), ErrFrameTooLarge},
		{"truncated header", []byte{0, 0}, io.ErrUnexpectedEOF},
		{"truncated body", append(hdr(10), 1, 2), io.ErrUnexpectedEOF},
		{"header only, then end", hdr(5), io.ErrUnexpectedEOF},
		{"garbage body", append(hdr(2), 0xff, 0xff), ErrProtocol},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ReadFrame(bytes.NewReader(tc.in))
			if !errors.Is(err, tc.want) {
				t.Fatalf("ReadFrame = %v, want %v", err, tc.want)
			}
		})
	}
	// Exactly 1 MiB is allowed (a frame with a long text: the frame
	// reader's limit, the chat's own limit is checked later).
	big := &parleyv1.DirectFrame{Body: &parleyv1.DirectFrame_FileDone{FileDone: &parleyv1.DirectFileDone{Error: strings.Repeat("e", MaxFrameSize-10)}}}
	n := proto.Size(big)
	big.GetFileDone().Error += strings.Repeat("e", MaxFrameSize-n)
	if proto.Size(big) != MaxFrameSize {
		t.Fatalf("test frame is %d bytes", proto.Size(big))
	}
	var buf bytes.Buffer
	if err := WriteFrame(&buf, big); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadFrame(&buf); err != nil {
		t.Fatalf("a frame of exactly 1 MiB: %v", err)
	}
	big.GetFileDone().Error += "e"
	if err := WriteFrame(&buf, big); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("writing 1 MiB + 1: %v", err)
	}
}

func TestCheckID(t *testing.T) {
	for id, ok := range map[string]bool{
		"a": true, "0123456789abcdef": true, "with space": true, "ünïcödé": true, strings.Repeat("é", 64): true,
		"": false, " a": false, "a ": false, "a\tb": false, "a\x00": false, "\xff": false, strings.Repeat("é", 65): false,
		"zero\u200bwidth": false,
	} {
		if got := checkID("id", id) == nil; got != ok {
			t.Errorf("checkID(%q) ok=%v, want %v", id, got, ok)
		}
	}
}

// FuzzReadFrame feeds the frame reader and the validators arbitrary
// bytes, as a peer could: no panic, no frame above the limit, and what is
// read writes back to bytes that read the same.
func FuzzReadFrame(f *testing.F) {
	for _, fr := range sampleFrames() {
		b, _ := AppendFrame(nil, fr)
		f.Add(b)
	}
	f.Add(binary.BigEndian.AppendUint32(nil, MaxFrameSize+1))
	f.Add([]byte{0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, in []byte) {
		r := bytes.NewReader(in)
		for {
			fr, err := ReadFrame(r)
			if err != nil {
				return
			}
			if proto.Size(fr) > MaxFrameSize {
				t.Fatalf("a frame of %d bytes", proto.Size(fr))
			}
			switch b := fr.GetBody().(type) {
			case *parleyv1.DirectFrame_Hello:
				checkHello(b.Hello, "630dcd2966c43366")
			case *parleyv1.DirectFrame_Chat:
				checkChat(b.Chat)
			case *parleyv1.DirectFrame_FileOffer:
				checkOffer(b.FileOffer)
			case *parleyv1.DirectFrame_Call:
				checkCall(b.Call)
			}
			var buf bytes.Buffer
			if err := WriteFrame(&buf, fr); err != nil {
				t.Fatalf("a frame read does not write: %v", err)
			}
			again, err := ReadFrame(&buf)
			if err != nil || !proto.Equal(again, fr) {
				t.Fatalf("round trip: %v, %v vs %v", err, again, fr)
			}
		}
	})
}

func TestPeerText(t *testing.T) {
	for in, want := range map[string]string{
		"plain":                  "plain",
		"line\nbreak\x1b[31m":    "line break [31m",
		"bad \xff byte":          "bad \uFFFD byte",
		strings.Repeat("é", 200): strings.Repeat("é", 128),
	} {
		if got := peerText(in); got != want {
			t.Errorf("peerText(%q) = %q, want %q", in, got, want)
		}
	}
}
