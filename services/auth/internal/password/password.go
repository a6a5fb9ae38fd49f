// Package password hashes and verifies passwords with argon2id (RFC 9106),
// storing hashes in the PHC string format
//
//	$argon2id$v=19$m=19456,t=2,p=1$<salt>$<key>
//
// (salt and key in unpadded standard base64, as the PHC format and the
// reference implementation write them). The parameters travel inside every
// hash, so the configured parameters can change at any time: old hashes are
// verified with the parameters they were made with, and NeedsRehash tells the
// caller when a stored hash should be upgraded.
package password

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"time"

	"golang.org/x/crypto/argon2"
)

// Errors returned by this package.
var (
	// ErrMalformedHash means a stored hash is not a PHC argon2id string this
	// package can verify (corrupt record or an unknown algorithm).
	ErrMalformedHash = errors.New("malformed password hash")
	// ErrInvalidParams means parameters are outside the accepted range.
	ErrInvalidParams = errors.New("invalid argon2id parameters")
)

// Params are argon2id cost parameters.
type Params struct {
	Memory  uint32 // KiB
	Time    uint32 // passes
	Threads uint8  // lanes
	SaltLen uint32 // bytes
	KeyLen  uint32 // bytes
}

// DefaultParams are OWASP's recommended argon2id minimums (Password Storage
// Cheat Sheet): m=19 MiB, t=2, p=1, with a 16-byte salt and a 32-byte key.
func DefaultParams() Params {
	return Params{Memory: 19 * 1024, Time: 2, Threads: 1, SaltLen: 16, KeyLen: 32}
}

// Limits on parameters, both configured and read from stored hashes: a
// corrupt or hostile record must not make a single verification allocate
// gigabytes. RFC 9106 §3.1 requires m >= 8*p KiB.
const (
	maxMemory = 1 << 20 // 1 GiB in KiB
	maxTime   = 64
	minSalt   = 8
	maxSalt   = 64
	minKey    = 16
	maxKey    = 64
)

// Validate checks p against RFC 9106's bounds and this package's limits.
func (p Params) Validate() error {
	switch {
	case p.Threads < 1:
		return fmt.Errorf("threads must be at least 1: %w", ErrInvalidParams)
	case p.Memory < 8*uint32(p.Threads) || p.Memory > maxMemory:
		return fmt.Errorf("memory must be between 8*threads KiB and %d KiB: %w", maxMemory, ErrInvalidParams)
	case p.Time < 1 || p.Time > maxTime:
		return fmt.Errorf("time must be between 1 and %d: %w", maxTime, ErrInvalidParams)
	case p.SaltLen < minSalt || p.SaltLen > maxSalt:
		return fmt.Errorf("salt length must be between %d and %d bytes: %w", minSalt, maxSalt, ErrInvalidParams)
	case p.KeyLen < minKey || p.KeyLen > maxKey:
		return fmt.Errorf("key length must be between %d and %d bytes: %w", minKey, maxKey, ErrInvalidParams)
	}
	return nil
}

// Hasher hashes and verifies passwords with bounded concurrency: each
// argon2id computation holds Memory KiB for its duration, so a login storm
// would otherwise grow memory without bound. At most `concurrency`
// computations run at once; the rest wait (or give up when their context
// ends).
type Hasher struct {
	params  Params
	sem     chan struct{}
	observe func(op string, d time.Duration) // may be nil
}

// NewHasher returns a Hasher creating hashes with p and running at most
// concurrency computations at once (0 means GOMAXPROCS). observe, if not
// nil, is called with the duration of every computation (op "hash" or
// "verify").
func NewHasher(p Params, concurrency int, observe func(op string, d time.Duration)) (*Hasher, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if concurrency <= 0 {
		concurrency = runtime.GOMAXPROCS(0)
	}
	return &Hasher{params: p, sem: make(chan struct{}, concurrency), observe: observe}, nil
}

// Params returns the parameters new hashes are made with.
func (h *Hasher) Params() Params { return h.params }

// Hash returns the PHC-encoded argon2id hash of password with a fresh
// random salt.
func (h *Hasher) Hash(ctx context.Context, password string) (string, error) {
	salt := make([]byte, h.params.SaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("salt: %w", err)
	}
	key, err := h.compute(ctx, "hash", password, salt, h.params)
	if err != nil {
		return "", err
	}
	return Encode(h.params, salt, key), nil
}

// Verify reports whether password matches the encoded hash, computing it with
// the parameters stored in the hash. The comparison is constant-time.
func (h *Hasher) Verify(ctx context.Context, encoded, password string) (bool, error) {
	p, salt, want, err := Decode(encoded)
	if err != nil {
		return false, err
	}
	got, err := h.compute(ctx, "verify", password, salt, p)
	if err != nil {
		return false, err
	}
	return subtle.ConstantTimeCompare(got, want) == 1, nil
}

// NeedsRehash reports whether encoded was made with parameters other than
// the Hasher's (so a successful login should store a fresh hash).
func (h *Hasher) NeedsRehash(encoded string) bool {
	p, salt, key, err := Decode(encoded)
	if err != nil {
		return true
	}
	return p.Memory != h.params.Memory || p.Time != h.params.Time || p.Threads != h.params.Threads ||
		uint32(len(salt)) != h.params.SaltLen || uint32(len(key)) != h.params.KeyLen
}

func (h *Hasher) compute(ctx context.Context, op, password string, salt []byte, p Params) ([]byte, error) {
	select {
	case h.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-h.sem }()
	start := time.Now()
	key := argon2.IDKey([]byte(password), salt, p.Time, p.Memory, p.Threads, p.KeyLen)
	if h.observe != nil {
		h.observe(op, time.Since(start))
	}
	return key, nil
}

// b64 is the PHC string format's base64: standard alphabet, no padding.
var b64 = base64.RawStdEncoding

// Encode formats a PHC argon2id string.
func Encode(p Params, salt, key []byte) string {
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, p.Memory, p.Time, p.Threads, b64.EncodeToString(salt), b64.EncodeToString(key))
}

// Decode parses a PHC argon2id string made by Encode (or by any conforming
// implementation using version 19 and the parameter order m,t,p). Salt and
// key lengths are returned in p as well.
func Decode(encoded string) (p Params, salt, key []byte, err error) {
	// "", "argon2id", "v=19", "m=..,t=..,p=..", salt, key
	parts := strings.Split(encoded, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" {
		return Params{}, nil, nil, ErrMalformedHash
	}
	var v int
	if _, err := fmt.Sscanf(parts[2], "v=%d", &v); err != nil || v != argon2.Version {
		return Params{}, nil, nil, fmt.Errorf("unsupported version %q: %w", parts[2], ErrMalformedHash)
	}
	var threads uint32
	if n, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &p.Memory, &p.Time, &threads); err != nil || n != 3 ||
		parts[3] != fmt.Sprintf("m=%d,t=%d,p=%d", p.Memory, p.Time, threads) || threads > 255 {
		return Params{}, nil, nil, fmt.Errorf("parameters %q: %w", parts[3], ErrMalformedHash)
	}
	p.Threads = uint8(threads)
	if salt, err = b64.Strict().DecodeString(parts[4]); err != nil {
		return Params{}, nil, nil, fmt.Errorf("salt: %w", ErrMalformedHash)
	}
	if key, err = b64.Strict().DecodeString(parts[5]); err != nil {
		return Params{}, nil, nil, fmt.Errorf("key: %w", ErrMalformedHash)
	}
	p.SaltLen, p.KeyLen = uint32(len(salt)), uint32(len(key))
	if err := p.Validate(); err != nil {
		return Params{}, nil, nil, fmt.Errorf("%w: %w", ErrMalformedHash, err)
	}
	return p, salt, key, nil
}
