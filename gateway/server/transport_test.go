package server_test

import (
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/parleychat/parley/gateway/server"
	"github.com/parleychat/parley/libs/subject"
	"github.com/parleychat/parley/libs/testenv"
	"github.com/parleychat/parley/protocol/parleyv1"
	"github.com/parleychat/parley/protocol/wire"
)

func TestWebSocket(t *testing.T) {
	e := startGateway(t, nil)
	url := "ws://" + e.srv.HTTPAddr().String() + server.WebSocketPath
	alice := dialWS(t, url, nil)
	alice.login("alice", nil)
	users, _ := alice.snapshot()
	if got := usernames(users); len(got) != 1 || got[0] != "alice" {
		t.Errorf("snapshot %v", got)
	}
	bob := dialTCP(t, e)
	bob.login("bob", nil)
	// Bob's snapshot is read before alice leaves: taken later (a loaded
	// machine), it would already show her gone, and rightly no change
	// would follow.
	bob.snapshot()
	alice.change("bob", true)

	// Frames travel only in binary messages.
	if err := alice.writeText("hello"); err != nil {
		t.Fatal(err)
	}
	alice.expectError(parleyv1.ErrorCode_ERROR_CODE_BAD_FRAME, false)
	alice.ping(4)

	// Auth sees the WebSocket client's address too.
	if got := e.auth.Logins()[0].header.Get(subject.HeaderRemoteAddr); !strings.HasPrefix(got, "127.0.0.1:") {
		t.Errorf("remote addr header %q", got)
	}

	// Plain HTTP on the WebSocket path is told to upgrade; any other path
	// is not found. No answer on the HTTP port may be sniffed into
	// something a browser runs (the 404 echoes the path).
	for path, status := range map[string]int{server.WebSocketPath: http.StatusUpgradeRequired, "/<script>x</script>": http.StatusNotFound} {
		resp, err := http.Get("http://" + e.srv.HTTPAddr().String() + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != status || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET %s: %d, X-Content-Type-Options %q; want %d, nosniff", path, resp.StatusCode, resp.Header.Get("X-Content-Type-Options"), status)
		}
	}

	alice.close()
	bob.change("alice", false)
}

// TestTLS: the SDK's framing over TLS, with the TLS 1.3 records protected
// by the gateway (the default), by crypto/tls (-tls-records=go), and over
// TLS 1.2 (always crypto/tls's).
func TestTLS(t *testing.T) {
	for _, v := range []struct {
		name    string
		records string
		maxVers uint16
	}{
		{"gateway's records", server.TLSRecordsParley, 0},
		{"crypto/tls records", server.TLSRecordsGo, 0},
		{"TLS 1.2", server.TLSRecordsParley, tls.VersionTLS12},
	} {
		t.Run(v.name, func(t *testing.T) { testTLS(t, v.records, v.maxVers) })
	}
}

func testTLS(t *testing.T, records string, maxVers uint16) {
	certFile, keyFile, pool := testenv.SelfSigned(t)
	e := startGateway(t, func(c *server.Config) { c.TLSCert, c.TLSKey, c.TLSRecords = certFile, keyFile, records })
	conf := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12, MaxVersion: maxVers}

	alice := dialTLS(t, e, conf)
	alice.login("alice", nil)
	alice.snapshot()

	httpClient := &http.Client{Transport: &http.Transport{TLSClientConfig: conf}}
	bob := dialWS(t, "wss://"+e.srv.HTTPAddr().String()+server.WebSocketPath, httpClient)
	bob.login("bob", nil)
	alice.change("bob", true)
	if n := e.metric("parley_gateway_connections", map[string]string{"transport": "tls"}); n != 1 {
		t.Errorf("tls connections metric = %v", n)
	}
	// Who protects the records shows on /metrics: the gateway for TLS 1.3
	// unless -tls-records=go, crypto/tls otherwise.
	want := "gateway"
	if records == server.TLSRecordsGo || maxVers == tls.VersionTLS12 {
		want = "crypto_tls"
	}
	for _, layer := range []string{"gateway", "crypto_tls"} {
		n := e.metric("parley_gateway_tls_connections_total", map[string]string{"records": layer})
		if (layer == want) != (n == 1) {
			t.Errorf("parley_gateway_tls_connections_total{records=%q} = %v, want the connection counted as %q", layer, n, want)
		}
	}

	// A plaintext client gets nothing it can read as a frame.
	c, err := net.Dial("tcp", e.srv.TCPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	b, _ := proto.Marshal(&parleyv1.Frame{RequestId: 1, Body: &parleyv1.Frame_Hello{Hello: &parleyv1.Hello{Versions: []uint32{1}}}})
	_, _ = c.Write(append([]byte{0, 0, 0, byte(len(b))}, b...))
	_ = c.SetReadDeadline(time.Now().Add(readTimeout))
	buf := make([]byte, 1024)
	n, _ := c.Read(buf)
	if n > 0 && buf[0] != 0x15 { // a TLS alert record, if anything
		t.Errorf("plaintext client read %x", buf[:n])
	}
}

// flipConn flips a bit in what it writes once corrupt is set: a TLS
// record damaged on the way.
type flipConn struct {
	net.Conn
	corrupt atomic.Bool
}

func (f *flipConn) Write(b []byte) (int, error) {
	if f.corrupt.Load() && len(b) > 0 {
		b = append([]byte(nil), b...)
		b[len(b)-1] ^= 1
	}
	return f.Conn.Write(b)
}

// TestTLSCorruptedRecord: a TLS 1.3 record that fails authentication ends
// its connection (the gateway's own record layer sends bad_record_mac and
// closes), and the gateway serves other TLS clients as before.
func TestTLSCorruptedRecord(t *testing.T) {
	certFile, keyFile, pool := testenv.SelfSigned(t)
	e := startGateway(t, func(c *server.Config) { c.TLSCert, c.TLSKey = certFile, keyFile })
	conf := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13}

	raw, err := net.Dial("tcp", e.srv.TCPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	fc := &flipConn{Conn: raw}
	cc := conf.Clone()
	cc.ServerName = "127.0.0.1"
	tc := tls.Client(fc, cc)
	mallory := newStreamClient(t, tc)
	mallory.login("mallory", nil)
	mallory.ping(1)
	fc.corrupt.Store(true)
	_ = mallory.write([]byte{8, 1}) // any frame: its record arrives damaged
	for {
		_, err := mallory.read(readTimeout)
		if err == nil {
			continue
		}
		if !strings.Contains(err.Error(), "bad record MAC") {
			t.Fatalf("client read %v, want the gateway's bad_record_mac alert", err)
		}
		break
	}

	alice := dialTLS(t, e, conf)
	alice.login("alice", nil)
	alice.ping(2)
	for i := uint64(3); i < 50; i++ { // many records on the gateway's record layer
		alice.ping(i)
	}
}

func TestConfigValidation(t *testing.T) {
	ns := testenv.NATS(t)
	nc := testenv.Connect(t, ns)
	certFile, keyFile, _ := testenv.SelfSigned(t)
	tests := []struct {
		name   string
		mutate func(*server.Config)
		errHas string // empty: valid
	}{
		{"loopback defaults", func(c *server.Config) {}, ""},
		{"plaintext tcp on all interfaces", func(c *server.Config) { c.TCPAddr = "0.0.0.0:7420" },
			"refusing plaintext on 0.0.0.0:7420: give -tls-cert/-tls-key or -insecure"},
		{"plaintext http on empty host", func(c *server.Config) { c.HTTPAddr = ":7480" }, "refusing plaintext on :7480"},
		{"plaintext on a public name", func(c *server.Config) { c.TCPAddr = "example.com:7420" }, "refusing plaintext"},
		{"insecure allows it", func(c *server.Config) { c.TCPAddr, c.HTTPAddr, c.Insecure = "0.0.0.0:0", "0.0.0.0:0", true }, ""},
		{"tls allows it", func(c *server.Config) { c.TCPAddr, c.TLSCert, c.TLSKey = "0.0.0.0:0", certFile, keyFile }, ""},
		{"unknown -tls-records", func(c *server.Config) { c.TLSRecords = "kernel" }, "-tls-records must be parley or go"},
		{"ipv6 loopback", func(c *server.Config) { c.TCPAddr = "[::1]:0" }, ""},
		{"localhost", func(c *server.Config) { c.TCPAddr = "localhost:0" }, ""},
		{"cert without key", func(c *server.Config) { c.TLSCert = certFile }, "must be given together"},
		{"missing cert file", func(c *server.Config) { c.TLSCert, c.TLSKey = "/nonexistent", keyFile }, "tls"},
		{"no listener", func(c *server.Config) { c.TCPAddr, c.HTTPAddr = "", "" }, "no listener"},
		{"gateway id with a dot", func(c *server.Config) { c.GatewayID = "gw.1" }, "invalid gateway id"},
		{"gateway id with a wildcard", func(c *server.Config) { c.GatewayID = "gw>" }, "invalid gateway id"},
		{"generated gateway id", func(c *server.Config) { c.GatewayID = "" }, ""},
		{"zero idle timeout", func(c *server.Config) { c.IdleTimeout = 0 }, "-idle-timeout"},
		{"zero send queue", func(c *server.Config) { c.SendQueueFrames = 0 }, "-send-queue-frames"},
		{"prelogin frames above the frame limit", func(c *server.Config) { c.PreloginFrameSize = c.MaxFrameSize + 1 }, "-max-prelogin-frame-size"},
		{"zero prelogin frame size", func(c *server.Config) { c.PreloginFrameSize = 0 }, "-max-prelogin-frame-size"},
		{"negative connection cap", func(c *server.Config) { c.MaxConnsPerAddr = -1 }, "-max-conns-per-addr"},
		{"no connection caps", func(c *server.Config) { c.MaxConns, c.MaxConnsPerAddr, c.MaxUnauthConnsPerAddr = 0, 0, 0 }, ""},
		{"public http url", func(c *server.Config) { c.PublicHTTPURL = "https://chat.example.com/files/" }, ""},
		{"public http url without scheme", func(c *server.Config) { c.PublicHTTPURL = "chat.example.com:7480" }, "-public-http-url"},
		{"public ws url", func(c *server.Config) { c.PublicHTTPURL = "wss://chat.example.com" }, "-public-http-url"},
		{"public http url with a query", func(c *server.Config) { c.PublicHTTPURL = "https://chat.example.com/?x=1" }, "-public-http-url"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig()
			tt.mutate(&cfg)
			srv, err := server.New(cfg, server.Deps{NC: nc})
			switch {
			case tt.errHas == "" && err != nil:
				t.Fatalf("New: %v", err)
			case tt.errHas != "" && err == nil:
				t.Fatalf("New accepted the config, want an error with %q", tt.errHas)
			case tt.errHas != "" && !strings.Contains(err.Error(), tt.errHas):
				t.Fatalf("error %q does not contain %q", err, tt.errHas)
			}
			if srv != nil && srv.TCPAddr() != nil {
				t.Error("New bound a listener")
			}
			if srv != nil && tt.name == "generated gateway id" && !strings.Contains(srv.GatewayID(), "-") {
				t.Errorf("generated gateway id %q", srv.GatewayID())
			}
		})
	}
}

// TestConnLimitFlags: the connection caps' flags and their defaults.
func TestConnLimitFlags(t *testing.T) {
	d := server.DefaultConfig()
	if d.MaxConns <= 0 || d.MaxConnsPerAddr != 1024 || d.MaxUnauthConnsPerAddr != 256 || d.PreloginFrameSize != 16<<10 {
		t.Errorf("defaults: max-conns %d, per addr %d, unauth per addr %d, prelogin frame %d",
			d.MaxConns, d.MaxConnsPerAddr, d.MaxUnauthConnsPerAddr, d.PreloginFrameSize)
	}
	if got := fmt.Sprint(d.ConnLimitExempt); got != "[127.0.0.0/8 ::1/128]" {
		t.Errorf("default exempt %s", got)
	}
	for _, tt := range []struct {
		arg, want string // want "": a parse error
	}{
		{"10.0.0.5, 192.168.0.0/16,2001:db8::/48", "[10.0.0.5/32 192.168.0.0/16 2001:db8::/48]"},
		{"10.1.2.3/8", "[10.0.0.0/8]"},
		{"::ffff:10.0.0.1", "[10.0.0.1/32]"},
		{"", "[]"},
		{"proxy.local", ""},
	} {
		var c server.Config
		fs := flag.NewFlagSet("gateway", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		c.RegisterFlags(fs)
		err := fs.Parse([]string{"-conn-limit-exempt=" + tt.arg})
		switch {
		case tt.want == "" && err == nil:
			t.Errorf("%q accepted: %v", tt.arg, c.ConnLimitExempt)
		case tt.want != "" && err != nil:
			t.Errorf("%q: %v", tt.arg, err)
		case tt.want != "" && fmt.Sprint(c.ConnLimitExempt) != tt.want:
			t.Errorf("%q parsed as %v, want %s", tt.arg, c.ConnLimitExempt, tt.want)
		}
	}
}

func TestIdleTimeout(t *testing.T) {
	e := startGateway(t, func(c *server.Config) { c.IdleTimeout = 300 * time.Millisecond })
	c := dialTCP(t, e)
	w := c.hello()
	if w.GetIdleTimeoutMs() != 300 {
		t.Errorf("Welcome idle_timeout_ms = %d", w.GetIdleTimeoutMs())
	}
	s := c.login("alice", nil)
	connID := e.presence.connOf(s.GetSessionId()).GetConnId()
	c.expectError(parleyv1.ErrorCode_ERROR_CODE_IDLE_TIMEOUT, true)
	c.expectClosed()
	testenv.Eventually(t, 5*time.Second, "PresenceDisconnect after idle timeout", func() bool { return e.presence.Disconnected(connID) })
}

// TestSlowConsumer: a client that never reads is disconnected once its send
// queue overflows, while a client that reads gets every event, in order.
// What the slow client finally reads is whole frames: a frame the socket
// took only part of is completed before the SLOW_CONSUMER error, over TCP
// and over WebSocket.
func TestSlowConsumer(t *testing.T) {
	for _, transport := range []string{"tcp", "ws"} {
		t.Run(transport, func(t *testing.T) { testSlowConsumer(t, transport) })
	}
}

func testSlowConsumer(t *testing.T, transport string) {
	e := startGateway(t, func(c *server.Config) {
		// The fast client's backlog always fits; the slow client's cannot.
		c.SendQueueFrames = 256
		c.SendQueueBytes = 1 << 20
		c.WriteTimeout = 10 * time.Second // the queue must overflow before a write times out, even on a slow machine
	})
	// The slow client asks for a tiny receive buffer so the kernel cannot
	// absorb much for it.
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
	}}
	var slow *client
	if transport == "ws" {
		hc := &http.Client{Transport: &http.Transport{DialContext: d.DialContext}}
		slow = dialWS(t, "ws://"+e.srv.HTTPAddr().String()+server.WebSocketPath, hc)
	} else {
		raw, err := d.Dial("tcp", e.srv.TCPAddr().String())
		if err != nil {
			t.Fatal(err)
		}
		slow = newStreamClient(t, raw)
	}
	ss := slow.login("slow", nil)
	slow.snapshot()
	slowConn := e.presence.connOf(ss.GetSessionId()).GetConnId()

	fast := dialTCP(t, e)
	fast.login("fast", nil)
	fast.snapshot()

	const seqBase = 1_000_000 // above the stand-in's own seqs

	// The fast client reads every event in a goroutine and reports each seq.
	seqs := make(chan uint64, 1<<16)
	readErr := make(chan error, 1)
	go func() {
		for {
			b, err := fast.read(readTimeout)
			if err != nil {
				readErr <- err
				close(seqs)
				return
			}
			f := new(parleyv1.Frame)
			// Only the flood counts, not the stand-in's own events (the
			// slow client going offline).
			if err := proto.Unmarshal(b, f); err == nil && f.GetPresenceChange().GetSeq() > seqBase {
				seqs <- f.GetPresenceChange().GetSeq()
			}
		}
	}()

	// Publish as presence would, 1 KiB usernames, until the slow client is
	// gone, in bursts of 25, keeping the fast client at most 100 events
	// behind: its backlog anywhere (NATS, queue, socket) stays below its
	// 256-frame queue limit however the goroutines are scheduled.
	name := strings.Repeat("n", 1024)
	var published, received uint64
	deadline := time.Now().Add(60 * time.Second)
	for !e.presence.Disconnected(slowConn) {
		if time.Now().After(deadline) || published > 200_000 {
			t.Fatalf("slow client still connected after %d events", published)
		}
		for range 25 {
			published++
			b, _ := proto.Marshal(&parleyv1.PresenceChange{User: &parleyv1.OnlineUser{UserId: "u-x", Username: name}, Online: true, Seq: seqBase + published})
			if err := e.nc.Publish(subject.PresenceEvents, b); err != nil {
				t.Fatal(err)
			}
		}
		if err := e.nc.Flush(); err != nil {
			t.Fatal(err)
		}
		for received+100 < published {
			seq, ok := <-seqs
			if !ok {
				t.Fatalf("fast client: %v", <-readErr)
			}
			received++
			if seq != seqBase+received {
				t.Fatalf("fast client got seq %d, want %d", seq, seqBase+received)
			}
		}
	}
	for received < published {
		seq, ok := <-seqs
		if !ok {
			t.Fatalf("fast client after %d of %d events: %v", received, published, <-readErr)
		}
		received++
		if seq != seqBase+received {
			t.Fatalf("fast client got seq %d, want %d", seq, seqBase+received)
		}
	}
	if n := e.metric("parley_gateway_slow_consumer_disconnects_total", nil); n != 1 {
		t.Errorf("slow consumer metric = %v, want 1", n)
	}
	// What the slow client finally reads ends with the SLOW_CONSUMER error
	// (if the socket had room for it) and then the close.
	var last *parleyv1.Frame
	for {
		b, err := slow.read(readTimeout)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatal("slow client's connection still open")
			}
			if errors.Is(err, wire.ErrFrameTooLarge) || strings.Contains(err.Error(), "protocol") {
				t.Fatalf("slow client's stream is damaged: %v", err)
			}
			break
		}
		last = new(parleyv1.Frame)
		if err := proto.Unmarshal(b, last); err != nil {
			t.Fatalf("slow client read a damaged frame (%d bytes): %v", len(b), err)
		}
	}
	if last != nil && last.GetError() != nil && last.GetError().GetCode() != parleyv1.ErrorCode_ERROR_CODE_SLOW_CONSUMER {
		t.Errorf("slow client's last frame: %v", last)
	}
	t.Logf("slow client disconnected after %d events", published)
}

// TestWebSocketFrameSizes: events of every WebSocket length encoding (7,
// 16 and 64 bits), written together in one batch, reach a WebSocket
// client (a strict RFC 6455 implementation) as separate binary messages,
// each whole, in order, as they reach a TCP client.
func TestWebSocketFrameSizes(t *testing.T) {
	e := startGateway(t, func(c *server.Config) { c.RoomBatch = 500 * time.Millisecond })
	tcp := dialTCP(t, e)
	tcp.login("alice", noFeed)
	ws := dialWS(t, "ws://"+e.srv.HTTPAddr().String()+server.WebSocketPath, nil)
	ws.login("bob", noFeed)

	var msgs []*parleyv1.Message
	for i, size := range []int{1, 90, 200, 5000, 70000, 3} {
		seq := uint64(i + 1)
		m := &parleyv1.Message{Conversation: "room.public", Seq: seq, Id: 100 + seq, SenderId: "u-alice", SenderName: "alice", Text: strings.Repeat("y", size)}
		msgs = append(msgs, m)
		b, _ := proto.Marshal(&parleyv1.MessageEvent{Message: m})
		if err := e.nc.Publish(subject.RoomMessages("public"), b); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]*client{"tcp": tcp, "ws": ws} {
		for _, m := range msgs {
			c.expectMessage(name, m)
		}
	}
}

// A client that connects to the TLS port and never completes the TLS
// handshake (sends nothing, or a ClientHello cut short) is disconnected
// after -handshake-timeout and counted as a TLS handshake failure. One
// whose handshake completes is served: its Hello and a Ping written
// together (one TLS record, so the Ping waits inside crypto/tls while the
// Hello is handled) are both answered, and after a silence longer than the
// handshake timeout its requests still are.
func TestTLSHandshakeTimeout(t *testing.T) {
	certFile, keyFile, pool := testenv.SelfSigned(t)
	const timeout = 300 * time.Millisecond
	e := startGateway(t, func(c *server.Config) {
		c.TLSCert, c.TLSKey = certFile, keyFile
		c.HandshakeTimeout = timeout
	})

	stalls := map[string][]byte{
		"nothing sent":          nil,
		"ClientHello cut short": {0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00},
	}
	for name, first := range stalls {
		c, err := net.Dial("tcp", e.srv.TCPAddr().String())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write(first); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(readTimeout))
		_, err = io.Copy(io.Discard, c) // until the gateway closes it
		c.Close()
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Errorf("%s: connection still open after %s (handshake timeout %s)", name, readTimeout, timeout)
		}
	}
	if n := e.metric("parley_gateway_handshake_failures_total", map[string]string{"code": "TLS"}); n != float64(len(stalls)) {
		t.Errorf("TLS handshake failures counted: %v, want %d", n, len(stalls))
	}

	tc, err := tls.Dial("tcp", e.srv.TCPAddr().String(), &tls.Config{RootCAs: pool})
	if err != nil {
		t.Fatal(err)
	}
	alice := newStreamClient(t, tc)
	var both []byte
	for _, f := range []*parleyv1.Frame{
		{RequestId: 1, Body: &parleyv1.Frame_Hello{Hello: &parleyv1.Hello{Versions: []uint32{1}}}},
		{RequestId: 2, Body: &parleyv1.Frame_Ping{Ping: &parleyv1.Ping{Nonce: 7}}},
	} {
		b, err := proto.Marshal(f)
		if err != nil {
			t.Fatal(err)
		}
		both = append(append(both, 0, 0, 0, byte(len(b))), b...)
	}
	if _, err := tc.Write(both); err != nil {
		t.Fatal(err)
	}
	if w := alice.recv(); w.GetWelcome() == nil {
		t.Fatalf("first frame %v, want Welcome", w)
	}
	if p := alice.recv(); p.GetPong().GetNonce() != 7 {
		t.Fatalf("second frame %v, want Pong 7", p)
	}
	time.Sleep(3 * timeout)
	alice.ping(8)
	alice.login("alice", nil)
	alice.snapshot()
	alice.ping(9)
	if n := e.metric("parley_gateway_connections", map[string]string{"transport": "tls"}); n != 1 {
		t.Errorf("tls connections metric = %v, want 1", n)
	}
}
