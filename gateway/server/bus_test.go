package server_test

import (
	"strings"
	"testing"

	"github.com/parleychat/parley/gateway/server"
	"github.com/parleychat/parley/protocol/parleyv1"
)

// TestRequestTooLargeForTheBus: a request within the frame limit but
// above the message bus's max_payload (1 MiB, as the default frame limit;
// here frames may be 2 MiB) gets a final code, not a retryable
// UNAVAILABLE: MESSAGE_TOO_LARGE for a send, INVALID_ARGUMENT for others.
// Nothing reaches the services, and the connection goes on.
func TestRequestTooLargeForTheBus(t *testing.T) {
	e := startGateway(t, func(c *server.Config) { c.MaxFrameSize = 2 << 20 })
	msg := startStandInMessaging(t, e.nc)
	c := dialTCP(t, e)
	c.login("alice", noFeed)
	const big = 1<<20 - 64 // the frame stays under 1 MiB; with the identity headers the bus message does not
	tests := []struct {
		name string
		f    *parleyv1.Frame
		code parleyv1.ErrorCode
	}{
		{"send", sendFrame("room.public", strings.Repeat("x", big), "k1"), parleyv1.ErrorCode_ERROR_CODE_MESSAGE_TOO_LARGE},
		{"send of 2 MiB", sendFrame("room.public", strings.Repeat("x", 2<<20-64), "k1"), parleyv1.ErrorCode_ERROR_CODE_MESSAGE_TOO_LARGE},
		{"create_group", &parleyv1.Frame{Body: &parleyv1.Frame_CreateGroup{CreateGroup: &parleyv1.CreateGroupRequest{Name: strings.Repeat("x", big)}}},
			parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT},
		{"who", &parleyv1.Frame{Body: &parleyv1.Frame_Who{Who: &parleyv1.WhoRequest{Cursor: strings.Repeat("x", 1<<20+16)}}},
			parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT},
	}
	for _, tt := range tests {
		r := c.request(tt.f)
		if e := r.GetError(); e.GetCode() != tt.code || e.GetFatal() {
			t.Errorf("%s: %v, want %v", tt.name, e, tt.code)
		}
	}
	if n := len(msg.Calls()); n != 0 {
		t.Errorf("messaging received %d requests", n)
	}
	if r := c.request(sendFrame("room.public", "small", "k2")); r.GetSendReply() == nil {
		t.Fatalf("send after: %v", r)
	}
}
