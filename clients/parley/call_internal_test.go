package parley

import (
	"reflect"
	"testing"
	"time"

	"github.com/parleychat/parley/protocol/parleyv1"
)

// TestCallFromWire: every field of the protocol's Call and CallParticipant
// reaches the SDK's, and each event kind maps to its event type.
func TestCallFromWire(t *testing.T) {
	ms := func(n int64) time.Time { return time.UnixMilli(1_700_000_000_000 + n) }
	part := &parleyv1.CallParticipant{UserId: "u2", Username: "bob", StreamId: 77, Muted: true, JoinedAtUnixMs: ms(5).UnixMilli()}
	w := &parleyv1.Call{CallId: "c0123", Conversation: "dm.u1.u2", Kind: parleyv1.ConversationKind_CONVERSATION_KIND_DIRECT,
		State: parleyv1.CallState_CALL_STATE_ENDED, CallerId: "u1", CallerName: "alice",
		Participants: []*parleyv1.CallParticipant{part}, RingingIds: []string{"u3"},
		StartedAtUnixMs: ms(1).UnixMilli(), AnsweredAtUnixMs: ms(2).UnixMilli(), EndedAtUnixMs: ms(3).UnixMilli(),
		EndReason: parleyv1.CallEndReason_CALL_END_REASON_REJECTED, RingDeadlineUnixMs: ms(4).UnixMilli()}
	want := Call{ID: "c0123", Conversation: "dm.u1.u2", Kind: ConversationDirect, State: CallEnded, CallerID: "u1",
		CallerName: "alice", Participants: []CallParticipant{{UserID: "u2", Username: "bob", StreamID: 77, Muted: true, JoinedAt: ms(5)}},
		RingingIDs: []string{"u3"}, StartedAt: ms(1), AnsweredAt: ms(2), EndedAt: ms(3), EndReason: CallEndRejected, RingDeadline: ms(4)}
	if got := callFromWire(w); !reflect.DeepEqual(got, want) {
		t.Errorf("callFromWire = %+v\nwant %+v", got, want)
	}
	if n, set := w.ProtoReflect().Descriptor().Fields().Len(), countSet(w); n != set {
		t.Errorf("the test sets %d of Call's %d fields", set, n)
	}
	if n, set := part.ProtoReflect().Descriptor().Fields().Len(), countSet(part); n != set {
		t.Errorf("the test sets %d of CallParticipant's %d fields", set, n)
	}

	for kind, want := range map[parleyv1.CallEvent_Kind]Event{
		parleyv1.CallEvent_KIND_RINGING: CallRingingEvent{},
		parleyv1.CallEvent_KIND_UPDATED: CallUpdatedEvent{},
		parleyv1.CallEvent_KIND_ENDED:   CallEndedEvent{},
	} {
		got := callEventFromWire(&parleyv1.CallEvent{Kind: kind, Call: &parleyv1.Call{CallId: "c1"}})
		if reflect.TypeOf(got) != reflect.TypeOf(want) || callOf(got).ID != "c1" {
			t.Errorf("%v -> %#v, want a %T of call c1", kind, got, want)
		}
	}

	m := messageFromWire(&parleyv1.Message{System: true, Call: &parleyv1.CallSummary{CallId: "c1",
		Outcome: parleyv1.CallEndReason_CALL_END_REASON_COMPLETED, DurationMs: 65000}})
	if m.Call == nil || *m.Call != (CallSummary{CallID: "c1", Outcome: CallEndCompleted, Duration: 65 * time.Second}) {
		t.Errorf("a call message's summary = %+v", m.Call)
	}
	if messageFromWire(&parleyv1.Message{Text: "hi"}).Call != nil {
		t.Error("a plain message has a call summary")
	}
	// Every end reason of the protocol has a name here.
	for n := range parleyv1.CallEndReason_name {
		if r := callEndReasonFromWire(parleyv1.CallEndReason(n)); n != 0 && r.String() == "unknown" {
			t.Errorf("end reason %d has no SDK value", n)
		}
	}
}

// TestPrivatePeer: only a private call's other participant can carry its
// audio over a direct session (§20.7); a group call, a call the peer is
// not in yet and an ended call have none.
func TestPrivatePeer(t *testing.T) {
	me := CallParticipant{UserID: "u1", StreamID: 10}
	bob := CallParticipant{UserID: "u2", StreamID: 20}
	carol := CallParticipant{UserID: "u3", StreamID: 30}
	for _, tt := range []struct {
		name   string
		call   Call
		me     string
		user   string
		stream uint32
	}{
		{"active private call", Call{Kind: ConversationDirect, State: CallActive, Participants: []CallParticipant{me, bob}}, "u1", "u2", 20},
		{"the peer listed first", Call{Kind: ConversationDirect, State: CallActive, Participants: []CallParticipant{bob, me}}, "u1", "u2", 20},
		{"ringing: the peer is not in it", Call{Kind: ConversationDirect, State: CallRinging, Participants: []CallParticipant{me}, RingingIDs: []string{"u2"}}, "u1", "", 0},
		{"ended", Call{Kind: ConversationDirect, State: CallEnded, Participants: []CallParticipant{me, bob}}, "u1", "", 0},
		{"group call of two", Call{Kind: ConversationGroup, State: CallActive, Participants: []CallParticipant{me, bob}}, "u1", "", 0},
		{"group call of three", Call{Kind: ConversationGroup, State: CallActive, Participants: []CallParticipant{me, bob, carol}}, "u1", "", 0},
		{"no user id yet", Call{Kind: ConversationDirect, State: CallActive, Participants: []CallParticipant{me, bob}}, "", "", 0},
	} {
		user, stream := privatePeer(tt.call, tt.me)
		if user != tt.user || stream != tt.stream {
			t.Errorf("%s: privatePeer = %q, %d; want %q, %d", tt.name, user, stream, tt.user, tt.stream)
		}
	}
}
