package conn

import (
	"context"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"

	"github.com/parleychat/parley/libs/identity"
	"github.com/parleychat/parley/libs/proto/internalv1"
	"github.com/parleychat/parley/libs/rpc"
	"github.com/parleychat/parley/libs/subject"
	"github.com/parleychat/parley/protocol/parleyv1"
)

// dispatch handles a frame after the handshake (docs/protocol.md §5-§6,
// §15):
//
//   - Ping: Pong with the same nonce and request_id, at any time.
//   - Pong: ignored (a client may answer a server Ping; it resets the idle
//     timer like any frame).
//   - Hello again: Error HANDSHAKE_REQUIRED (non-fatal).
//   - A request (table below): request_id must be non-zero (else
//     INVALID_ARGUMENT). Register, Login and Resume need no session
//     (ALREADY_AUTHENTICATED if there is one); the others need one
//     (UNAUTHENTICATED).
//   - Any body only the server sends (Welcome, Error, Session, Ok,
//     WhoReply, SendReply, HistoryReply, ConversationsReply, Conversation,
//     PresenceSnapshot, PresenceChange, SessionEnded, MessageEvent):
//     UNKNOWN_REQUEST.
//
// Requests, where they go and what the client gets back:
//
//	request        sent to                       reply
//	register       subject.AuthRegister          session
//	login          subject.AuthLogin             session
//	resume         subject.AuthResume            session
//	logout         subject.AuthLogout            ok
//	who            subject.PresenceList (Feed)   who_reply
//	send           subject.MsgSend               send_reply
//	history        subject.MsgHistory            history_reply
//	ack            subject.MsgAck                ok
//	conversations  subject.MsgConversations      conversations_reply
//	open_direct    subject.MsgOpenDirect         conversation
//	create_group   subject.MsgCreateGroup        conversation
//	invite         subject.MsgInvite             members_reply
//	join_group     subject.MsgJoinGroup          conversation
//	leave_group    subject.MsgLeaveGroup         ok
//	remove_member  subject.MsgRemoveMember       ok
//	rename_group   subject.MsgRenameGroup        conversation
//	members        subject.MsgMembers            members_reply
//	add_friend     subject.MsgAddFriend          ok
//	answer_friend  subject.MsgAnswerFriend       ok
//	remove_friend  subject.MsgRemoveFriend       ok
//	friends        subject.MsgFriends            friends_reply
//	block          subject.MsgBlock              ok
//	unblock        subject.MsgUnblock            ok
//	typing         subject.MsgTyping             ok
//	offer_file     subject.FileOffer             file_offer
//	answer_file    subject.FileAnswer            ok
//	file_download  subject.FileDownload          file_download_reply
//	files          subject.FileList              files_reply
//
// A service's error reply reaches the client as an Error with the same
// code, message and retry_after_ms (no responders: UNAVAILABLE; no answer
// within -request-timeout: TIMEOUT).
//
// Requests on one connection are handled one at a time, in order (a slow
// one, a long history read say, delays the next; replies never overtake).
func (c *Conn) dispatch(f *parleyv1.Frame) {
	rid := f.GetRequestId()
	switch b := f.GetBody().(type) {
	case *parleyv1.Frame_Ping:
		c.send(&parleyv1.Frame{RequestId: rid, Body: &parleyv1.Frame_Pong{Pong: &parleyv1.Pong{Nonce: b.Ping.GetNonce()}}})
		return
	case *parleyv1.Frame_Pong:
		return
	case *parleyv1.Frame_Hello:
		c.sendError(rid, parleyv1.ErrorCode_ERROR_CODE_HANDSHAKE_REQUIRED, "Hello was already received on this connection")
		return
	case *parleyv1.Frame_Register, *parleyv1.Frame_Login, *parleyv1.Frame_Resume,
		*parleyv1.Frame_Logout, *parleyv1.Frame_Who,
		*parleyv1.Frame_Send, *parleyv1.Frame_History, *parleyv1.Frame_Ack,
		*parleyv1.Frame_Conversations, *parleyv1.Frame_OpenDirect,
		*parleyv1.Frame_CreateGroup, *parleyv1.Frame_Invite, *parleyv1.Frame_JoinGroup,
		*parleyv1.Frame_LeaveGroup, *parleyv1.Frame_RemoveMember, *parleyv1.Frame_RenameGroup,
		*parleyv1.Frame_Members,
		*parleyv1.Frame_AddFriend, *parleyv1.Frame_AnswerFriend, *parleyv1.Frame_RemoveFriend,
		*parleyv1.Frame_Friends, *parleyv1.Frame_Block, *parleyv1.Frame_Unblock, *parleyv1.Frame_Typing,
		*parleyv1.Frame_OfferFile, *parleyv1.Frame_AnswerFile, *parleyv1.Frame_FileDownload, *parleyv1.Frame_Files:
	default:
		c.sendError(rid, parleyv1.ErrorCode_ERROR_CODE_UNKNOWN_REQUEST, bodyName(f)+" is not a request")
		return
	}
	if rid == 0 {
		c.sendError(0, parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "request_id must be non-zero on a request")
		return
	}
	name := bodyName(f)
	start := time.Now()
	defer func() { c.h.Metrics.RequestDuration.WithLabelValues(name).Observe(time.Since(start).Seconds()) }()
	switch b := f.GetBody().(type) {
	case *parleyv1.Frame_Register:
		c.authenticate(rid, subject.AuthRegister, b.Register, b.Register.GetOptions())
	case *parleyv1.Frame_Login:
		c.authenticate(rid, subject.AuthLogin, b.Login, b.Login.GetOptions())
	case *parleyv1.Frame_Resume:
		c.authenticate(rid, subject.AuthResume, b.Resume, b.Resume.GetOptions())
	case *parleyv1.Frame_Logout:
		c.logout(rid)
	case *parleyv1.Frame_Who:
		c.who(rid, b.Who)
	case *parleyv1.Frame_Send:
		c.sendMessage(rid, b.Send)
	case *parleyv1.Frame_History:
		c.history(rid, b.History)
	case *parleyv1.Frame_Ack:
		c.toOk(rid, subject.MsgAck, b.Ack)
	case *parleyv1.Frame_Conversations:
		c.conversations(rid, b.Conversations)
	case *parleyv1.Frame_OpenDirect:
		c.toConversation(rid, subject.MsgOpenDirect, b.OpenDirect)
	case *parleyv1.Frame_CreateGroup:
		c.toConversation(rid, subject.MsgCreateGroup, b.CreateGroup)
	case *parleyv1.Frame_Invite:
		c.toMembers(rid, subject.MsgInvite, b.Invite)
	case *parleyv1.Frame_JoinGroup:
		c.toConversation(rid, subject.MsgJoinGroup, b.JoinGroup)
	case *parleyv1.Frame_LeaveGroup:
		c.toOk(rid, subject.MsgLeaveGroup, b.LeaveGroup)
	case *parleyv1.Frame_RemoveMember:
		c.toOk(rid, subject.MsgRemoveMember, b.RemoveMember)
	case *parleyv1.Frame_RenameGroup:
		c.toConversation(rid, subject.MsgRenameGroup, b.RenameGroup)
	case *parleyv1.Frame_Members:
		c.toMembers(rid, subject.MsgMembers, b.Members)
	case *parleyv1.Frame_AddFriend:
		c.toOk(rid, subject.MsgAddFriend, b.AddFriend)
	case *parleyv1.Frame_AnswerFriend:
		c.toOk(rid, subject.MsgAnswerFriend, b.AnswerFriend)
	case *parleyv1.Frame_RemoveFriend:
		c.toOk(rid, subject.MsgRemoveFriend, b.RemoveFriend)
	case *parleyv1.Frame_Friends:
		c.toFriends(rid, b.Friends)
	case *parleyv1.Frame_Block:
		c.toOk(rid, subject.MsgBlock, b.Block)
	case *parleyv1.Frame_Unblock:
		c.toOk(rid, subject.MsgUnblock, b.Unblock)
	case *parleyv1.Frame_Typing:
		c.toOk(rid, subject.MsgTyping, b.Typing)
	case *parleyv1.Frame_OfferFile:
		c.offerFile(rid, b.OfferFile)
	case *parleyv1.Frame_AnswerFile:
		c.toOk(rid, subject.FileAnswer, b.AnswerFile)
	case *parleyv1.Frame_FileDownload:
		c.fileDownload(rid, b.FileDownload)
	case *parleyv1.Frame_Files:
		c.files(rid, b.Files)
	}
}

func (c *Conn) requestContext() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), c.h.Limits.RequestTimeout)
}

// authenticate forwards a Register, Login or Resume request, unchanged, to
// the auth service on subj with the client's address, this gateway's id
// and this connection's id in headers (a SessionKick that auth publishes
// for a takeover names the connection that asked, so it is spared). An error reply reaches the client with the same code, message
// and retry_after_ms. On success the session starts (startSession).
func (c *Conn) authenticate(rid uint32, subj string, req proto.Message, opts *parleyv1.ClientOptions) {
	if c.session() != nil {
		c.sendError(rid, parleyv1.ErrorCode_ERROR_CODE_ALREADY_AUTHENTICATED, "this connection already has a session; log out first")
		return
	}
	hdr := nats.Header{}
	c.origin().Set(hdr)
	ctx, cancel := c.requestContext()
	defer cancel()
	reply := new(internalv1.AuthReply)
	if err := c.busRequest(ctx, subj, hdr, req, reply, parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT); err != nil {
		c.sendErr(rid, err)
		return
	}
	s := reply.GetSession()
	if s.GetUserId() == "" || s.GetSessionId() == "" {
		c.log().Error("auth reply without a session", "subject", subj)
		c.sendError(rid, parleyv1.ErrorCode_ERROR_CODE_INTERNAL, "internal server error")
		return
	}
	c.startSession(rid, s, opts)
}

// startSession makes the connection authenticated, in this order:
//
//  1. PresenceConnect registers it with presence. If presence does not
//     answer the login still succeeds: the next heartbeat sees the count
//     differ and the resync repairs presence's view.
//  2. The registry subscribes to the user's subjects (once per user on this
//     gateway), so a SessionKick for this session can reach it.
//  3. The session is set on the connection and the Session reply queued in
//     one step under the send queue's lock: message events (Deliver) and the
//     messaging requests look at the session, so no MessageEvent is queued
//     before the Session reply, and none published after the client read
//     its Session is missed (the reply could reach the client before the
//     session was set, when these were two steps).
//  4. Unless options.skip_presence_feed, the PresenceSnapshot frames, then
//     PresenceChange events (see presence.Feed.Join for the ordering).
func (c *Conn) startSession(rid uint32, s *parleyv1.Session, opts *parleyv1.ClientOptions) {
	rec := &internalv1.Conn{
		GatewayId: c.h.GatewayID,
		ConnId:    c.id,
		UserId:    s.GetUserId(),
		Username:  s.GetUsername(),
		SessionId: s.GetSessionId(),
	}
	ctx, cancel := c.requestContext()
	defer cancel()
	if err := rpc.Request(ctx, c.h.NC, subject.PresenceConnect, nil, &internalv1.PresenceConnect{Conn: rec}, nil); err != nil {
		c.log().Warn("presence connect failed; the heartbeat resync will repair it", "user", rec.UserId, "err", err)
	}
	if c.h.Registry.Authenticate(c, rec) {
		// A takeover kick or a direct message published right after the
		// client sees its Session must find the subscription in place.
		if err := c.h.NC.FlushTimeout(c.h.Limits.RequestTimeout); err != nil {
			c.log().Warn("nats flush after subscribing user subjects", "user", rec.UserId, "err", err)
		}
	}
	sess := &session{rec: rec, feed: !opts.GetSkipPresenceFeed()}
	c.log().Info("session started", "user", rec.UserId, "username", rec.Username, "session", rec.SessionId,
		"device", opts.GetDevice(), "resumed", s.GetResumed())
	c.out.pushFrameAfter(&parleyv1.Frame{RequestId: rid, Body: &parleyv1.Frame_Session{Session: s}},
		func() { c.setSession(sess) })
	c.sessionChanged(true)
	if sess.feed {
		c.h.Feed.Join(context.Background(), c)
	}
}

// logout ends the session: the auth service revokes it (identity from this
// connection's session in the headers, see identity; never from the
// client), then presence forgets the connection and Ok is sent. The
// connection stays open, unauthenticated. Auth publishes a SessionKick
// for the session naming this connection (HeaderConnID): every other
// connection holding it, on any gateway, gets SessionEnded and closes. If
// auth fails, the error is sent and the session continues.
func (c *Conn) logout(rid uint32) {
	s := c.session()
	if s == nil {
		c.sendError(rid, parleyv1.ErrorCode_ERROR_CODE_UNAUTHENTICATED, "no session on this connection")
		return
	}
	ctx, cancel := c.requestContext()
	defer cancel()
	// A fresh, empty body: nothing the client put in its frame travels on.
	if err := rpc.Request(ctx, c.h.NC, subject.AuthLogout, c.identity(s), &parleyv1.LogoutRequest{}, nil); err != nil {
		c.sendErr(rid, err)
		return
	}
	c.h.Feed.Leave(c)
	c.setSession(nil)
	c.sessionChanged(false)
	if rec := c.h.Registry.Deauthenticate(c); rec != nil {
		c.presenceDisconnect(rec)
	}
	c.log().Info("logged out", "user", s.rec.GetUserId(), "session", s.rec.GetSessionId())
	c.send(&parleyv1.Frame{RequestId: rid, Body: &parleyv1.Frame_Ok{Ok: &parleyv1.Ok{}}})
}

// who answers a WhoRequest with one page of presence's online list: the
// client's cursor and limit go to presence as they are (presence applies
// the default and the maximum), the reply carries presence's next cursor.
// The reply may be large, so it waits for room in the send queue like the
// snapshot does (outbox.pushWait).
func (c *Conn) who(rid uint32, req *parleyv1.WhoRequest) {
	if c.session() == nil {
		c.sendError(rid, parleyv1.ErrorCode_ERROR_CODE_UNAUTHENTICATED, "log in or resume first")
		return
	}
	// The cursor is the only field of any size: check it fits the bus.
	if err := c.checkBusSize(subject.PresenceList, nil, &internalv1.PresenceListRequest{Cursor: req.GetCursor(), Limit: req.GetLimit()},
		parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT); err != nil {
		c.sendErr(rid, err)
		return
	}
	ctx, cancel := c.requestContext()
	defer cancel()
	list, err := c.h.Feed.List(ctx, req.GetCursor(), req.GetLimit())
	if err != nil {
		c.sendErr(rid, err)
		return
	}
	c.sendWait(&parleyv1.Frame{RequestId: rid, Body: &parleyv1.Frame_WhoReply{WhoReply: &parleyv1.WhoReply{
		Users:      list.GetUsers(),
		NextCursor: list.GetNextCursor(),
	}}})
}

// identity is the headers that tell a service who asks (libs/identity):
// the session's user, session and display name, the client's address, this
// gateway and this connection. They are built here, fresh, from the
// session auth returned; nothing from the client's frame becomes a header,
// so no request body can claim another identity.
func (c *Conn) identity(s *session) nats.Header {
	return identity.Header(identity.Caller{UserID: s.rec.GetUserId(), SessionID: s.rec.GetSessionId(), Username: s.rec.GetUsername()},
		c.origin())
}

// origin is where this connection's requests come from: the client's
// address, this gateway and this connection.
func (c *Conn) origin() identity.Origin {
	return identity.Origin{RemoteAddr: c.remote, GatewayID: c.h.GatewayID, ConnID: c.id}
}

// bodyName is the frame body's field name in the schema ("login"), for
// metrics and messages.
func bodyName(f *parleyv1.Frame) string {
	if f == nil || f.GetBody() == nil {
		return "none"
	}
	fd := f.ProtoReflect().WhichOneof(f.ProtoReflect().Descriptor().Oneofs().ByName("body"))
	if fd == nil {
		return "none"
	}
	return string(fd.Name())
}
