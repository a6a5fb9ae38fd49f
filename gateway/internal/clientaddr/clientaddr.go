// Package clientaddr finds the address a client connected from when it
// reaches the gateway through proxies: from a PROXY protocol header on
// TCP (Stream), from X-Forwarded-For on HTTP (Proxies.Forwarded). Only
// the configured proxies are believed; anyone else's claim about an
// address is ignored (HTTP) or refused (TCP).
package clientaddr

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"time"

	"github.com/pires/go-proxyproto"
)

// Proxies are the address prefixes of proxies that are believed.
type Proxies []netip.Prefix

// Contains reports whether ip is one of the proxies.
func (p Proxies) Contains(ip netip.Addr) bool {
	ip = ip.Unmap()
	for _, pr := range p {
		if pr.Contains(ip) {
			return true
		}
	}
	return false
}

// Forwarded returns the client's address of an HTTP request that came
// from peer with the X-Forwarded-For header values xff (each a
// comma-separated list; proxies append the address they received the
// request from). If peer is not a trusted proxy, peer itself. Otherwise
// the list is walked from the right, skipping trusted proxies: the first
// address that is not one is the client, the nearest hop nobody trusted
// could have invented. (The leftmost entry, which some frameworks take,
// is whatever the client wrote: a client behind an appending proxy could
// claim any address.) An unparseable entry ends the walk at the hop to its
// right; a list of trusted proxies only gives its leftmost.
func (p Proxies) Forwarded(peer netip.Addr, xff []string) netip.Addr {
	peer = peer.Unmap()
	if len(p) == 0 || !p.Contains(peer) {
		return peer
	}
	client := peer
	for i := len(xff) - 1; i >= 0; i-- {
		entries := strings.Split(xff[i], ",")
		for j := len(entries) - 1; j >= 0; j-- {
			ip, ok := parseEntry(entries[j])
			if !ok {
				return client
			}
			client = ip
			if !p.Contains(ip) {
				return client
			}
		}
	}
	return client
}

// Scheme returns "http" or "https" from the X-Forwarded-Proto values of a
// request from peer, when peer is a trusted proxy and the first value is
// one of those; "" otherwise.
func (p Proxies) Scheme(peer netip.Addr, proto []string) string {
	if len(p) == 0 || len(proto) == 0 || !p.Contains(peer) {
		return ""
	}
	first, _, _ := strings.Cut(proto[0], ",")
	switch s := strings.ToLower(strings.TrimSpace(first)); s {
	case "http", "https":
		return s
	}
	return ""
}

// parseEntry parses one X-Forwarded-For entry: an IP address, possibly
// with a port (1.2.3.4:5678, [2001:db8::1]:5678).
func parseEntry(s string) (netip.Addr, bool) {
	s = strings.TrimSpace(s)
	if ip, err := netip.ParseAddr(s); err == nil {
		return ip.Unmap().WithZone(""), true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap().WithZone(""), true
	}
	return netip.Addr{}, false
}

// ErrNoHeader: a trusted proxy's connection did not open with a PROXY
// protocol header in time.
var ErrNoHeader = errors.New("connection from a trusted proxy without a PROXY protocol header")

// Stream applies the PROXY protocol (v2, v1 accepted too) to a new TCP
// connection c before anything else is read from it. A connection from
// one of the proxies must open with a header, which must arrive within
// timeout, and its RemoteAddr becomes the client's address the header
// names (a LOCAL header, a proxy's own health check, keeps the proxy's).
// A connection from anywhere else is returned as it is, with its own
// address, and nothing is read ahead: a PROXY header from such a source is
// never read as one, it is a bad first frame (a length above any limit)
// or a bad TLS record, and the connection ends. On an error the
// connection is to be closed: it was refused.
func (p Proxies) Stream(c net.Conn, timeout time.Duration) (net.Conn, error) {
	ap, err := netip.ParseAddrPort(c.RemoteAddr().String())
	if err != nil || !p.Contains(ap.Addr()) {
		return c, nil
	}
	pc := proxyproto.NewConn(c, proxyproto.WithPolicy(proxyproto.REQUIRE), proxyproto.SetReadHeaderTimeout(timeout))
	// A read of nothing reads the header (or finds none) and nothing more.
	if _, err := pc.Read(nil); err != nil {
		if errors.Is(err, proxyproto.ErrNoProxyProtocol) {
			return nil, ErrNoHeader
		}
		return nil, fmt.Errorf("PROXY protocol header: %w", err)
	}
	tc, _ := pc.TCPConn()
	return proxied{pc, tc}, nil
}

// proxied is a connection that came with a PROXY header. Past the header
// its bytes are the socket's, so it offers the socket's half-close and
// raw access (for writes, transport.Stream's TryWrite) like a *net.TCPConn.
type proxied struct {
	*proxyproto.Conn
	tc *net.TCPConn // nil if not TCP
}

func (p proxied) CloseWrite() error {
	if p.tc == nil {
		return errors.ErrUnsupported
	}
	return p.tc.CloseWrite()
}

func (p proxied) SyscallConn() (syscall.RawConn, error) {
	if p.tc == nil {
		return nil, errors.ErrUnsupported
	}
	return p.tc.SyscallConn()
}
