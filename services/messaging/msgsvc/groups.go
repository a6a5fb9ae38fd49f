package msgsvc

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"

	"github.com/parleychat/parley/protocol/convid"
	"github.com/parleychat/parley/protocol/parleyv1"
	"github.com/parleychat/parley/services/messaging/internal/store"
)

// Groups (docs/protocol.md §16).
//
// The group record in subject.BucketGroups is the truth about a group:
// name, owner, members in join order and invitations. Every change is a
// compare-and-set on the record's revision (store.UpdateGroup): the rule
// checks run inside the edit against the record as written, and a change
// that lost a race is re-checked and re-applied on the newer record, so
// concurrent changes on several replicas are all kept and never break a
// rule (no two owners, no member who is also invited).
//
// After the record, each change writes:
//   - the users' entries in subject.BucketConvs (the per-user index that
//     ConversationsReply reads; checked against the record when read, so
//     an entry left stale by a replica dying here is harmless), and
//   - a system message in the group's history (Message.system, sender =
//     who caused it), appended like any message (per-conversation seq) and
//     delivered to the members, plus the user it concerns (an invitee
//     learns of the invitation, a removed member of the removal). Its
//     de-duplication id is derived from the record's revision, so it is
//     stored once per change.
//
// A change that took effect is answered with success even if its system
// message could not be stored (logged): the client must not retry a change
// that happened.

// handleCreateGroup creates a group owned by the caller, inviting the
// given users. Reply: the Conversation.
func (s *Service) handleCreateGroup(ctx context.Context, m *nats.Msg) (proto.Message, error) {
	me, err := identityOf(m)
	if err != nil {
		return nil, err
	}
	var req parleyv1.CreateGroupRequest
	if err := proto.Unmarshal(m.Data, &req); err != nil {
		return nil, errMalformed
	}
	name, err := checkGroupName(req.Name)
	if err != nil {
		return nil, err
	}
	invitees, err := s.lookupAll(ctx, me, req.Usernames, false)
	if err != nil {
		return nil, err
	}
	g := store.Group{Name: name, Owner: me.id, Members: []store.GroupUser{{ID: me.id, Name: me.name}}}
	for _, u := range invitees {
		if u.ID != me.id {
			u.By = me.id
			g.Invited = append(g.Invited, u)
		}
	}
	if err := s.checkGroupQuota(ctx, me.id); err != nil {
		return nil, err
	}
	// The creation is charged last, once nothing else refuses it.
	if err := s.take(limitCreate, me.id, 1); err != nil {
		return nil, err
	}
	if err := s.admitInvitees(ctx, me, g.Invited); err != nil {
		s.limits.create.Refund(me.id)
		return nil, err
	}
	var (
		gid string
		res store.GroupResult
	)
	for range 3 { // a collision of 100 random bits does not happen; bound it anyway
		gid = newGroupID()
		if res, err = s.store.CreateGroup(ctx, gid, g); !errors.Is(err, store.ErrGroupExists) {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	gconv, err := convid.Group(gid)
	if err != nil {
		return nil, err // cannot happen: newGroupID makes a plain token
	}
	conv := gconv.String()
	if err := s.store.PutGroupMembership(ctx, me.id, conv, false); err != nil {
		return nil, err
	}
	for _, u := range g.Invited {
		if err := s.store.PutGroupMembership(ctx, u.ID, conv, true); err != nil {
			return nil, err
		}
	}
	s.announce(ctx, conv, res, "create", me, fmt.Sprintf("%s created the group %q", me.name, name), nil)
	for _, u := range g.Invited {
		s.announce(ctx, conv, res, "invite."+u.ID, me, fmt.Sprintf("%s invited %s", me.name, u.Name), []string{u.ID})
	}
	return s.groupConversation(ctx, conv, res.Group, me.id)
}

// handleInvite invites users to a group; members only. Users already
// invited stay invited (no new notice); a member is ALREADY_MEMBER (and
// nobody in the request is invited). Reply: MembersReply after the change.
func (s *Service) handleInvite(ctx context.Context, m *nats.Msg) (proto.Message, error) {
	me, err := identityOf(m)
	if err != nil {
		return nil, err
	}
	var req parleyv1.InviteRequest
	if err := proto.Unmarshal(m.Data, &req); err != nil {
		return nil, errMalformed
	}
	conv, gid, err := groupTarget(req.Conversation)
	if err != nil {
		return nil, err
	}
	// Membership first, so that a non-member learns nothing about users.
	g, err := s.memberOf(ctx, gid, me.id)
	if err != nil {
		return nil, err
	}
	users, err := s.lookupAll(ctx, me, req.Usernames, true)
	if err != nil {
		return nil, err
	}
	// Who would be invited, as the record reads now (the edit below
	// decides again on the record it writes).
	var fresh []store.GroupUser
	for _, u := range users {
		switch {
		case g.Member(u.ID):
			return nil, errAlreadyMember
		case !g.IsInvited(u.ID):
			fresh = append(fresh, u)
		}
	}
	if err := s.admitInvitees(ctx, me, fresh); err != nil {
		return nil, err
	}
	var added []store.GroupUser
	_, after, err := s.store.UpdateGroup(ctx, gid, func(g *store.Group) error {
		added = added[:0]
		if !g.Member(me.id) {
			return errNotMember
		}
		for _, u := range users {
			switch {
			case g.Member(u.ID):
				return errAlreadyMember
			case g.IsInvited(u.ID):
			default:
				u.By = me.id
				g.Invited = append(g.Invited, u)
				added = append(added, u)
			}
		}
		if len(added) == 0 {
			return store.ErrNoChange
		}
		return nil
	})
	if err != nil && !errors.Is(err, store.ErrNoChange) {
		return nil, groupErr(err)
	}
	for _, u := range added {
		if err := s.store.PutGroupMembership(ctx, u.ID, conv, true); err != nil {
			return nil, err
		}
	}
	for _, u := range added {
		s.announce(ctx, conv, after, "invite."+u.ID, me, fmt.Sprintf("%s invited %s", me.name, u.Name), []string{u.ID})
	}
	return membersReply(after.Group), nil
}

// handleJoinGroup accepts an invitation. Reply: the Conversation.
func (s *Service) handleJoinGroup(ctx context.Context, m *nats.Msg) (proto.Message, error) {
	me, err := identityOf(m)
	if err != nil {
		return nil, err
	}
	var req parleyv1.JoinGroupRequest
	if err := proto.Unmarshal(m.Data, &req); err != nil {
		return nil, errMalformed
	}
	conv, gid, err := groupTarget(req.Conversation)
	if err != nil {
		return nil, err
	}
	// The group cap applies to an invitee about to join; anyone else gets
	// the edit's answer below.
	if cur, err := s.store.Group(ctx, gid); err == nil && cur.Group.IsInvited(me.id) && !cur.Group.Member(me.id) {
		if err := s.checkGroupQuota(ctx, me.id); err != nil {
			return nil, err
		}
	}
	_, after, err := s.store.UpdateGroup(ctx, gid, func(g *store.Group) error {
		switch {
		case g.Member(me.id):
			return errAlreadyMember
		case !g.IsInvited(me.id):
			return errNotInvited
		}
		g.Invited = slices.DeleteFunc(g.Invited, func(u store.GroupUser) bool { return u.ID == me.id })
		g.Members = append(g.Members, store.GroupUser{ID: me.id, Name: me.name})
		return nil
	})
	if err != nil {
		return nil, groupErr(err)
	}
	if err := s.store.PutGroupMembership(ctx, me.id, conv, false); err != nil {
		return nil, err
	}
	s.announce(ctx, conv, after, "join", me, me.name+" joined", nil)
	return s.groupConversation(ctx, conv, after.Group, me.id)
}

// handleLeaveGroup leaves a group or declines an invitation. An owner who
// leaves hands the group to the longest-standing member; the last member
// leaving ends the group (its invitations with it). Reply: empty.
func (s *Service) handleLeaveGroup(ctx context.Context, m *nats.Msg) (proto.Message, error) {
	me, err := identityOf(m)
	if err != nil {
		return nil, err
	}
	var req parleyv1.LeaveGroupRequest
	if err := proto.Unmarshal(m.Data, &req); err != nil {
		return nil, errMalformed
	}
	conv, gid, err := groupTarget(req.Conversation)
	if err != nil {
		return nil, err
	}
	var declined bool
	before, after, err := s.store.UpdateGroup(ctx, gid, func(g *store.Group) error {
		declined = false
		switch {
		case g.IsInvited(me.id):
			declined = true
			g.Invited = slices.DeleteFunc(g.Invited, func(u store.GroupUser) bool { return u.ID == me.id })
			return nil
		case !g.Member(me.id):
			return errNotMember
		}
		g.Members = slices.DeleteFunc(g.Members, func(u store.GroupUser) bool { return u.ID == me.id })
		if len(g.Members) == 0 {
			return store.ErrEndGroup
		}
		if g.Owner == me.id {
			g.Owner = g.Members[0].ID
		}
		return nil
	})
	ended := errors.Is(err, store.ErrEndGroup)
	if err != nil && !ended {
		return nil, groupErr(err)
	}
	if err := s.store.DeleteMembership(ctx, me.id, conv); err != nil {
		return nil, err
	}
	switch {
	case declined:
		s.announce(ctx, conv, after, "decline", me, me.name+" declined the invitation", []string{me.id})
	case ended:
		// Nobody is left to read it; stored for the record, after which
		// the group no longer exists (NOT_FOUND).
		for _, u := range before.Group.Invited {
			if err := s.store.DeleteMembership(ctx, u.ID, conv); err != nil {
				s.log.Warn("invitation of an ended group not removed", "conversation", conv, "user_id", u.ID, "err", err)
			}
		}
		s.announce(ctx, conv, store.GroupResult{Revision: before.Revision}, "end", me, me.name+" left; the group has ended", []string{me.id})
	default:
		text := me.name + " left"
		if before.Group.Owner == me.id {
			text += "; " + nameOf(after.Group, after.Group.Owner) + " now owns the group"
		}
		s.announce(ctx, conv, after, "leave", me, text, []string{me.id})
	}
	return nil, nil
}

// handleRemoveMember removes a member or withdraws an invitation; owner
// only. Reply: empty.
func (s *Service) handleRemoveMember(ctx context.Context, m *nats.Msg) (proto.Message, error) {
	me, err := identityOf(m)
	if err != nil {
		return nil, err
	}
	var req parleyv1.RemoveMemberRequest
	if err := proto.Unmarshal(m.Data, &req); err != nil {
		return nil, errMalformed
	}
	conv, gid, err := groupTarget(req.Conversation)
	if err != nil {
		return nil, err
	}
	if req.Username == "" {
		return nil, errNoUsername
	}
	if _, err := s.ownerOf(ctx, gid, me.id); err != nil {
		return nil, err
	}
	target, err := s.lookup(ctx, me, req.Username)
	if err != nil {
		return nil, err
	}
	if target.UserId == me.id {
		return nil, errRemoveSelf
	}
	var wasInvited bool
	_, after, err := s.store.UpdateGroup(ctx, gid, func(g *store.Group) error {
		is := func(u store.GroupUser) bool { return u.ID == target.UserId }
		switch {
		case !g.Member(me.id):
			return errNotMember
		case g.Owner != me.id:
			return errNotOwner
		case g.Member(target.UserId):
			wasInvited = false
			g.Members = slices.DeleteFunc(g.Members, is)
		case g.IsInvited(target.UserId):
			wasInvited = true
			g.Invited = slices.DeleteFunc(g.Invited, is)
		default:
			return errNotInGroup
		}
		return nil
	})
	if err != nil {
		return nil, groupErr(err)
	}
	if err := s.store.DeleteMembership(ctx, target.UserId, conv); err != nil {
		return nil, err
	}
	text := fmt.Sprintf("%s removed %s", me.name, target.Username)
	if wasInvited {
		text = fmt.Sprintf("%s withdrew the invitation of %s", me.name, target.Username)
	}
	s.announce(ctx, conv, after, "remove."+target.UserId, me, text, []string{target.UserId})
	return nil, nil
}

// handleRenameGroup renames a group; owner only. Reply: the Conversation.
func (s *Service) handleRenameGroup(ctx context.Context, m *nats.Msg) (proto.Message, error) {
	me, err := identityOf(m)
	if err != nil {
		return nil, err
	}
	var req parleyv1.RenameGroupRequest
	if err := proto.Unmarshal(m.Data, &req); err != nil {
		return nil, errMalformed
	}
	conv, gid, err := groupTarget(req.Conversation)
	if err != nil {
		return nil, err
	}
	name, err := checkGroupName(req.Name)
	if err != nil {
		return nil, err
	}
	_, after, err := s.store.UpdateGroup(ctx, gid, func(g *store.Group) error {
		switch {
		case !g.Member(me.id):
			return errNotMember
		case g.Owner != me.id:
			return errNotOwner
		case g.Name == name:
			return store.ErrNoChange
		}
		g.Name = name
		return nil
	})
	switch {
	case errors.Is(err, store.ErrNoChange):
	case err != nil:
		return nil, groupErr(err)
	default:
		s.announce(ctx, conv, after, "rename", me, fmt.Sprintf("%s renamed the group to %q", me.name, name), nil)
	}
	return s.groupConversation(ctx, conv, after.Group, me.id)
}

// handleMembers lists a group's members (join order, the owner marked)
// then its invitations; members only.
func (s *Service) handleMembers(ctx context.Context, m *nats.Msg) (proto.Message, error) {
	me, err := identityOf(m)
	if err != nil {
		return nil, err
	}
	var req parleyv1.MembersRequest
	if err := proto.Unmarshal(m.Data, &req); err != nil {
		return nil, errMalformed
	}
	_, gid, err := groupTarget(req.Conversation)
	if err != nil {
		return nil, err
	}
	g, err := s.memberOf(ctx, gid, me.id)
	if err != nil {
		return nil, err
	}
	return membersReply(g), nil
}

// groupTarget checks a group request's conversation id.
func groupTarget(conv string) (string, string, error) {
	if conv == "" {
		return "", "", errGroupNoTarget
	}
	gid, ok := groupIDOf(conv)
	if !ok {
		return "", "", errNoGroup
	}
	return conv, gid, nil
}

// memberOf reads the group and checks that uid is a member.
func (s *Service) memberOf(ctx context.Context, gid, uid string) (store.Group, error) {
	g, err := s.store.Group(ctx, gid)
	if err != nil {
		return store.Group{}, groupErr(err)
	}
	if !g.Group.Member(uid) {
		return store.Group{}, errNotMember
	}
	return g.Group, nil
}

// ownerOf reads the group and checks that uid owns it (a non-member is
// told PERMISSION_DENIED as a non-member).
func (s *Service) ownerOf(ctx context.Context, gid, uid string) (store.Group, error) {
	g, err := s.memberOf(ctx, gid, uid)
	if err != nil {
		return g, err
	}
	if g.Owner != uid {
		return g, errNotOwner
	}
	return g, nil
}

// groupErr maps store errors of a group operation to wire errors; wire
// errors returned by an edit pass through.
func groupErr(err error) error {
	switch {
	case errors.Is(err, store.ErrNoGroup):
		return errNoGroup
	case errors.Is(err, store.ErrBusy):
		return errBusy
	}
	return err
}

// lookupAll resolves usernames (each once, in order) at the auth service
// for user me, charging one lookup per name before asking (all or none).
// With required, at least one must be given.
func (s *Service) lookupAll(ctx context.Context, me user, names []string, required bool) ([]store.GroupUser, error) {
	if required && len(names) == 0 {
		return nil, errNoUsernames
	}
	if len(names) > maxInvitesPerRequest {
		return nil, errTooManyInvites
	}
	if slices.Contains(names, "") {
		return nil, errNoUsername
	}
	if err := s.take(limitLookup, me.id, len(names)); err != nil {
		return nil, err
	}
	var out []store.GroupUser
	for _, n := range names {
		u, err := s.resolveName(ctx, n)
		if err != nil {
			return nil, err
		}
		if !slices.ContainsFunc(out, func(g store.GroupUser) bool { return g.ID == u.UserId }) {
			out = append(out, store.GroupUser{ID: u.UserId, Name: u.Username})
		}
	}
	return out, nil
}

// admitInvitees checks that me may invite users (none of them members or
// invited yet): none blocked me (BLOCKED, as for a private message), none
// holds Config.MaxPendingInvites invitations (QUOTA_EXCEEDED); then it
// charges one invitation per user to me's invite budget (RATE_LIMITED).
// Any refusal refuses the whole request: nobody is invited.
func (s *Service) admitInvitees(ctx context.Context, me user, users []store.GroupUser) error {
	for _, u := range users {
		if blocked, err := s.blockedBy(ctx, u.ID, me.id); err != nil {
			return friendErr(err)
		} else if blocked {
			return errBlockedInvite(u.Name)
		}
	}
	for _, u := range users {
		if err := s.checkInviteeQuota(ctx, u); err != nil {
			return err
		}
	}
	return s.take(limitInvite, me.id, len(users))
}

// announce stores a system message about a change of the group and
// delivers it to the members after the change and to alsoTo. what names
// the change within one record revision (the de-duplication id is
// "sys:<conv>:<revision>:<what>", so a change is announced once).
func (s *Service) announce(ctx context.Context, conv string, rec store.GroupResult, what string, by user, text string, alsoTo []string) {
	msg := &parleyv1.Message{
		Conversation: conv,
		SenderId:     by.id,
		SenderName:   by.name,
		SentAtUnixMs: s.now().UnixMilli(),
		Text:         text,
		System:       true,
	}
	msgID := "sys:" + conv + ":" + strconv.FormatUint(rec.Revision, 10) + ":" + what
	target := conversation{id: conv, kind: parleyv1.ConversationKind_CONVERSATION_KIND_GROUP,
		members: rec.Group.MemberIDs(), alsoTo: alsoTo}
	res, err := s.store.Append(ctx, msg, msgID, func(m *parleyv1.Message) { s.deliver(target, m) })
	s.metrics.conflicts.Add(float64(res.Conflicts))
	if err != nil {
		s.log.Warn("group system message not stored", "conversation", conv, "text", text, "err", err)
		return
	}
	if res.Duplicate {
		s.deliver(target, res.Message)
	} else {
		s.metrics.stored.WithLabelValues(kindLabel(parleyv1.ConversationKind_CONVERSATION_KIND_GROUP)).Inc()
	}
}

// groupConversation is the Conversation of group conv as uid sees it.
func (s *Service) groupConversation(ctx context.Context, conv string, g store.Group, uid string) (*parleyv1.Conversation, error) {
	out := &parleyv1.Conversation{Id: conv, Kind: parleyv1.ConversationKind_CONVERSATION_KIND_GROUP,
		Title: g.Name, OwnerId: g.Owner, Invited: !g.Member(uid) && g.IsInvited(uid)}
	if out.Invited {
		return out, nil // an invitee reads nothing: no seqs to tell
	}
	var err error
	if out.LastSeq, err = s.store.LastSeq(ctx, conv); err != nil {
		return nil, err
	}
	if out.AckedSeq, err = s.store.Cursor(ctx, uid, conv); err != nil {
		return nil, err
	}
	return out, nil
}

// listedGroup is the ConversationsReply entry of uid's membership entry
// mb, checked against the group record; nil when the entry is stale (the
// group ended, uid left or was removed) or the record cannot be read
// (logged: one unreadable group does not hide the others).
func (s *Service) listedGroup(ctx context.Context, uid string, mb store.Member) *parleyv1.Conversation {
	gid, ok := groupIDOf(mb.Conversation)
	if !ok {
		return nil
	}
	g, err := s.store.Group(ctx, gid)
	if err != nil {
		if !errors.Is(err, store.ErrNoGroup) {
			s.log.Warn("group not listed", "conversation", mb.Conversation, "err", err)
		}
		return nil
	}
	member, invited := g.Group.Member(uid), g.Group.IsInvited(uid)
	if !member && !invited {
		return nil
	}
	return &parleyv1.Conversation{Id: mb.Conversation, Kind: parleyv1.ConversationKind_CONVERSATION_KIND_GROUP,
		Title: g.Group.Name, OwnerId: g.Group.Owner, Invited: !member}
}

// membersReply lists the members in join order, then the invitations.
func membersReply(g store.Group) *parleyv1.MembersReply {
	out := &parleyv1.MembersReply{}
	for _, u := range g.Members {
		out.Members = append(out.Members, &parleyv1.Member{UserId: u.ID, Username: u.Name, Owner: u.ID == g.Owner})
	}
	for _, u := range g.Invited {
		out.Members = append(out.Members, &parleyv1.Member{UserId: u.ID, Username: u.Name, Invited: true})
	}
	return out
}

// nameOf is the name of member uid of g, or uid if not found.
func nameOf(g store.Group, uid string) string {
	for _, u := range g.Members {
		if u.ID == uid {
			return u.Name
		}
	}
	return uid
}
