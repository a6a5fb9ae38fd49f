package filesvc

import (
	"errors"
	"flag"
	"fmt"
	"time"
)

// Config is the file service's configuration. RegisterFlags defines every
// field with its default; DefaultConfig returns those defaults.
type Config struct {
	// MaxFileSize is the largest file that may be offered, in bytes.
	MaxFileSize int64
	// FileTTL is how long a finished file is kept (from when its upload
	// finished); UploadTTL how long an upload may take before it is
	// aborted and its parts deleted.
	FileTTL   time.Duration
	UploadTTL time.Duration
	// TokenTTL is how long a download URL works.
	TokenTTL time.Duration
	// TokenKey signs download tokens (at least 32 bytes); empty: a key is
	// generated once and kept in KV, shared by every replica.
	TokenKey string
	// LeaseTTL is how long an upload's writer (one PATCH) holds its lease
	// without committing; a writer whose gateway died is replaced after it.
	LeaseTTL time.Duration
	// SweepInterval is how often expired files and uploads are removed.
	SweepInterval time.Duration
	// KVReplicas is the JetStream replica count of the file buckets.
	KVReplicas int
	// Workers bounds concurrently handled requests per subject.
	Workers int
	// RequestTimeout bounds one request to messaging or auth.
	RequestTimeout time.Duration
	// UserQuota bounds the bytes of one user's files that are uploading
	// or available (offers beyond it: QUOTA_EXCEEDED); 0: no bound.
	UserQuota int64
	// OfferRate is how many files one user may offer per minute (bursts
	// of as many; beyond: RATE_LIMITED with retry_after_ms); 0: no limit.
	OfferRate int
	// Live stores each part of a private file twice while its recipient is
	// online at the offer (once in the multipart upload, once as a
	// readable object), so the recipient's download can start while the
	// upload runs. Off: downloads wait for the upload to finish.
	Live bool
}

// RegisterFlags defines the file service's flags on fs, storing into c.
// Names carry a file prefix: the one-binary server registers them next to
// the other services' flags.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.Int64Var(&c.MaxFileSize, "file-max-size", 10<<30, "largest file that may be sent, in bytes")
	fs.DurationVar(&c.FileTTL, "file-ttl", 7*24*time.Hour, "how long a finished file is kept")
	fs.DurationVar(&c.UploadTTL, "file-upload-ttl", 24*time.Hour, "how long an unfinished upload is kept before it is aborted")
	fs.DurationVar(&c.TokenTTL, "file-token-ttl", time.Hour, "how long a download URL stays valid")
	fs.StringVar(&c.TokenKey, "file-token-key", "", "secret (>= 32 bytes) signing download URLs; empty: generated once and kept in NATS KV")
	fs.DurationVar(&c.LeaseTTL, "file-lease-ttl", 30*time.Second, "how long an upload writer holds its lease between commits")
	fs.DurationVar(&c.SweepInterval, "file-sweep-interval", time.Minute, "how often expired files and uploads are removed")
	fs.IntVar(&c.KVReplicas, "file-kv-replicas", 1, "JetStream replicas of the file service's KV buckets")
	fs.IntVar(&c.Workers, "file-workers", 64, "requests handled at once per subject by this replica")
	fs.DurationVar(&c.RequestTimeout, "file-request-timeout", 5*time.Second, "timeout of requests to messaging and auth")
	fs.Int64Var(&c.UserQuota, "file-user-quota", 20<<30, "bytes of one user's files that may be uploading or available at once (what they sent and has not expired); 0: no quota")
	fs.IntVar(&c.OfferRate, "file-offer-rate", 60, "files one user may offer per minute, in bursts of as many (per replica); 0: no limit")
	fs.BoolVar(&c.Live, "file-live", true, "let an online recipient download a private file while it uploads (stores its parts twice meanwhile)")
}

// DefaultConfig returns the configuration RegisterFlags defaults to.
func DefaultConfig() Config {
	var c Config
	c.RegisterFlags(flag.NewFlagSet("file", flag.ContinueOnError))
	return c
}

// ErrBadConfig is wrapped by every configuration error.
var ErrBadConfig = errors.New("file: bad config")

// Validate reports every problem with c at once (joined with
// errors.Join), each naming its flag and wrapping ErrBadConfig; it starts
// nothing. New applies the same checks.
func (c Config) Validate() error { return c.validate() }

func (c Config) validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf(format+": %w", append(args, ErrBadConfig)...))
	}
	if c.MaxFileSize < 1 || c.MaxFileSize > MaxFileSizeLimit {
		bad("-file-max-size must be between 1 and %d", int64(MaxFileSizeLimit))
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"-file-ttl", c.FileTTL}, {"-file-upload-ttl", c.UploadTTL}, {"-file-token-ttl", c.TokenTTL},
		{"-file-lease-ttl", c.LeaseTTL}, {"-file-sweep-interval", c.SweepInterval}, {"-file-request-timeout", c.RequestTimeout}} {
		if d.v <= 0 {
			bad("%s must be positive", d.name)
		}
	}
	if c.TokenKey != "" && len(c.TokenKey) < 32 {
		bad("-file-token-key must be at least 32 bytes")
	}
	if c.KVReplicas < 1 || c.KVReplicas > 5 {
		bad("-file-kv-replicas must be between 1 and 5")
	}
	if c.UserQuota < 0 {
		bad("-file-user-quota must be 0 (none) or positive")
	}
	if c.OfferRate < 0 {
		bad("-file-offer-rate must be 0 (none) or positive")
	}
	if c.Workers < 1 {
		bad("-file-workers must be at least 1")
	}
	return errors.Join(errs...)
}
