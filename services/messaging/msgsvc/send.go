package msgsvc

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"

	"github.com/parleychat/parley/libs/identity"
	"github.com/parleychat/parley/libs/subject"
	"github.com/parleychat/parley/protocol/parleyv1"
	"github.com/parleychat/parley/services/messaging/internal/store"
)

// user is a user as messaging handles one: the sender of a request, a
// peer, whoever caused a change.
type user struct{ id, name string }

// identityOf is the user a request is for, from the gateway's identity
// headers (identity.Read); a request without them is UNAUTHENTICATED.
func identityOf(m *nats.Msg) (user, error) {
	c, err := identity.Read(m.Header)
	if err != nil {
		return user{}, errNoIdentity
	}
	return user{id: c.UserID, name: c.Username}, nil
}

// handleSend stores a message and delivers it. The reply is sent only once
// the message is persisted.
func (s *Service) handleSend(ctx context.Context, m *nats.Msg) (proto.Message, error) {
	me, err := identityOf(m)
	if err != nil {
		return nil, err
	}
	var req parleyv1.SendRequest
	if err := proto.Unmarshal(m.Data, &req); err != nil {
		return nil, errMalformed
	}
	if err := checkClientKey(req.ClientKey); err != nil {
		return nil, err
	}
	if err := checkText(req.Text, s.cfg.MaxMessageChars); err != nil {
		return nil, err
	}
	// Every send counts, a re-send with the same key too: it is answered
	// from the stream and its event published again.
	if err := s.take(limitSend, me.id, 1); err != nil {
		return nil, err
	}
	t, err := s.target(ctx, me, req.Conversation, req.ToUsername)
	if err != nil {
		return nil, err
	}
	stored, dup, err := s.post(ctx, me, t, &parleyv1.Message{Text: req.Text, ClientKey: req.ClientKey})
	if err != nil {
		return nil, err
	}
	return &parleyv1.SendReply{Message: stored, Duplicate: dup}, nil
}

// target is where a message goes, checked against its sender.
type target struct {
	conversation
	peerName string // direct: the other user's name, when known
}

// target resolves a message's destination from a request's conversation
// id or to_username (exactly one of them): to_username is the direct
// conversation with that user (yourself: INVALID_ARGUMENT; unknown:
// NOT_FOUND); an id must be a conversation the sender may post in (see
// resolveConv). Blocking is checked later, by post.
func (s *Service) target(ctx context.Context, me user, convID, toUsername string) (target, error) {
	switch {
	case (convID == "") == (toUsername == ""):
		return target{}, errTarget
	case toUsername != "":
		peer, err := s.lookup(ctx, me, toUsername)
		if err != nil {
			return target{}, err
		}
		if peer.UserId == me.id {
			return target{}, errSelf
		}
		conv, err := direct(me.id, peer.UserId)
		if err != nil {
			return target{}, err
		}
		return target{conversation: conv, peerName: peer.Username}, nil
	default:
		conv, err := s.resolveConv(ctx, convID, me.id)
		if err != nil {
			return target{}, err
		}
		return target{conversation: conv}, nil
	}
}

// post stores msg from me in t and delivers it; the caller fills in only
// the content (text, file) and client_key. It refuses a direct message to a
// user who blocked me (BLOCKED, nothing stored), appends idempotently on
// "<sender id>:<client_key>", publishes the live events (direct: both
// members; group: every member; room: the room subject) and, for a direct
// conversation, lists it for both members. It returns the stored message
// and whether it was a re-post of an earlier one (then the original is
// returned, delivered again, and nothing new is stored). A key already
// used for a different message (another conversation, text or file) is
// INVALID_ARGUMENT. The storing itself is appendMessage's.
func (s *Service) post(ctx context.Context, me user, t target, msg *parleyv1.Message) (*parleyv1.Message, bool, error) {
	if t.kind == parleyv1.ConversationKind_CONVERSATION_KIND_DIRECT {
		// Checked before storing: a blocked sender's message is not kept.
		if blocked, err := s.blockedBy(ctx, t.peer, me.id); err != nil {
			return nil, false, err
		} else if blocked {
			return nil, false, errBlocked
		}
	}
	return s.appendMessage(ctx, me, t, msg, me.id+":"+msg.ClientKey)
}

// appendMessage is post after its checks: it appends msg with
// de-duplication id msgID, delivers it and lists a direct conversation for
// both members.
// A duplicate must match the original's conversation, sender, client_key,
// text, file and call (else INVALID_ARGUMENT); for a call's message the
// call id (with the outcome, which its client_key names) stands for the
// text, so a re-post whose text was worded differently still answers with
// the first message.
func (s *Service) appendMessage(ctx context.Context, me user, t target, msg *parleyv1.Message, msgID string) (*parleyv1.Message, bool, error) {
	conv := t.conversation
	msg.Conversation = conv.id
	msg.SenderId, msg.SenderName = me.id, me.name
	msg.SentAtUnixMs = s.now().UnixMilli()
	// A new message's live event is published from inside Append, in seq
	// order; a duplicate's below.
	res, err := s.store.Append(ctx, msg, msgID, func(m *parleyv1.Message) { s.deliver(conv, m) })
	s.metrics.conflicts.Add(float64(res.Conflicts))
	switch {
	case errors.Is(err, store.ErrBusy):
		return nil, false, errBusy
	case err != nil:
		// JetStream did not confirm (timeout, connection lost, no leader):
		// the message may or may not be stored, and a re-send with the same
		// client_key settles it either way.
		s.log.Warn("message not confirmed", "conversation", conv.id, "user_id", me.id, "err", err)
		return nil, false, errNotStored
	}
	stored := res.Message
	if res.Duplicate {
		s.metrics.duplicates.Inc()
		if !sameMessage(stored, msg) {
			return nil, false, errKeyReused
		}
	} else {
		s.metrics.stored.WithLabelValues(kindLabel(conv.kind)).Inc()
	}
	if conv.kind == parleyv1.ConversationKind_CONVERSATION_KIND_DIRECT {
		// Both members list the conversation from its first message on.
		// Done for duplicates too: a replica that died after storing may
		// not have got this far, and the client's re-send completes it.
		if err := s.store.EnsureMember(ctx, conv.peer, store.Member{Conversation: conv.id, PeerID: me.id, PeerName: me.name}); err != nil {
			return nil, false, err
		}
		if err := s.store.EnsureMember(ctx, me.id, store.Member{Conversation: conv.id, PeerID: conv.peer, PeerName: t.peerName}); err != nil {
			return nil, false, err
		}
	}
	// Published again for a duplicate, for the same reason (the replica
	// that stored it may have died before publishing); clients drop a seq
	// they already have.
	if res.Duplicate {
		s.deliver(conv, stored)
	}
	return stored, res.Duplicate, nil
}

// sameMessage reports whether stored, found under msg's de-duplication
// id, is the message msg asks to store (see appendMessage).
func sameMessage(stored, msg *parleyv1.Message) bool {
	if stored.Conversation != msg.Conversation || stored.SenderId != msg.SenderId || stored.ClientKey != msg.ClientKey ||
		stored.System != msg.System || stored.GetFile().GetFileId() != msg.GetFile().GetFileId() ||
		(stored.Call == nil) != (msg.Call == nil) || stored.GetCall().GetCallId() != msg.GetCall().GetCallId() {
		return false
	}
	return msg.Call != nil || stored.Text == msg.Text
}

// deliver publishes the stored message for live delivery (at most once;
// see the package comment for how clients recover a missed event).
func (s *Service) deliver(conv conversation, msg *parleyv1.Message) {
	data, err := proto.Marshal(&parleyv1.MessageEvent{Message: msg})
	if err != nil {
		s.log.Error("encode message event", "err", err)
		return
	}
	var subjects []string
	switch conv.kind {
	case parleyv1.ConversationKind_CONVERSATION_KIND_ROOM:
		subjects = []string{subject.RoomMessages(roomName)}
	case parleyv1.ConversationKind_CONVERSATION_KIND_DIRECT:
		subjects = []string{subject.UserMessages(msg.SenderId), subject.UserMessages(conv.peer)}
	case parleyv1.ConversationKind_CONVERSATION_KIND_GROUP:
		// Members only: an invitee reads nothing until joining, except the
		// system message that concerns them (alsoTo).
		for _, uid := range conv.members {
			subjects = append(subjects, subject.UserMessages(uid))
		}
		for _, uid := range conv.alsoTo {
			if !slices.Contains(conv.members, uid) {
				subjects = append(subjects, subject.UserMessages(uid))
			}
		}
	}
	for _, subj := range subjects {
		if err := s.nc.Publish(subj, data); err != nil {
			s.log.Warn("message event not published", "subject", subj, "err", err)
			continue
		}
		s.metrics.delivered.Inc()
	}
}

func kindLabel(k parleyv1.ConversationKind) string {
	switch k {
	case parleyv1.ConversationKind_CONVERSATION_KIND_ROOM:
		return "room"
	case parleyv1.ConversationKind_CONVERSATION_KIND_DIRECT:
		return "direct"
	case parleyv1.ConversationKind_CONVERSATION_KIND_GROUP:
		return "group"
	default:
		return fmt.Sprint(int32(k))
	}
}
