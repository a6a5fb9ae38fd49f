package punch

import (
	"math/rand/v2"
	"net/netip"
	"time"

	"github.com/pion/stun/v3"
)

// The birthday technique (§20.4). A symmetric NAT gives each destination
// a new public port, so the peer cannot know which port to answer. With N
// sockets on the symmetric side each sending to the peer's public address
// (opening N random ports in its NAT, each for that peer) and the peer
// probing M random ports of the symmetric side's IP, some probe hits an
// open port with probability about 1-exp(-N·M/65536): with N = 256 and
// M = 1024 per round, 98% in the first round, and the rounds repeat for
// 5 s. The probes also open the peer's own NAT's filter to those ports,
// so the symmetric side's next round gets in too.

type birthdayRole int

const (
	roleSymmetric birthdayRole = iota + 1 // this side's mapping is endpoint-dependent: extra sockets
	roleProber                            // the peer's is: random ports
)

// birthday is one attempt of the technique. Guarded by Agent.mu.
type birthday struct {
	role   birthdayRole
	target netip.AddrPort // the peer's server-reflexive candidate
	start  time.Time
	end    time.Time
	next   time.Time // next round (symmetric) or batch (prober)
	socks  []*sock   // the symmetric side's extra sockets, once open
	gen    uint64    // tells a late openExtras that its attempt is over
}

// startBirthday starts the technique if the mappings call for it.
// a.mu is held.
func (a *Agent) startBirthday(now time.Time) {
	in := a.intro
	var role birthdayRole
	switch {
	case in.Mapping == EndpointDependent && in.PeerMapping == EndpointIndependent:
		role = roleSymmetric
	case in.Mapping == EndpointIndependent && in.PeerMapping == EndpointDependent:
		role = roleProber
	default:
		return // two cones need no help; two symmetric NATs cannot be helped
	}
	var target netip.AddrPort
	for _, c := range in.Candidates {
		if c.Kind == ServerReflexive {
			target = unmap(c.Addr)
			break
		}
	}
	if !target.IsValid() {
		return
	}
	a.bdayGen++
	b := &birthday{role: role, target: target, start: now, end: now.Add(birthdayFor), next: now, gen: a.bdayGen}
	a.bday = b
	a.log.Info("punch: birthday technique", "role", role, "target", target)
	if role == roleSymmetric {
		a.wg.Add(1)
		go a.openExtras(b.gen, a.cfg.ExtraSockets)
	}
}

// stopBirthday ends the attempt; its sockets are closed by the caller
// (closeExtras). a.mu is held.
func (a *Agent) stopBirthday() {
	a.bday = nil
}

// openExtras opens the symmetric side's extra sockets without holding the
// lock, then hands them to the attempt gen if it still runs.
func (a *Agent) openExtras(gen uint64, n int) {
	defer a.wg.Done()
	var opened []*sock
	for range n {
		if a.ctx.Err() != nil {
			break
		}
		pc, err := a.cfg.ListenExtra()
		if err != nil {
			a.log.Warn("punch: birthday socket", "err", err)
			break
		}
		opened = append(opened, newSock(pc, true))
	}
	a.mu.Lock()
	if a.closed || a.bday == nil || a.bday.gen != gen || a.selected != nil {
		a.mu.Unlock()
		for _, s := range opened {
			s.close()
		}
		return
	}
	a.bday.socks = opened
	for _, s := range opened {
		a.extras[s] = true
		a.wg.Add(1)
		go a.read(s)
	}
	a.mu.Unlock()
	a.nudge()
}

// birthdayStep sends what is due. a.mu is held.
func (a *Agent) birthdayStep(now time.Time, soon func(time.Time)) []outPkt {
	b := a.bday
	if a.selected != nil || !now.Before(b.end) {
		// Over: keep only sockets on which the peer was heard (the
		// controlling side may still be choosing among their pairs).
		a.bday = nil
		if a.selected == nil {
			for s := range a.extras {
				used := false
				for k, p := range a.pairs {
					if k.s == s && (p.working || p.validated) {
						used = true
					}
				}
				if !used {
					delete(a.extras, s)
					s.close()
				}
			}
		}
		return nil
	}
	soon(b.end)
	if now.Before(b.next) {
		soon(b.next)
		return nil
	}
	var out []outPkt
	id := stun.NewTransactionID()
	msg, err := buildRequest(id, a.checkUser, a.checkKey, false)
	if err != nil {
		return nil
	}
	switch b.role {
	case roleSymmetric:
		if len(b.socks) == 0 {
			return nil // still opening: openExtras nudges
		}
		a.txns[id] = &txn{kind: txnBirthdaySym, dst: b.target, at: now}
		for _, s := range b.socks {
			if !s.closed.Load() {
				out = append(out, outPkt{s, b.target, msg})
			}
		}
		b.next = now.Add(birthdayRound)
	case roleProber:
		a.txns[id] = &txn{kind: txnBirthdayProbe, ip: b.target.Addr(), at: now}
		lo, hi := int(a.cfg.ProbePortMin), int(a.cfg.ProbePortMax)
		for range birthdayProbes / birthdayBatches {
			port := lo + rand.IntN(hi-lo+1)
			out = append(out, outPkt{a.session, netip.AddrPortFrom(b.target.Addr(), uint16(port)), msg})
		}
		b.next = now.Add(birthdayRound / birthdayBatches)
	}
	a.checksSent.Add(uint64(len(out)))
	soon(b.next)
	return out
}
