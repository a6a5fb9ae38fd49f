package relaysvc

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"

	"github.com/parleychat/parley/libs/identity"
	"github.com/parleychat/parley/libs/proto/internalv1"
	"github.com/parleychat/parley/libs/rpc"
	"github.com/parleychat/parley/libs/subject"
	"github.com/parleychat/parley/protocol/errcode"
	"github.com/parleychat/parley/protocol/media"
	"github.com/parleychat/parley/protocol/parleyv1"
)

// Short names of the call states and events used below.
const (
	ringing = parleyv1.CallState_CALL_STATE_RINGING
	active  = parleyv1.CallState_CALL_STATE_ACTIVE
	over    = parleyv1.CallState_CALL_STATE_ENDED

	evRinging = parleyv1.CallEvent_KIND_RINGING
	evUpdated = parleyv1.CallEvent_KIND_UPDATED
	evEnded   = parleyv1.CallEvent_KIND_ENDED

	direct = parleyv1.ConversationKind_CONVERSATION_KIND_DIRECT
)

// request is a signalling request as the gateway sends it: who asks (the
// identity headers) and from which connection.
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

// wire maps an error to what the client sees: wire errors pass, anything
// else (KV trouble) is logged and answered UNAVAILABLE.
func (s *Service) wire(op string, err error) error {
	if err == nil {
		return nil
	}
	var e *errcode.Error
	if errors.As(err, &e) {
		return err
	}
	s.log.Warn("call "+op, "err", err)
	return errStore
}

func (s *Service) handlePlace(ctx context.Context, m *nats.Msg) (proto.Message, error) {
	var req parleyv1.PlaceCallRequest
	r, err := readRequest(m, &req)
	if err != nil {
		return nil, err
	}
	if (req.Conversation == "") == (req.ToUsername == "") {
		return nil, errTarget
	}
	joined, err := s.place(ctx, r, &req)
	return joined, s.wire("place", err)
}

func (s *Service) handleJoin(ctx context.Context, m *nats.Msg) (proto.Message, error) {
	var req parleyv1.JoinCallRequest
	r, err := readRequest(m, &req)
	if err != nil {
		return nil, err
	}
	if !validCallID(req.CallId) {
		return nil, errNoCall
	}
	joined, err := s.join(ctx, r, req.CallId)
	return joined, s.wire("join", err)
}

func (s *Service) handleReject(ctx context.Context, m *nats.Msg) (proto.Message, error) {
	var req parleyv1.RejectCallRequest
	r, err := readRequest(m, &req)
	if err != nil {
		return nil, err
	}
	if !validCallID(req.CallId) {
		return nil, errNotRinging
	}
	return nil, s.wire("reject", s.reject(ctx, r, req.CallId))
}

func (s *Service) handleLeave(ctx context.Context, m *nats.Msg) (proto.Message, error) {
	var req parleyv1.LeaveCallRequest
	r, err := readRequest(m, &req)
	if err != nil {
		return nil, err
	}
	if !validCallID(req.CallId) {
		return nil, errNotIn
	}
	return nil, s.wire("leave", s.leave(ctx, req.CallId, r.me, 0, false))
}

func (s *Service) handleMute(ctx context.Context, m *nats.Msg) (proto.Message, error) {
	var req parleyv1.MuteCallRequest
	r, err := readRequest(m, &req)
	if err != nil {
		return nil, err
	}
	if !validCallID(req.CallId) {
		return nil, errNotIn
	}
	return nil, s.wire("mute", s.mute(ctx, r, req.CallId, req.Muted))
}

// resolve asks messaging whether me may call in the conversation (or the
// user) and who its members are.
func (s *Service) resolve(ctx context.Context, me identity.Caller, req *internalv1.CallResolveRequest) (*internalv1.CallResolveReply, error) {
	rctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
	defer cancel()
	var reply internalv1.CallResolveReply
	if err := rpc.Request(rctx, s.nc, subject.MsgCallResolve, identity.Caller{UserID: me.UserID, Username: me.Username}.Header(), req, &reply); err != nil {
		return nil, err
	}
	return &reply, nil
}

// place is PlaceCallRequest: join the conversation's running call, or
// refuse (CONFLICT, BUSY), or create a ringing call.
func (s *Service) place(ctx context.Context, r request, req *parleyv1.PlaceCallRequest) (*parleyv1.CallJoined, error) {
	res, err := s.resolve(ctx, r.me, &internalv1.CallResolveRequest{Conversation: req.Conversation, ToUsername: req.ToUsername})
	if err != nil {
		return nil, err
	}
	conv := res.GetConversation()
	if running, err := s.pointed(ctx, convKey(conv)); err != nil {
		return nil, err
	} else if running != "" {
		// A group's running call, or glare in a private chat: the other
		// side's ringing call is answered.
		return s.join(ctx, r, running)
	}
	if in, err := s.pointed(ctx, userKey(r.me.UserID)); err != nil {
		return nil, err
	} else if in != "" {
		return nil, errInAnother
	}
	var others []string
	for _, u := range res.GetMemberIds() {
		if u != r.me.UserID && !slices.Contains(others, u) {
			others = append(others, u)
		}
	}
	isDirect := res.GetKind() == direct
	if isDirect {
		if len(others) != 1 {
			return nil, errSelf
		}
		if in, err := s.pointed(ctx, userKey(others[0])); err != nil {
			return nil, err
		} else if in != "" {
			s.busy(r.me, res, others[0])
			return nil, errBusy
		}
	}

	now := s.now()
	id := newCallID()
	stream := newStream(nil)
	key := newKey()
	call := &parleyv1.Call{
		CallId: id, Conversation: conv, Kind: res.GetKind(), State: ringing,
		CallerId: r.me.UserID, CallerName: r.me.Username,
		Participants:       []*parleyv1.CallParticipant{{UserId: r.me.UserID, Username: r.me.Username, StreamId: stream, JoinedAtUnixMs: now.UnixMilli()}},
		RingingIds:         others,
		StartedAtUnixMs:    now.UnixMilli(),
		RingDeadlineUnixMs: now.Add(s.cfg.RingTimeout).UnixMilli(),
	}
	rec := &internalv1.CallRecord{Call: call, Seats: []*internalv1.CallSeat{seat(r, now.UnixMilli())},
		Owner: s.id, MemberIds: slices.Clone(res.GetMemberIds())}
	if err := s.create(ctx, rec); err != nil {
		return nil, err
	}
	// The pointers: one call per conversation, one per user. Losing a race
	// for either withdraws this call.
	if running, err := s.claim(ctx, convKey(conv), id); err != nil || running != "" {
		s.discard(ctx, id)
		if err != nil {
			return nil, err
		}
		return s.join(ctx, r, running)
	}
	if in, err := s.claim(ctx, userKey(r.me.UserID), id); err != nil || in != "" {
		s.discard(ctx, id)
		s.release(ctx, convKey(conv), id)
		if err != nil {
			return nil, err
		}
		return nil, errInAnother
	}
	for _, u := range others {
		s.event(u, evRinging, call)
	}
	s.event(r.me.UserID, evUpdated, call)
	if !isDirect {
		s.post(rec, r.me, fmt.Sprintf("%s started a call", name(r.me)), parleyv1.CallEndReason_CALL_END_REASON_UNSPECIFIED, 0)
	}
	return &parleyv1.CallJoined{Call: call, StreamId: stream, MediaKey: key}, nil
}

// busy tells both sides of a call that was never created: the callee is
// in another call.
func (s *Service) busy(me identity.Caller, res *internalv1.CallResolveReply, peer string) {
	now := s.now().UnixMilli()
	call := &parleyv1.Call{CallId: newCallID(), Conversation: res.GetConversation(), Kind: res.GetKind(), State: over,
		CallerId: me.UserID, CallerName: me.Username, StartedAtUnixMs: now, EndedAtUnixMs: now,
		EndReason: parleyv1.CallEndReason_CALL_END_REASON_BUSY}
	s.event(peer, evEnded, call)
	s.event(me.UserID, evEnded, call)
	s.post(&internalv1.CallRecord{Call: call}, me, "Missed call", parleyv1.CallEndReason_CALL_END_REASON_BUSY, 0)
}

// discard withdraws a call created by place that lost a pointer race.
func (s *Service) discard(ctx context.Context, id string) {
	if err := s.kv.Delete(ctx, callKey(id)); err != nil {
		s.log.Warn("withdraw call", "call", id, "err", err)
	}
	s.owner.forget(id)
}

// join is JoinCallRequest (and a place that found a running call).
func (s *Service) join(ctx context.Context, r request, id string) (*parleyv1.CallJoined, error) {
	rec, _, err := s.get(ctx, id)
	if err != nil {
		return nil, err
	}
	if rec == nil || ended(rec) {
		return nil, errNoCall
	}
	wasIn := participant(rec, r.me.UserID) >= 0
	if rec.GetCall().GetKind() == direct {
		if !slices.Contains(rec.GetMemberIds(), r.me.UserID) {
			return nil, errNotMember
		}
	} else if _, err := s.resolve(ctx, r.me, &internalv1.CallResolveRequest{Conversation: rec.GetCall().GetConversation()}); err != nil {
		if rpc.Failed(err) != nil {
			return nil, err
		}
		return nil, errNotMember
	}
	if in, err := s.claim(ctx, userKey(r.me.UserID), id); err != nil {
		return nil, err
	} else if in != "" {
		return nil, errInAnother
	}
	key := newKey()
	var stream uint32
	rec, err = s.update(ctx, id, func(rec *internalv1.CallRecord) error {
		if rec == nil || ended(rec) {
			return errNoCall
		}
		now := s.now().UnixMilli()
		call := rec.Call
		stream = newStream(rec)
		p := &parleyv1.CallParticipant{UserId: r.me.UserID, Username: r.me.Username, StreamId: stream, JoinedAtUnixMs: now}
		if i := participant(rec, r.me.UserID); i >= 0 {
			// A rejoin (after a reconnect, or from another device): the
			// old stream is dropped for good.
			rec.RetiredStreams = append(rec.RetiredStreams, call.Participants[i].GetStreamId())
			call.Participants[i] = p
			setSeat(rec, i, seat(r, now))
		} else {
			call.Participants = append(call.Participants, p)
			setSeat(rec, len(call.Participants)-1, seat(r, now))
		}
		call.RingingIds = without(call.RingingIds, r.me.UserID)
		if call.State == ringing && len(call.Participants) >= 2 {
			call.State, call.AnsweredAtUnixMs = active, now
			if call.Kind == direct {
				call.RingingIds = nil
			}
		}
		return nil
	})
	if err != nil {
		s.unclaim(ctx, r.me.UserID, id, wasIn)
		return nil, err
	}
	s.events(evUpdated, rec.Call, recipients(rec, r.me.UserID))
	return &parleyv1.CallJoined{Call: rec.Call, StreamId: stream, MediaKey: key}, nil
}

// unclaim undoes a failed join's claim of the user.<uid> pointer, so the
// user is not kept out of every other call by a call they are not in. A
// user who was a participant before (a rejoin), or is one now (another of
// their devices joined meanwhile), keeps the pointer; when the record
// cannot be read, wasIn (from before the join) decides. It runs even when
// ctx ended (the failure may be ctx's).
func (s *Service) unclaim(ctx context.Context, uid, id string, wasIn bool) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.RequestTimeout)
	defer cancel()
	rec, _, err := s.get(ctx, id)
	switch {
	case err != nil && wasIn:
		return
	case err == nil && rec != nil && !ended(rec) && participant(rec, uid) >= 0:
		return
	}
	s.release(ctx, userKey(uid), id)
}

// reject is RejectCallRequest.
func (s *Service) reject(ctx context.Context, r request, id string) error {
	rec, err := s.update(ctx, id, func(rec *internalv1.CallRecord) error {
		if rec == nil || ended(rec) || !slices.Contains(rec.Call.RingingIds, r.me.UserID) {
			return errNotRinging
		}
		if rec.Call.Kind == direct {
			s.end(rec, parleyv1.CallEndReason_CALL_END_REASON_REJECTED)
			return nil
		}
		rec.Call.RingingIds = without(rec.Call.RingingIds, r.me.UserID)
		return nil
	})
	if err != nil {
		return err
	}
	if ended(rec) {
		s.finish(ctx, rec, r.me, r.me.UserID)
		return nil
	}
	s.events(evUpdated, rec.Call, recipients(rec, r.me.UserID))
	return nil
}

// leave removes who from call id: LeaveCallRequest, which must come from
// the session holding who's seat (the device in the call), or (lost) the
// owner timing out the participant's stream, which must still be the one
// it times out (a rejoin replaced it otherwise).
func (s *Service) leave(ctx context.Context, id string, who identity.Caller, stream uint32, lost bool) error {
	rec, err := s.update(ctx, id, func(rec *internalv1.CallRecord) error {
		i := -1
		if rec != nil && !ended(rec) {
			i = participant(rec, who.UserID)
		}
		if i < 0 || lost && rec.Call.Participants[i].GetStreamId() != stream || !lost && !seated(rec, i, who) {
			return errNotIn
		}
		call := rec.Call
		wasRinging := call.State == ringing
		if who.Username == "" {
			who.Username = call.Participants[i].GetUsername()
		}
		rec.RetiredStreams = append(rec.RetiredStreams, call.Participants[i].GetStreamId())
		call.Participants = slices.Delete(call.Participants, i, i+1)
		if i < len(rec.Seats) {
			rec.Seats = slices.Delete(rec.Seats, i, i+1)
		}
		switch {
		case call.Kind == direct && lost:
			s.end(rec, parleyv1.CallEndReason_CALL_END_REASON_LOST)
		case call.Kind == direct && wasRinging:
			s.end(rec, parleyv1.CallEndReason_CALL_END_REASON_CANCELLED)
		case call.Kind == direct, len(call.Participants) == 0:
			s.end(rec, parleyv1.CallEndReason_CALL_END_REASON_COMPLETED)
		}
		return nil
	})
	if err != nil {
		return err
	}
	s.release(ctx, userKey(who.UserID), id)
	if ended(rec) {
		s.finish(ctx, rec, who, who.UserID)
		return nil
	}
	s.events(evUpdated, rec.Call, recipients(rec, who.UserID))
	return nil
}

// mute is MuteCallRequest, from the session holding the seat.
func (s *Service) mute(ctx context.Context, r request, id string, muted bool) error {
	rec, err := s.update(ctx, id, func(rec *internalv1.CallRecord) error {
		i := -1
		if rec != nil && !ended(rec) {
			i = participant(rec, r.me.UserID)
		}
		if i < 0 || !seated(rec, i, r.me) {
			return errNotIn
		}
		rec.Call.Participants[i].Muted = muted
		return nil
	})
	if err != nil {
		return err
	}
	s.events(evUpdated, rec.Call, participantIDs(rec))
	return nil
}

// end marks rec ENDED for reason (saved by the caller's compare-and-set).
func (s *Service) end(rec *internalv1.CallRecord, reason parleyv1.CallEndReason) {
	rec.Call.State, rec.Call.EndReason, rec.Call.EndedAtUnixMs = over, reason, s.now().UnixMilli()
}

// finish follows an ENDED record saved by this replica: the events, the
// system message (about whom it concerns, see message), then the pointers
// and the record are deleted. extra receives the ENDED event too (who left).
func (s *Service) finish(ctx context.Context, rec *internalv1.CallRecord, by identity.Caller, extra ...string) {
	call := rec.Call
	to := recipients(rec, extra...)
	if call.Kind == direct {
		to = appendNew(to, rec.MemberIds...)
	}
	s.events(evEnded, call, to)
	text, about, duration := message(rec, by)
	s.post(rec, about, text, call.EndReason, duration)
	s.cleanup(ctx, rec)
}

// cleanup deletes an ENDED call's pointers and record (idempotent: the
// owner repeats it for an ENDED record left behind by a replica that died).
func (s *Service) cleanup(ctx context.Context, rec *internalv1.CallRecord) {
	id := rec.Call.CallId
	s.release(ctx, convKey(rec.Call.Conversation), id)
	for _, p := range rec.Call.Participants {
		s.release(ctx, userKey(p.GetUserId()), id)
	}
	if err := s.kv.Delete(ctx, callKey(id)); err != nil {
		s.log.Warn("delete ended call", "call", id, "err", err)
	}
}

// message is an ended call's system message: its text, the user it is
// posted as (the caller for a call that was never answered, whoever ended
// it otherwise) and the duration from the answer.
func message(rec *internalv1.CallRecord, by identity.Caller) (string, identity.Caller, uint64) {
	call := rec.Call
	caller := identity.Caller{UserID: call.CallerId, Username: call.CallerName}
	var duration uint64
	if call.AnsweredAtUnixMs > 0 && call.EndedAtUnixMs > call.AnsweredAtUnixMs {
		duration = uint64(call.EndedAtUnixMs - call.AnsweredAtUnixMs)
	}
	switch call.EndReason {
	case parleyv1.CallEndReason_CALL_END_REASON_REJECTED:
		return "Declined call", by, 0
	case parleyv1.CallEndReason_CALL_END_REASON_MISSED, parleyv1.CallEndReason_CALL_END_REASON_CANCELLED:
		return "Missed call", caller, 0
	case parleyv1.CallEndReason_CALL_END_REASON_LOST:
		if call.AnsweredAtUnixMs == 0 {
			return "Missed call", caller, 0
		}
	}
	if by.UserID == "" {
		by = caller
	}
	return fmt.Sprintf("Call ended (%s)", minSec(duration)), by, duration
}

// minSec formats a duration in milliseconds as m:ss.
func minSec(ms uint64) string {
	sec := ms / 1000
	return fmt.Sprintf("%d:%02d", sec/60, sec%60)
}

// post asks messaging, in the background, to post a call's system message
// as about. The client key makes a repeat (by a replica that took over)
// store nothing new. Failures are logged: signalling never fails for them.
func (s *Service) post(rec *internalv1.CallRecord, about identity.Caller, text string, outcome parleyv1.CallEndReason, duration uint64) {
	id := rec.Call.CallId
	req := &internalv1.PostCallRequest{
		Conversation: rec.Call.Conversation, Text: text,
		Call:      &parleyv1.CallSummary{CallId: id, Outcome: outcome, DurationMs: duration},
		ClientKey: "call." + id + "." + outcomeName(outcome),
	}
	hdr := identity.Caller{UserID: about.UserID, Username: about.Username}.Header()
	s.run.Go(func(ctx context.Context) {
		ctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
		defer cancel()
		if err := rpc.Request(ctx, s.nc, subject.MsgPostCall, hdr, req, nil); err != nil {
			s.log.Warn("post call message", "call", id, "outcome", outcome, "err", err)
		}
	})
}

// outcomeName is the client key's last part: "missed", "completed", ...,
// "started" for a group call's start.
func outcomeName(o parleyv1.CallEndReason) string {
	if o == parleyv1.CallEndReason_CALL_END_REASON_UNSPECIFIED {
		return "started"
	}
	n := o.String()
	const p = "CALL_END_REASON_"
	if len(n) > len(p) {
		n = n[len(p):]
	}
	b := []byte(n)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// event publishes a CallEvent to one user.
func (s *Service) event(uid string, kind parleyv1.CallEvent_Kind, call *parleyv1.Call) {
	s.events(kind, call, []string{uid})
}

// events publishes one CallEvent to each of users.
func (s *Service) events(kind parleyv1.CallEvent_Kind, call *parleyv1.Call, users []string) {
	data, err := proto.Marshal(&parleyv1.CallEvent{Kind: kind, Call: call})
	if err != nil {
		s.log.Error("encode call event", "err", err)
		return
	}
	for _, u := range users {
		if err := s.nc.Publish(subject.UserCallEvents(u), data); err != nil {
			s.log.Warn("publish call event", "user", u, "err", err)
		}
	}
}

// recipients are the users an UPDATED or ENDED event goes to: participants,
// ringing users and extra.
func recipients(rec *internalv1.CallRecord, extra ...string) []string {
	to := participantIDs(rec)
	to = appendNew(to, rec.Call.RingingIds...)
	return appendNew(to, extra...)
}

func participantIDs(rec *internalv1.CallRecord) []string {
	var ids []string
	for _, p := range rec.GetCall().GetParticipants() {
		ids = appendNew(ids, p.GetUserId())
	}
	return ids
}

func appendNew(to []string, ids ...string) []string {
	for _, u := range ids {
		if u != "" && !slices.Contains(to, u) {
			to = append(to, u)
		}
	}
	return to
}

func without(ids []string, u string) []string {
	return slices.DeleteFunc(ids, func(x string) bool { return x == u })
}

// participant is the index of uid among rec's participants, -1 if absent.
func participant(rec *internalv1.CallRecord, uid string) int {
	return slices.IndexFunc(rec.GetCall().GetParticipants(), func(p *parleyv1.CallParticipant) bool { return p.GetUserId() == uid })
}

// seated reports whether who asks from the session (device) holding
// participant i's seat: after the call moved to another device, the old
// one can neither hang up nor mute it. A seat without a session (none
// recorded) takes any of the user's.
func seated(rec *internalv1.CallRecord, i int, who identity.Caller) bool {
	if i >= len(rec.GetSeats()) {
		return true
	}
	sid := rec.Seats[i].GetSessionId()
	return sid == "" || sid == who.SessionID
}

func seat(r request, now int64) *internalv1.CallSeat {
	return &internalv1.CallSeat{UserId: r.me.UserID, SessionId: r.me.SessionID, GatewayId: r.origin.GatewayID,
		ConnId: r.origin.ConnID, SeenUnixMs: now}
}

// setSeat puts st at index i of rec's seats (kept in step with the
// participants).
func setSeat(rec *internalv1.CallRecord, i int, st *internalv1.CallSeat) {
	for len(rec.Seats) <= i {
		rec.Seats = append(rec.Seats, &internalv1.CallSeat{})
	}
	rec.Seats[i] = st
}

func name(c identity.Caller) string {
	if c.Username != "" {
		return c.Username
	}
	return c.UserID
}

// newCallID is "c" and 24 lower-case hex digits: a NATS subject token and
// KV key.
func newCallID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return "c" + hex.EncodeToString(b[:])
}

// validCallID reports whether id has newCallID's shape (it becomes a
// subject token and a key).
func validCallID(id string) bool {
	if len(id) != 25 || id[0] != 'c' {
		return false
	}
	for i := 1; i < len(id); i++ {
		if c := id[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// newKey is a participant's media key, new for every join; the relay keeps
// it nowhere.
func newKey() []byte {
	k := make([]byte, media.KeyLen)
	_, _ = rand.Read(k)
	return k
}

// newStream is a random non-zero stream id used by no participant of rec
// and none it retired.
func newStream(rec *internalv1.CallRecord) uint32 {
	for {
		var b [4]byte
		_, _ = rand.Read(b[:])
		id := binary.BigEndian.Uint32(b[:])
		if id == 0 || slices.Contains(rec.GetRetiredStreams(), id) ||
			slices.ContainsFunc(rec.GetCall().GetParticipants(), func(p *parleyv1.CallParticipant) bool { return p.GetStreamId() == id }) {
			continue
		}
		return id
	}
}
