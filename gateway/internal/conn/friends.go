package conn

import (
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/parleychat/parley/libs/proto/parleyv1"
	"github.com/parleychat/parley/libs/subject"
)

// The friend requests (docs/protocol.md §17) go to the messaging service
// like the group ones (forward): add_friend, answer_friend, remove_friend,
// block, unblock -> Ok; friends -> FriendsReply. Typing indicators are the
// gateway's own: nothing is stored, so no service is asked.

// toFriends forwards a FriendsRequest; reply FriendsReply (one entry per
// relation, so it may be large: it waits for room like history).
func (c *Conn) toFriends(rid uint32, req proto.Message) {
	reply := new(parleyv1.FriendsReply)
	if c.forward(rid, subject.MsgFriends, req, reply) {
		c.sendWait(&parleyv1.Frame{RequestId: rid, Body: &parleyv1.Frame_FriendsReply{FriendsReply: reply}})
	}
}

// typingInterval is the least time between two TypingEvents one
// connection publishes for one conversation; requests in between are
// answered Ok and dropped (clients send one every 3 seconds while typing).
const typingInterval = 2 * time.Second

// maxTypingConvs bounds the conversations one connection is remembered
// typing in at once; beyond it, typing in yet another is dropped until an
// entry expires.
const maxTypingConvs = 8

// typingState is when this connection last published a TypingEvent per
// conversation. Conn.typing is nil unless the user typed within the last
// typingInterval: idle connections carry no typing state.
type typingState map[string]time.Time

// typingRequest publishes a TypingEvent to the other member of a direct
// conversation the caller is in, at most once per typingInterval per
// conversation. Identity comes from the session.
func (c *Conn) typingRequest(rid uint32, req *parleyv1.TypingRequest) {
	s := c.session()
	if s == nil {
		c.sendError(rid, parleyv1.ErrorCode_ERROR_CODE_UNAUTHENTICATED, "log in or resume first")
		return
	}
	conv := req.GetConversation()
	uid := s.rec.GetUserId()
	peer, code, msg := typingPeer(conv, uid)
	if code != parleyv1.ErrorCode_ERROR_CODE_UNSPECIFIED {
		c.sendError(rid, code, msg)
		return
	}
	if c.typingAllowed(conv, time.Now()) {
		data, err := proto.Marshal(&parleyv1.TypingEvent{Conversation: conv, UserId: uid, Username: s.rec.GetUsername()})
		if err == nil {
			err = c.h.NC.Publish(subject.UserTyping(peer), data)
		}
		if err != nil {
			c.log().Warn("typing event not published", "err", err)
		}
	}
	c.send(&parleyv1.Frame{RequestId: rid, Body: &parleyv1.Frame_Ok{Ok: &parleyv1.Ok{}}})
}

// typingPeer checks that conv is a direct conversation "dm.<a>.<b>" with
// uid as a or b and returns the other; otherwise the error to answer:
// INVALID_ARGUMENT for rooms and groups, PERMISSION_DENIED for a direct
// id not naming uid (or malformed: it says nothing about others').
func typingPeer(conv, uid string) (peer string, code parleyv1.ErrorCode, msg string) {
	rest, ok := strings.CutPrefix(conv, "dm.")
	if !ok {
		return "", parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "typing indicators are for private chats"
	}
	a, b, ok := strings.Cut(rest, ".")
	switch {
	case !ok || strings.Contains(b, ".") || a == b || a == "" || b == "" || a > b:
		return "", parleyv1.ErrorCode_ERROR_CODE_PERMISSION_DENIED, "you are not in this conversation"
	case a == uid:
		return b, 0, ""
	case b == uid:
		return a, 0, ""
	}
	return "", parleyv1.ErrorCode_ERROR_CODE_PERMISSION_DENIED, "you are not in this conversation"
}

// typingAllowed reports whether a TypingEvent for conv may go out now and
// records it. It runs on the frame goroutine (requests are handled one at
// a time), which owns c.typing.
func (c *Conn) typingAllowed(conv string, now time.Time) bool {
	c.expireTyping(now)
	if c.typing == nil {
		c.typing = make(typingState, 1)
	}
	if _, ok := c.typing[conv]; ok || len(c.typing) >= maxTypingConvs {
		return false
	}
	c.typing[conv] = now
	return true
}

// expireTyping forgets conversations last published typingInterval ago or
// more, and the whole state when none is left. Called for every request,
// so the state goes away soon after the user stops typing (a client pings
// at least every heartbeat interval).
func (c *Conn) expireTyping(now time.Time) {
	if c.typing == nil {
		return
	}
	for conv, at := range c.typing {
		if now.Sub(at) >= typingInterval {
			delete(c.typing, conv)
		}
	}
	if len(c.typing) == 0 {
		c.typing = nil
	}
}
