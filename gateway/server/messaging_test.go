package server_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/parleychat/parley/gateway/server"
	"github.com/parleychat/parley/libs/subject"
	"github.com/parleychat/parley/protocol/parleyv1"
)

// noFeed logs in without the presence feed, so only replies and message
// events arrive.
var noFeed = &parleyv1.ClientOptions{SkipPresenceFeed: true}

func sendFrame(conv, text, key string) *parleyv1.Frame {
	return &parleyv1.Frame{Body: &parleyv1.Frame_Send{Send: &parleyv1.SendRequest{Conversation: conv, Text: text, ClientKey: key}}}
}

// messagingRequests is one of each messaging request.
func messagingRequests() []struct {
	name    string
	subject string
	f       *parleyv1.Frame
} {
	return []struct {
		name    string
		subject string
		f       *parleyv1.Frame
	}{
		{"send", subject.MsgSend, sendFrame("room.public", "hi", "k1")},
		{"history", subject.MsgHistory, &parleyv1.Frame{Body: &parleyv1.Frame_History{History: &parleyv1.HistoryRequest{Conversation: "room.public"}}}},
		{"ack", subject.MsgAck, &parleyv1.Frame{Body: &parleyv1.Frame_Ack{Ack: &parleyv1.AckRequest{Conversation: "room.public"}}}},
		{"conversations", subject.MsgConversations, &parleyv1.Frame{Body: &parleyv1.Frame_Conversations{Conversations: &parleyv1.ConversationsRequest{}}}},
		{"open_direct", subject.MsgOpenDirect, &parleyv1.Frame{Body: &parleyv1.Frame_OpenDirect{OpenDirect: &parleyv1.OpenDirectRequest{Username: "bob"}}}},
		{"create_group", subject.MsgCreateGroup, &parleyv1.Frame{Body: &parleyv1.Frame_CreateGroup{CreateGroup: &parleyv1.CreateGroupRequest{Name: "Team", Usernames: []string{"bob"}}}}},
		{"invite", subject.MsgInvite, &parleyv1.Frame{Body: &parleyv1.Frame_Invite{Invite: &parleyv1.InviteRequest{Conversation: "group.g1", Usernames: []string{"carol"}}}}},
		{"join_group", subject.MsgJoinGroup, &parleyv1.Frame{Body: &parleyv1.Frame_JoinGroup{JoinGroup: &parleyv1.JoinGroupRequest{Conversation: "group.g1"}}}},
		{"leave_group", subject.MsgLeaveGroup, &parleyv1.Frame{Body: &parleyv1.Frame_LeaveGroup{LeaveGroup: &parleyv1.LeaveGroupRequest{Conversation: "group.g1"}}}},
		{"remove_member", subject.MsgRemoveMember, &parleyv1.Frame{Body: &parleyv1.Frame_RemoveMember{RemoveMember: &parleyv1.RemoveMemberRequest{Conversation: "group.g1", Username: "bob"}}}},
		{"rename_group", subject.MsgRenameGroup, &parleyv1.Frame{Body: &parleyv1.Frame_RenameGroup{RenameGroup: &parleyv1.RenameGroupRequest{Conversation: "group.g1", Name: "Crew"}}}},
		{"members", subject.MsgMembers, &parleyv1.Frame{Body: &parleyv1.Frame_Members{Members: &parleyv1.MembersRequest{Conversation: "group.g1"}}}},
	}
}

// TestGroupRequests: each group request reaches its subject unchanged with
// the session's identity in headers, and its reply reaches the client as
// the matching frame (conversation, members_reply or ok); errors keep
// their code.
func TestGroupRequests(t *testing.T) {
	e := startGateway(t, nil)
	msg := startStandInMessaging(t, e.nc)
	alice := dialTCP(t, e)
	s := alice.login("alice", noFeed)

	var groupReqs []struct {
		name    string
		subject string
		f       *parleyv1.Frame
	}
	for _, r := range messagingRequests() {
		if strings.HasPrefix(r.subject, "parley.msg.v1.group.") {
			groupReqs = append(groupReqs, r)
		}
	}
	if len(groupReqs) != 7 {
		t.Fatalf("%d group requests in the table, want 7", len(groupReqs))
	}
	for _, req := range groupReqs {
		r := alice.request(req.f)
		var ok bool
		switch req.name {
		case "create_group":
			c := r.GetConversation()
			ok = c.GetId() == "group.g1" && c.GetKind() == parleyv1.ConversationKind_CONVERSATION_KIND_GROUP && c.GetTitle() == "Team" && c.GetOwnerId() == "u-alice"
		case "join_group":
			ok = r.GetConversation().GetId() == "group.g1"
		case "rename_group":
			ok = r.GetConversation().GetTitle() == "Crew"
		case "invite":
			ms := r.GetMembersReply().GetMembers()
			ok = len(ms) == 2 && ms[0].GetUserId() == "u-alice" && ms[0].GetOwner() && ms[1].GetUsername() == "carol" && ms[1].GetInvited()
		case "members":
			ms := r.GetMembersReply().GetMembers()
			ok = len(ms) == 1 && ms[0].GetUsername() == "alice" && ms[0].GetOwner()
		case "leave_group", "remove_member":
			ok = r.GetOk() != nil
		}
		if !ok {
			t.Errorf("%s: reply %v", req.name, r)
		}
	}
	r := alice.request(&parleyv1.Frame{Body: &parleyv1.Frame_RemoveMember{RemoveMember: &parleyv1.RemoveMemberRequest{Conversation: "group.g1", Username: "nobody"}}})
	if got := r.GetError(); got.GetCode() != parleyv1.ErrorCode_ERROR_CODE_NOT_FOUND || got.GetMessage() != "no user named nobody" || got.GetFatal() {
		t.Errorf("remove_member nobody: %v", r)
	}

	calls := msg.Calls()
	if len(calls) != len(groupReqs)+1 {
		t.Fatalf("messaging saw %d requests, want %d", len(calls), len(groupReqs)+1)
	}
	for i, req := range groupReqs {
		if calls[i].subject != req.subject {
			t.Errorf("%s went to %s, want %s", req.name, calls[i].subject, req.subject)
		}
		checkIdentity(t, calls[i], "u-alice", "alice", s.GetSessionId(), alice)
		// The body is the client's request as sent.
		want, err := proto.Marshal(req.f.ProtoReflect().Get(req.f.ProtoReflect().WhichOneof(req.f.ProtoReflect().Descriptor().Oneofs().ByName("body"))).Message().Interface())
		if err != nil {
			t.Fatal(err)
		}
		if string(calls[i].data) != string(want) {
			t.Errorf("%s: body %x, want %x", req.name, calls[i].data, want)
		}
		if n := e.metric("parley_gateway_frames_received_total", map[string]string{"type": req.name}); n < 1 {
			t.Errorf("frames received metric for %s = %v", req.name, n)
		}
	}
}

// checkIdentity fails unless call carries the session's identity headers
// and c's address.
func checkIdentity(t *testing.T, call msgCall, user, username, sessionID string, c *client) {
	t.Helper()
	want := map[string]string{
		subject.HeaderUserID:     user,
		subject.HeaderUsername:   username,
		subject.HeaderSessionID:  sessionID,
		subject.HeaderGatewayID:  "gw-test",
		subject.HeaderRemoteAddr: c.raw.LocalAddr().String(),
	}
	for k, v := range want {
		if got := call.header.Values(k); len(got) != 1 || got[0] != v {
			t.Errorf("%s: header %s = %q, want %q", call.subject, k, got, v)
		}
	}
}

// TestMessagingRequests: each messaging request reaches its subject with
// the session's identity in headers, and its reply reaches the client as
// the matching frame.
func TestMessagingRequests(t *testing.T) {
	e := startGateway(t, nil)
	msg := startStandInMessaging(t, e.nc)
	alice := dialTCP(t, e)
	s := alice.login("alice", noFeed)

	r := alice.request(sendFrame("room.public", "hello, 世界 👋\nsecond line", "key-1"))
	sent := r.GetSendReply().GetMessage()
	if sent.GetConversation() != "room.public" || sent.GetSeq() != 1 || sent.GetSenderId() != "u-alice" ||
		sent.GetSenderName() != "alice" || sent.GetText() != "hello, 世界 👋\nsecond line" || sent.GetClientKey() != "key-1" {
		t.Fatalf("send: %v", r)
	}

	r = alice.request(&parleyv1.Frame{Body: &parleyv1.Frame_Send{Send: &parleyv1.SendRequest{ToUsername: "bob", Text: "psst", ClientKey: "key-2"}}})
	if got := r.GetSendReply().GetMessage(); got.GetConversation() != "dm.u-alice.u-bob" || got.GetSeq() != 1 {
		t.Fatalf("send to_username: %v", r)
	}

	r = alice.request(&parleyv1.Frame{Body: &parleyv1.Frame_History{History: &parleyv1.HistoryRequest{Conversation: "room.public", Limit: 10}}})
	if h := r.GetHistoryReply(); len(h.GetMessages()) != 1 || !proto.Equal(h.GetMessages()[0], sent) || h.GetLastSeq() != 1 || h.GetMore() {
		t.Fatalf("history: %v", r)
	}

	r = alice.request(&parleyv1.Frame{Body: &parleyv1.Frame_Ack{Ack: &parleyv1.AckRequest{Conversation: "room.public", Seq: 1}}})
	if r.GetOk() == nil {
		t.Fatalf("ack: %v", r)
	}

	r = alice.request(&parleyv1.Frame{Body: &parleyv1.Frame_Conversations{Conversations: &parleyv1.ConversationsRequest{}}})
	convs := r.GetConversationsReply().GetConversations()
	if len(convs) != 2 || convs[0].GetId() != "room.public" || convs[0].GetLastSeq() != 1 ||
		convs[1].GetId() != "dm.u-alice.u-bob" || convs[1].GetTitle() != "bob" || convs[1].GetPeerId() != "u-bob" {
		t.Fatalf("conversations: %v", r)
	}

	r = alice.request(&parleyv1.Frame{Body: &parleyv1.Frame_OpenDirect{OpenDirect: &parleyv1.OpenDirectRequest{Username: "carol"}}})
	if c := r.GetConversation(); c.GetId() != "dm.u-alice.u-carol" || c.GetKind() != parleyv1.ConversationKind_CONVERSATION_KIND_DIRECT || c.GetTitle() != "carol" {
		t.Fatalf("open_direct: %v", r)
	}

	calls := msg.Calls()
	wantSubjects := []string{subject.MsgSend, subject.MsgSend, subject.MsgHistory, subject.MsgAck, subject.MsgConversations, subject.MsgOpenDirect}
	if len(calls) != len(wantSubjects) {
		t.Fatalf("messaging saw %d requests, want %d", len(calls), len(wantSubjects))
	}
	for i, call := range calls {
		if call.subject != wantSubjects[i] {
			t.Errorf("request %d went to %s, want %s", i, call.subject, wantSubjects[i])
		}
		checkIdentity(t, call, "u-alice", "alice", s.GetSessionId(), alice)
	}
	for _, name := range []string{"send", "history", "ack", "conversations", "open_direct"} {
		if n := e.metric("parley_gateway_frames_received_total", map[string]string{"type": name}); n < 1 {
			t.Errorf("frames received metric for %s = %v", name, n)
		}
	}
}

// TestMessagingIdentity: whatever a client puts in its request, the
// service learns the sender from the gateway's headers, which name the
// connection's current session.
func TestMessagingIdentity(t *testing.T) {
	e := startGateway(t, nil)
	msg := startStandInMessaging(t, e.nc)
	c := dialTCP(t, e)
	s := c.login("alice", noFeed)

	// The SendRequest carries a field unknown to the schema spelling out
	// header lines for bob, and text that looks like headers too.
	var spoof []byte
	spoof = protowire.AppendTag(spoof, 15, protowire.BytesType)
	spoof = protowire.AppendString(spoof, "Parley-User: u-bob\r\nParley-Username: bob\r\n")
	req := &parleyv1.SendRequest{}
	if err := proto.Unmarshal(spoof, req); err != nil {
		t.Fatal(err)
	}
	req.Conversation = "dm.u-bob.u-carol"
	req.Text = "Parley-User: u-bob\r\nParley-Session: s-999"
	req.ClientKey = "k"
	r := c.request(&parleyv1.Frame{Body: &parleyv1.Frame_Send{Send: req}})
	if got := r.GetError(); got.GetCode() != parleyv1.ErrorCode_ERROR_CODE_PERMISSION_DENIED {
		t.Fatalf("alice posting in bob and carol's conversation: %v", r)
	}
	req.Conversation = "room.public"
	r = c.request(&parleyv1.Frame{Body: &parleyv1.Frame_Send{Send: req}})
	if got := r.GetSendReply().GetMessage(); got.GetSenderId() != "u-alice" || got.GetSenderName() != "alice" {
		t.Fatalf("spoofed send stored as %v", r)
	}
	calls := msg.Calls()
	if len(calls) != 2 {
		t.Fatalf("messaging saw %d requests", len(calls))
	}
	for _, call := range calls {
		checkIdentity(t, call, "u-alice", "alice", s.GetSessionId(), c)
	}

	// After logout and a login as bob on the same connection, the headers
	// name bob and the new session.
	if r := c.request(&parleyv1.Frame{Body: &parleyv1.Frame_Logout{Logout: &parleyv1.LogoutRequest{}}}); r.GetOk() == nil {
		t.Fatalf("logout: %v", r)
	}
	if r := c.request(sendFrame("room.public", "hi", "k2")); r.GetError().GetCode() != parleyv1.ErrorCode_ERROR_CODE_UNAUTHENTICATED {
		t.Fatalf("send after logout: %v", r)
	}
	sb := c.login("bob", noFeed)
	if r := c.request(sendFrame("room.public", "hi", "k3")); r.GetSendReply().GetMessage().GetSenderId() != "u-bob" {
		t.Fatalf("send as bob: %v", r)
	}
	calls = msg.Calls()
	if len(calls) != 3 {
		t.Fatalf("messaging saw %d requests, want 3 (none while logged out)", len(calls))
	}
	checkIdentity(t, calls[2], "u-bob", "bob", sb.GetSessionId(), c)
}

// TestMessagingErrors: the service's errors reach the client with their
// code and message; a messaging service that is down is UNAVAILABLE.
func TestMessagingErrors(t *testing.T) {
	e := startGateway(t, nil)
	msg := startStandInMessaging(t, e.nc)
	c := dialTCP(t, e)
	c.login("alice", noFeed)
	tests := []struct {
		name string
		f    *parleyv1.Frame
		code parleyv1.ErrorCode
		msg  string
	}{
		{"too large", sendFrame("room.public", strings.Repeat("x", standInMaxText+1), "k1"),
			parleyv1.ErrorCode_ERROR_CODE_MESSAGE_TOO_LARGE, "the message is above 100 bytes"},
		{"empty", sendFrame("room.public", "", "k2"),
			parleyv1.ErrorCode_ERROR_CODE_EMPTY_MESSAGE, "the message is empty"},
		{"other users' conversation", sendFrame("dm.u-bob.u-carol", "hi", "k3"),
			parleyv1.ErrorCode_ERROR_CODE_PERMISSION_DENIED, "you are not in this conversation"},
		{"history of other users", &parleyv1.Frame{Body: &parleyv1.Frame_History{History: &parleyv1.HistoryRequest{Conversation: "dm.u-bob.u-carol"}}},
			parleyv1.ErrorCode_ERROR_CODE_PERMISSION_DENIED, "you are not in this conversation"},
		{"ack ahead", &parleyv1.Frame{Body: &parleyv1.Frame_Ack{Ack: &parleyv1.AckRequest{Conversation: "room.public", Seq: 7}}},
			parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "seq 7 is above the last message 0"},
		{"unknown user", &parleyv1.Frame{Body: &parleyv1.Frame_OpenDirect{OpenDirect: &parleyv1.OpenDirectRequest{Username: "nobody"}}},
			parleyv1.ErrorCode_ERROR_CODE_NOT_FOUND, "no user named nobody"},
	}
	for _, tt := range tests {
		r := c.request(tt.f)
		got := r.GetError()
		if got.GetCode() != tt.code || got.GetMessage() != tt.msg || got.GetFatal() {
			t.Errorf("%s: got %v %q fatal=%v, want %v %q", tt.name, got.GetCode(), got.GetMessage(), got.GetFatal(), tt.code, tt.msg)
		}
	}
	// Errors do not end the session.
	if r := c.request(sendFrame("room.public", "still here", "k4")); r.GetSendReply() == nil {
		t.Fatalf("send after errors: %v", r)
	}

	msg.stop()
	if err := e.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	for _, req := range messagingRequests() {
		if r := c.request(req.f); r.GetError().GetCode() != parleyv1.ErrorCode_ERROR_CODE_UNAVAILABLE {
			t.Errorf("%s with messaging down: %v", req.name, r)
		}
	}
}

// TestMessagingUnauthenticated: without a session every messaging request
// is refused and nothing reaches the service; server-only bodies are not
// requests.
func TestMessagingUnauthenticated(t *testing.T) {
	e := startGateway(t, nil)
	msg := startStandInMessaging(t, e.nc)
	c := dialTCP(t, e)
	c.hello()
	for _, req := range messagingRequests() {
		r := c.request(req.f)
		if got := r.GetError(); got.GetCode() != parleyv1.ErrorCode_ERROR_CODE_UNAUTHENTICATED || got.GetFatal() {
			t.Errorf("%s before login: %v", req.name, r)
		}
	}
	// A request needs a request_id, with or without a session.
	c.send(sendFrame("room.public", "hi", "k"))
	if f := c.expectError(parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, false); f.GetRequestId() != 0 {
		t.Errorf("request_id = %d", f.GetRequestId())
	}
	serverOnly := []*parleyv1.Frame{
		{Body: &parleyv1.Frame_SendReply{SendReply: &parleyv1.SendReply{}}},
		{Body: &parleyv1.Frame_HistoryReply{HistoryReply: &parleyv1.HistoryReply{}}},
		{Body: &parleyv1.Frame_ConversationsReply{ConversationsReply: &parleyv1.ConversationsReply{}}},
		{Body: &parleyv1.Frame_Conversation{Conversation: &parleyv1.Conversation{}}},
		{Body: &parleyv1.Frame_MembersReply{MembersReply: &parleyv1.MembersReply{}}},
		{Body: &parleyv1.Frame_Message{Message: &parleyv1.MessageEvent{}}},
	}
	c.login("alice", noFeed)
	for _, f := range serverOnly {
		if r := c.request(f); r.GetError().GetCode() != parleyv1.ErrorCode_ERROR_CODE_UNKNOWN_REQUEST {
			t.Errorf("%T from a client: %v", f.GetBody(), r)
		}
	}
	if calls := msg.Calls(); len(calls) != 0 {
		t.Errorf("messaging saw %d requests from clients that were refused", len(calls))
	}
}

// settle returns once the gateway's subscription to the session's user
// subjects is in place: the Session reply can precede it, but a Who
// request travels on the gateway's NATS connection after it, so once Who
// is answered the NATS server has the subscription.
func (c *client) settle() {
	c.t.Helper()
	if r := c.request(&parleyv1.Frame{Body: &parleyv1.Frame_Who{Who: &parleyv1.WhoRequest{}}}); r.GetWhoReply() == nil {
		c.t.Fatalf("who: %v", r)
	}
}

// loggedIn is a TCP client logged in as username whose user subjects the
// gateway has subscribed (settle).
func loggedIn(t *testing.T, e *env, username string, opts *parleyv1.ClientOptions) *client {
	t.Helper()
	c := dialTCP(t, e)
	c.login(username, opts)
	c.settle()
	return c
}

// publishEvent publishes a MessageEvent as the messaging service does.
func (e *env) publishEvent(subj string, m *parleyv1.Message) {
	e.t.Helper()
	b, err := proto.Marshal(&parleyv1.MessageEvent{Message: m})
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

// message waits for the next MessageEvent frame, which must be an event
// (request_id 0).
func (c *client) message() *parleyv1.Message {
	c.t.Helper()
	f := c.waitFor("message event", func(f *parleyv1.Frame) bool { return f.GetMessage() != nil })
	if f.GetRequestId() != 0 {
		c.t.Fatalf("message event with request_id %d", f.GetRequestId())
	}
	return f.GetMessage().GetMessage()
}

func (c *client) expectMessage(who string, want *parleyv1.Message) {
	c.t.Helper()
	if got := c.message(); !proto.Equal(got, want) {
		c.t.Fatalf("%s got message %v, want %v", who, got, want)
	}
}

// TestUserMessages: a MessageEvent published on a user's subject reaches
// every connection of that user on the gateway, whatever its transport,
// and no other user's.
func TestUserMessages(t *testing.T) {
	e := startGateway(t, nil)
	alice1 := dialTCP(t, e)
	alice1.login("alice", noFeed)
	// Over WebSocket, with the presence feed: events interleave with it.
	alice2 := dialWS(t, "ws://"+e.srv.HTTPAddr().String()+server.WebSocketPath, nil)
	alice2.login("alice", nil)
	bob := dialTCP(t, e)
	bob.login("bob", noFeed)
	for _, c := range []*client{alice1, alice2, bob} {
		c.settle()
	}

	dm := &parleyv1.Message{Conversation: "dm.u-alice.u-carol", Seq: 1, Id: 10, SenderId: "u-carol", SenderName: "carol", Text: "for alice\n只给你 🔒", SentAtUnixMs: 1}
	e.publishEvent(subject.UserMessages("u-alice"), dm)
	alice1.expectMessage("alice1", dm)
	alice2.expectMessage("alice2", dm)

	// A malformed event is dropped; the next one still arrives.
	if err := e.nc.Publish(subject.UserMessages("u-bob"), []byte{0xff, 0xff}); err != nil {
		t.Fatal(err)
	}
	// Published after alice's on the same connection, so the gateway
	// handles it later: if bob had been given alice's, it would come first.
	marker := &parleyv1.Message{Conversation: "dm.u-bob.u-carol", Seq: 1, Id: 11, SenderId: "u-carol", SenderName: "carol", Text: "for bob"}
	e.publishEvent(subject.UserMessages("u-bob"), marker)
	bob.expectMessage("bob", marker)
	second := &parleyv1.Message{Conversation: "dm.u-alice.u-carol", Seq: 2, Id: 12, SenderId: "u-carol", SenderName: "carol", Text: "again"}
	e.publishEvent(subject.UserMessages("u-alice"), second)
	alice1.expectMessage("alice1", second)
	alice2.expectMessage("alice2", second)

	// A user's connections that logged out get nothing more.
	if r := alice1.request(&parleyv1.Frame{Body: &parleyv1.Frame_Logout{Logout: &parleyv1.LogoutRequest{}}}); r.GetOk() == nil {
		t.Fatalf("logout: %v", r)
	}
	third := &parleyv1.Message{Conversation: "dm.u-alice.u-carol", Seq: 3, Id: 13, SenderId: "u-carol", SenderName: "carol", Text: "third"}
	e.publishEvent(subject.UserMessages("u-alice"), third)
	alice2.expectMessage("alice2", third)
	alice1.login("bob", noFeed)
	alice1.settle()
	marker2 := &parleyv1.Message{Conversation: "dm.u-bob.u-carol", Seq: 2, Id: 14, SenderId: "u-carol", SenderName: "carol", Text: "for bob again"}
	e.publishEvent(subject.UserMessages("u-bob"), marker2)
	alice1.expectMessage("alice1 (now bob)", marker2)
	bob.expectMessage("bob", marker2)
}

// TestRoomMessages: a room message reaches every authenticated connection
// on the gateway and none without a session; no MessageEvent comes before
// a connection's Session reply.
func TestRoomMessages(t *testing.T) {
	e := startGateway(t, nil)
	alice := dialTCP(t, e)
	alice.login("alice", noFeed)
	bob := dialTCP(t, e)
	bob.login("bob", nil)
	anon := dialTCP(t, e)
	anon.hello()
	leaver := dialTCP(t, e)
	leaver.login("carol", noFeed)
	if r := leaver.request(&parleyv1.Frame{Body: &parleyv1.Frame_Logout{Logout: &parleyv1.LogoutRequest{}}}); r.GetOk() == nil {
		t.Fatalf("logout: %v", r)
	}

	room := func(seq uint64) *parleyv1.Message {
		return &parleyv1.Message{Conversation: "room.public", Seq: seq, Id: 100 + seq, SenderId: "u-alice", SenderName: "alice", Text: "hello room"}
	}
	e.publishEvent(subject.RoomMessages("public"), room(1))
	alice.expectMessage("alice", room(1))
	bob.expectMessage("bob", room(1))

	// The two without a session log in; the next room message is the
	// first one they get.
	anon.login("dave", noFeed)
	leaver.login("carol", noFeed)
	e.publishEvent(subject.RoomMessages("public"), room(2))
	for name, c := range map[string]*client{"alice": alice, "bob": bob, "anon": anon, "leaver": leaver} {
		c.expectMessage(name, room(2))
	}

	// Logins while room messages flow: each client's Session reply comes
	// before any message event.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for seq := uint64(3); ; seq++ {
			select {
			case <-stop:
				return
			default:
			}
			b, _ := proto.Marshal(&parleyv1.MessageEvent{Message: room(seq)})
			_ = e.nc.Publish(subject.RoomMessages("public"), b)
			if seq%10 == 0 {
				time.Sleep(time.Millisecond)
			}
		}
	}()
	for i := range 5 {
		c := dialTCP(t, e)
		c.login("late"+string(rune('a'+i)), noFeed) // stashes what came before the Session reply
		for _, f := range c.stash {
			if f.GetMessage() != nil {
				t.Errorf("late%c: message event before the Session reply", 'a'+i)
			}
		}
		c.message() // and events come after it
	}
	close(stop)
	wg.Wait()
}

// TestRoomBatching: room messages that come faster than -room-batch reach
// every client (TCP and WebSocket) whole and in order, in fewer writes; the
// first message after a quiet period is written at once; -room-batch 0
// writes each message alone.
func TestRoomBatching(t *testing.T) {
	room := func(seq uint64) *parleyv1.Message {
		return &parleyv1.Message{Conversation: "room.public", Seq: seq, Id: 100 + seq, SenderId: "u-alice", SenderName: "alice", Text: "burst " + strings.Repeat("x", int(seq))}
	}
	burst := func(e *env, from, to uint64) {
		for seq := from; seq <= to; seq++ {
			b, _ := proto.Marshal(&parleyv1.MessageEvent{Message: room(seq)})
			if err := e.nc.Publish(subject.RoomMessages("public"), b); err != nil {
				t.Fatal(err)
			}
		}
		if err := e.nc.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		window time.Duration
		// batches the 1 + 19 + 1 messages below may take, at most and at
		// least
		most, least float64
	}{
		// 1: the first at once; 2: the burst of 19 (published within
		// microseconds) in one batch at the window's end; 3: one more
		// after the window, at once.
		{window: time.Second, most: 3, least: 3},
		{window: 0, most: 21, least: 21},
	} {
		t.Run(fmt.Sprintf("window=%v", tc.window), func(t *testing.T) {
			e := startGateway(t, func(c *server.Config) { c.RoomBatch = tc.window })
			tcp := dialTCP(t, e)
			tcp.login("alice", noFeed)
			ws := dialWS(t, "ws://"+e.srv.HTTPAddr().String()+server.WebSocketPath, nil)
			ws.login("bob", noFeed)
			clients := map[string]*client{"tcp": tcp, "ws": ws}

			burst(e, 1, 1)
			for name, c := range clients {
				c.expectMessage(name, room(1))
			}
			burst(e, 2, 20)
			for name, c := range clients {
				for seq := uint64(2); seq <= 20; seq++ {
					c.expectMessage(name, room(seq))
				}
			}
			time.Sleep(tc.window + 50*time.Millisecond)
			burst(e, 21, 21)
			for name, c := range clients {
				c.expectMessage(name, room(21))
			}
			if n := e.metric("parley_gateway_room_messages_total", nil); n != 21 {
				t.Errorf("room messages = %v, want 21", n)
			}
			if n := e.metric("parley_gateway_room_batches_total", nil); n < tc.least || n > tc.most {
				t.Errorf("room batches = %v, want %v to %v", n, tc.least, tc.most)
			}
		})
	}
}
