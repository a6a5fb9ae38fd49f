package msgsvc

import (
	"context"
	"errors"
	"sync"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"

	"github.com/parleychat/parley/libs/proto/internalv1"
	"github.com/parleychat/parley/libs/rpc"
	"github.com/parleychat/parley/libs/subject"
	"github.com/parleychat/parley/protocol/errcode"
	"github.com/parleychat/parley/protocol/parleyv1"
	"github.com/parleychat/parley/services/messaging/internal/store"
)

// Friends and blocking (docs/protocol.md §17).
//
// Friendship is a list with online state, not a permission: private
// messages do not need it (anyone may message anyone, the default); only
// blocking stops them. A user who blocked another refuses that user's
// private messages (SendRequest to the dm or to_username) and friend
// requests with BLOCKED, nothing stored; blocking ends a friendship and
// drops pending requests both ways.
//
// Each user has their own view of a relation in subject.BucketFriends,
// "<uid>.<peer>" -> friend / outgoing / incoming / blocked. A change writes
// the caller's key first, then the peer's, each with compare-and-set
// (store.UpdateFriend), re-checking the rule against what is stored, so
// two replicas and crossing requests agree: if A asks B while B's request
// to A is pending (on either key), both become friends. A replica dying
// between the two writes leaves the two views apart until either user
// changes the relation again (each change rewrites both keys).
//
// The other user learns of a change through a parleyv1.FriendEvent on
// subject.UserFriendEvents (request, accepted, declined, removed; at most
// once, like message events: FriendsRequest is the truth).

// Wire errors of the friend requests.
var (
	errAlreadyFriends = errcode.New(parleyv1.ErrorCode_ERROR_CODE_ALREADY_FRIENDS, "you are already friends")
	errBlocked        = errcode.New(parleyv1.ErrorCode_ERROR_CODE_BLOCKED, "this user does not accept your messages or requests")
	errSelfFriend     = errcode.New(parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "you cannot do that with yourself")
	errYouBlocked     = errcode.New(parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "you blocked this user: unblock them first")
	errNoRequest      = errcode.New(parleyv1.ErrorCode_ERROR_CODE_NOT_FOUND, "no friend request from this user")
	errNotFriends     = errcode.New(parleyv1.ErrorCode_ERROR_CODE_NOT_FOUND, "neither friends nor a pending request")
)

// maxPresenceQueries bounds the presence requests one friends list makes
// at once.
const maxPresenceQueries = 16

// friendParties decodes a friend request into req and returns who asks
// (from the headers) and the user it names.
func (s *Service) friendParties(ctx context.Context, m *nats.Msg, req interface {
	proto.Message
	GetUsername() string
}) (me, peer user, err error) {
	if me, err = identityOf(m); err != nil {
		return me, peer, err
	}
	if err := proto.Unmarshal(m.Data, req); err != nil {
		return me, peer, errMalformed
	}
	peer, err = s.friendTarget(ctx, me, req.GetUsername())
	return me, peer, err
}

// friendTarget resolves the username of a friend request; yourself is
// INVALID_ARGUMENT.
func (s *Service) friendTarget(ctx context.Context, me user, username string) (user, error) {
	if username == "" {
		return user{}, errNoUsername
	}
	peer, err := s.lookup(ctx, me, username)
	if err != nil {
		return user{}, err
	}
	if peer.UserId == me.id {
		return user{}, errSelfFriend
	}
	return user{id: peer.UserId, name: peer.Username}, nil
}

// blockedBy reports whether uid blocked peer.
func (s *Service) blockedBy(ctx context.Context, uid, peer string) (bool, error) {
	return s.store.Blocked(ctx, uid, peer)
}

func (s *Service) handleAddFriend(ctx context.Context, m *nats.Msg) (proto.Message, error) {
	var req parleyv1.AddFriendRequest
	me, peer, err := s.friendParties(ctx, m, &req)
	if err != nil {
		return nil, err
	}
	if err := s.take(limitFriend, me.id, 1); err != nil {
		return nil, err
	}
	if blocked, err := s.blockedBy(ctx, peer.id, me.id); err != nil {
		return nil, friendErr(err)
	} else if blocked {
		return nil, errBlocked
	}
	// My side: a pending request from them is accepted by asking back.
	_, mine, err := s.store.UpdateFriend(ctx, me.id, peer.id, func(f *store.Friend) error {
		f.Name = peer.name
		switch f.State {
		case store.FriendFriend:
			return errAlreadyFriends
		case store.FriendBlocked:
			return errYouBlocked
		case store.FriendIncoming:
			f.State = store.FriendFriend
		default:
			f.State = store.FriendOutgoing
		}
		return nil
	})
	if err != nil {
		return nil, friendErr(err)
	}
	// Their side, checked again as stored: they may have blocked me or
	// asked me meanwhile (crossing requests make friends).
	_, theirs, err := s.store.UpdateFriend(ctx, peer.id, me.id, func(f *store.Friend) error {
		f.Name = me.name
		switch {
		case f.State == store.FriendBlocked:
			return errBlocked
		case mine.State == store.FriendFriend, f.State == store.FriendOutgoing, f.State == store.FriendFriend:
			f.State = store.FriendFriend
		default:
			f.State = store.FriendIncoming
		}
		return nil
	})
	if errors.Is(err, errBlocked) {
		// Blocked between the check and now: withdraw my request.
		s.undoOutgoing(ctx, me.id, peer.id)
		return nil, errBlocked
	}
	if err != nil {
		return nil, friendErr(err)
	}
	kind := parleyv1.FriendEvent_KIND_REQUEST
	if theirs.State == store.FriendFriend {
		kind = parleyv1.FriendEvent_KIND_ACCEPTED
		if mine.State != store.FriendFriend {
			// Crossing requests: their request to me was pending on their key.
			if _, _, err := s.store.UpdateFriend(ctx, me.id, peer.id, func(f *store.Friend) error {
				if f.State != store.FriendOutgoing && f.State != store.FriendIncoming {
					return store.ErrNoChange
				}
				f.State = store.FriendFriend
				return nil
			}); err != nil {
				return nil, friendErr(err)
			}
		}
	}
	s.friendEvent(peer.id, kind, me)
	return nil, nil
}

// undoOutgoing removes uid's pending request to peer.
func (s *Service) undoOutgoing(ctx context.Context, uid, peer string) {
	if _, _, err := s.store.UpdateFriend(ctx, uid, peer, func(f *store.Friend) error {
		if f.State != store.FriendOutgoing {
			return store.ErrNoChange
		}
		f.State = store.FriendNone
		return nil
	}); err != nil {
		s.log.Warn("friend request not withdrawn", "user_id", uid, "peer", peer, "err", err)
	}
}

func (s *Service) handleAnswerFriend(ctx context.Context, m *nats.Msg) (proto.Message, error) {
	var req parleyv1.AnswerFriendRequest
	me, peer, err := s.friendParties(ctx, m, &req)
	if err != nil {
		return nil, err
	}
	if _, _, err := s.store.UpdateFriend(ctx, me.id, peer.id, func(f *store.Friend) error {
		if f.State != store.FriendIncoming {
			return errNoRequest
		}
		f.Name = peer.name
		f.State = store.FriendNone
		if req.Accept {
			f.State = store.FriendFriend
		}
		return nil
	}); err != nil {
		return nil, friendErr(err)
	}
	if _, _, err := s.store.UpdateFriend(ctx, peer.id, me.id, func(f *store.Friend) error {
		switch {
		case f.State == store.FriendBlocked:
			return store.ErrNoChange
		case req.Accept:
			f.Name, f.State = me.name, store.FriendFriend
		case f.State == store.FriendOutgoing:
			f.State = store.FriendNone
		default:
			return store.ErrNoChange
		}
		return nil
	}); err != nil {
		return nil, friendErr(err)
	}
	kind := parleyv1.FriendEvent_KIND_DECLINED
	if req.Accept {
		kind = parleyv1.FriendEvent_KIND_ACCEPTED
	}
	s.friendEvent(peer.id, kind, me)
	return nil, nil
}

func (s *Service) handleRemoveFriend(ctx context.Context, m *nats.Msg) (proto.Message, error) {
	var req parleyv1.RemoveFriendRequest
	me, peer, err := s.friendParties(ctx, m, &req)
	if err != nil {
		return nil, err
	}
	if _, _, err := s.store.UpdateFriend(ctx, me.id, peer.id, func(f *store.Friend) error {
		if f.State != store.FriendFriend && f.State != store.FriendOutgoing {
			return errNotFriends
		}
		f.State = store.FriendNone
		return nil
	}); err != nil {
		return nil, friendErr(err)
	}
	if err := s.dropPeerSide(ctx, peer.id, me.id); err != nil {
		return nil, err
	}
	s.friendEvent(peer.id, parleyv1.FriendEvent_KIND_REMOVED, me)
	return nil, nil
}

// dropPeerSide ends peer's view of a friendship or request with uid (a
// block of uid stays).
func (s *Service) dropPeerSide(ctx context.Context, peer, uid string) error {
	_, _, err := s.store.UpdateFriend(ctx, peer, uid, func(f *store.Friend) error {
		if f.State == store.FriendBlocked || f.State == store.FriendNone {
			return store.ErrNoChange
		}
		f.State = store.FriendNone
		return nil
	})
	return friendErr(err)
}

func (s *Service) handleBlock(ctx context.Context, m *nats.Msg) (proto.Message, error) {
	var req parleyv1.BlockRequest
	me, peer, err := s.friendParties(ctx, m, &req)
	if err != nil {
		return nil, err
	}
	before, _, err := s.store.UpdateFriend(ctx, me.id, peer.id, func(f *store.Friend) error {
		f.Name, f.State = peer.name, store.FriendBlocked
		return nil
	})
	if err != nil {
		return nil, friendErr(err)
	}
	if err := s.dropPeerSide(ctx, peer.id, me.id); err != nil {
		return nil, err
	}
	// The other user sees the friendship end or their request declined;
	// a block as such is not announced.
	switch before.State {
	case store.FriendFriend:
		s.friendEvent(peer.id, parleyv1.FriendEvent_KIND_REMOVED, me)
	case store.FriendIncoming:
		s.friendEvent(peer.id, parleyv1.FriendEvent_KIND_DECLINED, me)
	case store.FriendOutgoing:
		s.friendEvent(peer.id, parleyv1.FriendEvent_KIND_REMOVED, me)
	}
	return nil, nil
}

// handleUnblock lifts a block; unblocking someone not blocked is a no-op.
func (s *Service) handleUnblock(ctx context.Context, m *nats.Msg) (proto.Message, error) {
	var req parleyv1.UnblockRequest
	me, peer, err := s.friendParties(ctx, m, &req)
	if err != nil {
		return nil, err
	}
	if _, _, err := s.store.UpdateFriend(ctx, me.id, peer.id, func(f *store.Friend) error {
		if f.State != store.FriendBlocked {
			return store.ErrNoChange
		}
		f.State = store.FriendNone
		return nil
	}); err != nil {
		return nil, friendErr(err)
	}
	return nil, nil
}

// handleFriends lists the caller's friends (with online state), pending
// requests both ways and blocked users.
func (s *Service) handleFriends(ctx context.Context, m *nats.Msg) (proto.Message, error) {
	me, err := identityOf(m)
	if err != nil {
		return nil, err
	}
	var req parleyv1.FriendsRequest
	if err := proto.Unmarshal(m.Data, &req); err != nil {
		return nil, errMalformed
	}
	list, err := s.store.Friends(ctx, me.id)
	if err != nil {
		return nil, friendErr(err)
	}
	reply := &parleyv1.FriendsReply{Friends: make([]*parleyv1.Friend, 0, len(list))}
	sem := make(chan struct{}, maxPresenceQueries)
	var wg sync.WaitGroup
	for _, f := range list {
		out := &parleyv1.Friend{UserId: f.PeerID, Username: f.Name, State: friendState(f.State)}
		reply.Friends = append(reply.Friends, out)
		if out.State != parleyv1.FriendState_FRIEND_STATE_FRIEND {
			continue
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			out.Online = s.online(ctx, out.UserId)
		})
	}
	wg.Wait()
	return reply, nil
}

// online asks the presence service whether uid has a live session. When
// presence does not answer the friend is shown offline: a list without
// online states beats no list.
func (s *Service) online(ctx context.Context, uid string) bool {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.PresenceTimeout)
	defer cancel()
	var reply internalv1.UserPresenceReply
	if err := rpc.Request(ctx, s.nc, subject.PresenceUser, nil, &internalv1.UserPresenceRequest{UserId: uid}, &reply); err != nil {
		s.log.Warn("presence did not answer; friend shown offline", "user_id", uid, "err", err)
		return false
	}
	return len(reply.SessionIds) > 0
}

func friendState(st string) parleyv1.FriendState {
	switch st {
	case store.FriendFriend:
		return parleyv1.FriendState_FRIEND_STATE_FRIEND
	case store.FriendOutgoing:
		return parleyv1.FriendState_FRIEND_STATE_OUTGOING
	case store.FriendIncoming:
		return parleyv1.FriendState_FRIEND_STATE_INCOMING
	case store.FriendBlocked:
		return parleyv1.FriendState_FRIEND_STATE_BLOCKED
	}
	return parleyv1.FriendState_FRIEND_STATE_UNSPECIFIED
}

// friendErr maps store errors of a friend change to wire errors; wire
// errors returned by an edit pass through.
func friendErr(err error) error {
	if errors.Is(err, store.ErrBusy) {
		return errBusy
	}
	return err
}

// friendEvent tells uid's gateways that by changed their relation (at
// most once; the friends list is the truth).
func (s *Service) friendEvent(uid string, kind parleyv1.FriendEvent_Kind, by user) {
	s.publish(subject.UserFriendEvents(uid), &parleyv1.FriendEvent{Kind: kind, UserId: by.id, Username: by.name})
}

// publish sends an event to subj (core NATS, at most once).
func (s *Service) publish(subj string, ev proto.Message) {
	data, err := proto.Marshal(ev)
	if err != nil {
		s.log.Error("encode event", "subject", subj, "err", err)
		return
	}
	if err := s.nc.Publish(subj, data); err != nil {
		s.log.Warn("event not published", "subject", subj, "err", err)
	}
}
