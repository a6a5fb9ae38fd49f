package rdvsvc

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/netip"
	"time"

	"github.com/pion/stun/v3"

	"github.com/parleychat/parley/libs/proto/internalv1"
)

// Registration (§20.3): a Binding request with USERNAME =
// register_username ("<session_id>:<side>", see registerUsername) and
// MESSAGE-INTEGRITY keyed with that side's register_key (short-term
// credential, the key as given). The address it came from is recorded as
// the side's srflx when it arrived at the primary IP, srflx_alt at the
// alternate IP (either port); the two tell the side's NAT mapping. The
// answer (MESSAGE-INTEGRITY with the same key) leaves once the address is
// stored. A request that names no live session, or fails the integrity
// check, is answered 401 and changes nothing.
//
// An address is recorded only from a request whose NONCE is the one for
// that side and that source address (registrationNonce); one without it
// is answered 438 (Stale Nonce) with the NONCE to use, signed with the
// register key, and changes nothing. The answer goes to the source, so
// only a side that receives there can register it: a peer spoofing its
// source cannot have the other side's client send its connectivity checks
// (thousands with the birthday technique, §20.4) at someone else.

// registration is one authenticated Binding request, copied off the read
// loop's buffer.
type registration struct {
	pkt       []byte
	recv, out *socket        // where it arrived, and where the answer leaves from
	from, to  netip.AddrPort // where it came from, and where the answer goes
}

// refreshAfter: a registration repeating the stored address still saves
// (the session's idle deadline moves on) when the last save is older than
// this; more often, it only gets its answer.
const refreshAfter = time.Minute

// errUnknownUser: the registration names no session it may register for
// (401).
var errUnknownUser = errors.New("registration for no live session")

// enqueue hands a registration to the workers, or drops it when they are
// all busy (the client retransmits).
func (st *stunServer) enqueue(r registration) {
	select {
	case st.jobs <- r:
	default:
		st.s.metrics.dropBusy.Inc()
	}
}

// worker handles registrations until ctx ends.
func (st *stunServer) worker(ctx context.Context) {
	req, res := new(stun.Message), new(stun.Message)
	for {
		select {
		case <-ctx.Done():
			return
		case r := <-st.jobs:
			st.register(ctx, r, req, res)
		}
	}
}

// register handles one registration.
func (st *stunServer) register(ctx context.Context, r registration, req, res *stun.Message) {
	s := st.s
	if s.store() == nil {
		s.metrics.dropBusy.Inc() // not open yet: the client retransmits
		return
	}
	if err := stun.Decode(r.pkt, req); err != nil {
		s.metrics.dropMalformed.Inc()
		return
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
	defer cancel()
	key, bumped, rec, err := st.record(ctx, req, r)
	var stale *staleNonce
	switch {
	case errors.Is(err, errUnknownUser):
		st.fail(res, req, r.recv, r.to, stun.CodeUnauthorized, nil)
		return
	case errors.As(err, &stale):
		st.stale(res, req, r.recv, r.from, stale.nonce, key)
		return
	case err != nil:
		if ok, _ := st.warn.Take(""); ok { // one line per 10 s: in an outage, not one per packet
			s.log.Warn("stun: registration failed in the store (more such failures are counted in parley_rdv_stun_dropped_total{reason=\"store\"}, not logged, for 10 s)", "from", r.from, "err", err)
		}
		s.metrics.dropStore.Inc()
		return
	}
	if bumped {
		s.intro(rec)
	}
	s.metrics.registrations.Inc()
	st.succeed(res, req, r.recv, r.out, r.from, r.to, key)
}

// record checks req's credentials and stores the address it came from. It
// returns the side's register key (to answer with), whether an
// introduction was numbered (then rec is the saved record, to publish),
// or errUnknownUser for a request to answer 401.
func (st *stunServer) record(ctx context.Context, req *stun.Message, r registration) ([]byte, bool, *internalv1.P2PRecord, error) {
	s := st.s
	var u stun.Username
	if err := u.GetFrom(req); err != nil {
		return nil, false, nil, errUnknownUser
	}
	id, side, ok := parseRegisterUsername(string(u))
	if !ok {
		return nil, false, nil, errUnknownUser
	}
	rec, _, err := s.get(ctx, id)
	if err != nil {
		return nil, false, nil, err
	}
	key := registerKey(rec, side)
	if key == nil || stun.MessageIntegrity(key).Check(req) != nil {
		return nil, false, nil, errUnknownUser
	}
	if want, ok := nonceChecks(rec.GetNonceKey(), side, r.from, req); !ok {
		return key, false, nil, &staleNonce{want}
	}
	seen, atAlt := r.from.String(), r.recv.ip == 1
	bumped := false
	rec, _, err = s.update(ctx, id, func(rec *internalv1.P2PRecord) error {
		bumped = false
		if !bytes.Equal(registerKey(rec, side), key) {
			return errUnknownUser // ended (or replaced) meanwhile
		}
		me, _ := sides(rec, side)
		now := s.now().UnixMilli()
		changed := false
		if atAlt {
			if me.SrflxAlt == seen {
				return errUnchanged
			}
			me.SrflxAlt, changed = seen, true
		} else {
			if me.Srflx == seen && now-me.RegisteredUnixMs < refreshAfter.Milliseconds() {
				return errUnchanged
			}
			changed = me.Srflx != seen
			me.Srflx, me.RegisteredUnixMs = seen, now
		}
		if rec.State == accepted {
			rec.ExpiresUnixMs = s.now().Add(s.cfg.IdleTimeout).UnixMilli()
		}
		if changed {
			bumped = introduceWithin(rec, now)
		}
		return nil
	})
	if errors.Is(err, errUnchanged) {
		return key, false, nil, nil
	}
	if err != nil {
		return nil, false, nil, err
	}
	return key, bumped, rec, nil
}

// stale answers req, a registration without the NONCE for its address,
// 438 with nonce, signed with the side's register key, from socket k to
// from (never to a RESPONSE-PORT: the NONCE proves that address).
func (st *stunServer) stale(res, req *stun.Message, k *socket, from netip.AddrPort, nonce string, key []byte) {
	st.s.metrics.stunError(int(stun.CodeStaleNonce))
	st.answer(res, req, k, from,
		[]stun.Setter{stun.NewTransactionIDSetter(req.TransactionID), stun.BindingError, stun.CodeStaleNonce, stun.NewNonce(nonce)},
		[]stun.Setter{st.software}, []stun.Setter{stun.MessageIntegrity(key)})
}

// staleNonce: a registration that passed the integrity check without the
// NONCE for its source address (438, with nonce).
type staleNonce struct{ nonce string }

func (e *staleNonce) Error() string { return "registration without its address's nonce" }

// nonceChecks reports whether req, side's registration from from, carries
// its address's NONCE (always, for a session without a nonce key: one made
// before there were any), and returns that NONCE.
func nonceChecks(nonceKey []byte, side string, from netip.AddrPort, req *stun.Message) (want string, ok bool) {
	if len(nonceKey) == 0 {
		return "", true
	}
	want = registrationNonce(nonceKey, side, from)
	var n stun.Nonce
	return want, n.GetFrom(req) == nil && hmac.Equal(n, []byte(want))
}

// registrationNonce is the NONCE side must send from from to register it:
// 24 hex digits of HMAC-SHA256 under the session's nonce key, which no
// client holds, of the side and the address. Stable for the session, so a
// side that moves back to an address, or registers again, needs no new
// round trip.
func registrationNonce(nonceKey []byte, side string, from netip.AddrPort) string {
	m := hmac.New(sha256.New, nonceKey)
	m.Write([]byte(side))
	m.Write([]byte{0})
	m.Write([]byte(from.String()))
	return hex.EncodeToString(m.Sum(nil)[:12])
}

// registerKey is the key side registers with: nil when it may not (no
// such session, ended, or side b before it accepted).
func registerKey(rec *internalv1.P2PRecord, side string) []byte {
	if rec == nil || rec.State == closed {
		return nil
	}
	me, _ := sides(rec, side)
	if me.GetDevice() == nil { // b, before it accepted
		return nil
	}
	return me.GetRegisterKey()
}
