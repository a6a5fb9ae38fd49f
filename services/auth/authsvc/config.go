package authsvc

import (
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/parleychat/parley/services/auth/internal/password"
	"github.com/parleychat/parley/services/auth/internal/policy"
	"github.com/parleychat/parley/services/auth/internal/token"
)

// Session policies: what a login does about the user's other sessions.
const (
	// PolicyMulti lets a user be logged in from any number of devices.
	PolicyMulti = "multi"
	// PolicyTakeover ends the user's other sessions on every login or resume
	// (the newest device wins; the others get SessionEnded LOGGED_IN_ELSEWHERE).
	PolicyTakeover = "takeover"
	// PolicyReject refuses a login while the user has a live connection
	// (ALREADY_LOGGED_IN), asking the presence service. It is as exact as
	// presence: two logins in the same instant, before either connection
	// is registered, can both pass.
	PolicyReject = "reject"
)

// Config is the auth service's configuration. RegisterFlags defines every
// field with its default; DefaultConfig returns those defaults.
type Config struct {
	// Account policy.
	UsernameMinLen, UsernameMaxLen int // ASCII characters
	PasswordMinLen, PasswordMaxLen int // Unicode code points

	// Password hashing (argon2id).
	Argon2Memory    uint // KiB
	Argon2Time      uint
	Argon2Threads   uint
	HashConcurrency int // simultaneous hashes; 0 = GOMAXPROCS

	// Tokens and sessions.
	TokenKey      string        // base64, >= 32 bytes; empty = generated once and kept in KV
	TokenTTL      time.Duration // token lifetime; resume issues a fresh one
	TokenGrace    time.Duration // how long the token a resume replaced still resumes
	SessionPolicy string        // multi, takeover or reject
	// PresenceTimeout bounds the presence check of the reject policy.
	PresenceTimeout time.Duration

	// Storage.
	KVReplicas int

	// Rate limits, per replica, per minute (burst = bucket size); 0 disables.
	// The account limit applies to the account's unfamiliar networks
	// together, and to each familiar network on its own (limits.go).
	LoginAccountLimit, LoginAccountBurst int // failed logins per account and location
	LoginIPLimit, LoginIPBurst           int // failed logins per source IP
	RegisterIPLimit, RegisterIPBurst     int // registration attempts per source IP

	// Workers bounds concurrently handled requests (hashing is further
	// bounded by HashConcurrency).
	Workers int
}

// RegisterFlags defines the auth service's flags on fs, storing into c.
// The one-binary server in standalone/ calls it too, next to the other
// services' flags, so names are specific enough not to clash.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	pp, hp := policy.Default(), password.DefaultParams()
	fs.IntVar(&c.UsernameMinLen, "username-min-len", pp.UsernameMin, "shortest username")
	fs.IntVar(&c.UsernameMaxLen, "username-max-len", pp.UsernameMax, "longest username")
	fs.IntVar(&c.PasswordMinLen, "password-min-len", pp.PasswordMin, "shortest password in characters (NIST SP 800-63B: at least 8)")
	fs.IntVar(&c.PasswordMaxLen, "password-max-len", pp.PasswordMax, "longest password in characters")
	fs.UintVar(&c.Argon2Memory, "argon2-memory", uint(hp.Memory), "argon2id memory per hash in KiB (OWASP: 19456)")
	fs.UintVar(&c.Argon2Time, "argon2-time", uint(hp.Time), "argon2id passes (OWASP: 2)")
	fs.UintVar(&c.Argon2Threads, "argon2-threads", uint(hp.Threads), "argon2id lanes (OWASP: 1)")
	fs.IntVar(&c.HashConcurrency, "hash-concurrency", 0, "password hashes computed at once (bounds memory to this times -argon2-memory); 0 = GOMAXPROCS")
	fs.StringVar(&c.TokenKey, "token-key", "", "token signing key, base64 of at least 32 bytes; empty: generate one and share it through NATS KV")
	fs.DurationVar(&c.TokenTTL, "token-ttl", 7*24*time.Hour, "session token lifetime (a resume issues a fresh token)")
	fs.DurationVar(&c.TokenGrace, "token-grace", time.Minute, "how long a session's previous token is still accepted after a resume replaced it (a client whose resume reply was lost retries with it); 0: at once")
	fs.StringVar(&c.SessionPolicy, "session-policy", PolicyMulti, "what a login does about the user's other sessions: multi, takeover or reject")
	fs.DurationVar(&c.PresenceTimeout, "session-check-timeout", 2*time.Second, "with -session-policy reject: how long to wait for the presence service")
	fs.IntVar(&c.KVReplicas, "kv-replicas", 1, "JetStream replicas of the auth KV buckets")
	fs.IntVar(&c.LoginAccountLimit, "login-account-limit", 5, "failed logins per minute per account from all unfamiliar networks together, and from each network the account logged in from in the last 30 days on its own (per replica; 0 disables)")
	fs.IntVar(&c.LoginAccountBurst, "login-account-burst", 5, "failed logins per account (and network, as for -login-account-limit) allowed in a burst")
	fs.IntVar(&c.LoginIPLimit, "login-ip-limit", 20, "failed logins per minute per source IP (per replica; 0 disables)")
	fs.IntVar(&c.LoginIPBurst, "login-ip-burst", 20, "failed logins per source IP allowed in a burst")
	fs.IntVar(&c.RegisterIPLimit, "register-ip-limit", 10, "registration attempts per minute per source IP (per replica; 0 disables)")
	fs.IntVar(&c.RegisterIPBurst, "register-ip-burst", 10, "registration attempts per source IP allowed in a burst")
	fs.IntVar(&c.Workers, "auth-workers", 64, "requests handled at once by this replica")
}

// DefaultConfig returns the configuration RegisterFlags defaults to.
func DefaultConfig() Config {
	var c Config
	c.RegisterFlags(flag.NewFlagSet("auth", flag.ContinueOnError))
	return c
}

// Validate reports every problem with c at once (joined with
// errors.Join), each naming its flag; it starts nothing. New applies the
// same checks.
func (c Config) Validate() error {
	_, err := c.validate()
	return err
}

// validated is a Config turned into the internal packages' settings.
type validated struct {
	policy    policy.Policy
	params    password.Params
	staticKey []byte // nil: use the shared generated key
}

func (c Config) validate() (validated, error) {
	var v validated
	var errs []error
	v.policy = policy.Policy{UsernameMin: c.UsernameMinLen, UsernameMax: c.UsernameMaxLen,
		PasswordMin: c.PasswordMinLen, PasswordMax: c.PasswordMaxLen}
	if err := v.policy.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("-username-min-len, -username-max-len, -password-min-len, -password-max-len: %w", err))
	}
	def := password.DefaultParams()
	v.params = password.Params{Memory: uint32(c.Argon2Memory), Time: uint32(c.Argon2Time),
		Threads: uint8(c.Argon2Threads), SaltLen: def.SaltLen, KeyLen: def.KeyLen}
	if c.Argon2Threads > 255 || c.Argon2Memory > 1<<32-1 || c.Argon2Time > 1<<32-1 {
		errs = append(errs, fmt.Errorf("-argon2-memory, -argon2-time, -argon2-threads: out of range: %w", password.ErrInvalidParams))
	} else if err := v.params.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("-argon2-memory, -argon2-time, -argon2-threads: %w", err))
	}
	if c.TokenKey != "" {
		key, err := decodeKey(c.TokenKey)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("-token-key: not base64: %w", err))
		case len(key) < token.MinKeyLen:
			errs = append(errs, fmt.Errorf("-token-key: %d bytes, need at least %d", len(key), token.MinKeyLen))
		}
		v.staticKey = key
	}
	if c.TokenTTL < time.Second {
		errs = append(errs, errors.New("-token-ttl must be at least 1s"))
	}
	if c.TokenGrace < 0 || c.TokenGrace > time.Hour {
		errs = append(errs, errors.New("-token-grace must be between 0 and 1h"))
	}
	switch c.SessionPolicy {
	case PolicyMulti, PolicyTakeover, PolicyReject:
	default:
		errs = append(errs, fmt.Errorf("-session-policy %q: want multi, takeover or reject", c.SessionPolicy))
	}
	if c.SessionPolicy == PolicyReject && c.PresenceTimeout <= 0 {
		errs = append(errs, errors.New("-session-check-timeout must be positive"))
	}
	if c.KVReplicas < 1 || c.KVReplicas > 5 {
		errs = append(errs, errors.New("-kv-replicas must be between 1 and 5"))
	}
	for name, n := range map[string]int{"login-account-limit": c.LoginAccountLimit, "login-account-burst": c.LoginAccountBurst,
		"login-ip-limit": c.LoginIPLimit, "login-ip-burst": c.LoginIPBurst,
		"register-ip-limit": c.RegisterIPLimit, "register-ip-burst": c.RegisterIPBurst, "hash-concurrency": c.HashConcurrency} {
		if n < 0 {
			errs = append(errs, fmt.Errorf("-%s must not be negative", name))
		}
	}
	if c.Workers < 1 {
		errs = append(errs, errors.New("-auth-workers must be at least 1"))
	}
	return v, errors.Join(errs...)
}

// decodeKey accepts standard or URL-safe base64, padded or not.
func decodeKey(s string) ([]byte, error) {
	s = strings.TrimRight(strings.TrimSpace(s), "=")
	if strings.ContainsAny(s, "-_") {
		return base64.RawURLEncoding.DecodeString(s)
	}
	return base64.RawStdEncoding.DecodeString(s)
}
