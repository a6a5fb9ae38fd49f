// Package store keeps Parley's chat messages, acknowledgements and direct
// conversation memberships in NATS JetStream.
//
// # Why JetStream
//
// Messaging already depends on NATS for every request, and JetStream gives
// in the same server what a chat store needs: durable, replicated (Raft)
// append-only storage with a server-assigned global sequence, publish-side
// de-duplication (Nats-Msg-Id within a window), optimistic concurrency per
// subject, and direct reads served by any replica (AllowDirect). No second
// database has to be run, backed up or kept consistent with the bus.
//
// # Layout
//
//   - Stream subject.StreamMessages holds every message, one subject per
//     conversation: subject.Store(conv) ("parley.store.v1.dm.<a>.<b>"). The
//     payload is internalv1.StoredMessage (protobuf). The stream sequence is
//     the message id (unique across conversations, assigned by the server).
//     A subject per conversation lets the server answer "last message of
//     this conversation" and "next message of this conversation at or after
//     stream sequence s" from its per-subject index, without scanning others'
//     messages, and lets a publish be conditional on one conversation only.
//   - KV subject.BucketMsgIndex: "<conv>.<n>" -> stream sequence of the
//     conversation's message with seq n*IndexEvery (IndexEvery = 32).
//   - KV subject.BucketCursors: "<uid>.<conv>" -> the user's acknowledged seq.
//   - KV subject.BucketConvs: "<uid>.<conv>" -> the user's membership of a
//     direct conversation (peer id and name, JSON) or of a group (JSON,
//     marked when only invited).
//   - KV subject.BucketGroups: "<gid>" -> the group record (name, owner,
//     members in join order, invitations; JSON), changed only with
//     compare-and-set on its revision (UpdateGroup), so concurrent changes
//     from several replicas are never lost. Group membership entries in
//     BucketConvs are written after the record and only index it.
//   - KV subject.BucketFriends: "<uid>.<peer>" -> the relation as uid sees
//     it (friend, outgoing request, incoming request, blocked; JSON with the
//     peer's name). Both users' keys are written, each with compare-and-set
//     (UpdateFriend); msgsvc/friends.go orders the two writes.
//
// # Gap-free per-conversation sequence across replicas
//
// Messages of one conversation carry seq 1, 2, 3, ... with no gaps, while
// any number of messaging replicas append concurrently. Each replica caches,
// per conversation, the last (conversation seq, stream seq) it knows, and
// publishes the next message with seq = cached+1 and the header
// Nats-Expected-Last-Subject-Sequence = cached stream seq (0 for an empty
// conversation). The server appends only if that is still the last message
// on the conversation's subject, atomically with the append; otherwise it
// answers "wrong last sequence" (API error 10071, or 10164 on replicated
// streams), the replica reloads the last message from the stream and tries
// again (bounded). So the stored order is the seq order and every seq is
// used once. Within one replica appends to one conversation are serialised
// (one in flight), so conflicts only happen between replicas.
//
// The sender's reply is sent only after the PubAck: an acknowledged send is
// durable (on a quorum of the stream's replicas).
//
// # Idempotency
//
// Each publish carries Nats-Msg-Id "<sender uid>:<client_key>". Within the
// stream's duplicate window the server stores it once and answers a repeat
// with the original sequence (duplicate=true); Append then returns the
// originally stored message. The server checks the expected last subject
// sequence before de-duplicating, so a repeat that arrives after newer
// messages first conflicts, reloads, and is then recognised as duplicate.
//
// # History reads
//
// Reading seqs (a, b] of a conversation starts from the index entry
// "<conv>.<(a+1)/32>" (the stream sequence of a message at or below a+1; a
// missing entry, e.g. when a replica died between publish and index write,
// falls back to earlier entries and finally to stream sequence 1: reads
// scan longer but stay correct) and reads forward on the conversation's
// subject. Instead of one direct get per message, it uses JetStream's
// batched direct get (server 2.11+: {"seq", "next_by_subj", "batch"} on
// $JS.API.DIRECT.GET.<stream>), which returns up to a page of the
// conversation's messages from one request, served by any replica. Index
// entries are written every 32 messages, so a page needs at most one index
// lookup and one or two batches regardless of the conversation's length.
//
// Retention: with a max age (-msg-retention) old messages and index entries
// expire; a conversation idle for longer than the retention loses its last
// message and would restart at seq 1, so deployments that rely on unread
// counts should keep the default (forever).
package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/parleychat/parley/libs/rpc"
	"github.com/parleychat/parley/libs/subject"
)

// IndexEvery is the spacing of history index entries, in conversation seqs.
const IndexEvery = 32

// maxAppendTries bounds the conflict-reload-retry loop of one append.
const maxAppendTries = 20

// maxCachedConvs bounds the per-conversation state cache; idle entries are
// dropped beyond it (they are reloaded from the stream on next use).
const maxCachedConvs = 100_000

// Errors.
var (
	// ErrBusy: an append lost the race for its conversation maxAppendTries
	// times in a row (other replicas kept appending); the caller may retry.
	ErrBusy = errors.New("store: conversation busy")
	// ErrCorrupt: a stored message could not be decoded.
	ErrCorrupt = errors.New("store: undecodable stored message")
	// ErrNotFound: no such message.
	ErrNotFound = errors.New("store: not found")
)

// Options configure Open.
type Options struct {
	Replicas    int           // JetStream replicas of the stream and buckets
	DedupWindow time.Duration // idempotency window of client keys
	Retention   time.Duration // max age of messages; 0 keeps them forever
	MaxMsgBytes int32         // largest stored payload the stream accepts
	Log         *slog.Logger
}

// Store is one replica's handle on the message storage. It is safe for
// concurrent use.
type Store struct {
	nc      *nats.Conn
	appends *rpc.Replies // the appends' publishes, reusing reply subjects
	js      jetstream.JetStream
	stream  jetstream.Stream
	cursors jetstream.KeyValue
	members jetstream.KeyValue
	index   jetstream.KeyValue
	groups  jetstream.KeyValue
	friends jetstream.KeyValue
	log     *slog.Logger

	mu    sync.Mutex            // guards convs and known
	convs map[string]*convState // per-conversation append state
	known map[string]string     // membership keys known to be stored -> stored peer name

	blocks blockCache // answers of Blocked (blocks.go)
}

// convState is this replica's knowledge of one conversation's tail.
type convState struct {
	mu        sync.Mutex // serialises this replica's appends; guards loaded, seq, streamSeq
	loaded    bool
	seq       uint64 // last conversation seq
	streamSeq uint64 // its stream sequence (0: conversation empty)

	// seen mirrors seq for readers that must not wait for an append in
	// flight (it only grows while the entry lives).
	seen atomic.Uint64

	users int // appends holding this entry; guarded by Store.mu
}

// Open creates or updates the stream and buckets.
func Open(ctx context.Context, nc *nats.Conn, o Options) (*Store, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	stream, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        subject.StreamMessages,
		Description: "Parley chat messages, one subject per conversation",
		Subjects:    []string{subject.StoreAll},
		Storage:     jetstream.FileStorage,
		Replicas:    o.Replicas,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		MaxAge:      o.Retention,
		Duplicates:  o.DedupWindow,
		MaxMsgSize:  o.MaxMsgBytes,
		AllowDirect: true,
	})
	if err != nil {
		return nil, fmt.Errorf("messages stream: %w", err)
	}
	s := &Store{nc: nc, appends: rpc.NewReplies(nc), js: js, stream: stream, log: o.Log,
		convs: map[string]*convState{}, known: map[string]string{}}
	open := func(bucket, desc string, ttl time.Duration) (jetstream.KeyValue, error) {
		kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket: bucket, Description: desc, Storage: jetstream.FileStorage,
			Replicas: o.Replicas, History: 1, TTL: ttl,
		})
		if err != nil {
			return nil, fmt.Errorf("bucket %s: %w", bucket, err)
		}
		return kv, nil
	}
	if s.cursors, err = open(subject.BucketCursors, "Parley acknowledged seq per user and conversation", 0); err != nil {
		return nil, err
	}
	if s.members, err = open(subject.BucketConvs, "Parley direct and group conversation memberships", 0); err != nil {
		return nil, err
	}
	// Index entries point at messages; they need not outlive them.
	if s.index, err = open(subject.BucketMsgIndex, "Parley history index: stream seq of every 32nd message", o.Retention); err != nil {
		return nil, err
	}
	if s.groups, err = open(subject.BucketGroups, "Parley groups: name, owner, members, invitations", 0); err != nil {
		return nil, err
	}
	if s.friends, err = open(subject.BucketFriends, "Parley friends, requests and blocks per user and peer", 0); err != nil {
		return nil, err
	}
	return s, nil
}

// acquire returns the conversation's state, pinned until release.
func (s *Store) acquire(conv string) *convState {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.convs[conv]
	if st == nil {
		if len(s.convs) >= maxCachedConvs {
			for k, v := range s.convs {
				if v.users == 0 {
					delete(s.convs, k)
				}
			}
		}
		st = &convState{}
		s.convs[conv] = st
	}
	st.users++
	return st
}

func (s *Store) release(st *convState) {
	s.mu.Lock()
	st.users--
	s.mu.Unlock()
}

// cachedSeq is the last seq this replica knows for conv (0: unknown). It
// may be behind the stream, never ahead of it.
func (s *Store) cachedSeq(conv string) uint64 {
	s.mu.Lock()
	st := s.convs[conv]
	s.mu.Unlock()
	if st == nil {
		return 0
	}
	return st.seen.Load()
}
