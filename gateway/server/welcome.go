package server

import (
	"net"
	"strconv"
	"strings"

	"github.com/parleychat/parley/gateway/internal/transport"
)

// httpOrigin is what Welcome.http_url is made of, fixed once the HTTP
// listener is bound.
type httpOrigin struct {
	scheme string // http, or https with TLS
	host   string // -http-addr's host when it names one address; "" for all interfaces
	port   string // the HTTP listener's bound port
}

// newHTTPOrigin describes the bound HTTP listener ln.
func newHTTPOrigin(ln net.Listener, configured string, tls bool) *httpOrigin {
	o := &httpOrigin{scheme: "http"}
	if tls {
		o.scheme = "https"
	}
	_, o.port, _ = net.SplitHostPort(ln.Addr().String())
	if host, _, err := net.SplitHostPort(configured); err == nil && host != "" {
		if ip := net.ParseIP(host); ip == nil || !ip.IsUnspecified() {
			o.host = host
		}
	}
	return o
}

// httpURL is Welcome.http_url for a connection (docs/protocol.md §5,
// §18): the base URL of this gateway's file endpoints, "" when it serves
// none. -public-http-url if set; otherwise the scheme by TLS and
//
//   - over WebSocket, the Host the client sent with its upgrade (it
//     reached the HTTP port with it already);
//   - else the TLS server name the client asked for (a certificate is
//     checked against that name), with the HTTP port;
//   - else -http-addr's host, when it names one address;
//   - else the local address the client connected to, with the HTTP port.
//
// Behind a load balancer or NAT that changes the address or the port, only
// -public-http-url can be right.
func (s *Server) httpURL(t transport.Transport) string {
	o := s.origin.Load()
	if s.files == nil || o == nil {
		return ""
	}
	if s.cfg.PublicHTTPURL != "" {
		return s.cfg.PublicHTTPURL
	}
	name := t.Host()
	if !validHost(name) {
		name = ""
	}
	if t.Kind() == "ws" && name != "" {
		// Behind a proxy that terminates TLS, the scheme it reports.
		if ws, ok := t.(interface{ Scheme() string }); ok && ws.Scheme() != "" {
			return ws.Scheme() + "://" + name
		}
		return o.scheme + "://" + name
	}
	host := o.host
	switch {
	case name != "":
		if h, _, err := net.SplitHostPort(name); err == nil {
			name = h
		}
		host = name
	case host == "":
		a, ok := t.LocalAddr().(*net.TCPAddr)
		if !ok {
			return ""
		}
		ip := a.IP
		if v4 := ip.To4(); v4 != nil {
			ip = v4
		}
		host = ip.String()
	}
	return o.scheme + "://" + net.JoinHostPort(strings.Trim(host, "[]"), o.port)
}

// validHost reports whether h, from the client, is a plain host[:port] to
// put in a URL: a DNS name or an IP address (IPv6 in brackets when a port
// follows), nothing else.
func validHost(h string) bool {
	if h == "" || len(h) > 262 {
		return false
	}
	for i := 0; i < len(h); i++ {
		b := h[i]
		if !(b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || strings.IndexByte(".-:[]", b) >= 0) {
			return false
		}
	}
	host := h
	if strings.HasPrefix(h, "[") || strings.Count(h, ":") == 1 {
		var err error
		if host, _, err = net.SplitHostPort(h); err != nil {
			return false
		}
	}
	if strings.Contains(host, ":") {
		return net.ParseIP(host) != nil // a bare IPv6 address
	}
	return host != "" && !strings.HasPrefix(host, ".") && !strings.HasPrefix(host, "-")
}

// udpAddr is CallJoined.udp_addr for a connection (docs/protocol.md §19):
// where its client sends media packets, "" without a media port.
// -public-udp-addr if set; otherwise, with the media port's bound port,
// the name the client connected with (TLS server name, WebSocket Host,
// without its port), else -udp-addr's host when it names one address,
// else the local address the client connected to. Behind a load balancer
// or NAT, only -public-udp-addr can be right.
func (s *Server) udpAddr(t transport.Transport) string {
	a := s.media.UDPAddr()
	if a == nil {
		return ""
	}
	if s.cfg.PublicUDPAddr != "" {
		return s.cfg.PublicUDPAddr
	}
	port := strconv.Itoa(a.Port)
	if name := t.Host(); validHost(name) {
		if h, _, err := net.SplitHostPort(name); err == nil {
			name = h
		}
		return net.JoinHostPort(strings.Trim(name, "[]"), port)
	}
	if host, _, err := net.SplitHostPort(s.cfg.UDPAddr); err == nil && host != "" {
		if ip := net.ParseIP(host); ip == nil || !ip.IsUnspecified() {
			return net.JoinHostPort(host, port)
		}
	}
	la, ok := t.LocalAddr().(*net.TCPAddr)
	if !ok {
		return ""
	}
	ip := la.IP
	if v4 := ip.To4(); v4 != nil {
		ip = v4
	}
	return net.JoinHostPort(ip.String(), port)
}
