package parley

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/parleychat/parley/protocol/convid"
	"github.com/parleychat/parley/protocol/parleyv1"
)

// PublicRoom is the id of the public room every user is in.
const PublicRoom = convid.PublicRoom

// Message is one stored chat message (docs/protocol.md §15). The server
// assigns Seq, ID, the sender and SentAt; nothing a client sends is
// trusted for them.
type Message struct {
	Conversation string
	// Seq numbers the conversation's messages 1, 2, 3, ... with no gaps.
	Seq uint64
	// ID is unique across all conversations.
	ID         uint64
	SenderID   string
	SenderName string
	SentAt     time.Time
	// Text is UTF-8 and may hold several lines.
	Text string
	// ClientKey is the sender's idempotency key.
	ClientKey string
	// System: written by the server about a change of a group (created,
	// invited, joined, left, removed, renamed); SenderID is who caused it.
	System bool
	// File is set when the message offers a file (Text is then its name):
	// the file as it was offered; Files or DownloadURL give its state now.
	File *FileInfo
	// Call is set on a call's system message (missed, declined, ended, a
	// group call started).
	Call *CallSummary
}

// ConversationKind tells the public room from private conversations.
type ConversationKind int

// Conversation kinds.
const (
	ConversationUnknown ConversationKind = iota
	ConversationRoom                     // everyone is a member
	ConversationDirect                   // a private chat between two users
	ConversationGroup
)

func (k ConversationKind) String() string {
	switch k {
	case ConversationRoom:
		return "room"
	case ConversationDirect:
		return "direct"
	case ConversationGroup:
		return "group"
	}
	return "unknown"
}

// Conversation is one of the user's conversations as the server lists it.
type Conversation struct {
	ID    string
	Kind  ConversationKind
	Title string // the room's name, or the other user's name
	// LastSeq is the newest message's seq (0: none yet); AckedSeq is how
	// far the user acknowledged, on any device.
	LastSeq  uint64
	AckedSeq uint64
	PeerID   string // direct: the other user's id
	// Invited: a group the user is invited to but has not joined (no
	// messages until JoinGroup). OwnerID: a group's owner.
	Invited bool
	OwnerID string
	// PeerAckedSeq: direct, how far the other user has seen (read
	// receipts; ReceiptEvent tells of later changes).
	PeerAckedSeq uint64
}

// Unread is how many messages the user has not acknowledged.
func (c Conversation) Unread() uint64 {
	if c.LastSeq <= c.AckedSeq {
		return 0
	}
	return c.LastSeq - c.AckedSeq
}

func messageFromWire(m *parleyv1.Message) Message {
	return Message{
		Conversation: m.GetConversation(),
		Seq:          m.GetSeq(),
		ID:           m.GetId(),
		SenderID:     m.GetSenderId(),
		SenderName:   m.GetSenderName(),
		SentAt:       unixMilli(m.GetSentAtUnixMs()),
		Text:         m.GetText(),
		ClientKey:    m.GetClientKey(),
		System:       m.GetSystem(),
		File:         fileFromWire(m.GetFile()),
		Call:         callSummaryFromWire(m.GetCall()),
	}
}

func conversationFromWire(c *parleyv1.Conversation) Conversation {
	kind := ConversationUnknown
	switch c.GetKind() {
	case parleyv1.ConversationKind_CONVERSATION_KIND_ROOM:
		kind = ConversationRoom
	case parleyv1.ConversationKind_CONVERSATION_KIND_DIRECT:
		kind = ConversationDirect
	case parleyv1.ConversationKind_CONVERSATION_KIND_GROUP:
		kind = ConversationGroup
	}
	return Conversation{
		ID:       c.GetId(),
		Kind:     kind,
		Title:    c.GetTitle(),
		LastSeq:  c.GetLastSeq(),
		AckedSeq: c.GetAckedSeq(),
		PeerID:   c.GetPeerId(),
		Invited:  c.GetInvited(),
		OwnerID:  c.GetOwnerId(),

		PeerAckedSeq: c.GetPeerAckedSeq(),
	}
}

// Send posts text to a conversation (PublicRoom, or a direct conversation's
// id) and returns the stored message. It is safe to retry: the request
// carries a fresh client key, and when the connection breaks before the
// reply, Send re-sends the same key after the reconnect, so the message is
// stored once. Errors include ErrEmptyMessage, ErrMessageTooLarge,
// ErrNotFound (no such conversation) and ErrPermissionDenied (a private
// conversation of others).
//
// The message also arrives as a MessageEvent, like everyone else's.
func (c *Client) Send(ctx context.Context, conversation, text string) (*Message, error) {
	return c.send(ctx, &parleyv1.SendRequest{Conversation: conversation, Text: text, ClientKey: newClientKey()})
}

// SendTo sends a private message to a user by name; the direct
// conversation is created on first use. ErrNotFound: no such user;
// ErrInvalidArgument: the user is oneself.
func (c *Client) SendTo(ctx context.Context, username, text string) (*Message, error) {
	return c.send(ctx, &parleyv1.SendRequest{ToUsername: username, Text: text, ClientKey: newClientKey()})
}

func (c *Client) send(ctx context.Context, req *parleyv1.SendRequest) (*Message, error) {
	m, err := sendWithRetry(ctx, c.do, req, c.log)
	if err != nil {
		return nil, err
	}
	// The reply is as good as the live event: if that event is lost, the
	// application still sees its message (and the tracker notices gaps).
	c.mu.Lock()
	c.offerLocked(m)
	c.mu.Unlock()
	return &m, nil
}

// maxSendAttempts bounds how often one Send is tried.
const maxSendAttempts = 10

// sendRetryPause is the wait before re-sending after a server-side
// UNAVAILABLE/TIMEOUT (a break needs none: do waits for the reconnect).
var sendRetryPause = 250 * time.Millisecond

// sendWithRetry sends req until it gets an answer that settles it. The
// request (and so its client_key) is the same on every attempt: the server
// stores a key once and answers a repeat with the first message, so a
// retry after an unknown outcome cannot post twice.
func sendWithRetry(ctx context.Context, do func(context.Context, *parleyv1.Frame) (*parleyv1.Frame, error), req *parleyv1.SendRequest, log interface{ Warn(string, ...any) }) (Message, error) {
	var err error
	for attempt := 1; attempt <= maxSendAttempts; attempt++ {
		var reply *parleyv1.Frame
		reply, err = do(ctx, &parleyv1.Frame{Body: &parleyv1.Frame_Send{Send: req}})
		if err == nil {
			r := reply.GetSendReply()
			if r == nil || r.GetMessage() == nil {
				return Message{}, fmt.Errorf("%w: expected SendReply, got %T", ErrProtocol, reply.GetBody())
			}
			return messageFromWire(r.GetMessage()), nil
		}
		if ctx.Err() != nil || !sendRetryable(err) {
			return Message{}, err
		}
		log.Warn("parley: send outcome unknown; retrying with the same key", "attempt", attempt, "err", err)
		if !errors.Is(err, ErrConnectionLost) {
			select {
			case <-time.After(sendRetryPause):
			case <-ctx.Done():
				return Message{}, err
			}
		}
	}
	return Message{}, err
}

// sendRetryable: the message may or may not have been stored, and asking
// again with the same key settles it.
func sendRetryable(err error) bool {
	return errors.Is(err, ErrConnectionLost) || errors.Is(err, ErrUnavailable) ||
		errors.Is(err, ErrTimeout) || errors.Is(err, ErrServerShutdown)
}

// newClientKey returns 16 random bytes, base64url: unique per message.
func newClientKey() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// History reads a page of a conversation's stored messages, oldest first:
// the page just before seq before (0: the newest messages), at most limit
// (0: the server's default of 50; at most 200). more says older messages
// remain: pass the smallest Seq returned as the next before. History does
// not emit events; it is for scrolling back.
func (c *Client) History(ctx context.Context, conversation string, before uint64, limit int) ([]Message, bool, error) {
	r, err := c.history(ctx, &parleyv1.HistoryRequest{Conversation: conversation, BeforeSeq: before, Limit: clampLimit(limit)})
	if err != nil {
		return nil, false, err
	}
	return messagesFromWire(r.GetMessages()), r.GetMore(), nil
}

// historyAfter reads the messages after seq after (0: from the first), at
// most limit, and the conversation's newest seq. after_seq has explicit
// presence on the wire, so after = 0 is sent and means "from the start".
func (c *Client) historyAfter(ctx context.Context, conversation string, after uint64, limit uint32) ([]Message, uint64, error) {
	req := &parleyv1.HistoryRequest{Conversation: conversation, AfterSeq: proto.Uint64(after), Limit: limit}
	r, err := c.history(ctx, req)
	if err != nil {
		return nil, 0, err
	}
	return messagesFromWire(r.GetMessages()), r.GetLastSeq(), nil
}

func (c *Client) history(ctx context.Context, req *parleyv1.HistoryRequest) (*parleyv1.HistoryReply, error) {
	reply, err := c.do(ctx, &parleyv1.Frame{Body: &parleyv1.Frame_History{History: req}})
	if err != nil {
		return nil, err
	}
	r := reply.GetHistoryReply()
	if r == nil {
		return nil, fmt.Errorf("%w: expected HistoryReply, got %T", ErrProtocol, reply.GetBody())
	}
	return r, nil
}

func clampLimit(n int) uint32 {
	switch {
	case n <= 0:
		return 0
	case n > 200:
		return 200
	}
	return uint32(n)
}

func messagesFromWire(ms []*parleyv1.Message) []Message {
	out := make([]Message, 0, len(ms))
	for _, m := range ms {
		out = append(out, messageFromWire(m))
	}
	return out
}

// Ack records that the user has seen a conversation up to seq; acks are
// shared by the user's devices, never move backwards, and drive unread
// counts. ErrInvalidArgument: seq is above the conversation's newest.
func (c *Client) Ack(ctx context.Context, conversation string, seq uint64) error {
	reply, err := c.do(ctx, &parleyv1.Frame{Body: &parleyv1.Frame_Ack{Ack: &parleyv1.AckRequest{Conversation: conversation, Seq: seq}}})
	if err != nil {
		return err
	}
	if reply.GetOk() == nil {
		return fmt.Errorf("%w: expected Ok, got %T", ErrProtocol, reply.GetBody())
	}
	return nil
}

// Conversations lists the user's conversations: the public room first,
// then the private conversations and groups (joined or invited to) in
// ascending id order, each with its unread count. The server sends the
// list in pages (docs/protocol.md §15.1); Conversations reads them all.
func (c *Client) Conversations(ctx context.Context) ([]Conversation, error) {
	var out []Conversation
	var room *Conversation
	after := ""
	for {
		reply, err := c.do(ctx, &parleyv1.Frame{Body: &parleyv1.Frame_Conversations{
			Conversations: &parleyv1.ConversationsRequest{AfterId: after, Limit: c.cfg.pageLimit(maxConvPage)}}})
		if err != nil {
			return nil, err
		}
		r := reply.GetConversationsReply()
		if r == nil {
			return nil, fmt.Errorf("%w: expected ConversationsReply, got %T", ErrProtocol, reply.GetBody())
		}
		for _, cv := range r.GetConversations() {
			// Each page continues after the last; anything else would
			// make this loop go round forever.
			if cv.GetId() <= after {
				return nil, fmt.Errorf("%w: conversation %q listed after %q", ErrProtocol, cv.GetId(), after)
			}
			after = cv.GetId()
			if cv.GetKind() == parleyv1.ConversationKind_CONVERSATION_KIND_ROOM && room == nil {
				r := conversationFromWire(cv)
				room = &r
				continue
			}
			out = append(out, conversationFromWire(cv))
		}
		if !r.GetMore() {
			break
		}
		if len(r.GetConversations()) == 0 {
			return nil, fmt.Errorf("%w: an empty conversation page with more to come", ErrProtocol)
		}
	}
	if room != nil {
		out = append([]Conversation{*room}, out...)
	}
	return out, nil
}

// maxConvPage is the most conversations a page may hold (protocol §15.2).
const maxConvPage = 500

// OpenDirect finds (or creates) the private conversation with a user.
// ErrNotFound: no such user; ErrInvalidArgument: the user is oneself.
func (c *Client) OpenDirect(ctx context.Context, username string) (*Conversation, error) {
	reply, err := c.do(ctx, &parleyv1.Frame{Body: &parleyv1.Frame_OpenDirect{OpenDirect: &parleyv1.OpenDirectRequest{Username: username}}})
	if err != nil {
		return nil, err
	}
	cv := reply.GetConversation()
	if cv == nil {
		return nil, fmt.Errorf("%w: expected Conversation, got %T", ErrProtocol, reply.GetBody())
	}
	out := conversationFromWire(cv)
	return &out, nil
}
