package main

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/parleychat/parley/protocol/parleyv1"
	"github.com/parleychat/parley/protocol/wire"
)

// The members' shortcut decoder must read what the full decoder reads, for
// every frame the gateway sends them, and refuse any other frame.
func TestMessageFields(t *testing.T) {
	msg := &parleyv1.Message{Conversation: "room.public", Seq: 123456789, Id: 42, SenderId: "u1",
		SenderName: "alice", SentAtUnixMs: 1700000000000, Text: "msgbench 3 17 xxxx 你好 🎉", ClientKey: "k",
		File: &parleyv1.FileInfo{FileId: "f", Name: "n"}}
	b, err := wire.AppendFrame(nil, &parleyv1.Frame{Body: &parleyv1.Frame_Message{Message: &parleyv1.MessageEvent{Message: msg}}})
	if err != nil {
		t.Fatal(err)
	}
	conv, seq, text, ok := messageFields(b[4:])
	if !ok || string(conv) != msg.Conversation || seq != msg.Seq || string(text) != msg.Text {
		t.Fatalf("got %q %d %q %v", conv, seq, text, ok)
	}
	for _, f := range []*parleyv1.Frame{
		{RequestId: 7, Body: &parleyv1.Frame_Ping{Ping: &parleyv1.Ping{Nonce: 1}}},
		{Body: &parleyv1.Frame_PresenceChange{PresenceChange: &parleyv1.PresenceChange{}}},
	} {
		b, err := wire.AppendFrame(nil, f)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, _, ok := messageFields(b[4:]); ok {
			t.Fatalf("%v read as a message", f)
		}
	}
	// Truncated frames are refused, never misread.
	for i := range len(b) - 4 {
		if conv, seq, text, ok := messageFields(b[4 : 4+i]); ok && (string(conv) == msg.Conversation && seq == msg.Seq && string(text) == msg.Text) {
			t.Fatalf("truncated at %d read in full", i)
		}
	}
}

// TestWSReader: the WebSocket member reads each binary message whole (of
// every length encoding, also in fragments with a control frame between
// them) and stops at a close.
func TestWSReader(t *testing.T) {
	var in []byte
	frame := func(b0 byte, p []byte) {
		switch n := len(p); {
		case n <= 125:
			in = append(in, b0, byte(n))
		case n <= 0xffff:
			in = binary.BigEndian.AppendUint16(append(in, b0, 126), uint16(n))
		default:
			in = binary.BigEndian.AppendUint64(append(in, b0, 127), uint64(n))
		}
		in = append(in, p...)
	}
	want := [][]byte{[]byte("small"), bytes.Repeat([]byte("m"), 300), bytes.Repeat([]byte("L"), 70000), []byte("fragmented")}
	frame(0x82, want[0])
	frame(0x82, want[1])
	frame(0x82, want[2])
	frame(0x02, want[3][:4])
	frame(0x8a, []byte("pong"))
	frame(0x80, want[3][4:])
	frame(0x88, []byte{0x03, 0xe8})
	r := &wsReader{r: bufio.NewReader(bytes.NewReader(in)), max: 1 << 20}
	for i, w := range want {
		b, err := r.ReadRaw()
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if !bytes.Equal(*b, w) {
			t.Fatalf("message %d: %d bytes, want %d", i, len(*b), len(w))
		}
		wire.PutRaw(b)
	}
	if _, err := r.ReadRaw(); !errors.Is(err, errWSClosed) {
		t.Errorf("after the close: %v", err)
	}
}
