package server_test

import (
	"crypto/tls"
	"net"
	"net/http"
	"testing"

	"github.com/coder/websocket"

	"github.com/parleychat/parley/gateway/server"
	"github.com/parleychat/parley/libs/objstore"
	"github.com/parleychat/parley/libs/testenv"
	"github.com/parleychat/parley/protocol/parleyv1"
	"github.com/parleychat/parley/protocol/wire"
)

// withFiles gives the gateway a file store, so it serves files.
func withFiles(t testing.TB) func(*server.Deps) {
	return func(d *server.Deps) {
		st, err := objstore.NewDir(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		d.Files = st
	}
}

func httpPort(t *testing.T, e *env) string {
	t.Helper()
	_, port, err := net.SplitHostPort(e.srv.HTTPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// TestWelcomeHTTPURL: Welcome.http_url tells a client where files travel
// (docs/protocol.md §5, §18), whatever transport it came in on.
func TestWelcomeHTTPURL(t *testing.T) {
	t.Run("no files", func(t *testing.T) {
		e := startGateway(t, nil)
		if u := dialTCP(t, e).hello().GetHttpUrl(); u != "" {
			t.Errorf("http_url %q from a gateway without files", u)
		}
	})

	t.Run("configured", func(t *testing.T) {
		e := startGatewayDeps(t, func(c *server.Config) { c.PublicHTTPURL = "https://chat.example.com:8443/parley/" }, withFiles(t))
		if u := dialTCP(t, e).hello().GetHttpUrl(); u != "https://chat.example.com:8443/parley" {
			t.Errorf("http_url %q", u)
		}
		ws := dialWS(t, "ws://"+e.srv.HTTPAddr().String()+server.WebSocketPath, nil)
		if u := ws.hello().GetHttpUrl(); u != "https://chat.example.com:8443/parley" {
			t.Errorf("http_url over WebSocket %q", u)
		}
	})

	t.Run("listener host", func(t *testing.T) {
		e := startGatewayDeps(t, nil, withFiles(t))
		want := "http://127.0.0.1:" + httpPort(t, e)
		if u := dialTCP(t, e).hello().GetHttpUrl(); u != want {
			t.Errorf("http_url %q, want %q", u, want)
		}
	})

	t.Run("local address", func(t *testing.T) {
		// Listening on all interfaces, the gateway names the address the
		// client reached it on: 127.0.0.2 here.
		e := startGatewayDeps(t, func(c *server.Config) {
			c.TCPAddr, c.HTTPAddr, c.Insecure = "0.0.0.0:0", "0.0.0.0:0", true
		}, withFiles(t))
		_, tcpPort, _ := net.SplitHostPort(e.srv.TCPAddr().String())
		conn, err := net.Dial("tcp", net.JoinHostPort("127.0.0.2", tcpPort))
		if err != nil {
			t.Fatal(err)
		}
		want := "http://127.0.0.2:" + httpPort(t, e)
		if u := newStreamClient(t, conn).hello().GetHttpUrl(); u != want {
			t.Errorf("http_url %q, want %q", u, want)
		}
		conn6, err := net.Dial("tcp", net.JoinHostPort("::1", tcpPort))
		if err != nil {
			t.Skipf("no IPv6 loopback: %v", err)
		}
		want = "http://[::1]:" + httpPort(t, e)
		if u := newStreamClient(t, conn6).hello().GetHttpUrl(); u != want {
			t.Errorf("http_url over IPv6 %q, want %q", u, want)
		}
	})

	t.Run("websocket host", func(t *testing.T) {
		// The Host the client upgraded with: it reached the HTTP port so.
		e := startGatewayDeps(t, nil, withFiles(t))
		ctx := t.Context()
		c, _, err := websocket.Dial(ctx, "ws://"+e.srv.HTTPAddr().String()+server.WebSocketPath,
			&websocket.DialOptions{Host: "chat.example.com:8080"})
		if err != nil {
			t.Fatal(err)
		}
		defer c.CloseNow()
		hello := []byte{0x08, 0x01, 0x12, 0x06, 0x0a, 0x01, 0x01, 0x12, 0x01, 0x78} // docs/protocol.md §14
		if err := c.Write(ctx, websocket.MessageBinary, hello); err != nil {
			t.Fatal(err)
		}
		_, b, err := c.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		w := mustDecode(t, b).GetWelcome()
		if u := w.GetHttpUrl(); u != "http://chat.example.com:8080" {
			t.Errorf("http_url %q", u)
		}
	})

	t.Run("tls server name", func(t *testing.T) {
		certFile, keyFile, pool := testenv.SelfSigned(t)
		e := startGatewayDeps(t, func(c *server.Config) { c.TLSCert, c.TLSKey = certFile, keyFile }, withFiles(t))
		port := httpPort(t, e)
		// The certificate names 127.0.0.1 only; what matters here is the
		// name the client asks for, so this client does not check it.
		named := dialTLS(t, e, &tls.Config{ServerName: "localhost", InsecureSkipVerify: true})
		if u := named.hello().GetHttpUrl(); u != "https://localhost:"+port {
			t.Errorf("http_url %q, want https://localhost:%s", u, port)
		}
		// Dialled by address, a client sends no server name.
		byIP := dialTLS(t, e, &tls.Config{RootCAs: pool})
		if u := byIP.hello().GetHttpUrl(); u != "https://127.0.0.1:"+port {
			t.Errorf("http_url %q, want https://127.0.0.1:%s", u, port)
		}
		wss := dialWS(t, "wss://"+e.srv.HTTPAddr().String()+server.WebSocketPath,
			&http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}})
		if u := wss.hello().GetHttpUrl(); u != "https://127.0.0.1:"+port {
			t.Errorf("http_url over wss %q", u)
		}
	})
}

func mustDecode(t *testing.T, b []byte) *parleyv1.Frame {
	t.Helper()
	f, err := wire.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	return f
}
