package msgsvc

import (
	"context"
	"errors"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"

	"github.com/parleychat/parley/libs/subject"
	"github.com/parleychat/parley/protocol/parleyv1"
	"github.com/parleychat/parley/services/messaging/internal/store"
)

// History page sizes (parleyv1.HistoryRequest.limit).
const (
	defaultHistoryLimit = 50
	maxHistoryLimit     = 200
	// maxPageBytes bounds a page's encoded entries (messages here,
	// conversations in conversations.go): the reply must fit in one NATS
	// message (max_payload, 1 MiB by default) and in one client frame
	// (wire.DefaultMaxFrameSize, 1 MiB). 200 messages of 16 KiB would not,
	// so a page of large messages holds fewer, and more says so.
	maxPageBytes = 768 << 10
)

// handleHistory returns one page of a conversation, oldest first: the page
// after after_seq when the field is present (catching up; 0 reads from the
// first message), else the page before before_seq (0: the newest
// messages). after_seq is a proto3 optional field precisely so that a
// forward read from 0 differs from a backward read (docs/protocol.md
// §15.4).
func (s *Service) handleHistory(ctx context.Context, m *nats.Msg) (proto.Message, error) {
	me, err := identityOf(m)
	if err != nil {
		return nil, err
	}
	var req parleyv1.HistoryRequest
	if err := proto.Unmarshal(m.Data, &req); err != nil {
		return nil, errMalformed
	}
	conv, err := s.resolveConv(ctx, req.Conversation, me.id)
	if err != nil {
		return nil, err
	}
	forward, after := req.AfterSeq != nil, req.GetAfterSeq()
	if forward && req.BeforeSeq > 0 {
		return nil, errBothHistoryDirs
	}
	limit := uint64(req.Limit)
	switch {
	case limit == 0:
		limit = defaultHistoryLimit
	case limit > maxHistoryLimit:
		limit = maxHistoryLimit
	}
	last, err := s.store.LastSeq(ctx, conv.id)
	if err != nil {
		return nil, err
	}
	// The page is the seq range (lo, hi].
	var lo, hi uint64
	reply := &parleyv1.HistoryReply{LastSeq: last}
	if forward {
		lo, hi = after, min(after+limit, last)
		reply.More = hi < last
	} else {
		hi = last
		if req.BeforeSeq > 0 && req.BeforeSeq-1 < last {
			hi = req.BeforeSeq - 1
		}
		lo = hi - min(hi, limit)
		reply.More = lo > 0
	}
	if hi > lo {
		if reply.Messages, err = s.store.Range(ctx, conv.id, lo, hi, int(limit)); err != nil {
			return nil, err
		}
	}
	budget := s.pageBudget()
	if forward {
		// Forward: keep the oldest, the next page continues after them.
		n := fitting(reply.Messages, budget, false)
		reply.More = reply.More || n < len(reply.Messages)
		reply.Messages = reply.Messages[:n]
	} else {
		// Backward: keep the newest, the next page continues before them.
		n := fitting(reply.Messages, budget, true)
		reply.More = reply.More || n < len(reply.Messages)
		reply.Messages = reply.Messages[len(reply.Messages)-n:]
	}
	return reply, nil
}

// pageBudget is the most bytes of entries one page reply may hold: at most
// maxPageBytes, and an eighth of the server's max_payload left for the
// rest of the reply and its headers.
func (s *Service) pageBudget() int {
	return min(maxPageBytes, int(s.nc.MaxPayload())*7/8)
}

// fitting is how many of ms, taken from the end (fromEnd) or the start,
// fit in budget bytes encoded; at least one, so paging always progresses.
func fitting[T proto.Message](ms []T, budget int, fromEnd bool) int {
	size := 0
	for i := range ms {
		m := ms[i]
		if fromEnd {
			m = ms[len(ms)-1-i]
		}
		size += proto.Size(m) + 4 // + field tag and length
		if size > budget && i > 0 {
			return i
		}
	}
	return len(ms)
}

// handleAck moves the user's acknowledged seq in a conversation forward.
func (s *Service) handleAck(ctx context.Context, m *nats.Msg) (proto.Message, error) {
	me, err := identityOf(m)
	if err != nil {
		return nil, err
	}
	var req parleyv1.AckRequest
	if err := proto.Unmarshal(m.Data, &req); err != nil {
		return nil, errMalformed
	}
	conv, err := s.resolveConv(ctx, req.Conversation, me.id)
	if err != nil {
		return nil, err
	}
	if req.Seq == 0 {
		return nil, nil // nothing to acknowledge
	}
	ok, err := s.store.AtLeast(ctx, conv.id, req.Seq)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, errAckBeyondLast
	}
	_, moved, err := s.store.AdvanceCursor(ctx, me.id, conv.id, req.Seq)
	if errors.Is(err, store.ErrBusy) {
		return nil, errBusy
	} else if err != nil {
		return nil, err
	}
	if moved && conv.kind == parleyv1.ConversationKind_CONVERSATION_KIND_DIRECT {
		// Read receipt: the other member sees how far this user has seen.
		s.publish(subject.UserReceipts(conv.peer), &parleyv1.ReceiptEvent{Conversation: conv.id, UserId: me.id, Seq: req.Seq})
	}
	return nil, nil
}

// handleOpenDirect finds the user by name and returns the direct
// conversation with them, adding it to the caller's list. The other user
// sees it once it has a message: opening a conversation alone tells them
// nothing.
func (s *Service) handleOpenDirect(ctx context.Context, m *nats.Msg) (proto.Message, error) {
	me, err := identityOf(m)
	if err != nil {
		return nil, err
	}
	var req parleyv1.OpenDirectRequest
	if err := proto.Unmarshal(m.Data, &req); err != nil {
		return nil, errMalformed
	}
	if req.Username == "" {
		return nil, errNoUsername
	}
	peer, err := s.lookup(ctx, me, req.Username)
	if err != nil {
		return nil, err
	}
	if peer.UserId == me.id {
		return nil, errSelf
	}
	conv, err := direct(me.id, peer.UserId)
	if err != nil {
		return nil, err
	}
	if err := s.store.EnsureMember(ctx, me.id, store.Member{Conversation: conv.id, PeerID: peer.UserId, PeerName: peer.Username}); err != nil {
		return nil, err
	}
	out := &parleyv1.Conversation{Id: conv.id, Kind: conv.kind, Title: peer.Username, PeerId: peer.UserId}
	if out.LastSeq, err = s.store.LastSeq(ctx, conv.id); err != nil {
		return nil, err
	}
	if out.AckedSeq, err = s.store.Cursor(ctx, me.id, conv.id); err != nil {
		return nil, err
	}
	if out.PeerAckedSeq, err = s.store.Cursor(ctx, peer.UserId, conv.id); err != nil {
		return nil, err
	}
	return out, nil
}
