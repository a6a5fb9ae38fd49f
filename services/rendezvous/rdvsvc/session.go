package rdvsvc

import (
	"crypto/rand"
	"encoding/hex"
	"net/netip"
	"slices"
	"strings"

	"github.com/parleychat/parley/libs/proto/internalv1"
	"github.com/parleychat/parley/protocol/parleyv1"
)

// Short names of the states, kinds and mappings used below.
const (
	offered  = parleyv1.P2PSession_STATE_OFFERED
	accepted = parleyv1.P2PSession_STATE_ACCEPTED
	closed   = parleyv1.P2PSession_STATE_CLOSED

	reasonClosed   = parleyv1.P2PSession_CLOSE_REASON_CLOSED
	reasonRejected = parleyv1.P2PSession_CLOSE_REASON_REJECTED
	reasonExpired  = parleyv1.P2PSession_CLOSE_REASON_EXPIRED

	evOffer    = parleyv1.P2PEvent_KIND_OFFER
	evAccepted = parleyv1.P2PEvent_KIND_ACCEPTED
	evIntro    = parleyv1.P2PEvent_KIND_INTRO
	evClosed   = parleyv1.P2PEvent_KIND_CLOSED

	hostKind  = parleyv1.P2PCandidate_KIND_HOST
	srflxKind = parleyv1.P2PCandidate_KIND_SERVER_REFLEXIVE

	mapUnknown     = parleyv1.NatMapping_NAT_MAPPING_UNKNOWN
	mapIndependent = parleyv1.NatMapping_NAT_MAPPING_ENDPOINT_INDEPENDENT
	mapDependent   = parleyv1.NatMapping_NAT_MAPPING_ENDPOINT_DEPENDENT
)

// The two sides of a session: a opened it (controlling), b accepted it.
const (
	sideA = "a"
	sideB = "b"
)

// keyLen is the length of the register and check keys (§20.2: 32 bytes).
const keyLen = 32

// sides returns the side named and the other one.
func sides(rec *internalv1.P2PRecord, side string) (me, peer *internalv1.P2PSide) {
	if side == sideA {
		return rec.A, rec.B
	}
	return rec.B, rec.A
}

// sideOfUser is the side uid is on ("" when neither): a user is never on
// both (opening a session with yourself is refused).
func sideOfUser(rec *internalv1.P2PRecord, uid string) string {
	switch uid {
	case rec.A.GetUserId():
		return sideA
	case rec.B.GetUserId():
		return sideB
	}
	return ""
}

// mappingOf is a side's NAT mapping as its two registrations tell it.
func mappingOf(p *internalv1.P2PSide) parleyv1.NatMapping {
	switch {
	case p.GetSrflx() == "" || p.GetSrflxAlt() == "":
		return mapUnknown
	case p.GetSrflx() == p.GetSrflxAlt():
		return mapIndependent
	default:
		return mapDependent
	}
}

// introducible reports whether the introduction can be sent: both sides
// agreed and registered at the primary address.
func introducible(rec *internalv1.P2PRecord) bool {
	return rec.GetState() == accepted && rec.GetA().GetSrflx() != "" && rec.GetB().GetSrflx() != ""
}

// candidatesOf are the candidates a side is introduced with: its host
// candidates, then the address seen at the primary and, when it differs
// (endpoint-dependent mapping), the one seen at the alternate; each address
// once.
func candidatesOf(p *internalv1.P2PSide) []*parleyv1.P2PCandidate {
	out := make([]*parleyv1.P2PCandidate, 0, len(p.GetHost())+2)
	seen := make(map[string]bool, cap(out))
	add := func(kind parleyv1.P2PCandidate_Kind, addr string) {
		if addr != "" && !seen[addr] {
			seen[addr] = true
			out = append(out, &parleyv1.P2PCandidate{Kind: kind, Addr: addr})
		}
	}
	for _, c := range p.GetHost() {
		add(hostKind, c.GetAddr())
	}
	add(srflxKind, p.GetSrflx())
	add(srflxKind, p.GetSrflxAlt())
	return out
}

// startDelay is how long a side waits after the introduction: half the
// amount by which the peer's round trip to the server exceeds its own,
// so both sides' first checks leave at about the same moment.
func startDelay(own, peer uint32) uint32 {
	if peer <= own {
		return 0
	}
	return (peer - own) / 2
}

// view is the session as side sees it (§20.2). The secrets (register and
// check keys) go only to a side that has a device in the session, and not
// once it ended; the peer's key only from ACCEPTED on; the peer's
// candidates only in an introduction (withIntro).
func (s *Service) view(rec *internalv1.P2PRecord, side string, withIntro bool) *parleyv1.P2PSession {
	me, peer := sides(rec, side)
	primary, alt := s.PublicAddrs()
	v := &parleyv1.P2PSession{
		SessionId: rec.SessionId, State: rec.State, CloseReason: rec.CloseReason,
		Controlling: side == sideA, PeerId: peer.GetUserId(), PeerName: peer.GetUsername(), PeerIsFriend: rec.Friends,
		DeviceId: me.GetDevice().GetDeviceId(), Side: side, StunAddr: primary, StunAltAddr: alt,
		Mapping: mappingOf(me), PeerMapping: mappingOf(peer), Intro: rec.Intro,
	}
	if rec.State == offered {
		v.ExpiresAtUnixMs = rec.ExpiresUnixMs
	}
	if rec.State == accepted {
		v.PeerDevice = peer.GetDevice()
	}
	if me.GetDevice() != nil && rec.State != closed {
		v.RegisterUsername = registerUsername(rec.SessionId, side)
		v.RegisterKey = me.GetRegisterKey()
		v.CheckKey = rec.CheckKey
	}
	if withIntro {
		v.PeerCandidates = candidatesOf(peer)
		v.StartDelayMs = startDelay(me.GetRttMs(), peer.GetRttMs())
	}
	return v
}

// newSessionID is "p" and 24 lower-case hex digits: a NATS subject token
// (subject.P2PRelay) and KV key part.
func newSessionID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return "p" + hex.EncodeToString(b[:])
}

// validSessionID reports whether id has newSessionID's shape: anything else
// names no session (and must not reach a subject or a key).
func validSessionID(id string) bool {
	if len(id) != 25 || id[0] != 'p' {
		return false
	}
	for i := 1; i < len(id); i++ {
		if c := id[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// newKey is a fresh random key (register and check keys).
func newKey() []byte {
	k := make([]byte, keyLen)
	_, _ = rand.Read(k)
	return k
}

// Registration USERNAME (§20.3). The rendezvous gives each side
// register_username = "<session_id>:<side>" (a session id from
// newSessionID, side "a" or "b"); a registration's USERNAME must be
// exactly that. It names the session and the side whose register_key keys
// MESSAGE-INTEGRITY; it is no secret (the key is). It has the shape of the
// connectivity checks' USERNAME (§20.4), which never reach the rendezvous.
func registerUsername(sessionID, side string) string { return sessionID + ":" + side }

// parseRegisterUsername splits a registration's USERNAME into the session
// id and the side; ok is false for anything registerUsername does not
// produce.
func parseRegisterUsername(u string) (sessionID, side string, ok bool) {
	id, side, found := strings.Cut(u, ":")
	if !found || !validSessionID(id) || side != sideA && side != sideB {
		return "", "", false
	}
	return id, side, true
}

// validDeviceID reports whether id can be a device id (§20.1: the
// lowercase hex of 8 bytes): anything else is no registered device.
func validDeviceID(id string) bool {
	if len(id) != 16 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// hostCandidates checks a side's host candidates (§20.2): at most
// MaxCandidates, each an ip:port (IPv6 in brackets) of a unicast address
// without a zone, port 1-65535, of kind HOST (or unset, taken as HOST: the
// server-reflexive ones are the rendezvous's to find). It returns them in
// canonical form (IPv4-mapped IPv6 as IPv4), each address once.
func hostCandidates(cs []*parleyv1.P2PCandidate) ([]*parleyv1.P2PCandidate, error) {
	if len(cs) > MaxCandidates {
		return nil, errTooMany
	}
	out := make([]*parleyv1.P2PCandidate, 0, len(cs))
	for _, c := range cs {
		ap, ok := parseCandidate(c.GetAddr())
		if !ok || c.GetKind() != hostKind && c.GetKind() != parleyv1.P2PCandidate_KIND_UNSPECIFIED {
			return nil, errCandidate
		}
		addr := ap.String()
		if !slices.ContainsFunc(out, func(o *parleyv1.P2PCandidate) bool { return o.Addr == addr }) {
			out = append(out, &parleyv1.P2PCandidate{Kind: hostKind, Addr: addr})
		}
	}
	return out, nil
}

// parseCandidate parses one candidate address: ip:port, a unicast IP a
// peer could send to (not unspecified, multicast or broadcast), no zone
// (it means nothing on the peer's machine), port not 0.
func parseCandidate(s string) (netip.AddrPort, bool) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return netip.AddrPort{}, false
	}
	ip := ap.Addr().Unmap()
	if ap.Port() == 0 || ip.Zone() != "" || ip.IsUnspecified() || ip.IsMulticast() ||
		ip == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(ip, ap.Port()), true
}
