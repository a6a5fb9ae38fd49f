package conn

import (
	"google.golang.org/protobuf/proto"

	"github.com/parleychat/parley/protocol/parleyv1"
)

// The group requests (docs/protocol.md §16) go to the messaging service
// like the other messaging requests (forward): the service owns every rule
// (membership, ownership, names); the gateway adds who asks and maps the
// reply: create_group, join_group, rename_group -> Conversation; invite,
// members -> MembersReply; leave_group, remove_member -> Ok.

// toConversation forwards req to subj; reply Conversation.
func (c *Conn) toConversation(rid uint32, subj string, req proto.Message) {
	reply := new(parleyv1.Conversation)
	if c.forward(rid, subj, req, reply) {
		c.send(&parleyv1.Frame{RequestId: rid, Body: &parleyv1.Frame_Conversation{Conversation: reply}})
	}
}

// toMembers forwards req to subj; reply MembersReply (a large group's list
// is large: it waits for room in the send queue like history).
func (c *Conn) toMembers(rid uint32, subj string, req proto.Message) {
	reply := new(parleyv1.MembersReply)
	if c.forward(rid, subj, req, reply) {
		c.sendWait(&parleyv1.Frame{RequestId: rid, Body: &parleyv1.Frame_MembersReply{MembersReply: reply}})
	}
}

// toOk forwards req to subj; the service answers with an empty body, the
// client gets Ok.
func (c *Conn) toOk(rid uint32, subj string, req proto.Message) {
	if c.forward(rid, subj, req, nil) {
		c.send(&parleyv1.Frame{RequestId: rid, Body: &parleyv1.Frame_Ok{Ok: &parleyv1.Ok{}}})
	}
}
