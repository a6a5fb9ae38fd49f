package clientaddr_test

import (
	"net/netip"
	"testing"

	"github.com/parleychat/parley/gateway/internal/clientaddr"
)

func TestForwarded(t *testing.T) {
	proxies := clientaddr.Proxies{netip.MustParsePrefix("10.1.0.0/16"), netip.MustParsePrefix("fd00::/8")}
	for _, tt := range []struct {
		name, peer string
		xff        []string
		want       string
	}{
		{"untrusted peer: header ignored", "203.0.113.5", []string{"198.51.100.1"}, "203.0.113.5"},
		{"trusted peer, one client", "10.1.2.3", []string{"198.51.100.1"}, "198.51.100.1"},
		{"trusted peer, no header", "10.1.2.3", nil, "10.1.2.3"},
		{"client-written entry before the real one", "10.1.2.3", []string{"6.6.6.6, 198.51.100.1"}, "198.51.100.1"},
		{"two trusted hops", "10.1.2.3", []string{"198.51.100.1, 10.1.9.9"}, "198.51.100.1"},
		{"hops in several header lines", "10.1.2.3", []string{"6.6.6.6", "198.51.100.1", "10.1.9.9"}, "198.51.100.1"},
		{"entries with ports", "10.1.2.3", []string{"[2001:db8::1]:4711"}, "2001:db8::1"},
		{"IPv4 with port", "10.1.2.3", []string{"198.51.100.1:4711"}, "198.51.100.1"},
		{"garbage ends the walk at the last good hop", "10.1.2.3", []string{"198.51.100.1, unknown"}, "10.1.2.3"},
		{"only proxies: the leftmost", "10.1.2.3", []string{"10.1.0.7, 10.1.0.8"}, "10.1.0.7"},
		{"IPv4-mapped peer", "::ffff:10.1.2.3", []string{"198.51.100.1"}, "198.51.100.1"},
		{"IPv6 proxy", "fd00::1", []string{"2001:db8::2"}, "2001:db8::2"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := proxies.Forwarded(netip.MustParseAddr(tt.peer), tt.xff)
			if got != netip.MustParseAddr(tt.want) {
				t.Errorf("Forwarded(%s, %q) = %s, want %s", tt.peer, tt.xff, got, tt.want)
			}
		})
	}
	if got := (clientaddr.Proxies{}).Forwarded(netip.MustParseAddr("10.1.2.3"), []string{"1.2.3.4"}); got != netip.MustParseAddr("10.1.2.3") {
		t.Errorf("no proxies configured: %s", got)
	}
}

func TestScheme(t *testing.T) {
	proxies := clientaddr.Proxies{netip.MustParsePrefix("10.1.0.0/16")}
	trusted, other := netip.MustParseAddr("10.1.0.1"), netip.MustParseAddr("192.0.2.1")
	for _, tt := range []struct {
		peer  netip.Addr
		proto []string
		want  string
	}{
		{trusted, []string{"https"}, "https"},
		{trusted, []string{"HTTP"}, "http"},
		{trusted, []string{"https, http"}, "https"},
		{trusted, []string{"ftp"}, ""},
		{trusted, nil, ""},
		{other, []string{"https"}, ""},
	} {
		if got := proxies.Scheme(tt.peer, tt.proto); got != tt.want {
			t.Errorf("Scheme(%s, %q) = %q, want %q", tt.peer, tt.proto, got, tt.want)
		}
	}
}
