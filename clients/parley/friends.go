package parley

import (
	"context"
	"fmt"

	"github.com/parleychat/parley/protocol/parleyv1"
)

// Friends, blocking, typing indicators and read receipts
// (docs/protocol.md §17).
//
// Friendship is not needed to exchange private messages: anyone may
// message anyone who has not blocked them. Friends are a list with online
// state. Blocking a user refuses their private messages and friend requests
// (they get ErrBlocked, nothing is stored) and ends a friendship.

// FriendState is a relation as the user sees it.
type FriendState int

const (
	FriendUnknown  FriendState = iota
	FriendFriend               // friends
	FriendOutgoing             // you asked, no answer yet
	FriendIncoming             // they asked you: answer with AnswerFriend
	FriendBlocked              // you blocked them
)

func (s FriendState) String() string {
	switch s {
	case FriendFriend:
		return "friend"
	case FriendOutgoing:
		return "outgoing"
	case FriendIncoming:
		return "incoming"
	case FriendBlocked:
		return "blocked"
	}
	return "unknown"
}

// Friend is an entry of the friends list.
type Friend struct {
	UserID   string
	Username string
	State    FriendState
	Online   bool // friends only: the user has a live connection
}

// FriendEventKind is what another user did.
type FriendEventKind int

const (
	FriendEventUnknown  FriendEventKind = iota
	FriendEventRequest                  // they asked to be friends
	FriendEventAccepted                 // they accepted your request (or asked back)
	FriendEventDeclined                 // they declined your request
	FriendEventRemoved                  // they ended the friendship or withdrew their request
)

func (k FriendEventKind) String() string {
	switch k {
	case FriendEventRequest:
		return "request"
	case FriendEventAccepted:
		return "accepted"
	case FriendEventDeclined:
		return "declined"
	case FriendEventRemoved:
		return "removed"
	}
	return "unknown"
}

// FriendEvent: another user changed their relation with this user. Live
// only (at most once): Friends is the truth.
type FriendEvent struct {
	Kind     FriendEventKind
	UserID   string // who did it
	Username string
}

// TypingEvent: the other member of a private conversation is typing
// (repeated every few seconds while they type; no "stopped" event: show it
// for a few seconds). Ephemeral, and dropped when the application does not
// keep up with events.
type TypingEvent struct {
	Conversation string
	UserID       string
	Username     string
}

// ReceiptEvent: the other member of a private conversation has seen it up
// to Seq (they acknowledged it). Conversation.PeerAckedSeq gives the same
// after a reconnect.
type ReceiptEvent struct {
	Conversation string
	UserID       string
	Seq          uint64
}

func (FriendEvent) isEvent()  {}
func (TypingEvent) isEvent()  {}
func (ReceiptEvent) isEvent() {}

// AddFriend asks username to be friends; if they had already asked, you
// become friends at once. ErrNotFound: no such user; ErrAlreadyFriends;
// ErrInvalidArgument: yourself, or a user you blocked; ErrBlocked: they
// blocked you.
func (c *Client) AddFriend(ctx context.Context, username string) error {
	return c.okRequest(ctx, &parleyv1.Frame{Body: &parleyv1.Frame_AddFriend{AddFriend: &parleyv1.AddFriendRequest{Username: username}}})
}

// AnswerFriend accepts or declines username's pending request. ErrNotFound:
// no request from them.
func (c *Client) AnswerFriend(ctx context.Context, username string, accept bool) error {
	return c.okRequest(ctx, &parleyv1.Frame{Body: &parleyv1.Frame_AnswerFriend{AnswerFriend: &parleyv1.AnswerFriendRequest{Username: username, Accept: accept}}})
}

// RemoveFriend ends a friendship or withdraws your request. ErrNotFound:
// neither.
func (c *Client) RemoveFriend(ctx context.Context, username string) error {
	return c.okRequest(ctx, &parleyv1.Frame{Body: &parleyv1.Frame_RemoveFriend{RemoveFriend: &parleyv1.RemoveFriendRequest{Username: username}}})
}

// Friends lists friends (with online state), pending requests both ways
// and blocked users.
func (c *Client) Friends(ctx context.Context) ([]Friend, error) {
	reply, err := c.do(ctx, &parleyv1.Frame{Body: &parleyv1.Frame_Friends{Friends: &parleyv1.FriendsRequest{}}})
	if err != nil {
		return nil, err
	}
	r := reply.GetFriendsReply()
	if r == nil {
		return nil, fmt.Errorf("%w: expected FriendsReply, got %T", ErrProtocol, reply.GetBody())
	}
	out := make([]Friend, 0, len(r.GetFriends()))
	for _, f := range r.GetFriends() {
		out = append(out, Friend{UserID: f.GetUserId(), Username: f.GetUsername(), State: friendStateFromWire(f.GetState()), Online: f.GetOnline()})
	}
	return out, nil
}

// Block blocks username: their private messages and friend requests are
// refused, and a friendship or pending request ends.
func (c *Client) Block(ctx context.Context, username string) error {
	return c.okRequest(ctx, &parleyv1.Frame{Body: &parleyv1.Frame_Block{Block: &parleyv1.BlockRequest{Username: username}}})
}

// Unblock lifts a block (no error if there was none).
func (c *Client) Unblock(ctx context.Context, username string) error {
	return c.okRequest(ctx, &parleyv1.Frame{Body: &parleyv1.Frame_Unblock{Unblock: &parleyv1.UnblockRequest{Username: username}}})
}

// Typing tells the other member of a private conversation that the user is
// typing; call it every few seconds while they type (the server forwards
// at most one every 2 seconds). ErrInvalidArgument for rooms and groups.
func (c *Client) Typing(ctx context.Context, conversation string) error {
	return c.okRequest(ctx, &parleyv1.Frame{Body: &parleyv1.Frame_Typing{Typing: &parleyv1.TypingRequest{Conversation: conversation}}})
}

func friendStateFromWire(s parleyv1.FriendState) FriendState {
	switch s {
	case parleyv1.FriendState_FRIEND_STATE_FRIEND:
		return FriendFriend
	case parleyv1.FriendState_FRIEND_STATE_OUTGOING:
		return FriendOutgoing
	case parleyv1.FriendState_FRIEND_STATE_INCOMING:
		return FriendIncoming
	case parleyv1.FriendState_FRIEND_STATE_BLOCKED:
		return FriendBlocked
	}
	return FriendUnknown
}

// socialEvent turns a friend, typing or receipt frame into its Event (nil
// for other frames).
func socialEvent(f *parleyv1.Frame) Event {
	switch b := f.Body.(type) {
	case *parleyv1.Frame_FriendEvent:
		ev := b.FriendEvent
		kind := FriendEventUnknown
		switch ev.GetKind() {
		case parleyv1.FriendEvent_KIND_REQUEST:
			kind = FriendEventRequest
		case parleyv1.FriendEvent_KIND_ACCEPTED:
			kind = FriendEventAccepted
		case parleyv1.FriendEvent_KIND_DECLINED:
			kind = FriendEventDeclined
		case parleyv1.FriendEvent_KIND_REMOVED:
			kind = FriendEventRemoved
		}
		return FriendEvent{Kind: kind, UserID: ev.GetUserId(), Username: ev.GetUsername()}
	case *parleyv1.Frame_TypingEvent:
		ev := b.TypingEvent
		return TypingEvent{Conversation: ev.GetConversation(), UserID: ev.GetUserId(), Username: ev.GetUsername()}
	case *parleyv1.Frame_Receipt:
		ev := b.Receipt
		return ReceiptEvent{Conversation: ev.GetConversation(), UserID: ev.GetUserId(), Seq: ev.GetSeq()}
	}
	return nil
}
