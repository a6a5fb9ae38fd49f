package rdvsvc

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"

	"github.com/parleychat/parley/libs/identity"
	"github.com/parleychat/parley/libs/proto/internalv1"
	"github.com/parleychat/parley/libs/rpc"
	"github.com/parleychat/parley/libs/subject"
	"github.com/parleychat/parley/protocol/errcode"
	"github.com/parleychat/parley/protocol/parleyv1"
)

// request is a signalling request as the gateway sends it: who asks (the
// identity headers) and from which connection (the relay follows it).
type request struct {
	me     identity.Caller
	origin identity.Origin
}

func readRequest(m *nats.Msg, into proto.Message) (request, error) {
	me, err := identity.Read(m.Header)
	if err != nil {
		return request{}, errNoIdentity
	}
	if err := proto.Unmarshal(m.Data, into); err != nil {
		return request{}, errMalformed
	}
	return request{me: me, origin: identity.ReadOrigin(m.Header)}, nil
}

// wire maps an error to what the client sees: wire errors (ours, and those
// messaging or auth answered) pass, anything else (KV trouble) is logged
// and answered UNAVAILABLE.
func (s *Service) wire(op string, err error) error {
	if err == nil {
		return nil
	}
	var e *errcode.Error
	if errors.As(err, &e) {
		return err
	}
	s.log.Warn("p2p "+op, "err", err)
	return errStore
}

func (s *Service) handleOpen(ctx context.Context, m *nats.Msg) (proto.Message, error) {
	var req parleyv1.P2POpenRequest
	r, err := readRequest(m, &req)
	if err != nil {
		return nil, err
	}
	v, err := s.openSession(ctx, r, &req)
	return v, s.wire("open", err)
}

func (s *Service) handleAnswer(ctx context.Context, m *nats.Msg) (proto.Message, error) {
	var req parleyv1.P2PAnswerRequest
	r, err := readRequest(m, &req)
	if err != nil {
		return nil, err
	}
	v, err := s.answer(ctx, r, &req)
	return v, s.wire("answer", err)
}

func (s *Service) handleUpdate(ctx context.Context, m *nats.Msg) (proto.Message, error) {
	var req parleyv1.P2PUpdateRequest
	r, err := readRequest(m, &req)
	if err != nil {
		return nil, err
	}
	v, err := s.updateSide(ctx, r, &req)
	return v, s.wire("update", err)
}

func (s *Service) handleClose(ctx context.Context, m *nats.Msg) (proto.Message, error) {
	var req parleyv1.P2PCloseRequest
	r, err := readRequest(m, &req)
	if err != nil {
		return nil, err
	}
	return nil, s.wire("close", s.closeSession(ctx, r, req.SessionId))
}

// resolvePeer asks messaging whether me may reach the user named
// (subject.MsgCallResolve: blocks either way are BLOCKED, an unknown user
// NOT_FOUND, yourself INVALID_ARGUMENT; those pass through) and returns
// the peer's id and name and whether they are friends.
func (s *Service) resolvePeer(ctx context.Context, me identity.Caller, username string) (*internalv1.CallResolveReply, string, error) {
	rctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
	defer cancel()
	var reply internalv1.CallResolveReply
	hdr := identity.Caller{UserID: me.UserID, Username: me.Username}.Header()
	if err := rpc.Request(rctx, s.nc, subject.MsgCallResolve, hdr, &internalv1.CallResolveRequest{ToUsername: username}, &reply); err != nil {
		return nil, "", err
	}
	if reply.Kind != parleyv1.ConversationKind_CONVERSATION_KIND_DIRECT {
		return nil, "", errResolvePeer
	}
	var peer string
	for _, u := range reply.MemberIds {
		if u != me.UserID {
			peer = u
		}
	}
	if peer == "" {
		return nil, "", errSelf
	}
	return &reply, peer, nil
}

// device returns uid's registered device deviceID, asking auth
// (subject.AuthDeviceKeys): errNoDevice when uid has no such device.
func (s *Service) device(ctx context.Context, me identity.Caller, uid, deviceID string) (*parleyv1.DeviceKey, error) {
	if !validDeviceID(deviceID) {
		return nil, errNoDevice
	}
	rctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
	defer cancel()
	var reply parleyv1.DeviceKeysReply
	hdr := identity.Caller{UserID: me.UserID, Username: me.Username}.Header()
	if err := rpc.Request(rctx, s.nc, subject.AuthDeviceKeys, hdr, &parleyv1.DeviceKeysRequest{UserId: uid}, &reply); err != nil {
		if rpc.Failed(err) != nil {
			return nil, err
		}
		return nil, errNoDevice // NOT_FOUND and the like: no such device
	}
	i := slices.IndexFunc(reply.Devices, func(d *parleyv1.DeviceKey) bool { return d.GetDeviceId() == deviceID })
	if i < 0 {
		return nil, errNoDevice
	}
	return reply.Devices[i], nil
}

// openSession is P2POpenRequest (§20.2).
func (s *Service) openSession(ctx context.Context, r request, req *parleyv1.P2POpenRequest) (*parleyv1.P2PSession, error) {
	if req.ToUsername == "" {
		return nil, errNoPeer
	}
	host, err := hostCandidates(req.Candidates)
	if err != nil {
		return nil, err
	}
	res, peer, err := s.resolvePeer(ctx, r.me, req.ToUsername)
	if err != nil {
		return nil, err
	}
	dev, err := s.device(ctx, r.me, r.me.UserID, req.DeviceId)
	if err != nil {
		return nil, err
	}
	peerName := res.PeerName
	if peerName == "" {
		peerName = req.ToUsername
	}
	now := s.now()
	rec := &internalv1.P2PRecord{
		SessionId: newSessionID(), State: offered, CheckKey: newKey(), NonceKey: newKey(),
		CreatedUnixMs: now.UnixMilli(), ExpiresUnixMs: now.Add(s.cfg.OfferTimeout).UnixMilli(),
		Friends: res.PeerIsFriend,
		A: &internalv1.P2PSide{UserId: r.me.UserID, Username: r.me.Username, Device: dev, RegisterKey: newKey(),
			Host: host, RttMs: min(req.RttMs, maxRTT), GatewayId: r.origin.GatewayID, ConnId: r.origin.ConnID},
		B: &internalv1.P2PSide{UserId: peer, Username: peerName, RegisterKey: newKey()},
	}
	rev, err := s.create(ctx, rec)
	if err != nil {
		return nil, err
	}
	// Counted after the record exists, so that two opens racing for the
	// user's last place both see each other's.
	if err := s.reserve(ctx, r.me.UserID, rec.SessionId, MaxSessions); err != nil {
		s.remove(context.WithoutCancel(ctx), rec.SessionId, rev)
		return nil, err
	}
	s.metrics.opened.Inc()
	s.event(evOffer, rec, sideB, false)
	return s.view(rec, sideA, false), nil
}

// answer is P2PAnswerRequest (§20.2): the first device of the peer to
// accept takes the session; a decline closes it.
func (s *Service) answer(ctx context.Context, r request, req *parleyv1.P2PAnswerRequest) (*parleyv1.P2PSession, error) {
	if !validSessionID(req.SessionId) {
		return nil, errNoOffer
	}
	host, err := hostCandidates(req.Candidates)
	if err != nil {
		return nil, err
	}
	rec, _, err := s.get(ctx, req.SessionId)
	if err != nil {
		return nil, err
	}
	if !s.offeredTo(rec, r.me.UserID) && !(rec != nil && rec.State == accepted && rec.B.GetUserId() == r.me.UserID) {
		return nil, errNoOffer
	}
	if !req.Accept {
		return s.reject(ctx, r, req.SessionId)
	}
	dev, err := s.device(ctx, r.me, r.me.UserID, req.DeviceId)
	if err != nil {
		return nil, err
	}
	again, bumped := false, false
	rec, _, err = s.update(ctx, req.SessionId, func(rec *internalv1.P2PRecord) error {
		switch {
		case rec != nil && rec.State == accepted && rec.B.GetUserId() == r.me.UserID:
			if rec.B.GetDevice().GetDeviceId() != dev.DeviceId {
				return errOtherDevice
			}
			again = true // a repeated accept (the reply was lost): answered alike
			return errUnchanged
		case !s.offeredTo(rec, r.me.UserID):
			return errNoOffer
		}
		rec.State = accepted
		rec.ExpiresUnixMs = s.now().Add(s.cfg.IdleTimeout).UnixMilli()
		b := rec.B
		b.Device, b.Host, b.RttMs = dev, host, min(req.RttMs, maxRTT)
		b.GatewayId, b.ConnId = r.origin.GatewayID, r.origin.ConnID
		bumped = introduceWithin(rec, s.now().UnixMilli())
		return nil
	})
	if again {
		return s.view(rec, sideB, false), nil
	}
	if err != nil {
		return nil, err
	}
	if err := s.reserve(ctx, r.me.UserID, rec.SessionId, 0); err != nil {
		s.log.Warn("count accepted session", "session", rec.SessionId, "err", err)
	}
	s.metrics.accepted.Inc()
	s.event(evAccepted, rec, sideA, false)
	s.event(evAccepted, rec, sideB, false)
	if bumped {
		s.intro(rec)
	}
	return s.view(rec, sideB, false), nil
}

// offeredTo reports whether rec is an offer uid may answer: OFFERED to
// them and not past its deadline (the sweep closes it soon).
func (s *Service) offeredTo(rec *internalv1.P2PRecord, uid string) bool {
	return rec != nil && rec.State == offered && rec.B.GetUserId() == uid && s.now().UnixMilli() < rec.ExpiresUnixMs
}

// reject declines an offer (P2PAnswerRequest{accept: false}).
func (s *Service) reject(ctx context.Context, r request, id string) (*parleyv1.P2PSession, error) {
	rec, rev, err := s.update(ctx, id, func(rec *internalv1.P2PRecord) error {
		switch {
		case rec != nil && rec.State == accepted && rec.B.GetUserId() == r.me.UserID:
			return errOtherDevice
		case !s.offeredTo(rec, r.me.UserID):
			return errNoOffer
		}
		rec.State, rec.CloseReason = closed, reasonRejected
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.ended(ctx, rec, rev)
	return s.view(rec, sideB, false), nil
}

// updateSide is P2PUpdateRequest (§20.2): the side's relay follows this
// connection, its host candidates and rtt are replaced, and the peer is
// introduced again.
func (s *Service) updateSide(ctx context.Context, r request, req *parleyv1.P2PUpdateRequest) (*parleyv1.P2PSession, error) {
	if !validSessionID(req.SessionId) {
		return nil, errNoSession
	}
	host, err := hostCandidates(req.Candidates)
	if err != nil {
		return nil, err
	}
	var (
		side   string
		bumped bool
	)
	rec, _, err := s.update(ctx, req.SessionId, func(rec *internalv1.P2PRecord) error {
		side = ""
		if rec == nil || rec.State == closed {
			return errNoSession
		}
		side = sideOfUser(rec, r.me.UserID)
		me, _ := sides(rec, side)
		if side == "" || me.GetDevice().GetDeviceId() != req.DeviceId {
			return errNoSession
		}
		me.Host, me.RttMs = host, min(req.RttMs, maxRTT)
		me.GatewayId, me.ConnId = r.origin.GatewayID, r.origin.ConnID
		if rec.State == accepted {
			rec.ExpiresUnixMs = s.now().Add(s.cfg.IdleTimeout).UnixMilli()
		}
		bumped = introduceWithin(rec, s.now().UnixMilli())
		return nil
	})
	if err != nil {
		return nil, err
	}
	if bumped {
		s.intro(rec)
	}
	return s.view(rec, side, false), nil
}

// closeSession is P2PCloseRequest: either user ends the session, from any
// of their devices.
func (s *Service) closeSession(ctx context.Context, r request, id string) error {
	if !validSessionID(id) {
		return errNoSession
	}
	rec, rev, err := s.update(ctx, id, func(rec *internalv1.P2PRecord) error {
		if rec == nil || rec.State == closed || sideOfUser(rec, r.me.UserID) == "" {
			return errNoSession
		}
		rec.State, rec.CloseReason = closed, reasonClosed
		return nil
	})
	if err != nil {
		return err
	}
	s.ended(ctx, rec, rev)
	return nil
}

// ended follows a CLOSED record saved by this replica at revision rev:
// CLOSED to both users, then the record and its index entries go.
func (s *Service) ended(ctx context.Context, rec *internalv1.P2PRecord, rev uint64) {
	s.metrics.closed(rec.CloseReason)
	s.event(evClosed, rec, sideA, false)
	s.event(evClosed, rec, sideB, false)
	ctx = context.WithoutCancel(ctx)
	s.remove(ctx, rec.SessionId, rev)
	s.release(ctx, rec.A.GetUserId(), rec.SessionId)
	s.release(ctx, rec.B.GetUserId(), rec.SessionId)
}

// The introduction budget of one session after its first: introBurst at
// once, then one per introEvery. Each introduction makes both clients send
// connectivity checks to every candidate the other side named, about a
// hundred each over 30 s (§20.4), and a side names its own host
// candidates freely. Without a bound a peer could have the other side's
// client send thousands of checks a second at any address by repeating
// p2p_update. A legitimate client needs a few an hour (a path died, an
// address changed). Past it the change is saved (p2p_update still
// re-attaches the relay) and its introduction is pending: the sweep of any
// replica numbers it when the budget allows (introducePending). The budget
// lives in the session's record (intro_tat_unix_ms), changed by the same
// compare-and-set as the introduction, so it holds across every replica
// and a retried compare-and-set never charges it twice.
const (
	introBurst = 12
	introEvery = 5 * time.Second
)

// introAllowed reports whether the budget allows an introduction at now
// (unix ms), from the record's theoretical arrival time tat (GCRA: a
// bucket of introBurst refilled one per introEvery).
func introAllowed(tat, now int64) bool {
	return introTat(tat, now)-now <= (introBurst-1)*introEvery.Milliseconds()
}

// introTat is tat as of now: not before now (a full bucket). A tat
// further ahead than an empty bucket's cannot come from a clock in step
// with now: a replica whose clock ran ahead wrote it, and the session is
// not made to wait out the skew (it counts as a full bucket: a misset
// clock can allow a burst more, never freeze a session's introductions).
func introTat(tat, now int64) int64 {
	if tat-now > introBurst*introEvery.Milliseconds() {
		return now
	}
	return max(tat, now)
}

// introduceWithin numbers a new introduction in rec when one can be sent
// (introducible), unless the session's budget is spent at now (unix ms):
// then it is marked pending for the sweep. The first introduction never
// waits and costs nothing.
func introduceWithin(rec *internalv1.P2PRecord, now int64) bool {
	if !introducible(rec) {
		return false
	}
	if rec.Intro > 0 {
		if !introAllowed(rec.IntroTatUnixMs, now) {
			rec.IntroPending = true
			return false
		}
		rec.IntroTatUnixMs = introTat(rec.IntroTatUnixMs, now) + introEvery.Milliseconds()
	}
	rec.IntroPending = false
	rec.Intro++
	return true
}
