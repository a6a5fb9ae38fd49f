package store

import (
	"context"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Blocks are checked on every direct message (a blocked sender's message is
// not stored), and reading the friends bucket for each one was a JetStream
// round trip per message: a third of messaging's work on the send path. So
// each replica remembers the answers it read, and forgets an answer when
// the relation changes:
//   - the replica that writes a relation forgets it before UpdateFriend
//     returns, so a block answered to the client applies at once on the
//     replica that answered;
//   - every replica watches the friends bucket for changes (an ordered
//     consumer, which resumes where it stopped after a reconnect) and
//     forgets what changed: another replica applies a block as soon as its
//     watch delivers the change, typically within a millisecond;
//   - answers are trusted only while the watch runs, and for blockTTL at
//     most.
//
// A read that was in flight while any relation changed is not remembered
// (gen), so a stale answer cannot outlive the change that made it stale.
type blockCache struct {
	mu   sync.Mutex // guards the fields below
	live bool       // the watch runs: remembered answers can be trusted
	gen  uint64     // bumped by every change seen
	m    map[string]blockEntry
}

type blockEntry struct {
	blocked bool
	at      time.Time
}

const (
	// blockTTL bounds how long an answer is trusted without a change seen.
	blockTTL = time.Minute
	// maxCachedBlocks bounds the memory (about 100 bytes per entry).
	maxCachedBlocks = 200_000
)

// Blocked reports whether uid blocked peer (peer's messages to uid are
// refused), from this replica's memory when it can.
func (s *Store) Blocked(ctx context.Context, uid, peer string) (bool, error) {
	key := userKey(uid, peer)
	c := &s.blocks
	c.mu.Lock()
	if e, ok := c.m[key]; ok && c.live && time.Since(e.at) < blockTTL {
		c.mu.Unlock()
		return e.blocked, nil
	}
	gen, live := c.gen, c.live
	c.mu.Unlock()
	f, err := s.Friend(ctx, uid, peer)
	if err != nil {
		return false, err
	}
	blocked := f.State == FriendBlocked
	if live {
		c.mu.Lock()
		if c.live && c.gen == gen {
			if c.m == nil || len(c.m) >= maxCachedBlocks {
				c.m = make(map[string]blockEntry)
			}
			c.m[key] = blockEntry{blocked: blocked, at: time.Now()}
		}
		c.mu.Unlock()
	}
	return blocked, nil
}

// forget drops what is known of key (a relation changed).
func (c *blockCache) forget(key string) {
	c.mu.Lock()
	c.gen++
	delete(c.m, key)
	c.mu.Unlock()
}

// setLive starts or stops trusting answers; either way the old ones go.
func (c *blockCache) setLive(live bool) {
	c.mu.Lock()
	c.live = live
	c.gen++
	c.m = nil
	c.mu.Unlock()
}

// WatchFriends keeps the block answers of Blocked current until ctx ends
// (run it in its own goroutine). Until it runs, and while it is being
// restarted, Blocked reads the bucket every time.
func (s *Store) WatchFriends(ctx context.Context) {
	defer s.blocks.setLive(false)
	for ctx.Err() == nil {
		w, err := s.friends.WatchAll(ctx, jetstream.UpdatesOnly(), jetstream.MetaOnly())
		if err != nil {
			s.log.Warn("friends watch failed; blocks are read from the bucket meanwhile", "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
				continue
			}
		}
		s.blocks.setLive(true)
		s.followFriends(ctx, w)
		s.blocks.setLive(false)
		_ = w.Stop()
	}
}

func (s *Store) followFriends(ctx context.Context, w jetstream.KeyWatcher) {
	for {
		select {
		case <-ctx.Done():
			return
		case e, ok := <-w.Updates():
			if !ok {
				s.log.Warn("friends watch ended; restarting")
				return
			}
			if e != nil {
				s.blocks.forget(e.Key())
			}
		}
	}
}
