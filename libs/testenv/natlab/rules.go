package natlab

import "strings"

// The nftables rules of each NAT kind. All live in table "ip natlab" of the
// NAT's namespace; "wan" is its public interface.
//
// Mapping. Linux's masquerade keeps a flow's source port when the public
// address and port are free for that destination, so one client port gets
// the same public port towards every destination: endpoint-independent
// mapping. `fully-random` gives every new flow (every destination) a
// random public port instead: endpoint-dependent mapping, a symmetric NAT.
//
// Filtering. conntrack lets in only the replies of a flow, from the exact
// address and port the client sent to: address-and-port-dependent
// filtering (port-restricted). Linux has no full-cone or restricted-cone
// NAT of its own; they are built from a map that the NAT learns as
// packets leave, read in a filter chain after the source NAT so that it
// sees the public port:
//
//   - full cone: public port -> (client address, client port), and any
//     UDP packet arriving for a learned public port is DNATed there;
//   - restricted cone: (destination address, public port) -> (client
//     address, client port), and a packet is DNATed only when its source
//     address is one the client sent to from that port (any source port).
//
// Entries live 2 minutes after the client last sent, like the NAT's own
// UDP bindings. A DNATed packet then makes a conntrack flow of its own,
// whose replies leave from the same public port.
//
// Unsolicited packets (no flow, no map entry) are for the NAT box itself,
// which drops them at input: they are never confirmed by conntrack, so
// they hold no binding that could make the client's own flow to that peer
// take another port (which Linux does for a simultaneous open, turning a
// cone into a symmetric NAT for that peer, when the peer's packet wins).
//
// NoUDP drops all forwarded UDP (TCP still goes out through masquerade).

// coneMap is the name of the map a kind learns, "" for none.
func coneMap(k Kind) string {
	switch k {
	case FullCone, RestrictedCone:
		return "cone"
	}
	return ""
}

func rules(k Kind) string {
	var b strings.Builder
	b.WriteString("table ip natlab {\n")
	switch k {
	case FullCone:
		b.WriteString(`	map cone {
		type inet_service : ipv4_addr . inet_service
		flags dynamic,timeout
		timeout 2m
	}
	chain learn {
		type filter hook postrouting priority srcnat + 10; policy accept;
		oifname "wan" meta l4proto udp update @cone { udp sport : ct original ip saddr . ct original proto-src }
	}
	chain prenat {
		type nat hook prerouting priority dstnat; policy accept;
		iifname "wan" meta l4proto udp dnat ip to udp dport map @cone
	}
`)
	case RestrictedCone:
		b.WriteString(`	map cone {
		type ipv4_addr . inet_service : ipv4_addr . inet_service
		flags dynamic,timeout
		timeout 2m
	}
	chain learn {
		type filter hook postrouting priority srcnat + 10; policy accept;
		oifname "wan" meta l4proto udp update @cone { ip daddr . udp sport : ct original ip saddr . ct original proto-src }
	}
	chain prenat {
		type nat hook prerouting priority dstnat; policy accept;
		iifname "wan" meta l4proto udp dnat ip to ip saddr . udp dport map @cone
	}
`)
	case NoUDP:
		b.WriteString(`	chain noudp {
		type filter hook forward priority filter; policy accept;
		meta l4proto udp drop
	}
`)
	}
	masq := "masquerade"
	if k == Symmetric {
		masq = "masquerade random,fully-random"
	}
	b.WriteString(`	chain postnat {
		type nat hook postrouting priority srcnat; policy accept;
		oifname "wan" ` + masq + `
	}
	chain wanin {
		type filter hook input priority filter; policy accept;
		iifname "wan" drop
	}
}
`)
	return b.String()
}
