package conn

import (
	"google.golang.org/protobuf/proto"

	"github.com/parleychat/parley/libs/subject"
	"github.com/parleychat/parley/protocol/parleyv1"
)

// The messaging requests (docs/protocol.md §15) go to the messaging service
// with forward; the service owns every rule (membership, text limits,
// idempotency), the gateway only adds who is asking and maps the reply.

// sendMessage forwards a SendRequest; reply SendReply.
func (c *Conn) sendMessage(rid uint32, req *parleyv1.SendRequest) {
	reply := new(parleyv1.SendReply)
	if c.forward(rid, subject.MsgSend, req, reply) {
		c.send(&parleyv1.Frame{RequestId: rid, Body: &parleyv1.Frame_SendReply{SendReply: reply}})
	}
}

// history forwards a HistoryRequest; reply HistoryReply. A page may be
// large (up to 200 messages of up to 16 KiB), so, like a Who reply, it
// waits for room in the send queue instead of counting as overflow.
func (c *Conn) history(rid uint32, req *parleyv1.HistoryRequest) {
	reply := new(parleyv1.HistoryReply)
	if c.forward(rid, subject.MsgHistory, req, reply) {
		c.sendWait(&parleyv1.Frame{RequestId: rid, Body: &parleyv1.Frame_HistoryReply{HistoryReply: reply}})
	}
}

// conversations forwards a ConversationsRequest; reply ConversationsReply
// (one entry per direct conversation, so it may be large: it waits for
// room like history).
func (c *Conn) conversations(rid uint32, req *parleyv1.ConversationsRequest) {
	reply := new(parleyv1.ConversationsReply)
	if c.forward(rid, subject.MsgConversations, req, reply) {
		c.sendWait(&parleyv1.Frame{RequestId: rid, Body: &parleyv1.Frame_ConversationsReply{ConversationsReply: reply}})
	}
}

// forward sends req to subj on behalf of this connection's session and
// decodes the answer into reply (nil: the body is ignored). It reports
// whether the caller should send the reply; otherwise the client already
// got its Error: UNAUTHENTICATED without a session, the service's error
// with its code and message, or, for a request too large for the message
// bus, MESSAGE_TOO_LARGE (send) or INVALID_ARGUMENT (bus.go).
//
// The body is the client's request as decoded, unknown fields included, so
// a field a newer client and service know passes an older gateway. Who is
// asking travels only in the headers (identity), built from the session:
// services read the sender from there and from nowhere in the body.
func (c *Conn) forward(rid uint32, subj string, req, reply proto.Message) bool {
	s := c.session()
	if s == nil {
		c.sendError(rid, parleyv1.ErrorCode_ERROR_CODE_UNAUTHENTICATED, "log in or resume first")
		return false
	}
	ctx, cancel := c.requestContext()
	defer cancel()
	if err := c.busRequest(ctx, subj, c.identity(s), req, reply, tooLargeCode(subj)); err != nil {
		c.sendErr(rid, err)
		return false
	}
	return true
}
