package punch

import (
	"net"
	"net/netip"

	"github.com/pion/stun/v3"
)

// Demultiplexing by the first byte (RFC 7983 §7, §20.4): 0-3 STUN (which
// also carries the magic cookie at bytes 4-7), 64-255 QUIC, the rest
// (ZRTP, DTLS, TURN channels) has no business on a session socket.
type packetKind int

const (
	kindDrop packetKind = iota
	kindSTUN
	kindQUIC
)

func classify(b []byte) packetKind {
	switch {
	case len(b) == 0:
		return kindDrop
	case b[0] <= 3:
		if stun.IsMessage(b) {
			return kindSTUN
		}
		return kindDrop
	case b[0] >= 64:
		return kindQUIC
	}
	return kindDrop
}

type txID = [stun.TransactionIDSize]byte

// buildRequest is a Binding request with USERNAME, MESSAGE-INTEGRITY
// (short-term key, RFC 8489 §14.5) and FINGERPRINT; USE-CANDIDATE
// (RFC 8445 §7.1.2) when nominating.
func buildRequest(id txID, user string, key stun.MessageIntegrity, useCandidate bool) ([]byte, error) {
	setters := make([]stun.Setter, 0, 6)
	setters = append(setters, stun.NewTransactionIDSetter(id), stun.BindingRequest, stun.NewUsername(user))
	if useCandidate {
		setters = append(setters, stun.RawAttribute{Type: stun.AttrUseCandidate})
	}
	setters = append(setters, key, stun.Fingerprint)
	m, err := stun.Build(setters...)
	if err != nil {
		return nil, err
	}
	return m.Raw, nil
}

// buildRegister is a registration (§20.3): a Binding request with
// USERNAME, NONCE when the rendezvous gave one for our address,
// MESSAGE-INTEGRITY (the register key) and FINGERPRINT.
func buildRegister(id txID, user, nonce string, key stun.MessageIntegrity) ([]byte, error) {
	setters := make([]stun.Setter, 0, 6)
	setters = append(setters, stun.NewTransactionIDSetter(id), stun.BindingRequest, stun.NewUsername(user))
	if nonce != "" {
		setters = append(setters, stun.NewNonce(nonce))
	}
	setters = append(setters, key, stun.Fingerprint)
	m, err := stun.Build(setters...)
	if err != nil {
		return nil, err
	}
	return m.Raw, nil
}

// buildResponse answers a check: XOR-MAPPED-ADDRESS is where it came
// from, signed with the check key (§20.4).
func buildResponse(id txID, from netip.AddrPort, key stun.MessageIntegrity) ([]byte, error) {
	m, err := stun.Build(stun.NewTransactionIDSetter(id), stun.BindingSuccess,
		&stun.XORMappedAddress{IP: from.Addr().AsSlice(), Port: int(from.Port())},
		key, stun.Fingerprint)
	if err != nil {
		return nil, err
	}
	return m.Raw, nil
}

// mappedAddr reads XOR-MAPPED-ADDRESS (or the old MAPPED-ADDRESS).
func mappedAddr(m *stun.Message) (netip.AddrPort, bool) {
	var xa stun.XORMappedAddress
	if err := xa.GetFrom(m); err == nil {
		return toAddrPort(xa.IP, xa.Port)
	}
	var ma stun.MappedAddress
	if err := ma.GetFrom(m); err == nil {
		return toAddrPort(ma.IP, ma.Port)
	}
	return netip.AddrPort{}, false
}

func toAddrPort(ip net.IP, port int) (netip.AddrPort, bool) {
	a, ok := netip.AddrFromSlice(ip)
	if !ok || port <= 0 || port > 65535 {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(a.Unmap(), uint16(port)), true
}

func unmap(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// udpAddrPort is the address of a packet read from a net.PacketConn.
func udpAddrPort(a net.Addr) (netip.AddrPort, bool) {
	ua, ok := a.(*net.UDPAddr)
	if !ok {
		return netip.AddrPort{}, false
	}
	return unmap(ua.AddrPort()), true
}
