package presencesvc

import (
	"errors"
	"flag"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/parleychat/parley/services/presence/internal/store"
)

// Config holds the presence service's settings (not the Redis connection:
// see RedisConfig, which the one-binary server replaces with miniredis).
type Config struct {
	KeyPrefix     string        // prefix of every Redis key
	GatewayTTL    time.Duration // a gateway silent this long loses its connections
	SweepInterval time.Duration // how often expired gateways are looked for
	ResyncTTL     time.Duration // how long staged resync chunks wait for the rest
	Workers       int           // concurrent request handlers per subject
}

// RegisterFlags defines the service flags on fs, with their defaults, into c.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.KeyPrefix, "redis-prefix", store.DefaultPrefix, "prefix of presence's Redis keys (on Redis Cluster use a hash tag, e.g. {parley:presence}:)")
	fs.DurationVar(&c.GatewayTTL, "gateway-ttl", 15*time.Second, "a gateway that sends no heartbeat for this long has its connections removed")
	fs.DurationVar(&c.SweepInterval, "sweep-interval", 2*time.Second, "how often to look for gateways past their TTL")
	fs.DurationVar(&c.ResyncTTL, "resync-ttl", 30*time.Second, "how long staged resync chunks wait for the rest of their resync")
	fs.IntVar(&c.Workers, "workers", 64, "concurrent request handlers per subject")
}

// DefaultConfig is the configuration RegisterFlags defaults to.
func DefaultConfig() Config {
	var c Config
	c.RegisterFlags(flag.NewFlagSet("", flag.ContinueOnError))
	return c
}

// ErrBadConfig is wrapped by every configuration error.
var ErrBadConfig = errors.New("presence: bad config")

// Validate reports every problem with c at once (joined with
// errors.Join), each naming its flag and wrapping ErrBadConfig; it starts
// nothing. New applies the same checks.
func (c Config) Validate() error { return c.validate() }

func (c Config) validate() error {
	var errs []error
	bad := func(msg string) { errs = append(errs, fmt.Errorf("%s: %w", msg, ErrBadConfig)) }
	if c.GatewayTTL <= 0 {
		bad("-gateway-ttl must be positive")
	}
	if c.SweepInterval <= 0 {
		bad("-sweep-interval must be positive")
	}
	if c.ResyncTTL <= 0 {
		bad("-resync-ttl must be positive")
	}
	if c.Workers < 0 {
		bad("-workers must not be negative")
	}
	return errors.Join(errs...)
}

// RedisConfig is how the presence binary reaches its Redis.
type RedisConfig struct {
	Addr     string
	Password string
	DB       int
}

// RegisterFlags defines the Redis connection flags on fs into c.
func (c *RedisConfig) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Addr, "redis-addr", "127.0.0.1:6379", "Redis address host:port")
	fs.StringVar(&c.Password, "redis-password", "", "Redis password")
	fs.IntVar(&c.DB, "redis-db", 0, "Redis database number")
}

// NewClient returns a go-redis client for c. Timeouts are short: presence
// requests are on the login path and the gateway's own request timeout is a
// few seconds, so a Redis that does not answer fails fast (UNAVAILABLE) and
// the gateway retries on its next heartbeat. It connects lazily.
func (c RedisConfig) NewClient() *redis.Client {
	return redis.NewClient(&redis.Options{
		Addr:         c.Addr,
		Password:     c.Password,
		DB:           c.DB,
		DialTimeout:  2 * time.Second,
		ReadTimeout:  2 * time.Second,
		WriteTimeout: 2 * time.Second,
		PoolTimeout:  3 * time.Second,
		MaxRetries:   1,
	})
}
