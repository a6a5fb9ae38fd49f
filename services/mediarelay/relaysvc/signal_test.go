package relaysvc_test

import (
	"context"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parleychat/parley/libs/subject"
	"github.com/parleychat/parley/protocol/parleyv1"
	"github.com/parleychat/parley/services/mediarelay/relaysvc"
)

const (
	evRinging = parleyv1.CallEvent_KIND_RINGING
	evUpdated = parleyv1.CallEvent_KIND_UPDATED
	evEnded   = parleyv1.CallEvent_KIND_ENDED

	completed = parleyv1.CallEndReason_CALL_END_REASON_COMPLETED
	cancelled = parleyv1.CallEndReason_CALL_END_REASON_CANCELLED
	rejected  = parleyv1.CallEndReason_CALL_END_REASON_REJECTED
	missed    = parleyv1.CallEndReason_CALL_END_REASON_MISSED
	busy      = parleyv1.CallEndReason_CALL_END_REASON_BUSY
	lost      = parleyv1.CallEndReason_CALL_END_REASON_LOST
	started   = parleyv1.CallEndReason_CALL_END_REASON_UNSPECIFIED
)

func endedWith(r parleyv1.CallEndReason) func(*parleyv1.Call) bool {
	return func(c *parleyv1.Call) bool {
		return c.GetState() == parleyv1.CallState_CALL_STATE_ENDED && c.GetEndReason() == r
	}
}

// A private call placed, answered and hung up, by either side: both are
// rung and told, the call ends COMPLETED with a "Call ended (m:ss)" message
// posted as whoever hung up, and both can call again at once.
func TestPlaceAnswerHangup(t *testing.T) {
	e := newEnv(t, 2, nil)
	for _, hangs := range []user{bob, alice} {
		t.Run(hangs.name+" hangs up", func(t *testing.T) {
			e.t = t
			placed := e.place(alice, "bob")
			id := placed.Call.CallId
			if c := placed.Call; c.State != parleyv1.CallState_CALL_STATE_RINGING || c.Conversation != dm(alice, bob) ||
				!slices.Equal(c.RingingIds, []string{bob.id}) || !slices.Equal(userIDs(c), ids(alice)) {
				t.Fatalf("placed call %v, want ringing bob with alice in it", c)
			}
			e.waitEvent(bob, evRinging, id, nil)
			e.waitEvent(alice, evUpdated, id, nil) // alice's other devices

			answered := e.join(bob, id)
			if c := answered.Call; c.State != parleyv1.CallState_CALL_STATE_ACTIVE || len(c.RingingIds) != 0 ||
				!slices.Equal(userIDs(c), ids(alice, bob)) || c.AnsweredAtUnixMs == 0 {
				t.Fatalf("answered call %v, want active with alice and bob", c)
			}
			if answered.StreamId == placed.StreamId || string(answered.MediaKey) == string(placed.MediaKey) {
				t.Fatal("bob got alice's stream id or key")
			}
			for _, u := range []user{alice, bob} {
				e.waitEvent(u, evUpdated, id, func(c *parleyv1.Call) bool { return c.State == parleyv1.CallState_CALL_STATE_ACTIVE })
			}
			time.Sleep(1100 * time.Millisecond) // a call that lasts at least a second
			e.must("hang up", e.leave(hangs, id))
			for _, u := range []user{alice, bob} {
				e.waitEvent(u, evEnded, id, endedWith(completed))
			}
			p := e.waitPost(id, completed)
			if p.as != hangs.id || !strings.HasPrefix(p.req.Text, "Call ended (0:0") || p.req.Call.DurationMs < 1000 ||
				p.req.Conversation != dm(alice, bob) || p.req.ClientKey != "call."+id+".completed" {
				t.Fatalf("system message %+v posted as %s, want \"Call ended (0:0x)\" with the duration, as %s", p.req, p.as, hangs.id)
			}
			if err := e.leave(alice, id); code(err) != parleyv1.ErrorCode_ERROR_CODE_NOT_FOUND {
				t.Fatalf("leaving an ended call: %v, want NOT_FOUND", err)
			}
			if _, err := e.joinErr(bob, id); code(err) != parleyv1.ErrorCode_ERROR_CODE_NOT_FOUND {
				t.Fatalf("joining an ended call: %v, want NOT_FOUND", err)
			}
			if e.record(id) != nil {
				t.Fatal("the ended call's record is still stored")
			}
		})
	}
}

// The callee declines: the call ends REJECTED, "Declined call".
func TestReject(t *testing.T) {
	e := newEnv(t, 1, nil)
	id := e.place(alice, "bob").Call.CallId
	if err := e.reject(carol, id); code(err) != parleyv1.ErrorCode_ERROR_CODE_NOT_FOUND {
		t.Fatalf("carol (not rung) rejects: %v, want NOT_FOUND", err)
	}
	e.must("bob rejects", e.reject(bob, id))
	for _, u := range []user{alice, bob} {
		e.waitEvent(u, evEnded, id, endedWith(rejected))
	}
	if p := e.waitPost(id, rejected); p.req.Text != "Declined call" {
		t.Fatalf("system message %q, want \"Declined call\"", p.req.Text)
	}
	e.place(alice, "bob") // nothing left behind
}

// The caller hangs up before an answer: CANCELLED, "Missed call" posted
// as the caller.
func TestCancel(t *testing.T) {
	e := newEnv(t, 1, nil)
	id := e.place(alice, "bob").Call.CallId
	e.waitEvent(bob, evRinging, id, nil)
	e.must("alice hangs up", e.leave(alice, id))
	e.waitEvent(bob, evEnded, id, endedWith(cancelled))
	e.waitEvent(alice, evEnded, id, endedWith(cancelled))
	if p := e.waitPost(id, cancelled); p.req.Text != "Missed call" || p.as != alice.id {
		t.Fatalf("system message %q as %s, want \"Missed call\" as alice", p.req.Text, p.as)
	}
}

// Nobody answers within the ring time: MISSED, "Missed call"; in a group
// the ringing just stops.
func TestMissed(t *testing.T) {
	e := newEnv(t, 2, func(c *relaysvc.Config) { c.RingTimeout = 1500 * time.Millisecond })
	id := e.place(alice, "bob").Call.CallId
	e.waitEvent(bob, evEnded, id, endedWith(missed))
	e.waitEvent(alice, evEnded, id, endedWith(missed))
	if p := e.waitPost(id, missed); p.req.Text != "Missed call" || p.as != alice.id {
		t.Fatalf("system message %q as %s, want \"Missed call\" as alice", p.req.Text, p.as)
	}

	g := e.place(alice, team).Call.CallId
	e.join(bob, g)
	e.waitEvent(carol, evUpdated, g, func(c *parleyv1.Call) bool { return len(c.RingingIds) == 0 })
	if c := e.record(g).GetCall(); c.GetState() != parleyv1.CallState_CALL_STATE_ACTIVE || len(c.GetRingingIds()) != 0 {
		t.Fatalf("group call after the ring time: %v, want active, ringing nobody", c)
	}
	e.join(dave, g) // still joinable
}

// Calling someone who is in another call: BUSY, nothing created; both
// sides get an ENDED (BUSY) event and the chat a "Missed call".
func TestBusy(t *testing.T) {
	e := newEnv(t, 1, nil)
	id := e.place(alice, "bob").Call.CallId
	e.join(bob, id)
	_, err := e.placeErr(carol, "bob")
	if code(err) != parleyv1.ErrorCode_ERROR_CODE_BUSY {
		t.Fatalf("carol calls bob in a call: %v, want BUSY", err)
	}
	c := e.waitEvent(bob, evEnded, "", func(c *parleyv1.Call) bool { return c.GetCallerId() == carol.id && endedWith(busy)(c) })
	e.waitEvent(carol, evEnded, c.CallId, endedWith(busy))
	if p := e.waitPost(c.CallId, busy); p.req.Text != "Missed call" || p.as != carol.id || p.req.Conversation != dm(bob, carol) {
		t.Fatalf("system message %+v as %s, want \"Missed call\" in bob and carol's chat as carol", p.req, p.as)
	}
	if e.record(c.CallId) != nil {
		t.Fatal("a busy call was stored")
	}
}

// One call per user: placing or joining while in another is CONFLICT; a
// private call is only for its two users.
func TestConflict(t *testing.T) {
	e := newEnv(t, 1, nil)
	id := e.place(alice, "bob").Call.CallId
	if _, err := e.placeErr(alice, "carol"); code(err) != parleyv1.ErrorCode_ERROR_CODE_CONFLICT {
		t.Fatalf("alice, in a call, calls carol: %v, want CONFLICT", err)
	}
	g := e.place(carol, team).Call.CallId
	if _, err := e.joinErr(alice, g); code(err) != parleyv1.ErrorCode_ERROR_CODE_CONFLICT {
		t.Fatalf("alice, in a call, joins the group's: %v, want CONFLICT", err)
	}
	if _, err := e.joinErr(carol, id); code(err) != parleyv1.ErrorCode_ERROR_CODE_PERMISSION_DENIED {
		t.Fatalf("carol joins alice and bob's private call: %v, want PERMISSION_DENIED", err)
	}
	if _, err := e.joinErr(bob, "c000000000000000000000000"); code(err) != parleyv1.ErrorCode_ERROR_CODE_NOT_FOUND {
		t.Fatalf("joining no call: %v, want NOT_FOUND", err)
	}
	if _, err := e.placeErr(alice, "alice"); code(err) != parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT {
		t.Fatalf("calling yourself: %v, want INVALID_ARGUMENT", err)
	}
}

// Both call each other at once (glare): the second place answers the
// first call.
func TestGlare(t *testing.T) {
	e := newEnv(t, 2, nil)
	id := e.place(alice, "bob").Call.CallId
	j := e.place(bob, "alice")
	if j.Call.CallId != id || j.Call.State != parleyv1.CallState_CALL_STATE_ACTIVE {
		t.Fatalf("bob's call to alice: %v, want alice's call %s answered", j.Call, id)
	}
}

// A group call: members are rung, a start message is posted, members join,
// reject, mute and leave; a non-member is refused; the last one out ends it.
func TestGroupCall(t *testing.T) {
	e := newEnv(t, 2, nil)
	placed := e.place(alice, team)
	id := placed.Call.CallId
	if got := slices.Sorted(slices.Values(placed.Call.RingingIds)); !slices.Equal(got, ids(bob, carol, dave)) {
		t.Fatalf("ringing %v, want bob, carol and dave", got)
	}
	for _, u := range []user{bob, carol, dave} {
		e.waitEvent(u, evRinging, id, nil)
	}
	if p := e.waitPost(id, started); p.req.Text != "alice started a call" || p.as != alice.id {
		t.Fatalf("start message %q as %s", p.req.Text, p.as)
	}

	if _, err := e.placeErr(grace, team); code(err) != parleyv1.ErrorCode_ERROR_CODE_PERMISSION_DENIED {
		t.Fatalf("an outsider places a call in the group: %v, want PERMISSION_DENIED", err)
	}
	if _, err := e.joinErr(grace, id); code(err) != parleyv1.ErrorCode_ERROR_CODE_PERMISSION_DENIED {
		t.Fatalf("an outsider joins the group's call: %v, want PERMISSION_DENIED", err)
	}

	j := e.place(bob, team) // placing in a conversation with a running call joins it
	if j.Call.CallId != id || j.Call.State != parleyv1.CallState_CALL_STATE_ACTIVE {
		t.Fatalf("bob placing in the group: %v, want to join %s", j.Call, id)
	}
	e.must("carol rejects", e.reject(carol, id))
	c := e.waitEvent(alice, evUpdated, id, func(c *parleyv1.Call) bool { return !slices.Contains(c.RingingIds, carol.id) })
	if !slices.Equal(c.RingingIds, []string{dave.id}) {
		t.Fatalf("after carol rejected, ringing %v, want dave", c.RingingIds)
	}
	e.join(dave, id)
	e.must("dave mutes", e.mute(dave, id, true))
	e.waitEvent(alice, evUpdated, id, func(c *parleyv1.Call) bool {
		return slices.ContainsFunc(c.Participants, func(p *parleyv1.CallParticipant) bool { return p.UserId == dave.id && p.Muted })
	})
	if err := e.mute(carol, id, true); code(err) != parleyv1.ErrorCode_ERROR_CODE_NOT_FOUND {
		t.Fatalf("carol, not in the call, mutes: %v, want NOT_FOUND", err)
	}
	e.must("alice leaves", e.leave(alice, id))
	e.waitEvent(bob, evUpdated, id, func(c *parleyv1.Call) bool { return slices.Equal(userIDs(c), ids(bob, dave)) })
	e.waitEvent(alice, evUpdated, id, func(c *parleyv1.Call) bool { return slices.Equal(userIDs(c), ids(bob, dave)) })
	e.join(carol, id) // changed her mind
	for _, u := range []user{bob, carol} {
		e.must(u.name+" leaves", e.leave(u, id))
	}
	if e.eventCount(dave, evEnded, id) != 0 {
		t.Fatal("the call ended with dave still in it")
	}
	e.must("dave leaves", e.leave(dave, id))
	e.waitEvent(dave, evEnded, id, endedWith(completed))
	if p := e.waitPost(id, completed); !strings.HasPrefix(p.req.Text, "Call ended (") || p.as != dave.id {
		t.Fatalf("end message %q as %s, want \"Call ended (m:ss)\" as dave", p.req.Text, p.as)
	}
	e.place(carol, team) // a new call can start
}

// The call moved to bob's phone (a join from another session): a hang-up
// or a mute from his laptop, no longer in the call, is NOT_FOUND and
// changes nothing; the phone can mute and hang up.
func TestOldDeviceCannotLeaveOrMute(t *testing.T) {
	e := newEnv(t, 1, nil)
	id := e.place(alice, "bob").Call.CallId
	e.join(bob, id) // from his laptop, session "s-ubob"
	var phone parleyv1.CallJoined
	e.must("bob takes the call on his phone", e.callFrom(bob, "s-bob-phone", subject.CallJoin, &parleyv1.JoinCallRequest{CallId: id}, &phone))

	if err := e.leave(bob, id); code(err) != parleyv1.ErrorCode_ERROR_CODE_NOT_FOUND {
		t.Fatalf("the laptop hangs up after the call moved to the phone: %v, want NOT_FOUND", err)
	}
	if err := e.mute(bob, id, true); code(err) != parleyv1.ErrorCode_ERROR_CODE_NOT_FOUND {
		t.Fatalf("the laptop mutes after the call moved to the phone: %v, want NOT_FOUND", err)
	}
	c := e.record(id).GetCall()
	if c.GetState() != parleyv1.CallState_CALL_STATE_ACTIVE || !slices.Equal(userIDs(c), ids(alice, bob)) {
		t.Fatalf("after the laptop's hang-up and mute: %v, want the call going on with alice and bob", c)
	}
	for _, p := range c.GetParticipants() {
		if p.GetUserId() == bob.id && (p.GetMuted() || p.GetStreamId() != phone.StreamId) {
			t.Fatalf("bob's seat %v, want the phone's stream %d, unmuted", p, phone.StreamId)
		}
	}
	if n := e.eventCount(alice, evEnded, id); n != 0 {
		t.Fatal("alice was told the call ended")
	}

	e.must("the phone mutes", e.callFrom(bob, "s-bob-phone", subject.CallMute, &parleyv1.MuteCallRequest{CallId: id, Muted: true}, nil))
	e.waitEvent(alice, evUpdated, id, func(c *parleyv1.Call) bool {
		return slices.ContainsFunc(c.Participants, func(p *parleyv1.CallParticipant) bool { return p.UserId == bob.id && p.Muted })
	})
	e.must("the phone hangs up", e.callFrom(bob, "s-bob-phone", subject.CallLeave, &parleyv1.LeaveCallRequest{CallId: id}, nil))
	e.waitEvent(alice, evEnded, id, endedWith(completed))
}

// A join whose save fails (the record contended on every try) leaves the
// user free: they can place another call right after, not CONFLICT.
func TestFailedJoinLeavesUserFree(t *testing.T) {
	var contend atomic.Bool
	var e *env
	e = newEnvSetup(t, 1, nil, func(s *relaysvc.Service) {
		relaysvc.SetBeforeSaveHook(s, func(ctx context.Context, id string) {
			if !contend.Load() {
				return
			}
			// Another writer gets in first, every time.
			if en, err := e.kv.Get(ctx, "call."+id); err == nil {
				_, _ = e.kv.Put(ctx, "call."+id, en.Value())
			}
		})
	})
	g := e.place(alice, team).Call.CallId
	contend.Store(true)
	if _, err := e.joinErr(bob, g); code(err) != parleyv1.ErrorCode_ERROR_CODE_UNAVAILABLE {
		t.Fatalf("bob joins while the record is contended: %v, want UNAVAILABLE", err)
	}
	contend.Store(false)
	if c := e.record(g).GetCall(); slices.Contains(userIDs(c), bob.id) {
		t.Fatalf("bob is in the call after a failed join: %v", c)
	}
	j, err := e.placeErr(bob, "carol")
	if err != nil {
		t.Fatalf("bob calls carol after his failed join: %v, want the call placed", err)
	}
	checkJoined(t, j)
}
