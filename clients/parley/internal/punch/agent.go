package punch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/stun/v3"
)

// Timings of §20.3 and §20.4.
const (
	registerInterval = 200 * time.Millisecond
	registerGiveUp   = 5 * time.Second
	hostWait         = 50 * time.Millisecond  // the controlling side waits this long for a host pair
	nominateInterval = 100 * time.Millisecond // USE-CANDIDATE retransmissions
	nominateGiveUp   = 2 * time.Second        // a nomination not answered by then: the pair is not working after all
	probeAfter       = 3 * time.Second        // silence after a send that starts probes
	probeInterval    = 500 * time.Millisecond
	silentAfter      = time.Second     // a check from a new address on a pair not heard from this long moves it
	deadAfter        = 5 * time.Second // silence after a send that kills the pair
	birthdayAfter    = 300 * time.Millisecond
	birthdayFor      = 5 * time.Second
	birthdayRound    = 500 * time.Millisecond
	birthdayProbes   = 1024 // ports the non-symmetric side probes per round
	birthdayBatches  = 32   // spread over the round in this many batches
	txnLifetime      = 10 * time.Second
	maxPairs         = 1024 // learned candidates beyond this are answered but not checked
	triggerInterval  = 200 * time.Millisecond
	currentCheck     = time.Second // a peer-reflexive pair checked this recently survives an introduction
	maxPacket        = 2048
)

// sock is one local UDP socket: the session's or a birthday extra.
type sock struct {
	pc     net.PacketConn
	udp    *net.UDPConn // pc when it is one: writes without allocation
	local  netip.AddrPort
	extra  bool
	closed atomic.Bool
}

func newSock(pc net.PacketConn, extra bool) *sock {
	s := &sock{pc: pc, extra: extra}
	s.udp, _ = pc.(*net.UDPConn)
	if ap, ok := udpAddrPort(pc.LocalAddr()); ok {
		s.local = ap
	}
	return s
}

func (s *sock) write(b []byte, dst netip.AddrPort) error {
	if s.udp != nil {
		_, err := s.udp.WriteToUDPAddrPort(b, dst)
		return err
	}
	_, err := s.pc.WriteTo(b, net.UDPAddrFromAddrPort(dst))
	return err
}

func (s *sock) close() {
	if s.closed.CompareAndSwap(false, true) {
		s.pc.Close()
	}
}

// pair is a candidate pair. sock, remote, kind and birthday never change;
// the rest is guarded by Agent.mu.
type pair struct {
	sock     *sock
	remote   netip.AddrPort
	kind     CandidateKind
	birthday bool

	lastCheck time.Time // when we last sent a check on it
	peerCheck time.Time // when an authentic check from the peer last came on it
	working   bool      // an answer to our check came back from remote
	workingAt time.Time // when it first did
	validated bool      // the peer proved itself from remote (an authentic check or answer): its QUIC packets are taken
}

func (p *pair) info() Pair {
	return Pair{Local: p.sock.local, Remote: p.remote, Kind: p.kind, Birthday: p.birthday}
}

type pairKey struct {
	s      *sock
	remote netip.AddrPort
}

type txnKind uint8

const (
	txnCheck         txnKind = iota // an ordinary check (or a liveness probe) on p
	txnNominate                     // a check with USE-CANDIDATE on p
	txnBirthdaySym                  // the symmetric side's round: any extra socket, from dst
	txnBirthdayProbe                // the other side's batch: from any port of ip
	txnRegister                     // a registration to dst
)

// txn is an outstanding request, by transaction ID.
type txn struct {
	kind txnKind
	p    *pair
	dst  netip.AddrPort
	ip   netip.Addr
	at   time.Time
	reg  chan regAnswer // txnRegister
}

type regAnswer struct {
	dst     netip.AddrPort
	mapped  netip.AddrPort
	refused bool
	nonce   string // a 438's NONCE: register again with it
}

// outPkt is a packet to send once the lock is released.
type outPkt struct {
	s   *sock
	dst netip.AddrPort
	b   []byte
}

// Agent is the NAT traversal agent of one session.
type Agent struct {
	cfg       Config
	log       *slog.Logger
	checkUser string // USERNAME of our checks: "<session>:<side>"
	peerUser  string // USERNAME of the peer's
	checkKey  stun.MessageIntegrity
	regKey    stun.MessageIntegrity
	session   *sock

	ctx    context.Context // ends at Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // every goroutine the Agent starts; Close waits for them
	wake   chan struct{}  // nudges run to look at its deadlines again

	// sel is the selected pair, for the hot path (Send, the readers);
	// written under mu. pendingSince is when the first packet sent on it
	// since the peer was last heard from left (unix ns; 0: none pending);
	// heardAt is when the peer was last heard from on it (unix ns).
	sel          atomic.Pointer[pair]
	pendingSince atomic.Int64
	heardAt      atomic.Int64
	checksSent   atomic.Uint64
	checksAns    atomic.Uint64

	evMu   sync.Mutex // guards evQ
	evQ    []Event
	evWake chan struct{}

	mu          sync.Mutex // guards everything below
	closed      bool
	extras      map[*sock]bool
	pairs       map[pairKey]*pair
	txns        map[txID]*txn
	haveIntro   bool
	intro       Intro
	sched       *schedule // the current introduction's checks; nil when none run
	bday        *birthday // the birthday technique's attempt; nil when none runs
	bdayGen     uint64
	selected    *pair
	selIntro    uint32 // the introduction under which selected was chosen
	nominating  *pair
	nomStart    time.Time
	nomNext     time.Time
	nomDecideAt time.Time // when the controlling side stops waiting for a host pair
	probeNext   time.Time
	moveUntil   time.Time // after Moved: USE-CANDIDATE checks on the selected pair until answered or then
	moveNext    time.Time
	lastGC      time.Time
	srflx       netip.AddrPort
	nonces      map[netip.AddrPort]string // the rendezvous's NONCE for our address, by its address (§20.3)
	firstIntro  time.Time
	firstWork   time.Time
	firstDirect time.Time
}

// New starts an Agent on cfg.Conn. It validates cfg and starts reading the
// socket; checks start with the first Introduce.
func New(cfg Config) (*Agent, error) {
	switch {
	case cfg.Conn == nil:
		return nil, fmt.Errorf("%w: no Conn", ErrBadConfig)
	case cfg.SessionID == "" || cfg.Side == "" || cfg.PeerSide == "" || cfg.Side == cfg.PeerSide:
		return nil, fmt.Errorf("%w: SessionID, Side and PeerSide (two different sides) are required", ErrBadConfig)
	case len(cfg.CheckKey) == 0:
		return nil, fmt.Errorf("%w: no CheckKey", ErrBadConfig)
	case cfg.OnPacket == nil:
		return nil, fmt.Errorf("%w: no OnPacket", ErrBadConfig)
	case cfg.ProbePortMin > cfg.ProbePortMax:
		return nil, fmt.Errorf("%w: ProbePortMin above ProbePortMax", ErrBadConfig)
	case cfg.ExtraSockets < 0:
		return nil, fmt.Errorf("%w: negative ExtraSockets", ErrBadConfig)
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.ExtraSockets == 0 {
		cfg.ExtraSockets = 256
	}
	if cfg.ProbePortMin == 0 && cfg.ProbePortMax == 0 {
		cfg.ProbePortMin, cfg.ProbePortMax = 1024, 65535
	}
	a := &Agent{
		cfg:       cfg,
		log:       cfg.Log.With("session", cfg.SessionID, "side", cfg.Side),
		checkUser: cfg.SessionID + ":" + cfg.Side,
		peerUser:  cfg.SessionID + ":" + cfg.PeerSide,
		checkKey:  stun.NewShortTermIntegrity(string(cfg.CheckKey)),
		regKey:    stun.NewShortTermIntegrity(string(cfg.RegisterKey)),
		session:   newSock(cfg.Conn, false),
		wake:      make(chan struct{}, 1),
		evWake:    make(chan struct{}, 1),
		extras:    map[*sock]bool{},
		pairs:     map[pairKey]*pair{},
		txns:      map[txID]*txn{},
	}
	if a.cfg.ListenExtra == nil {
		a.cfg.ListenExtra = a.listenExtra
	}
	a.ctx, a.cancel = context.WithCancel(context.Background())
	a.wg.Add(3)
	go a.read(a.session)
	go a.run()
	go a.notify()
	return a, nil
}

// listenExtra is the default ListenExtra: a socket on the session
// socket's IP.
func (a *Agent) listenExtra() (net.PacketConn, error) {
	ip := a.session.local.Addr()
	network := "udp"
	if ip.Is4() {
		network = "udp4"
	}
	return net.ListenUDP(network, &net.UDPAddr{IP: ip.AsSlice()})
}

// Close stops the Agent and closes its sockets (the session socket too).
// It must not be called from OnPacket or OnEvent.
func (a *Agent) Close() error {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return nil
	}
	a.closed = true
	extras := a.extras
	a.extras = map[*sock]bool{}
	a.sel.Store(nil)
	a.mu.Unlock()
	a.cancel()
	a.session.close()
	for s := range extras {
		s.close()
	}
	a.wg.Wait()
	return nil
}

// Send sends pkt on the selected pair, or returns ErrNoPath.
func (a *Agent) Send(pkt []byte) error {
	p := a.sel.Load()
	if p == nil {
		return ErrNoPath
	}
	if err := p.sock.write(pkt, p.remote); err != nil {
		if p.sock.closed.Load() {
			return ErrNoPath // the pair died meanwhile
		}
		return err
	}
	if a.pendingSince.Load() == 0 && a.pendingSince.CompareAndSwap(0, time.Now().UnixNano()) {
		a.nudge()
	}
	return nil
}

// Stats is a snapshot of the Agent.
func (a *Agent) Stats() Stats {
	a.mu.Lock()
	defer a.mu.Unlock()
	st := Stats{
		Srflx:          a.srflx,
		ChecksSent:     a.checksSent.Load(),
		ChecksAnswered: a.checksAns.Load(),
		ExtraSockets:   len(a.extras),
	}
	if a.selected != nil {
		st.Direct = true
		st.Pair = a.selected.info()
	}
	if a.haveIntro {
		st.Intro = a.intro.Number
	}
	// A pair can work before this side's first introduction (the peer's
	// checks came first): 0 then.
	if !a.firstWork.IsZero() && !a.firstIntro.IsZero() {
		st.TimeToFirstPair = max(a.firstWork.Sub(a.firstIntro), 0)
	}
	if !a.firstDirect.IsZero() && !a.firstIntro.IsZero() {
		st.TimeToDirect = max(a.firstDirect.Sub(a.firstIntro), 0)
	}
	return st
}

func (a *Agent) nudge() {
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

// emit queues events for OnEvent. Callers hold a.mu, so that events keep
// the order of the changes.
func (a *Agent) emit(evs ...Event) {
	if len(evs) == 0 || a.cfg.OnEvent == nil {
		return
	}
	a.evMu.Lock()
	a.evQ = append(a.evQ, evs...)
	a.evMu.Unlock()
	select {
	case a.evWake <- struct{}{}:
	default:
	}
}

// notify calls OnEvent for each queued event, in order, until Close.
func (a *Agent) notify() {
	defer a.wg.Done()
	for {
		select {
		case <-a.ctx.Done():
			return
		case <-a.evWake:
		}
		for {
			a.evMu.Lock()
			if len(a.evQ) == 0 {
				a.evMu.Unlock()
				break
			}
			ev := a.evQ[0]
			a.evQ = a.evQ[1:]
			a.evMu.Unlock()
			if a.ctx.Err() != nil {
				return
			}
			a.cfg.OnEvent(ev)
		}
	}
}

// read reads one socket until it is closed.
func (a *Agent) read(s *sock) {
	defer a.wg.Done()
	buf := make([]byte, maxPacket)
	msg := &stun.Message{Raw: make([]byte, 0, maxPacket)}
	for {
		n, addr, err := s.pc.ReadFrom(buf)
		if err != nil {
			if s.closed.Load() || errors.Is(err, net.ErrClosed) || a.ctx.Err() != nil {
				return
			}
			// ICMP errors surface here on some systems; the socket is fine.
			a.log.Debug("punch: read", "err", err)
			select {
			case <-a.ctx.Done():
				return
			case <-time.After(time.Millisecond):
			}
			continue
		}
		from, ok := udpAddrPort(addr)
		if !ok {
			continue
		}
		a.handle(s, from, buf[:n], msg)
	}
}

// handle demultiplexes one received packet.
func (a *Agent) handle(s *sock, from netip.AddrPort, b []byte, msg *stun.Message) {
	switch classify(b) {
	case kindSTUN:
		a.handleSTUN(s, from, b, msg)
	case kindQUIC:
		if p := a.sel.Load(); p != nil && p.sock == s && p.remote == from {
			a.pendingSince.Store(0)
			a.heardAt.Store(time.Now().UnixNano())
		} else {
			a.mu.Lock()
			p := a.pairs[pairKey{s, from}]
			ok := p != nil && p.validated
			a.mu.Unlock()
			if !ok {
				return // not from a peer that passed a check
			}
		}
		a.cfg.OnPacket(b)
	}
}

// heard notes a packet from the peer on (s, from): if it is the selected
// pair, the pair is alive.
func (a *Agent) heard(s *sock, from netip.AddrPort) {
	if p := a.sel.Load(); p != nil && p.sock == s && p.remote == from {
		a.pendingSince.Store(0)
		a.heardAt.Store(time.Now().UnixNano())
	}
}

// silent reports whether the selected pair is silent: nothing heard from
// the peer on it for silentAfter. A peer's check from a new address then
// means the peer moved (§20.4): its NAT mapped it anew, or it roamed.
// This does not wait for this side's probes (3 s after a send): the peer's
// may start, and stop once answered, before; and a side with nothing to
// send (its peer's NAT lost the binding, so what it sends is lost and it
// hears nothing) never probes at all.
func (a *Agent) silent(now time.Time) bool {
	return now.Sub(time.Unix(0, a.heardAt.Load())) >= silentAfter
}

func (a *Agent) handleSTUN(s *sock, from netip.AddrPort, b []byte, m *stun.Message) {
	if err := stun.Decode(b, m); err != nil || m.Type.Method != stun.MethodBinding {
		return
	}
	switch m.Type.Class {
	case stun.ClassRequest:
		a.handleCheck(s, from, m)
	case stun.ClassSuccessResponse, stun.ClassErrorResponse:
		a.handleResponse(s, from, m)
	}
}

// handleCheck answers a peer's check that passes the integrity check
// (§20.4), learns peer-reflexive candidates and follows nominations.
func (a *Agent) handleCheck(s *sock, from netip.AddrPort, m *stun.Message) {
	var user stun.Username
	if user.GetFrom(m) != nil || string(user) != a.peerUser ||
		stun.Fingerprint.Check(m) != nil || a.checkKey.Check(m) != nil {
		return // not the peer's: drop silently
	}
	res, err := buildResponse(m.TransactionID, from, a.checkKey)
	if err != nil {
		return
	}
	nominate := m.Contains(stun.AttrUseCandidate)
	a.heard(s, from)
	var out []outPkt
	now := time.Now()
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return
	}
	out = append(out, outPkt{s, from, res})
	p := a.pairs[pairKey{s, from}]
	if p == nil && len(a.pairs) >= maxPairs {
		a.mu.Unlock()
		a.checksAns.Add(1)
		a.send(out) // answered, but not learned: enough candidates already
		return
	}
	if p == nil {
		// On the probing side, a check from a new port of the symmetric
		// side's IP got in through a hole a probe made.
		probed := a.bday != nil && a.bday.role == roleProber && from.Addr() == a.bday.target.Addr()
		p = &pair{sock: s, remote: from, kind: a.kindOf(from), birthday: s.extra || probed}
		a.pairs[pairKey{s, from}] = p
		a.log.Debug("punch: peer-reflexive candidate", "local", s.local, "remote", from)
	}
	p.validated, p.peerCheck = true, now
	// A triggered check (RFC 8445 §7.3.1.4): the pair likely works now.
	// Learned pairs are not on the schedule (§20.4 schedules the
	// introduced candidates); the peer's own checks, which keep coming on
	// its schedule, bring them theirs, at most one per triggerInterval.
	if !p.working && a.selected == nil && now.Sub(p.lastCheck) >= triggerInterval {
		if pk, ok := a.check(p, txnCheck, now); ok {
			out = append(out, pk)
		}
	}
	switch sel := a.selected; {
	case nominate && !a.cfg.Controlling && sel != p:
		// The controlled side follows the last nomination, from wherever
		// it comes: the controlling side's probes carry USE-CANDIDATE, so
		// a remapped or moved peer takes the pair with it (§20.4 Moving).
		a.emit(a.selectPair(p, now)...) // under the lock: events keep their order
	case a.cfg.Controlling && sel != nil && sel != p && s == sel.sock && a.nominating != p &&
		(nominate || a.silent(now)):
		// The peer's check comes from a new address on the selected
		// pair's socket while the pair is silent, or the peer says it
		// moved (USE-CANDIDATE): its NAT mapped it anew, or it roamed.
		// Nominate the pair to where it is now (§20.4 Moving).
		a.log.Info("punch: peer moved", "from", sel.remote, "to", from)
		a.nominate(p, now)
	}
	a.mu.Unlock()
	a.checksAns.Add(1)
	a.send(out)
}

// kindOf is the kind of the introduced candidate at ap, or PeerReflexive.
// a.mu is held.
func (a *Agent) kindOf(ap netip.AddrPort) CandidateKind {
	for _, c := range a.intro.Candidates {
		if unmap(c.Addr) == ap {
			return c.Kind
		}
	}
	return PeerReflexive
}

// handleResponse takes an answer to one of our requests.
func (a *Agent) handleResponse(s *sock, from netip.AddrPort, m *stun.Message) {
	a.mu.Lock()
	t := a.txns[m.TransactionID]
	a.mu.Unlock()
	if t == nil {
		return
	}
	if t.kind == txnRegister {
		a.handleRegisterResponse(s, from, m, t)
		return
	}
	if m.Type.Class != stun.ClassSuccessResponse || stun.Fingerprint.Check(m) != nil || a.checkKey.Check(m) != nil {
		return
	}
	now := time.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed || a.txns[m.TransactionID] != t {
		return
	}
	var p *pair
	switch t.kind {
	case txnCheck, txnNominate:
		if s != t.p.sock || from != t.dst {
			return // a pair works only when the answer comes from where the check went
		}
		p = t.p
		if a.pairs[pairKey{s, from}] != p {
			return // forgotten meanwhile (a new introduction)
		}
	case txnBirthdaySym:
		if !s.extra || from != t.dst {
			return
		}
	case txnBirthdayProbe:
		if from.Addr() != t.ip {
			return
		}
	}
	if p == nil { // found by the birthday technique
		if p = a.pairs[pairKey{s, from}]; p == nil {
			if len(a.pairs) >= maxPairs {
				return
			}
			p = &pair{sock: s, remote: from, kind: a.kindOf(from), birthday: true}
			a.pairs[pairKey{s, from}] = p
			a.log.Info("punch: birthday pair", "local", s.local, "remote", from)
		}
	}
	if t.kind != txnBirthdaySym && t.kind != txnBirthdayProbe {
		delete(a.txns, m.TransactionID) // one round's ID serves many answers
	}
	a.heard(s, from)
	p.validated = true
	if !p.working {
		p.working, p.workingAt = true, now
		if a.firstWork.IsZero() {
			a.firstWork = now
		}
		a.log.Debug("punch: pair works", "local", s.local, "remote", from, "kind", p.kind)
		a.pairWorks(p, now)
	}
	if p == a.selected {
		a.moveUntil = time.Time{} // the pair answers from here: the move is done
	}
	if t.kind == txnNominate && a.nominating == p {
		if a.selected == p { // nominated again under a newer introduction
			a.selIntro, a.nominating = a.intro.Number, nil
		} else {
			a.emit(a.selectPair(p, now)...)
		}
	}
}

// pairWorks is the controlling side's choice (§20.4): a host pair at once,
// otherwise the best working pair 50 ms after the first. a.mu is held.
func (a *Agent) pairWorks(p *pair, now time.Time) {
	if !a.cfg.Controlling || a.nominating != nil || (a.selected != nil && a.selIntro == a.intro.Number) {
		return
	}
	if p.kind == Host {
		a.nominate(p, now)
		return
	}
	if a.nomDecideAt.IsZero() {
		a.nomDecideAt = now.Add(hostWait)
		a.nudge()
	}
}

// nominate starts repeating USE-CANDIDATE checks on p. a.mu is held.
func (a *Agent) nominate(p *pair, now time.Time) {
	a.nominating, a.nomStart, a.nomNext = p, now, now
	a.nomDecideAt = time.Time{}
	a.log.Debug("punch: nominating", "local", p.sock.local, "remote", p.remote, "kind", p.kind)
	a.nudge()
}

// selectPair makes p the path. a.mu is held.
func (a *Agent) selectPair(p *pair, now time.Time) []Event {
	a.selected = p
	a.selIntro = a.intro.Number
	a.sel.Store(p)
	a.pendingSince.Store(0)
	a.heardAt.Store(now.UnixNano())
	a.nominating, a.nomDecideAt = nil, time.Time{}
	p.validated = true
	if a.firstDirect.IsZero() {
		a.firstDirect = now
	}
	a.closeExtras(p.sock)
	a.log.Info("punch: direct", "local", p.sock.local, "remote", p.remote, "kind", p.kind, "birthday", p.birthday)
	return []Event{{Kind: EventDirect, Pair: p.info()}}
}

// closeExtras closes the birthday sockets other than keep (which may be
// nil) and forgets their pairs. a.mu is held.
func (a *Agent) closeExtras(keep *sock) {
	for s := range a.extras {
		if s == keep {
			continue
		}
		delete(a.extras, s)
		s.close()
	}
	for k := range a.pairs {
		if k.s.extra && k.s != keep {
			delete(a.pairs, k)
		}
	}
	if a.bday != nil {
		a.bday.socks = nil
	}
}

// check makes a check request on p and records its transaction. a.mu is
// held.
func (a *Agent) check(p *pair, kind txnKind, now time.Time) (outPkt, bool) {
	id := stun.NewTransactionID()
	b, err := buildRequest(id, a.checkUser, a.checkKey, kind == txnNominate)
	if err != nil {
		a.log.Error("punch: build check", "err", err)
		return outPkt{}, false
	}
	a.txns[id] = &txn{kind: kind, p: p, dst: p.remote, at: now}
	p.lastCheck = now
	a.checksSent.Add(1)
	return outPkt{p.sock, p.remote, b}, true
}

// send sends packets; a failed send is a lost packet (the retries decide).
func (a *Agent) send(out []outPkt) {
	for _, o := range out {
		if o.s.closed.Load() {
			continue
		}
		if err := o.s.write(o.b, o.dst); err != nil {
			a.log.Debug("punch: send", "dst", o.dst, "err", err)
		}
	}
}
