package msgsvc

import (
	"context"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"

	"github.com/parleychat/parley/libs/subject"
	"github.com/parleychat/parley/protocol/convid"
	"github.com/parleychat/parley/protocol/errcode"
	"github.com/parleychat/parley/protocol/parleyv1"
)

// Typing indicators (docs/protocol.md §17). The gateway forwards a
// client's TypingRequest on subject.MsgTyping with the session's identity
// headers; the reply is empty (Ok). Nothing is stored.
//
// Rates are per user, whatever the number of the user's connections
// (and per replica, like every limit here):
//   - one TypingEvent per typingInterval per conversation; requests in
//     between are answered Ok and dropped (clients repeat every 3 s while
//     the user types, so nothing is lost);
//   - Config.TypingLimit events per minute over all conversations (burst
//     Config.TypingBurst); beyond, RATE_LIMITED.
//
// A recipient who blocked the typist gets nothing; the typist is answered
// Ok as usual (the block shows when they send: BLOCKED).

var errTypingNotPrivate = errcode.New(parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "typing indicators are for private chats")

// handleTyping publishes a TypingEvent to the other member of a private
// conversation of the caller.
func (s *Service) handleTyping(ctx context.Context, m *nats.Msg) (proto.Message, error) {
	me, err := identityOf(m)
	if err != nil {
		return nil, err
	}
	var req parleyv1.TypingRequest
	if err := proto.Unmarshal(m.Data, &req); err != nil {
		return nil, errMalformed
	}
	if convid.KindOf(req.Conversation) != convid.KindDirect {
		return nil, errTypingNotPrivate // the room, groups and anything else
	}
	conv, err := resolve(req.Conversation, me.id)
	if err != nil {
		return nil, err
	}
	key := me.id + " " + conv.id
	if ok, _ := s.limits.typingConv.Take(key); !ok {
		return nil, nil // the peer was told less than typingInterval ago
	}
	if err := s.take(limitTyping, me.id, 1); err != nil {
		s.limits.typingConv.Refund(key) // nothing went out
		return nil, err
	}
	if blocked, err := s.blockedBy(ctx, conv.peer, me.id); err != nil {
		return nil, friendErr(err)
	} else if blocked {
		return nil, nil
	}
	s.publish(subject.UserTyping(conv.peer), &parleyv1.TypingEvent{Conversation: conv.id, UserId: me.id, Username: me.name})
	return nil, nil
}
