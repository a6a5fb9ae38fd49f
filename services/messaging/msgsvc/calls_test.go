package msgsvc_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/parleychat/parley/libs/proto/internalv1"
	"github.com/parleychat/parley/libs/rpc"
	"github.com/parleychat/parley/libs/subject"
	"github.com/parleychat/parley/libs/testenv"
	"github.com/parleychat/parley/protocol/convid"
	"github.com/parleychat/parley/protocol/parleyv1"
)

const (
	direct = parleyv1.ConversationKind_CONVERSATION_KIND_DIRECT
	group  = parleyv1.ConversationKind_CONVERSATION_KIND_GROUP
	missed = parleyv1.CallEndReason_CALL_END_REASON_MISSED
)

// callResolve is exactly what the media-relay does when u places a call:
// u's identity headers, a CallResolveRequest as body.
func (e *env) callResolve(u user, conv, to string) (*internalv1.CallResolveReply, error) {
	var reply internalv1.CallResolveReply
	err := e.call(u, subject.MsgCallResolve, &internalv1.CallResolveRequest{Conversation: conv, ToUsername: to}, &reply)
	return &reply, err
}

// postCall is what the media-relay does to record a call's outcome as u.
func (e *env) postCall(u user, req *internalv1.PostCallRequest) (*parleyv1.Message, error) {
	var reply parleyv1.Message
	err := e.call(u, subject.MsgPostCall, req, &reply)
	return &reply, err
}

// missedCall is the relay's request for a missed call in conv.
func missedCall(conv, callID string) *internalv1.PostCallRequest {
	return &internalv1.PostCallRequest{Conversation: conv, Text: "Missed call",
		Call: &parleyv1.CallSummary{CallId: callID, Outcome: missed}, ClientKey: "call." + callID + ".MISSED"}
}

// callMessages keeps the messages that record a call.
func callMessages(ms []*parleyv1.Message) []*parleyv1.Message {
	return slices.DeleteFunc(slices.Clone(ms), func(m *parleyv1.Message) bool { return m.Call == nil })
}

// A private chat resolves by username or by id, from either side, to both
// users; the peer's name comes along where it is known. Resolving stores
// nothing.
func TestCallResolveDirect(t *testing.T) {
	e := newEnv(t)
	e.start(t, testConfig())
	dm := directID(alice.id, bob.id)

	r, err := e.callResolve(alice, "", "BOB")
	if err != nil {
		t.Fatalf("alice resolves bob by name: %v", err)
	}
	if r.Conversation != dm || r.Kind != direct || !slices.Equal(r.MemberIds, []string{alice.id, bob.id}) || r.PeerName != "Bob" {
		t.Fatalf("by name: %v, want %s DIRECT [alice bob] Bob", r, dm)
	}
	if n := e.storedCount(t); n != 0 {
		t.Fatalf("resolving stored %d messages", n)
	}
	if c := e.conversations(t, bob); c[dm] != nil {
		t.Fatalf("resolving listed the chat for bob: %v", c[dm])
	}

	// By id, from bob's side; his name for alice is known once she wrote.
	e.send(t, alice, dm, "hi")
	r, err = e.callResolve(bob, dm, "")
	if err != nil {
		t.Fatalf("bob resolves by id: %v", err)
	}
	if r.Conversation != dm || r.Kind != direct || !slices.Equal(r.MemberIds, []string{bob.id, alice.id}) || r.PeerName != "Alice" {
		t.Fatalf("by id: %v, want %s DIRECT [bob alice] Alice", r, dm)
	}

	for _, tc := range []struct {
		name     string
		conv, to string
		code     parleyv1.ErrorCode
	}{
		{"unknown user", "", "nobody", notFound},
		{"yourself", "", "alice", invalidArg},
		{"public room", convid.PublicRoom, "", invalidArg},
		{"dm of others", directID(bob.id, carol.id), "", denied},
		{"no target", "", "", invalidArg},
		{"two targets", dm, "bob", invalidArg},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.callResolve(alice, tc.conv, tc.to)
			wantCode(t, err, tc.code)
		})
	}
	err = rpc.Request(t.Context(), e.nc, subject.MsgCallResolve, nil, &internalv1.CallResolveRequest{ToUsername: "bob"}, nil)
	wantCode(t, err, parleyv1.ErrorCode_ERROR_CODE_UNAUTHENTICATED)
}

// A group resolves to its current members, for members only.
func TestCallResolveGroup(t *testing.T) {
	e := newEnv(t)
	e.start(t, testConfig())
	g := e.createGroup(t, alice, "Team", "bob", "carol")
	if _, err := e.join(bob, g.Id); err != nil {
		t.Fatal(err)
	}
	r, err := e.callResolve(bob, g.Id, "")
	if err != nil {
		t.Fatalf("member resolves: %v", err)
	}
	if r.Conversation != g.Id || r.Kind != group || !slices.Equal(r.MemberIds, []string{alice.id, bob.id}) || r.PeerName != "" {
		t.Fatalf("group: %v, want %s GROUP [alice bob] (not the invitee)", r, g.Id)
	}
	_, err = e.callResolve(carol, g.Id, "") // invited, not a member
	wantCode(t, err, denied)
	if err := e.leave(bob, g.Id); err != nil {
		t.Fatal(err)
	}
	_, err = e.callResolve(bob, g.Id, "")
	wantCode(t, err, denied)
	_, err = e.callResolve(alice, "group.gaaaaaaaaaaaaaaaaaaaa", "")
	wantCode(t, err, notFound)
}

// A block either way stops calls in a private chat until it is lifted.
func TestCallResolveBlocked(t *testing.T) {
	e := newEnv(t)
	e.start(t, testConfig())
	if err := e.block(carol, "alice"); err != nil {
		t.Fatal(err)
	}
	dm := directID(alice.id, carol.id)
	for _, tc := range []struct {
		name     string
		u        user
		conv, to string
	}{
		{"blocked caller by name", alice, "", "carol"},
		{"blocked caller by id", alice, dm, ""},
		{"blocker by name", carol, "", "alice"},
		{"blocker by id", carol, dm, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.callResolve(tc.u, tc.conv, tc.to)
			wantCode(t, err, blockedCode)
		})
	}
	if err := e.unblock(carol, "alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.callResolve(alice, "", "carol"); err != nil {
		t.Fatalf("after the unblock: %v", err)
	}
	if _, err := e.callResolve(carol, dm, ""); err != nil {
		t.Fatalf("after the unblock, the other way: %v", err)
	}
}

// peer_is_friend says whether the two users of a private chat are friends,
// both ways, by name and by id: not while a request is pending, not after
// the friendship ends, and not when only one user's view says so (a
// replica died between the two writes).
func TestCallResolvePeerIsFriend(t *testing.T) {
	e := newEnv(t)
	e.start(t, testConfig())
	dm := directID(alice.id, bob.id)
	check := func(when string, want bool) {
		t.Helper()
		for _, q := range []struct {
			u        user
			conv, to string
		}{{alice, "", "bob"}, {alice, dm, ""}, {bob, "", "alice"}, {bob, dm, ""}} {
			r, err := e.callResolve(q.u, q.conv, q.to)
			if err != nil {
				t.Fatalf("%s: %s resolves %q%q: %v", when, q.u.name, q.conv, q.to, err)
			}
			if r.PeerIsFriend != want {
				t.Fatalf("%s: %s resolves %q%q: peer_is_friend %v, want %v", when, q.u.name, q.conv, q.to, r.PeerIsFriend, want)
			}
		}
	}
	check("strangers", false)
	if err := e.addFriend(alice, "bob"); err != nil {
		t.Fatal(err)
	}
	check("request pending", false)
	if err := e.answerFriend(bob, "alice", true); err != nil {
		t.Fatal(err)
	}
	check("friends", true)
	if err := e.removeFriend(bob, "alice"); err != nil {
		t.Fatal(err)
	}
	check("friendship removed", false)

	// Only alice's key says friend.
	js, err := jetstream.New(e.nc)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(t.Context(), subject.BucketFriends)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(t.Context(), alice.id+"."+bob.id, []byte(`{"state":"friend","name":"Bob"}`)); err != nil {
		t.Fatal(err)
	}
	check("one view only", false)

	// A group has no peer.
	g := e.createGroup(t, alice, "Team")
	if r, err := e.callResolve(alice, g.Id, ""); err != nil || r.PeerIsFriend {
		t.Fatalf("group: %v, %v", r, err)
	}
}

// A call's system message is stored in the private chat as the user it is
// about, read back from history, delivered to both users (nobody else) and
// lists the chat for both. A repeat, on any replica, stores nothing new.
func TestPostCallDirect(t *testing.T) {
	e := newEnv(t)
	e.start(t, testConfig())
	e.start(t, testConfig()) // a repeat may reach another replica
	toAlice, toBob, toCarol := e.watch(t, subject.UserMessages(alice.id)), e.watch(t, subject.UserMessages(bob.id)), e.watch(t, subject.UserMessages(carol.id))
	dm := directID(alice.id, bob.id)
	const callID = "c0123456789abcdef01234567"

	before := time.Now().UnixMilli()
	req := missedCall(dm, callID)
	msg, err := e.postCall(alice, req)
	if err != nil {
		t.Fatalf("post call: %v", err)
	}
	if msg.Conversation != dm || msg.Seq != 1 || msg.Id == 0 || !msg.System || msg.Text != "Missed call" ||
		msg.SenderId != alice.id || msg.SenderName != alice.name || msg.ClientKey != req.ClientKey ||
		msg.SentAtUnixMs < before || msg.File != nil || !proto.Equal(msg.Call, req.Call) {
		t.Fatalf("stored %v", msg)
	}
	for _, u := range []user{alice, bob} {
		if h := e.allHistory(t, u, dm); len(h) != 1 || !proto.Equal(h[0], msg) {
			t.Errorf("%s's history = %v, want the call message", u.name, h)
		}
	}
	if c := e.conversations(t, bob)[dm]; c.GetTitle() != "Alice" || c.LastSeq != 1 {
		t.Errorf("bob's entry = %v, want the chat with Alice at seq 1", c)
	}
	if c := e.conversations(t, alice)[dm]; c == nil || c.LastSeq != 1 {
		t.Errorf("alice's entry = %v", c)
	}

	for i := range 3 {
		again, err := e.postCall(alice, req)
		if err != nil || !proto.Equal(again, msg) {
			t.Fatalf("repeat %d = %v, %v; want the first message", i, again, err)
		}
	}
	// Worded differently (a replica that took the call over): still the
	// first message.
	reworded := missedCall(dm, callID)
	reworded.Text = "Missed call (again)"
	if again, err := e.postCall(alice, reworded); err != nil || !proto.Equal(again, msg) {
		t.Fatalf("reworded repeat = %v, %v; want the first message", again, err)
	}
	// The key for another call: refused.
	other := missedCall(dm, "c00000000000000000000000f")
	other.ClientKey = req.ClientKey
	_, err = e.postCall(alice, other)
	wantCode(t, err, invalidArg)
	if n := e.storedCount(t); n != 1 {
		t.Fatalf("stream holds %d messages, want the one call message", n)
	}
	// A client's own send with that key is a message of its own: call
	// keys do not collide with the user's.
	text, err := e.sendReq(alice, &parleyv1.SendRequest{Conversation: dm, Text: "sorry, missed you", ClientKey: req.ClientKey})
	if err != nil || text.Duplicate || text.Message.Seq != 2 || text.Message.System {
		t.Fatalf("send with the call's key = %v, %v; want a new text message at seq 2", text, err)
	}

	// Live: one event each for alice and bob per stored message, the
	// repeats delivered again (clients drop a seq they have); carol nothing.
	marker := e.send(t, bob, directID(bob.id, carol.id), "marker")
	testenv.Eventually(t, 10*time.Second, "events delivered", func() bool {
		return len(toCarol.get()) == 1 && slices.ContainsFunc(toAlice.get(), func(m *parleyv1.Message) bool { return m.Seq == 2 }) &&
			slices.ContainsFunc(toBob.get(), func(m *parleyv1.Message) bool { return m.Seq == 2 })
	})
	for name, ev := range map[string]*events{"alice": toAlice, "bob": toBob} {
		calls := callMessages(ev.get())
		if len(calls) == 0 {
			t.Fatalf("%s got no call event", name)
		}
		for _, m := range calls {
			if !proto.Equal(m, msg) {
				t.Errorf("%s's call event %v, want %v", name, m, msg)
			}
		}
	}
	if got := toCarol.get(); !proto.Equal(got[0], marker) {
		t.Errorf("carol got %v, want only the marker", got)
	}
}

// In a group the call's message reaches the members; a member who left
// since cannot post there.
func TestPostCallGroup(t *testing.T) {
	e := newEnv(t)
	e.start(t, testConfig())
	toAlice, toBob, toCarol := e.watch(t, subject.UserMessages(alice.id)), e.watch(t, subject.UserMessages(bob.id)), e.watch(t, subject.UserMessages(carol.id))
	g := e.createGroup(t, alice, "Team", "bob", "carol")
	if _, err := e.join(bob, g.Id); err != nil {
		t.Fatal(err)
	}
	started := &internalv1.PostCallRequest{Conversation: g.Id, Text: "Alice started a call",
		Call: &parleyv1.CallSummary{CallId: "c0123456789abcdef01234567"}, ClientKey: "call.c0123456789abcdef01234567.started"}
	msg, err := e.postCall(alice, started)
	if err != nil {
		t.Fatalf("post in group: %v", err)
	}
	if msg.Conversation != g.Id || !msg.System || msg.SenderId != alice.id || !proto.Equal(msg.Call, started.Call) {
		t.Fatalf("stored %v", msg)
	}
	if h := callMessages(e.allHistory(t, bob, g.Id)); len(h) != 1 || !proto.Equal(h[0], msg) {
		t.Errorf("bob's group history calls = %v", h)
	}
	for name, ev := range map[string]*events{"alice": toAlice, "bob": toBob} {
		testenv.Eventually(t, 10*time.Second, name+" gets the call event", func() bool {
			return slices.ContainsFunc(ev.get(), func(m *parleyv1.Message) bool { return proto.Equal(m, msg) })
		})
	}

	_, err = e.postCall(carol, missedCall(g.Id, "c1")) // invited, not a member
	wantCode(t, err, denied)
	if err := e.leave(bob, g.Id); err != nil {
		t.Fatal(err)
	}
	_, err = e.postCall(bob, missedCall(g.Id, "c2"))
	wantCode(t, err, denied)

	marker := e.send(t, alice, directID(alice.id, carol.id), "marker")
	testenv.Eventually(t, 10*time.Second, "marker delivered to carol", func() bool {
		return slices.ContainsFunc(toCarol.get(), func(m *parleyv1.Message) bool { return proto.Equal(m, marker) })
	})
	if got := callMessages(toCarol.get()); len(got) != 0 {
		t.Errorf("carol (invited, not a member) got call events %v", got)
	}
}

func TestPostCallRejections(t *testing.T) {
	e := newEnv(t)
	e.start(t, testConfig())
	dm := directID(alice.id, bob.id)
	with := func(edit func(*internalv1.PostCallRequest)) *internalv1.PostCallRequest {
		req := missedCall(dm, "c0123456789abcdef01234567")
		edit(req)
		return req
	}
	for _, tc := range []struct {
		name string
		req  *internalv1.PostCallRequest
		code parleyv1.ErrorCode
	}{
		{"public room", with(func(r *internalv1.PostCallRequest) { r.Conversation = convid.PublicRoom }), invalidArg},
		{"no conversation", with(func(r *internalv1.PostCallRequest) { r.Conversation = "" }), invalidArg},
		{"dm of others", with(func(r *internalv1.PostCallRequest) { r.Conversation = directID(bob.id, carol.id) }), denied},
		{"unknown group", with(func(r *internalv1.PostCallRequest) { r.Conversation = "group.gaaaaaaaaaaaaaaaaaaaa" }), notFound},
		{"no text", with(func(r *internalv1.PostCallRequest) { r.Text = "" }), invalidArg},
		{"white space text", with(func(r *internalv1.PostCallRequest) { r.Text = " \n\t" }), invalidArg},
		{"201 characters", with(func(r *internalv1.PostCallRequest) { r.Text = strings.Repeat("é", 201) }), invalidArg},
		{"no call", with(func(r *internalv1.PostCallRequest) { r.Call = nil }), invalidArg},
		{"no call id", with(func(r *internalv1.PostCallRequest) { r.Call.CallId = "" }), invalidArg},
		{"65-character call id", with(func(r *internalv1.PostCallRequest) { r.Call.CallId = strings.Repeat("c", 65) }), invalidArg},
		{"no client_key", with(func(r *internalv1.PostCallRequest) { r.ClientKey = "" }), invalidArg},
		{"client_key with a line feed", with(func(r *internalv1.PostCallRequest) { r.ClientKey = "call.c1\nx" }), invalidArg},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.postCall(alice, tc.req)
			wantCode(t, err, tc.code)
		})
	}
	// Text that is not UTF-8 (protobuf encoders refuse to write it, so
	// the body is encoded by hand).
	var body []byte
	body = protowire.AppendTag(body, 1, protowire.BytesType)
	body = protowire.AppendString(body, dm)
	body = protowire.AppendTag(body, 2, protowire.BytesType)
	body = protowire.AppendBytes(body, []byte{'M', 0xff, 0xfe})
	body = protowire.AppendTag(body, 4, protowire.BytesType)
	body = protowire.AppendString(body, "k")
	reply, err := e.nc.RequestMsg(&nats.Msg{Subject: subject.MsgPostCall, Header: header(alice), Data: body}, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if got := rpc.ErrorOf(reply); got == nil || got.Code != invalidArg {
		t.Fatalf("text not UTF-8: reply error %v, want INVALID_ARGUMENT", got)
	}
	// Without the identity headers.
	err = rpc.Request(t.Context(), e.nc, subject.MsgPostCall, nil, with(func(*internalv1.PostCallRequest) {}), nil)
	wantCode(t, err, parleyv1.ErrorCode_ERROR_CODE_UNAUTHENTICATED)
	if n := e.storedCount(t); n != 0 {
		t.Fatalf("stream holds %d messages after refused posts, want 0", n)
	}

	// At the limits: 200 characters, a 64-character call id.
	at := with(func(r *internalv1.PostCallRequest) {
		r.Text, r.Call.CallId = strings.Repeat("é", 200), strings.Repeat("c", 64)
	})
	if _, err := e.postCall(alice, at); err != nil {
		t.Fatalf("at the limits: %v", err)
	}
}
