package parley

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/parleychat/parley/protocol/parleyv1"
)

// Voice calls (docs/protocol.md §19). A call belongs to a private chat or
// a group. PlaceCall (or PlaceCallTo) starts one and JoinCall answers one
// that rings (CallRingingEvent) or joins a group's running call; both
// return a CallSession that carries the audio until Hangup or the end of
// the call. Every change of a call the user is concerned with arrives as
// CallRingingEvent, CallUpdatedEvent and CallEndedEvent on Events.

// CallState is where a call is in its life.
type CallState int

// Call states, numbered as the protocol numbers them.
const (
	CallStateUnknown CallState = iota
	CallRinging                // placed; nobody has answered yet
	CallActive                 // at least two participants have been in it
	CallEnded
)

func (s CallState) String() string {
	switch s {
	case CallRinging:
		return "ringing"
	case CallActive:
		return "active"
	case CallEnded:
		return "ended"
	}
	return "unknown"
}

// CallEndReason says how a call ended, and is a call message's outcome.
type CallEndReason int

// End reasons, numbered as the protocol numbers them.
const (
	CallEndUnknown   CallEndReason = iota // also: the outcome of "a group call started"
	CallEndCompleted                      // answered, then hung up
	CallEndCancelled                      // the caller hung up before an answer
	CallEndRejected                       // the callee rejected
	CallEndMissed                         // nobody answered within the ring time
	CallEndBusy                           // the callee was in another call
	CallEndLost                           // a participant's connection was lost
)

func (r CallEndReason) String() string {
	switch r {
	case CallEndCompleted:
		return "completed"
	case CallEndCancelled:
		return "cancelled"
	case CallEndRejected:
		return "rejected"
	case CallEndMissed:
		return "missed"
	case CallEndBusy:
		return "busy"
	case CallEndLost:
		return "lost"
	}
	return "unknown"
}

// CallParticipant is a user in a call.
type CallParticipant struct {
	UserID   string
	Username string
	// StreamID numbers the participant's media packets in this call
	// (never the user id); a rejoin gets a new one.
	StreamID uint32
	Muted    bool
	JoinedAt time.Time
	// Speaking: the participant's audio carried voice in the last 300 ms.
	// Only CallSession.Call sets it (from the packets it receives).
	Speaking bool
}

// Call is a call's state as the server last told it.
type Call struct {
	ID           string
	Conversation string
	Kind         ConversationKind // ConversationDirect or ConversationGroup
	State        CallState
	CallerID     string
	CallerName   string
	Participants []CallParticipant // in the call now
	// RingingIDs are the users being rung (not answered, rejected or in
	// the call).
	RingingIDs   []string
	StartedAt    time.Time
	AnsweredAt   time.Time // when it became active; zero before
	EndedAt      time.Time
	EndReason    CallEndReason // CallEnded only
	RingDeadline time.Time
}

// Participant returns the participant who is userID, if any. A client that
// sees its own user among the participants of a call it did not join from
// this device knows another device answered (and stops ringing).
func (c Call) Participant(userID string) (CallParticipant, bool) {
	for _, p := range c.Participants {
		if p.UserID == userID {
			return p, true
		}
	}
	return CallParticipant{}, false
}

// CallSummary is set on a call's system message (Message.Call): how it
// ended and how long it lasted; Outcome CallEndUnknown marks "a group call
// started" (join it with JoinCall while it runs).
type CallSummary struct {
	CallID   string
	Outcome  CallEndReason
	Duration time.Duration // from the answer to the end; 0 if never answered
}

func callStateFromWire(s parleyv1.CallState) CallState {
	switch s {
	case parleyv1.CallState_CALL_STATE_RINGING:
		return CallRinging
	case parleyv1.CallState_CALL_STATE_ACTIVE:
		return CallActive
	case parleyv1.CallState_CALL_STATE_ENDED:
		return CallEnded
	}
	return CallStateUnknown
}

func callEndReasonFromWire(r parleyv1.CallEndReason) CallEndReason {
	switch r {
	case parleyv1.CallEndReason_CALL_END_REASON_COMPLETED:
		return CallEndCompleted
	case parleyv1.CallEndReason_CALL_END_REASON_CANCELLED:
		return CallEndCancelled
	case parleyv1.CallEndReason_CALL_END_REASON_REJECTED:
		return CallEndRejected
	case parleyv1.CallEndReason_CALL_END_REASON_MISSED:
		return CallEndMissed
	case parleyv1.CallEndReason_CALL_END_REASON_BUSY:
		return CallEndBusy
	case parleyv1.CallEndReason_CALL_END_REASON_LOST:
		return CallEndLost
	}
	return CallEndUnknown
}

func conversationKindFromWire(k parleyv1.ConversationKind) ConversationKind {
	switch k {
	case parleyv1.ConversationKind_CONVERSATION_KIND_ROOM:
		return ConversationRoom
	case parleyv1.ConversationKind_CONVERSATION_KIND_DIRECT:
		return ConversationDirect
	case parleyv1.ConversationKind_CONVERSATION_KIND_GROUP:
		return ConversationGroup
	}
	return ConversationUnknown
}

func callFromWire(c *parleyv1.Call) Call {
	out := Call{
		ID:           c.GetCallId(),
		Conversation: c.GetConversation(),
		Kind:         conversationKindFromWire(c.GetKind()),
		State:        callStateFromWire(c.GetState()),
		CallerID:     c.GetCallerId(),
		CallerName:   c.GetCallerName(),
		RingingIDs:   append([]string(nil), c.GetRingingIds()...),
		StartedAt:    unixMilli(c.GetStartedAtUnixMs()),
		AnsweredAt:   unixMilli(c.GetAnsweredAtUnixMs()),
		EndedAt:      unixMilli(c.GetEndedAtUnixMs()),
		EndReason:    callEndReasonFromWire(c.GetEndReason()),
		RingDeadline: unixMilli(c.GetRingDeadlineUnixMs()),
	}
	for _, p := range c.GetParticipants() {
		out.Participants = append(out.Participants, CallParticipant{
			UserID: p.GetUserId(), Username: p.GetUsername(), StreamID: p.GetStreamId(),
			Muted: p.GetMuted(), JoinedAt: unixMilli(p.GetJoinedAtUnixMs()),
		})
	}
	return out
}

// clone returns a copy sharing no slices with c.
func (c Call) clone() Call {
	c.Participants = append([]CallParticipant(nil), c.Participants...)
	c.RingingIDs = append([]string(nil), c.RingingIDs...)
	return c
}

func callSummaryFromWire(s *parleyv1.CallSummary) *CallSummary {
	if s == nil {
		return nil
	}
	return &CallSummary{CallID: s.GetCallId(), Outcome: callEndReasonFromWire(s.GetOutcome()),
		Duration: time.Duration(s.GetDurationMs()) * time.Millisecond}
}

// CallRingingEvent: the user is being rung (on every device): answer with
// JoinCall, decline with RejectCall, or let it ring out.
type CallRingingEvent struct{ Call Call }

// CallUpdatedEvent: a call the user is in or rung for changed: someone
// joined, left, muted or rejected, or it was answered (on another device
// too: see Call.Participant).
type CallUpdatedEvent struct{ Call Call }

// CallEndedEvent: a call ended (Call.EndReason says how). It also comes
// for a direct call the user was never in (a missed call, BUSY).
type CallEndedEvent struct{ Call Call }

func (CallRingingEvent) isEvent() {}
func (CallUpdatedEvent) isEvent() {}
func (CallEndedEvent) isEvent()   {}

func callEventFromWire(ev *parleyv1.CallEvent) Event {
	call := callFromWire(ev.GetCall())
	switch ev.GetKind() {
	case parleyv1.CallEvent_KIND_RINGING:
		return CallRingingEvent{Call: call}
	case parleyv1.CallEvent_KIND_ENDED:
		return CallEndedEvent{Call: call}
	}
	if call.State == CallEnded {
		return CallEndedEvent{Call: call}
	}
	return CallUpdatedEvent{Call: call}
}

// Errors of calls raised by the SDK.
var (
	// ErrCallEnded: the call is over (Call().EndReason says how) before
	// what was waited for happened.
	ErrCallEnded = errors.New("parley: call ended")
	// ErrCallReplaced: the user joined the call from another device,
	// which took this session's place.
	ErrCallReplaced = errors.New("parley: call joined from another device")
)

// PlaceCall starts a call in a conversation (a private chat's or a
// group's id) and returns its session: the caller is in the call at once,
// rung users get CallRingingEvent. In a conversation whose call is already
// running it joins that call. Errors: ErrBusy (the callee is in another
// call; they see a missed call), ErrConflict (the user is in another call:
// hang up first), ErrNotFound, ErrPermissionDenied (not a member),
// ErrBlocked, ErrInvalidArgument (the public room, or yourself).
func (c *Client) PlaceCall(ctx context.Context, conversation string, o CallOptions) (*CallSession, error) {
	return c.startCall(ctx, "", &parleyv1.Frame{Body: &parleyv1.Frame_PlaceCall{PlaceCall: &parleyv1.PlaceCallRequest{Conversation: conversation}}}, o)
}

// PlaceCallTo calls a user in the private chat with them; as PlaceCall.
func (c *Client) PlaceCallTo(ctx context.Context, username string, o CallOptions) (*CallSession, error) {
	return c.startCall(ctx, "", &parleyv1.Frame{Body: &parleyv1.Frame_PlaceCall{PlaceCall: &parleyv1.PlaceCallRequest{ToUsername: username}}}, o)
}

// JoinCall answers a ringing call or joins a group's running call. Joining
// a call the user is already in (from another device) takes that device's
// place. Errors: ErrNotFound (no such call, or it ended),
// ErrPermissionDenied, ErrConflict (in another call).
func (c *Client) JoinCall(ctx context.Context, callID string, o CallOptions) (*CallSession, error) {
	return c.startCall(ctx, callID, &parleyv1.Frame{Body: &parleyv1.Frame_JoinCall{JoinCall: &parleyv1.JoinCallRequest{CallId: callID}}}, o)
}

// RejectCall declines a ringing call: a private call ends (REJECTED), a
// group call stops ringing for this user. ErrNotFound: the user is not
// being rung for it (anymore).
func (c *Client) RejectCall(ctx context.Context, callID string) error {
	return c.okRequest(ctx, &parleyv1.Frame{Body: &parleyv1.Frame_RejectCall{RejectCall: &parleyv1.RejectCallRequest{CallId: callID}}})
}

// LeaveCall hangs up a call without a session on this client (one joined
// by an earlier run, say); CallSession.Hangup does it for its own.
// ErrNotFound: the user is not in the call.
func (c *Client) LeaveCall(ctx context.Context, callID string) error {
	return c.okRequest(ctx, &parleyv1.Frame{Body: &parleyv1.Frame_LeaveCall{LeaveCall: &parleyv1.LeaveCallRequest{CallId: callID}}})
}

func (c *Client) startCall(ctx context.Context, callID string, f *parleyv1.Frame, o CallOptions) (*CallSession, error) {
	s, err := newCallSession(c, o)
	if err != nil {
		return nil, err
	}
	// A CallJoined for a caller who gave up seats the user all the same:
	// leave that call rather than leave the seat dangling.
	reply, err := c.callRequest(ctx, f, func(j *parleyv1.CallJoined) { c.leaveLater(j.GetCall().GetCallId()) })
	if err != nil {
		s.stop()
		return nil, err
	}
	j := reply.GetCallJoined()
	if j == nil {
		s.stop()
		return nil, fmt.Errorf("%w: expected CallJoined, got %T", ErrProtocol, reply.GetBody())
	}
	if err := s.install(j); err != nil {
		// The server has us in the call; do not leave it dangling.
		s.stop()
		c.leaveLater(j.GetCall().GetCallId())
		return nil, err
	}
	c.addCall(s)
	s.start()
	return s, nil
}

// callReplyTimeout bounds the wait for the reply to a place or join
// request once it is sent, whatever the caller's context says.
const callReplyTimeout = 30 * time.Second

// callRequest sends a place or join request f and waits for its reply.
// ctx bounds the wait for a live connection and the caller's wait for the
// reply; but once f is sent the server may seat the user whatever ctx
// does, so the reply is awaited on (for callReplyTimeout) and, if ctx ended
// first, a CallJoined is handed to late (on another goroutine).
func (c *Client) callRequest(ctx context.Context, f *parleyv1.Frame, late func(*parleyv1.CallJoined)) (*parleyv1.Frame, error) {
	cn, err := c.live(ctx)
	if err != nil {
		return nil, err
	}
	type result struct {
		reply *parleyv1.Frame
		err   error
	}
	ch := make(chan result, 1)
	go func() {
		rctx, cancel := context.WithTimeout(c.ctx, callReplyTimeout)
		defer cancel()
		r, err := cn.roundTrip(rctx, f)
		ch <- result{r, err}
	}()
	select {
	case r := <-ch:
		return r.reply, r.err
	case <-ctx.Done():
		go func() {
			if r := <-ch; r.err == nil && r.reply.GetCallJoined() != nil {
				late(r.reply.GetCallJoined())
			}
		}()
		return nil, ctx.Err()
	}
}

// leaveLater leaves call id in the background, best effort: a seat the
// server gave to a request or session that no longer wants it.
func (c *Client) leaveLater(id string) {
	if id == "" {
		return
	}
	go func() {
		ctx, cancel := context.WithTimeout(c.ctx, 5*time.Second)
		defer cancel()
		if err := c.LeaveCall(ctx, id); err != nil && !errors.Is(err, ErrNotFound) {
			c.log.Debug("parley: leaving an abandoned call seat failed", "call", id, "err", err)
		}
	}()
}

// addCall registers a running session: it receives media frames and call
// events, and rejoins after a reconnect.
func (c *Client) addCall(s *CallSession) {
	c.callMu.Lock()
	c.calls = append(c.calls, s)
	recent := c.recentCalls[s.callID()]
	c.callMu.Unlock()
	// An event that raced ahead of the CallJoined reply (the answer, or
	// the end) must not be lost; an older one must not undo the reply.
	if recent != nil && recent.State > s.Call().State {
		var uid string
		if sess := c.Session(); sess != nil {
			uid = sess.UserID
		}
		s.applyCall(*recent, uid)
	}
}

func (c *Client) removeCall(s *CallSession) {
	c.callMu.Lock()
	for i, x := range c.calls {
		if x == s {
			c.calls = append(c.calls[:i], c.calls[i+1:]...)
			break
		}
	}
	c.callMu.Unlock()
}

// callSessions returns the running sessions.
func (c *Client) callSessions() []*CallSession {
	c.callMu.Lock()
	defer c.callMu.Unlock()
	return append([]*CallSession(nil), c.calls...)
}

// maxRecentCalls bounds the memory of recent call events.
const maxRecentCalls = 64

// callEventLocked hands a call event to the session of its call and
// remembers the call's latest state a while (a session whose CallJoined
// is still on its way must learn of its answer or end). c.mu is held.
func (c *Client) callEventLocked(call Call) {
	c.callMu.Lock()
	if c.recentCalls == nil {
		c.recentCalls = make(map[string]*Call)
	}
	if _, ok := c.recentCalls[call.ID]; !ok {
		c.recentOrder = append(c.recentOrder, call.ID)
		if len(c.recentOrder) > maxRecentCalls {
			delete(c.recentCalls, c.recentOrder[0])
			c.recentOrder = c.recentOrder[1:]
		}
	}
	cc := call.clone()
	c.recentCalls[call.ID] = &cc
	sessions := append([]*CallSession(nil), c.calls...)
	c.callMu.Unlock()
	var uid string
	if c.session != nil {
		uid = c.session.UserID
	}
	for _, s := range sessions {
		if s.callID() == call.ID {
			s.applyCall(call, uid)
		}
	}
}

// routeMedia hands a media frame's packet to the call sessions; the one
// whose key opens it takes it.
func (c *Client) routeMedia(pkt []byte) {
	for _, s := range c.callSessions() {
		if s.receive(pkt, false) {
			return
		}
	}
}

// rejoinCalls re-sends JoinCallRequest for every running session after a
// reconnect: the gateway dropped their streams with the old connection.
func (c *Client) rejoinCalls() {
	for _, s := range c.callSessions() {
		go s.rejoin()
	}
}

// sendMedia sends a sealed packet as a media frame on the live
// connection; it reports false when there is none or it is backed up (the
// packet is dropped: late audio is worthless).
func (c *Client) sendMedia(pkt []byte) bool {
	c.mu.Lock()
	cn := c.conn
	c.mu.Unlock()
	if cn == nil {
		return false
	}
	return cn.sendDroppable(&parleyv1.Frame{Body: &parleyv1.Frame_Media{Media: &parleyv1.MediaPacket{Packet: pkt}}})
}

// callOf is the call a call event carries.
func callOf(ev Event) Call {
	switch ev := ev.(type) {
	case CallRingingEvent:
		return ev.Call
	case CallUpdatedEvent:
		return ev.Call
	case CallEndedEvent:
		return ev.Call
	}
	return Call{}
}
