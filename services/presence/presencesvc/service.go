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
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/parleychat/parley/libs/rpc"
	"github.com/parleychat/parley/libs/subject"
	"github.com/parleychat/parley/services/presence/internal/store"
)

// Deps are the service's collaborators.
type Deps struct {
	NC       *nats.Conn
	Redis    redis.UniversalClient
	Log      *slog.Logger          // nil: discard
	Registry prometheus.Registerer // nil: a private registry
	Clock    func() time.Time      // nil: time.Now
}

// Errors from New.
var (
	ErrNoNATS  = errors.New("presence: nats connection required")
	ErrNoRedis = errors.New("presence: redis client required")
)

// Service is one presence replica.
type Service struct {
	cfg     Config
	nc      *nats.Conn
	store   *store.Store
	log     *slog.Logger
	clock   func() time.Time
	metrics *metrics
	rpcm    *rpc.Metrics

	readyMu   sync.Mutex // guards readyAt, readyErr: the cached Redis check
	readyAt   time.Time
	readyErr  error
	sweepFail bool // last sweep failed; only the sweeper goroutine uses it
}

// New validates cfg and deps and registers metrics; it contacts nothing.
// Each Service needs its own Registry (or shares one with services of other
// names): registering presence's metrics twice fails.
func New(cfg Config, deps Deps) (*Service, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if deps.NC == nil {
		return nil, ErrNoNATS
	}
	if deps.Redis == nil {
		return nil, ErrNoRedis
	}
	if deps.Log == nil {
		deps.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if deps.Registry == nil {
		deps.Registry = prometheus.NewRegistry()
	}
	if deps.Clock == nil {
		deps.Clock = time.Now
	}
	m, err := newMetrics(deps.Registry)
	if err != nil {
		return nil, err
	}
	return &Service{
		cfg: cfg,
		nc:  deps.NC,
		store: store.New(deps.Redis, store.Options{
			Prefix:     cfg.KeyPrefix,
			GatewayTTL: cfg.GatewayTTL,
			ResyncTTL:  cfg.ResyncTTL,
			Clock:      deps.Clock,
		}),
		log:     deps.Log,
		clock:   deps.Clock,
		metrics: m,
		rpcm:    rpc.NewMetrics(deps.Registry, "presence"),
	}, nil
}

// Run answers presence requests and sweeps dead gateways until ctx ends,
// then drains its subscriptions and waits for in-flight requests and the
// sweeper.
func (s *Service) Run(ctx context.Context) error {
	srv := rpc.NewServer(s.nc, subject.QueuePresence, s.log, s.rpcm, s.cfg.Workers)
	defer srv.Close()
	for subj, h := range map[string]rpc.Handler{
		subject.PresenceConnect:    s.handleConnect,
		subject.PresenceDisconnect: s.handleDisconnect,
		subject.PresenceHeartbeat:  s.handleHeartbeat,
		subject.PresenceResync:     s.handleResync,
		subject.PresenceList:       s.handleList,
		subject.PresenceUser:       s.handleUser,
	} {
		if err := srv.Handle(subj, h); err != nil {
			return err
		}
	}
	// Make the server register the subscriptions now. While NATS is down
	// they are sent on reconnect instead, so this must not wait long.
	if s.nc.IsConnected() {
		if err := s.nc.FlushTimeout(2 * time.Second); err != nil {
			s.log.Warn("nats flush", "err", err)
		}
	}
	s.log.Info("presence serving", "gateway_ttl", s.cfg.GatewayTTL, "sweep_interval", s.cfg.SweepInterval)

	var wg sync.WaitGroup
	wg.Go(func() { s.sweepLoop(ctx) })
	<-ctx.Done()
	wg.Wait()
	return nil
}
