package rdvsvc

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"github.com/pion/stun/v3"

	"github.com/parleychat/parley/libs/ratelimit"
)

// The STUN server (RFC 8489, with RFC 5780's NAT behaviour discovery).
// pion/stun is the codec; this file decides what to answer and from where.
//
// With an alternate address the server binds four sockets, both IPs on
// both ports: socket (i, j) has the i-th IP (0 primary, 1 alternate) and
// the j-th port. A Binding request is answered
//
//   - with XOR-MAPPED-ADDRESS (where it came from), OTHER-ADDRESS (the
//     public address of the socket with the other IP and the other port
//     than the one it arrived at; only with an alternate), RESPONSE-ORIGIN
//     (the public address of the socket the answer leaves from), SOFTWARE,
//     and FINGERPRINT when the request had one (RFC 8489 §14, RFC 5780 §7);
//     but never more than maxAmplification times the request's length:
//     SOFTWARE, then RESPONSE-ORIGIN, then OTHER-ADDRESS are left out
//     while it would be (a bare 20-byte request over IPv6 gets the mapped
//     address alone);
//   - from the socket it arrived at, or with CHANGE-REQUEST (RFC 5780 §7.2)
//     from the one with the other IP and/or port asked for; a server with
//     one address answers CHANGE-REQUEST 420 (RFC 5780 §6.1);
//   - to the address it came from, or with RESPONSE-PORT (RFC 5780 §7.5) to
//     that port of its IP (coturn's turnutils_stunclient asks for it);
//   - padded with a PADDING as long as the request's, when it had one
//     (RFC 5780 §7.6: fragmentation tests; never longer than the
//     request's);
//   - with USERNAME and MESSAGE-INTEGRITY, it is a session's registration
//     (register.go), answered once recorded, with MESSAGE-INTEGRITY too.
//
// Errors (400, 401, 420) always leave from the socket the request arrived
// at (to the RESPONSE-PORT when one was asked for and readable). Anything that is not a well-formed Binding request, or whose
// FINGERPRINT does not match, is dropped silently, as are requests past a
// source's rate limit (Config.STUNRate; an IPv4 address or an IPv6 /64,
// ratelimit.Source).

// software is the SOFTWARE attribute of every answer.
const software = "parley-rendezvous"

// maxPacket is the largest datagram read, a padded request on a jumbo-frame
// path (RFC 5780 §7.6); others are far smaller (clients keep to 548 bytes,
// RFC 8489 §6.1). A larger one is dropped.
const maxPacket = 9216

// socket is one of the server's UDP sockets.
type socket struct {
	conn     *net.UDPConn
	ip, port int            // 0: the primary's, 1: the alternate's
	bound    netip.AddrPort // as bound (the port chosen when 0 was asked)
	public   netip.AddrPort // as clients reach it
}

// stunServer answers STUN on the rendezvous's sockets.
type stunServer struct {
	s        *Service
	cfg      addrConfig
	limiter  *ratelimit.Limiter
	misses   *ratelimit.Limiter // registrations regKeys cannot vouch for (one key)
	warn     *ratelimit.Limiter // the store's failures logged (one key)
	software stun.Software

	// jobs carries registrations from the read loops to the workers;
	// full: the registration is dropped.
	jobs chan registration

	mu     sync.Mutex // guards socks (set once by listen) and closed
	socks  []*socket  // index ip*2+port; one socket without an alternate
	closed bool       // by close or serve: listen binds nothing again
}

func newSTUNServer(s *Service, cfg addrConfig) *stunServer {
	return &stunServer{
		s: s, cfg: cfg, software: stun.NewSoftware(software),
		limiter: ratelimit.New(s.cfg.STUNRate, time.Second, s.cfg.STUNBurst, s.now),
		misses:  ratelimit.New(missRate, time.Second, missBurst, s.now),
		warn:    ratelimit.New(1, 10*time.Second, 1, s.now),
		jobs:    make(chan registration, s.cfg.STUNWorkers),
	}
}

// listen binds the sockets unless done already.
func (st *stunServer) listen() error {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.closed {
		return errClosed
	}
	if st.socks != nil {
		return nil
	}
	var (
		socks []*socket
		err   error
	)
	if !st.cfg.alt.IsValid() {
		var c *net.UDPConn
		if c, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(st.cfg.bind)); err != nil {
			return fmt.Errorf("rendezvous: stun %s: %w", st.cfg.bind, err)
		}
		socks = []*socket{{conn: c, bound: boundAddr(c)}}
	} else {
		// With port 0 the kernel picks each port on the primary IP, and
		// another process may hold it on the alternate IP: pick again.
		for range 20 {
			socks, err = bindFour(st.cfg.bind, st.cfg.alt)
			if err == nil || st.cfg.bind.Port() != 0 || !errors.Is(err, syscall.EADDRINUSE) {
				break
			}
		}
		if err != nil {
			return fmt.Errorf("rendezvous: stun: %w", err)
		}
	}
	// Public addresses: the configured ones, else the bound ones; each
	// socket's is its IP's public IP and its port's public port.
	pub := [2]netip.AddrPort{st.cfg.public, st.cfg.publicAlt}
	for i := range pub {
		if !pub[i].IsValid() && i*3 < len(socks) {
			pub[i] = socks[i*3].bound
		}
	}
	for _, k := range socks {
		k.public = netip.AddrPortFrom(pub[k.ip].Addr(), pub[k.port].Port())
	}
	st.socks = socks
	return nil
}

// bindFour binds primary and alternate IPs on both ports: socket (0,0) is
// primary, (1,1) alternate. With port 0 in both, the ports are the ones
// the kernel picks for the primary IP.
func bindFour(primary, alt netip.AddrPort) ([]*socket, error) {
	socks := make([]*socket, 4)
	fail := func(err error) ([]*socket, error) {
		for _, k := range socks {
			if k != nil {
				_ = k.conn.Close()
			}
		}
		return nil, err
	}
	ports := [2]uint16{primary.Port(), alt.Port()}
	ips := [2]netip.Addr{primary.Addr(), alt.Addr()}
	for j := range 2 {
		for i := range 2 {
			at := netip.AddrPortFrom(ips[i], ports[j])
			c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(at))
			if err != nil {
				return fail(fmt.Errorf("%s: %w", at, err))
			}
			k := &socket{conn: c, ip: i, port: j, bound: boundAddr(c)}
			socks[i*2+j] = k
			ports[j] = k.bound.Port()
		}
	}
	return socks, nil
}

func boundAddr(c *net.UDPConn) netip.AddrPort {
	ap := c.LocalAddr().(*net.UDPAddr).AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// bound returns the bound primary and alternate addresses.
func (st *stunServer) bound() (primary, alternate netip.AddrPort) {
	st.mu.Lock()
	defer st.mu.Unlock()
	switch len(st.socks) {
	case 1:
		return st.socks[0].bound, netip.AddrPort{}
	case 4:
		return st.socks[0].bound, st.socks[3].bound
	}
	return netip.AddrPort{}, netip.AddrPort{}
}

// publicAddrs returns what clients are told: the public primary and
// alternate addresses ("" for none), or before listen the configured ones.
func (st *stunServer) publicAddrs() (primary, alternate string) {
	st.mu.Lock()
	defer st.mu.Unlock()
	switch len(st.socks) {
	case 1:
		return st.socks[0].public.String(), ""
	case 4:
		return st.socks[0].public.String(), st.socks[3].public.String()
	}
	p, a := st.cfg.public, st.cfg.publicAlt
	if !p.IsValid() {
		p = st.cfg.bind
	}
	if !a.IsValid() {
		a = st.cfg.alt
	}
	if !a.IsValid() {
		return p.String(), ""
	}
	return p.String(), a.String()
}

// errClosed: the server was closed (or served and stopped); it does not
// bind again.
var errClosed = errors.New("rendezvous: stun server closed")

// close closes the sockets (serve's goroutines, if any, end).
func (st *stunServer) close() {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.closed = true
	for _, k := range st.socks {
		_ = k.conn.Close()
	}
}

// serve reads every socket and runs the registration workers until ctx
// ends, then closes the sockets and waits for its goroutines.
func (st *stunServer) serve(ctx context.Context) error {
	st.mu.Lock()
	socks := st.socks
	st.mu.Unlock()
	var wg sync.WaitGroup
	for _, k := range socks {
		wg.Go(func() { st.readLoop(k) })
	}
	wctx, stop := context.WithCancel(ctx)
	for range st.s.cfg.STUNWorkers {
		wg.Go(func() { st.worker(wctx) })
	}
	st.s.log.Info("stun serving", "addrs", socketAddrs(socks))
	<-ctx.Done()
	stop()
	st.close()
	wg.Wait()
	return nil
}

func socketAddrs(socks []*socket) []string {
	out := make([]string, len(socks))
	for i, k := range socks {
		out[i] = k.bound.String()
	}
	return out
}

// readLoop answers one socket's requests until it is closed.
func (st *stunServer) readLoop(k *socket) {
	buf := make([]byte, maxPacket+1)
	req, res := new(stun.Message), new(stun.Message)
	for {
		n, from, err := k.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // a transient error of one datagram
		}
		st.packet(k, buf[:n], netip.AddrPortFrom(from.Addr().Unmap(), from.Port()), req, res)
	}
}

// packet handles one datagram that arrived at socket k from from; req and
// res are the read loop's messages, reused.
func (st *stunServer) packet(k *socket, pkt []byte, from netip.AddrPort, req, res *stun.Message) {
	m := st.s.metrics
	if !wellFormed(pkt) {
		m.dropMalformed.Inc()
		return
	}
	if ok, _ := st.limiter.Take(ratelimit.Source(from.Addr()).String()); !ok {
		m.dropLimited.Inc()
		return
	}
	if err := stun.Decode(pkt, req); err != nil || req.Type != stun.BindingRequest {
		m.dropMalformed.Inc()
		return
	}
	if req.Contains(stun.AttrFingerprint) && stun.Fingerprint.Check(req) != nil {
		m.dropMalformed.Inc()
		return
	}
	to, ok := responseTo(req, from)
	if !ok {
		st.fail(res, req, k, from, stun.CodeBadRequest, nil)
		return
	}
	if unknown := st.unknownAttributes(req); len(unknown) > 0 {
		st.fail(res, req, k, to, stun.CodeUnknownAttribute, unknown)
		return
	}
	out, ok := st.changeTo(k, req)
	if !ok {
		st.fail(res, req, k, to, stun.CodeBadRequest, nil)
		return
	}
	hasUser, hasMI := req.Contains(stun.AttrUsername), req.Contains(stun.AttrMessageIntegrity)
	if hasUser || hasMI {
		// RFC 8489 §9.1.3: both or neither.
		if !hasUser || !hasMI {
			st.fail(res, req, k, to, stun.CodeBadRequest, nil)
			return
		}
		if req.Contains(stun.AttrResponsePort) {
			// The answer proves the source address: it goes there only.
			st.fail(res, req, k, from, stun.CodeBadRequest, nil)
			return
		}
		if !st.vouch(req, res, k, from) {
			return
		}
		st.enqueue(registration{pkt: append([]byte(nil), pkt...), recv: k, out: out, from: from, to: to})
		return
	}
	m.bindings.Inc()
	st.succeed(res, req, k, out, from, to, nil)
}

// vouch is the read loop's check of a registration that came from to,
// before it costs a worker and a store read: a USERNAME that names no
// session, or a MESSAGE-INTEGRITY that does not check with the side's key
// in regKeys, is answered 401 here, and a genuine one without its
// address's NONCE 438; one regKeys does not know goes on within st.misses
// and is dropped as busy beyond (the client retransmits). It reports
// whether req goes on to the workers.
func (st *stunServer) vouch(req, res *stun.Message, k *socket, to netip.AddrPort) bool {
	var u stun.Username
	id, side, ok := "", "", u.GetFrom(req) == nil
	if ok {
		id, side, ok = parseRegisterUsername(string(u))
	}
	if !ok {
		st.fail(res, req, k, to, stun.CodeUnauthorized, nil)
		return false
	}
	v, key, nonceKey := st.s.regKeys.check(id, side, req)
	switch v {
	case forged:
		st.fail(res, req, k, to, stun.CodeUnauthorized, nil)
		return false
	case unknown:
		if ok, _ := st.misses.Take(""); !ok {
			st.s.metrics.dropBusy.Inc()
			return false
		}
	case genuine:
		// Without its address's NONCE it would get a 438 from the
		// workers: answered here, so a flood of signed registrations
		// from spoofed sources costs no store read.
		if want, ok := nonceChecks(nonceKey, side, to, req); !ok {
			st.stale(res, req, k, to, want, key)
			return false
		}
	}
	return true
}

// wellFormed reports whether pkt can be a STUN message at all (RFC 8489
// §6): the two top bits zero, the magic cookie, a length that is a
// multiple of 4 and exactly what follows the 20-byte header. Cheap checks
// before the rate limit and the decoder.
func wellFormed(pkt []byte) bool {
	if len(pkt) < 20 || len(pkt) > maxPacket || pkt[0]&0xc0 != 0 || !stun.IsMessage(pkt) {
		return false
	}
	n := int(binary.BigEndian.Uint16(pkt[2:4]))
	return n%4 == 0 && 20+n == len(pkt)
}

// unknownAttributes are req's comprehension-required attributes
// (0x0000-0x7FFF, RFC 8489 §14) the server does not understand: a
// request with any is answered 420 listing them. CHANGE-REQUEST is
// understood only with an alternate address (RFC 5780 §6.1).
func (st *stunServer) unknownAttributes(req *stun.Message) stun.UnknownAttributes {
	var unknown stun.UnknownAttributes
	for _, a := range req.Attributes {
		t := a.Type
		if t >= 0x8000 {
			continue
		}
		switch t {
		case stun.AttrUsername, stun.AttrMessageIntegrity, stun.AttrMessageIntegritySHA256, stun.AttrResponsePort,
			stun.AttrRealm, stun.AttrNonce, stun.AttrPadding, stun.AttrPriority, stun.AttrUseCandidate:
			continue
		case stun.AttrChangeRequest:
			if len(st.socks) == 4 {
				continue
			}
		}
		unknown = append(unknown, t)
	}
	return unknown
}

// CHANGE-REQUEST flags (RFC 5780 §7.2).
const (
	changeIP   = 0x04
	changePort = 0x02
)

// parseChangeRequest reads a CHANGE-REQUEST value (RFC 5780 §7.2: 32 bits,
// flag A 0x4 "change IP", flag B 0x2 "change port", the rest zero and
// ignored): ok false for a value that is not 4 bytes.
func parseChangeRequest(v []byte) (ip, port, ok bool) {
	if len(v) != 4 {
		return false, false, false
	}
	f := binary.BigEndian.Uint32(v)
	return f&changeIP != 0, f&changePort != 0, true
}

// parseResponsePort reads a RESPONSE-PORT value (RFC 5780 §7.5: a 16-bit
// port and 2 bytes of padding): ok false for one that is not 4 bytes or
// names port 0.
func parseResponsePort(v []byte) (uint16, bool) {
	if len(v) != 4 {
		return 0, false
	}
	p := binary.BigEndian.Uint16(v)
	return p, p != 0
}

// responseTo is where the answer to req, which came from from, goes: from,
// or its IP at RESPONSE-PORT. ok is false for a malformed RESPONSE-PORT
// (answered 400 at from).
func responseTo(req *stun.Message, from netip.AddrPort) (netip.AddrPort, bool) {
	v, err := req.Get(stun.AttrResponsePort)
	if err != nil {
		return from, true
	}
	p, ok := parseResponsePort(v)
	if !ok {
		return from, false
	}
	return netip.AddrPortFrom(from.Addr(), p), true
}

// changeTo returns the socket the answer to req leaves from: k, or the one
// CHANGE-REQUEST asks for. ok is false for a malformed CHANGE-REQUEST.
func (st *stunServer) changeTo(k *socket, req *stun.Message) (*socket, bool) {
	v, err := req.Get(stun.AttrChangeRequest)
	if err != nil {
		return k, true // none (unknownAttributes refused it without an alternate)
	}
	ip, port, ok := parseChangeRequest(v)
	if !ok {
		return nil, false
	}
	i, j := k.ip, k.port
	if ip {
		i = 1 - i
	}
	if port {
		j = 1 - j
	}
	return st.socks[i*2+j], true
}

// maxAmplification bounds an answer's length by its request's: the
// factor QUIC allows toward an address that has not shown it receives
// there (RFC 9000 §8.1). A STUN request's source may be spoofed, and an
// answer longer than that would make the rendezvous worth an attacker's
// while as a reflector. Optional attributes are left out, in the order
// answer drops them, to keep within it.
const maxAmplification = 3

// succeed answers req, which arrived at recv from from, with a Binding
// success response sent from out to to; with key, MESSAGE-INTEGRITY too.
func (st *stunServer) succeed(res, req *stun.Message, recv, out *socket, from, to netip.AddrPort, key []byte) {
	head := []stun.Setter{stun.NewTransactionIDSetter(req.TransactionID), stun.BindingSuccess,
		&stun.XORMappedAddress{IP: from.Addr().AsSlice(), Port: int(from.Port())}}
	// What a NAT classification needs first (RFC 5780 §7.3), then what is
	// informational.
	opt := make([]stun.Setter, 0, 3)
	if len(st.socks) == 4 {
		o := st.socks[(1-recv.ip)*2+(1-recv.port)].public
		opt = append(opt, &stun.OtherAddress{IP: o.Addr().AsSlice(), Port: int(o.Port())})
	}
	opt = append(opt, &stun.ResponseOrigin{IP: out.public.Addr().AsSlice(), Port: int(out.public.Port())}, st.software)
	tail := make([]stun.Setter, 0, 3)
	if p, err := req.Get(stun.AttrPadding); err == nil {
		tail = append(tail, padding(len(p)))
	}
	if key != nil {
		tail = append(tail, stun.MessageIntegrity(key))
	}
	st.answer(res, req, out, to, head, opt, tail)
}

// fail answers req with error code, from the socket it arrived at to to,
// with UNKNOWN-ATTRIBUTES when given (420).
func (st *stunServer) fail(res, req *stun.Message, k *socket, to netip.AddrPort, code stun.ErrorCode, unknown stun.UnknownAttributes) {
	head := []stun.Setter{stun.NewTransactionIDSetter(req.TransactionID), stun.BindingError, code}
	if len(unknown) > 0 {
		head = append(head, unknown)
	}
	st.s.metrics.stunError(int(code))
	st.answer(res, req, k, to, head, []stun.Setter{st.software}, nil)
}

// answer builds the answer to req (head, as many of opt as fit, tail, and
// FINGERPRINT when req had one) and sends it from k to to. Attributes of
// opt are left out from the last while the answer would be longer than
// maxAmplification times req; an answer that is too long even without
// them is not sent (none is, at the sizes STUN allows: it is a guard).
func (st *stunServer) answer(res, req *stun.Message, k *socket, to netip.AddrPort, head, opt, tail []stun.Setter) {
	limit := maxAmplification * len(req.Raw)
	fp := req.Contains(stun.AttrFingerprint)
	setters := make([]stun.Setter, 0, len(head)+len(opt)+len(tail)+1)
	for n := len(opt); n >= 0; n-- {
		setters = append(append(append(setters[:0], head...), opt[:n]...), tail...)
		if fp {
			setters = append(setters, stun.Fingerprint)
		}
		if err := res.Build(setters...); err != nil {
			st.s.log.Error("stun: build response", "err", err)
			return
		}
		if len(res.Raw) <= limit {
			st.send(res, k, to)
			return
		}
	}
	st.s.metrics.dropAmplify.Inc()
}

// padding is a PADDING attribute of n zero bytes (RFC 5780 §7.6).
type padding int

func (p padding) AddTo(m *stun.Message) error {
	m.Add(stun.AttrPadding, make([]byte, p))
	return nil
}

func (st *stunServer) send(res *stun.Message, k *socket, to netip.AddrPort) {
	if _, err := k.conn.WriteToUDPAddrPort(res.Raw, to); err != nil && !errors.Is(err, net.ErrClosed) {
		st.s.log.Debug("stun: send", "to", to, "err", err)
	}
}
