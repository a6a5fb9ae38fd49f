package service

import (
	"crypto/rand"
	"os"
	"strings"
)

// ValidID reports whether s can be a replica id: one NATS subject token
// and readable in logs, ASCII letters, digits, '-' and '_', at most 64.
func ValidID(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	return strings.IndexFunc(s, func(r rune) bool { return !idRune(r) }) < 0
}

func idRune(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_'
}

// DefaultID is a replica id for a process that was given none: the host
// name (other characters replaced by '-', at most 40; fallback when it has
// none) plus "-" and 6 random characters, so replicas on one host and
// restarts of one replica never share an id.
func DefaultID(fallback string) string {
	host, _ := os.Hostname()
	host = strings.Map(func(r rune) rune {
		if idRune(r) {
			return r
		}
		return '-'
	}, host)
	if len(host) > 40 {
		host = host[:40]
	}
	if host == "" {
		host = fallback
	}
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return host + "-" + string(b)
}
