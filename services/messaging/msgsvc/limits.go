package msgsvc

import (
	"context"
	"errors"
	"time"

	"github.com/parleychat/parley/libs/ratelimit"
	"github.com/parleychat/parley/protocol/errcode"
	"github.com/parleychat/parley/protocol/parleyv1"
	"github.com/parleychat/parley/services/messaging/internal/store"
)

// Per-user limits (docs/protocol.md §15.2, §16, §17).
//
// Rates are token buckets keyed by user id (libs/ratelimit), kept in this
// replica's memory: with N replicas behind the queue group a user gets up
// to N times the configured rate (the limits make abuse slow; they are not
// meant to be exact, and a shared store in every request's path would cost
// more than it saves). Past a rate the request is refused with
// RATE_LIMITED and retry_after_ms, and nothing is done.
//
// Counts are not time-based: the groups a user is a member of, and the
// pending invitations a user holds. They are read from the user's entries in
// BucketConvs before a change that would add one, and refused with
// QUOTA_EXCEEDED at the cap. Entries only index the group records, so at the
// cap they are checked against the records (stale ones, left by a replica
// that died between the two writes, are deleted) before refusing. Two
// changes at once may both pass the check: a count can exceed its cap by
// the number of concurrent requests, never more.
//
// The defaults are far above what a person does by hand and far below what
// a script does; load generators raise or disable them (bench/cmd/msgbench).

// limitName labels a limit in metrics, logs and RATE_LIMITED messages.
type limitName string

const (
	limitSend      limitName = "send"
	limitFriend    limitName = "friend_request"
	limitCreate    limitName = "group_create"
	limitInvite    limitName = "invite"
	limitLookup    limitName = "lookup"
	limitTyping    limitName = "typing"
	quotaGroups    limitName = "groups"
	quotaInvites   limitName = "pending_invites"
	typingInterval           = 2 * time.Second
)

// what a refusal says is too many, by limit.
var limitNoun = map[limitName]string{
	limitSend:   "messages",
	limitFriend: "friend requests",
	limitCreate: "new groups",
	limitInvite: "invitations",
	limitLookup: "username lookups",
	limitTyping: "typing indicators",
}

// limiters are the per-user token buckets of one replica.
type limiters struct {
	send, friend, create, invite, lookup, typing *ratelimit.Limiter
	// typingConv admits one TypingEvent per typingInterval per user and
	// conversation; extras are answered Ok and dropped, not refused.
	typingConv *ratelimit.Limiter
	// logged thins out the refusal log: one line per user and limit per
	// minute, so a script hammering a limit does not flood the log.
	logged *ratelimit.Limiter
}

func newLimiters(cfg Config, now func() time.Time) *limiters {
	return &limiters{
		send:       ratelimit.New(cfg.SendLimit, time.Minute, cfg.SendBurst, now),
		friend:     ratelimit.New(cfg.FriendRequestLimit, time.Hour, cfg.FriendRequestLimit, now),
		create:     ratelimit.New(cfg.GroupCreateLimit, time.Hour, cfg.GroupCreateLimit, now),
		invite:     ratelimit.New(cfg.InviteLimit, time.Hour, cfg.InviteLimit, now),
		lookup:     ratelimit.New(cfg.LookupLimit, time.Hour, cfg.LookupBurst, now),
		typing:     ratelimit.New(cfg.TypingLimit, time.Minute, cfg.TypingBurst, now),
		typingConv: ratelimit.New(1, typingInterval, 1, now),
		logged:     ratelimit.New(1, time.Minute, 1, now),
	}
}

func (l *limiters) of(name limitName) *ratelimit.Limiter {
	switch name {
	case limitSend:
		return l.send
	case limitFriend:
		return l.friend
	case limitCreate:
		return l.create
	case limitInvite:
		return l.invite
	case limitLookup:
		return l.lookup
	case limitTyping:
		return l.typing
	}
	return nil
}

// take charges n units of limit name to user uid; past the rate it returns
// RATE_LIMITED (nothing charged).
func (s *Service) take(name limitName, uid string, n int) error {
	ok, wait := s.limits.of(name).TakeN(uid, n)
	if ok {
		return nil
	}
	s.refused(name, uid)
	return errcode.RateLimited(limitNoun[name], wait)
}

// refused counts a refusal and logs it (thinned out per user and limit).
func (s *Service) refused(name limitName, uid string) {
	s.metrics.limited.WithLabelValues(string(name)).Inc()
	if ok, _ := s.limits.logged.Take(uid + " " + string(name)); ok {
		s.log.Info("per-user limit reached", "limit", string(name), "user_id", uid)
	}
}

// groupCounts are a user's group entries in BucketConvs.
type groupCounts struct {
	member, invited []string // conversation ids
}

// countGroups reads uid's group entries. With verify, each is checked
// against its group record first and stale ones are deleted (used at a
// cap, so that a leftover entry never costs a user a place).
func (s *Service) countGroups(ctx context.Context, uid string, verify bool) (groupCounts, error) {
	members, err := s.store.Memberships(ctx, uid)
	if err != nil {
		return groupCounts{}, err
	}
	var out groupCounts
	for _, mb := range members {
		if !mb.Group {
			continue
		}
		member, invited := !mb.Invited, mb.Invited
		if verify {
			// The record decides; a missing or contradicting entry is deleted.
			if member, invited, err = s.groupState(ctx, uid, mb.Conversation); err != nil {
				return groupCounts{}, err
			}
			if !member && !invited {
				if err := s.store.DeleteMembership(ctx, uid, mb.Conversation); err != nil {
					return groupCounts{}, err
				}
				s.log.Info("stale group entry deleted", "user_id", uid, "conversation", mb.Conversation)
				continue
			}
		}
		if member {
			out.member = append(out.member, mb.Conversation)
		} else {
			out.invited = append(out.invited, mb.Conversation)
		}
	}
	return out, nil
}

// groupState reads whether uid is a member of or invited to group
// conversation conv according to the group record (neither when the group
// has ended).
func (s *Service) groupState(ctx context.Context, uid, conv string) (member, invited bool, err error) {
	gid, ok := groupIDOf(conv)
	if !ok {
		return false, false, nil
	}
	g, err := s.store.Group(ctx, gid)
	if errors.Is(err, store.ErrNoGroup) {
		return false, false, nil
	}
	if err != nil {
		return false, false, err
	}
	return g.Group.Member(uid), g.Group.IsInvited(uid), nil
}

// checkGroupQuota refuses with QUOTA_EXCEEDED when uid is a member of
// Config.MaxGroups groups already (one more would pass the cap).
func (s *Service) checkGroupQuota(ctx context.Context, uid string) error {
	limit := s.cfg.MaxGroups
	if limit == 0 {
		return nil
	}
	n, err := s.quotaCount(ctx, uid, func(c groupCounts) int { return len(c.member) }, limit)
	if err != nil || n < limit {
		return err
	}
	s.refused(quotaGroups, uid)
	return errcode.Newf(parleyv1.ErrorCode_ERROR_CODE_QUOTA_EXCEEDED,
		"you are a member of %d groups, the most allowed; leave one first", limit)
}

// checkInviteeQuota refuses with QUOTA_EXCEEDED when invitee holds
// Config.MaxPendingInvites invitations already.
func (s *Service) checkInviteeQuota(ctx context.Context, invitee store.GroupUser) error {
	limit := s.cfg.MaxPendingInvites
	if limit == 0 {
		return nil
	}
	n, err := s.quotaCount(ctx, invitee.ID, func(c groupCounts) int { return len(c.invited) }, limit)
	if err != nil || n < limit {
		return err
	}
	s.refused(quotaInvites, invitee.ID)
	return errcode.Newf(parleyv1.ErrorCode_ERROR_CODE_QUOTA_EXCEEDED,
		"%s has %d pending invitations, the most allowed, and cannot be invited until they answer some", invitee.Name, limit)
}

// quotaCount counts uid's entries with count; at or above limit, it
// counts again with the entries verified against the group records.
func (s *Service) quotaCount(ctx context.Context, uid string, count func(groupCounts) int, limit int) (int, error) {
	c, err := s.countGroups(ctx, uid, false)
	if err != nil || count(c) < limit {
		return count(c), err
	}
	c, err = s.countGroups(ctx, uid, true)
	return count(c), err
}
