// Package natcheck finds out how the NAT in front of a UDP socket behaves,
// with the tests of RFC 5780 §4.3 (mapping) and §4.4 (filtering) against a
// STUN server that has two addresses (Parley's rendezvous, or any RFC 5780
// server), as docs/protocol.md §20.3 describes and `parley nat` shows.
//
// The answer says whether direct sessions are likely to work: two cone
// NATs connect directly; a symmetric NAT connects to a full or restricted
// cone, to a port-restricted cone only with the birthday technique, and
// never to another symmetric NAT (the session stays relayed).
//
// Classify sends every request 3 times 200 ms apart (RFC 8489's
// retransmissions, shortened as §20.3 allows) and waits 200 ms after the
// last: a test that gets no answer takes 600 ms. The filtering tests go
// out together with each other and the mapping tests follow the first one,
// so a classification takes about 600 ms plus three round trips.
package natcheck

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/pion/stun/v3"
)

// Behavior is a NAT's mapping or filtering behaviour (RFC 4787 §4.1, §5).
type Behavior int

const (
	// Unknown: the test could not be made (no alternate server address,
	// no answer, or a server that ignored CHANGE-REQUEST).
	Unknown Behavior = iota
	// EndpointIndependent: one public address whatever the destination
	// (mapping); anyone may send in (filtering).
	EndpointIndependent
	// AddressDependent: a public address per destination IP (mapping);
	// only IPs sent to may send in (filtering).
	AddressDependent
	// AddressPortDependent: a public address per destination IP and port
	// (mapping); only IPs and ports sent to may send in (filtering).
	AddressPortDependent
)

func (b Behavior) String() string {
	switch b {
	case EndpointIndependent:
		return "endpoint-independent"
	case AddressDependent:
		return "address-dependent"
	case AddressPortDependent:
		return "address-and-port-dependent"
	default:
		return "unknown"
	}
}

// Result is what Classify found.
type Result struct {
	Mapped     netip.AddrPort // the socket's public address as the server's primary address saw it
	Other      netip.AddrPort // the server's alternate address (OTHER-ADDRESS)
	Mapping    Behavior
	Filtering  Behavior
	NoNAT      bool // Mapped is the socket's own address: no NAT (a firewall may still filter)
	UDPBlocked bool // the server never answered: UDP does not get through
}

// Name is the classic name of the NAT: "full cone", "restricted cone",
// "port-restricted cone", "symmetric", "open internet", "UDP blocked", or
// "unknown" when a test could not be made.
func (r Result) Name() string {
	switch {
	case r.UDPBlocked:
		return "UDP blocked"
	case r.NoNAT:
		return "open internet"
	case r.Mapping == AddressDependent || r.Mapping == AddressPortDependent:
		return "symmetric"
	case r.Mapping != EndpointIndependent:
		return "unknown"
	}
	switch r.Filtering {
	case EndpointIndependent:
		return "full cone"
	case AddressDependent:
		return "restricted cone"
	case AddressPortDependent:
		return "port-restricted cone"
	}
	return "unknown"
}

// Advice says in one line what the NAT means for direct sessions
// (docs/protocol.md §20.4): with whom they are likely to go direct, and
// when they stay relayed.
func (r Result) Advice() string {
	switch {
	case r.UDPBlocked:
		return "always relayed: no UDP gets through (the relay still cannot read anything)"
	case r.NoNAT:
		return "direct with almost every peer"
	case r.Mapping == EndpointIndependent && r.Filtering == AddressPortDependent:
		return "direct with peers behind cone NATs; with symmetric NATs only sometimes (the birthday technique), else relayed"
	case r.Mapping == EndpointIndependent && r.Filtering != Unknown:
		return "direct with almost every peer"
	case r.Mapping == AddressDependent || r.Mapping == AddressPortDependent:
		return "direct with peers behind cone NATs (a port-restricted one only sometimes); relayed with other symmetric NATs"
	}
	return "unknown: each session tries to go direct and falls back to the relay"
}

// Errors.
var (
	// ErrNoRendezvous: Discover was given no STUN server address (the
	// server's Welcome names none: it runs no rendezvous).
	ErrNoRendezvous = errors.New("natcheck: no rendezvous address")
	// ErrNoOtherAddress: the server gave no alternate address (or one on
	// its own IP), so only Result.Mapped is known.
	ErrNoOtherAddress = errors.New("natcheck: the server has no alternate address")
	// ErrBadServer: the server address does not resolve to one UDP address.
	ErrBadServer = errors.New("natcheck: bad server address")
)

// Retransmission: 3 tries 200 ms apart, then 200 ms more for the answer.
const (
	tries    = 3
	interval = 200 * time.Millisecond
)

// CHANGE-REQUEST flags (RFC 5780 §7.2).
const (
	changeIP   = 0x04
	changePort = 0x02
)

// Classify runs the tests from conn against the STUN server at server
// (host:port, the primary address). conn is read by Classify while it runs
// and must not be read by anyone else meanwhile; its read deadline is
// used and left cleared. A result with only Mapped comes with
// ErrNoOtherAddress; UDP that does not get through is a Result with
// UDPBlocked, not an error.
func Classify(ctx context.Context, conn net.PacketConn, server string) (Result, error) {
	primary, err := resolve(ctx, server)
	if err != nil {
		return Result{}, err
	}
	p := newProber(conn)
	defer p.stop()

	var res Result
	r1, err := p.do(ctx, primary, 0)
	if err != nil {
		return res, err
	}
	if r1 == nil {
		res.UDPBlocked = true
		return res, nil
	}
	if !r1.mapped.IsValid() {
		return res, fmt.Errorf("natcheck: the server's answer has no mapped address")
	}
	res.Mapped = r1.mapped
	res.Other = r1.other
	res.NoNAT = isLocal(conn.LocalAddr(), r1.mapped)
	if !r1.other.IsValid() || r1.other.Addr() == primary.Addr() || r1.other.Port() == primary.Port() {
		if res.NoNAT {
			res.Mapping = EndpointIndependent
		}
		return res, ErrNoOtherAddress
	}
	other := r1.other

	// Filtering, RFC 5780 §4.4. Both requests go to the primary address, so
	// they touch no mapping or filter state the other tests rely on; the
	// answer from the other IP and port must arrive before the mapping
	// tests send anything to that IP (which would open a restricted
	// cone's filter to it). The answer to the port-only change comes from
	// the primary IP, which the mapping tests do not touch, so that test
	// may overlap them.
	fctx, fcancel := context.WithCancel(ctx)
	defer fcancel()
	type fres struct {
		r   *response
		err error
	}
	f1done := make(chan fres, 1)
	f2done := make(chan fres, 1)
	go func() {
		r, err := p.do(fctx, primary, changeIP|changePort)
		f1done <- fres{r, err}
	}()
	go func() {
		r, err := p.do(fctx, primary, changePort)
		f2done <- fres{r, err}
	}()
	f1 := <-f1done
	if f1.err != nil {
		return res, f1.err
	}
	// answered reports whether r came from want: Unknown, true or false.
	answered := func(r *response, want netip.AddrPort) (known, yes bool) {
		if r == nil {
			return true, false
		}
		if r.errCode != 0 || r.from != want {
			return false, false // an error (420: one address) or a server that ignored the change
		}
		return true, true
	}
	known, yes := answered(f1.r, other)
	switch {
	case !known:
		res.Filtering = Unknown
	case yes:
		res.Filtering = EndpointIndependent
		fcancel() // the port-only test would tell nothing more
	}

	// Mapping, RFC 5780 §4.3.
	if res.NoNAT {
		res.Mapping = EndpointIndependent
	} else {
		r2, err := p.do(ctx, netip.AddrPortFrom(other.Addr(), primary.Port()), 0)
		if err != nil {
			return res, err
		}
		switch {
		case r2 == nil || !r2.mapped.IsValid():
			res.Mapping = Unknown
		case r2.mapped == r1.mapped:
			res.Mapping = EndpointIndependent
		default:
			r3, err := p.do(ctx, other, 0)
			if err != nil {
				return res, err
			}
			switch {
			case r3 == nil || !r3.mapped.IsValid():
				res.Mapping = Unknown
			case r3.mapped == r2.mapped:
				res.Mapping = AddressDependent
			default:
				res.Mapping = AddressPortDependent
			}
		}
	}

	if known && !yes {
		f2 := <-f2done
		if f2.err != nil {
			return res, f2.err
		}
		k2, yes2 := answered(f2.r, netip.AddrPortFrom(primary.Addr(), other.Port()))
		switch {
		case !k2:
			res.Filtering = Unknown
		case yes2:
			res.Filtering = AddressDependent
		default:
			res.Filtering = AddressPortDependent
		}
	}
	return res, nil
}

// Discover classifies the NAT in front of this machine: it opens a UDP
// socket (IPv4, any port), runs Classify from it against the rendezvous at
// stunAddr (the address the server announces, parley.Welcome.STUNAddr) and
// closes it. Results and errors are Classify's; an empty stunAddr is
// ErrNoRendezvous.
func Discover(ctx context.Context, stunAddr string) (Result, error) {
	if stunAddr == "" {
		return Result{}, ErrNoRendezvous
	}
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{})
	if err != nil {
		return Result{}, fmt.Errorf("natcheck: opening a UDP socket: %w", err)
	}
	defer conn.Close()
	return Classify(ctx, conn, stunAddr)
}

func resolve(ctx context.Context, server string) (netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(server); err == nil {
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
	}
	host, port, err := net.SplitHostPort(server)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%w: %q: %w", ErrBadServer, server, err)
	}
	pn, err := net.DefaultResolver.LookupPort(ctx, "udp", port)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%w: %q: %w", ErrBadServer, server, err)
	}
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil || len(ips) == 0 {
		return netip.AddrPort{}, fmt.Errorf("%w: %q: %w", ErrBadServer, server, err)
	}
	ip := ips[0]
	for _, a := range ips {
		if a.Unmap().Is4() { // the IPv4 address: it works from any socket
			ip = a
			break
		}
	}
	return netip.AddrPortFrom(ip.Unmap(), uint16(pn)), nil
}

// isLocal says whether mapped is conn's own address: the local address
// itself, or, for a socket bound to the unspecified address, one of the
// interfaces' addresses with the socket's port.
func isLocal(local net.Addr, mapped netip.AddrPort) bool {
	ua, ok := local.(*net.UDPAddr)
	if !ok {
		return false
	}
	la := ua.AddrPort()
	if la.Port() != mapped.Port() {
		return false
	}
	if la.Addr().Unmap() == mapped.Addr() {
		return true
	}
	if !la.Addr().IsUnspecified() {
		return false
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return false
	}
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(ipn.IP); ok && ip.Unmap() == mapped.Addr() {
				return true
			}
		}
	}
	return false
}

// response is the part of a Binding response the tests use.
type response struct {
	from    netip.AddrPort // where it came from
	mapped  netip.AddrPort // XOR-MAPPED-ADDRESS (or MAPPED-ADDRESS)
	other   netip.AddrPort // OTHER-ADDRESS
	errCode int            // an error response's code; 0 for success
}

// prober sends Binding requests on one socket and matches the answers by
// transaction ID. Its reader goroutine runs until stop.
type prober struct {
	conn net.PacketConn

	mu      sync.Mutex // guards pending
	pending map[[stun.TransactionIDSize]byte]chan *response

	done chan struct{} // closed by stop
	wg   sync.WaitGroup
}

func newProber(conn net.PacketConn) *prober {
	p := &prober{conn: conn, pending: map[[stun.TransactionIDSize]byte]chan *response{}, done: make(chan struct{})}
	p.wg.Add(1)
	go p.read()
	return p
}

// stop ends the reader: the read deadline in the past wakes it.
func (p *prober) stop() {
	close(p.done)
	_ = p.conn.SetReadDeadline(time.Unix(1, 0))
	p.wg.Wait()
	_ = p.conn.SetReadDeadline(time.Time{})
}

func (p *prober) read() {
	defer p.wg.Done()
	buf := make([]byte, 1500)
	for {
		n, addr, err := p.conn.ReadFrom(buf)
		select {
		case <-p.done:
			return
		default:
		}
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				time.Sleep(time.Millisecond) // an odd error: do not spin on it
			}
			continue
		}
		ua, ok := addr.(*net.UDPAddr)
		if !ok {
			continue
		}
		id, r, ok := parseResponse(buf[:n])
		if !ok {
			continue
		}
		r.from = netip.AddrPortFrom(ua.AddrPort().Addr().Unmap(), ua.AddrPort().Port())
		p.mu.Lock()
		ch := p.pending[id]
		p.mu.Unlock()
		if ch != nil {
			select {
			case ch <- r:
			default: // an answer to a retransmission: the first one counts
			}
		}
	}
}

// parseResponse reads a Binding success or error response (RFC 8489 §6.3;
// addresses RFC 8489 §14.1-14.2, OTHER-ADDRESS RFC 5780 §7.4).
func parseResponse(b []byte) (id [stun.TransactionIDSize]byte, r *response, ok bool) {
	if len(b) < 20 || b[0] > 3 || !stun.IsMessage(b) {
		return id, nil, false
	}
	m := &stun.Message{Raw: append([]byte(nil), b...)}
	if err := m.Decode(); err != nil {
		return id, nil, false
	}
	if m.Type.Method != stun.MethodBinding {
		return id, nil, false
	}
	if m.Contains(stun.AttrFingerprint) && stun.Fingerprint.Check(m) != nil {
		return id, nil, false
	}
	r = &response{}
	switch m.Type.Class {
	case stun.ClassSuccessResponse:
		var xa stun.XORMappedAddress
		if err := xa.GetFrom(m); err == nil {
			r.mapped = addrPort(xa.IP, xa.Port)
		} else {
			var ma stun.MappedAddress
			if err := ma.GetFrom(m); err == nil {
				r.mapped = addrPort(ma.IP, ma.Port)
			}
		}
		var oa stun.OtherAddress
		if err := oa.GetFrom(m); err == nil {
			r.other = addrPort(oa.IP, oa.Port)
		}
	case stun.ClassErrorResponse:
		var ec stun.ErrorCodeAttribute
		if err := ec.GetFrom(m); err != nil {
			return id, nil, false
		}
		r.errCode = int(ec.Code)
		if r.errCode == 0 {
			r.errCode = -1
		}
	default:
		return id, nil, false
	}
	return m.TransactionID, r, true
}

func addrPort(ip net.IP, port int) netip.AddrPort {
	a, ok := netip.AddrFromSlice(ip)
	if !ok || port < 0 || port > 65535 {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(a.Unmap(), uint16(port))
}

// do sends a Binding request to dst (with CHANGE-REQUEST flags, if any) up
// to 3 times 200 ms apart and returns the first answer, or nil if none
// came 200 ms after the last try.
func (p *prober) do(ctx context.Context, dst netip.AddrPort, change uint32) (*response, error) {
	setters := []stun.Setter{stun.TransactionID, stun.BindingRequest, stun.NewSoftware("parley natcheck")}
	if change != 0 {
		var v [4]byte
		binary.BigEndian.PutUint32(v[:], change)
		setters = append(setters, stun.RawAttribute{Type: stun.AttrChangeRequest, Length: 4, Value: v[:]})
	}
	setters = append(setters, stun.Fingerprint)
	req, err := stun.Build(setters...)
	if err != nil {
		return nil, fmt.Errorf("natcheck: build request: %w", err)
	}
	ch := make(chan *response, 1)
	p.mu.Lock()
	p.pending[req.TransactionID] = ch
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.pending, req.TransactionID)
		p.mu.Unlock()
	}()
	ua := net.UDPAddrFromAddrPort(dst)
	t := time.NewTimer(0)
	defer t.Stop()
	for try := 0; ; try++ {
		select {
		case r := <-ch:
			return r, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-t.C:
		}
		if try == tries {
			return nil, nil
		}
		// A send error (no route, say) is a lost request: the retries and
		// the timeout decide.
		_, _ = p.conn.WriteTo(req.Raw, ua)
		t.Reset(interval)
	}
}
