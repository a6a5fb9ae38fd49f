package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/nats-io/nats.go/jetstream"
)

// Group errors.
var (
	// ErrNoGroup: no group with that id (never created, or ended when its
	// last member left).
	ErrNoGroup = errors.New("store: no such group")
	// ErrGroupExists: Create found the id taken.
	ErrGroupExists = errors.New("store: group id taken")
	// ErrNoChange: an UpdateGroup edit decided nothing needs to change;
	// UpdateGroup then writes nothing and returns the group as read.
	ErrNoChange = errors.New("store: no change")
	// ErrEndGroup: an UpdateGroup edit asks for the group to be deleted
	// (its last member left).
	ErrEndGroup = errors.New("store: end group")
)

// GroupUser is a user in a group record: a member or an invitee.
type GroupUser struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	By   string `json:"by,omitempty"` // invitee: who invited them
}

// Group is the record of a group in subject.BucketGroups, key = group id.
// It is the one source of truth about a group: membership entries in
// BucketConvs only index it per user (for ConversationsReply), and readers
// check them against it.
type Group struct {
	Name    string      `json:"name"`
	Owner   string      `json:"owner"`
	Members []GroupUser `json:"members"`           // join order: the first is the longest-standing
	Invited []GroupUser `json:"invited,omitempty"` // invitation order
}

// Member reports whether uid is a member (not merely invited).
func (g *Group) Member(uid string) bool {
	return slices.ContainsFunc(g.Members, func(u GroupUser) bool { return u.ID == uid })
}

// IsInvited reports whether uid holds an invitation.
func (g *Group) IsInvited(uid string) bool {
	return slices.ContainsFunc(g.Invited, func(u GroupUser) bool { return u.ID == uid })
}

// MemberIDs lists the members' ids in join order.
func (g *Group) MemberIDs() []string {
	out := make([]string, len(g.Members))
	for i, u := range g.Members {
		out[i] = u.ID
	}
	return out
}

// GroupResult is a group as stored, with the KV revision that stored it.
type GroupResult struct {
	Group    Group
	Revision uint64
}

// Group reads a group record.
func (s *Store) Group(ctx context.Context, gid string) (GroupResult, error) {
	e, err := s.groups.Get(ctx, gid)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return GroupResult{}, ErrNoGroup
	}
	if err != nil {
		return GroupResult{}, fmt.Errorf("group %s: %w", gid, err)
	}
	var g Group
	if err := json.Unmarshal(e.Value(), &g); err != nil {
		return GroupResult{}, fmt.Errorf("group %s: %w", gid, ErrCorrupt)
	}
	return GroupResult{Group: g, Revision: e.Revision()}, nil
}

// CreateGroup stores a new group record; ErrGroupExists if gid is taken.
func (s *Store) CreateGroup(ctx context.Context, gid string, g Group) (GroupResult, error) {
	val, err := json.Marshal(g)
	if err != nil {
		return GroupResult{}, err
	}
	rev, err := s.groups.Create(ctx, gid, val)
	if errors.Is(err, jetstream.ErrKeyExists) {
		return GroupResult{}, ErrGroupExists
	}
	if err != nil {
		return GroupResult{}, fmt.Errorf("group %s: %w", gid, err)
	}
	return GroupResult{Group: g, Revision: rev}, nil
}

// UpdateGroup applies edit to the group record with compare-and-set: read,
// edit a copy, write conditional on the revision read; if another replica
// wrote in between, read again and re-apply edit to the new record. So
// concurrent changes (two invitations at once on two replicas) are all
// kept, each edit seeing every earlier one. edit may be called several
// times and must depend only on the record it is given.
//
// edit returns ErrNoChange to write nothing (UpdateGroup returns the
// record and ErrNoChange), ErrEndGroup to delete the record, or any other
// error to abort (returned as is).
func (s *Store) UpdateGroup(ctx context.Context, gid string, edit func(*Group) error) (before, after GroupResult, err error) {
	for range maxCASTries {
		cur, err := s.Group(ctx, gid)
		if err != nil {
			return GroupResult{}, GroupResult{}, err
		}
		next := cloneGroup(cur.Group)
		switch err := edit(&next); {
		case errors.Is(err, ErrNoChange):
			return cur, cur, ErrNoChange
		case errors.Is(err, ErrEndGroup):
			err := s.groups.Delete(ctx, gid, jetstream.LastRevision(cur.Revision))
			if err == nil {
				return cur, GroupResult{}, ErrEndGroup
			}
			if !isCASConflict(err) {
				return GroupResult{}, GroupResult{}, fmt.Errorf("group %s: %w", gid, err)
			}
			continue
		case err != nil:
			return cur, GroupResult{}, err
		}
		val, err := json.Marshal(next)
		if err != nil {
			return GroupResult{}, GroupResult{}, err
		}
		rev, err := s.groups.Update(ctx, gid, val, cur.Revision)
		if err == nil {
			return cur, GroupResult{Group: next, Revision: rev}, nil
		}
		if !isCASConflict(err) {
			return GroupResult{}, GroupResult{}, fmt.Errorf("group %s: %w", gid, err)
		}
	}
	return GroupResult{}, GroupResult{}, ErrBusy
}

// isCASConflict: a conditional KV write lost to another writer.
func isCASConflict(err error) bool {
	return errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) ||
		isWrongLastSeq(err)
}

func cloneGroup(g Group) Group {
	g.Members = slices.Clone(g.Members)
	g.Invited = slices.Clone(g.Invited)
	return g
}

// PutGroupMembership records in BucketConvs that uid is in (or, invited,
// invited to) group conversation conv.
func (s *Store) PutGroupMembership(ctx context.Context, uid, conv string, invited bool) error {
	val, err := json.Marshal(Member{Group: true, Invited: invited})
	if err != nil {
		return err
	}
	if _, err := s.members.Put(ctx, userKey(uid, conv), val); err != nil {
		return fmt.Errorf("membership: %w", err)
	}
	return nil
}

// DeleteMembership removes uid's entry for conv from BucketConvs.
func (s *Store) DeleteMembership(ctx context.Context, uid, conv string) error {
	key := userKey(uid, conv)
	s.mu.Lock()
	delete(s.known, key)
	s.mu.Unlock()
	if err := s.members.Delete(ctx, key); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("membership: %w", err)
	}
	return nil
}
