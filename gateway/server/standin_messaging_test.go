package server_test

// Stand-in for the messaging service.
//
// Like the auth and presence stand-ins (standins_test.go), this is not the
// messaging service (services/messaging; the gateway may not import it): a
// few NATS responders on the messaging subjects, in the queue group the
// real service uses, with just enough of its contract for the gateway's
// side to be observed. It records every request as received (subject,
// headers, body) and, like the real service, takes the sender only from
// the headers. Its rules are simplified stand-ins for the real ones:
//
//   - send: text "" -> EMPTY_MESSAGE; text over standInMaxText bytes ->
//     MESSAGE_TOO_LARGE; to_username "nobody" or open_direct "nobody" ->
//     NOT_FOUND; a "dm.<a>.<b>" conversation not naming the header's user
//     -> PERMISSION_DENIED; else the message is stored in memory with the
//     conversation's next seq.
//   - history: the stored messages with seq > after_seq (at most limit).
//   - ack: seq above the conversation's last seq -> INVALID_ARGUMENT.
//   - conversations: the room, then the user's direct conversations.
//   - open_direct: the direct conversation with "u-<username>".
//   - groups: create_group, join_group and rename_group answer a
//     Conversation "group.g1" titled by the request's name (or "g1"),
//     owned by the caller; invite and members answer the caller as owner
//     then "u-<username>" invitations; remove_member of "nobody" ->
//     NOT_FOUND; leave_group and remove_member answer an empty body.
//   - typing: rooms and groups -> INVALID_ARGUMENT; a direct conversation
//     not naming the header's user -> PERMISSION_DENIED; else a
//     TypingEvent from the header's user to the other member's
//     subject.UserTyping, and an empty body (no blocks, no rate limit).
//
// The integration tests in tests/ run the gateway against the real service.

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"

	"github.com/parleychat/parley/libs/rpc"
	"github.com/parleychat/parley/libs/subject"
	"github.com/parleychat/parley/protocol/convid"
	"github.com/parleychat/parley/protocol/errcode"
	"github.com/parleychat/parley/protocol/parleyv1"
)

// standInMaxText is the stand-in's text limit in bytes.
const standInMaxText = 100

type standInMessaging struct {
	subs []*nats.Subscription

	mu    sync.Mutex // guards the fields below
	calls []msgCall
	convs map[string][]*parleyv1.Message // by conversation id
	dms   map[string][]string            // user id -> direct conversation ids
	ids   uint64                         // last message id
}

// msgCall is one request as the stand-in received it.
type msgCall struct {
	subject string
	header  nats.Header
	data    []byte
}

func startStandInMessaging(t testing.TB, nc *nats.Conn) *standInMessaging {
	t.Helper()
	m := &standInMessaging{convs: map[string][]*parleyv1.Message{}, dms: map[string][]string{}}
	handle := func(subj string, h func(user, name string, data []byte) (proto.Message, error)) {
		s, err := nc.QueueSubscribe(subj, subject.QueueMessaging, func(msg *nats.Msg) {
			m.record(msg)
			reply, err := h(msg.Header.Get(subject.HeaderUserID), msg.Header.Get(subject.HeaderUsername), msg.Data)
			if err != nil {
				_ = rpc.RespondError(msg, err)
				return
			}
			_ = rpc.Respond(msg, reply)
		})
		if err != nil {
			t.Fatal(err)
		}
		m.subs = append(m.subs, s)
	}
	handle(subject.MsgSend, m.send)
	handle(subject.MsgHistory, m.history)
	handle(subject.MsgAck, m.ack)
	handle(subject.MsgConversations, m.conversations)
	handle(subject.MsgOpenDirect, m.openDirect)
	handle(subject.MsgCreateGroup, func(user, _ string, data []byte) (proto.Message, error) {
		req := new(parleyv1.CreateGroupRequest)
		if err := proto.Unmarshal(data, req); err != nil {
			return nil, errBadBody
		}
		return standInGroup(user, req.GetName()), nil
	})
	handle(subject.MsgJoinGroup, func(user, _ string, data []byte) (proto.Message, error) {
		if err := proto.Unmarshal(data, new(parleyv1.JoinGroupRequest)); err != nil {
			return nil, errBadBody
		}
		return standInGroup(user, ""), nil
	})
	handle(subject.MsgRenameGroup, func(user, _ string, data []byte) (proto.Message, error) {
		req := new(parleyv1.RenameGroupRequest)
		if err := proto.Unmarshal(data, req); err != nil {
			return nil, errBadBody
		}
		return standInGroup(user, req.GetName()), nil
	})
	handle(subject.MsgInvite, func(user, name string, data []byte) (proto.Message, error) {
		req := new(parleyv1.InviteRequest)
		if err := proto.Unmarshal(data, req); err != nil {
			return nil, errBadBody
		}
		return standInMembers(user, name, req.GetUsernames()), nil
	})
	handle(subject.MsgMembers, func(user, name string, data []byte) (proto.Message, error) {
		if err := proto.Unmarshal(data, new(parleyv1.MembersRequest)); err != nil {
			return nil, errBadBody
		}
		return standInMembers(user, name, nil), nil
	})
	handle(subject.MsgLeaveGroup, func(_, _ string, data []byte) (proto.Message, error) {
		if err := proto.Unmarshal(data, new(parleyv1.LeaveGroupRequest)); err != nil {
			return nil, errBadBody
		}
		return nil, nil
	})
	handle(subject.MsgRemoveMember, func(_, _ string, data []byte) (proto.Message, error) {
		req := new(parleyv1.RemoveMemberRequest)
		if err := proto.Unmarshal(data, req); err != nil {
			return nil, errBadBody
		}
		if req.GetUsername() == "nobody" {
			return nil, errcode.New(parleyv1.ErrorCode_ERROR_CODE_NOT_FOUND, "no user named nobody")
		}
		return nil, nil
	})
	handle(subject.MsgTyping, func(user, name string, data []byte) (proto.Message, error) {
		req := new(parleyv1.TypingRequest)
		if err := proto.Unmarshal(data, req); err != nil {
			return nil, errBadBody
		}
		conv := req.GetConversation()
		if convid.KindOf(conv) != convid.KindDirect {
			return nil, errcode.New(parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "typing indicators are for private chats")
		}
		id, err := convid.ParseFor(conv, user)
		if err != nil {
			return nil, errcode.New(parleyv1.ErrorCode_ERROR_CODE_PERMISSION_DENIED, "you are not in this conversation")
		}
		peer := id.Peer(user)
		b, _ := proto.Marshal(&parleyv1.TypingEvent{Conversation: conv, UserId: user, Username: name})
		return nil, nc.Publish(subject.UserTyping(peer), b)
	})
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.stop)
	return m
}

// stop unsubscribes: the messaging service is down.
func (m *standInMessaging) stop() {
	for _, s := range m.subs {
		_ = s.Unsubscribe()
	}
}

func (m *standInMessaging) record(msg *nats.Msg) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls = append(m.calls, msgCall{subject: msg.Subject, header: msg.Header, data: slices.Clone(msg.Data)})
}

// Calls returns the requests received so far.
func (m *standInMessaging) Calls() []msgCall {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.calls)
}

var errBadBody = errcode.New(parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "bad body")

// dmID is the direct conversation of two users.
func dmID(a, b string) string {
	id, _ := convid.DM(a, b)
	return id.String()
}

// member reports whether user may use conv: the public room or a private
// chat of theirs.
func member(user, conv string) bool {
	id, err := convid.ParseFor(conv, user)
	return err == nil && (conv == convid.PublicRoom || id.Kind() == convid.KindDirect)
}

func (m *standInMessaging) send(user, name string, data []byte) (proto.Message, error) {
	req := new(parleyv1.SendRequest)
	if err := proto.Unmarshal(data, req); err != nil {
		return nil, errBadBody
	}
	conv := req.GetConversation()
	if to := req.GetToUsername(); to != "" {
		if to == "nobody" {
			return nil, errcode.New(parleyv1.ErrorCode_ERROR_CODE_NOT_FOUND, "no user named nobody")
		}
		conv = dmID(user, "u-"+to)
	}
	switch {
	case req.GetText() == "":
		return nil, errcode.New(parleyv1.ErrorCode_ERROR_CODE_EMPTY_MESSAGE, "the message is empty")
	case len(req.GetText()) > standInMaxText:
		return nil, errcode.Newf(parleyv1.ErrorCode_ERROR_CODE_MESSAGE_TOO_LARGE, "the message is above %d bytes", standInMaxText)
	case !member(user, conv):
		return nil, errcode.New(parleyv1.ErrorCode_ERROR_CODE_PERMISSION_DENIED, "you are not in this conversation")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.ids++
	msg := &parleyv1.Message{
		Conversation: conv,
		Seq:          uint64(len(m.convs[conv]) + 1),
		Id:           m.ids,
		SenderId:     user,
		SenderName:   name,
		SentAtUnixMs: 1_700_000_000_000,
		Text:         req.GetText(),
		ClientKey:    req.GetClientKey(),
	}
	m.convs[conv] = append(m.convs[conv], msg)
	if id, _ := convid.Parse(conv); id.Kind() == convid.KindDirect && len(m.convs[conv]) == 1 {
		a, b := id.Users()
		m.dms[a] = append(m.dms[a], conv)
		m.dms[b] = append(m.dms[b], conv)
	}
	return &parleyv1.SendReply{Message: msg}, nil
}

func (m *standInMessaging) history(user, _ string, data []byte) (proto.Message, error) {
	req := new(parleyv1.HistoryRequest)
	if err := proto.Unmarshal(data, req); err != nil {
		return nil, errBadBody
	}
	if !member(user, req.GetConversation()) {
		return nil, errcode.New(parleyv1.ErrorCode_ERROR_CODE_PERMISSION_DENIED, "you are not in this conversation")
	}
	limit := int(req.GetLimit())
	if limit == 0 {
		limit = 50
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	all := m.convs[req.GetConversation()]
	reply := &parleyv1.HistoryReply{LastSeq: uint64(len(all))}
	for _, msg := range all {
		if msg.GetSeq() > req.GetAfterSeq() {
			if len(reply.Messages) == limit {
				reply.More = true
				break
			}
			reply.Messages = append(reply.Messages, msg)
		}
	}
	return reply, nil
}

func (m *standInMessaging) ack(user, _ string, data []byte) (proto.Message, error) {
	req := new(parleyv1.AckRequest)
	if err := proto.Unmarshal(data, req); err != nil {
		return nil, errBadBody
	}
	if !member(user, req.GetConversation()) {
		return nil, errcode.New(parleyv1.ErrorCode_ERROR_CODE_PERMISSION_DENIED, "you are not in this conversation")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if last := uint64(len(m.convs[req.GetConversation()])); req.GetSeq() > last {
		return nil, errcode.Newf(parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "seq %d is above the last message %d", req.GetSeq(), last)
	}
	return nil, nil
}

func (m *standInMessaging) conversations(user, _ string, data []byte) (proto.Message, error) {
	if err := proto.Unmarshal(data, new(parleyv1.ConversationsRequest)); err != nil {
		return nil, errBadBody
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	reply := &parleyv1.ConversationsReply{Conversations: []*parleyv1.Conversation{{
		Id: "room.public", Kind: parleyv1.ConversationKind_CONVERSATION_KIND_ROOM, Title: "public",
		LastSeq: uint64(len(m.convs["room.public"])),
	}}}
	for _, conv := range m.dms[user] {
		id, _ := convid.Parse(conv)
		peer := id.Peer(user)
		reply.Conversations = append(reply.Conversations, &parleyv1.Conversation{
			Id: conv, Kind: parleyv1.ConversationKind_CONVERSATION_KIND_DIRECT, Title: strings.TrimPrefix(peer, "u-"),
			LastSeq: uint64(len(m.convs[conv])), PeerId: peer,
		})
	}
	return reply, nil
}

func (m *standInMessaging) openDirect(user, _ string, data []byte) (proto.Message, error) {
	req := new(parleyv1.OpenDirectRequest)
	if err := proto.Unmarshal(data, req); err != nil {
		return nil, errBadBody
	}
	if req.GetUsername() == "nobody" {
		return nil, errcode.New(parleyv1.ErrorCode_ERROR_CODE_NOT_FOUND, fmt.Sprintf("no user named %s", req.GetUsername()))
	}
	peer := "u-" + req.GetUsername()
	if peer == user {
		return nil, errcode.New(parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "you cannot message yourself")
	}
	return &parleyv1.Conversation{Id: dmID(user, peer), Kind: parleyv1.ConversationKind_CONVERSATION_KIND_DIRECT, Title: req.GetUsername(), PeerId: peer}, nil
}

// standInGroup is the stand-in's one group, as the caller sees it.
func standInGroup(user, name string) *parleyv1.Conversation {
	if name == "" {
		name = "g1"
	}
	return &parleyv1.Conversation{Id: "group.g1", Kind: parleyv1.ConversationKind_CONVERSATION_KIND_GROUP, Title: name, OwnerId: user}
}

// standInMembers lists the caller as owner, then invited "u-<name>"s.
func standInMembers(user, name string, invited []string) *parleyv1.MembersReply {
	r := &parleyv1.MembersReply{Members: []*parleyv1.Member{{UserId: user, Username: name, Owner: true}}}
	for _, n := range invited {
		r.Members = append(r.Members, &parleyv1.Member{UserId: "u-" + n, Username: n, Invited: true})
	}
	return r
}
