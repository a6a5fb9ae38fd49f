package connlimit

import (
	"net"
	"net/netip"
	"testing"
)

func tcp(s string) net.Addr { return net.TCPAddrFromAddrPort(netip.MustParseAddrPort(s)) }

// TestCaps: the rules, step by step.
func TestCaps(t *testing.T) {
	l := New(Config{Total: 5, PerAddr: 3, UnauthPerAddr: 2, Exempt: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}})
	admit := func(addr string, want Verdict) *Slot {
		t.Helper()
		s, v := l.Admit(tcp(addr))
		if v != want {
			t.Fatalf("Admit(%s) = %v, want %v", addr, v, want)
		}
		return s
	}
	a1 := admit("192.0.2.1:1000", Admitted)
	a2 := admit("192.0.2.1:1001", Admitted)
	admit("192.0.2.1:1002", AddrUnauthFull) // two without a session
	admit("[::ffff:192.0.2.1]:1003", AddrUnauthFull)
	a1.Authenticated(true)
	a3 := admit("192.0.2.1:1004", Admitted)
	a2.Authenticated(true)
	admit("192.0.2.1:1005", AddrFull) // three from the address
	// Logging out counts again, even above the cap; nothing is ended.
	a1.Authenticated(false)
	a1.Authenticated(false)
	a2.Authenticated(false)
	a2.Release()
	a2.Release() // idempotent
	admit("192.0.2.1:1006", AddrUnauthFull)
	a3.Authenticated(true)
	admit("192.0.2.1:1007", Admitted) // a1 unauth + 1007 unauth = 2
	// Live now: a1 and 1007 without a session, a3 with one. IPv6 hosts
	// are counted by /64.
	b1 := admit("[2001:db8::1]:1", Admitted)
	b2 := admit("[2001:db8::2]:1", Admitted)
	admit("10.1.2.3:1", Full) // five: the total comes first, exempt or not
	a3.Release()
	admit("[2001:db8::3]:1", AddrUnauthFull) // its /64 has two without a session
	b3 := admit("[2001:db8:0:1::1]:1", Admitted)
	if n := l.Count(); n != 5 {
		t.Fatalf("Count = %d, want 5", n)
	}
	for _, s := range []*Slot{a1, a1, b1, b2, b3} {
		s.Release()
	}
	if len(l.addrs) != 1 {
		t.Errorf("%d addresses tracked, want 1 (192.0.2.1: 1007)", len(l.addrs))
	}
	for key, c := range l.addrs {
		if c.all != 1 || c.unauth != 1 {
			t.Errorf("%s: %+v, want one connection without a session", key, *c)
		}
	}

	// Exempt sources are never refused per address.
	var slots []*Slot
	for range 4 {
		slots = append(slots, admit("10.1.2.3:1", Admitted))
	}
	admit("10.1.2.4:1", Full)
	for _, s := range slots {
		s.Release()
	}
}

// TestNoCaps: a zero Config counts but refuses nothing, and tracks no
// addresses.
func TestNoCaps(t *testing.T) {
	l := New(Config{})
	for i := range 1000 {
		if _, v := l.Admit(tcp("192.0.2.1:1")); v != Admitted {
			t.Fatalf("connection %d refused: %v", i, v)
		}
	}
	if len(l.addrs) != 0 || l.Count() != 1000 {
		t.Errorf("addrs %d count %d", len(l.addrs), l.Count())
	}
}
