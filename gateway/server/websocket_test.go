package server_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/parleychat/parley/gateway/server"
	"github.com/parleychat/parley/protocol/parleyv1"
	"github.com/parleychat/parley/protocol/wire"
)

// helloBytes is docs/protocol.md §14's Hello, without the length prefix.
var helloBytes = []byte{0x08, 0x01, 0x12, 0x06, 0x0a, 0x01, 0x01, 0x12, 0x01, 0x78}

// maskedFrame is one client frame (RFC 6455 §5.2), masked.
func maskedFrame(b0 byte, payload []byte) []byte {
	key := [4]byte{0xa1, 0x02, 0xc3, 0x44}
	out := []byte{b0}
	switch n := len(payload); {
	case n <= 125:
		out = append(out, 0x80|byte(n))
	default:
		out = binary.BigEndian.AppendUint16(append(out, 0x80|126), uint16(n))
	}
	out = append(out, key[:]...)
	for i, c := range payload {
		out = append(out, c^key[i%4])
	}
	return out
}

// readServerFrame reads one (unmasked, short) server frame.
func readServerFrame(t *testing.T, r *bufio.Reader) (byte, []byte) {
	t.Helper()
	var h [2]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		t.Fatalf("read frame: %v", err)
	}
	n := int(h[1] & 0x7f)
	if h[1]&0x80 != 0 || n > 125 && n != 126 {
		t.Fatalf("unexpected frame header %x", h)
	}
	if n == 126 {
		var e [2]byte
		_, _ = io.ReadFull(r, e[:])
		n = int(binary.BigEndian.Uint16(e[:]))
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(r, p); err != nil {
		t.Fatal(err)
	}
	return h[0], p
}

// TestWebSocketUpgrade: the upgrade by hand, byte for byte as RFC 6455
// §4 says: a client that sends its Hello in the same write as the upgrade
// request (without waiting for the 101) gets the 101 with the right
// Sec-WebSocket-Accept, no subprotocol and no extension although it asked
// for both, then its Welcome; its ping is answered with a pong.
func TestWebSocketUpgrade(t *testing.T) {
	e := startGateway(t, nil)
	c, err := net.Dial("tcp", e.srv.HTTPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const key = "dGhlIHNhbXBsZSBub25jZQ==" // RFC 6455 §1.3's example
	req := "GET " + server.WebSocketPath + " HTTP/1.1\r\nHost: chat.example.com\r\nUpgrade: websocket\r\n" +
		"Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: " + key + "\r\nSec-WebSocket-Version: 13\r\n" +
		"Sec-WebSocket-Protocol: chat, superchat\r\nSec-WebSocket-Extensions: permessage-deflate\r\n" +
		"Origin: https://elsewhere.example\r\n\r\n"
	if _, err := c.Write(append([]byte(req), maskedFrame(0x82, helloBytes)...)); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(readTimeout))
	r := bufio.NewReader(c)
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if got := resp.Header.Get("Sec-WebSocket-Accept"); got != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
		t.Errorf("Sec-WebSocket-Accept %q", got)
	}
	if !strings.EqualFold(resp.Header.Get("Upgrade"), "websocket") || !strings.EqualFold(resp.Header.Get("Connection"), "upgrade") {
		t.Errorf("Upgrade %q, Connection %q", resp.Header.Get("Upgrade"), resp.Header.Get("Connection"))
	}
	for _, h := range []string{"Sec-WebSocket-Protocol", "Sec-WebSocket-Extensions"} {
		if v := resp.Header.Get(h); v != "" {
			t.Errorf("%s %q: nothing was to be negotiated", h, v)
		}
	}
	b0, p := readServerFrame(t, r)
	f, err := wire.Decode(p)
	if b0 != 0x82 || err != nil || f.GetWelcome() == nil {
		t.Fatalf("first frame %#x %v %v, want a binary Welcome", b0, f, err)
	}
	if _, err := c.Write(maskedFrame(0x89, []byte("are you there"))); err != nil {
		t.Fatal(err)
	}
	if b0, p := readServerFrame(t, r); b0 != 0x8a || string(p) != "are you there" {
		t.Errorf("answer to a ping: %#x %q", b0, p)
	}
	// An unmasked frame is a protocol error: close 1002.
	if _, err := c.Write([]byte{0x82, 0x01, 0x00}); err != nil {
		t.Fatal(err)
	}
	if b0, p := readServerFrame(t, r); b0 != 0x88 || binary.BigEndian.Uint16(p) != 1002 {
		t.Errorf("after an unmasked frame: %#x %x, want close 1002", b0, p)
	}
}

// TestWebSocketUpgradeRefused: a request at the WebSocket path that is
// not a version 13 upgrade is told to upgrade (426), with the version the
// gateway speaks when the version was the fault (RFC 6455 §4.4).
func TestWebSocketUpgradeRefused(t *testing.T) {
	e := startGateway(t, nil)
	url := "http://" + e.srv.HTTPAddr().String() + server.WebSocketPath
	upgrade := map[string]string{"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version": "13"}
	for _, tc := range []struct {
		name    string
		method  string
		change  map[string]string
		version string // Sec-WebSocket-Version expected in the answer
	}{
		{"version 8", "GET", map[string]string{"Sec-WebSocket-Version": "8"}, "13"},
		{"no key", "GET", map[string]string{"Sec-WebSocket-Key": ""}, ""},
		{"no upgrade token", "GET", map[string]string{"Connection": "keep-alive"}, ""},
		{"head", "HEAD", nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, url, nil)
			for k, v := range upgrade {
				req.Header.Set(k, v)
			}
			for k, v := range tc.change {
				req.Header.Set(k, v)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusUpgradeRequired || resp.Header.Get("Sec-WebSocket-Version") != tc.version {
				t.Errorf("%d, Sec-WebSocket-Version %q; want 426, %q", resp.StatusCode, resp.Header.Get("Sec-WebSocket-Version"), tc.version)
			}
		})
	}
}

// TestWebSocketCloseHandshake, against a third-party RFC 6455 client: the
// client's close is answered (its Close returns without error once the
// gateway's close frame came back); a message above the limit gets a
// fatal FRAME_TOO_LARGE, then close 1009; a fatal error's close is 1000.
func TestWebSocketCloseHandshake(t *testing.T) {
	e := startGateway(t, func(c *server.Config) { c.PreloginFrameSize = 1024 })
	url := "ws://" + e.srv.HTTPAddr().String() + server.WebSocketPath
	dial := func() *websocket.Conn {
		ctx, cancel := context.WithTimeout(context.Background(), readTimeout)
		defer cancel()
		c, _, err := websocket.Dial(ctx, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.CloseNow() })
		return c
	}
	readUntilClose := func(c *websocket.Conn) (last *parleyv1.Frame, status websocket.StatusCode) {
		for {
			ctx, cancel := context.WithTimeout(context.Background(), readTimeout)
			_, b, err := c.Read(ctx)
			cancel()
			if err != nil {
				return last, websocket.CloseStatus(err)
			}
			last, _ = wire.Decode(b)
		}
	}

	c := dial()
	ctx, cancel := context.WithTimeout(context.Background(), readTimeout)
	defer cancel()
	if err := c.Write(ctx, websocket.MessageBinary, helloBytes); err != nil {
		t.Fatal(err)
	}
	if _, b, err := c.Read(ctx); err != nil {
		t.Fatal(err)
	} else if f, _ := wire.Decode(b); f.GetWelcome() == nil {
		t.Fatalf("first frame %v", f)
	}
	if err := c.Close(websocket.StatusNormalClosure, "done"); err != nil {
		t.Errorf("client close: %v (the gateway must answer it)", err)
	}

	c = dial()
	if err := c.Write(ctx, websocket.MessageBinary, make([]byte, 1025)); err != nil {
		t.Fatal(err)
	}
	last, status := readUntilClose(c)
	if last.GetError().GetCode() != parleyv1.ErrorCode_ERROR_CODE_FRAME_TOO_LARGE || status != websocket.StatusMessageTooBig {
		t.Errorf("oversized message: last frame %v, close %v; want FRAME_TOO_LARGE, 1009", last, status)
	}

	c = dial() // no Hello: a text message before it is fatal
	if err := c.Write(ctx, websocket.MessageText, []byte("hi")); err != nil {
		t.Fatal(err)
	}
	last, status = readUntilClose(c)
	if last.GetError().GetCode() != parleyv1.ErrorCode_ERROR_CODE_BAD_FRAME || status != websocket.StatusNormalClosure {
		t.Errorf("text before Hello: last frame %v, close %v; want BAD_FRAME, 1000", last, status)
	}
}
