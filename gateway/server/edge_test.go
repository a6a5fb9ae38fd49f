package server_test

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/pires/go-proxyproto"

	"github.com/parleychat/parley/gateway/server"
	"github.com/parleychat/parley/libs/subject"
	"github.com/parleychat/parley/libs/testenv"
	"github.com/parleychat/parley/protocol/parleyv1"
)

// The gateway behind proxies (docs/protocol.md §11, "Client addresses"):
// the test plays the proxy, on 127.0.0.1 (trusted), and the clients it
// forwards are 10.0.0.x; 127.0.0.2 and 127.0.0.3, also loopback, are
// peers nobody trusts.

var trustedProxy = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}

// dialFrom connects to addr from the local address ip.
func dialFrom(t *testing.T, ip, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: readTimeout}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// dialProxied connects from ip and sends a PROXY protocol v2 header
// saying the connection is client's.
func dialProxied(t *testing.T, e *env, ip, client string) net.Conn {
	t.Helper()
	c := dialFrom(t, ip, e.srv.TCPAddr().String())
	h := proxyproto.HeaderProxyFromAddrs(2, net.TCPAddrFromAddrPort(netip.MustParseAddrPort(client)), c.RemoteAddr())
	if _, err := h.WriteTo(c); err != nil {
		t.Fatal(err)
	}
	return c
}

// lastLoginAddr is the client address auth was told of the last login.
func lastLoginAddr(t *testing.T, e *env) string {
	t.Helper()
	logins := e.auth.Logins()
	if len(logins) == 0 {
		t.Fatal("auth saw no login")
	}
	return logins[len(logins)-1].header.Get(subject.HeaderRemoteAddr)
}

// TestProxyProtocol: with -proxy-protocol-from, the client a trusted
// load balancer names in its PROXY v2 header is the connection's address
// for the per-address cap and for auth: two clients behind one balancer
// are not capped together, the same client twice is. A balancer's
// connection without a header is refused; a header from an untrusted
// peer is not believed; a direct client from elsewhere is served.
func TestProxyProtocol(t *testing.T) {
	e := startGateway(t, func(c *server.Config) {
		noExempt(c)
		c.MaxConnsPerAddr = 1
		c.ProxyProtocolFrom = trustedProxy
	})
	a := newStreamClient(t, dialProxied(t, e, "127.0.0.1", "10.0.0.1:40001"))
	a.login("alice", noFeed)
	if got := lastLoginAddr(t, e); got != "10.0.0.1:40001" {
		t.Errorf("auth saw alice at %q, want 10.0.0.1:40001", got)
	}
	b := newStreamClient(t, dialProxied(t, e, "127.0.0.1", "10.0.0.2:40002"))
	b.login("bob", noFeed)
	if got := lastLoginAddr(t, e); got != "10.0.0.2:40002" {
		t.Errorf("auth saw bob at %q, want 10.0.0.2:40002", got)
	}
	// 10.0.0.1 again: over its cap of 1, though the balancer has two.
	newStreamClient(t, dialProxied(t, e, "127.0.0.1", "10.0.0.1:40003")).
		expectRefused(parleyv1.ErrorCode_ERROR_CODE_RATE_LIMITED, 5000, 10000)

	// The balancer without a header: refused, no Welcome.
	noHeader := newStreamClient(t, dialFrom(t, "127.0.0.1", e.srv.TCPAddr().String()))
	noHeader.send(&parleyv1.Frame{RequestId: 1, Body: &parleyv1.Frame_Hello{Hello: &parleyv1.Hello{Versions: []uint32{1}}}})
	noHeader.expectClosed()

	// An untrusted peer claiming to be 10.0.0.3: refused.
	spoof := newStreamClient(t, dialProxied(t, e, "127.0.0.2", "10.0.0.3:40004"))
	spoof.send(&parleyv1.Frame{RequestId: 1, Body: &parleyv1.Frame_Hello{Hello: &parleyv1.Hello{Versions: []uint32{1}}}})
	spoof.expectClosed()

	// A direct client from elsewhere is served with its own address.
	direct := newStreamClient(t, dialFrom(t, "127.0.0.3", e.srv.TCPAddr().String()))
	direct.login("carol", noFeed)
	if got, want := lastLoginAddr(t, e), direct.raw.LocalAddr().String(); got != want {
		t.Errorf("auth saw carol at %q, want %q", got, want)
	}
	a.ping(1)
	b.ping(1)
}

// TestProxyProtocolTLS: the PROXY header comes before the TLS handshake.
func TestProxyProtocolTLS(t *testing.T) {
	certFile, keyFile, pool := testenv.SelfSigned(t)
	e := startGateway(t, func(c *server.Config) {
		c.TLSCert, c.TLSKey = certFile, keyFile
		c.ProxyProtocolFrom = trustedProxy
	})
	raw := dialProxied(t, e, "127.0.0.1", "[2001:db8::7]:40001")
	c := newStreamClient(t, tls.Client(raw, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}))
	c.login("alice", noFeed)
	if got := lastLoginAddr(t, e); got != "[2001:db8::7]:40001" {
		t.Errorf("auth saw %q, want [2001:db8::7]:40001", got)
	}
}

// dialWSFrom opens a WebSocket from the local address ip with the extra
// request headers h.
func dialWSFrom(t *testing.T, e *env, ip string, h http.Header) *client {
	t.Helper()
	return dialWSHost(t, e, ip, "", h)
}

// dialWSHost is dialWSFrom with the Host header host ("": the address).
func dialWSHost(t *testing.T, e *env, ip, host string, h http.Header) *client {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: readTimeout}
	hc := &http.Client{Transport: &http.Transport{DialContext: d.DialContext}}
	ctx, cancel := context.WithTimeout(context.Background(), readTimeout)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws://"+e.srv.HTTPAddr().String()+server.WebSocketPath,
		&websocket.DialOptions{HTTPClient: hc, HTTPHeader: h, Host: host})
	if err != nil {
		t.Fatal(err)
	}
	return wsClient(t, c)
}

func xff(v ...string) http.Header {
	h := http.Header{}
	for _, s := range v {
		h.Add("X-Forwarded-For", s)
	}
	return h
}

// TestForwardedFor: with -trusted-proxies, a WebSocket's client is the
// one a trusted proxy names in X-Forwarded-For (the rightmost address not
// a trusted proxy): two clients behind one proxy are not capped together,
// an address the client itself put in front of the list is not believed,
// and an untrusted peer's header is ignored.
func TestForwardedFor(t *testing.T) {
	e := startGatewayDeps(t, func(c *server.Config) {
		noExempt(c)
		c.MaxConnsPerAddr = 1
		c.TrustedProxies = trustedProxy
	}, withFiles(t))
	a := dialWSFrom(t, e, "127.0.0.1", xff("10.0.0.1"))
	a.login("alice", noFeed)
	if got := lastLoginAddr(t, e); got != "10.0.0.1:0" {
		t.Errorf("auth saw alice at %q, want 10.0.0.1:0", got)
	}
	b := dialWSFrom(t, e, "127.0.0.1", xff("10.0.0.2"))
	b.login("bob", noFeed)
	dialWSFrom(t, e, "127.0.0.1", xff("10.0.0.1")).expectRefused(parleyv1.ErrorCode_ERROR_CODE_RATE_LIMITED, 5000, 10000)
	// The client wrote "10.0.0.9" itself; the proxy appended what it saw.
	dialWSFrom(t, e, "127.0.0.1", xff("10.0.0.9, 10.0.0.2")).expectRefused(parleyv1.ErrorCode_ERROR_CODE_RATE_LIMITED, 5000, 10000)
	// Two trusted hops: the second proxy appended the first (127.0.0.1).
	dialWSFrom(t, e, "127.0.0.1", xff("10.0.0.9", "10.0.0.1, 127.0.0.1")).expectRefused(parleyv1.ErrorCode_ERROR_CODE_RATE_LIMITED, 5000, 10000)

	// An untrusted peer's header is ignored: it is counted as itself.
	c := dialWSFrom(t, e, "127.0.0.2", xff("10.0.0.5"))
	c.login("carol", noFeed)
	if got := lastLoginAddr(t, e); netip.MustParseAddrPort(got).Addr() != netip.MustParseAddr("127.0.0.2") {
		t.Errorf("auth saw carol at %q, want 127.0.0.2", got)
	}
	dialWSFrom(t, e, "127.0.0.2", xff("10.0.0.6")).expectRefused(parleyv1.ErrorCode_ERROR_CODE_RATE_LIMITED, 5000, 10000)

	// X-Forwarded-Proto from the proxy that terminated TLS: file links
	// are https.
	h := xff("10.0.0.3")
	h.Set("X-Forwarded-Proto", "https")
	if u := dialWSHost(t, e, "127.0.0.1", "chat.example.com", h).hello().GetHttpUrl(); u != "https://chat.example.com" {
		t.Errorf("http_url behind a TLS proxy %q, want https://chat.example.com", u)
	}
	h = xff("10.0.0.4")
	h.Set("X-Forwarded-Proto", "https")
	if u := dialWSFrom(t, e, "127.0.0.3", h).hello().GetHttpUrl(); u != "http://"+e.srv.HTTPAddr().String() {
		t.Errorf("http_url with an untrusted X-Forwarded-Proto %q", u)
	}
	a.ping(1)
	b.ping(1)
}

// TestTLSCertificateReload: a renewed certificate (a Secret volume's
// symlink swap) is served on TCP/TLS and WSS without a restart; a broken
// replacement keeps the previous one.
func TestTLSCertificateReload(t *testing.T) {
	ca := testenv.NewCA(t)
	c1, k1 := ca.ServerPEM(t, 1001)
	vol := testenv.NewSecretVolume(t, c1, k1)
	e := startGateway(t, func(c *server.Config) {
		c.TLSCert, c.TLSKey = vol.CertFile(), vol.KeyFile()
		c.TLSReload = 10 * time.Millisecond
	})
	conf := &tls.Config{RootCAs: ca.Pool, ServerName: "127.0.0.1"}
	serials := func() (tcp, wss int64) {
		t.Helper()
		for i, addr := range []string{e.srv.TCPAddr().String(), e.srv.HTTPAddr().String()} {
			c, err := tls.Dial("tcp", addr, conf)
			if err != nil {
				t.Fatalf("TLS to %s: %v", addr, err)
			}
			n := c.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
			c.Close()
			if i == 0 {
				tcp = n
			} else {
				wss = n
			}
		}
		return tcp, wss
	}
	if tcp, wss := serials(); tcp != 1001 || wss != 1001 {
		t.Fatalf("serials %d, %d; want 1001", tcp, wss)
	}
	old := dialTLS(t, e, conf)
	old.login("alice", noFeed)

	c2, k2 := ca.ServerPEM(t, 1002)
	vol.Update(t, c2, k2)
	testenv.Eventually(t, 10*time.Second, "renewed certificate served", func() bool {
		tcp, wss := serials()
		return tcp == 1002 && wss == 1002
	})
	// The session opened under the old certificate goes on, and a new
	// one works over WSS under the new.
	old.ping(1)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: conf}}
	dialWS(t, "wss://"+e.srv.HTTPAddr().String()+server.WebSocketPath, hc).login("bob", noFeed)

	// A broken pair (a key that is not the certificate's) is not taken.
	_, k3 := ca.ServerPEM(t, 1003)
	c3, _ := ca.ServerPEM(t, 1003)
	vol.Update(t, c3, k3)
	time.Sleep(100 * time.Millisecond) // ten polls
	if tcp, wss := serials(); tcp != 1002 || wss != 1002 {
		t.Fatalf("after a broken renewal the serials are %d, %d; want 1002", tcp, wss)
	}
}

// TestEdgeFlags: the proxy lists parse like -conn-limit-exempt and are
// off by default; the certificate is checked for renewals every 10 s.
func TestEdgeFlags(t *testing.T) {
	var c server.Config
	fs := flag.NewFlagSet("gateway", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	c.RegisterFlags(fs)
	if err := fs.Parse(nil); err != nil {
		t.Fatal(err)
	}
	if len(c.ProxyProtocolFrom) != 0 || len(c.TrustedProxies) != 0 || c.TLSReload != 10*time.Second {
		t.Errorf("defaults: proxy protocol from %v, trusted proxies %v, reload %s", c.ProxyProtocolFrom, c.TrustedProxies, c.TLSReload)
	}
	if err := fs.Parse([]string{"-proxy-protocol-from=10.0.0.0/8, 192.168.1.7", "-trusted-proxies=fd00::/8", "-tls-reload-interval=1m"}); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(c.ProxyProtocolFrom, c.TrustedProxies, c.TLSReload); got != "[10.0.0.0/8 192.168.1.7/32] [fd00::/8] 1m0s" {
		t.Errorf("parsed %s", got)
	}
	for _, arg := range []string{"-proxy-protocol-from=lb.local", "-trusted-proxies=10.0.0.0/33"} {
		if err := fs.Parse([]string{arg}); err == nil {
			t.Errorf("%s accepted", arg)
		}
	}
}
