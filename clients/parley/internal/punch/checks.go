package punch

import (
	"time"
)

// checkOffsets is the schedule of §20.4, from the start (the introduction
// plus its start delay): every 20 ms for the first second, every 100 ms
// up to 5 s, then every second up to 30 s.
var checkOffsets = func() []time.Duration {
	var o []time.Duration
	for t := time.Duration(0); t < time.Second; t += 20 * time.Millisecond {
		o = append(o, t)
	}
	for t := time.Second; t < 5*time.Second; t += 100 * time.Millisecond {
		o = append(o, t)
	}
	for t := 5 * time.Second; t < 30*time.Second; t += time.Second {
		o = append(o, t)
	}
	return o
}()

// schedule is one introduction's run of checks.
type schedule struct {
	intro     uint32
	start     time.Time
	next      int  // index into checkOffsets of the next round
	bdayCheck bool // the 300 ms look at whether the birthday technique is needed was made
}

// Introduce takes an introduction (P2PEvent INTRO): the peer's candidates
// replace the old ones and the checks start (again) after in.StartDelay.
// An introduction not newer than the last one is ignored. A selected pair
// stays selected while it lives.
func (a *Agent) Introduce(in Intro) error {
	now := time.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return ErrClosed
	}
	if a.haveIntro && in.Number <= a.intro.Number {
		a.log.Debug("punch: old introduction ignored", "intro", in.Number, "last", a.intro.Number)
		return nil
	}
	in.Candidates = append([]Candidate(nil), in.Candidates...)
	a.haveIntro, a.intro = true, in
	if a.firstIntro.IsZero() {
		a.firstIntro = now
	}
	// The peer's candidates replace the old ones and what was learned from
	// them; the selected pair stays until it dies or another is nominated,
	// and so does a peer-reflexive pair the peer is checking from right now:
	// its introduction may have come first (both are sent at once), and
	// its checks stop once its end of the pair works.
	var kept []*pair
	for k, p := range a.pairs {
		switch {
		case p == a.selected:
		case p.kind == PeerReflexive && !p.sock.extra && now.Sub(p.peerCheck) < currentCheck &&
			a.kindOf(p.remote) == PeerReflexive: // an introduced one is made again below, of its kind
			kept = append(kept, p)
		default:
			delete(a.pairs, k)
		}
	}
	for _, c := range in.Candidates {
		ap := unmap(c.Addr)
		if !ap.IsValid() || ap.Port() == 0 {
			continue
		}
		k := pairKey{a.session, ap}
		if p := a.pairs[k]; p != nil {
			continue // a duplicate, or the selected pair
		}
		a.pairs[k] = &pair{sock: a.session, remote: ap, kind: c.Kind}
	}
	a.stopBirthday()
	if a.selected != nil {
		a.closeExtras(a.selected.sock)
	} else {
		a.closeExtras(nil)
	}
	a.nominating, a.nomDecideAt = nil, time.Time{}
	a.sched = &schedule{intro: in.Number, start: now.Add(in.StartDelay)}
	for _, p := range kept {
		if p.working {
			a.pairWorks(p, now) // the controlling side nominates as for a new one
		}
	}
	a.log.Debug("punch: introduced", "intro", in.Number, "candidates", len(in.Candidates),
		"mapping", in.Mapping, "peer_mapping", in.PeerMapping, "delay", in.StartDelay)
	a.nudge()
	return nil
}

// run is the Agent's clock: checks on schedule, nomination, the birthday
// technique and liveness. It ends at Close.
func (a *Agent) run() {
	defer a.wg.Done()
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		next := a.step(time.Now())
		d := time.Hour
		if !next.IsZero() {
			d = max(time.Until(next), 0)
		}
		t.Reset(d)
		select {
		case <-a.ctx.Done():
			return
		case <-a.wake:
		case <-t.C:
		}
	}
}

// step does what is due at now and says when to come back.
func (a *Agent) step(now time.Time) time.Time {
	var (
		out  []outPkt
		evs  []Event
		next time.Time
	)
	soon := func(t time.Time) {
		if !t.IsZero() && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return time.Time{}
	}

	// Liveness of the selected pair (§20.4).
	if p := a.selected; p != nil {
		if ps := a.pendingSince.Load(); ps != 0 {
			since := time.Unix(0, ps)
			switch {
			case !now.Before(since.Add(deadAfter)):
				evs = append(evs, a.pathDead(now)...)
			case !now.Before(since.Add(probeAfter)):
				if !now.Before(a.probeNext) {
					// The controlling side's probes nominate (§20.4), so
					// the controlled side follows it to a new mapping.
					if pk, ok := a.check(p, a.probeKind(), now); ok {
						out = append(out, pk)
					}
					a.probeNext = now.Add(probeInterval)
				}
				soon(a.probeNext)
				soon(since.Add(deadAfter))
			default:
				a.probeNext = time.Time{}
				soon(since.Add(probeAfter))
			}
		}
	}

	// After Moved: USE-CANDIDATE checks on the selected pair from the new
	// address until one is answered.
	if p := a.selected; p != nil && !a.moveUntil.IsZero() {
		switch {
		case !now.Before(a.moveUntil):
			a.moveUntil = time.Time{}
		case !now.Before(a.moveNext):
			if pk, ok := a.check(p, txnNominate, now); ok {
				out = append(out, pk)
			}
			a.moveNext = now.Add(nominateInterval)
			soon(a.moveNext)
		default:
			soon(a.moveNext)
		}
	}

	// The introduction's checks.
	if s := a.sched; s != nil {
		due := false
		for s.next < len(checkOffsets) && !now.Before(s.start.Add(checkOffsets[s.next])) {
			s.next++ // rounds missed while the machine was busy are not made up
			due = true
		}
		// A pair chosen under this introduction ends its checks; one chosen
		// before it does not (the peer may have moved).
		quiet := a.selected != nil && a.selIntro == s.intro
		if due && !quiet {
			for _, p := range a.pairs {
				// The schedule is for the introduced candidates from the
				// session socket. Learned pairs get triggered checks (the
				// birthday technique can teach a side hundreds: checking
				// them all every 20 ms would flood both sides), and a pair
				// that works needs no more (RFC 8445's Succeeded state):
				// the nomination and the liveness probes are checks of
				// their own.
				if p.working || p.sock != a.session || p.kind == PeerReflexive {
					continue
				}
				if pk, ok := a.check(p, txnCheck, now); ok {
					out = append(out, pk)
				}
			}
		}
		if !s.bdayCheck && !now.Before(s.start.Add(birthdayAfter)) {
			s.bdayCheck = true
			if a.selected == nil && !a.anyWorking() {
				a.startBirthday(now)
			}
		}
		if s.next < len(checkOffsets) {
			soon(s.start.Add(checkOffsets[s.next]))
			if !s.bdayCheck {
				soon(s.start.Add(birthdayAfter))
			}
		} else {
			a.sched = nil
		}
	}

	// The controlling side's nomination.
	if a.cfg.Controlling {
		if !a.nomDecideAt.IsZero() && a.nominating == nil && !now.Before(a.nomDecideAt) {
			a.nomDecideAt = time.Time{}
			if p := a.bestWorking(); p != nil {
				a.nominate(p, now)
			}
		}
		soon(a.nomDecideAt)
		if p := a.nominating; p != nil && !now.Before(a.nomNext) {
			if now.Sub(a.nomStart) >= nominateGiveUp || p.sock.closed.Load() {
				a.log.Debug("punch: nomination unanswered", "remote", p.remote)
				p.working = false
				a.nominating = nil
				if q := a.bestWorking(); q != nil {
					a.nominate(q, now)
				}
			}
			if p := a.nominating; p != nil {
				if pk, ok := a.check(p, txnNominate, now); ok {
					out = append(out, pk)
				}
				a.nomNext = now.Add(nominateInterval)
			}
		}
		if a.nominating != nil {
			soon(a.nomNext)
		}
	}

	// The birthday technique.
	if a.bday != nil {
		out = append(out, a.birthdayStep(now, soon)...)
	}

	// Forget unanswered transactions.
	if now.Sub(a.lastGC) >= time.Second {
		a.lastGC = now
		for id, t := range a.txns {
			if t.kind != txnRegister && now.Sub(t.at) > txnLifetime {
				delete(a.txns, id)
			}
		}
	}
	if len(a.txns) > 0 {
		soon(a.lastGC.Add(time.Second))
	}
	a.emit(evs...)
	a.mu.Unlock()
	a.send(out)
	return next
}

// pathDead forgets the selected pair (§20.4): traffic goes to the relay,
// the side registers again, and checks start over with the next
// introduction. a.mu is held.
func (a *Agent) pathDead(now time.Time) []Event {
	p := a.selected
	a.log.Info("punch: path dead", "local", p.sock.local, "remote", p.remote)
	a.selected = nil
	a.sel.Store(nil)
	a.pendingSince.Store(0)
	a.probeNext, a.moveUntil = time.Time{}, time.Time{}
	a.nominating, a.nomDecideAt = nil, time.Time{}
	for k, q := range a.pairs {
		q.working = false
		if q == p && (q.kind == PeerReflexive || q.birthday) {
			delete(a.pairs, k) // learned, not introduced: gone with the path
		}
	}
	if p.sock.extra {
		a.closeExtras(nil)
	}
	if a.sched != nil && a.sched.intro == a.selIntro {
		a.sched = nil // the next introduction starts the checks again
	}
	if a.cfg.RegisterUsername != "" && a.cfg.STUNAddr != "" {
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			if _, err := a.Register(a.ctx); err != nil && a.ctx.Err() == nil {
				a.log.Warn("punch: registering again after the path died", "err", err)
			}
		}()
	}
	return []Event{{Kind: EventDead, Pair: p.info()}}
}

// probeKind is the kind of a liveness probe: the controlling side's
// carry USE-CANDIDATE.
func (a *Agent) probeKind() txnKind {
	if a.cfg.Controlling {
		return txnNominate
	}
	return txnCheck
}

// Moved tells the Agent that this device's own addresses changed (it
// roamed to another network, or got another address): the selected pair
// now leaves from a new address, which the peer does not know yet. It
// sends USE-CANDIDATE checks on the pair at once, every 100 ms for up to
// 2 s until one is answered, so that the peer moves its end of the pair
// to the new address, and registers again with the rendezvous (§20.4
// Moving). The caller sends P2PUpdateRequest with its new host
// candidates, which brings a new introduction.
func (a *Agent) Moved() {
	now := time.Now()
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return
	}
	if p := a.selected; p != nil {
		a.log.Info("punch: moved", "remote", p.remote)
		a.moveUntil, a.moveNext = now.Add(nominateGiveUp), now
		if a.pendingSince.Load() == 0 {
			// Liveness watches the pair from now: a peer that cannot be
			// reached from the new address makes it dead in 5 s.
			a.pendingSince.Store(now.UnixNano())
		}
		a.nudge()
	}
	if a.cfg.RegisterUsername != "" && a.cfg.STUNAddr != "" {
		a.wg.Add(1) // under a.mu with closed false: Close has not begun to wait
		go func() {
			defer a.wg.Done()
			if _, err := a.Register(a.ctx); err != nil && a.ctx.Err() == nil {
				a.log.Warn("punch: registering again after a move", "err", err)
			}
		}()
	}
	a.mu.Unlock()
}

func (a *Agent) anyWorking() bool {
	for _, p := range a.pairs {
		if p.working {
			return true
		}
	}
	return false
}

// bestWorking is the working pair to nominate: host candidates first, then
// server-reflexive, then peer-reflexive; the earliest to work among equals.
// a.mu is held.
func (a *Agent) bestWorking() *pair {
	var best *pair
	for _, p := range a.pairs {
		if !p.working || p.sock.closed.Load() {
			continue
		}
		if best == nil || p.kind < best.kind || (p.kind == best.kind && p.workingAt.Before(best.workingAt)) {
			best = p
		}
	}
	return best
}
