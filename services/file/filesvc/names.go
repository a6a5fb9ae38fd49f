package filesvc

import (
	"crypto/rand"
	"encoding/hex"
	"mime"
)

// normalizeContentType returns ct as a media type (parameters kept), or
// application/octet-stream when it is empty or not one.
func normalizeContentType(ct string) string {
	const fallback = "application/octet-stream"
	if ct == "" || len(ct) > 127 {
		return fallback
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil {
		return fallback
	}
	return mime.FormatMediaType(mt, params)
}

// validSHA256 reports whether s is 64 lower-case hex digits.
func validSHA256(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// newID returns a random id usable as a NATS subject token and KV key.
func newID(prefix string) string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// validFileID reports whether id looks like one newID("f") made.
func validFileID(id string) bool {
	if len(id) != 25 || id[0] != 'f' {
		return false
	}
	_, err := hex.DecodeString(id[1:])
	return err == nil
}
