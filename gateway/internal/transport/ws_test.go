package transport

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/parleychat/parley/protocol/wire"
)

// tcpPair returns the two ends of a loopback TCP connection: the server's
// (accepted) and the client's.
func tcpPair(t testing.TB) (server, client *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	return s.(*net.TCPConn), c.(*net.TCPConn)
}

// clientFrame is one frame as a client sends it: masked with key unless
// unmasked is set (RFC 6455 §5.2, §5.3).
func clientFrame(b0 byte, payload []byte, unmasked bool) []byte {
	key := [4]byte{0x37, 0xfa, 0x21, 0x3d}
	out := []byte{b0}
	mbit := byte(0x80)
	if unmasked {
		mbit = 0
	}
	switch n := len(payload); {
	case n <= 125:
		out = append(out, mbit|byte(n))
	case n <= 0xffff:
		out = binary.BigEndian.AppendUint16(append(out, mbit|126), uint16(n))
	default:
		out = binary.BigEndian.AppendUint64(append(out, mbit|127), uint64(n))
	}
	if unmasked {
		return append(out, payload...)
	}
	out = append(out, key[:]...)
	for i, c := range payload {
		out = append(out, c^key[i%4])
	}
	return out
}

// serverFrame reads one frame the server sent: it must be unmasked.
func serverFrame(t testing.TB, c net.Conn) (b0 byte, payload []byte) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var h [2]byte
	if _, err := io.ReadFull(c, h[:]); err != nil {
		t.Fatalf("read server frame: %v", err)
	}
	if h[1]&0x80 != 0 {
		t.Fatal("server frame is masked")
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var e [2]byte
		_, _ = io.ReadFull(c, e[:])
		n = uint64(binary.BigEndian.Uint16(e[:]))
	case 127:
		var e [8]byte
		_, _ = io.ReadFull(c, e[:])
		n = binary.BigEndian.Uint64(e[:])
	}
	payload = make([]byte, n)
	if _, err := io.ReadFull(c, payload); err != nil {
		t.Fatalf("read server payload: %v", err)
	}
	return h[0], payload
}

func mustRead(t *testing.T, w *WebSocket) []byte {
	t.Helper()
	_ = w.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, err := w.ReadFrame()
	if err != nil {
		t.Fatalf("ReadFrame: %v", err)
	}
	defer wire.PutRaw(b)
	return append([]byte(nil), *b...)
}

func write(t *testing.T, c net.Conn, frames ...[]byte) {
	t.Helper()
	if _, err := c.Write(bytes.Join(frames, nil)); err != nil {
		t.Fatal(err)
	}
}

// TestWebSocketRead: binary messages of every length encoding, a message in
// fragments with a ping between them (answered with a pong carrying the
// ping's payload, before the message is complete), a text message
// (consumed and refused, the next message still read), an empty message.
func TestWebSocketRead(t *testing.T) {
	sc, cc := tcpPair(t)
	w := NewWebSocket(sc, 1<<20, Upgrade{})
	for _, n := range []int{1, 125, 126, 0xffff, 0x10000, 300000} {
		p := bytes.Repeat([]byte{byte(n)}, n)
		go cc.Write(clientFrame(0x82, p, false)) // a large one blocks until read
		if got := mustRead(t, w); !bytes.Equal(got, p) {
			t.Fatalf("%d-byte message read as %d bytes", n, len(got))
		}
	}

	write(t, cc, clientFrame(0x02, []byte("hel"), false), clientFrame(0x89, []byte("nonce"), false),
		clientFrame(0x00, []byte("lo "), false), clientFrame(0x80, []byte("world"), false))
	if got := mustRead(t, w); string(got) != "hello world" {
		t.Errorf("fragmented message read as %q", got)
	}
	if b0, p := serverFrame(t, cc); b0 != 0x8a || string(p) != "nonce" {
		t.Errorf("answer to ping: %#x %q, want a pong with its payload", b0, p)
	}

	write(t, cc, clientFrame(0x01, []byte("text "), false), clientFrame(0x80, []byte("message"), false),
		clientFrame(0x82, nil, false), clientFrame(0x82, []byte("after"), false))
	if _, err := w.ReadFrame(); !errors.Is(err, ErrTextMessage) || !errors.Is(err, wire.ErrBadFrame) {
		t.Errorf("text message: %v, want ErrTextMessage", err)
	}
	if _, err := w.ReadFrame(); !errors.Is(err, wire.ErrEmptyFrame) {
		t.Errorf("empty message: %v, want ErrEmptyFrame", err)
	}
	if got := mustRead(t, w); string(got) != "after" {
		t.Errorf("message after a text one read as %q", got)
	}
}

// TestWebSocketBuffered: bytes the HTTP server read past the upgrade
// request (a frame and a half) come first, then the socket's.
func TestWebSocketBuffered(t *testing.T) {
	sc, cc := tcpPair(t)
	first, second := clientFrame(0x82, []byte("first"), false), clientFrame(0x82, []byte("second"), false)
	w := NewWebSocket(sc, 1<<20, Upgrade{Buffered: append(first, second[:4]...)})
	write(t, cc, second[4:])
	if got := mustRead(t, w); string(got) != "first" {
		t.Errorf("first message %q", got)
	}
	if got := mustRead(t, w); string(got) != "second" {
		t.Errorf("second message %q", got)
	}
	if w.pre != nil {
		t.Error("the buffered bytes are still held after they were read")
	}
}

// TestWebSocketIdleHoldsNothing: between messages (parked in ReadFrame or
// Wait) a connection holds no buffer: neither a read buffer nor a write
// tail, whatever it read and wrote before.
func TestWebSocketIdleHoldsNothing(t *testing.T) {
	sc, cc := tcpPair(t)
	w := NewWebSocket(sc, 1<<20, Upgrade{Buffered: clientFrame(0x82, []byte("x"), false)})
	mustRead(t, w)
	write(t, cc, clientFrame(0x89, []byte("ping"), false), clientFrame(0x82, bytes.Repeat([]byte("y"), 70000), false))
	if err := w.Wait(); err != nil {
		t.Fatal(err)
	}
	serverFrame(t, cc) // the pong
	mustRead(t, w)
	if err := w.Write(frames("event")); err != nil {
		t.Fatal(err)
	}
	serverFrame(t, cc)
	// What the struct holds beyond fixed-size arrays: all of it nil.
	if w.pre != nil || w.tail != nil || w.err != nil {
		t.Errorf("idle connection holds pre=%d bytes, tail=%v, err=%v", len(w.pre), w.tail, w.err)
	}
	// Parked waiting for a frame: a timeout before its first byte leaves
	// the connection usable.
	_ = w.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	if _, err := w.ReadFrame(); !IsTimeout(err) {
		t.Fatalf("idle read: %v, want a timeout", err)
	}
	write(t, cc, clientFrame(0x82, []byte("later"), false))
	if got := mustRead(t, w); string(got) != "later" {
		t.Errorf("after a timeout: %q", got)
	}
}

// TestWebSocketWait: Wait answers pings and returns when a data frame
// begins, which the next ReadFrame then reads whole; a close is what Wait
// and every later read return.
func TestWebSocketWait(t *testing.T) {
	sc, cc := tcpPair(t)
	w := NewWebSocket(sc, 1<<20, Upgrade{})
	write(t, cc, clientFrame(0x89, []byte("1"), false), clientFrame(0x8a, []byte("unasked pong"), false),
		clientFrame(0x82, []byte("data"), false))
	_ = w.SetReadDeadline(time.Now().Add(5 * time.Second))
	if err := w.Wait(); err != nil {
		t.Fatal(err)
	}
	if err := w.Wait(); err != nil {
		t.Fatal("second Wait:", err)
	}
	if b0, p := serverFrame(t, cc); b0 != 0x8a || string(p) != "1" {
		t.Errorf("pong %#x %q", b0, p)
	}
	if got := mustRead(t, w); string(got) != "data" {
		t.Errorf("message after Wait %q", got)
	}
	write(t, cc, clientFrame(0x88, binary.BigEndian.AppendUint16(nil, 1001), false))
	if err := w.Wait(); !errors.Is(err, io.EOF) {
		t.Errorf("Wait after a close: %v, want io.EOF", err)
	}
	if _, err := w.ReadFrame(); !errors.Is(err, io.EOF) {
		t.Errorf("read after a close: %v, want io.EOF", err)
	}
}

// TestWebSocketClose: the closing handshake (RFC 6455 §5.5.1, §7): the
// client's status is echoed, an empty close is answered with an empty
// one, a close the server begins carries 1000; then the socket closes.
func TestWebSocketClose(t *testing.T) {
	for _, tc := range []struct {
		name   string
		client []byte // the client's close frame; nil: the server closes first
		want   []byte // the server's close payload
	}{
		{"client going away", clientFrame(0x88, append(binary.BigEndian.AppendUint16(nil, 1001), "bye"...), false), []byte{0x03, 0xe9}},
		{"client without status", clientFrame(0x88, nil, false), []byte{}},
		{"client application code", clientFrame(0x88, binary.BigEndian.AppendUint16(nil, 4000), false), []byte{0x0f, 0xa0}},
		{"server first", nil, []byte{0x03, 0xe8}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sc, cc := tcpPair(t)
			w := NewWebSocket(sc, 1<<20, Upgrade{})
			if tc.client != nil {
				write(t, cc, tc.client)
				if _, err := w.ReadFrame(); !errors.Is(err, io.EOF) {
					t.Fatalf("read after the client's close: %v", err)
				}
			}
			done := make(chan error)
			go func() { done <- w.Close() }()
			b0, p := serverFrame(t, cc)
			if b0 != 0x88 || !bytes.Equal(p, tc.want) {
				t.Errorf("server close frame %#x %x, want 0x88 %x", b0, p, tc.want)
			}
			if tc.client == nil {
				// The client answers; the server's close then ends at once.
				write(t, cc, clientFrame(0x88, p, false))
			}
			cc.CloseWrite()
			if _, err := cc.Read(make([]byte, 1)); err != io.EOF {
				t.Errorf("after the close frame: %v, want EOF", err)
			}
			if err := <-done; err != nil {
				t.Errorf("Close: %v", err)
			}
		})
	}
}

// TestWebSocketProtocolErrors: what RFC 6455 makes a client fail the
// connection for ends the read side with ErrProtocol and a close frame
// carrying 1002 (1007 for a close reason that is not UTF-8).
func TestWebSocketProtocolErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		bytes []byte
		code  uint16
	}{
		{"unmasked frame", clientFrame(0x82, []byte("x"), true), 1002},
		{"reserved bit", clientFrame(0xc2, []byte("x"), false), 1002},
		{"reserved data opcode", clientFrame(0x83, []byte("x"), false), 1002},
		{"reserved control opcode", clientFrame(0x8b, nil, false), 1002},
		{"fragmented ping", clientFrame(0x09, nil, false), 1002},
		{"ping above 125 bytes", clientFrame(0x89, make([]byte, 126), false), 1002},
		{"continuation without a message", clientFrame(0x80, []byte("x"), false), 1002},
		{"message inside a fragmented one", append(clientFrame(0x02, []byte("x"), false), clientFrame(0x82, []byte("y"), false)...), 1002},
		{"one-byte close", clientFrame(0x88, []byte{3}, false), 1002},
		{"close code 1005", clientFrame(0x88, []byte{0x03, 0xed}, false), 1002},
		{"close code 999", clientFrame(0x88, []byte{0x03, 0xe7}, false), 1002},
		{"close reason not UTF-8", clientFrame(0x88, []byte{0x03, 0xe8, 0xff}, false), 1007},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sc, cc := tcpPair(t)
			w := NewWebSocket(sc, 1<<20, Upgrade{})
			write(t, cc, tc.bytes)
			_ = w.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := w.ReadFrame(); !errors.Is(err, ErrProtocol) {
				t.Fatalf("ReadFrame: %v, want ErrProtocol", err)
			}
			go w.Close()
			if b0, p := serverFrame(t, cc); b0 != 0x88 || len(p) != 2 || binary.BigEndian.Uint16(p) != tc.code {
				t.Errorf("close frame %#x %x, want status %d", b0, p, tc.code)
			}
		})
	}
}

// TestWebSocketTooLarge: a message above the limit, in one frame or by its
// fragments' sum, is ErrFrameTooLarge as soon as a header says so (before
// its payload is read) and the close carries 1009.
func TestWebSocketTooLarge(t *testing.T) {
	for name, msg := range map[string][]byte{
		"one frame": clientFrame(0x82, make([]byte, 1025), false)[:20],
		"fragments": append(clientFrame(0x02, make([]byte, 1000), false), clientFrame(0x80, make([]byte, 25), false)[:10]...),
	} {
		t.Run(name, func(t *testing.T) {
			sc, cc := tcpPair(t)
			w := NewWebSocket(sc, 1<<20, Upgrade{})
			w.SetReadLimit(1024)
			write(t, cc, msg)
			_ = w.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := w.ReadFrame(); !errors.Is(err, wire.ErrFrameTooLarge) {
				t.Fatalf("ReadFrame: %v, want ErrFrameTooLarge", err)
			}
			go w.Close()
			if b0, p := serverFrame(t, cc); b0 != 0x88 || binary.BigEndian.Uint16(p) != 1009 {
				t.Errorf("close frame %#x %x, want status 1009", b0, p)
			}
		})
	}
	// At the limit exactly: read.
	sc, cc := tcpPair(t)
	w := NewWebSocket(sc, 1024, Upgrade{})
	write(t, cc, clientFrame(0x02, make([]byte, 1000), false), clientFrame(0x80, make([]byte, 24), false))
	if got := mustRead(t, w); len(got) != 1024 {
		t.Errorf("message at the limit read as %d bytes", len(got))
	}
}

// frames length-prefixes each payload (the form Write and TryWrite take).
func frames(payloads ...string) []byte {
	var out []byte
	for _, p := range payloads {
		out = binary.BigEndian.AppendUint32(out, uint32(len(p)))
		out = append(out, p...)
	}
	return out
}

// TestTryWritePartial: a TryWrite the socket takes only part of reports
// so and keeps the rest; the next Write sends it first, then its own
// frames: the client reads every message whole and in order. For a
// WebSocket and for a plain TCP stream.
func TestTryWritePartial(t *testing.T) {
	for _, kind := range []string{"ws", "tcp"} {
		t.Run(kind, func(t *testing.T) {
			sc, cc := tcpPair(t)
			_ = sc.SetWriteBuffer(4096)
			_ = cc.SetReadBuffer(4096)
			var tr interface {
				TryWriter
				Write([]byte) error
			}
			if kind == "ws" {
				tr = NewWebSocket(sc, 1<<20, Upgrade{})
			} else {
				tr = NewStream(sc, 1<<20, "tcp")
			}
			var want []string
			var batch []byte
			for i := range 400 {
				p := string(bytes.Repeat([]byte{byte('a' + i%26)}, 100+i))
				want = append(want, p)
				batch = append(batch, frames(p)...)
			}
			// The client reads nothing yet: the socket takes a part.
			sent, err := tr.TryWrite(batch)
			if err != nil || sent {
				t.Fatalf("TryWrite of %d bytes to a small socket: sent %v, %v; want a part", len(batch), sent, err)
			}
			if _, err := tr.TryWrite(frames("x")); !errors.Is(err, ErrNoTryWrite) {
				t.Errorf("TryWrite with a rest kept: %v, want ErrNoTryWrite", err)
			}
			done := make(chan error, 1)
			go func() { done <- tr.Write(frames("last")) }()
			want = append(want, "last")
			for i, p := range want {
				var got []byte
				if kind == "ws" {
					var b0 byte
					b0, got = serverFrame(t, cc)
					if b0 != 0x82 {
						t.Fatalf("message %d: frame %#x", i, b0)
					}
				} else {
					_ = cc.SetReadDeadline(time.Now().Add(5 * time.Second))
					r := wire.NewReader(cc, 1<<20)
					b, err := r.ReadRaw()
					if err != nil {
						t.Fatalf("message %d: %v", i, err)
					}
					got = append([]byte(nil), *b...)
				}
				if string(got) != p {
					t.Fatalf("message %d: %d bytes %.10q, want %d bytes %.10q", i, len(got), got, len(p), p)
				}
			}
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			// Nothing kept: the next TryWrite goes straight out.
			if sent, err := tr.TryWrite(frames("again")); !sent || err != nil {
				t.Errorf("TryWrite after the rest went: %v %v", sent, err)
			}
		})
	}
}

// TestTryWriteNotTLS: over TLS there is no TryWrite (a record cannot be
// cut), nor for a WebSocket whose connection has no socket of its own.
func TestTryWriteNotTLS(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if _, err := NewWebSocket(a, 0, Upgrade{}).TryWrite(frames("x")); !errors.Is(err, ErrNoTryWrite) {
		t.Errorf("TryWrite without a socket: %v", err)
	}
}

// FuzzWebSocketRead: whatever bytes a client sends, the reader returns
// messages within the limit or errors, never panics, and always ends.
func FuzzWebSocketRead(f *testing.F) {
	f.Add(clientFrame(0x82, []byte("hello"), false))
	f.Add(append(clientFrame(0x02, []byte("he"), false), append(clientFrame(0x89, []byte("p"), false), clientFrame(0x80, []byte("llo"), false)...)...))
	f.Add(clientFrame(0x81, []byte("text"), false))
	f.Add(clientFrame(0x88, []byte{0x03, 0xe8}, false))
	f.Add(clientFrame(0x82, make([]byte, 200), false))
	f.Add(clientFrame(0x82, make([]byte, 70000), false)[:30])
	f.Add([]byte{0x82, 0xff, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		a, b := net.Pipe()
		b.Close() // the peer is gone: reads end, pongs fail
		defer a.Close()
		w := NewWebSocket(a, 4096, Upgrade{Buffered: data})
		for range 1000 {
			m, err := w.ReadFrame()
			if err != nil {
				if errors.Is(err, wire.ErrBadFrame) || errors.Is(err, wire.ErrEmptyFrame) {
					continue
				}
				return
			}
			if len(*m) == 0 || len(*m) > 4096 {
				t.Fatalf("message of %d bytes", len(*m))
			}
			wire.PutRaw(m)
		}
		t.Fatal("the reader did not end")
	})
}
