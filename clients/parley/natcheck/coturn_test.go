package natcheck_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os/exec"
	"testing"
	"time"

	"github.com/pion/stun/v3"

	"github.com/parleychat/parley/clients/parley/internal/natsim"
	"github.com/parleychat/parley/clients/parley/natcheck"
)

// startCoturn runs coturn's turnserver as a STUN-only RFC 5780 server on
// 127.0.0.1 and 127.0.0.2 (a server nobody here wrote; scripts/deps.sh
// installs it) and returns its primary address.
func startCoturn(t *testing.T) netip.AddrPort {
	t.Helper()
	bin, err := exec.LookPath("turnserver")
	if err != nil {
		t.Skip("coturn's turnserver not installed (scripts/deps.sh installs it)")
	}
	for try := 0; try < 5; try++ {
		port := 35000 + 2*rand.IntN(5000)
		dir := t.TempDir()
		cmd := exec.Command(bin, "-L", "127.0.0.1", "-L", "127.0.0.2",
			"--listening-port", fmt.Sprint(port), "--alt-listening-port", fmt.Sprint(port+1),
			"--stun-only", "--no-cli", "--no-tls", "--no-dtls", "-n",
			"--log-file", "stdout", "--simple-log", "--userdb", dir+"/db", "--pidfile", dir+"/pid")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		primary := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port))
		if coturnAnswers(primary) {
			t.Cleanup(func() {
				cmd.Process.Kill()
				cmd.Wait()
			})
			return primary
		}
		cmd.Process.Kill()
		cmd.Wait()
	}
	t.Fatal("coturn did not start")
	return netip.AddrPort{}
}

// coturnAnswers waits up to 5 s for an answer to a Binding request.
func coturnAnswers(addr netip.AddrPort) bool {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return false
	}
	defer c.Close()
	req := stun.MustBuild(stun.TransactionID, stun.BindingRequest)
	buf := make([]byte, 1500)
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		c.WriteToUDPAddrPort(req.Raw, addr)
		c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		if n, _, err := c.ReadFromUDPAddrPort(buf); err == nil && stun.IsMessage(buf[:n]) {
			return true
		}
	}
	return false
}

// TestClassifyCoturn checks the tests against coturn: an open loopback
// socket, and sockets behind simulated NATs whose outside talks to coturn.
func TestClassifyCoturn(t *testing.T) {
	t.Parallel()
	server := startCoturn(t)
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := natcheck.Classify(ctx, conn, server.String())
	if err != nil {
		t.Fatal(err)
	}
	if res.Name() != "open internet" || res.Filtering != natcheck.EndpointIndependent || res.Other.Addr() != netip.MustParseAddr("127.0.0.2") {
		t.Errorf("open socket: %+v (%s)", res, res.Name())
	}
	for _, tt := range []struct {
		b    natsim.Behavior
		want string
	}{
		{natsim.FullCone, "full cone"},
		{natsim.RestrictedCone, "restricted cone"},
		{natsim.PortRestrictedCone, "port-restricted cone"},
		{natsim.Symmetric, "symmetric"},
	} {
		nat, err := natsim.New(natsim.NextPublic(), tt.b, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer nat.Close()
		c, _ := nat.Listen()
		res, err := natcheck.Classify(ctx, c, server.String())
		if err != nil {
			t.Fatal(err)
		}
		if res.Name() != tt.want || res.Mapped.Addr() != nat.Public() {
			t.Errorf("behind %s: %+v (%s)", tt.want, res, res.Name())
		}
	}
}
