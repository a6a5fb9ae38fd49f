package natlab_test

import (
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/parleychat/parley/libs/testenv/natlab"
)

// udpIn opens a UDP socket in ns on addr.
func udpIn(t *testing.T, ns *natlab.NS, addr string) *net.UDPConn {
	t.Helper()
	var c *net.UDPConn
	err := ns.Do(func() error {
		var err error
		c, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(addr)))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// recv waits briefly for a packet on c; it returns the sender, or an
// invalid address when nothing came.
func recv(t *testing.T, c *net.UDPConn) netip.AddrPort {
	t.Helper()
	buf := make([]byte, 64)
	c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	_, from, err := c.ReadFromUDPAddrPort(buf)
	if err != nil {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
}

func send(t *testing.T, c *net.UDPConn, to netip.AddrPort) {
	t.Helper()
	if _, err := c.WriteToUDPAddrPort([]byte("hi"), to); err != nil {
		t.Fatal(err)
	}
}

// TestKinds checks each NAT kind's mapping and filtering with plain UDP
// sockets: what a server on the public network sees, and which of its
// packets get back in.
func TestKinds(t *testing.T) {
	l := natlab.New(t)
	pub := l.Public()
	s1 := udpIn(t, pub, "198.19.0.1:4000")
	s1p := udpIn(t, pub, "198.19.0.1:4001") // same IP, other port
	s2 := udpIn(t, pub, "198.19.0.2:4000")  // other IP
	a1, a1p, a2 := netip.MustParseAddrPort("198.19.0.1:4000"), netip.MustParseAddrPort("198.19.0.1:4001"), netip.MustParseAddrPort("198.19.0.2:4000")

	type want struct {
		eim            bool // the same public port towards both servers
		fromOtherIP    bool // s2 gets in after the client sent only to s1
		fromOtherPort  bool // s1p gets in after the client sent only to s1
		udpGoesThrough bool
	}
	cases := []struct {
		kind natlab.Kind
		want want
	}{
		{natlab.FullCone, want{true, true, true, true}},
		{natlab.RestrictedCone, want{true, false, true, true}},
		{natlab.PortRestrictedCone, want{true, false, false, true}},
		{natlab.Symmetric, want{false, false, false, true}},
		{natlab.NoUDP, want{udpGoesThrough: false}},
	}
	for _, tc := range cases {
		n := l.AddNAT(tc.kind)
		c := n.AddClient()
		cs := udpIn(t, &c.NS, "0.0.0.0:5000")

		// Client to s1: seen from the NAT's address.
		send(t, cs, a1)
		m1 := recv(t, s1)
		if !tc.want.udpGoesThrough {
			if m1.IsValid() {
				t.Errorf("%v: a UDP packet went through, from %v", tc.kind, m1)
			}
			continue
		}
		if m1.Addr() != n.WAN {
			t.Fatalf("%v: the server saw %v, want the NAT's address %v", tc.kind, m1, n.WAN)
		}
		// Filtering, before the client sent anywhere else.
		send(t, s2, m1)
		if got := recv(t, cs).IsValid(); got != tc.want.fromOtherIP {
			t.Errorf("%v: a packet from another IP got in: %v, want %v", tc.kind, got, tc.want.fromOtherIP)
		}
		send(t, s1p, m1)
		if got := recv(t, cs).IsValid(); got != tc.want.fromOtherPort {
			t.Errorf("%v: a packet from another port got in: %v, want %v", tc.kind, got, tc.want.fromOtherPort)
		}
		send(t, s1, m1)
		if got := recv(t, cs); got != a1 {
			t.Errorf("%v: the reply from the server the client sent to: got %v", tc.kind, got)
		}
		// Mapping: the same public port towards another IP?
		send(t, cs, a2)
		m2 := recv(t, s2)
		send(t, cs, a1p)
		m3 := recv(t, s1p)
		if eim := m2 == m1 && m3 == m1; eim != tc.want.eim {
			t.Errorf("%v: endpoint-independent mapping %v (%v, %v, %v), want %v", tc.kind, eim, m1, m2, m3, tc.want.eim)
		}
		// Replies to the flows the client made get in.
		send(t, s2, m2)
		if got := recv(t, cs); got != a2 {
			t.Errorf("%v: the reply from the second server: got %v", tc.kind, got)
		}

		// Flush: a symmetric NAT maps the next flow to a new random port.
		n.Flush(t)
		send(t, cs, a1)
		m4 := recv(t, s1)
		if m4.Addr() != n.WAN {
			t.Fatalf("%v: after Flush the server saw %v", tc.kind, m4)
		}
		if tc.kind == natlab.Symmetric && m4 == m1 {
			t.Errorf("%v: the mapping %v survived Flush", tc.kind, m1)
		}

		// Move: the socket keeps working from the new address, under a
		// new public port (the old binding still holds the old one).
		old := c.Addr()
		moved := c.Move(t)
		if moved == old || c.Addr() != moved {
			t.Fatalf("%v: Move gave %v (was %v)", tc.kind, moved, old)
		}
		send(t, cs, a1)
		m5 := recv(t, s1)
		if m5.Addr() != n.WAN || m5 == m4 {
			t.Errorf("%v: after Move the server saw %v, want a new port of %v (was %v)", tc.kind, m5, n.WAN, m4)
		}
		send(t, s1, m5)
		if got := recv(t, cs); got != a1 {
			t.Errorf("%v: after Move the reply got %v", tc.kind, got)
		}
	}
}

// TestPublicHostAndSameLAN: a public host is seen as itself; two clients
// of one NAT reach each other on their LAN.
func TestPublicHostAndSameLAN(t *testing.T) {
	l := natlab.New(t)
	h := l.AddPublicHost()
	s := udpIn(t, l.Public(), "198.19.0.1:4000")
	hs := udpIn(t, &h.NS, "0.0.0.0:5000")
	send(t, hs, netip.MustParseAddrPort("198.19.0.1:4000"))
	if got := recv(t, s); got != netip.AddrPortFrom(h.Addr(), 5000) {
		t.Errorf("public host seen as %v, want %v:5000", got, h.Addr())
	}

	n := l.AddNAT(natlab.PortRestrictedCone)
	c1, c2 := n.AddClient(), n.AddClient()
	u1 := udpIn(t, &c1.NS, "0.0.0.0:5000")
	u2 := udpIn(t, &c2.NS, "0.0.0.0:5000")
	send(t, u1, netip.AddrPortFrom(c2.Addr(), 5000))
	if got := recv(t, u2); got != netip.AddrPortFrom(c1.Addr(), 5000) {
		t.Errorf("LAN neighbour seen as %v, want %v:5000", got, c1.Addr())
	}
}

// TestBlockUDPPorts: a blocked server port goes silent, then comes back.
func TestBlockUDPPorts(t *testing.T) {
	l := natlab.New(t)
	h := l.AddPublicHost()
	s := udpIn(t, l.Public(), "198.19.0.1:4000")
	hs := udpIn(t, &h.NS, "0.0.0.0:5000")
	to := netip.MustParseAddrPort("198.19.0.1:4000")
	l.Public().BlockUDPPorts(t, 4000)
	send(t, hs, to)
	if got := recv(t, s); got.IsValid() {
		t.Fatalf("a blocked port got a packet from %v", got)
	}
	l.Public().UnblockUDPPorts(t)
	send(t, hs, to)
	if got := recv(t, s); !got.IsValid() {
		t.Fatal("the unblocked port got nothing")
	}
}

// TestCleanup: a lab's namespaces, and the processes left in them, are
// gone when its test ends.
func TestCleanup(t *testing.T) {
	var names []string
	var sleeper *exec.Cmd
	t.Run("lab", func(t *testing.T) {
		l := natlab.New(t)
		c := l.AddNAT(natlab.Symmetric).AddClient()
		names = []string{l.Public().Name, c.Name}
		sleeper = c.Command("sleep", "60")
		if err := sleeper.Start(); err != nil {
			t.Fatal(err)
		}
	})
	done := make(chan error, 1)
	go func() { done <- sleeper.Wait() }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Error("a process left in the lab still runs")
	}
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if strings.Contains(string(out), n) {
			t.Errorf("namespace %s still exists", n)
		}
	}
}

// TestForwardTCP: a TCP server behind a NAT is reached at the NAT's
// public address once the port is forwarded.
func TestForwardTCP(t *testing.T) {
	l := natlab.New(t)
	n := l.AddNAT(natlab.PortRestrictedCone)
	c := n.AddClient()
	h := l.AddPublicHost()
	var ln net.Listener
	if err := c.Do(func() (err error) { ln, err = net.Listen("tcp4", "0.0.0.0:6000"); return }); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	n.ForwardTCP(t, 6000, c)
	got := make(chan string, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			got <- err.Error()
			return
		}
		defer conn.Close()
		b := make([]byte, 5)
		_, _ = conn.Read(b)
		got <- string(b)
	}()
	var conn net.Conn
	if err := h.Do(func() (err error) {
		conn, err = net.DialTimeout("tcp4", n.WAN.String()+":6000", 2*time.Second)
		return
	}); err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.Write([]byte("hello"))
	select {
	case s := <-got:
		if s != "hello" {
			t.Fatalf("the server got %q", s)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("nothing reached the server")
	}
}
