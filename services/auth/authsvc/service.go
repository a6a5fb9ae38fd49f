// Package authsvc is Parley's auth service: accounts, password login,
// session tokens, the session policy and device keys (devices.go),
// answering the gateway (and, for lookups, other services) on the
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
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/parleychat/parley/libs/ratelimit"
	"github.com/parleychat/parley/libs/service"
	"github.com/parleychat/parley/libs/subject"
	"github.com/parleychat/parley/services/auth/internal/password"
	"github.com/parleychat/parley/services/auth/internal/store"
	"github.com/parleychat/parley/services/auth/internal/token"
)

// Service is one auth replica.
type Service struct {
	cfg     Config
	v       validated
	nc      *nats.Conn
	log     *slog.Logger
	now     func() time.Time
	hasher  *password.Hasher
	metrics *metrics
	run     *service.Runner

	// Limiters count failures (logins) or attempts (registrations); see
	// package ratelimit for why per-replica state is acceptable, and
	// limits.go for the keys of loginAccount.
	loginAccount, loginIP, registerIP *ratelimit.Limiter

	// Set by open before the handlers are subscribed and never changed
	// afterwards; the subscription orders these writes before every read.
	store     *store.Store
	signer    *token.Signer
	dummyHash string // a hash of nothing, verified for unknown usernames
}

// New validates cfg and returns a Service; it does no I/O. deps.Registry
// receives the service's metrics (give every Service its own registry).
func New(cfg Config, deps service.Deps) (*Service, error) {
	v, err := cfg.validate()
	if err != nil {
		return nil, fmt.Errorf("authsvc: config: %w", err)
	}
	if deps, err = deps.WithDefaults(); err != nil {
		return nil, fmt.Errorf("authsvc: %w", err)
	}
	m, err := newMetrics(deps.Registry)
	if err != nil {
		return nil, fmt.Errorf("authsvc: metrics: %w", err)
	}
	h, err := password.NewHasher(v.params, cfg.HashConcurrency, m.observeHash)
	if err != nil {
		return nil, fmt.Errorf("authsvc: %w", err)
	}
	now := deps.Clock
	s := &Service{
		cfg: cfg, v: v, nc: deps.NC, log: deps.Log, now: now, hasher: h, metrics: m,
		loginAccount: ratelimit.New(cfg.LoginAccountLimit, time.Minute, cfg.LoginAccountBurst, now),
		loginIP:      ratelimit.New(cfg.LoginIPLimit, time.Minute, cfg.LoginIPBurst, now),
		registerIP:   ratelimit.New(cfg.RegisterIPLimit, time.Minute, cfg.RegisterIPBurst, now),
	}
	s.run, err = service.NewRunner(service.Spec{
		Name: "auth", Queue: subject.QueueAuth, Workers: cfg.Workers, Open: s.open,
		Endpoints: []service.Endpoint{
			{Subject: subject.AuthRegister, Handler: s.register},
			{Subject: subject.AuthLogin, Handler: s.login},
			{Subject: subject.AuthResume, Handler: s.resume},
			{Subject: subject.AuthVerify, Handler: s.verify},
			{Subject: subject.AuthLogout, Handler: s.logout},
			{Subject: subject.AuthLookup, Handler: s.lookup},
			{Subject: subject.AuthSessionCheck, Handler: s.sessionCheck},
			{Subject: subject.AuthDeviceRegister, Handler: s.registerDevice},
			{Subject: subject.AuthDeviceKeys, Handler: s.deviceKeys},
		},
		Loops: []func(context.Context){s.indexAccounts},
		Attrs: []any{"session_policy", cfg.SessionPolicy, "token_ttl", cfg.TokenTTL,
			"argon2", fmt.Sprintf("m=%d,t=%d,p=%d", v.params.Memory, v.params.Time, v.params.Threads)},
	}, deps)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// Ready reports whether the service is answering: buckets open, handlers
// subscribed, NATS connected. It backs /readyz.
func (s *Service) Ready() error { return s.run.Ready() }

// Run opens the buckets and loads the signing key (retrying while NATS or
// JetStream is unavailable), serves requests until ctx ends, then drains
// (libs/service Runner).
func (s *Service) Run(ctx context.Context) error { return s.run.Run(ctx) }

// indexAccounts gives the accounts made before the user id index existed
// their entries (store.IndexAccounts), once per bucket, retrying while
// NATS fails; until it has run, those users' device keys are found by
// name only (or by id once they register a device). It returns when done
// or when ctx ends.
func (s *Service) indexAccounts(ctx context.Context) {
	err := service.Retry(ctx, s.log, "auth account id index", func(ctx context.Context) error {
		n, err := s.store.IndexAccounts(ctx)
		if n > 0 {
			s.log.Info("accounts indexed by user id", "accounts", n)
		}
		return err
	})
	if err != nil && ctx.Err() == nil {
		s.log.Error("account id index", "err", err)
	}
}

// open opens the store and loads the signing key; the Runner retries it
// until it succeeds.
func (s *Service) open(ctx context.Context) error {
	octx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	js, err := jetstream.New(s.nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
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
