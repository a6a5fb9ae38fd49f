package main

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/parleychat/parley/bench/internal/child"
)

// A minimal TURN client (RFC 8656) for coturn started with --no-auth: the
// peer benchmark needs only Allocate, ChannelBind (which also installs the
// permission, §12.1) and Refresh with lifetime 0 to free the allocation,
// then ChannelData on the hot path (in load.go). No message integrity: the
// server takes anonymous requests.

// STUN message types (RFC 8489 §5, RFC 8656 §17).
const (
	stunAllocate        = 0x0003
	stunAllocateOK      = 0x0103
	stunRefresh         = 0x0004
	stunChannelBind     = 0x0009
	stunChannelBindOK   = 0x0109
	stunMagic           = 0x2112A442
	attrChannelNumber   = 0x000C
	attrLifetime        = 0x000D
	attrXorPeerAddress  = 0x0012
	attrXorRelayedAddr  = 0x0016
	attrRequestedTransp = 0x0019
	attrErrorCode       = 0x0009
)

var errTURN = errors.New("turn")

// stunMessage builds a request of type typ with the attributes given
// (each value padded to 4 bytes, RFC 8489 §14) and returns it and its
// transaction id.
func stunMessage(typ uint16, attrs ...stunAttr) ([]byte, [12]byte) {
	var tx [12]byte
	_, _ = rand.Read(tx[:])
	b := make([]byte, 20, 64)
	binary.BigEndian.PutUint16(b[0:], typ)
	binary.BigEndian.PutUint32(b[4:], stunMagic)
	copy(b[8:], tx[:])
	for _, a := range attrs {
		b = binary.BigEndian.AppendUint16(b, a.typ)
		b = binary.BigEndian.AppendUint16(b, uint16(len(a.val)))
		b = append(b, a.val...)
		for len(b)%4 != 0 {
			b = append(b, 0)
		}
	}
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)-20))
	return b, tx
}

type stunAttr struct {
	typ uint16
	val []byte
}

// xorAddr encodes an IPv4 address as XOR-PEER-ADDRESS (RFC 8489 §14.2).
func xorAddr(ap netip.AddrPort) []byte {
	v := make([]byte, 8)
	v[1] = 0x01 // IPv4
	binary.BigEndian.PutUint16(v[2:], ap.Port()^uint16(stunMagic>>16))
	a4 := ap.Addr().As4()
	binary.BigEndian.PutUint32(v[4:], binary.BigEndian.Uint32(a4[:])^stunMagic)
	return v
}

// transact sends a request on sock (connected to the server) and returns
// the attributes of the response with its transaction id, retrying on
// timeouts (UDP).
func transact(ctx context.Context, sock *net.UDPConn, msg []byte, tx [12]byte) (uint16, map[uint16][]byte, error) {
	buf := make([]byte, 1500)
	for attempt := 0; attempt < 6 && ctx.Err() == nil; attempt++ {
		if _, err := sock.Write(msg); err != nil {
			return 0, nil, err
		}
		_ = sock.SetReadDeadline(time.Now().Add(500 * time.Millisecond << min(attempt, 3)))
		for {
			n, err := sock.Read(buf)
			if err != nil {
				break // timeout: send again
			}
			if n < 20 || buf[0]&0xC0 != 0 || string(buf[8:20]) != string(tx[:]) {
				continue
			}
			_ = sock.SetReadDeadline(time.Time{})
			typ := binary.BigEndian.Uint16(buf[0:2])
			attrs := map[uint16][]byte{}
			ln := int(binary.BigEndian.Uint16(buf[2:4]))
			body := buf[20:min(n, 20+ln)]
			for len(body) >= 4 {
				at, al := binary.BigEndian.Uint16(body[0:2]), int(binary.BigEndian.Uint16(body[2:4]))
				if 4+al > len(body) {
					break
				}
				attrs[at] = append([]byte(nil), body[4:4+al]...)
				body = body[min(len(body), 4+(al+3)/4*4):]
			}
			return typ, attrs, nil
		}
	}
	_ = sock.SetReadDeadline(time.Time{})
	return 0, nil, fmt.Errorf("%w: no response", errTURN)
}

func stunError(attrs map[uint16][]byte) string {
	if v := attrs[attrErrorCode]; len(v) >= 4 {
		return fmt.Sprintf("%d %s", int(v[2])*100+int(v[3]), v[4:])
	}
	return "?"
}

// turnAllocate asks for a UDP relay (RFC 8656 §7.1) and returns its address.
func turnAllocate(ctx context.Context, sock *net.UDPConn) (netip.AddrPort, error) {
	msg, tx := stunMessage(stunAllocate, stunAttr{attrRequestedTransp, []byte{17, 0, 0, 0}})
	typ, attrs, err := transact(ctx, sock, msg, tx)
	if err != nil {
		return netip.AddrPort{}, err
	}
	if typ != stunAllocateOK {
		return netip.AddrPort{}, fmt.Errorf("%w: allocate: %s", errTURN, stunError(attrs))
	}
	v := attrs[attrXorRelayedAddr]
	if len(v) != 8 || v[1] != 0x01 {
		return netip.AddrPort{}, fmt.Errorf("%w: allocate: no IPv4 XOR-RELAYED-ADDRESS", errTURN)
	}
	port := binary.BigEndian.Uint16(v[2:]) ^ uint16(stunMagic>>16)
	var a4 [4]byte
	binary.BigEndian.PutUint32(a4[:], binary.BigEndian.Uint32(v[4:])^stunMagic)
	return netip.AddrPortFrom(netip.AddrFrom4(a4), port), nil
}

// turnChannelBind binds channel to peer (RFC 8656 §12).
func turnChannelBind(ctx context.Context, sock *net.UDPConn, channel uint16, peer netip.AddrPort) error {
	ch := []byte{byte(channel >> 8), byte(channel), 0, 0}
	msg, tx := stunMessage(stunChannelBind, stunAttr{attrChannelNumber, ch}, stunAttr{attrXorPeerAddress, xorAddr(peer)})
	typ, attrs, err := transact(ctx, sock, msg, tx)
	if err != nil {
		return err
	}
	if typ != stunChannelBindOK {
		return fmt.Errorf("%w: channel bind: %s", errTURN, stunError(attrs))
	}
	return nil
}

// turnRelease frees the allocation (Refresh with lifetime 0, §7.2); best effort.
func turnRelease(sock *net.UDPConn) {
	msg, _ := stunMessage(stunRefresh, stunAttr{attrLifetime, []byte{0, 0, 0, 0}})
	_, _ = sock.Write(msg)
}

// startCoturn starts coturn's turnserver on 127.0.0.1 as an anonymous
// (no-auth) UDP relay allowed to relay between loopback addresses, and
// waits until it answers an Allocate.
func startCoturn(ctx context.Context, ps *child.Set, bin, dir string) (*child.Proc, string, error) {
	port, err := freeUDPPort()
	if err != nil {
		return nil, "", err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	log := filepath.Join(dir, "turnserver-own.log")
	p, err := ps.Start("turnserver", bin, nil, "-n", "--no-auth", "--listening-ip", "127.0.0.1",
		"--listening-port", fmt.Sprint(port), "--relay-ip", "127.0.0.1", "--allow-loopback-peers",
		"--no-tcp", "--no-tls", "--no-dtls", "--no-cli", "--no-tcp-relay",
		"--simple-log", "--log-file", log, "--pidfile", filepath.Join(dir, "turnserver.pid"),
		"--min-port", "40000", "--max-port", "60000")
	if err != nil {
		return nil, "", err
	}
	ua, _ := net.ResolveUDPAddr("udp", addr)
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if p.Exited() {
			b, _ := os.ReadFile(log)
			return nil, "", fmt.Errorf("turnserver exited:\n%s\n%s", p.Tail(20), tail(string(b), 20))
		}
		sock, err := net.DialUDP("udp", nil, ua)
		if err == nil {
			_, err = turnAllocate(ctx, sock)
			turnRelease(sock)
			sock.Close()
			if err == nil {
				return p, addr, nil
			}
		}
		if err := child.Sleep(ctx, 200*time.Millisecond); err != nil {
			return nil, "", err
		}
	}
	return nil, "", fmt.Errorf("turnserver not answering at %s:\n%s", addr, p.Tail(20))
}

func freeUDPPort() (int, error) {
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return 0, err
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port, nil
}
