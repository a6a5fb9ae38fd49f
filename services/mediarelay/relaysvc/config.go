package relaysvc

import (
	"errors"
	"flag"
	"fmt"
	"time"

	"github.com/parleychat/parley/libs/service"
)

// Config is the media relay's configuration. RegisterFlags defines every
// field with its default; DefaultConfig returns those defaults.
type Config struct {
	// ReplicaID names this replica in heartbeats and as a call's owner
	// (letters, digits, '-' and '_'); empty: hostname-<6 random chars>.
	ReplicaID string
	// RingTimeout is how long a placed call rings before a private call
	// ends MISSED (a group call stops ringing).
	RingTimeout time.Duration
	// ParticipantTimeout removes a participant the gateways stopped
	// reporting (no Alive, no audio) for this long.
	ParticipantTimeout time.Duration
	// Heartbeat is how often the replica says it is alive and looks for
	// calls without a live owner.
	Heartbeat time.Duration
	// DeadAfter is how long a replica may stay unheard before its calls
	// are taken over.
	DeadAfter time.Duration
	// RosterInterval is how often the owner repeats a call's roster.
	RosterInterval time.Duration
	// MaxSpeakers is how many of the loudest streams are forwarded in a
	// call with more than ForwardAll participants.
	MaxSpeakers int
	// ForwardAll: calls with at most this many participants have every
	// unmuted stream forwarded.
	ForwardAll int
	// KVReplicas is the JetStream replica count of the calls bucket.
	KVReplicas int
	// Workers bounds concurrently handled requests per subject.
	Workers int
	// RequestTimeout bounds one request to messaging.
	RequestTimeout time.Duration
}

// RegisterFlags defines the relay's flags on fs, storing into c. Names
// carry a relay prefix so the one-binary server can register them next to
// the other services' flags.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.ReplicaID, "relay-id", "", "media relay replica id (letters, digits, - and _); default: hostname-<6 random chars>")
	fs.DurationVar(&c.RingTimeout, "relay-ring-timeout", 45*time.Second, "how long a call rings before a private call ends as missed")
	fs.DurationVar(&c.ParticipantTimeout, "relay-participant-timeout", 8*time.Second, "a participant no gateway reported alive for this long is removed from its call")
	fs.DurationVar(&c.Heartbeat, "relay-heartbeat", 250*time.Millisecond, "how often a replica heartbeats and looks for calls without a live owner")
	fs.DurationVar(&c.DeadAfter, "relay-dead-after", time.Second, "a replica unheard for this long is dead: its calls are taken over")
	fs.DurationVar(&c.RosterInterval, "relay-roster-interval", 2*time.Second, "how often the owner repeats a call's roster to the gateways")
	fs.IntVar(&c.MaxSpeakers, "relay-max-speakers", 3, "loudest streams forwarded in a call with more than -relay-forward-all participants")
	fs.IntVar(&c.ForwardAll, "relay-forward-all", 4, "calls with at most this many participants have every unmuted stream forwarded")
	fs.IntVar(&c.KVReplicas, "relay-kv-replicas", 1, "JetStream replicas of the calls KV bucket")
	fs.IntVar(&c.Workers, "relay-workers", 64, "signalling requests handled at once per subject by this replica")
	fs.DurationVar(&c.RequestTimeout, "relay-request-timeout", 5*time.Second, "timeout of requests to messaging")
}

// DefaultConfig returns the configuration RegisterFlags defaults to.
func DefaultConfig() Config {
	var c Config
	c.RegisterFlags(flag.NewFlagSet("media-relay", flag.ContinueOnError))
	return c
}

// ErrBadConfig is wrapped by every configuration error.
var ErrBadConfig = errors.New("media-relay: bad config")

// Validate reports every problem with c at once (joined with
// errors.Join), each naming its flag and wrapping ErrBadConfig; it starts
// nothing. New applies the same checks.
func (c Config) Validate() error { return c.validate() }

func (c Config) validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf(format+": %w", append(args, ErrBadConfig)...))
	}
	if c.ReplicaID != "" && !service.ValidID(c.ReplicaID) {
		bad("-relay-id must be 1 to 64 letters, digits, '-' or '_'")
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"-relay-ring-timeout", c.RingTimeout}, {"-relay-participant-timeout", c.ParticipantTimeout},
		{"-relay-heartbeat", c.Heartbeat}, {"-relay-dead-after", c.DeadAfter},
		{"-relay-roster-interval", c.RosterInterval}, {"-relay-request-timeout", c.RequestTimeout}} {
		if d.v <= 0 {
			bad("%s must be positive", d.name)
		}
	}
	if c.Heartbeat > 0 && c.DeadAfter > 0 && c.DeadAfter < 2*c.Heartbeat {
		bad("-relay-dead-after must be at least twice -relay-heartbeat")
	}
	if c.MaxSpeakers < 1 {
		bad("-relay-max-speakers must be at least 1")
	}
	if c.ForwardAll < 0 {
		bad("-relay-forward-all must not be negative")
	}
	if c.KVReplicas < 1 || c.KVReplicas > 5 {
		bad("-relay-kv-replicas must be between 1 and 5")
	}
	if c.Workers < 1 {
		bad("-relay-workers must be at least 1")
	}
	return errors.Join(errs...)
}
