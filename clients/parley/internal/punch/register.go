package punch

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/pion/stun/v3"
)

// Register registers the session socket at the rendezvous (§20.3): a
// Binding request with USERNAME = RegisterUsername, MESSAGE-INTEGRITY
// keyed with RegisterKey and FINGERPRINT to STUNAddr and STUNAltAddr,
// every 200 ms until each answers, for 5 s at most. A 438 answer carries
// the NONCE that proves we receive at our address: the request is sent
// again at once with it (and the next Register starts with it). It returns the
// server-reflexive address (the primary's answer): with it the rendezvous
// introduces the peers. ErrRegisterTimeout means UDP does not get
// through (the session stays relayed); ErrRegisterRefused, a 401.
// Register again after P2PUpdateRequest; the Agent does so itself when a
// path dies.
func (a *Agent) Register(ctx context.Context) (netip.AddrPort, error) {
	if a.cfg.RegisterUsername == "" || len(a.cfg.RegisterKey) == 0 || a.cfg.STUNAddr == "" {
		return netip.AddrPort{}, fmt.Errorf("%w: registering needs RegisterUsername, RegisterKey and STUNAddr", ErrBadConfig)
	}
	ctx, cancel := context.WithTimeout(ctx, registerGiveUp)
	defer cancel()
	stop := context.AfterFunc(a.ctx, cancel) // Close ends it too
	defer stop()

	dsts := []string{a.cfg.STUNAddr}
	if a.cfg.STUNAltAddr != "" {
		dsts = append(dsts, a.cfg.STUNAltAddr)
	}
	type req struct {
		id       txID
		dst      netip.AddrPort
		b        []byte
		answered bool
	}
	reqs := make([]*req, 0, len(dsts))
	answers := make(chan regAnswer, 8)
	now := time.Now()
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return netip.AddrPort{}, ErrClosed
	}
	a.mu.Unlock()
	for _, d := range dsts {
		ap, err := resolve(ctx, d)
		if err != nil {
			return netip.AddrPort{}, err
		}
		id := stun.NewTransactionID()
		a.mu.Lock()
		nonce := a.nonces[ap]
		a.mu.Unlock()
		b, err := buildRegister(id, a.cfg.RegisterUsername, nonce, a.regKey)
		if err != nil {
			return netip.AddrPort{}, err
		}
		reqs = append(reqs, &req{id: id, dst: ap, b: b})
	}
	a.mu.Lock()
	for _, r := range reqs {
		a.txns[r.id] = &txn{kind: txnRegister, dst: r.dst, at: now, reg: answers}
	}
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		for _, r := range reqs {
			delete(a.txns, r.id)
		}
		a.mu.Unlock()
	}()

	var srflx netip.AddrPort
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			if a.ctx.Err() != nil {
				return netip.AddrPort{}, ErrClosed
			}
			if srflx.IsValid() {
				// The alternate never answered: the mapping stays unknown
				// to the rendezvous, but the peers can be introduced.
				a.log.Warn("punch: the rendezvous's alternate address did not answer", "addr", a.cfg.STUNAltAddr)
				return srflx, nil
			}
			if err := context.Cause(ctx); !errors.Is(err, context.DeadlineExceeded) {
				return netip.AddrPort{}, err
			}
			return netip.AddrPort{}, ErrRegisterTimeout
		case ans := <-answers:
			if ans.refused {
				return netip.AddrPort{}, ErrRegisterRefused
			}
			if ans.nonce != "" {
				a.mu.Lock()
				if a.nonces == nil {
					a.nonces = make(map[netip.AddrPort]string)
				}
				a.nonces[ans.dst] = ans.nonce
				a.mu.Unlock()
				for _, r := range reqs {
					if r.dst != ans.dst || r.answered {
						continue
					}
					// Another request, so another transaction (RFC 8489
					// §6.3: a retransmission repeats the bytes).
					id := stun.NewTransactionID()
					a.mu.Lock()
					if t := a.txns[r.id]; t != nil {
						a.txns[id] = t
						delete(a.txns, r.id)
					}
					a.mu.Unlock()
					r.id = id
					b, err := buildRegister(r.id, a.cfg.RegisterUsername, ans.nonce, a.regKey)
					if err != nil {
						return netip.AddrPort{}, err
					}
					r.b = b
					if err := a.session.write(r.b, r.dst); err != nil {
						a.log.Debug("punch: register send", "dst", r.dst, "err", err)
					}
				}
				continue
			}
			all := true
			for i, r := range reqs {
				if r.dst == ans.dst {
					r.answered = true
					if i == 0 {
						srflx = ans.mapped
					}
				}
				all = all && r.answered
			}
			if all {
				a.mu.Lock()
				a.srflx = srflx
				a.mu.Unlock()
				a.log.Debug("punch: registered", "srflx", srflx)
				return srflx, nil
			}
		case <-t.C:
			for _, r := range reqs {
				if !r.answered {
					if err := a.session.write(r.b, r.dst); err != nil {
						a.log.Debug("punch: register send", "dst", r.dst, "err", err)
					}
				}
			}
			t.Reset(registerInterval)
		}
	}
}

// handleRegisterResponse takes the rendezvous's answer to a registration:
// a success signed with the register key, or 401.
func (a *Agent) handleRegisterResponse(s *sock, from netip.AddrPort, m *stun.Message, t *txn) {
	if s != a.session || from != t.dst || stun.Fingerprint.Check(m) != nil {
		return
	}
	var ans regAnswer
	ans.dst = t.dst
	switch m.Type.Class {
	case stun.ClassSuccessResponse:
		if a.regKey.Check(m) != nil {
			return
		}
		mapped, ok := mappedAddr(m)
		if !ok {
			return
		}
		ans.mapped = mapped
	case stun.ClassErrorResponse:
		var ec stun.ErrorCodeAttribute
		if ec.GetFrom(m) != nil {
			return
		}
		switch ec.Code {
		case stun.CodeUnauthorized:
			ans.refused = true
		case stun.CodeStaleNonce:
			var n stun.Nonce
			if a.regKey.Check(m) != nil || n.GetFrom(m) != nil || len(n) == 0 {
				return
			}
			ans.nonce = string(n)
		default:
			return
		}
	default:
		return
	}
	select {
	case t.reg <- ans:
	default:
	}
}

// resolve turns host:port into an address, preferring IPv4 (which works
// from a dual-stack socket too).
func resolve(ctx context.Context, hostport string) (netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(hostport); err == nil {
		return unmap(ap), nil
	}
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("punch: rendezvous address %q: %w", hostport, err)
	}
	pn, err := net.DefaultResolver.LookupPort(ctx, "udp", port)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("punch: rendezvous address %q: %w", hostport, err)
	}
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("punch: rendezvous address %q: %w", hostport, err)
	}
	if len(ips) == 0 {
		return netip.AddrPort{}, fmt.Errorf("punch: rendezvous address %q: no address", hostport)
	}
	ip := ips[0]
	for _, c := range ips {
		if c.Unmap().Is4() {
			ip = c
			break
		}
	}
	return netip.AddrPortFrom(ip.Unmap(), uint16(pn)), nil
}
