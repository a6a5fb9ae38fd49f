package rdvsvc_test

import (
	"bytes"
	"context"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/pion/stun/v3"
	"google.golang.org/protobuf/proto"

	"github.com/parleychat/parley/libs/rpc"
	"github.com/parleychat/parley/libs/subject"
	"github.com/parleychat/parley/libs/testenv"
	"github.com/parleychat/parley/protocol/parleyv1"
)

const (
	offered  = parleyv1.P2PSession_STATE_OFFERED
	accepted = parleyv1.P2PSession_STATE_ACCEPTED
	closed   = parleyv1.P2PSession_STATE_CLOSED

	evOffer    = parleyv1.P2PEvent_KIND_OFFER
	evAccepted = parleyv1.P2PEvent_KIND_ACCEPTED
	evIntro    = parleyv1.P2PEvent_KIND_INTRO
	evClosed   = parleyv1.P2PEvent_KIND_CLOSED

	eim = parleyv1.NatMapping_NAT_MAPPING_ENDPOINT_INDEPENDENT
	edm = parleyv1.NatMapping_NAT_MAPPING_ENDPOINT_DEPENDENT
)

func host(addrs ...netip.AddrPort) []*parleyv1.P2PCandidate {
	var cs []*parleyv1.P2PCandidate
	for _, a := range addrs {
		cs = append(cs, &parleyv1.P2PCandidate{Kind: parleyv1.P2PCandidate_KIND_HOST, Addr: a.String()})
	}
	return cs
}

// addrsOf lists candidates as "kind addr" strings.
func addrsOf(cs []*parleyv1.P2PCandidate) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Kind.String()+" "+c.Addr)
	}
	return out
}

func hostOf(a netip.AddrPort) string  { return "KIND_HOST " + a.String() }
func srflxOf(a netip.AddrPort) string { return "KIND_SERVER_REFLEXIVE " + a.String() }

// opened is a session alice offered bob and bob accepted.
type opened struct {
	a, b         *parleyv1.P2PSession // the replies to open (alice) and answer (bob)
	aDev, bDev   *parleyv1.DeviceKey
	aSock, bSock *client // the sessions' sockets
	aEv, bEv     *events
}

// openAndAccept has alice open a session to bob and bob accept it, each
// with one host candidate (the socket's address) and the given round trips.
func openAndAccept(t *testing.T, e *env, aRTT, bRTT uint32) *opened {
	t.Helper()
	o := &opened{aDev: e.addDevice(alice), bDev: e.addDevice(bob), aSock: newClient(t, "127.0.0.1"), bSock: newClient(t, "127.0.0.1"),
		aEv: e.events(alice), bEv: e.events(bob)}
	o.a = new(parleyv1.P2PSession)
	e.mustCall(alice, subject.P2POpen, &parleyv1.P2POpenRequest{ToUsername: bob.name, DeviceId: o.aDev.DeviceId,
		Candidates: host(o.aSock.addr()), RttMs: aRTT}, o.a)
	offer := o.bEv.next(evOffer)
	if offer.SessionId != o.a.SessionId {
		t.Fatalf("offer of %s, opened %s", offer.SessionId, o.a.SessionId)
	}
	o.b = new(parleyv1.P2PSession)
	e.mustCall(bob, subject.P2PAnswer, &parleyv1.P2PAnswerRequest{SessionId: o.a.SessionId, Accept: true, DeviceId: o.bDev.DeviceId,
		Candidates: host(o.bSock.addr()), RttMs: bRTT}, o.b)
	o.aEv.next(evAccepted)
	o.bEv.next(evAccepted)
	return o
}

// The whole conversation of §20.2 and §20.3 with two simulated clients:
// open, offer, accept, registration from UDP sockets, introduction. Alice
// registers one socket at both addresses (endpoint-independent mapping);
// bob's registrations come from two sockets, as a symmetric NAT makes them
// (endpoint-dependent).
func TestFullFlow(t *testing.T) {
	e := newEnv(t)
	r := e.start(testConfig())
	aDev, bDev := e.addDevice(alice), e.addDevice(bob)
	aEv, bEv := e.events(alice), e.events(bob)
	aSock := newClient(t, "127.0.0.1")
	bSock, bSock2 := newClient(t, "127.0.0.1"), newClient(t, "127.0.0.1")
	aHost := netip.MustParseAddrPort("192.168.1.20:50412")
	bHost := netip.MustParseAddrPort("[fd00::7]:40000")

	// Open.
	var a parleyv1.P2PSession
	before := e.clock.now()
	e.mustCall(alice, subject.P2POpen, &parleyv1.P2POpenRequest{ToUsername: bob.name, DeviceId: aDev.DeviceId,
		Candidates: host(aHost, aSock.addr()), RttMs: 30}, &a)
	primary, alt := r.svc.PublicAddrs()
	switch {
	case a.State != offered || a.Side != "a" || !a.Controlling || a.PeerId != bob.id || a.PeerName != bob.name || !a.PeerIsFriend:
		t.Fatalf("opener's view %v", &a)
	case a.DeviceId != aDev.DeviceId || a.PeerDevice != nil:
		t.Fatalf("opener's devices %q %v", a.DeviceId, a.PeerDevice)
	case a.RegisterUsername != a.SessionId+":a" || len(a.RegisterKey) != 32 || len(a.CheckKey) != 32:
		t.Fatalf("opener's credentials %q %x %x", a.RegisterUsername, a.RegisterKey, a.CheckKey)
	case a.StunAddr != primary || a.StunAltAddr != alt || a.StunAltAddr == "":
		t.Fatalf("opener's rendezvous %q %q, want %q %q", a.StunAddr, a.StunAltAddr, primary, alt)
	case a.ExpiresAtUnixMs < before.Add(59*time.Second).UnixMilli() || a.ExpiresAtUnixMs > e.clock.now().Add(61*time.Second).UnixMilli():
		t.Fatalf("offer expires at %d, want 60 s from now", a.ExpiresAtUnixMs)
	case len(a.PeerCandidates) != 0:
		t.Fatalf("candidates before the introduction: %v", a.PeerCandidates)
	}
	offer := bEv.next(evOffer)
	switch {
	case offer.SessionId != a.SessionId || offer.State != offered || offer.Side != "b" || offer.Controlling:
		t.Fatalf("offer %v", offer)
	case offer.PeerId != alice.id || offer.PeerName != alice.name || !offer.PeerIsFriend:
		t.Fatalf("offer's peer %q %q friend=%v", offer.PeerId, offer.PeerName, offer.PeerIsFriend)
	case offer.DeviceId != "" || offer.RegisterKey != nil || offer.CheckKey != nil || offer.PeerDevice != nil:
		t.Fatalf("an unanswered offer carries a device or keys: %v", offer)
	case offer.ExpiresAtUnixMs != a.ExpiresAtUnixMs:
		t.Fatalf("offer expires at %d, the opener was told %d", offer.ExpiresAtUnixMs, a.ExpiresAtUnixMs)
	}

	// Alice registers at once (before bob answered): recorded, nobody is
	// introduced.
	if got := aSock.register(netip.MustParseAddrPort(a.StunAddr), a.RegisterUsername, a.RegisterKey); got != aSock.addr() {
		t.Fatalf("alice's mapped address %s, want %s", got, aSock.addr())
	}
	if got := aSock.register(netip.MustParseAddrPort(a.StunAltAddr), a.RegisterUsername, a.RegisterKey); got != aSock.addr() {
		t.Fatalf("alice's mapped address at the alternate %s, want %s", got, aSock.addr())
	}
	aEv.none(200 * time.Millisecond)

	// Accept.
	var b parleyv1.P2PSession
	e.mustCall(bob, subject.P2PAnswer, &parleyv1.P2PAnswerRequest{SessionId: a.SessionId, Accept: true, DeviceId: bDev.DeviceId,
		Candidates: host(bHost), RttMs: 130}, &b)
	switch {
	case b.State != accepted || b.Side != "b" || b.Controlling || b.DeviceId != bDev.DeviceId:
		t.Fatalf("answerer's view %v", &b)
	case !proto.Equal(b.PeerDevice, aDev):
		t.Fatalf("answerer's peer device %v, want %v", b.PeerDevice, aDev)
	case b.RegisterUsername != a.SessionId+":b" || len(b.RegisterKey) != 32 || bytes.Equal(b.RegisterKey, a.RegisterKey):
		t.Fatalf("answerer's credentials %q %x", b.RegisterUsername, b.RegisterKey)
	case !bytes.Equal(b.CheckKey, a.CheckKey):
		t.Fatal("the two sides got different check keys")
	}
	if ev := aEv.next(evAccepted); !proto.Equal(ev.PeerDevice, bDev) || ev.DeviceId != aDev.DeviceId || ev.State != accepted {
		t.Fatalf("alice's ACCEPTED %v", ev)
	}
	if ev := bEv.next(evAccepted); ev.DeviceId != bDev.DeviceId || !proto.Equal(ev.PeerDevice, aDev) {
		t.Fatalf("bob's ACCEPTED %v", ev)
	}
	aEv.none(100 * time.Millisecond)

	// Bob registers at the primary: both registered, the first
	// introduction. Bob's mapping is not known yet.
	bSock.register(netip.MustParseAddrPort(b.StunAddr), b.RegisterUsername, b.RegisterKey)
	ia, ib := aEv.next(evIntro), bEv.next(evIntro)
	if ia.Intro != 1 || ib.Intro != 1 {
		t.Fatalf("first introductions numbered %d and %d", ia.Intro, ib.Intro)
	}
	if got, want := addrsOf(ia.PeerCandidates), []string{hostOf(bHost), srflxOf(bSock.addr())}; !slices.Equal(got, want) {
		t.Errorf("alice's first introduction: %v, want %v", got, want)
	}
	if ia.Mapping != eim || ia.PeerMapping != parleyv1.NatMapping_NAT_MAPPING_UNKNOWN {
		t.Errorf("alice's first introduction: mapping %s, peer %s", ia.Mapping, ia.PeerMapping)
	}

	// Bob's second registration, at the alternate, comes from another
	// socket: another address, an endpoint-dependent mapping, and a new
	// introduction.
	bSock2.register(netip.MustParseAddrPort(b.StunAltAddr), b.RegisterUsername, b.RegisterKey)
	ia, ib = aEv.next(evIntro), bEv.next(evIntro)
	if ia.Intro != 2 || ib.Intro != 2 {
		t.Fatalf("second introductions numbered %d and %d", ia.Intro, ib.Intro)
	}
	if got, want := addrsOf(ia.PeerCandidates), []string{hostOf(bHost), srflxOf(bSock.addr()), srflxOf(bSock2.addr())}; !slices.Equal(got, want) {
		t.Errorf("alice's introduction: %v, want %v", got, want)
	}
	if got, want := addrsOf(ib.PeerCandidates), []string{hostOf(aHost), hostOf(aSock.addr())}; !slices.Equal(got, want) {
		// alice's host candidate is her socket: her server-reflexive one
		// (the same address) is not repeated.
		t.Errorf("bob's introduction: %v, want %v", got, want)
	}
	switch {
	case ia.Mapping != eim || ia.PeerMapping != edm || ib.Mapping != edm || ib.PeerMapping != eim:
		t.Errorf("mappings: alice %s/%s, bob %s/%s", ia.Mapping, ia.PeerMapping, ib.Mapping, ib.PeerMapping)
	case ia.StartDelayMs != 50 || ib.StartDelayMs != 0:
		// (130 - 30) / 2 for the nearer side, 0 for the farther.
		t.Errorf("start delays: alice %d, bob %d, want 50 and 0", ia.StartDelayMs, ib.StartDelayMs)
	case ia.SessionId != a.SessionId || ia.Side != "a" || ib.Side != "b" || !proto.Equal(ia.PeerDevice, bDev) || !bytes.Equal(ib.CheckKey, a.CheckKey):
		t.Errorf("introductions %v / %v", ia, ib)
	}

	// The same registration again changes nothing: answered, no
	// introduction.
	bSock2.register(netip.MustParseAddrPort(b.StunAltAddr), b.RegisterUsername, b.RegisterKey)
	aEv.none(200 * time.Millisecond)

	// Bob's connection moved (a reconnect) and his addresses changed:
	// P2PUpdateRequest re-attaches the session and introduces again.
	bHost2 := netip.MustParseAddrPort("10.0.0.9:40001")
	var u parleyv1.P2PSession
	if err := e.callConn(bob, "conn-bob-2", subject.P2PUpdate, &parleyv1.P2PUpdateRequest{SessionId: a.SessionId, DeviceId: bDev.DeviceId,
		Candidates: host(bHost2), RttMs: 10}, &u); err != nil {
		t.Fatal(err)
	}
	if u.State != accepted || u.Side != "b" {
		t.Fatalf("update's reply %v", &u)
	}
	ia, ib = aEv.next(evIntro), bEv.next(evIntro)
	if ia.Intro != 3 || ib.Intro != 3 {
		t.Fatalf("introductions after the update numbered %d and %d", ia.Intro, ib.Intro)
	}
	if got, want := addrsOf(ia.PeerCandidates), []string{hostOf(bHost2), srflxOf(bSock.addr()), srflxOf(bSock2.addr())}; !slices.Equal(got, want) {
		t.Errorf("alice's introduction after the update: %v, want %v", got, want)
	}
	if ia.StartDelayMs != 0 || ib.StartDelayMs != 10 {
		t.Errorf("start delays after the update: alice %d, bob %d, want 0 and 10", ia.StartDelayMs, ib.StartDelayMs)
	}
	rec := e.record(a.SessionId)
	if rec.B.ConnId != "conn-bob-2" || rec.B.GatewayId != "gw-test" || rec.A.ConnId != "conn-alice" {
		t.Errorf("record's connections: a %s/%s, b %s/%s", rec.A.GatewayId, rec.A.ConnId, rec.B.GatewayId, rec.B.ConnId)
	}
	// A device that is not the session's cannot update it.
	other := e.addDevice(bob)
	wantCode(t, "update from another device", e.call(bob, subject.P2PUpdate, &parleyv1.P2PUpdateRequest{SessionId: a.SessionId,
		DeviceId: other.DeviceId}, new(parleyv1.P2PSession)), parleyv1.ErrorCode_ERROR_CODE_NOT_FOUND)
	wantCode(t, "update by a stranger", e.call(carol, subject.P2PUpdate, &parleyv1.P2PUpdateRequest{SessionId: a.SessionId,
		DeviceId: aDev.DeviceId}, new(parleyv1.P2PSession)), parleyv1.ErrorCode_ERROR_CODE_NOT_FOUND)

	// Close: both are told, the session is gone.
	wantCode(t, "close by a stranger", e.call(carol, subject.P2PClose, &parleyv1.P2PCloseRequest{SessionId: a.SessionId}, nil),
		parleyv1.ErrorCode_ERROR_CODE_NOT_FOUND)
	e.mustCall(alice, subject.P2PClose, &parleyv1.P2PCloseRequest{SessionId: a.SessionId}, nil)
	for who, ev := range map[string]*events{"alice": aEv, "bob": bEv} {
		if c := ev.next(evClosed); c.State != closed || c.CloseReason != parleyv1.P2PSession_CLOSE_REASON_CLOSED || c.RegisterKey != nil {
			t.Errorf("%s's CLOSED %v", who, c)
		}
	}
	wantCode(t, "update after close", e.call(bob, subject.P2PUpdate, &parleyv1.P2PUpdateRequest{SessionId: a.SessionId,
		DeviceId: bDev.DeviceId}, new(parleyv1.P2PSession)), parleyv1.ErrorCode_ERROR_CODE_NOT_FOUND)
	testenv.Eventually(t, 10*time.Second, "the record deleted", func() bool { return e.record(a.SessionId) == nil })
	// Registering for an ended session is refused.
	res, _ := aSock.do(netip.MustParseAddrPort(a.StunAddr), request(stun.NewUsername(a.RegisterUsername),
		stun.MessageIntegrity(a.RegisterKey), stun.Fingerprint))
	if errorOf(res) != stun.CodeUnauthorized {
		t.Errorf("registration after close: %s %d, want 401", res.Type, errorOf(res))
	}
	if got := r.counter(t, "parley_rdv_stun_answered_total", "kind", "register"); got != 5 {
		t.Errorf("registrations answered %v, want 5", got)
	}
}

// aliceOpens opens a direct session from a new device of alice's to bob,
// who has not answered yet.
func (e *env) aliceOpens() *parleyv1.P2PSession {
	var a parleyv1.P2PSession
	e.mustCall(alice, subject.P2POpen, &parleyv1.P2POpenRequest{ToUsername: bob.name, DeviceId: e.addDevice(alice).DeviceId}, &a)
	return &a
}

// A registration that fails the integrity check (wrong key, another
// side's key, a key for a side that has not accepted, an unknown session
// or a garbled USERNAME) is answered 401 and changes nothing.
func TestRegistrationAuth(t *testing.T) {
	e := newEnv(t)
	r := e.start(testConfig())
	a := e.aliceOpens()
	before := e.record(a.SessionId)
	sock := newClient(t, "127.0.0.1")
	wrong := bytes.Clone(a.RegisterKey)
	wrong[0] ^= 1
	bKey := e.record(a.SessionId).B.RegisterKey // bob's key exists, but bob has not accepted
	for _, tc := range []struct {
		name     string
		username string
		key      []byte
	}{
		{"wrong key", a.RegisterUsername, wrong},
		{"the other side's key", a.RegisterUsername, bKey},
		{"a side that has not accepted", a.SessionId + ":b", bKey},
		{"an unknown session", "p0123456789abcdef01234567:a", a.RegisterKey},
		{"no side", a.SessionId, a.RegisterKey},
		{"garbled", "alice", a.RegisterKey},
		{"empty key", a.RegisterUsername, []byte{}},
	} {
		for _, to := range []netip.AddrPort{r.primary, r.alt} {
			res, from := sock.do(to, request(stun.NewUsername(tc.username), stun.MessageIntegrity(tc.key), stun.Fingerprint))
			if res.Type != stun.BindingError || errorOf(res) != stun.CodeUnauthorized || from != to {
				t.Errorf("%s at %s: %s %d from %s, want 401", tc.name, to, res.Type, errorOf(res), from)
			}
			if res.Contains(stun.AttrXORMappedAddress) || res.Contains(stun.AttrMessageIntegrity) {
				t.Errorf("%s: the 401 carries an address or integrity", tc.name)
			}
		}
	}
	if after := e.record(a.SessionId); !proto.Equal(before, after) {
		t.Fatalf("a refused registration changed the record:\nbefore %v\nafter  %v", before, after)
	}
	if got := r.counter(t, "parley_rdv_stun_errors_total", "code", "401"); got != 14 {
		t.Errorf("401s counted %v, want 14", got)
	}
	// The right key works.
	sock.register(r.primary, a.RegisterUsername, a.RegisterKey)
	if got := e.record(a.SessionId).A.Srflx; got != sock.addr().String() {
		t.Fatalf("srflx %q after a good registration, want %s", got, sock.addr())
	}
}

// TestRegistrationNeedsItsAddressNonce: a side that holds its register
// key can register only an address it receives at. A registration without
// a NONCE is answered 438 with the one for its source address, signed and
// no longer than 3x the request; a NONCE made for another address (what a
// peer spoofing the victim's address would have) gets another 438 and
// changes nothing; the source's own NONCE registers it.
func TestRegistrationNeedsItsAddressNonce(t *testing.T) {
	e := newEnv(t)
	r := e.start(testConfig())
	a := e.aliceOpens()
	attacker, victim := newClient(t, "127.0.0.1"), newClient(t, "127.0.0.2")
	reg := func(c *client, setters ...stun.Setter) *stun.Message {
		req := request(append(append([]stun.Setter{stun.NewUsername(a.RegisterUsername)}, setters...), stun.MessageIntegrity(a.RegisterKey), stun.Fingerprint)...)
		res, _ := c.do(r.primary, req)
		if len(res.Raw) > 3*len(req.Raw) {
			t.Errorf("a %d-byte registration answered with %d bytes", len(req.Raw), len(res.Raw))
		}
		return res
	}
	before := e.record(a.SessionId)
	res := reg(attacker)
	if res.Type != stun.BindingError || errorOf(res) != stun.CodeStaleNonce || res.Contains(stun.AttrXORMappedAddress) {
		t.Fatalf("a registration without NONCE: %s %d, want 438 without an address", res.Type, errorOf(res))
	}
	own := attacker.nonceOf(res, a.RegisterKey)
	// The nonce is the source address's: from the victim's it is stale.
	res = reg(victim, own)
	if errorOf(res) != stun.CodeStaleNonce {
		t.Fatalf("the attacker's NONCE from another address: %s %d, want 438", res.Type, errorOf(res))
	}
	if victimNonce := victim.nonceOf(res, a.RegisterKey); string(victimNonce) == string(own) {
		t.Fatal("two addresses got the same NONCE")
	}
	if after := e.record(a.SessionId); !proto.Equal(before, after) {
		t.Fatalf("registrations without their address's NONCE changed the record:\nbefore %v\nafter  %v", before, after)
	}
	// With its own NONCE the attacker registers its own address, and again
	// later without a round trip.
	for range 2 {
		if res = reg(attacker, own); res.Type != stun.BindingSuccess {
			t.Fatalf("a registration with its address's NONCE: %s %d", res.Type, errorOf(res))
		}
	}
	if got := e.record(a.SessionId).A.Srflx; got != attacker.addr().String() {
		t.Fatalf("srflx %q, want %s", got, attacker.addr())
	}
	if got := r.counter(t, "parley_rdv_stun_errors_total", "code", "438"); got < 2 {
		t.Errorf("438s counted %v", got)
	}
	// A registration's answer proves its source address, so it never goes
	// to a RESPONSE-PORT: a registration asking for one is refused (400,
	// to the source).
	var port [4]byte
	port[0], port[1] = 0x30, 0x39
	res = reg(attacker, rawAttr{stun.AttrResponsePort, port[:]}, own)
	if res.Type != stun.BindingError || errorOf(res) != stun.CodeBadRequest {
		t.Fatalf("a registration with RESPONSE-PORT: %s %d, want 400", res.Type, errorOf(res))
	}
}

// TestIntroductionsBounded: each introduction makes both clients send
// checks to every candidate the other named, so a session's are bounded.
// The first never waits (updates before it spend nothing); then 12 at
// once, then one every 5 s. A p2p_update past the budget is still
// answered (it re-attaches the relay, its candidates are saved) and its
// introduction follows when the budget allows, from the sweep.
func TestIntroductionsBounded(t *testing.T) {
	e := newEnv(t)
	r := e.start(testConfig())
	o := openAndAccept(t, e, 20, 20)
	id := o.a.SessionId
	update := func() {
		t.Helper()
		e.mustCall(bob, subject.P2PUpdate, &parleyv1.P2PUpdateRequest{SessionId: id, DeviceId: o.bDev.DeviceId,
			Candidates: host(o.bSock.addr())}, &parleyv1.P2PSession{})
	}
	for range 20 { // nothing to introduce yet: nothing spent
		update()
	}
	o.aSock.register(r.primary, o.a.RegisterUsername, o.a.RegisterKey)
	o.bSock.register(r.primary, o.b.RegisterUsername, o.b.RegisterKey)
	if got := o.aEv.next(evIntro).Intro; got != 1 {
		t.Fatalf("first introduction numbered %d", got)
	}
	for i := range 12 {
		update()
		if got := o.aEv.next(evIntro).Intro; got != uint32(i+2) {
			t.Fatalf("introduction %d numbered %d", i+2, got)
		}
	}
	update() // past the budget: answered, introduced later
	if rec := e.record(id); rec.Intro != 13 || !rec.IntroPending {
		t.Fatalf("past the budget: intro %d, pending %v; want 13, pending", rec.Intro, rec.IntroPending)
	}
	update()                           // still pending: one introduction will carry both
	time.Sleep(200 * time.Millisecond) // sweeps come and go: the budget is still spent
	if rec := e.record(id); rec.Intro != 13 {
		t.Fatalf("introduced %d before the budget allowed", rec.Intro)
	}
	e.clock.advance(5 * time.Second)
	if got := o.aEv.next(evIntro).Intro; got != 14 {
		t.Fatalf("the pending introduction numbered %d, want 14", got)
	}
	testenv.Eventually(t, 5*time.Second, "nothing pending", func() bool { return !e.record(id).IntroPending })
	time.Sleep(200 * time.Millisecond)
	if rec := e.record(id); rec.Intro != 14 {
		t.Fatalf("intro %d after the pending one, want 14 (one for both updates)", rec.Intro)
	}
}

// TestIntroductionBudgetAcrossReplicas: the budget is the session's, kept
// in its record, not each replica's: with two replicas taking p2p_update
// requests in turn (one queue group), a session still gets its first
// introduction and 12 more at once, then one every 5 s, and the two sweeps
// number a pending introduction once between them.
func TestIntroductionBudgetAcrossReplicas(t *testing.T) {
	e := newEnv(t)
	r1 := e.start(testConfig())
	r2 := e.start(testConfig())
	o := openAndAccept(t, e, 20, 20)
	id := o.a.SessionId
	o.aSock.register(r1.primary, o.a.RegisterUsername, o.a.RegisterKey)
	o.bSock.register(r1.primary, o.b.RegisterUsername, o.b.RegisterKey)
	if got := o.aEv.next(evIntro).Intro; got != 1 {
		t.Fatalf("first introduction numbered %d", got)
	}
	for range 30 {
		e.mustCall(bob, subject.P2PUpdate, &parleyv1.P2PUpdateRequest{SessionId: id, DeviceId: o.bDev.DeviceId,
			Candidates: host(o.bSock.addr())}, &parleyv1.P2PSession{})
	}
	updates := func(r *replica) float64 {
		return r.counter(t, "parley_rpc_requests_total", "subject", subject.P2PUpdate, "code", "OK")
	}
	// Counted just after the reply: wait for all 30.
	testenv.Eventually(t, 5*time.Second, "30 updates counted", func() bool { return updates(r1)+updates(r2) == 30 })
	t.Logf("the replicas answered %v and %v of the updates", updates(r1), updates(r2))
	if updates(r1) == 0 || updates(r2) == 0 {
		t.Fatal("one replica answered every update: the test shows nothing about two")
	}
	if rec := e.record(id); rec.Intro != 13 || !rec.IntroPending {
		t.Fatalf("after 30 updates through two replicas: intro %d, pending %v; want 13 (1 + 12), pending", rec.Intro, rec.IntroPending)
	}
	e.clock.advance(5 * time.Second)
	testenv.Eventually(t, 5*time.Second, "the pending introduction", func() bool { return !e.record(id).IntroPending })
	time.Sleep(200 * time.Millisecond) // both sweeps came by
	if rec := e.record(id); rec.Intro != 14 {
		t.Fatalf("intro %d after 5 s, want 14: one introduction for the pending updates, numbered once", rec.Intro)
	}
}

// Two replicas share sessions only through the bucket: a session opened
// and accepted through one is registered at the other's sockets, which
// introduces it; the first may stop, and the second closes the session.
func TestTwoReplicas(t *testing.T) {
	e := newEnv(t)
	r1 := e.start(testConfig())
	o := openAndAccept(t, e, 20, 20) // only r1 runs: r1 answered both
	r2 := e.start(testConfig())
	if r1.primary == r2.primary {
		t.Fatal("the replicas share an address")
	}
	o.aSock.register(r2.primary, o.a.RegisterUsername, o.a.RegisterKey)
	o.aSock.register(r2.alt, o.a.RegisterUsername, o.a.RegisterKey)
	o.bSock.register(r2.primary, o.b.RegisterUsername, o.b.RegisterKey)
	ia, ib := o.aEv.next(evIntro), o.bEv.next(evIntro)
	// bob's host candidate is his socket, the address seen too.
	if ia.Intro != 1 || ib.Intro != 1 || !slices.Equal(addrsOf(ia.PeerCandidates), []string{hostOf(o.bSock.addr())}) {
		t.Fatalf("introduction through the second replica: %v / %v", ia, ib)
	}
	if ia.StunAddr != r2.primary.String() {
		t.Errorf("the second replica's introduction names %s, want its own %s", ia.StunAddr, r2.primary)
	}
	if got := r2.counter(t, "parley_rdv_intros_total"); got != 1 {
		t.Errorf("the second replica published %v introductions, want 1", got)
	}
	// Bob registers at the first replica's alternate: r1 sees the same
	// address, so bob's mapping is independent, and r1 introduces again.
	o.bSock.register(r1.alt, o.b.RegisterUsername, o.b.RegisterKey)
	if ia = o.aEv.next(evIntro); ia.Intro != 2 || ia.PeerMapping != eim {
		t.Fatalf("second introduction %v", ia)
	}
	o.bEv.next(evIntro)
	r1.stop()
	e.mustCall(bob, subject.P2PClose, &parleyv1.P2PCloseRequest{SessionId: o.a.SessionId}, nil)
	o.aEv.next(evClosed)
	o.bEv.next(evClosed)
}

// An offer not answered within 60 s closes EXPIRED for both sides, exactly
// once though two replicas sweep; answering it then is NOT_FOUND. An
// accepted session unchanged for 24 h expires the same way.
func TestExpiry(t *testing.T) {
	e := newEnv(t)
	e.start(testConfig())
	e.start(testConfig())
	aDev, bDev := e.addDevice(alice), e.addDevice(bob)
	aEv, bEv := e.events(alice), e.events(bob)
	var a parleyv1.P2PSession
	e.mustCall(alice, subject.P2POpen, &parleyv1.P2POpenRequest{ToUsername: bob.name, DeviceId: aDev.DeviceId}, &a)
	bEv.next(evOffer)
	e.clock.advance(59 * time.Second)
	aEv.none(300 * time.Millisecond)
	e.clock.advance(2 * time.Second)
	for who, ev := range map[string]*events{"alice": aEv, "bob": bEv} {
		if c := ev.next(evClosed); c.CloseReason != parleyv1.P2PSession_CLOSE_REASON_EXPIRED || c.SessionId != a.SessionId {
			t.Errorf("%s's CLOSED %v", who, c)
		}
	}
	aEv.none(300 * time.Millisecond) // not twice
	bEv.none(0)
	wantCode(t, "accepting an expired offer", e.call(bob, subject.P2PAnswer, &parleyv1.P2PAnswerRequest{SessionId: a.SessionId,
		Accept: true, DeviceId: bDev.DeviceId}, new(parleyv1.P2PSession)), parleyv1.ErrorCode_ERROR_CODE_NOT_FOUND)
	testenv.Eventually(t, 10*time.Second, "the expired record deleted", func() bool { return e.record(a.SessionId) == nil })

	// An accepted session, idle for a day.
	o := openAndAccept(t, e, 0, 0)
	e.clock.advance(23 * time.Hour)
	o.aSock.register(netip.MustParseAddrPort(o.a.StunAddr), o.a.RegisterUsername, o.a.RegisterKey) // use: the day starts again
	e.clock.advance(2 * time.Hour)
	o.aEv.none(300 * time.Millisecond)
	e.clock.advance(23 * time.Hour)
	for who, ev := range map[string]*events{"alice": o.aEv, "bob": o.bEv} {
		if c := ev.next(evClosed); c.CloseReason != parleyv1.P2PSession_CLOSE_REASON_EXPIRED {
			t.Errorf("%s's CLOSED %v", who, c)
		}
	}
	o.aEv.none(300 * time.Millisecond)
}

// Answers: the first of bob's devices to accept takes the session; another
// is refused CONFLICT; the same device's repeat is answered alike; a
// decline closes an offer REJECTED for both.
func TestAnswer(t *testing.T) {
	e := newEnv(t)
	e.start(testConfig())
	o := openAndAccept(t, e, 0, 0)
	second := e.addDevice(bob)
	wantCode(t, "accept from bob's other device", e.call(bob, subject.P2PAnswer, &parleyv1.P2PAnswerRequest{SessionId: o.a.SessionId,
		Accept: true, DeviceId: second.DeviceId}, new(parleyv1.P2PSession)), parleyv1.ErrorCode_ERROR_CODE_CONFLICT)
	wantCode(t, "decline from bob's other device", e.call(bob, subject.P2PAnswer, &parleyv1.P2PAnswerRequest{SessionId: o.a.SessionId,
		DeviceId: second.DeviceId}, new(parleyv1.P2PSession)), parleyv1.ErrorCode_ERROR_CODE_CONFLICT)
	var again parleyv1.P2PSession
	e.mustCall(bob, subject.P2PAnswer, &parleyv1.P2PAnswerRequest{SessionId: o.a.SessionId, Accept: true, DeviceId: o.bDev.DeviceId}, &again)
	if again.State != accepted || !bytes.Equal(again.RegisterKey, o.b.RegisterKey) {
		t.Fatalf("repeated accept: %v", &again)
	}
	o.aEv.none(200 * time.Millisecond)
	wantCode(t, "answer by alice", e.call(alice, subject.P2PAnswer, &parleyv1.P2PAnswerRequest{SessionId: o.a.SessionId,
		Accept: true, DeviceId: o.aDev.DeviceId}, new(parleyv1.P2PSession)), parleyv1.ErrorCode_ERROR_CODE_NOT_FOUND)

	// A decline.
	var a, b parleyv1.P2PSession
	e.mustCall(alice, subject.P2POpen, &parleyv1.P2POpenRequest{ToUsername: bob.name, DeviceId: o.aDev.DeviceId}, &a)
	o.bEv.next(evOffer)
	e.mustCall(bob, subject.P2PAnswer, &parleyv1.P2PAnswerRequest{SessionId: a.SessionId}, &b)
	if b.State != closed || b.CloseReason != parleyv1.P2PSession_CLOSE_REASON_REJECTED {
		t.Fatalf("decline's reply %v", &b)
	}
	for who, ev := range map[string]*events{"alice": o.aEv, "bob": o.bEv} {
		if c := ev.next(evClosed); c.CloseReason != parleyv1.P2PSession_CLOSE_REASON_REJECTED || c.SessionId != a.SessionId {
			t.Errorf("%s's CLOSED %v", who, c)
		}
	}
	wantCode(t, "accept after the decline", e.call(bob, subject.P2PAnswer, &parleyv1.P2PAnswerRequest{SessionId: a.SessionId,
		Accept: true, DeviceId: o.bDev.DeviceId}, new(parleyv1.P2PSession)), parleyv1.ErrorCode_ERROR_CODE_NOT_FOUND)
	wantCode(t, "answer of no session", e.call(bob, subject.P2PAnswer, &parleyv1.P2PAnswerRequest{SessionId: "nonsense",
		Accept: true, DeviceId: o.bDev.DeviceId}, new(parleyv1.P2PSession)), parleyv1.ErrorCode_ERROR_CODE_NOT_FOUND)
}

// A user may have 8 sessions open: the 9th open is QUOTA_EXCEEDED (and
// offers nothing) until one closes.
func TestQuota(t *testing.T) {
	e := newEnv(t)
	e.start(testConfig())
	dev := e.addDevice(alice)
	bEv := e.events(bob)
	var ids []string
	for range 8 {
		var s parleyv1.P2PSession
		e.mustCall(alice, subject.P2POpen, &parleyv1.P2POpenRequest{ToUsername: bob.name, DeviceId: dev.DeviceId}, &s)
		ids = append(ids, s.SessionId)
		bEv.next(evOffer)
	}
	wantCode(t, "9th open", e.call(alice, subject.P2POpen, &parleyv1.P2POpenRequest{ToUsername: bob.name, DeviceId: dev.DeviceId},
		new(parleyv1.P2PSession)), parleyv1.ErrorCode_ERROR_CODE_QUOTA_EXCEEDED)
	bEv.none(200 * time.Millisecond)
	e.mustCall(alice, subject.P2PClose, &parleyv1.P2PCloseRequest{SessionId: ids[3]}, nil)
	e.mustCall(alice, subject.P2POpen, &parleyv1.P2POpenRequest{ToUsername: bob.name, DeviceId: dev.DeviceId}, new(parleyv1.P2PSession))
	// Bob is not limited by alice's offers to him.
	bDev := e.addDevice(bob)
	e.mustCall(bob, subject.P2POpen, &parleyv1.P2POpenRequest{ToUsername: alice.name, DeviceId: bDev.DeviceId}, new(parleyv1.P2PSession))
}

// Opening is refused as §20.2 says, and nothing is offered.
func TestOpenRefused(t *testing.T) {
	e := newEnv(t)
	e.start(testConfig())
	aDev := e.addDevice(alice)
	e.addDevice(carol)
	bEv := e.events(bob)
	nine := make([]netip.AddrPort, 9)
	for i := range nine {
		nine[i] = netip.AddrPortFrom(netip.MustParseAddr("10.0.0.1"), uint16(1000+i))
	}
	for _, tc := range []struct {
		name string
		as   user
		req  *parleyv1.P2POpenRequest
		code parleyv1.ErrorCode
	}{
		{"unknown user", alice, &parleyv1.P2POpenRequest{ToUsername: "nobody", DeviceId: aDev.DeviceId}, parleyv1.ErrorCode_ERROR_CODE_NOT_FOUND},
		{"no user", alice, &parleyv1.P2POpenRequest{DeviceId: aDev.DeviceId}, parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT},
		{"yourself", alice, &parleyv1.P2POpenRequest{ToUsername: alice.name, DeviceId: aDev.DeviceId}, parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT},
		{"blocked", carol, &parleyv1.P2POpenRequest{ToUsername: bob.name, DeviceId: "0123456789abcdef"}, parleyv1.ErrorCode_ERROR_CODE_BLOCKED},
		{"not your device", alice, &parleyv1.P2POpenRequest{ToUsername: bob.name, DeviceId: "0123456789abcdef"}, parleyv1.ErrorCode_ERROR_CODE_NOT_FOUND},
		{"no device", alice, &parleyv1.P2POpenRequest{ToUsername: bob.name}, parleyv1.ErrorCode_ERROR_CODE_NOT_FOUND},
		{"nine candidates", alice, &parleyv1.P2POpenRequest{ToUsername: bob.name, DeviceId: aDev.DeviceId, Candidates: host(nine...)},
			parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT},
		{"a name for a candidate", alice, &parleyv1.P2POpenRequest{ToUsername: bob.name, DeviceId: aDev.DeviceId,
			Candidates: []*parleyv1.P2PCandidate{{Kind: parleyv1.P2PCandidate_KIND_HOST, Addr: "laptop.local:4000"}}}, parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT},
		{"a server-reflexive candidate", alice, &parleyv1.P2POpenRequest{ToUsername: bob.name, DeviceId: aDev.DeviceId,
			Candidates: []*parleyv1.P2PCandidate{{Kind: parleyv1.P2PCandidate_KIND_SERVER_REFLEXIVE, Addr: "203.0.113.1:4000"}}}, parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantCode(t, tc.name, e.call(tc.as, subject.P2POpen, tc.req, new(parleyv1.P2PSession)), tc.code)
		})
	}
	// Without the identity headers (not through the gateway).
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	wantCode(t, "no identity", rpc.Request(ctx, e.nc, subject.P2POpen, nil, &parleyv1.P2POpenRequest{ToUsername: bob.name,
		DeviceId: aDev.DeviceId}, new(parleyv1.P2PSession)), parleyv1.ErrorCode_ERROR_CODE_UNAUTHENTICATED)
	bEv.none(200 * time.Millisecond)
}
