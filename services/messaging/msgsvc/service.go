// Package msgsvc is Parley's messaging service: the public room, direct
// conversations and groups, with durable history, idempotent sends,
// per-user acknowledgements and the conversation list. It answers gateways
// on the subject.Msg* subjects in queue group subject.QueueMessaging and
// delivers every stored message as a parleyv1.MessageEvent on
// subject.UserMessages(uid) (direct: both members; group: every member) or
// subject.RoomMessages("public"). groups.go describes how groups are kept.
// The file service posts file offers as messages (subject.MsgPostFile,
// postfile.go) through the same path as a send.
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
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/parleychat/parley/libs/rpc"
	"github.com/parleychat/parley/libs/service"
	"github.com/parleychat/parley/libs/subject"
	"github.com/parleychat/parley/services/messaging/internal/store"
)

// Deps are the service's collaborators.
type Deps struct {
	NC       *nats.Conn
	Log      *slog.Logger          // nil: discard
	Registry prometheus.Registerer // nil: a private registry
	Clock    func() time.Time      // nil: time.Now; stamps sent_at_unix_ms, drives the per-user rates
}

// Errors from New and Run.
var (
	ErrNoNATS     = errors.New("messaging: nats connection required")
	ErrRunTwice   = errors.New("messaging: Run called twice")
	ErrNotServing = errors.New("messaging: not serving (stream not ready)")
	ErrNATSDown   = errors.New("messaging: nats not connected")
)

// Service is one messaging replica.
type Service struct {
	cfg     Config
	nc      *nats.Conn
	log     *slog.Logger
	now     func() time.Time
	metrics *metrics
	rpcm    *rpc.Metrics
	limits  *limiters // per-user rates (limits.go); safe for concurrent use

	// store is set by Run before the handlers are subscribed and never
	// changed afterwards; the subscription orders the write before reads.
	store *store.Store

	running atomic.Bool
	ready   atomic.Bool // stream open and handlers subscribed
}

// New validates cfg and deps and registers metrics; it contacts nothing.
// Each Service needs its own Registry (registering twice fails).
func New(cfg Config, deps Deps) (*Service, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if deps.NC == nil {
		return nil, ErrNoNATS
	}
	if deps.Log == nil {
		deps.Log = slog.New(slog.DiscardHandler)
	}
	if deps.Registry == nil {
		deps.Registry = prometheus.NewRegistry()
	}
	if deps.Clock == nil {
		deps.Clock = time.Now
	}
	m, err := newMetrics(deps.Registry)
	if err != nil {
		return nil, fmt.Errorf("messaging: metrics: %w", err)
	}
	return &Service{cfg: cfg, nc: deps.NC, log: deps.Log, now: deps.Clock, metrics: m,
		rpcm: rpc.NewMetrics(deps.Registry, "messaging"), limits: newLimiters(cfg, deps.Clock)}, nil
}

// Ready reports whether this replica serves: stream open, handlers
// subscribed, NATS connected. It is the /readyz check.
func (s *Service) Ready() error {
	if !s.ready.Load() {
		return ErrNotServing
	}
	if !s.nc.IsConnected() {
		return ErrNATSDown
	}
	return nil
}

// Run opens the stream and buckets (retrying while NATS or JetStream is
// unavailable), serves requests until ctx ends, then drains: queued
// requests are still answered before Run returns.
func (s *Service) Run(ctx context.Context) error {
	if !s.running.CompareAndSwap(false, true) {
		return ErrRunTwice
	}
	if err := s.setup(ctx); err != nil {
		if ctx.Err() != nil {
			return nil // stopped before it could serve
		}
		return err
	}
	// Blocks are remembered while their changes are watched (store/blocks.go).
	wctx, stopWatch := context.WithCancel(ctx)
	watched := make(chan struct{})
	go func() { defer close(watched); s.store.WatchFriends(wctx) }()
	defer func() { stopWatch(); <-watched }()
	srv := rpc.NewServer(s.nc, subject.QueueMessaging, s.log, s.rpcm, s.cfg.Workers)
	for subj, h := range map[string]rpc.Handler{
		subject.MsgSend:          s.handleSend,
		subject.MsgPostFile:      s.handlePostFile,
		subject.MsgHistory:       s.handleHistory,
		subject.MsgAck:           s.handleAck,
		subject.MsgConversations: s.handleConversations,
		subject.MsgOpenDirect:    s.handleOpenDirect,
		subject.MsgCreateGroup:   s.handleCreateGroup,
		subject.MsgInvite:        s.handleInvite,
		subject.MsgJoinGroup:     s.handleJoinGroup,
		subject.MsgLeaveGroup:    s.handleLeaveGroup,
		subject.MsgRemoveMember:  s.handleRemoveMember,
		subject.MsgRenameGroup:   s.handleRenameGroup,
		subject.MsgMembers:       s.handleMembers,
		subject.MsgAddFriend:     s.handleAddFriend,
		subject.MsgAnswerFriend:  s.handleAnswerFriend,
		subject.MsgRemoveFriend:  s.handleRemoveFriend,
		subject.MsgFriends:       s.handleFriends,
		subject.MsgBlock:         s.handleBlock,
		subject.MsgUnblock:       s.handleUnblock,
		subject.MsgTyping:        s.handleTyping,
	} {
		if err := srv.Handle(subj, h); err != nil {
			srv.Close()
			return fmt.Errorf("messaging: subscribe %s: %w", subj, err)
		}
	}
	// Make the server register the subscriptions before reporting ready.
	if s.nc.IsConnected() {
		if err := s.nc.FlushTimeout(2 * time.Second); err != nil {
			s.log.Warn("nats flush", "err", err)
		}
	}
	s.ready.Store(true)
	s.log.Info("messaging serving", "stream_replicas", s.cfg.StreamReplicas,
		"retention", s.cfg.Retention, "dedup_window", s.cfg.DedupWindow, "max_message_chars", s.cfg.MaxMessageChars)
	<-ctx.Done()
	s.ready.Store(false)
	srv.Close()
	// Delivery events published by the last handlers leave the client
	// buffer before Run returns.
	if s.nc.IsConnected() {
		_ = s.nc.FlushTimeout(time.Second)
	}
	s.log.Info("messaging stopped")
	return nil
}

// setup retries until the store is open or ctx ends: at startup NATS may
// still be connecting, or JetStream electing a leader.
func (s *Service) setup(ctx context.Context) error {
	return service.Retry(ctx, s.log, "message store", func(ctx context.Context) error {
		octx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		st, err := store.Open(octx, s.nc, store.Options{
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
	})
}
