package parley

import (
	"errors"
	"log/slog"
	"net"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/parleychat/parley/protocol/parleyv1"
	"github.com/parleychat/parley/protocol/wire"
)

// TestUnknownEventIgnored: a frame whose body member this SDK's schema does
// not know (an event of a later server) is skipped, as docs/protocol.md §4
// lets clients do, and the connection goes on: the Ping after it is
// answered. It used to end the connection (a reconnect loop against a
// newer server). The server here is a stand-in, writing bytes by hand on a
// real socket: a gateway that sends an unknown body cannot run here.
func TestUnknownEventIgnored(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()

	c := newConn(newStreamTransport(nc, wire.DefaultMaxFrameSize), slog.New(slog.DiscardHandler), func(*conn, *parleyv1.Frame) {})
	c.start()
	defer func() { c.fail(errors.New("test over")); c.wait() }()

	// Field 99 holding a message: a body member of a later schema.
	event := protowire.AppendBytes(protowire.AppendTag(nil, 99, protowire.BytesType), []byte{0x08, 0x01})
	out := append(binaryLen(len(event)), event...)
	out, err = wire.AppendFrame(out, &parleyv1.Frame{RequestId: 0, Body: &parleyv1.Frame_Ping{Ping: &parleyv1.Ping{Nonce: 42}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := server.Write(out); err != nil {
		t.Fatal(err)
	}
	_ = server.SetReadDeadline(time.Now().Add(10 * time.Second))
	f, err := wire.NewReader(server, wire.DefaultMaxFrameSize).ReadFrame()
	if err != nil || f.GetPong().GetNonce() != 42 {
		t.Fatalf("after an unknown event the client answered %v, %v; want Pong 42 (cause: %v)", f, err, c.err())
	}
}

func binaryLen(n int) []byte { return []byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)} }
