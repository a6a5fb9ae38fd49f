package msgsvc

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/parleychat/parley/protocol/convid"
	"github.com/parleychat/parley/protocol/errcode"
	"github.com/parleychat/parley/protocol/parleyv1"
	"github.com/parleychat/parley/services/messaging/internal/store"
)

// Group conversations (docs/protocol.md §16) are "group.<gid>"
// (convid.Group), gid = "g" + 20 lowercase base32 characters (100 random
// bits): a subject token and KV key part, unguessable, so probing ids
// learns nothing.
const (
	groupIDChars  = 20
	maxGroupName  = 64
	groupIDLetter = 'g'
)

// Wire errors of the group requests.
var (
	errNoGroup        = errcode.New(parleyv1.ErrorCode_ERROR_CODE_NOT_FOUND, "no such group")
	errNotOwner       = errcode.New(parleyv1.ErrorCode_ERROR_CODE_PERMISSION_DENIED, "only the group's owner may do that")
	errNotInvited     = errcode.New(parleyv1.ErrorCode_ERROR_CODE_PERMISSION_DENIED, "you have no invitation to this group")
	errAlreadyMember  = errcode.New(parleyv1.ErrorCode_ERROR_CODE_ALREADY_MEMBER, "already a member of the group")
	errBadGroupName   = errcode.Newf(parleyv1.ErrorCode_ERROR_CODE_INVALID_NAME, "a group name is 1 to %d printable characters", maxGroupName)
	errNotInGroup     = errcode.New(parleyv1.ErrorCode_ERROR_CODE_NOT_FOUND, "that user is neither a member of nor invited to the group")
	errRemoveSelf     = errcode.New(parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "leave the group instead of removing yourself")
	errGroupNoTarget  = errcode.New(parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "conversation is required")
	errNoUsernames    = errcode.New(parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "give at least one username")
	errTooManyInvites = errcode.Newf(parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "at most %d users per request", maxInvitesPerRequest)
)

// errBlockedInvite: invitee blocked the inviter. Like a private message to
// someone who blocked the sender, it is refused with BLOCKED and nothing
// changes.
func errBlockedInvite(name string) error {
	return errcode.Newf(parleyv1.ErrorCode_ERROR_CODE_BLOCKED, "%s does not accept your invitations", name)
}

// maxInvitesPerRequest bounds the lookups and system messages one request
// causes.
const maxInvitesPerRequest = 100

var groupIDEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// newGroupID returns a fresh random group id.
func newGroupID() string {
	var b [13]byte         // 104 bits; 20 characters keep 100 of them
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	return string(groupIDLetter) + groupIDEncoding.EncodeToString(b[:])[:groupIDChars]
}

// groupIDOf returns the group id of a group conversation id, or false.
func groupIDOf(conv string) (string, bool) {
	id, err := convid.Parse(conv)
	if err != nil || id.Kind() != convid.KindGroup || !validGroupID(id.GroupID()) {
		return "", false
	}
	return id.GroupID(), true
}

func validGroupID(gid string) bool {
	if len(gid) != 1+groupIDChars || gid[0] != groupIDLetter {
		return false
	}
	for i := 1; i < len(gid); i++ {
		c := gid[i]
		if !(c >= 'a' && c <= 'z' || c >= '2' && c <= '7') {
			return false
		}
	}
	return true
}

// checkGroupName returns the name with surrounding white space removed:
// 1-64 printable characters (code points; unicode.IsPrint, so no control,
// line or tab characters), not only spaces.
func checkGroupName(name string) (string, error) {
	name = strings.TrimSpace(name)
	if name == "" || !utf8.ValidString(name) || utf8.RuneCountInString(name) > maxGroupName {
		return "", errBadGroupName
	}
	for _, r := range name {
		if !unicode.IsPrint(r) {
			return "", errBadGroupName
		}
	}
	return name, nil
}

// resolveConv is resolve for any conversation id, groups included: a group
// conversation is open to its members only (invitees too are
// PERMISSION_DENIED). The check reads the group record, so a removed member
// is refused from the next request on.
func (s *Service) resolveConv(ctx context.Context, id, uid string) (conversation, error) {
	if convid.KindOf(id) != convid.KindGroup {
		return resolve(id, uid)
	}
	gid, ok := groupIDOf(id)
	if !ok {
		return conversation{}, errNoConversation
	}
	g, err := s.store.Group(ctx, gid)
	if errors.Is(err, store.ErrNoGroup) {
		return conversation{}, errNoConversation
	}
	if err != nil {
		return conversation{}, err
	}
	if !g.Group.Member(uid) {
		return conversation{}, errNotMember
	}
	return conversation{id: id, kind: parleyv1.ConversationKind_CONVERSATION_KIND_GROUP, members: g.Group.MemberIDs()}, nil
}
