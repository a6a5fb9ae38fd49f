package store

import (
	"crypto/rand"
	"encoding/base32"
	"strings"
)

// lowerBase32 is RFC 4648 base32 in lowercase: its alphabet (a-z, 2-7) is
// valid in NATS subject tokens and KV keys, so ids can appear in both.
var lowerBase32 = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// NewUserID returns "u" followed by 20 random base32 characters (100 bits
// from crypto/rand).
func NewUserID() string { return newID("u") }

// NewSessionID returns "s" followed by 20 random base32 characters.
func NewSessionID() string { return newID("s") }

func newID(prefix string) string {
	var b [13]byte         // 104 bits -> 21 characters, of which 20 are kept
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return prefix + strings.ToLower(lowerBase32.EncodeToString(b[:])[:20])
}
