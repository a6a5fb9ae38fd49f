// Package msgsvc is Parley's messaging service: the public room, direct
// conversations and groups, with durable history, idempotent sends,
// per-user acknowledgements and the conversation list. It answers gateways
// on the subject.Msg* subjects in queue group subject.QueueMessaging and
// delivers every stored message as a parleyv1.MessageEvent on
// subject.UserMessages(uid) (direct: both members; group: every member) or
// subject.RoomMessages("public"). groups.go describes how groups are kept.
// The file service posts file offers as messages (subject.MsgPostFile,
// postfile.go) through the same path as a send; the media-relay asks who
// may call where (subject.MsgCallResolve) and posts calls' system messages
// (subject.MsgPostCall, calls.go).
//
// Friends and blocking (friends.go): private messages do not need
// friendship; anyone may message anyone (the default), and only blocking
// stops it: a direct message to a user who blocked the sender is refused
// with BLOCKED and nothing is stored. When a user acknowledges a direct
// conversation further than before, the other member gets a read receipt
// (parleyv1.ReceiptEvent on subject.UserReceipts), and the conversation
// list carries the other member's cursor as peer_acked_seq. Typing
// indicators (typing.go) are checked here and published to the other
// member (subject.UserTyping), never stored.
//
// Per-user limits (limits.go): rates of sends, friend requests, group
// creations, invitations, username lookups and typing indicators
// (RATE_LIMITED), and caps on the groups a user is in and the invitations
// a user holds (QUOTA_EXCEEDED).
//
// Any number of replicas may run against one NATS (JetStream) system; they
// share state only through JetStream (see internal/store for the storage
// design and how replicas keep per-conversation seqs gap-free).
//
// The sender's identity comes only from the headers the gateway sets from
// the session (subject.HeaderUserID, HeaderUsername); request bodies cannot
// name a sender. Clients cannot reach NATS, so those headers are trusted.
//
// Live delivery is a core NATS publish (at most once). A client that misses
// an event notices the gap in seqs (or reconnects) and reads the missing
// messages from history, so clients see every message exactly once, in order.
package msgsvc

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/parleychat/parley/libs/service"
	"github.com/parleychat/parley/libs/subject"
	"github.com/parleychat/parley/services/messaging/internal/store"
)

// Service is one messaging replica.
type Service struct {
	cfg     Config
	nc      *nats.Conn
	log     *slog.Logger
	now     func() time.Time // stamps sent_at_unix_ms, drives the per-user rates
	metrics *metrics
	limits  *limiters // per-user rates (limits.go); safe for concurrent use
	run     *service.Runner

	// store is set by open before the handlers are subscribed and never
	// changed afterwards; the subscription orders the write before reads.
	store *store.Store
}

// New validates cfg and registers metrics on deps.Registry; it contacts
// nothing. Each Service needs its own Registry (registering twice fails).
func New(cfg Config, deps service.Deps) (*Service, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	deps, err := deps.WithDefaults()
	if err != nil {
		return nil, fmt.Errorf("messaging: %w", err)
	}
	m, err := newMetrics(deps.Registry)
	if err != nil {
		return nil, fmt.Errorf("messaging: metrics: %w", err)
	}
	s := &Service{cfg: cfg, nc: deps.NC, log: deps.Log, now: deps.Clock, metrics: m, limits: newLimiters(cfg, deps.Clock)}
	s.run, err = service.NewRunner(service.Spec{
		Name: "messaging", Queue: subject.QueueMessaging, Workers: cfg.Workers, Open: s.open,
		Endpoints: []service.Endpoint{
			{Subject: subject.MsgSend, Handler: s.handleSend},
			{Subject: subject.MsgPostFile, Handler: s.handlePostFile},
			{Subject: subject.MsgCallResolve, Handler: s.handleCallResolve},
			{Subject: subject.MsgPostCall, Handler: s.handlePostCall},
			{Subject: subject.MsgHistory, Handler: s.handleHistory},
			{Subject: subject.MsgAck, Handler: s.handleAck},
			{Subject: subject.MsgConversations, Handler: s.handleConversations},
			{Subject: subject.MsgOpenDirect, Handler: s.handleOpenDirect},
			{Subject: subject.MsgCreateGroup, Handler: s.handleCreateGroup},
			{Subject: subject.MsgInvite, Handler: s.handleInvite},
			{Subject: subject.MsgJoinGroup, Handler: s.handleJoinGroup},
			{Subject: subject.MsgLeaveGroup, Handler: s.handleLeaveGroup},
			{Subject: subject.MsgRemoveMember, Handler: s.handleRemoveMember},
			{Subject: subject.MsgRenameGroup, Handler: s.handleRenameGroup},
			{Subject: subject.MsgMembers, Handler: s.handleMembers},
			{Subject: subject.MsgAddFriend, Handler: s.handleAddFriend},
			{Subject: subject.MsgAnswerFriend, Handler: s.handleAnswerFriend},
			{Subject: subject.MsgRemoveFriend, Handler: s.handleRemoveFriend},
			{Subject: subject.MsgFriends, Handler: s.handleFriends},
			{Subject: subject.MsgBlock, Handler: s.handleBlock},
			{Subject: subject.MsgUnblock, Handler: s.handleUnblock},
			{Subject: subject.MsgTyping, Handler: s.handleTyping},
		},
		// Blocks are remembered while their changes are watched
		// (store/blocks.go); until then they are read from the bucket.
		Loops: []func(context.Context){func(ctx context.Context) { s.store.WatchFriends(ctx) }},
		Attrs: []any{"stream_replicas", cfg.StreamReplicas, "retention", cfg.Retention,
			"dedup_window", cfg.DedupWindow, "max_message_chars", cfg.MaxMessageChars},
	}, deps)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// Ready reports whether this replica serves: stream open, handlers
// subscribed, NATS connected. It is the /readyz check.
func (s *Service) Ready() error { return s.run.Ready() }

// Run opens the stream and buckets (retrying while NATS or JetStream is
// unavailable), serves requests until ctx ends, then drains (libs/service
// Runner): queued requests are still answered before Run returns.
func (s *Service) Run(ctx context.Context) error { return s.run.Run(ctx) }

// open opens the message store; the Runner retries it until it succeeds.
func (s *Service) open(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	st, err := store.Open(ctx, s.nc, store.Options{
		Replicas:    s.cfg.StreamReplicas,
		DedupWindow: s.cfg.DedupWindow,
		Retention:   s.cfg.Retention,
		// The text limit plus room for the rest of the message.
		MaxMsgBytes: MaxMessageBytes + 4<<10,
		Log:         s.log,
	})
	if err == nil {
		s.store = st
	}
	return err
}
