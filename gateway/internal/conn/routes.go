package conn

import (
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/parleychat/parley/libs/subject"
	"github.com/parleychat/parley/protocol/parleyv1"
)

// routes is every request a client may send: the gateway's allow-list and
// its dispatch in one table. dispatch looks a frame's body member up here
// and nowhere else: a body not listed is UNKNOWN_REQUEST, access says
// whether it needs a session, subject where it goes, reply what the client
// gets back. docs/protocol.md §4 is the same table for clients
// (TestRoutesMatchProtocol keeps the two equal both ways).
//
// A request without a handle is forwarded (forward): the body as the
// client sent it, unknown fields included, so a field a newer client and
// service know passes an older gateway; who asks travels only in the
// headers (identity). The service owns every rule (membership, text
// limits, idempotency, rates); the gateway adds who asks and maps the
// reply. Requests of §15 (messages), §16 (groups) and §17 (friends,
// blocking, typing: messaging publishes the TypingEvent, the gateway keeps
// no typing state) go to the messaging service, those of §18 (files) to the
// file service; the file bytes themselves travel over HTTP
// (gateway/internal/files). Those of §19 (calls) go to the media-relay;
// place_call and join_call also install the participant's media stream
// here (calls.go). Those of §20 (direct sessions) go to auth (device
// keys) and to the rendezvous; p2p_open, p2p_answer and p2p_update also
// attach the session's relay to the connection, p2p_close detaches it
// (p2p.go). A media frame is no request: dispatch hands it to the media
// plane; a p2p_relay frame, likewise, to the relay.
var routes = []route{
	{request: "register", reply: "session", access: opensSession, subject: subject.AuthRegister, handle: (*Conn).authenticate},
	{request: "login", reply: "session", access: opensSession, subject: subject.AuthLogin, handle: (*Conn).authenticate},
	{request: "resume", reply: "session", access: opensSession, subject: subject.AuthResume, handle: (*Conn).authenticate},
	{request: "logout", reply: "ok", subject: subject.AuthLogout, handle: (*Conn).logout},
	{request: "who", reply: "who_reply", subject: subject.PresenceList, large: true, handle: (*Conn).who},

	{request: "send", reply: "send_reply", subject: subject.MsgSend, tooLarge: parleyv1.ErrorCode_ERROR_CODE_MESSAGE_TOO_LARGE, ownEvent: true},
	{request: "history", reply: "history_reply", subject: subject.MsgHistory, large: true},
	{request: "ack", reply: "ok", subject: subject.MsgAck},
	{request: "conversations", reply: "conversations_reply", subject: subject.MsgConversations, large: true},
	{request: "open_direct", reply: "conversation", subject: subject.MsgOpenDirect},

	{request: "create_group", reply: "conversation", subject: subject.MsgCreateGroup},
	{request: "invite", reply: "members_reply", subject: subject.MsgInvite, large: true},
	{request: "join_group", reply: "conversation", subject: subject.MsgJoinGroup},
	{request: "leave_group", reply: "ok", subject: subject.MsgLeaveGroup},
	{request: "remove_member", reply: "ok", subject: subject.MsgRemoveMember},
	{request: "rename_group", reply: "conversation", subject: subject.MsgRenameGroup},
	{request: "members", reply: "members_reply", subject: subject.MsgMembers, large: true},

	{request: "add_friend", reply: "ok", subject: subject.MsgAddFriend},
	{request: "answer_friend", reply: "ok", subject: subject.MsgAnswerFriend},
	{request: "remove_friend", reply: "ok", subject: subject.MsgRemoveFriend},
	{request: "friends", reply: "friends_reply", subject: subject.MsgFriends, large: true},
	{request: "block", reply: "ok", subject: subject.MsgBlock},
	{request: "unblock", reply: "ok", subject: subject.MsgUnblock},
	{request: "typing", reply: "ok", subject: subject.MsgTyping},

	{request: "offer_file", reply: "file_offer", subject: subject.FileOffer},
	{request: "answer_file", reply: "ok", subject: subject.FileAnswer},
	{request: "file_download", reply: "file_download_reply", subject: subject.FileDownload},
	{request: "files", reply: "files_reply", subject: subject.FileList, large: true},

	{request: "place_call", reply: "call_joined", subject: subject.CallPlace, handle: (*Conn).joinCall},
	{request: "join_call", reply: "call_joined", subject: subject.CallJoin, handle: (*Conn).joinCall},
	{request: "reject_call", reply: "ok", subject: subject.CallReject},
	{request: "leave_call", reply: "ok", subject: subject.CallLeave, handle: (*Conn).leaveCall},
	{request: "mute_call", reply: "ok", subject: subject.CallMute},

	{request: "register_device", reply: "device_keys_reply", subject: subject.AuthDeviceRegister},
	{request: "device_keys", reply: "device_keys_reply", subject: subject.AuthDeviceKeys},
	{request: "p2p_open", reply: "p2p_session", subject: subject.P2POpen, handle: (*Conn).p2pSession},
	{request: "p2p_answer", reply: "p2p_session", subject: subject.P2PAnswer, handle: (*Conn).p2pSession},
	{request: "p2p_update", reply: "p2p_session", subject: subject.P2PUpdate, handle: (*Conn).p2pSession},
	{request: "p2p_close", reply: "ok", subject: subject.P2PClose, handle: (*Conn).p2pClose},
}

// route is how the gateway serves one request.
type route struct {
	request protoreflect.Name // the request's Frame body member ("login")
	reply   protoreflect.Name // the reply's Frame body member ("session")
	access  access
	subject string // the NATS subject the request goes to
	// large: the reply may be large (a page, a list); it waits for room
	// in the send queue (sendWait) instead of counting as overflow.
	large bool
	// tooLarge is the code for a request too large for one NATS message
	// (bus.go); 0: INVALID_ARGUMENT.
	tooLarge parleyv1.ErrorCode
	// ownEvent: the request stores a message of the sender's, named by its
	// client_key; the message's event to this connection waits for the
	// reply and goes out in its write (outbox.hold).
	ownEvent bool
	// handle serves request rid, req being its body; nil: forward. It
	// returns the reply's body for dispatch to send, or an error for the
	// client (nil, nil: it answered itself). s is the connection's
	// session, nil for the requests that open one.
	handle func(c *Conn, r *route, rid uint32, req proto.Message, s *session) (proto.Message, error)

	replyField protoreflect.FieldDescriptor // reply's field in Frame (indexRoutes)
	replyType  protoreflect.MessageType     // reply's message type (indexRoutes)
}

// access is what a request needs of the connection's session.
type access uint8

const (
	// needsSession: without a session the request is UNAUTHENTICATED.
	needsSession access = iota
	// opensSession: Register, Login and Resume, the only requests allowed
	// without a session; with one they are ALREADY_AUTHENTICATED.
	opensSession
)

// routeOf finds a request's route by its Frame body member.
var routeOf = indexRoutes(routes)

// indexRoutes resolves each route's reply in the Frame schema and indexes
// the routes by request. A name that is not a Frame body member leaves the
// route's reply unresolved; TestRoutes fails on it.
func indexRoutes(rs []route) map[protoreflect.Name]*route {
	frame := new(parleyv1.Frame).ProtoReflect()
	fields := frame.Descriptor().Fields()
	m := make(map[protoreflect.Name]*route, len(rs))
	for i := range rs {
		r := &rs[i]
		if fd := fields.ByName(r.reply); fd != nil && fd.Message() != nil {
			r.replyField = fd
			r.replyType = frame.NewField(fd).Message().Type()
		}
		m[r.request] = r
	}
	return m
}

// tooLargeCode is the code for a request of r too large for the bus.
func (r *route) tooLargeCode() parleyv1.ErrorCode {
	if r.tooLarge != 0 {
		return r.tooLarge
	}
	return parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT
}

// newReply returns an empty reply body of r's type.
func (r *route) newReply() proto.Message { return r.replyType.New().Interface() }

// frame wraps body, the reply to request rid, in a Frame.
func (r *route) frame(rid uint32, body proto.Message) *parleyv1.Frame {
	f := &parleyv1.Frame{RequestId: rid}
	f.ProtoReflect().Set(r.replyField, protoreflect.ValueOfMessage(body.ProtoReflect()))
	return f
}
