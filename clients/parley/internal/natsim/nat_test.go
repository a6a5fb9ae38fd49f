package natsim_test

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/parleychat/parley/clients/parley/internal/natsim"
)

// The four behaviours are checked by natcheck's tests, against this
// package's rendezvous and against coturn. These check the rest.

func listen(t *testing.T) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// sendAndSee sends from the inside and returns the public address the
// outside saw.
func sendAndSee(t *testing.T, in *natsim.Conn, out *net.UDPConn) netip.AddrPort {
	t.Helper()
	if _, err := in.WriteTo([]byte("x"), out.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	out.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, from, err := out.ReadFromUDPAddrPort(make([]byte, 10))
	if err != nil {
		t.Fatal(err)
	}
	return from
}

func TestDropMappings(t *testing.T) {
	nat, err := natsim.New(natsim.NextPublic(), natsim.PortRestrictedCone, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer nat.Close()
	in, _ := nat.Listen()
	out := listen(t)
	first := sendAndSee(t, in, out)
	if first.Addr() != nat.Public() || sendAndSee(t, in, out) != first {
		t.Fatalf("public address %v, NAT %v", first, nat.Public())
	}
	// The outside can answer through the mapping.
	out.WriteToUDPAddrPort([]byte("back"), first)
	in.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, _, err := in.ReadFrom(make([]byte, 10)); err != nil {
		t.Fatal(err)
	}
	nat.DropMappings()
	if nat.Mappings() != 0 {
		t.Fatalf("%d mappings after the drop", nat.Mappings())
	}
	if second := sendAndSee(t, in, out); second == first {
		t.Errorf("the same public address %v after the drop", second)
	}
	// Closing the inside socket drops its mapping.
	in.Close()
	if nat.Mappings() != 0 {
		t.Errorf("%d mappings after close", nat.Mappings())
	}
	if _, err := in.WriteTo([]byte("x"), out.LocalAddr()); err == nil {
		t.Error("write after close")
	}
}

func TestOnlyLoopbackLeaves(t *testing.T) {
	nat, err := natsim.New(natsim.NextPublic(), natsim.FullCone, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer nat.Close()
	in, _ := nat.Listen()
	in.WriteTo([]byte("x"), &net.UDPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 9})
	if nat.Mappings() != 0 || nat.Dropped() != 1 {
		t.Errorf("mappings %d, dropped %d: a packet to a non-loopback address must be dropped", nat.Mappings(), nat.Dropped())
	}
	if _, err := natsim.New(netip.MustParseAddr("192.0.2.1"), natsim.FullCone, nil); err == nil {
		t.Error("a non-loopback public address was taken")
	}
	if _, err := natsim.New(natsim.NextPublic(), natsim.Behavior{PortMin: 10}, nil); err == nil {
		t.Error("a half-set port range was taken")
	}
}
