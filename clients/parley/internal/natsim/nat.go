// Package natsim is a userspace network for tests of NAT traversal: NATs
// that map and filter UDP like the four classic kinds (RFC 4787 behaviours:
// full cone, restricted cone, port-restricted cone, symmetric), and a
// minimal STUN server standing in for Parley's rendezvous (§20.3 of
// docs/protocol.md).
//
// It stands in for the real NAT lab (network namespaces with nftables NAT,
// which comes later) so that the SDK's traversal code can be tested fast,
// without root, in one process. The outside of every NAT is real: each
// mapping is a real UDP socket bound on the NAT's public loopback address
// (127.x.y.z), and the rendezvous and peers exchange real datagrams over
// loopback. Only the inside is simulated: a device behind a NAT holds a
// Conn (a net.PacketConn) whose packets the NAT translates and sends from
// the mapping's socket, and which receives what the NAT's filter lets in.
//
// A NAT forwards only to loopback destinations: a packet to anything else
// (a peer's private host candidate, say) is dropped, as it would be lost
// between two real private networks, and never leaves the machine.
package natsim

import (
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parleychat/parley/clients/parley/internal/deadline"
)

// Mapping is how a NAT picks the public address of an outbound flow
// (RFC 4787 §4.1).
type Mapping int

const (
	// MapEndpointIndependent reuses one public address per inside socket
	// whatever the destination (every cone NAT).
	MapEndpointIndependent Mapping = iota
	// MapAddressDependent makes a new public address per destination IP.
	MapAddressDependent
	// MapAddressPortDependent makes a new public address per destination
	// IP and port (the "symmetric" NAT).
	MapAddressPortDependent
)

// Filtering is which inbound packets a NAT lets through a mapping
// (RFC 4787 §5).
type Filtering int

const (
	// FilterEndpointIndependent lets anyone in (full cone).
	FilterEndpointIndependent Filtering = iota
	// FilterAddressDependent lets in packets from an IP the mapping sent
	// to (restricted cone).
	FilterAddressDependent
	// FilterAddressPortDependent lets in packets from an IP and port the
	// mapping sent to (port-restricted cone, symmetric).
	FilterAddressPortDependent
)

// Behavior is what a NAT does.
type Behavior struct {
	Mapping   Mapping
	Filtering Filtering
	// PortMin and PortMax bound the public ports of new mappings, chosen
	// at random; zero lets the kernel pick (also random on Linux). A small
	// range makes the birthday technique's probing of a symmetric NAT
	// fast in tests.
	PortMin, PortMax int
	// BlockUDP drops every packet: a network where UDP does not get
	// through.
	BlockUDP bool
}

// The classic kinds.
var (
	FullCone           = Behavior{Mapping: MapEndpointIndependent, Filtering: FilterEndpointIndependent}
	RestrictedCone     = Behavior{Mapping: MapEndpointIndependent, Filtering: FilterAddressDependent}
	PortRestrictedCone = Behavior{Mapping: MapEndpointIndependent, Filtering: FilterAddressPortDependent}
	Symmetric          = Behavior{Mapping: MapAddressPortDependent, Filtering: FilterAddressPortDependent}
)

// Errors.
var (
	// ErrBadBehavior: a Behavior with fields out of range.
	ErrBadBehavior = errors.New("natsim: bad behavior")
	// ErrNotLoopback: a public address outside 127.0.0.0/8.
	ErrNotLoopback = errors.New("natsim: public address must be loopback")
)

var (
	natCount   atomic.Uint32
	publicNext atomic.Uint32
)

// NextPublic hands out loopback addresses for NATs, 127.0.1.1 onwards,
// each once per process, so that tests running in parallel never share
// a NAT's public IP.
func NextPublic() netip.Addr {
	n := publicNext.Add(1)
	return netip.AddrFrom4([4]byte{127, byte(n >> 16), 1 + byte(n>>8), byte(n)})
}

// NAT is one simulated NAT with one public IP address.
type NAT struct {
	public netip.Addr
	b      Behavior
	log    *slog.Logger
	id     uint32 // numbers the private network: 10.<id>.0.0/16

	mu       sync.Mutex
	conns    map[*Conn]struct{}
	mappings map[mapKey]*mapping
	used     map[uint16]bool // public ports ever used: a dropped mapping's port is not reused
	nextHost uint16
	closed   bool
	dropped  atomic.Int64 // packets dropped (filter, blocked, non-loopback)
	wg       sync.WaitGroup
}

// mapKey names a mapping: the inside socket and, as the Mapping behaviour
// needs, the destination.
type mapKey struct {
	c   *Conn
	dst netip.AddrPort // zero for endpoint-independent mapping; port 0 for address-dependent
}

// mapping is one public address of the NAT: a real socket.
type mapping struct {
	key   mapKey
	sock  *net.UDPConn
	addr  netip.AddrPort
	sent  map[netip.AddrPort]bool // destinations (for filtering); guarded by NAT.mu
	sentI map[netip.Addr]bool
}

// New starts a NAT on public (a loopback address other NATs and servers
// do not use; 127.0.1.x is a good choice).
func New(public netip.Addr, b Behavior, log *slog.Logger) (*NAT, error) {
	if !public.Is4() || !public.IsLoopback() {
		return nil, fmt.Errorf("%w: %v", ErrNotLoopback, public)
	}
	if b.Mapping < MapEndpointIndependent || b.Mapping > MapAddressPortDependent ||
		b.Filtering < FilterEndpointIndependent || b.Filtering > FilterAddressPortDependent ||
		b.PortMin < 0 || b.PortMax > 65535 || b.PortMin > b.PortMax || (b.PortMin == 0) != (b.PortMax == 0) {
		return nil, fmt.Errorf("%w: %+v", ErrBadBehavior, b)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &NAT{
		public:   public,
		b:        b,
		log:      log,
		id:       natCount.Add(1) % 250,
		conns:    map[*Conn]struct{}{},
		mappings: map[mapKey]*mapping{},
		used:     map[uint16]bool{},
	}, nil
}

// Public is the NAT's public IP address.
func (n *NAT) Public() netip.Addr { return n.public }

// Dropped counts the packets the NAT dropped so far.
func (n *NAT) Dropped() int64 { return n.dropped.Load() }

// Listen opens a socket behind the NAT. Its LocalAddr is a private address
// (10.x.y.z) that nothing outside reaches.
func (n *NAT) Listen() (*Conn, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil, net.ErrClosed
	}
	n.nextHost++
	c := &Conn{
		nat:    n,
		local:  netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(n.id), byte(n.nextHost >> 8), byte(n.nextHost)}), 5000),
		in:     make(chan inbound, 512),
		closed: make(chan struct{}),
	}
	c.rd = deadline.New()
	n.conns[c] = struct{}{}
	return c, nil
}

// Mappings is the number of public addresses the NAT holds now.
func (n *NAT) Mappings() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.mappings)
}

// DropMappings forgets every mapping (as a NAT that rebooted, or whose
// mappings timed out): packets to the old public addresses go nowhere, and
// the next outbound packet of each inside socket gets a new public port.
func (n *NAT) DropMappings() {
	n.mu.Lock()
	ms := n.mappings
	n.mappings = map[mapKey]*mapping{}
	n.mu.Unlock()
	for _, m := range ms {
		m.sock.Close()
	}
}

// Close drops all mappings and closes every inside socket.
func (n *NAT) Close() error {
	n.mu.Lock()
	n.closed = true
	conns := n.conns
	n.conns = map[*Conn]struct{}{}
	n.mu.Unlock()
	n.DropMappings()
	for c := range conns {
		c.Close()
	}
	n.wg.Wait()
	return nil
}

// outbound translates and sends one packet of c.
func (n *NAT) outbound(c *Conn, b []byte, dst netip.AddrPort) error {
	dst = netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port())
	if n.b.BlockUDP || !dst.Addr().Is4() || !dst.Addr().IsLoopback() {
		n.dropped.Add(1)
		return nil // lost on the way, as UDP is
	}
	n.mu.Lock()
	if _, open := n.conns[c]; !open {
		n.mu.Unlock()
		return net.ErrClosed // closed meanwhile: no mapping for it
	}
	key := mapKey{c: c}
	switch n.b.Mapping {
	case MapAddressDependent:
		key.dst = netip.AddrPortFrom(dst.Addr(), 0)
	case MapAddressPortDependent:
		key.dst = dst
	}
	m := n.mappings[key]
	if m == nil {
		var err error
		if m, err = n.newMapping(key); err != nil {
			n.mu.Unlock()
			return err
		}
	}
	m.sent[dst] = true
	m.sentI[dst.Addr()] = true
	sock := m.sock
	n.mu.Unlock()
	_, err := sock.WriteToUDPAddrPort(b, dst)
	if errors.Is(err, net.ErrClosed) {
		return nil // the mapping was dropped meanwhile: the packet is lost
	}
	return err
}

// newMapping binds a public socket for key. n.mu is held.
func (n *NAT) newMapping(key mapKey) (*mapping, error) {
	var sock *net.UDPConn
	for try := 0; sock == nil; try++ {
		if try == 200 {
			return nil, fmt.Errorf("natsim: no free public port on %v", n.public)
		}
		port := 0
		if n.b.PortMin != 0 {
			port = n.b.PortMin + rand.IntN(n.b.PortMax-n.b.PortMin+1)
			if n.used[uint16(port)] {
				continue
			}
		}
		s, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(n.public, uint16(port))))
		if err != nil {
			continue // taken by someone else: another port
		}
		p := s.LocalAddr().(*net.UDPAddr).AddrPort().Port()
		if n.used[p] {
			s.Close()
			continue
		}
		n.used[p] = true
		sock = s
	}
	m := &mapping{
		key:   key,
		sock:  sock,
		addr:  sock.LocalAddr().(*net.UDPAddr).AddrPort(),
		sent:  map[netip.AddrPort]bool{},
		sentI: map[netip.Addr]bool{},
	}
	n.mappings[key] = m
	n.wg.Add(1)
	go n.inbound(m)
	n.log.Debug("natsim mapping", "nat", n.public, "inside", key.c.local, "dst", key.dst, "public", m.addr)
	return m, nil
}

// inbound reads a mapping's socket until it is closed and passes what the
// filter allows to the inside socket.
func (n *NAT) inbound(m *mapping) {
	defer n.wg.Done()
	buf := make([]byte, 65536)
	for {
		k, from, err := m.sock.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
		n.mu.Lock()
		ok := !n.b.BlockUDP && n.mappings[m.key] == m
		if ok {
			switch n.b.Filtering {
			case FilterAddressDependent:
				ok = m.sentI[from.Addr()]
			case FilterAddressPortDependent:
				ok = m.sent[from]
			}
		}
		n.mu.Unlock()
		if !ok {
			n.dropped.Add(1)
			continue
		}
		m.key.c.deliver(buf[:k], from)
	}
}

// forget drops c's mappings (c was closed).
func (n *NAT) forget(c *Conn) {
	n.mu.Lock()
	delete(n.conns, c)
	var socks []*net.UDPConn
	for k, m := range n.mappings {
		if k.c == c {
			delete(n.mappings, k)
			socks = append(socks, m.sock)
		}
	}
	n.mu.Unlock()
	for _, s := range socks {
		s.Close()
	}
}

type inbound struct {
	b    []byte
	from netip.AddrPort
}

// Conn is a UDP socket behind a NAT. It implements net.PacketConn; the
// addresses it takes and gives are *net.UDPAddr.
type Conn struct {
	nat   *NAT
	local netip.AddrPort
	in    chan inbound
	rd    *deadline.Deadline

	closeOnce sync.Once
	closed    chan struct{}
}

var _ net.PacketConn = (*Conn)(nil)

func (c *Conn) deliver(b []byte, from netip.AddrPort) {
	select {
	case <-c.closed:
		return
	default:
	}
	select {
	case c.in <- inbound{b: append([]byte(nil), b...), from: from}:
	default:
		c.nat.dropped.Add(1) // the socket's receive buffer is full
	}
}

// ReadFrom implements net.PacketConn.
func (c *Conn) ReadFrom(p []byte) (int, net.Addr, error) {
	select {
	case <-c.closed:
		return 0, nil, net.ErrClosed
	default:
	}
	select {
	case pk := <-c.in:
		return copy(p, pk.b), net.UDPAddrFromAddrPort(pk.from), nil
	case <-c.closed:
		return 0, nil, net.ErrClosed
	case <-c.rd.Wait():
		return 0, nil, os.ErrDeadlineExceeded
	}
}

// WriteTo implements net.PacketConn.
func (c *Conn) WriteTo(p []byte, addr net.Addr) (int, error) {
	select {
	case <-c.closed:
		return 0, net.ErrClosed
	default:
	}
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return 0, fmt.Errorf("natsim: not a UDP address: %v", addr)
	}
	if err := c.nat.outbound(c, p, ua.AddrPort()); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Close implements net.PacketConn.
func (c *Conn) Close() error {
	c.closeOnce.Do(func() {
		close(c.closed)
		c.nat.forget(c)
	})
	return nil
}

// LocalAddr is the socket's private address.
func (c *Conn) LocalAddr() net.Addr { return net.UDPAddrFromAddrPort(c.local) }

// SetDeadline implements net.PacketConn (writes never block).
func (c *Conn) SetDeadline(t time.Time) error { return c.SetReadDeadline(t) }

// SetReadDeadline implements net.PacketConn.
func (c *Conn) SetReadDeadline(t time.Time) error {
	c.rd.Set(t)
	return nil
}

// SetWriteDeadline implements net.PacketConn; writes never block.
func (c *Conn) SetWriteDeadline(time.Time) error { return nil }
