package main

import (
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
