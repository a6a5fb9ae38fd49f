package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// Friend states as seen by the owner of a subject.BucketFriends key
// "<uid>.<peer>". No key means no relation.
const (
	FriendNone     = ""
	FriendFriend   = "friend"
	FriendOutgoing = "outgoing" // uid asked peer, no answer yet
	FriendIncoming = "incoming" // peer asked uid
	FriendBlocked  = "blocked"  // uid blocked peer
)

// Friend is one side of a relation between two users: the state as uid
// sees it and the peer's name (for the friends list).
type Friend struct {
	PeerID string `json:"-"` // from the key
	State  string `json:"state"`
	Name   string `json:"name,omitempty"`
}

// Friend reads uid's relation to peer (State FriendNone when there is
// none).
func (s *Store) Friend(ctx context.Context, uid, peer string) (Friend, error) {
	f, _, err := s.friend(ctx, uid, peer)
	return f, err
}

func (s *Store) friend(ctx context.Context, uid, peer string) (Friend, uint64, error) {
	e, err := s.friends.Get(ctx, userKey(uid, peer))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Friend{PeerID: peer}, 0, nil
	}
	if err != nil {
		return Friend{}, 0, fmt.Errorf("friend: %w", err)
	}
	var f Friend
	if json.Unmarshal(e.Value(), &f) != nil {
		s.log.Warn("undecodable friend entry", "user_id", uid, "peer", peer)
		f = Friend{} // unreadable: treated as no relation, overwritten by the next change
	}
	f.PeerID = peer
	return f, e.Revision(), nil
}

// UpdateFriend applies edit to uid's relation to peer with compare-and-set
// on the key's revision (Create when absent), re-reading and re-applying
// edit when another replica wrote in between; edit may run several times
// and must depend only on what it is given. Setting State to FriendNone
// deletes the key. edit returns ErrNoChange to write nothing, or any other
// error to abort (returned as is). It returns the relation before and
// after.
func (s *Store) UpdateFriend(ctx context.Context, uid, peer string, edit func(*Friend) error) (before, after Friend, err error) {
	key := userKey(uid, peer)
	for range maxCASTries {
		cur, rev, err := s.friend(ctx, uid, peer)
		if err != nil {
			return Friend{}, Friend{}, err
		}
		next := cur
		if err := edit(&next); errors.Is(err, ErrNoChange) {
			return cur, cur, nil
		} else if err != nil {
			return cur, cur, err
		}
		if next == cur {
			return cur, cur, nil
		}
		switch {
		case next.State == FriendNone && rev == 0:
			return cur, next, nil
		case next.State == FriendNone:
			err = s.friends.Delete(ctx, key, jetstream.LastRevision(rev))
		default:
			val, merr := json.Marshal(next)
			if merr != nil {
				return Friend{}, Friend{}, merr
			}
			if rev == 0 {
				_, err = s.friends.Create(ctx, key, val)
			} else {
				_, err = s.friends.Update(ctx, key, val, rev)
			}
		}
		if err == nil {
			s.blocks.forget(key)
			return cur, next, nil
		}
		if !isCASConflict(err) {
			return Friend{}, Friend{}, fmt.Errorf("friend: %w", err)
		}
	}
	return Friend{}, Friend{}, ErrBusy
}

// Friends lists uid's relations (friends, requests both ways, blocked).
func (s *Store) Friends(ctx context.Context, uid string) ([]Friend, error) {
	var out []Friend
	err := s.scan(ctx, s.friends, uid, func(peer string, v []byte) {
		var f Friend
		if json.Unmarshal(v, &f) != nil || f.State == FriendNone {
			s.log.Warn("undecodable friend entry", "user_id", uid, "peer", peer)
			return
		}
		f.PeerID = peer
		out = append(out, f)
	})
	return out, err
}
