package msgsvc

import (
	"context"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"

	"github.com/parleychat/parley/libs/proto/internalv1"
	"github.com/parleychat/parley/protocol/errcode"
	"github.com/parleychat/parley/protocol/parleyv1"
	"github.com/parleychat/parley/services/messaging/internal/store"
)

// Voice calls: the media-relay owns calls; messaging answers who may call
// where and keeps the calls' system messages. Only
// the media-relay sends these requests, with the identity headers of the
// user a request is about; clients cannot reach them (the gateway routes
// client frames to the relay, never here).

// Limits on a call's system message.
const (
	maxCallTextChars = 200
	maxCallIDChars   = 64
)

// Wire errors of MsgCallResolve and MsgPostCall.
var (
	errCallInRoom = errcode.New(parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "calls are for private chats and groups")
	// Answers both a call and a direct session (p2p_open), which resolve
	// their peer the same way.
	errCallYouBlock = errcode.New(parleyv1.ErrorCode_ERROR_CODE_BLOCKED, "you blocked this user: unblock them first")
	errNoCall       = errcode.New(parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "call with a call_id is required")
	errCallID       = errcode.Newf(parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "call_id must be 1 to %d characters", maxCallIDChars)
	errCallText     = errcode.Newf(parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "a call's text is 1 to %d characters of UTF-8, not only white space", maxCallTextChars)
	errCallNoConv   = errcode.New(parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "conversation is required")
)

// handleCallResolve answers whether the user in the identity headers may
// call in a conversation (subject.MsgCallResolve). The conversation or
// to_username is resolved exactly as for a SendRequest (to_username costs
// a lookup; a group needs current membership, else PERMISSION_DENIED); the
// public room is INVALID_ARGUMENT. In a private chat a block either way is
// BLOCKED: a user who blocked the caller takes no calls from them, and a
// caller cannot ring someone they blocked. Nothing is stored.
//
// Reply: the conversation id and kind, member_ids (direct: the caller,
// then the peer; group: its members now, caller included) and, for a
// private chat, the peer's name when known (from to_username, the caller's
// conversation list or friend list; else empty) and peer_is_friend.
func (s *Service) handleCallResolve(ctx context.Context, m *nats.Msg) (proto.Message, error) {
	me, err := identityOf(m)
	if err != nil {
		return nil, err
	}
	var req internalv1.CallResolveRequest
	if err := proto.Unmarshal(m.Data, &req); err != nil {
		return nil, errMalformed
	}
	t, err := s.callTarget(ctx, me, req.Conversation, req.ToUsername)
	if err != nil {
		return nil, err
	}
	reply := &internalv1.CallResolveReply{Conversation: t.id, Kind: t.kind}
	if t.kind == parleyv1.ConversationKind_CONVERSATION_KIND_GROUP {
		reply.MemberIds = t.members
		return reply, nil
	}
	for _, blocker := range [][2]string{{t.peer, me.id}, {me.id, t.peer}} {
		blocked, err := s.blockedBy(ctx, blocker[0], blocker[1])
		switch {
		case err != nil:
			return nil, friendErr(err)
		case blocked && blocker[0] == me.id:
			return nil, errCallYouBlock
		case blocked:
			return nil, errBlocked
		}
	}
	reply.MemberIds = []string{me.id, t.peer}
	reply.PeerName = t.peerName
	if reply.PeerName == "" {
		reply.PeerName = s.peerName(ctx, me.id, t.id, t.peer)
	}
	if reply.PeerIsFriend, err = s.mutualFriends(ctx, me.id, t.peer); err != nil {
		return nil, friendErr(err)
	}
	return reply, nil
}

// mutualFriends reports whether a and b are friends: both users' views of
// the relation say so. The rendezvous lets a client accept a direct
// session at once from a friend (docs/protocol.md §20.2), so a relation
// whose two keys disagree (a replica died between their writes) does not
// count until a change rewrites both.
func (s *Service) mutualFriends(ctx context.Context, a, b string) (bool, error) {
	for _, pair := range [][2]string{{a, b}, {b, a}} {
		f, err := s.store.Friend(ctx, pair[0], pair[1])
		if err != nil || f.State != store.FriendFriend {
			return false, err
		}
	}
	return true, nil
}

// handlePostCall stores a call's system message (subject.MsgPostCall) in
// a private chat or group of the user in the identity headers, as that
// user: Message{system, text, call, client_key}, delivered like every
// message (direct: both users, and listed for both; group: its members
// now). The conversation is checked as for a send by id: a private chat
// of the user's, or a group they are still a member of (a member who left
// since the call is PERMISSION_DENIED); blocks are not checked again: the
// call happened. text is 1-200 characters of UTF-8, not only white space;
// call needs a call_id (1-64 characters). A repeat with the same
// client_key (checkClientKey's rules) stores nothing and answers with the
// first message; the key used before for another call is INVALID_ARGUMENT.
// Call messages' keys are kept apart from the user's own sends.
//
// Reply: the stored parleyv1.Message.
func (s *Service) handlePostCall(ctx context.Context, m *nats.Msg) (proto.Message, error) {
	me, err := identityOf(m)
	if err != nil {
		return nil, err
	}
	var req internalv1.PostCallRequest
	if err := proto.Unmarshal(m.Data, &req); err != nil {
		return nil, errMalformed
	}
	if err := checkClientKey(req.ClientKey); err != nil {
		return nil, err
	}
	if err := checkCallMessage(req.Text, req.Call); err != nil {
		return nil, err
	}
	if req.Conversation == "" {
		return nil, errCallNoConv
	}
	t, err := s.callTarget(ctx, me, req.Conversation, "")
	if err != nil {
		return nil, err
	}
	if t.kind == parleyv1.ConversationKind_CONVERSATION_KIND_DIRECT {
		t.peerName = s.peerName(ctx, me.id, t.id, t.peer)
	}
	msg := &parleyv1.Message{System: true, Text: req.Text, Call: req.Call, ClientKey: req.ClientKey}
	// "call." cannot start a send's id ("<user id>:<key>"; user ids have
	// no dots).
	stored, _, err := s.appendMessage(ctx, me, t, msg, "call."+me.id+":"+req.ClientKey)
	if err != nil {
		return nil, err
	}
	return stored, nil
}

// callTarget is target for a call: the public room is refused.
func (s *Service) callTarget(ctx context.Context, me user, convID, toUsername string) (target, error) {
	t, err := s.target(ctx, me, convID, toUsername)
	if err != nil {
		return target{}, err
	}
	if t.kind != parleyv1.ConversationKind_CONVERSATION_KIND_DIRECT && t.kind != parleyv1.ConversationKind_CONVERSATION_KIND_GROUP {
		return target{}, errCallInRoom
	}
	return t, nil
}

// peerName is the name uid knows peer by in private chat conv: from uid's
// conversation list, else uid's friend list; empty when neither knows it
// or either cannot be read (the name is a courtesy, not a check).
func (s *Service) peerName(ctx context.Context, uid, conv, peer string) string {
	if mb, ok, err := s.store.Member(ctx, uid, conv); err == nil && ok && mb.PeerName != "" {
		return mb.PeerName
	}
	if f, err := s.store.Friend(ctx, uid, peer); err == nil {
		return f.Name
	}
	return ""
}

// checkCallMessage applies the rules on a call's system message (see
// handlePostCall).
func checkCallMessage(text string, call *parleyv1.CallSummary) error {
	switch {
	case !utf8.ValidString(text) || utf8.RuneCountInString(text) > maxCallTextChars ||
		strings.TrimFunc(text, unicode.IsSpace) == "":
		return errCallText
	case call == nil || call.CallId == "":
		return errNoCall
	case utf8.RuneCountInString(call.CallId) > maxCallIDChars:
		return errCallID
	}
	return nil
}
