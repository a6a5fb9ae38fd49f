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

	// Per-user rates (limits.go), per replica; 0 disables. Burst is the
	// bucket size: how many may come at once before the rate applies.
	SendLimit, SendBurst     int // messages per minute
	FriendRequestLimit       int // friend requests per hour (burst: the same)
	GroupCreateLimit         int // groups created per hour (burst: the same)
	InviteLimit              int // users invited per hour (burst: the same)
	LookupLimit, LookupBurst int // usernames resolved per hour
	TypingLimit, TypingBurst int // typing indicators forwarded per minute
	// Per-user counts (QUOTA_EXCEEDED); 0 disables.
	MaxGroups         int // groups a user is a member of
	MaxPendingInvites int // invitations a user holds unanswered
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

	// Per-user limits: far above what a person does by hand, far below what
	// a script does. Kept per replica (N replicas: up to N times the rate).
	fs.IntVar(&c.SendLimit, "msg-send-limit", 60, "messages a user may send per minute, after the burst (per replica; 0 disables)")
	fs.IntVar(&c.SendBurst, "msg-send-burst", 30, "messages a user may send at once before -msg-send-limit applies")
	fs.IntVar(&c.FriendRequestLimit, "msg-friend-request-limit", 30, "friend requests a user may make per hour, all at once if they like (per replica; 0 disables)")
	fs.IntVar(&c.GroupCreateLimit, "msg-group-create-limit", 10, "groups a user may create per hour (per replica; 0 disables)")
	fs.IntVar(&c.InviteLimit, "msg-invite-limit", 200, "users a user may invite to groups per hour, each invitee counting once (per replica; 0 disables; at least 100, a request's most)")
	fs.IntVar(&c.LookupLimit, "msg-lookup-limit", 300, "usernames a user may have resolved per hour (open_direct, to_username, friends, blocks, groups: one per name; per replica; 0 disables)")
	fs.IntVar(&c.LookupBurst, "msg-lookup-burst", 200, "usernames a user may have resolved at once before -msg-lookup-limit applies (at least 100, a request's most)")
	fs.IntVar(&c.TypingLimit, "msg-typing-limit", 60, "typing indicators a user may have forwarded per minute over all conversations, after the burst (per replica; 0 disables)")
	fs.IntVar(&c.TypingBurst, "msg-typing-burst", 20, "typing indicators a user may have forwarded at once before -msg-typing-limit applies")
	fs.IntVar(&c.MaxGroups, "msg-max-groups", 1000, "groups a user may be a member of (0: no limit)")
	fs.IntVar(&c.MaxPendingInvites, "msg-max-pending-invites", 100, "unanswered group invitations a user may hold; more are refused to the inviter (0: no limit)")
}

// DefaultConfig returns the configuration RegisterFlags defaults to.
func DefaultConfig() Config {
	var c Config
	c.RegisterFlags(flag.NewFlagSet("messaging", flag.ContinueOnError))
	return c
}

// ErrBadConfig is wrapped by every configuration error.
var ErrBadConfig = errors.New("messaging: bad config")

// Validate reports every problem with c at once (joined with
// errors.Join), each naming its flag and wrapping ErrBadConfig; it starts
// nothing. New applies the same checks.
func (c Config) Validate() error { return c.validate() }

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
	for name, n := range map[string]int{"-msg-send-limit": c.SendLimit, "-msg-send-burst": c.SendBurst,
		"-msg-friend-request-limit": c.FriendRequestLimit, "-msg-group-create-limit": c.GroupCreateLimit,
		"-msg-invite-limit": c.InviteLimit, "-msg-lookup-limit": c.LookupLimit, "-msg-lookup-burst": c.LookupBurst,
		"-msg-typing-limit": c.TypingLimit, "-msg-typing-burst": c.TypingBurst,
		"-msg-max-groups": c.MaxGroups, "-msg-max-pending-invites": c.MaxPendingInvites} {
		if n < 0 {
			bad("%s must not be negative", name)
		}
	}
	// One request may name maxInvitesPerRequest users: a smaller bucket
	// could never grant it.
	if c.InviteLimit > 0 && c.InviteLimit < maxInvitesPerRequest {
		bad("-msg-invite-limit must be 0 or at least %d", maxInvitesPerRequest)
	}
	if c.LookupLimit > 0 && c.LookupBurst < maxInvitesPerRequest {
		bad("-msg-lookup-burst must be at least %d", maxInvitesPerRequest)
	}
	return errors.Join(errs...)
}
