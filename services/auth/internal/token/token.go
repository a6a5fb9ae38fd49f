// Package token issues and checks session tokens:
//
//	v1.<payload>.<mac>
//
// payload is the unpadded base64url encoding of a JSON Claims object and mac
// the unpadded base64url HMAC-SHA256 over "v1.<payload>" with the service's
// signing key. The version prefix is covered by the MAC so a future format
// cannot be confused with this one. Tokens are bearer credentials; they
// only say which session they belong to, and the session record in the
// store decides whether that session is still alive (logout, takeover).
package token

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Errors returned by Verify.
var (
	// ErrInvalid means the token is malformed or its MAC does not match
	// (forged, or signed with another key).
	ErrInvalid = errors.New("invalid token")
	// ErrExpired means a genuine token is past its expiry.
	ErrExpired = errors.New("token expired")
)

// MinKeyLen is the shortest signing key accepted: HMAC-SHA256's block-size
// recommendation (RFC 2104 §3) is at least the hash length.
const MinKeyLen = 32

// maxLen bounds the input before any decoding; real tokens are ~250 bytes.
const maxLen = 2048

const prefix = "v1."

// Claims is what a token asserts.
type Claims struct {
	SessionID string `json:"sid"`
	UserID    string `json:"uid"`
	Username  string `json:"usr"`
	// Gen is the session's token generation: each resume issues the next
	// one and retires the ones before (the session record keeps the
	// current generation). Tokens issued before generations existed have
	// none (0).
	Gen       uint64    `json:"gen,omitempty"`
	IssuedAt  time.Time `json:"-"`
	ExpiresAt time.Time `json:"-"`
}

// wireClaims carries times as unix milliseconds.
type wireClaims struct {
	Claims
	Iat int64 `json:"iat"`
	Exp int64 `json:"exp"`
}

// Signer signs and verifies tokens with one key.
type Signer struct {
	key []byte
	now func() time.Time
}

// NewSigner returns a Signer for key (at least MinKeyLen bytes); now is the
// clock used for expiry (nil: time.Now).
func NewSigner(key []byte, now func() time.Time) (*Signer, error) {
	if len(key) < MinKeyLen {
		return nil, fmt.Errorf("token key is %d bytes, need at least %d", len(key), MinKeyLen)
	}
	if now == nil {
		now = time.Now
	}
	return &Signer{key: append([]byte(nil), key...), now: now}, nil
}

var b64 = base64.RawURLEncoding

// Sign returns the token for c.
func (s *Signer) Sign(c Claims) (string, error) {
	payload, err := json.Marshal(wireClaims{Claims: c, Iat: c.IssuedAt.UnixMilli(), Exp: c.ExpiresAt.UnixMilli()})
	if err != nil {
		return "", err
	}
	signed := prefix + b64.EncodeToString(payload)
	return signed + "." + b64.EncodeToString(s.mac(signed)), nil
}

// Verify checks tok's MAC and expiry and returns its claims. The MAC is
// checked first, so only genuine tokens are ever reported as expired.
func (s *Signer) Verify(tok string) (Claims, error) {
	if len(tok) > maxLen || !strings.HasPrefix(tok, prefix) {
		return Claims{}, ErrInvalid
	}
	dot := strings.LastIndexByte(tok, '.')
	if dot < len(prefix) {
		return Claims{}, ErrInvalid
	}
	signed, macText := tok[:dot], tok[dot+1:]
	mac, err := b64.Strict().DecodeString(macText)
	if err != nil || !hmac.Equal(mac, s.mac(signed)) {
		return Claims{}, ErrInvalid
	}
	payload, err := b64.Strict().DecodeString(signed[len(prefix):])
	if err != nil {
		return Claims{}, ErrInvalid
	}
	var w wireClaims
	if err := json.Unmarshal(payload, &w); err != nil || w.SessionID == "" || w.UserID == "" {
		return Claims{}, ErrInvalid
	}
	c := w.Claims
	c.IssuedAt, c.ExpiresAt = time.UnixMilli(w.Iat), time.UnixMilli(w.Exp)
	if !s.now().Before(c.ExpiresAt) {
		return c, ErrExpired
	}
	return c, nil
}

func (s *Signer) mac(signed string) []byte {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte(signed))
	return m.Sum(nil)
}
