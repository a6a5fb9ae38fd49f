package filesvc

import (
	"crypto/rand"
	"encoding/hex"
	"mime"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxNameBytes bounds a file name after sanitising.
const MaxNameBytes = 255

// SanitizeName turns what a sender calls a file into a name that is safe
// to show and to create in any download folder: the last path element
// only (both / and \ separate), no control or format characters, none of
// <>:"|?* (refused by Windows), no leading or trailing dots or spaces, at
// most MaxNameBytes bytes (cut at a character, keeping the extension when
// it is short), never "", "." or "..". A name that ends up empty becomes
// "file".
func SanitizeName(name string) string {
	name = strings.ToValidUTF8(name, "")
	if i := strings.LastIndexAny(name, `/\`); i >= 0 {
		name = name[i+1:]
	}
	name = strings.Map(func(r rune) rune {
		switch {
		case unicode.IsControl(r), unicode.Is(unicode.Cf, r), r == utf8.RuneError:
			return -1
		case strings.ContainsRune(`<>:"|?*`, r):
			return '_'
		}
		return r
	}, name)
	name = strings.Trim(name, " .")
	if len(name) > MaxNameBytes {
		ext := ""
		if i := strings.LastIndexByte(name, '.'); i > 0 && len(name)-i <= 16 {
			ext = name[i:]
		}
		name = truncate(name[:len(name)-len(ext)], MaxNameBytes-len(ext)) + ext
		name = strings.Trim(name, " .")
	}
	if name == "" {
		return "file"
	}
	return name
}

// truncate cuts s to at most n bytes at a character boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

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
