// Package authsvc is Parley's auth service: accounts, password login,
// session tokens and the session policy, answering the gateway on the
// subject.Auth* subjects in queue group subject.QueueAuth. Any number of
// replicas may run; they share state only through NATS JetStream KV (see
// internal/store), except the rate limiters' counters, which are per
// replica (an account's familiar locations, which the login limit
// consults, are in its KV record: limits.go).
//
// Requests come only from gateways (clients cannot reach NATS), so the
// identity headers on logout are trusted.
package authsvc

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/parleychat/parley/libs/ratelimit"
	"github.com/parleychat/parley/libs/rpc"
	"github.com/parleychat/parley/libs/service"
	"github.com/parleychat/parley/libs/subject"
	"github.com/parleychat/parley/services/auth/internal/password"
	"github.com/parleychat/parley/services/auth/internal/store"
	"github.com/parleychat/parley/services/auth/internal/token"
)

// Service is one auth replica.
type Service struct {
	cfg        Config
	v          validated
	nc         *nats.Conn
	log        *slog.Logger
	now        func() time.Time
	hasher     *password.Hasher
	metrics    *metrics
	rpcMetrics *rpc.Metrics

	// Limiters count failures (logins) or attempts (registrations); see
	// package ratelimit for why per-replica state is acceptable, and
	// limits.go for the keys of loginAccount.
	loginAccount, loginIP, registerIP *ratelimit.Limiter

	// Set by Run before the handlers are subscribed and never changed
	// afterwards; the subscription orders these writes before every read.
	store     *store.Store
	signer    *token.Signer
	dummyHash string // a hash of nothing, verified for unknown usernames

	running atomic.Bool
	ready   atomic.Bool // buckets open and handlers subscribed
}

// New validates cfg and returns a Service; it does no I/O. reg receives the
// service's metrics (give every Service its own registry; nil: discarded).
func New(cfg Config, nc *nats.Conn, log *slog.Logger, reg prometheus.Registerer) (*Service, error) {
	if nc == nil {
		return nil, errors.New("authsvc: nil NATS connection")
	}
	v, err := cfg.validate()
	if err != nil {
		return nil, fmt.Errorf("authsvc: config: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	now := cfg.Clock
	if now == nil {
		now = time.Now
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("authsvc: metrics: %w", err)
	}
	h, err := password.NewHasher(v.params, cfg.HashConcurrency, m.observeHash)
	if err != nil {
		return nil, fmt.Errorf("authsvc: %w", err)
	}
	return &Service{
		cfg: cfg, v: v, nc: nc, log: log, now: now, hasher: h, metrics: m,
		rpcMetrics:   rpc.NewMetrics(reg, "auth"),
		loginAccount: ratelimit.New(cfg.LoginAccountLimit, time.Minute, cfg.LoginAccountBurst, now),
		loginIP:      ratelimit.New(cfg.LoginIPLimit, time.Minute, cfg.LoginIPBurst, now),
		registerIP:   ratelimit.New(cfg.RegisterIPLimit, time.Minute, cfg.RegisterIPBurst, now),
	}, nil
}

// Ready reports whether the service is answering: NATS connected and the
// buckets open. It backs /readyz.
func (s *Service) Ready() error {
	if !s.ready.Load() {
		return errors.New("auth: not serving (buckets not ready)")
	}
	if !s.nc.IsConnected() {
		return errors.New("auth: nats not connected")
	}
	return nil
}

// Run opens the buckets (retrying while NATS or JetStream is unavailable),
// loads the signing key, serves requests until ctx ends, then drains:
// queued requests are still answered before Run returns.
func (s *Service) Run(ctx context.Context) error {
	if !s.running.CompareAndSwap(false, true) {
		return errors.New("authsvc: Run called twice")
	}
	if err := s.setup(ctx); err != nil {
		return err
	}
	srv := rpc.NewServer(s.nc, subject.QueueAuth, s.log, s.rpcMetrics, s.cfg.Workers)
	for subj, h := range map[string]rpc.Handler{
		subject.AuthRegister: s.register,
		subject.AuthLogin:    s.login,
		subject.AuthResume:   s.resume,
		subject.AuthVerify:   s.verify,
		subject.AuthLogout:   s.logout,
		subject.AuthLookup:   s.lookup,

		subject.AuthSessionCheck: s.sessionCheck,
	} {
		if err := srv.Handle(subj, h); err != nil {
			srv.Close()
			return fmt.Errorf("authsvc: subscribe %s: %w", subj, err)
		}
	}
	s.ready.Store(true)
	s.log.Info("auth serving", "session_policy", s.cfg.SessionPolicy, "token_ttl", s.cfg.TokenTTL,
		"argon2", fmt.Sprintf("m=%d,t=%d,p=%d", s.v.params.Memory, s.v.params.Time, s.v.params.Threads))
	<-ctx.Done()
	s.ready.Store(false)
	srv.Close()
	s.log.Info("auth stopped")
	return nil
}

// setup retries until the store is open or ctx ends: at startup NATS may
// still be connecting, or JetStream electing a leader.
func (s *Service) setup(ctx context.Context) error {
	js, err := jetstream.New(s.nc)
	if err != nil {
		return fmt.Errorf("authsvc: jetstream: %w", err)
	}
	return service.Retry(ctx, s.log, "auth store", func(ctx context.Context) error { return s.open(ctx, js) })
}

func (s *Service) open(ctx context.Context, js jetstream.JetStream) error {
	octx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	st, err := store.Open(octx, js, store.Options{
		Replicas: s.cfg.KVReplicas,
		// A margin over the token TTL so a session never ages out of the
		// bucket while a token for it still verifies.
		SessionTTL: s.cfg.TokenTTL + time.Hour,
	})
	if err != nil {
		return err
	}
	key := s.v.staticKey
	if key == nil {
		key, err = st.SigningKey(octx, func() []byte {
			k := make([]byte, 32)
			_, _ = rand.Read(k)
			return k
		})
		if err != nil {
			return err
		}
	}
	signer, err := token.NewSigner(key, s.now)
	if err != nil {
		return err
	}
	if s.dummyHash == "" {
		if s.dummyHash, err = s.hasher.Hash(ctx, "parley-dummy-password"); err != nil {
			return err
		}
	}
	s.store, s.signer = st, signer
	return nil
}
