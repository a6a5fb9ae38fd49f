package store

import (
	"context"
	"testing"
	"time"

	"github.com/parleychat/parley/libs/testenv"
)

// openReplicas opens n stores on one NATS, as n messaging replicas do, each
// watching the friends bucket until the test ends.
func openReplicas(t *testing.T, n int, watch bool) []*Store {
	t.Helper()
	ns := testenv.NATS(t)
	ctx, cancel := context.WithCancel(context.Background())
	var out []*Store
	done := make(chan struct{}, n)
	t.Cleanup(func() {
		cancel()
		for range out {
			if watch {
				<-done
			}
		}
	})
	for range n {
		s, err := Open(ctx, testenv.Connect(t, ns), Options{Replicas: 1, DedupWindow: time.Minute, MaxMsgBytes: 1 << 20})
		if err != nil {
			t.Fatal(err)
		}
		if watch {
			go func() { s.WatchFriends(ctx); done <- struct{}{} }()
			testenv.Eventually(t, 5*time.Second, "friends watch running", func() bool {
				s.blocks.mu.Lock()
				defer s.blocks.mu.Unlock()
				return s.blocks.live
			})
		}
		out = append(out, s)
	}
	return out
}

func setState(t *testing.T, s *Store, uid, peer string, st string) {
	t.Helper()
	if _, _, err := s.UpdateFriend(context.Background(), uid, peer, func(f *Friend) error {
		f.State = st
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

func blocked(t *testing.T, s *Store, uid, peer string) bool {
	t.Helper()
	b, err := s.Blocked(context.Background(), uid, peer)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// A block applies at once on the replica that wrote it, and on another
// replica that had remembered "not blocked" as soon as its watch sees the
// change; unblocking likewise.
func TestBlockedAcrossReplicas(t *testing.T) {
	rs := openReplicas(t, 2, true)
	a, b := rs[0], rs[1]
	if blocked(t, a, "alice", "bob") || blocked(t, b, "alice", "bob") {
		t.Fatal("blocked before any block")
	}
	if _, ok := b.blocks.m[userKey("alice", "bob")]; !ok {
		t.Fatal("replica b did not remember its answer")
	}

	setState(t, a, "alice", "bob", FriendBlocked)
	if !blocked(t, a, "alice", "bob") {
		t.Fatal("the replica that wrote the block does not see it")
	}
	start := time.Now()
	testenv.Eventually(t, 5*time.Second, "replica b sees the block", func() bool { return blocked(t, b, "alice", "bob") })
	t.Logf("block seen by the other replica after %v", time.Since(start))
	if blocked(t, a, "bob", "alice") {
		t.Error("a block is one-way: bob did not block alice")
	}

	setState(t, b, "alice", "bob", FriendNone)
	if blocked(t, b, "alice", "bob") {
		t.Fatal("the replica that wrote the unblock still refuses")
	}
	testenv.Eventually(t, 5*time.Second, "replica a sees the unblock", func() bool { return !blocked(t, a, "alice", "bob") })
}

// Without the watch nothing is remembered: every answer is read from the
// bucket, so a change made elsewhere is seen at once.
func TestBlockedUnwatchedReadsBucket(t *testing.T) {
	rs := openReplicas(t, 2, false)
	a, b := rs[0], rs[1]
	if blocked(t, b, "alice", "bob") {
		t.Fatal("blocked before any block")
	}
	if len(b.blocks.m) != 0 {
		t.Fatal("an answer was remembered with no watch running")
	}
	setState(t, a, "alice", "bob", FriendBlocked)
	if !blocked(t, b, "alice", "bob") {
		t.Fatal("the unwatched replica does not see the block at once")
	}
}
