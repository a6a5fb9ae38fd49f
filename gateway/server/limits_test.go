package server_test

import (
	"crypto/tls"
	"encoding/binary"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/parleychat/parley/gateway/server"
	"github.com/parleychat/parley/libs/testenv"
	"github.com/parleychat/parley/protocol/parleyv1"
)

// expectRefused checks that c's first frame is the fatal Error code with a
// retry hint in [minRetry, maxRetry], and that the gateway closes c.
func (c *client) expectRefused(code parleyv1.ErrorCode, minRetry, maxRetry uint32) {
	c.t.Helper()
	f := c.recv()
	e := f.GetError()
	if e.GetCode() != code || !e.GetFatal() || f.GetRequestId() != 0 {
		c.t.Fatalf("first frame %v, want a fatal %v", f, code)
	}
	if r := e.GetRetryAfterMs(); r < minRetry || r > maxRetry {
		c.t.Errorf("retry_after_ms %d, want %d to %d", r, minRetry, maxRetry)
	}
	c.expectClosed()
}

// noExempt applies connection caps to loopback clients too (by default a
// local proxy's address is exempt from the per-address caps).
func noExempt(c *server.Config) { c.ConnLimitExempt = nil }

// TestUnauthConnsPerAddr: connections without a session from one address
// are capped (-max-unauth-conns-per-addr): the next one, TCP or
// WebSocket, gets a fatal RATE_LIMITED with a retry hint as its first
// frame; logging in or closing frees a place, logging out takes one again.
func TestUnauthConnsPerAddr(t *testing.T) {
	e := startGateway(t, func(c *server.Config) { noExempt(c); c.MaxUnauthConnsPerAddr = 3 })
	wsURL := "ws://" + e.srv.HTTPAddr().String() + server.WebSocketPath
	var unauth []*client
	for range 3 {
		c := dialTCP(t, e)
		c.hello()
		unauth = append(unauth, c)
	}
	dialTCP(t, e).expectRefused(parleyv1.ErrorCode_ERROR_CODE_RATE_LIMITED, 1000, 2000)
	dialWS(t, wsURL, nil).expectRefused(parleyv1.ErrorCode_ERROR_CODE_RATE_LIMITED, 1000, 2000)
	if n := e.metric("parley_gateway_connections_refused_total", map[string]string{"cap": "unauth_per_addr"}); n != 2 {
		t.Errorf("refused metric = %v, want 2", n)
	}

	// A login frees a place: one more connection gets in, then the cap
	// holds again.
	unauth[0].login("alice", noFeed)
	c := dialWS(t, wsURL, nil)
	c.hello()
	dialTCP(t, e).expectRefused(parleyv1.ErrorCode_ERROR_CODE_RATE_LIMITED, 1000, 2000)

	// A logout makes the connection unauthenticated again: it stays, and
	// the cap now counts it.
	if r := unauth[0].request(&parleyv1.Frame{Body: &parleyv1.Frame_Logout{Logout: &parleyv1.LogoutRequest{}}}); r.GetOk() == nil {
		t.Fatalf("logout: %v", r)
	}
	unauth[0].ping(1)
	unauth[1].close()
	unauth[2].close()
	c.close()
	// Three closed, one logged out: two places, once the gateway has seen
	// the closes.
	var got []*client
	testenv.Eventually(t, 5*time.Second, "places freed by closed connections", func() bool {
		n := dialTCP(t, e)
		n.send(&parleyv1.Frame{RequestId: 1, Body: &parleyv1.Frame_Hello{Hello: &parleyv1.Hello{Versions: []uint32{1}}}})
		if n.recv().GetWelcome() == nil {
			n.close()
			return false
		}
		got = append(got, n)
		return len(got) == 2
	})
	dialTCP(t, e).expectRefused(parleyv1.ErrorCode_ERROR_CODE_RATE_LIMITED, 1000, 2000)
	unauth[0].ping(2)
}

// TestConnsPerAddr: all connections from one address, with a session or
// not, are capped (-max-conns-per-addr).
func TestConnsPerAddr(t *testing.T) {
	e := startGateway(t, func(c *server.Config) { noExempt(c); c.MaxConnsPerAddr = 2 })
	a := dialTCP(t, e)
	a.login("alice", noFeed)
	b := dialTCP(t, e)
	b.login("bob", noFeed)
	dialTCP(t, e).expectRefused(parleyv1.ErrorCode_ERROR_CODE_RATE_LIMITED, 5000, 10000)
	a.ping(1)
	b.ping(1)
}

// TestMaxConns: above -max-conns every new connection, TCP or WebSocket,
// gets a fatal UNAVAILABLE as its first frame; exempt addresses count too.
func TestMaxConns(t *testing.T) {
	e := startGateway(t, func(c *server.Config) { c.MaxConns = 2 })
	a := dialTCP(t, e)
	a.login("alice", noFeed)
	b := dialTCP(t, e)
	b.hello()
	dialTCP(t, e).expectRefused(parleyv1.ErrorCode_ERROR_CODE_UNAVAILABLE, 0, 0)
	dialWS(t, "ws://"+e.srv.HTTPAddr().String()+server.WebSocketPath, nil).expectRefused(parleyv1.ErrorCode_ERROR_CODE_UNAVAILABLE, 0, 0)
	if n := e.metric("parley_gateway_connections_refused_total", map[string]string{"cap": "total"}); n != 2 {
		t.Errorf("refused metric = %v, want 2", n)
	}
	a.ping(1)
	b.login("bob", noFeed)
}

// TestMaxConnsTLS: over TLS the refusal comes right after the TLS
// handshake, as the connection's first frame.
func TestMaxConnsTLS(t *testing.T) {
	certFile, keyFile, pool := testenv.SelfSigned(t)
	e := startGateway(t, func(c *server.Config) { c.TLSCert, c.TLSKey, c.MaxConns = certFile, keyFile, 1 })
	conf := &tls.Config{RootCAs: pool}
	a := dialTLS(t, e, conf)
	a.hello()
	dialTLS(t, e, conf).expectRefused(parleyv1.ErrorCode_ERROR_CODE_UNAVAILABLE, 0, 0)
	a.ping(1)
}

// TestConnLimitExempt: the per-address caps do not apply to exempt
// sources (loopback by default: a proxy on the same host).
func TestConnLimitExempt(t *testing.T) {
	e := startGateway(t, func(c *server.Config) { c.MaxUnauthConnsPerAddr = 1; c.MaxConnsPerAddr = 1 })
	for range 3 {
		dialTCP(t, e).hello()
	}
}

// TestPreloginFrameLimit: until a session starts, and again after logout,
// frames above -max-prelogin-frame-size are a fatal FRAME_TOO_LARGE; with
// a session, frames up to -max-frame-size are read.
func TestPreloginFrameLimit(t *testing.T) {
	e := startGateway(t, func(c *server.Config) { c.PreloginFrameSize = 1024 })
	big := func(n int) *parleyv1.Frame {
		return &parleyv1.Frame{Body: &parleyv1.Frame_Who{Who: &parleyv1.WhoRequest{Cursor: strings.Repeat("x", n)}}}
	}
	for _, tt := range []struct {
		name string
		dial func() *client
	}{
		{"tcp", func() *client { return dialTCP(t, e) }},
		{"ws", func() *client { return dialWS(t, "ws://"+e.srv.HTTPAddr().String()+server.WebSocketPath, nil) }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			// Before Hello.
			c := tt.dial()
			c.send(&parleyv1.Frame{RequestId: 1, Body: &parleyv1.Frame_Hello{Hello: &parleyv1.Hello{Versions: []uint32{1}, Client: strings.Repeat("x", 1100)}}})
			f := c.expectError(parleyv1.ErrorCode_ERROR_CODE_FRAME_TOO_LARGE, true)
			if !strings.Contains(f.GetError().GetMessage(), "1024-byte limit before login") {
				t.Errorf("message %q", f.GetError().GetMessage())
			}
			c.expectClosed()

			// After Hello, before login.
			c = tt.dial()
			c.hello()
			c.nextID++
			c.send(big(1100))
			c.expectError(parleyv1.ErrorCode_ERROR_CODE_FRAME_TOO_LARGE, true)
			c.expectClosed()

			// With a session: read and answered (the stand-in's own
			// answer to a cursor it did not make).
			c = tt.dial()
			c.login("alice", noFeed)
			if r := c.request(big(100_000)); r.GetError().GetCode() != parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT {
				t.Fatalf("a 100 kB frame with a session: %v", r)
			}
			// After logout the limit is back.
			if r := c.request(&parleyv1.Frame{Body: &parleyv1.Frame_Logout{Logout: &parleyv1.LogoutRequest{}}}); r.GetOk() == nil {
				t.Fatalf("logout: %v", r)
			}
			c.nextID++
			c.send(big(1100))
			c.expectError(parleyv1.ErrorCode_ERROR_CODE_FRAME_TOO_LARGE, true)
			c.expectClosed()
		})
	}
}

// stalledConns opens n connections that each complete the handshake, then
// announce a 1 MiB frame and send one byte of it, as the attacker
// did. It returns them still open.
func stalledConns(tb testing.TB, addr string, n int) []net.Conn {
	tb.Helper()
	hello := []byte{0, 0, 0, 0x0a, 0x08, 0x01, 0x12, 0x06, 0x0a, 0x01, 0x01, 0x12, 0x01, 0x78} // docs/protocol.md §14
	stall := append(binary.BigEndian.AppendUint32(nil, 1<<20), 0x08)
	conns := make([]net.Conn, 0, n)
	for range n {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			tb.Fatal(err)
		}
		conns = append(conns, c)
		if _, err := c.Write(append(hello, stall...)); err != nil {
			tb.Fatal(err)
		}
	}
	return conns
}

// BenchmarkStalledFrame reports the gateway's heap per connection that
// sent Hello, a length prefix announcing 1 MiB and one byte (the issue's
// attack: 1,500 of them took a gateway from 85 MiB to 1.6 GiB when the
// whole frame was allocated on the prefix). The heap is the whole test
// process's (gateway and client sockets), measured after a GC once the
// gateway had a moment to read what was sent; goroutine stacks are
// reported apart (a reader parked inside a frame has a 4 KiB stack, also
// before this change for a frame that fits the first buffer; an idle one
// 2 KiB).
func BenchmarkStalledFrame(b *testing.B) {
	const n = 1000
	e := startGateway(b, func(c *server.Config) { c.MaxConns = 0; c.MaxUnauthConnsPerAddr = 0; c.MaxConnsPerAddr = 0 })
	addr := e.srv.TCPAddr().String()
	var perConn, stackPerConn float64
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		conns := stalledConns(b, addr, n)
		time.Sleep(500 * time.Millisecond) // let the gateway read; not an assertion
		runtime.GC()
		runtime.ReadMemStats(&after)
		perConn = float64(int64(after.HeapInuse)-int64(before.HeapInuse)) / n
		stackPerConn = float64(int64(after.StackInuse)-int64(before.StackInuse)) / n
		for _, c := range conns {
			_ = c.Close()
		}
		testenv.Eventually(b, 10*time.Second, "stalled connections gone", func() bool {
			return e.metric("parley_gateway_connections", nil) == 0
		})
	}
	b.ReportMetric(perConn, "heap-B/conn")
	b.ReportMetric(stackPerConn, "stack-B/conn")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkIdleStack reports the goroutine stack per connection that
// completed the handshake, answered a Ping and went quiet: the state most
// of a gateway's connections are in. Its reader waits for the next frame;
// it must stay within Go's initial 2 KiB stack (docs/benchmarks.md).
func BenchmarkIdleStack(b *testing.B) {
	const n = 1000
	e := startGateway(b, func(c *server.Config) { c.MaxConns = 0; c.MaxUnauthConnsPerAddr = 0; c.MaxConnsPerAddr = 0 })
	addr := e.srv.TCPAddr().String()
	hello := []byte{0, 0, 0, 0x0a, 0x08, 0x01, 0x12, 0x06, 0x0a, 0x01, 0x01, 0x12, 0x01, 0x78} // docs/protocol.md §14
	ping := []byte{0, 0, 0, 0x06, 0x08, 0x02, 0x2a, 0x02, 0x08, 0x07}                          // request_id 2, ping{nonce 7}
	var stackPerConn float64
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		conns := make([]net.Conn, 0, n)
		for range n {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				b.Fatal(err)
			}
			conns = append(conns, c)
			if _, err := c.Write(append(append([]byte(nil), hello...), ping...)); err != nil {
				b.Fatal(err)
			}
		}
		for _, c := range conns {
			// Welcome and Pong: both frames answered.
			buf := make([]byte, 4096)
			got := 0
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
			for frames := 0; frames < 2; {
				k, err := c.Read(buf[got:])
				if err != nil {
					b.Fatal(err)
				}
				got += k
				for got >= 4 {
					size := int(binary.BigEndian.Uint32(buf)) + 4
					if got < size {
						break
					}
					copy(buf, buf[size:got])
					got -= size
					frames++
				}
			}
		}
		time.Sleep(200 * time.Millisecond) // let the gateway's readers park; not an assertion
		runtime.GC()
		runtime.ReadMemStats(&after)
		stackPerConn = float64(int64(after.StackInuse)-int64(before.StackInuse)) / n
		for _, c := range conns {
			_ = c.Close()
		}
		testenv.Eventually(b, 10*time.Second, "idle connections gone", func() bool {
			return e.metric("parley_gateway_connections", nil) == 0
		})
	}
	b.ReportMetric(stackPerConn, "stack-B/conn")
	b.ReportMetric(0, "ns/op")
}
