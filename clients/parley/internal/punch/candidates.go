package punch

import (
	"cmp"
	"net"
	"net/netip"
	"slices"
)

// MaxCandidates is how many host candidates the server takes (§20.2).
const MaxCandidates = 8

// HostCandidates lists the session socket's host candidates (§20.2): the
// addresses of the interfaces that are up, each with port. Link-local
// addresses are left out (they need a zone and do not leave the link);
// loopback is kept last (harmless, and two devices on one host find each
// other by it). IPv4 comes before IPv6 and the list stops at
// MaxCandidates. A socket bound to IPv4 only should drop the IPv6 ones.
func HostCandidates(port uint16) ([]netip.AddrPort, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	var addrs []netip.Addr
	for _, ifc := range ifs {
		if ifc.Flags&net.FlagUp == 0 {
			continue
		}
		as, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, a := range as {
			var ip net.IP
			switch v := a.(type) {
			case *net.IPNet:
				ip = v.IP
			case *net.IPAddr:
				ip = v.IP
			}
			na, ok := netip.AddrFromSlice(ip)
			if !ok {
				continue
			}
			na = na.Unmap()
			if !usableHost(na) || slices.Contains(addrs, na) {
				continue
			}
			addrs = append(addrs, na)
		}
	}
	return orderCandidates(addrs, port), nil
}

func usableHost(a netip.Addr) bool {
	return a.IsValid() && !a.IsUnspecified() && !a.IsLinkLocalUnicast() && !a.IsMulticast() &&
		!a.IsInterfaceLocalMulticast() && !a.IsLinkLocalMulticast()
}

// orderCandidates sorts addrs (IPv4, then IPv6, loopback last), keeps
// MaxCandidates and adds port.
func orderCandidates(addrs []netip.Addr, port uint16) []netip.AddrPort {
	rank := func(a netip.Addr) int {
		switch {
		case a.IsLoopback() && a.Is4():
			return 2
		case a.IsLoopback():
			return 3
		case a.Is4():
			return 0
		default:
			return 1
		}
	}
	addrs = slices.Clone(addrs)
	slices.SortStableFunc(addrs, func(x, y netip.Addr) int { return cmp.Compare(rank(x), rank(y)) })
	if len(addrs) > MaxCandidates {
		addrs = addrs[:MaxCandidates]
	}
	out := make([]netip.AddrPort, len(addrs))
	for i, a := range addrs {
		out[i] = netip.AddrPortFrom(a, port)
	}
	return out
}
