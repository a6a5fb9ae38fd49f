package server_test

import (
	"testing"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"

	"github.com/parleychat/parley/libs/rpc"
	"github.com/parleychat/parley/libs/subject"
	"github.com/parleychat/parley/protocol/errcode"
	"github.com/parleychat/parley/protocol/parleyv1"
)

// startStandInFriends answers the friend subjects.
//
// STAND-IN for the messaging service's friend handlers (the gateway may not
// import services/messaging): it records each request and answers
// add_friend "nobody" with NOT_FOUND, add_friend "blocker" with BLOCKED,
// friends with one online friend "bob", and everything else with an empty
// body. The real rules are tested in services/messaging and end to end in
// tests/ and clients/.
func startStandInFriends(t *testing.T, nc *nats.Conn) *standInMessaging {
	t.Helper()
	m := &standInMessaging{}
	for _, subj := range []string{subject.MsgAddFriend, subject.MsgAnswerFriend, subject.MsgRemoveFriend,
		subject.MsgFriends, subject.MsgBlock, subject.MsgUnblock} {
		s, err := nc.QueueSubscribe(subj, subject.QueueMessaging, func(msg *nats.Msg) {
			m.record(msg)
			switch msg.Subject {
			case subject.MsgAddFriend:
				req := new(parleyv1.AddFriendRequest)
				if err := proto.Unmarshal(msg.Data, req); err != nil {
					_ = rpc.RespondError(msg, errBadBody)
					return
				}
				switch req.GetUsername() {
				case "nobody":
					_ = rpc.RespondError(msg, errcode.New(parleyv1.ErrorCode_ERROR_CODE_NOT_FOUND, "no user named nobody"))
					return
				case "blocker":
					_ = rpc.RespondError(msg, errcode.New(parleyv1.ErrorCode_ERROR_CODE_BLOCKED, "blocked"))
					return
				}
			case subject.MsgFriends:
				_ = rpc.Respond(msg, &parleyv1.FriendsReply{Friends: []*parleyv1.Friend{
					{UserId: "u-bob", Username: "bob", State: parleyv1.FriendState_FRIEND_STATE_FRIEND, Online: true}}})
				return
			}
			_ = rpc.Respond(msg, nil)
		})
		if err != nil {
			t.Fatal(err)
		}
		m.subs = append(m.subs, s)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.stop)
	return m
}

// TestFriendRequests: each friend request reaches its subject unchanged
// with the session's identity in headers; replies are ok or friends_reply,
// errors keep their code.
func TestFriendRequests(t *testing.T) {
	e := startGateway(t, nil)
	m := startStandInFriends(t, e.nc)
	alice := dialTCP(t, e)
	s := alice.login("alice", noFeed)

	reqs := []struct {
		subject string
		f       *parleyv1.Frame
	}{
		{subject.MsgAddFriend, &parleyv1.Frame{Body: &parleyv1.Frame_AddFriend{AddFriend: &parleyv1.AddFriendRequest{Username: "bob"}}}},
		{subject.MsgAnswerFriend, &parleyv1.Frame{Body: &parleyv1.Frame_AnswerFriend{AnswerFriend: &parleyv1.AnswerFriendRequest{Username: "bob", Accept: true}}}},
		{subject.MsgRemoveFriend, &parleyv1.Frame{Body: &parleyv1.Frame_RemoveFriend{RemoveFriend: &parleyv1.RemoveFriendRequest{Username: "bob"}}}},
		{subject.MsgFriends, &parleyv1.Frame{Body: &parleyv1.Frame_Friends{Friends: &parleyv1.FriendsRequest{}}}},
		{subject.MsgBlock, &parleyv1.Frame{Body: &parleyv1.Frame_Block{Block: &parleyv1.BlockRequest{Username: "bob"}}}},
		{subject.MsgUnblock, &parleyv1.Frame{Body: &parleyv1.Frame_Unblock{Unblock: &parleyv1.UnblockRequest{Username: "bob"}}}},
	}
	for _, req := range reqs {
		r := alice.request(req.f)
		if req.subject == subject.MsgFriends {
			fs := r.GetFriendsReply().GetFriends()
			if len(fs) != 1 || fs[0].GetUsername() != "bob" || !fs[0].GetOnline() {
				t.Errorf("friends: %v", r)
			}
		} else if r.GetOk() == nil {
			t.Errorf("%s: %v", req.subject, r)
		}
	}
	for name, code := range map[string]parleyv1.ErrorCode{
		"nobody":  parleyv1.ErrorCode_ERROR_CODE_NOT_FOUND,
		"blocker": parleyv1.ErrorCode_ERROR_CODE_BLOCKED,
	} {
		r := alice.request(&parleyv1.Frame{Body: &parleyv1.Frame_AddFriend{AddFriend: &parleyv1.AddFriendRequest{Username: name}}})
		if r.GetError().GetCode() != code || r.GetError().GetFatal() {
			t.Errorf("add_friend %s: %v", name, r)
		}
	}
	calls := m.Calls()
	if len(calls) != len(reqs)+2 {
		t.Fatalf("messaging saw %d requests, want %d", len(calls), len(reqs)+2)
	}
	for i, req := range reqs {
		if calls[i].subject != req.subject {
			t.Errorf("request %d went to %s, want %s", i, calls[i].subject, req.subject)
		}
		checkIdentity(t, calls[i], "u-alice", "alice", s.GetSessionId(), alice)
		want, err := proto.Marshal(req.f.ProtoReflect().Get(req.f.ProtoReflect().WhichOneof(req.f.ProtoReflect().Descriptor().Oneofs().ByName("body"))).Message().Interface())
		if err != nil {
			t.Fatal(err)
		}
		if string(calls[i].data) != string(want) {
			t.Errorf("%s: body %x, want %x", req.subject, calls[i].data, want)
		}
	}

	// Without a session nothing is forwarded.
	anon := dialTCP(t, e)
	anon.hello()
	r := anon.request(&parleyv1.Frame{Body: &parleyv1.Frame_Friends{Friends: &parleyv1.FriendsRequest{}}})
	if r.GetError().GetCode() != parleyv1.ErrorCode_ERROR_CODE_UNAUTHENTICATED {
		t.Errorf("friends without a session: %v", r)
	}
	if n := len(m.Calls()); n != len(reqs)+2 {
		t.Errorf("messaging saw %d requests, want %d", n, len(reqs)+2)
	}
}

func typingFrame(conv string) *parleyv1.Frame {
	return &parleyv1.Frame{Body: &parleyv1.Frame_Typing{Typing: &parleyv1.TypingRequest{Conversation: conv}}}
}

// publishUserEvent publishes ev on subj as messaging (or another gateway)
// does.
func (e *env) publishUserEvent(subj string, ev proto.Message) {
	e.t.Helper()
	b, err := proto.Marshal(ev)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := e.nc.Publish(subj, b); err != nil {
		e.t.Fatal(err)
	}
	if err := e.nc.Flush(); err != nil {
		e.t.Fatal(err)
	}
}

// typingEvents reads c's frames up to the typing event from "marker" (a
// TypingEvent published after everything under test) and returns the
// typing events before it.
func (c *client) typingEvents() []*parleyv1.TypingEvent {
	c.t.Helper()
	var got []*parleyv1.TypingEvent
	c.waitFor("marker", func(f *parleyv1.Frame) bool {
		ev := f.GetTypingEvent()
		if ev == nil {
			return false
		}
		if f.GetRequestId() != 0 {
			c.t.Fatalf("typing event with request_id %d", f.GetRequestId())
		}
		if ev.GetUsername() == "marker" {
			return true
		}
		got = append(got, ev)
		return false
	})
	return got
}

// TestTyping: a typing request goes to messaging like the other messaging
// requests (subject.MsgTyping, the body unchanged, who asks in headers
// from the session) and is answered Ok; messaging's errors keep their
// code. The gateway keeps no typing state: every request is forwarded,
// and the TypingEvent messaging publishes reaches the other member's
// connections.
func TestTyping(t *testing.T) {
	e := startGateway(t, nil)
	m := startStandInMessaging(t, e.nc)
	alice := dialTCP(t, e)
	sa := alice.login("alice", noFeed)
	bob1 := dialTCP(t, e)
	bob1.login("bob", noFeed)
	bob2 := dialTCP(t, e)
	bob2.login("bob", noFeed)
	for _, c := range []*client{alice, bob1, bob2} {
		c.settle()
	}
	for range 3 {
		if r := alice.request(typingFrame("dm.u-alice.u-bob")); r.GetOk() == nil {
			t.Fatalf("typing: %v", r)
		}
	}
	for _, tc := range []struct {
		conv string
		code parleyv1.ErrorCode
	}{
		{"room.public", parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT},
		{"dm.u-bob.u-carol", parleyv1.ErrorCode_ERROR_CODE_PERMISSION_DENIED},
	} {
		r := alice.request(typingFrame(tc.conv))
		if r.GetError().GetCode() != tc.code || r.GetError().GetFatal() {
			t.Errorf("typing in %s: %v", tc.conv, r)
		}
	}
	calls := m.Calls()
	if len(calls) != 5 {
		t.Fatalf("messaging saw %d typing requests, want 5 (the gateway drops none)", len(calls))
	}
	want, _ := proto.Marshal(&parleyv1.TypingRequest{Conversation: "dm.u-alice.u-bob"})
	for _, call := range calls {
		if call.subject != subject.MsgTyping {
			t.Errorf("typing went to %s", call.subject)
		}
		checkIdentity(t, call, "u-alice", "alice", sa.GetSessionId(), alice)
	}
	if string(calls[0].data) != string(want) {
		t.Errorf("body %x, want %x", calls[0].data, want)
	}

	marker := &parleyv1.TypingEvent{Conversation: "dm.u-x.u-y", UserId: "u-x", Username: "marker"}
	for _, uid := range []string{"u-alice", "u-bob"} {
		e.publishUserEvent(subject.UserTyping(uid), marker)
	}
	ev := &parleyv1.TypingEvent{Conversation: "dm.u-alice.u-bob", UserId: "u-alice", Username: "alice"}
	for name, c := range map[string]*client{"bob1": bob1, "bob2": bob2} {
		got := c.typingEvents()
		if len(got) != 3 || !proto.Equal(got[0], ev) {
			t.Errorf("%s got typing events %v, want three %v", name, got, ev)
		}
	}
	if got := alice.typingEvents(); len(got) != 0 {
		t.Errorf("alice got her own typing events %v", got)
	}

	anon := dialTCP(t, e)
	anon.hello()
	if r := anon.request(typingFrame("dm.u-alice.u-bob")); r.GetError().GetCode() != parleyv1.ErrorCode_ERROR_CODE_UNAUTHENTICATED {
		t.Errorf("typing without a session: %v", r)
	}
	m.stop()
	if err := e.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	if r := alice.request(typingFrame("dm.u-alice.u-bob")); r.GetError().GetCode() != parleyv1.ErrorCode_ERROR_CODE_UNAVAILABLE {
		t.Errorf("typing with messaging down: %v", r)
	}
	if n := len(m.Calls()); n != 5 {
		t.Errorf("messaging saw %d requests, want 5", n)
	}
}

// TestFriendAndReceiptEvents: friend events and read receipts published on
// a user's subjects reach all that user's connections as friend_event and
// receipt frames; a malformed one is dropped.
func TestFriendAndReceiptEvents(t *testing.T) {
	e := startGateway(t, nil)
	alice1 := loggedIn(t, e, "alice", noFeed)
	alice2 := loggedIn(t, e, "alice", nil)
	bob := loggedIn(t, e, "bob", noFeed)
	if err := e.nc.Publish(subject.UserFriendEvents("u-alice"), []byte{0xff, 0xff}); err != nil {
		t.Fatal(err)
	}
	fev := &parleyv1.FriendEvent{Kind: parleyv1.FriendEvent_KIND_REQUEST, UserId: "u-bob", Username: "bob"}
	e.publishUserEvent(subject.UserFriendEvents("u-alice"), fev)
	rev := &parleyv1.ReceiptEvent{Conversation: "dm.u-alice.u-bob", UserId: "u-bob", Seq: 7}
	e.publishUserEvent(subject.UserReceipts("u-alice"), rev)
	for name, c := range map[string]*client{"alice1": alice1, "alice2": alice2} {
		f := c.waitFor("friend event", func(f *parleyv1.Frame) bool { return f.GetFriendEvent() != nil })
		if !proto.Equal(f.GetFriendEvent(), fev) || f.GetRequestId() != 0 {
			t.Errorf("%s: friend event %v", name, f)
		}
		f = c.waitFor("receipt", func(f *parleyv1.Frame) bool { return f.GetReceipt() != nil })
		if !proto.Equal(f.GetReceipt(), rev) {
			t.Errorf("%s: receipt %v", name, f)
		}
	}
	// bob gets none of alice's: the marker on his subject comes first.
	e.publishUserEvent(subject.UserTyping("u-bob"), &parleyv1.TypingEvent{Username: "marker"})
	bob.typingEvents()
	for _, f := range bob.stash {
		if f.GetFriendEvent() != nil || f.GetReceipt() != nil {
			t.Errorf("bob got alice's event %v", f)
		}
	}
}
