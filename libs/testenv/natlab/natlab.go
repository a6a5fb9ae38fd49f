// Package natlab builds real NATs for tests: Linux network namespaces
// joined by veth pairs, with nftables doing the translation and conntrack
// holding the bindings, as a home router does. Nothing is simulated: a
// packet from a client crosses its NAT's kernel and arrives at the public
// namespace from the NAT's public address.
//
// A Lab is one topology, made for one test and deleted when it ends:
//
//	public namespace (bridge br0: 198.19.0.1 and 198.19.0.2, the two
//	│                 addresses a rendezvous needs; public hosts 198.19.2.x)
//	├── NAT 1 (wan 198.19.1.1 ── nftables ── lan bridge 10.1.0.1/24)
//	│   ├── client 10.1.0.10
//	│   └── client 10.1.0.11
//	└── NAT 2 (wan 198.19.1.2 …)
//
// Addresses come from 198.18.0.0/15 (RFC 2544, never routed) and 10/8,
// and exist only inside the lab's namespaces: nothing reaches the host's
// network, and two labs (parallel tests, parallel packages) never see each
// other. Namespace names carry a random per-lab prefix.
//
// The NAT kinds are the RFC 4787 / RFC 5780 behaviours (Kind). Linux's
// masquerade is a port-restricted cone when it can keep the source port;
// the others are built around it with nftables maps (see rules.go).
//
// Everything here needs root and the ip, nft, conntrack and sysctl tools
// (Debian: iproute2, nftables, conntrack, procps; scripts/deps.sh installs
// them): Require skips a test without them, or fails it under CI=true.
package natlab

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// Kind is how a NAT maps and filters UDP (RFC 4787 §4-5).
type Kind int

const (
	// FullCone: endpoint-independent mapping and filtering. Once a
	// client sent from a port, anyone may send to its public port.
	FullCone Kind = iota
	// RestrictedCone: endpoint-independent mapping, address-dependent
	// filtering: any port of an IP address the client sent to may answer.
	RestrictedCone
	// PortRestrictedCone: endpoint-independent mapping,
	// address-and-port-dependent filtering (plain masquerade).
	PortRestrictedCone
	// Symmetric: endpoint-dependent mapping (a new random public port per
	// destination) and address-and-port-dependent filtering.
	Symmetric
	// NoUDP: a NAT that forwards no UDP at all (TCP only), as some
	// corporate and public networks do.
	NoUDP
)

// Kinds lists every Kind.
var Kinds = []Kind{FullCone, RestrictedCone, PortRestrictedCone, Symmetric, NoUDP}

func (k Kind) String() string {
	switch k {
	case FullCone:
		return "full-cone"
	case RestrictedCone:
		return "restricted-cone"
	case PortRestrictedCone:
		return "port-restricted-cone"
	case Symmetric:
		return "symmetric"
	case NoUDP:
		return "no-udp"
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// The lab's fixed addresses (in the public namespace).
var (
	// RendezvousIP and RendezvousAltIP are the public namespace's own two
	// addresses, for a server that needs two (an RFC 5780 STUN server).
	RendezvousIP    = netip.MustParseAddr("198.19.0.1")
	RendezvousAltIP = netip.MustParseAddr("198.19.0.2")
)

const publicBits = 16 // 198.19.0.0/16 is the public network

// tools the lab runs.
var tools = []string{"ip", "nft", "conntrack", "sysctl"}

// Require skips the test unless the lab can run: root, and the tools on
// PATH. Under CI=true it fails instead, so CI never passes by skipping.
func Require(t testing.TB) {
	t.Helper()
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root")
	}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if len(missing) == 0 {
		return
	}
	msg := "the NAT lab needs " + strings.Join(missing, ", ") + " (run as root; scripts/deps.sh installs iproute2, nftables, conntrack and procps)"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// Lab is one topology of namespaces. Its methods may be called from
// several goroutines.
type Lab struct {
	t      testing.TB
	prefix string
	public *NS

	mu    sync.Mutex // guards nats, hosts, moves, nss
	nats  int
	hosts int
	moves int   // of public hosts
	nss   []*NS // every namespace made, for the cleanup
}

// NS is one network namespace of a lab.
type NS struct {
	Name string
}

// New makes a lab's public namespace; every namespace of the lab is
// deleted when the test ends, after the processes still running in them
// are killed.
func New(t testing.TB) *Lab {
	t.Helper()
	Require(t)
	l := &Lab{t: t, prefix: "nl" + randomID()}
	t.Cleanup(l.cleanup)
	l.public = l.newNS("p")
	l.public.ipBatch(t,
		"link set lo up",
		"link add name br0 type bridge",
		"link set br0 up",
		fmt.Sprintf("addr add %s/%d dev br0", RendezvousIP, publicBits),
		fmt.Sprintf("addr add %s/%d dev br0", RendezvousAltIP, publicBits),
	)
	l.public.sysctl(t, "net.ipv4.ip_forward=0")
	return l
}

// randomID is 5 lowercase letters and digits.
func randomID() string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, 5)
	rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

// Public is the public namespace: the "internet" every NAT's WAN side is
// on. Servers run here on RendezvousIP and RendezvousAltIP.
func (l *Lab) Public() *NS { return l.public }

func (l *Lab) newNS(suffix string) *NS {
	l.t.Helper()
	ns := &NS{Name: l.prefix + "-" + suffix}
	if out, err := exec.Command("ip", "netns", "add", ns.Name).CombinedOutput(); err != nil {
		l.t.Fatalf("natlab: ip netns add %s: %v: %s", ns.Name, err, out)
	}
	l.mu.Lock()
	l.nss = append(l.nss, ns)
	l.mu.Unlock()
	return ns
}

// cleanup kills what still runs in the lab's namespaces (processes the
// test started there) and deletes them; the veths and bridges go with them.
func (l *Lab) cleanup() {
	l.mu.Lock()
	nss := l.nss
	l.nss = nil
	l.mu.Unlock()
	for _, ns := range nss {
		out, _ := exec.Command("ip", "netns", "pids", ns.Name).Output()
		for _, f := range strings.Fields(string(out)) {
			if pid, err := strconv.Atoi(f); err == nil && pid > 1 {
				if p, err := os.FindProcess(pid); err == nil {
					_ = p.Kill()
				}
			}
		}
	}
	for i := len(nss) - 1; i >= 0; i-- {
		if out, err := exec.Command("ip", "netns", "del", nss[i].Name).CombinedOutput(); err != nil {
			l.t.Logf("natlab: ip netns del %s: %v: %s", nss[i].Name, err, out)
		}
	}
}

// Command is name with args run inside the namespace (ip netns exec).
func (ns *NS) Command(name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", ns.Name, name}, args...)...)
}

// Run runs a command in the namespace and returns its output; it fails
// the test if the command fails.
func (ns *NS) Run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := ns.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("natlab: in %s: %s %s: %v: %s", ns.Name, name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// ipBatch runs ip commands in the namespace with one ip process.
func (ns *NS) ipBatch(t testing.TB, cmds ...string) {
	t.Helper()
	cmd := exec.Command("ip", "-n", ns.Name, "-batch", "-")
	cmd.Stdin = strings.NewReader(strings.Join(cmds, "\n") + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("natlab: ip -n %s -batch: %v: %s\n%s", ns.Name, err, out, strings.Join(cmds, "\n"))
	}
}

func (ns *NS) sysctl(t testing.TB, settings ...string) {
	t.Helper()
	ns.Run(t, "sysctl", append([]string{"-qw"}, settings...)...)
}

// Nft loads an nftables script (nft -f) into the namespace.
func (ns *NS) Nft(t testing.TB, script string) {
	t.Helper()
	cmd := ns.Command("nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("natlab: nft in %s: %v: %s\n%s", ns.Name, err, out, script)
	}
}

// BlockUDPPorts drops every UDP packet arriving in the namespace for the
// given local ports (a server there goes silent without stopping).
func (ns *NS) BlockUDPPorts(t testing.TB, ports ...uint16) {
	t.Helper()
	ps := make([]string, len(ports))
	for i, p := range ports {
		ps[i] = strconv.Itoa(int(p))
	}
	ns.Nft(t, fmt.Sprintf(`table ip natlab_block {
	chain in {
		type filter hook input priority filter; policy accept;
		udp dport { %s } drop
	}
}
`, strings.Join(ps, ", ")))
}

// UnblockUDPPorts undoes BlockUDPPorts.
func (ns *NS) UnblockUDPPorts(t testing.TB) {
	t.Helper()
	ns.Run(t, "nft", "delete", "table", "ip", "natlab_block")
}

// Do runs fn on an OS thread switched into the namespace, so that the
// sockets fn opens belong to it (they stay there when used later from any
// goroutine). Goroutines fn starts run outside the namespace.
func (ns *NS) Do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// The thread is given back only if it is back in its own
		// namespace; otherwise it ends with the goroutine.
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		target, err := os.Open("/run/netns/" + ns.Name)
		if err != nil {
			errc <- err
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("natlab: setns %s: %w", ns.Name, err)
			return
		}
		err = fn()
		if unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}

// NAT is one NAT namespace: its WAN side on the public network, its LAN
// side a bridge its clients hang off.
type NAT struct {
	NS
	Kind  Kind
	WAN   netip.Addr // its public address
	lab   *Lab
	index int
	lan   netip.Prefix

	mu      sync.Mutex // guards clients, moves
	clients int
	moves   int
}

// AddNAT makes a NAT of kind on the public network.
func (l *Lab) AddNAT(kind Kind) *NAT {
	l.t.Helper()
	l.mu.Lock()
	l.nats++
	i := l.nats
	l.mu.Unlock()
	if i > 250 {
		l.t.Fatal("natlab: at most 250 NATs per lab")
	}
	ns := l.newNS("n" + strconv.Itoa(i))
	n := &NAT{NS: *ns, Kind: kind, lab: l, index: i,
		WAN: netip.AddrFrom4([4]byte{198, 19, 1, byte(i)}),
		lan: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i), 0, 0}), 24)}
	l.public.ipBatch(l.t,
		fmt.Sprintf("link add name n%d type veth peer name wan netns %s", i, n.Name),
		fmt.Sprintf("link set n%d master br0 up", i),
	)
	n.ipBatch(l.t,
		"link set lo up",
		"link set wan up",
		fmt.Sprintf("addr add %s/%d dev wan", n.WAN, publicBits),
		"link add name lan type bridge",
		"link set lan up",
		fmt.Sprintf("addr add %s/24 dev lan", n.Gateway()),
	)
	n.sysctl(l.t, "net.ipv4.ip_forward=1")
	n.Nft(l.t, rules(kind))
	return n
}

// Gateway is the NAT's LAN address, its clients' default route.
func (n *NAT) Gateway() netip.Addr { return n.lan.Addr().Next() }

// Flush forgets every binding of the NAT, as a router that rebooted or
// whose mappings timed out: conntrack's entries and the cone kinds'
// learned maps. A client's next packet gets a new mapping (a symmetric
// NAT picks a new random port; the others keep the port when they can).
func (n *NAT) Flush(t testing.TB) {
	t.Helper()
	if m := coneMap(n.Kind); m != "" {
		n.Run(t, "nft", "flush", "map", "ip", "natlab", m)
	}
	// conntrack -F exits 1 when a concurrent flush raced it; the table is
	// empty either way.
	_ = n.Command("conntrack", "-F").Run()
}

// ForwardTCP forwards TCP connections to the NAT's public address on port
// to the same port of client c (a port forward, as a user sets one up on a
// home router): for a TCP server behind the NAT.
func (n *NAT) ForwardTCP(t testing.TB, port uint16, c *Client) {
	t.Helper()
	n.Nft(t, fmt.Sprintf(`table ip natlab_fwd {
	chain prenat {
		type nat hook prerouting priority dstnat; policy accept;
		iifname "wan" tcp dport %d dnat ip to %s
	}
}
`, port, c.Addr()))
}

// Bindings lists the NAT's conntrack entries (for failure messages).
func (n *NAT) Bindings() string {
	out, _ := n.Command("conntrack", "-L").CombinedOutput()
	return string(bytes.TrimSpace(out))
}

// Client is a namespace behind a NAT (or, for a public host, on the public
// network itself).
type Client struct {
	NS
	nat  *NAT // nil for a public host
	lab  *Lab
	mu   sync.Mutex // guards addr
	addr netip.Addr
	bits int
	gw   netip.Addr
}

// AddClient makes a client namespace on the NAT's LAN.
func (n *NAT) AddClient() *Client {
	l := n.lab
	l.t.Helper()
	n.mu.Lock()
	n.clients++
	j := n.clients
	n.mu.Unlock()
	if j > 80 {
		l.t.Fatal("natlab: at most 80 clients per NAT")
	}
	ns := l.newNS("n" + strconv.Itoa(n.index) + "c" + strconv.Itoa(j))
	c := &Client{NS: *ns, nat: n, lab: l, bits: 24, gw: n.Gateway(),
		addr: netip.AddrFrom4([4]byte{10, byte(n.index), 0, byte(9 + j)})}
	n.ipBatch(l.t,
		fmt.Sprintf("link add name c%d type veth peer name eth0 netns %s", j, c.Name),
		fmt.Sprintf("link set c%d master lan up", j),
	)
	c.setUp(l.t)
	return c
}

// AddPublicHost makes a namespace on the public network with a public
// address of its own: a device with no NAT.
func (l *Lab) AddPublicHost() *Client {
	l.t.Helper()
	l.mu.Lock()
	l.hosts++
	j := l.hosts
	l.mu.Unlock()
	if j > 250 {
		l.t.Fatal("natlab: at most 250 public hosts per lab")
	}
	ns := l.newNS("h" + strconv.Itoa(j))
	c := &Client{NS: *ns, lab: l, bits: publicBits,
		addr: netip.AddrFrom4([4]byte{198, 19, 2, byte(j)})}
	l.public.ipBatch(l.t,
		fmt.Sprintf("link add name h%d type veth peer name eth0 netns %s", j, c.Name),
		fmt.Sprintf("link set h%d master br0 up", j),
	)
	c.setUp(l.t)
	return c
}

func (c *Client) setUp(t testing.TB) {
	t.Helper()
	// A moved address (Move) leaves the others in place: the new one is
	// added before the old one goes, and stays (promoted) when it does.
	c.sysctl(t, "net.ipv4.conf.all.promote_secondaries=1", "net.ipv4.conf.default.promote_secondaries=1")
	cmds := []string{
		"link set lo up",
		"link set eth0 up",
		fmt.Sprintf("addr add %s/%d dev eth0", c.addr, c.bits),
	}
	if c.gw.IsValid() {
		cmds = append(cmds, "route add default via "+c.gw.String())
	}
	c.ipBatch(t, cmds...)
}

// NAT is the client's NAT (nil for a public host).
func (c *Client) NAT() *NAT { return c.nat }

// Addr is the client's address now.
func (c *Client) Addr() netip.Addr {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.addr
}

// Move gives the client a new address on its network and removes the old
// one, as a device that roamed: sockets bound to the wildcard address
// keep working and send from the new address, which its NAT maps anew.
// It returns the new address.
func (c *Client) Move(t testing.TB) netip.Addr {
	t.Helper()
	var next netip.Addr
	if n := c.nat; n != nil {
		n.mu.Lock()
		n.moves++
		m := n.moves
		n.mu.Unlock()
		if m > 150 {
			t.Fatal("natlab: at most 150 moves per NAT")
		}
		next = netip.AddrFrom4([4]byte{10, byte(n.index), 0, byte(100 + m)}) // never a first address (10-89)
	} else {
		l := c.lab
		l.mu.Lock()
		l.moves++
		m := l.moves
		l.mu.Unlock()
		if m > 250 {
			t.Fatal("natlab: at most 250 moves of public hosts per lab")
		}
		next = netip.AddrFrom4([4]byte{198, 19, 3, byte(m)})
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.addr
	cmds := []string{
		fmt.Sprintf("addr add %s/%d dev eth0", next, c.bits),
		fmt.Sprintf("addr del %s/%d dev eth0", old, c.bits),
	}
	if c.gw.IsValid() {
		cmds = append(cmds, "route replace default via "+c.gw.String())
	}
	c.ipBatch(t, cmds...)
	c.addr = next
	return next
}
