package conn

import (
	"google.golang.org/protobuf/proto"

	"github.com/parleychat/parley/libs/subject"
	"github.com/parleychat/parley/protocol/parleyv1"
)

// The friend requests (docs/protocol.md §17) go to the messaging service
// like the group ones (forward): add_friend, answer_friend, remove_friend,
// block, unblock -> Ok; friends -> FriendsReply. So does typing
// (subject.MsgTyping -> Ok): messaging checks membership, blocks and the
// typist's rate and publishes the TypingEvent to the other member; the
// gateway keeps no typing state.

// toFriends forwards a FriendsRequest; reply FriendsReply (one entry per
// relation, so it may be large: it waits for room like history).
func (c *Conn) toFriends(rid uint32, req proto.Message) {
	reply := new(parleyv1.FriendsReply)
	if c.forward(rid, subject.MsgFriends, req, reply) {
		c.sendWait(&parleyv1.Frame{RequestId: rid, Body: &parleyv1.Frame_FriendsReply{FriendsReply: reply}})
	}
}
