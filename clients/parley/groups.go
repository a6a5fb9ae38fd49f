package parley

import (
	"context"
	"fmt"

	"github.com/parleychat/parley/protocol/parleyv1"
)

// Groups (docs/protocol.md §16). A group is a conversation with a name, an
// owner and members; its id is "group.<id>". Any member may invite; an
// invited user lists the group with Conversation.Invited set, reads and
// posts nothing until JoinGroup, and may decline with LeaveGroup. The owner
// removes members and renames the group. Every change is also a message in
// the group's history with Message.System set (its sender is who caused
// it), delivered like any message; an invitee receives the one that
// invites them.
//
// Group messages take part in the Client's delivery guarantee like private
// messages: in seq order, once each, no gaps, from the user's ack on. For a
// group the user is invited to, the Client starts at the first message it
// receives (the invitation); after joining it catches up from there.

// Member is a user in a group: a member, or Invited (not joined yet).
type Member struct {
	UserID   string
	Username string
	Owner    bool
	Invited  bool
}

func membersFromWire(ms []*parleyv1.Member) []Member {
	out := make([]Member, 0, len(ms))
	for _, m := range ms {
		out = append(out, Member{UserID: m.GetUserId(), Username: m.GetUsername(), Owner: m.GetOwner(), Invited: m.GetInvited()})
	}
	return out
}

// CreateGroup creates a group named name (1-64 printable characters),
// owned by the caller, who is its first member, and invites usernames.
// ErrInvalidName: a bad name; ErrNotFound: an unknown user; ErrBlocked:
// one of them blocked the caller; ErrQuotaExceeded: the caller is in as
// many groups as allowed, or one of them holds as many invitations as
// allowed; ErrRateLimited: too many groups or invitations lately (nothing
// is created on any of these).
func (c *Client) CreateGroup(ctx context.Context, name string, usernames ...string) (*Conversation, error) {
	return c.groupConversation(ctx, &parleyv1.Frame{Body: &parleyv1.Frame_CreateGroup{CreateGroup: &parleyv1.CreateGroupRequest{Name: name, Usernames: usernames}}})
}

// Invite invites users to a group and returns its members and invitations
// after the change. Only members may invite (ErrPermissionDenied);
// ErrNotFound: an unknown user; ErrAlreadyMember: one of them is a
// member; ErrBlocked: one of them blocked the caller; ErrQuotaExceeded: one
// of them holds as many invitations as allowed; ErrRateLimited: too many
// invitations lately (on any of these nobody is invited). Inviting someone
// already invited changes nothing.
func (c *Client) Invite(ctx context.Context, conversation string, usernames ...string) ([]Member, error) {
	return c.members(ctx, &parleyv1.Frame{Body: &parleyv1.Frame_Invite{Invite: &parleyv1.InviteRequest{Conversation: conversation, Usernames: usernames}}})
}

// JoinGroup accepts an invitation. ErrPermissionDenied: no invitation;
// ErrAlreadyMember: already a member; ErrQuotaExceeded: in as many groups
// as allowed (leave one first; the invitation stays).
func (c *Client) JoinGroup(ctx context.Context, conversation string) (*Conversation, error) {
	return c.groupConversation(ctx, &parleyv1.Frame{Body: &parleyv1.Frame_JoinGroup{JoinGroup: &parleyv1.JoinGroupRequest{Conversation: conversation}}})
}

// LeaveGroup leaves a group or declines an invitation. An owner who leaves
// hands the group to the longest-standing member; the last member leaving
// ends the group.
func (c *Client) LeaveGroup(ctx context.Context, conversation string) error {
	return c.okRequest(ctx, &parleyv1.Frame{Body: &parleyv1.Frame_LeaveGroup{LeaveGroup: &parleyv1.LeaveGroupRequest{Conversation: conversation}}})
}

// RemoveMember removes a member or withdraws an invitation; owner only
// (ErrPermissionDenied otherwise). ErrNotFound: the user is not in the
// group.
func (c *Client) RemoveMember(ctx context.Context, conversation, username string) error {
	return c.okRequest(ctx, &parleyv1.Frame{Body: &parleyv1.Frame_RemoveMember{RemoveMember: &parleyv1.RemoveMemberRequest{Conversation: conversation, Username: username}}})
}

// RenameGroup renames a group; owner only. ErrInvalidName: a bad name.
func (c *Client) RenameGroup(ctx context.Context, conversation, name string) (*Conversation, error) {
	return c.groupConversation(ctx, &parleyv1.Frame{Body: &parleyv1.Frame_RenameGroup{RenameGroup: &parleyv1.RenameGroupRequest{Conversation: conversation, Name: name}}})
}

// Members lists a group's members in join order (the owner marked), then
// its invitations; members only.
func (c *Client) Members(ctx context.Context, conversation string) ([]Member, error) {
	return c.members(ctx, &parleyv1.Frame{Body: &parleyv1.Frame_Members{Members: &parleyv1.MembersRequest{Conversation: conversation}}})
}

func (c *Client) groupConversation(ctx context.Context, f *parleyv1.Frame) (*Conversation, error) {
	reply, err := c.do(ctx, f)
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

func (c *Client) members(ctx context.Context, f *parleyv1.Frame) ([]Member, error) {
	reply, err := c.do(ctx, f)
	if err != nil {
		return nil, err
	}
	r := reply.GetMembersReply()
	if r == nil {
		return nil, fmt.Errorf("%w: expected MembersReply, got %T", ErrProtocol, reply.GetBody())
	}
	return membersFromWire(r.GetMembers()), nil
}

func (c *Client) okRequest(ctx context.Context, f *parleyv1.Frame) error {
	reply, err := c.do(ctx, f)
	if err != nil {
		return err
	}
	if reply.GetOk() == nil {
		return fmt.Errorf("%w: expected Ok, got %T", ErrProtocol, reply.GetBody())
	}
	return nil
}
