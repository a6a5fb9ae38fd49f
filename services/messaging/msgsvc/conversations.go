package msgsvc

import (
	"context"
	"slices"
	"strings"
	"sync"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"

	"github.com/parleychat/parley/protocol/convid"
	"github.com/parleychat/parley/protocol/parleyv1"
	"github.com/parleychat/parley/services/messaging/internal/store"
)

// Conversation list page sizes (parleyv1.ConversationsRequest.limit).
const (
	defaultConvLimit = 200
	maxConvLimit     = 500
	// parallelReads bounds the KV and stream reads one page makes at once.
	parallelReads = 16
)

// handleConversations lists one page of the user's conversations in
// ascending id order (docs/protocol.md §15.1): the public room, the direct
// conversations and the groups the user is a member of or invited to, each
// with its newest seq and the user's acknowledged seq. A page holds the
// conversations after after_id, at most limit of them and at most
// pageBudget bytes; more says others follow. Without pages the list of a
// user in thousands of groups outgrew one NATS message and could never be
// read again.
//
// The user's entries are read whole for every page (one filtered watch of
// BucketConvs, sorted here: KV keys have no order); only the page's own
// conversations cost a read each (the group record, the last seq, the
// cursors).
func (s *Service) handleConversations(ctx context.Context, m *nats.Msg) (proto.Message, error) {
	me, err := identityOf(m)
	if err != nil {
		return nil, err
	}
	var req parleyv1.ConversationsRequest
	if err := proto.Unmarshal(m.Data, &req); err != nil {
		return nil, errMalformed
	}
	limit := int(req.Limit)
	switch {
	case limit == 0:
		limit = defaultConvLimit
	case limit > maxConvLimit:
		limit = maxConvLimit
	}
	members, err := s.store.Memberships(ctx, me.id)
	if err != nil {
		return nil, err
	}
	room := store.Member{Conversation: convid.PublicRoom}
	candidates := []store.Member{}
	for _, mb := range append(members, room) {
		if mb.Conversation > req.AfterId {
			candidates = append(candidates, mb)
		}
	}
	slices.SortFunc(candidates, func(a, b store.Member) int { return strings.Compare(a.Conversation, b.Conversation) })

	// Entries that turn out stale (a group left or ended) are skipped, so
	// read further until the page is full or nothing is left.
	var page []*parleyv1.Conversation
	next := 0
	for len(page) < limit && next < len(candidates) {
		window := candidates[next:min(len(candidates), next+limit-len(page))]
		next += len(window)
		page = append(page, s.listed(ctx, me.id, window)...)
	}
	if err := s.fillSeqs(ctx, me.id, page); err != nil {
		return nil, err
	}
	n := fitting(page, s.pageBudget(), false)
	return &parleyv1.ConversationsReply{Conversations: page[:n], More: n < len(page) || next < len(candidates)}, nil
}

// listed is the list entries of uid's memberships ms, in their order,
// leaving out stale ones; group records are read several at once.
func (s *Service) listed(ctx context.Context, uid string, ms []store.Member) []*parleyv1.Conversation {
	out := make([]*parleyv1.Conversation, len(ms))
	sem := make(chan struct{}, parallelReads)
	var wg sync.WaitGroup
	for i, mb := range ms {
		switch {
		case mb.Conversation == convid.PublicRoom:
			out[i] = &parleyv1.Conversation{Id: convid.PublicRoom, Kind: parleyv1.ConversationKind_CONVERSATION_KIND_ROOM, Title: roomName}
		case mb.Group:
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				out[i] = s.listedGroup(ctx, uid, mb)
			})
		default:
			if _, err := resolve(mb.Conversation, uid); err != nil {
				continue // not a conversation of this user (cannot happen unless the bucket was edited)
			}
			title := mb.PeerName
			if title == "" {
				title = mb.PeerID // the peer's name is learnt from their first message
			}
			out[i] = &parleyv1.Conversation{Id: mb.Conversation, Kind: parleyv1.ConversationKind_CONVERSATION_KIND_DIRECT,
				Title: title, PeerId: mb.PeerID}
		}
	}
	wg.Wait()
	return slices.DeleteFunc(out, func(c *parleyv1.Conversation) bool { return c == nil })
}

// fillSeqs sets last_seq (from the stream: this replica's cache may be
// behind other replicas' appends), acked_seq and, for a direct
// conversation, peer_acked_seq of each conversation uid may read, several
// at once. An invitee reads nothing until joining: no seqs.
func (s *Service) fillSeqs(ctx context.Context, uid string, convs []*parleyv1.Conversation) error {
	sem := make(chan struct{}, parallelReads)
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex // guards first
		first error
	)
	for _, c := range convs {
		if c.Invited {
			continue
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			last, err := s.store.LastSeq(ctx, c.Id)
			if err == nil {
				c.AckedSeq, err = s.store.Cursor(ctx, uid, c.Id)
			}
			if err == nil && c.Kind == parleyv1.ConversationKind_CONVERSATION_KIND_DIRECT && c.PeerId != "" {
				// Read receipts: how far the other member has seen.
				c.PeerAckedSeq, err = s.store.Cursor(ctx, c.PeerId, c.Id)
			}
			if err != nil {
				mu.Lock()
				if first == nil {
					first = err
				}
				mu.Unlock()
				return
			}
			c.LastSeq = last
		})
	}
	wg.Wait()
	return first
}
