package parley

import (
	"fmt"
	"net"
	"net/url"
	"strings"
)

// DefaultAddr is the gateway's default TCP address.
const DefaultAddr = "tcp://127.0.0.1:7420"

// DefaultPort is the gateway's TCP/TLS port, used when an address has none.
const DefaultPort = "7420"

// DefaultWSPath is the gateway's WebSocket endpoint path, used when a ws://
// or wss:// address has no path.
const DefaultWSPath = "/v1/ws"

// transportKind is how a connection is carried.
type transportKind int

const (
	kindTCP transportKind = iota // length-prefixed frames over TCP
	kindTLS                      // length-prefixed frames over TLS
	kindWS                       // one frame per binary WebSocket message
	kindWSS                      // the same over TLS
)

func (k transportKind) String() string {
	return [...]string{"tcp", "tls", "ws", "wss"}[k]
}

// address is a parsed server address.
type address struct {
	kind transportKind
	host string // host:port for tcp/tls; the URL host for ws/wss
	url  string // the full URL for ws/wss
}

// String gives the address in its canonical form.
func (a address) String() string {
	if a.kind == kindWS || a.kind == kindWSS {
		return a.url
	}
	return a.kind.String() + "://" + a.host
}

// hostname is the host without port, for TLS server name verification.
func (a address) hostname() string {
	h, _, err := net.SplitHostPort(a.host)
	if err != nil {
		return a.host
	}
	return h
}

// parseAddr understands:
//
//	host:port, tcp://host:port   length-prefixed frames over TCP
//	tls://host:port              the same over TLS
//	ws://host[:port][/path]      WebSocket (path defaults to /v1/ws)
//	wss://host[:port][/path]     WebSocket over TLS
//
// tcp and tls addresses without a port get DefaultPort.
func parseAddr(s string) (address, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return address{}, fmt.Errorf("parley: empty server address")
	}
	scheme, rest, hasScheme := strings.Cut(s, "://")
	if !hasScheme {
		scheme, rest = "tcp", s
	}
	switch strings.ToLower(scheme) {
	case "tcp", "tls":
		if rest == "" || strings.ContainsAny(rest, "/?#") {
			return address{}, fmt.Errorf("parley: bad %s address %q: want host:port", scheme, s)
		}
		host := rest
		if _, _, err := net.SplitHostPort(rest); err != nil {
			// No port (or a bare IPv6 literal): add the default one.
			host = net.JoinHostPort(strings.Trim(rest, "[]"), DefaultPort)
			if _, _, err := net.SplitHostPort(host); err != nil {
				return address{}, fmt.Errorf("parley: bad %s address %q: %v", scheme, s, err)
			}
		}
		k := kindTCP
		if strings.EqualFold(scheme, "tls") {
			k = kindTLS
		}
		return address{kind: k, host: host}, nil
	case "ws", "wss":
		u, err := url.Parse(s)
		if err != nil {
			return address{}, fmt.Errorf("parley: bad websocket address %q: %v", s, err)
		}
		if u.Host == "" {
			return address{}, fmt.Errorf("parley: bad websocket address %q: no host", s)
		}
		u.Scheme = strings.ToLower(u.Scheme)
		if u.Path == "" || u.Path == "/" {
			u.Path = DefaultWSPath
		}
		k := kindWS
		if u.Scheme == "wss" {
			k = kindWSS
		}
		return address{kind: k, host: u.Host, url: u.String()}, nil
	default:
		return address{}, fmt.Errorf("parley: unknown scheme %q in %q (want tcp, tls, ws or wss)", scheme, s)
	}
}

// NormalizeAddr checks a server address as Dial would and returns its
// canonical form ("localhost" → "tcp://localhost:7420"), for use as a key
// (for example when storing tokens per server).
func NormalizeAddr(addr string) (string, error) {
	a, err := parseAddr(addr)
	if err != nil {
		return "", err
	}
	return a.String(), nil
}
