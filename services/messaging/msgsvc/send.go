package msgsvc

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"

	"github.com/parleychat/parley/libs/proto/parleyv1"
	"github.com/parleychat/parley/libs/subject"
	"github.com/parleychat/parley/services/messaging/internal/store"
)

// identity is the authenticated sender, from the gateway's headers.
type identity struct{ id, name string }

func identityOf(m *nats.Msg) (identity, error) {
	id := identity{id: m.Header.Get(subject.HeaderUserID), name: m.Header.Get(subject.HeaderUsername)}
	if !validUserID(id.id) {
		return identity{}, errNoIdentity
	}
	return id, nil
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
	var (
		conv     conversation
		peerName string // direct: the other user's name, when known
	)
	switch {
	case (req.Conversation == "") == (req.ToUsername == ""):
		return nil, errTarget
	case req.ToUsername != "":
		peer, err := s.lookup(ctx, req.ToUsername)
		if err != nil {
			return nil, err
		}
		if peer.UserId == me.id {
			return nil, errSelf
		}
		if conv, err = resolve(DirectID(me.id, peer.UserId), me.id); err != nil {
			return nil, err
		}
		peerName = peer.Username
	default:
		if conv, err = s.resolveConv(ctx, req.Conversation, me.id); err != nil {
			return nil, err
		}
	}

	if conv.kind == parleyv1.ConversationKind_CONVERSATION_KIND_DIRECT {
		// Checked before storing: a blocked sender's message is not kept.
		if blocked, err := s.blockedBy(ctx, conv.peer, me.id); err != nil {
			return nil, err
		} else if blocked {
			return nil, errBlocked
		}
	}
	msg := &parleyv1.Message{
		Conversation: conv.id,
		SenderId:     me.id,
		SenderName:   me.name,
		SentAtUnixMs: s.now().UnixMilli(),
		Text:         req.Text,
		ClientKey:    req.ClientKey,
	}
	// A new message's live event is published from inside Append, in seq
	// order; a duplicate's below.
	res, err := s.store.Append(ctx, msg, me.id+":"+req.ClientKey, func(m *parleyv1.Message) { s.deliver(conv, m) })
	s.metrics.conflicts.Add(float64(res.Conflicts))
	switch {
	case errors.Is(err, store.ErrBusy):
		return nil, errBusy
	case err != nil:
		// JetStream did not confirm (timeout, connection lost, no leader):
		// the message may or may not be stored, and a re-send with the same
		// client_key settles it either way.
		s.log.Warn("message not confirmed", "conversation", conv.id, "user_id", me.id, "err", err)
		return nil, errNotStored
	}
	stored := res.Message
	if res.Duplicate {
		s.metrics.duplicates.Inc()
		if stored.Conversation != conv.id || stored.SenderId != me.id {
			return nil, errKeyReused
		}
	} else {
		s.metrics.stored.WithLabelValues(kindLabel(conv.kind)).Inc()
	}
	if conv.kind == parleyv1.ConversationKind_CONVERSATION_KIND_DIRECT {
		// Both members list the conversation from its first message on.
		// Done for duplicates too: a replica that died after storing may
		// not have got this far, and the client's re-send completes it.
		if err := s.store.EnsureMember(ctx, conv.peer, store.Member{Conversation: conv.id, PeerID: me.id, PeerName: me.name}); err != nil {
			return nil, err
		}
		if err := s.store.EnsureMember(ctx, me.id, store.Member{Conversation: conv.id, PeerID: conv.peer, PeerName: peerName}); err != nil {
			return nil, err
		}
	}
	// Published again for a duplicate, for the same reason (the replica
	// that stored it may have died before publishing); clients drop a seq
	// they already have.
	if res.Duplicate {
		s.deliver(conv, stored)
	}
	return &parleyv1.SendReply{Message: stored, Duplicate: res.Duplicate}, nil
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
