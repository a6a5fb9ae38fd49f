// Package relaysvc is Parley's media relay: call signalling (place, join,
// reject, leave, mute) and the forwarding of a call's audio between the
// gateways of its participants (issue 11; docs: the calls design).
//
// # State
//
// A call is one record in the JetStream KV bucket subject.BucketCalls,
// "call.<id>" -> internalv1.CallRecord, with two pointer keys:
// "user.<uid>" (the call a user is in: one per user) and
// "conv.<conversation>" (the call running in a conversation: one per
// conversation). Every change is a compare-and-set on the record's
// revision made by whichever replica took the request (queue group
// subject.QueueMedia), which then publishes the parleyv1.CallEvent and,
// where the design says so, asks messaging to post the call's system
// message (subject.MsgPostCall). A pointer naming a call that is missing or
// ENDED counts as absent.
//
// # Ownership
//
// One replica, the record's owner, forwards a call's media: it subscribes
// to subject.MediaUp(call), drops what is not a current unmuted
// participant's audio, and publishes the rest, byte for byte, on
// subject.MediaDown(call) (all of it up to Config.ForwardAll participants;
// beyond, the Config.MaxSpeakers loudest streams). It publishes the call's
// roster on every change and every Config.RosterInterval, times out
// participants no gateway reports alive and ends an unanswered private
// call at its ring deadline.
//
// Replicas heartbeat on subject.MediaRelayAlive and watch every record. A
// call whose owner has been unheard for Config.DeadAfter is taken over by
// the live replica that rendezvous hashing picks, by a compare-and-set of
// the owner field, so exactly one wins; the gateways keep publishing on the
// same subjects and notice nothing but a short gap.
package relaysvc

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/parleychat/parley/libs/service"
	"github.com/parleychat/parley/libs/subject"
)

// Service is one media relay replica.
type Service struct {
	cfg     Config
	id      string // this replica's id (cfg.ReplicaID or a generated one)
	nc      *nats.Conn
	log     *slog.Logger
	now     func() time.Time
	metrics *metrics
	run     *service.Runner
	owner   *owner

	// Set by open before the handlers are subscribed, never changed after.
	kv jetstream.KeyValue

	hooks hooks // tests only (export_test.go); set before Run
}

// hooks let tests slow down or disturb the relay's work at chosen points.
// Every field may be nil.
type hooks struct {
	// tickWork runs before a tick's work on call id, with the context
	// that bounds that work.
	tickWork func(ctx context.Context, id string)
	// beforeSave runs in update before the compare-and-set of call id.
	beforeSave func(ctx context.Context, id string)
}

// New validates cfg and deps and registers metrics; it contacts nothing.
func New(cfg Config, deps service.Deps) (*Service, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	deps, err := deps.WithDefaults()
	if err != nil {
		return nil, fmt.Errorf("media-relay: %w", err)
	}
	m, err := newMetrics(deps.Registry)
	if err != nil {
		return nil, fmt.Errorf("media-relay: metrics: %w", err)
	}
	s := &Service{cfg: cfg, id: cfg.ReplicaID, nc: deps.NC, log: deps.Log, now: deps.Clock, metrics: m}
	if s.id == "" {
		s.id = service.DefaultID("relay")
	}
	s.log = s.log.With("relay", s.id)
	s.owner = newOwner(s)
	s.run, err = service.NewRunner(service.Spec{
		Name: "media-relay", Queue: subject.QueueMedia, Workers: cfg.Workers, Open: s.open,
		Endpoints: []service.Endpoint{
			{Subject: subject.CallPlace, Handler: s.handlePlace},
			{Subject: subject.CallJoin, Handler: s.handleJoin},
			{Subject: subject.CallReject, Handler: s.handleReject},
			{Subject: subject.CallLeave, Handler: s.handleLeave},
			{Subject: subject.CallMute, Handler: s.handleMute},
		},
		Loops: []func(context.Context){s.owner.watchLoop, s.owner.tickLoop},
		Attrs: []any{"replica", s.id, "ring_timeout", cfg.RingTimeout, "participant_timeout", cfg.ParticipantTimeout,
			"dead_after", cfg.DeadAfter},
	}, deps)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// ID is this replica's id, as it heartbeats and names itself owner.
func (s *Service) ID() string { return s.id }

// Ready reports whether this replica serves (the /readyz check).
func (s *Service) Ready() error { return s.run.Ready() }

// Run opens the calls bucket (retrying while JetStream is unavailable),
// serves signalling, heartbeats and forwards the media of the calls it owns
// until ctx ends, then drains (libs/service Runner). The calls it owned are
// taken over by the other replicas once its heartbeats stop.
func (s *Service) Run(ctx context.Context) error { return s.run.Run(ctx) }

// open opens the calls bucket and starts listening to the replicas'
// heartbeats; the Runner retries it until it succeeds.
func (s *Service) open(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	js, err := jetstream.New(s.nc)
	if err != nil {
		return err
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: subject.BucketCalls, Description: "Parley media relay: calls and their user and conversation pointers",
		History: 1, Replicas: s.cfg.KVReplicas, Storage: jetstream.FileStorage,
	})
	if err != nil {
		return fmt.Errorf("bucket %s: %w", subject.BucketCalls, err)
	}
	s.kv = kv
	return s.owner.listen()
}
