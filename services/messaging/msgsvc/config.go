package msgsvc

import (
	"errors"
	"flag"
	"fmt"
	"time"
)

// MaxMessageBytes is the hard limit on a message's text in bytes (16 KiB),
// whatever -max-message-chars allows: it bounds stored payloads, history
// pages and frames.
const MaxMessageBytes = 16 << 10

// Config is the messaging service's configuration. RegisterFlags defines
// every field with its default; DefaultConfig returns those defaults.
type Config struct {
	// StreamReplicas is the JetStream replica count of the messages stream
	// and the messaging buckets (1, 3 or 5 on a cluster).
	StreamReplicas int
	// Retention is the max age of stored messages; 0 keeps them forever.
	Retention time.Duration
	// DedupWindow is how long a client_key is remembered: a re-send with
	// the same key within it is stored once.
	DedupWindow time.Duration
	// MaxMessageChars is the longest text in Unicode code points.
	MaxMessageChars int
	// Workers bounds concurrently handled requests per subject.
	Workers int
	// LookupTimeout bounds a username lookup at the auth service.
	LookupTimeout time.Duration
	// PresenceTimeout bounds one online-state query at the presence
	// service (friends list); a friend whose query times out is offline.
	PresenceTimeout time.Duration
}

// RegisterFlags defines the messaging flags on fs, storing into c. The
// one-binary server registers them next to the other services' flags, so
// messaging-specific names carry a msg prefix.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.IntVar(&c.StreamReplicas, "msg-stream-replicas", 1, "JetStream replicas of the messages stream and the messaging KV buckets")
	fs.DurationVar(&c.Retention, "msg-retention", 0, "how long messages are kept; 0 keeps them forever")
	fs.DurationVar(&c.DedupWindow, "msg-dedup-window", 10*time.Minute, "how long a message's client_key is remembered for idempotent re-sends")
	fs.IntVar(&c.MaxMessageChars, "max-message-chars", 4000, "longest message text in characters (Unicode code points); 16 KiB is the hard byte limit")
	fs.IntVar(&c.Workers, "msg-workers", 64, "requests handled at once per subject by this replica")
	fs.DurationVar(&c.LookupTimeout, "msg-lookup-timeout", 3*time.Second, "how long to wait for the auth service to resolve a username")
	fs.DurationVar(&c.PresenceTimeout, "msg-presence-timeout", time.Second, "how long a friends list waits for the presence service per friend (no answer: shown offline)")
}

// DefaultConfig returns the configuration RegisterFlags defaults to.
func DefaultConfig() Config {
	var c Config
	c.RegisterFlags(flag.NewFlagSet("messaging", flag.ContinueOnError))
	return c
}

// ErrBadConfig is wrapped by every configuration error.
var ErrBadConfig = errors.New("messaging: bad config")

func (c Config) validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf(format+": %w", append(args, ErrBadConfig)...))
	}
	if c.StreamReplicas < 1 || c.StreamReplicas > 5 {
		bad("-msg-stream-replicas must be between 1 and 5")
	}
	if c.Retention < 0 {
		bad("-msg-retention must not be negative")
	}
	if c.DedupWindow <= 0 {
		bad("-msg-dedup-window must be positive")
	}
	if c.Retention > 0 && c.DedupWindow > c.Retention {
		bad("-msg-dedup-window must not exceed -msg-retention")
	}
	if c.MaxMessageChars < 1 || c.MaxMessageChars > MaxMessageBytes {
		bad("-max-message-chars must be between 1 and %d", MaxMessageBytes)
	}
	if c.Workers < 1 {
		bad("-msg-workers must be at least 1")
	}
	if c.LookupTimeout <= 0 {
		bad("-msg-lookup-timeout must be positive")
	}
	if c.PresenceTimeout <= 0 {
		bad("-msg-presence-timeout must be positive")
	}
	return errors.Join(errs...)
}
