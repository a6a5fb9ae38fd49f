// Package rdvsvc is Parley's rendezvous for direct (peer-to-peer) sessions
// (docs/protocol.md §20): a STUN server on two addresses (RFC 8489,
// RFC 5780) and the signalling that lets two devices agree to go direct and
// learn where the other can be reached.
//
// # The conversation
//
//  1. Device A opens (subject.P2POpen, through the gateway with the
//     identity headers): the rendezvous asks messaging whether A may reach
//     the user (subject.MsgCallResolve: blocks, the peer's id, friendship)
//     and auth whether A's device_id is one of A's keys
//     (subject.AuthDeviceKeys), stores an OFFERED session with fresh random
//     keys, publishes P2PEvent{OFFER} to every connection of the peer and
//     replies A's view of it.
//  2. A device of B answers (subject.P2PAnswer): the first to accept moves
//     the session to ACCEPTED (a compare-and-set; a second device gets
//     CONFLICT) and both users get P2PEvent{ACCEPTED}; a decline closes it
//     (REJECTED). An offer not answered within Config.OfferTimeout closes
//     EXPIRED.
//  3. Each side registers its session socket: an authenticated STUN
//     Binding to the primary and to the alternate address (USERNAME =
//     register_username, MESSAGE-INTEGRITY keyed with register_key). The
//     rendezvous records the address seen at each (the server-reflexive
//     candidates, whose equality tells the NAT's mapping).
//  4. Once both sides accepted and registered at the primary, both users get
//     P2PEvent{INTRO}, each with the peer's candidates; again, with a
//     higher intro number, whenever a registration changes an address or
//     a mapping and after a P2PUpdateRequest.
//  5. Either side closes (subject.P2PClose); an accepted session unchanged
//     for Config.IdleTimeout closes EXPIRED.
//
// # State
//
// A session is one record in the JetStream KV bucket subject.BucketP2P,
// "s.<session_id>" -> internalv1.P2PRecord, and each user has an index
// "u.<user_id>" listing the sessions they opened or accepted (the quota
// of MaxSessions; pruned of ended sessions whenever it is read). Every
// change is a compare-and-set on the record's revision by whichever replica
// took the request (queue group subject.QueueRendezvous) or the STUN
// packet: replicas share nothing else, so a session opened through one
// replica is registered and introduced by any other. Every replica watches
// the records and closes those past their deadline; the compare-and-set
// lets exactly one of them publish the CLOSED events.
package rdvsvc

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/parleychat/parley/libs/service"
	"github.com/parleychat/parley/libs/subject"
)

// Service is one rendezvous replica: its STUN sockets and its share of the
// signalling.
type Service struct {
	cfg     Config
	nc      *nats.Conn
	log     *slog.Logger
	now     func() time.Time
	metrics *metrics
	run     *service.Runner
	stun    *stunServer

	// kv is set by open, before the handlers are subscribed; the STUN
	// workers read it concurrently and drop registrations until it is set.
	kv atomic.Pointer[jetstream.KeyValue]
	// regKeys is the live sessions' register keys, kept by the sweep's
	// watch, for the STUN read loops' first check of a registration.
	regKeys regKeys
}

// New validates cfg and deps and registers metrics; it binds and contacts
// nothing.
func New(cfg Config, deps service.Deps) (*Service, error) {
	addrs, err := cfg.addrs()
	if err != nil {
		return nil, err
	}
	deps, err = deps.WithDefaults()
	if err != nil {
		return nil, fmt.Errorf("rendezvous: %w", err)
	}
	m, err := newMetrics(deps.Registry)
	if err != nil {
		return nil, fmt.Errorf("rendezvous: metrics: %w", err)
	}
	s := &Service{cfg: cfg, nc: deps.NC, log: deps.Log, now: deps.Clock, metrics: m}
	s.stun = newSTUNServer(s, addrs)
	s.run, err = service.NewRunner(service.Spec{
		Name: "rendezvous", Queue: subject.QueueRendezvous, Workers: cfg.Workers, Open: s.open,
		Endpoints: []service.Endpoint{
			{Subject: subject.P2POpen, Handler: s.handleOpen},
			{Subject: subject.P2PAnswer, Handler: s.handleAnswer},
			{Subject: subject.P2PUpdate, Handler: s.handleUpdate},
			{Subject: subject.P2PClose, Handler: s.handleClose},
		},
		Loops: []func(context.Context){s.sweepLoop},
		Attrs: []any{"stun_addr", cfg.STUNAddr, "stun_alt_addr", cfg.STUNAltAddr, "offer_timeout", cfg.OfferTimeout,
			"idle_timeout", cfg.IdleTimeout},
	}, deps)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// Listen binds the STUN sockets (Run does when it was not called), so the
// addresses are known before Run: with port 0 the kernel picks them.
func (s *Service) Listen() error { return s.stun.listen() }

// Addrs are the bound primary and alternate STUN addresses (the alternate
// invalid when there is none); zero before Listen.
func (s *Service) Addrs() (primary, alternate netip.AddrPort) { return s.stun.bound() }

// PublicAddrs are the STUN addresses clients are told
// (P2PSession.stun_addr, stun_alt_addr; "" when there is no alternate):
// -stun-public-addr and -stun-public-alt-addr, else the bound ones. Before
// Listen a port 0 reads as 0.
func (s *Service) PublicAddrs() (primary, alternate string) { return s.stun.publicAddrs() }

// Close releases the sockets Listen bound, for a Service that will not Run
// (its caller failed to start something else). Run closes them itself.
func (s *Service) Close() { s.stun.close() }

// Ready reports whether this replica serves signalling (the /readyz
// check). STUN is answered from Listen on.
func (s *Service) Ready() error { return s.run.Ready() }

// Run binds the STUN sockets (unless Listen did) and serves them and the
// signalling until ctx ends, then closes the sockets and drains (libs/service
// Runner). Registrations are dropped until the sessions bucket is open.
func (s *Service) Run(ctx context.Context) error {
	if err := s.stun.listen(); err != nil {
		return err
	}
	return service.Group(ctx, s.stun.serve, s.run.Run)
}

// open opens the sessions bucket; the Runner retries it until it succeeds.
// Records carry their own deadlines (swept by sweepLoop); the bucket's TTL
// is only the last resort for one no replica was left to sweep.
func (s *Service) open(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	js, err := jetstream.New(s.nc)
	if err != nil {
		return err
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: subject.BucketP2P, Description: "Parley rendezvous: direct sessions and each user's open sessions",
		History: 1, Replicas: s.cfg.KVReplicas, Storage: jetstream.FileStorage,
		TTL: max(s.cfg.IdleTimeout, s.cfg.OfferTimeout) + time.Hour,
	})
	if err != nil {
		return fmt.Errorf("bucket %s: %w", subject.BucketP2P, err)
	}
	s.kv.Store(&kv)
	return nil
}

// store is the sessions bucket, nil before open.
func (s *Service) store() jetstream.KeyValue {
	if p := s.kv.Load(); p != nil {
		return *p
	}
	return nil
}
