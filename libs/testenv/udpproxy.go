package testenv

import (
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Impairment is what a UDPProxy does to each datagram, in each direction
// independently.
type Impairment struct {
	Loss   float64       // probability that a datagram is dropped
	Jitter time.Duration // each datagram is delayed by a uniform 0..Jitter (so they also reorder)
	Delay  time.Duration // added to every datagram
}

// UDPProxy stands between UDP clients and one upstream address and impairs
// the traffic: this kernel has no netem, so tests put this userspace proxy
// on the path instead. Like a NAT, it gives each client address its own
// upstream socket, so the upstream sees one source per client and answers
// go back to the right client.
type UDPProxy struct {
	ln       *net.UDPConn
	upstream netip.AddrPort
	imp      atomic.Pointer[Impairment]

	mu      sync.Mutex
	clients map[netip.AddrPort]*net.UDPConn
	closed  bool

	Forwarded, Dropped atomic.Int64
}

// StartUDPProxy listens on a free loopback port and forwards to upstream
// with imp; it is closed when the test ends.
func StartUDPProxy(t testing.TB, upstream string, imp Impairment) *UDPProxy {
	t.Helper()
	up, err := netip.ParseAddrPort(upstream)
	if err != nil {
		t.Fatalf("udp proxy upstream %q: %v", upstream, err)
	}
	ln, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	p := &UDPProxy{ln: ln, upstream: up, clients: map[netip.AddrPort]*net.UDPConn{}}
	p.imp.Store(&imp)
	go p.serve()
	t.Cleanup(p.Close)
	return p
}

// Addr is the proxy's address, for clients.
func (p *UDPProxy) Addr() string { return p.ln.LocalAddr().String() }

// Set changes the impairment from now on.
func (p *UDPProxy) Set(imp Impairment) { p.imp.Store(&imp) }

// Close stops the proxy.
func (p *UDPProxy) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	p.closed = true
	p.ln.Close()
	for _, c := range p.clients {
		c.Close()
	}
}

func (p *UDPProxy) serve() {
	buf := make([]byte, 64<<10)
	for {
		n, from, err := p.ln.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		up := p.upstreamFor(from)
		if up == nil {
			return
		}
		p.send(buf[:n], func(b []byte) { _, _ = up.Write(b) })
	}
}

// upstreamFor returns the client's own upstream socket, starting its
// return path on first use.
func (p *UDPProxy) upstreamFor(client netip.AddrPort) *net.UDPConn {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	if c := p.clients[client]; c != nil {
		return c
	}
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(p.upstream))
	if err != nil {
		return nil
	}
	p.clients[client] = c
	go func() {
		buf := make([]byte, 64<<10)
		for {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			p.send(buf[:n], func(b []byte) { _, _ = p.ln.WriteToUDPAddrPort(b, client) })
		}
	}()
	return c
}

// send applies the impairment to one datagram and writes it with write.
func (p *UDPProxy) send(b []byte, write func([]byte)) {
	imp := p.imp.Load()
	if imp.Loss > 0 && rand.Float64() < imp.Loss {
		p.Dropped.Add(1)
		return
	}
	p.Forwarded.Add(1)
	d := imp.Delay
	if imp.Jitter > 0 {
		d += rand.N(imp.Jitter)
	}
	if d <= 0 {
		write(b)
		return
	}
	c := append([]byte(nil), b...)
	time.AfterFunc(d, func() { write(c) })
}
