package main

import (
	"bytes"
	"context"
	"net"
	"net/netip"
	"os/exec"
	"testing"
	"time"

	"github.com/parleychat/parley/bench/internal/child"
)

// TestTURNRelaysBetweenTwoAllocations: two clients allocate relays on a
// real coturn, bind a channel to each other's relay address, and a
// ChannelData message one sends arrives at the other, unchanged.
func TestTURNRelaysBetweenTwoAllocations(t *testing.T) {
	bin, err := exec.LookPath("turnserver")
	if err != nil {
		t.Skip("coturn's turnserver not installed (scripts/bench.sh installs it)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dir := t.TempDir()
	ps := &child.Set{Logs: dir}
	defer ps.StopAll()
	_, addr, err := startCoturn(ctx, ps, bin, dir)
	if err != nil {
		t.Fatal(err)
	}
	ua, _ := net.ResolveUDPAddr("udp", addr)
	var socks [2]*net.UDPConn
	var relays [2]netip.AddrPort
	for i := range socks {
		if socks[i], err = net.DialUDP("udp", nil, ua); err != nil {
			t.Fatal(err)
		}
		defer socks[i].Close()
		r, err := turnAllocate(ctx, socks[i])
		if err != nil {
			t.Fatalf("allocate: %v", err)
		}
		relays[i] = r
		defer turnRelease(socks[i])
	}
	for i := range socks {
		if err := turnChannelBind(ctx, socks[i], 0x4000, relays[1-i]); err != nil {
			t.Fatalf("channel bind: %v", err)
		}
	}
	msg := []byte{0x40, 0x00, 0x00, 0x08, 1, 2, 3, 4, 5, 6, 7, 8}
	if _, err := socks[0].Write(msg); err != nil {
		t.Fatal(err)
	}
	_ = socks[1].SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 1500)
	for {
		n, err := socks[1].Read(buf)
		if err != nil {
			t.Fatalf("nothing relayed: %v", err)
		}
		if n >= 4 && buf[0]&0xC0 == 0x40 {
			if !bytes.Equal(buf[4:n], msg[4:]) {
				t.Fatalf("relayed %x, want %x", buf[4:n], msg[4:])
			}
			return
		}
	}
}
