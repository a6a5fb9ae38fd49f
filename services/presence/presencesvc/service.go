// Package presencesvc is the presence service: it tracks every gateway's
// authenticated connections in Redis, answers who is online, and publishes
// parleyv1.PresenceChange on subject.PresenceEvents when a user gets a first
// connection or loses the last one.
//
// Any number of replicas may run against one NATS and one Redis: requests
// are shared in queue group subject.QueuePresence, every state change is one
// atomic Lua script (internal/store), and only the replica whose script made
// a change publishes it, so each change is published once.
//
// Presence repairs itself from the gateways: a gateway's heartbeat carries
// its connection count; when presence's count differs (Redis restarted
// empty, a disconnect was lost) the reply asks for a resync, and the gateway
// sends its full list. A gateway that stops heartbeating is swept after the
// gateway TTL and its users go offline.
package presencesvc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/redis/go-redis/v9"

	"github.com/parleychat/parley/libs/service"
	"github.com/parleychat/parley/libs/subject"
	"github.com/parleychat/parley/services/presence/internal/store"
)

// ErrNoRedis is New's error without a Redis client.
var ErrNoRedis = errors.New("presence: redis client required")

// Service is one presence replica.
type Service struct {
	cfg     Config
	nc      *nats.Conn
	store   *store.Store
	log     *slog.Logger
	clock   func() time.Time
	metrics *metrics
	run     *service.Runner

	readyMu   sync.Mutex // guards readyAt, readyErr: the cached Redis check
	readyAt   time.Time
	readyErr  error
	sweepFail bool // last sweep failed; only the sweeper loop uses it
}

// New validates cfg and deps and registers metrics; it contacts nothing.
// Each Service needs its own Registry (or shares one with services of other
// names): registering presence's metrics twice fails.
func New(cfg Config, deps service.Deps, rdb redis.UniversalClient) (*Service, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	deps, err := deps.WithDefaults()
	if err != nil {
		return nil, fmt.Errorf("presence: %w", err)
	}
	if rdb == nil {
		return nil, ErrNoRedis
	}
	m, err := newMetrics(deps.Registry)
	if err != nil {
		return nil, err
	}
	s := &Service{
		cfg: cfg,
		nc:  deps.NC,
		store: store.New(rdb, store.Options{
			Prefix:     cfg.KeyPrefix,
			GatewayTTL: cfg.GatewayTTL,
			ResyncTTL:  cfg.ResyncTTL,
			Clock:      deps.Clock,
		}),
		log:     deps.Log,
		clock:   deps.Clock,
		metrics: m,
	}
	s.run, err = service.NewRunner(service.Spec{
		Name: "presence", Queue: subject.QueuePresence, Workers: cfg.Workers,
		Endpoints: []service.Endpoint{
			{Subject: subject.PresenceConnect, Handler: s.handleConnect},
			{Subject: subject.PresenceDisconnect, Handler: s.handleDisconnect},
			{Subject: subject.PresenceHeartbeat, Handler: s.handleHeartbeat},
			{Subject: subject.PresenceResync, Handler: s.handleResync},
			{Subject: subject.PresenceList, Handler: s.handleList},
			{Subject: subject.PresenceUser, Handler: s.handleUser},
		},
		Loops: []func(context.Context){s.sweepLoop},
		Attrs: []any{"gateway_ttl", cfg.GatewayTTL, "sweep_interval", cfg.SweepInterval},
	}, deps)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// Run answers presence requests and sweeps dead gateways until ctx ends,
// then drains (libs/service Runner): in-flight requests are answered and
// the sweeper has stopped before Run returns.
func (s *Service) Run(ctx context.Context) error { return s.run.Run(ctx) }
