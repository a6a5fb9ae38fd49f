package filesvc

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
	"time"
)

// Download tokens let a URL carry the right to read one file: they name the
// file, the user and the session it was issued to, and expire; the file
// service also asks auth that the session still exists each time one is
// used, so a URL dies with its session (logout, takeover). Format
// (base64url without padding): "<file id>.<user id>.<session id>.<expiry
// unix s>.<HMAC-SHA256 of the first four>", the MAC keyed with the
// service's token key. Ids are subject tokens: they hold no dots.

var (
	errTokenMalformed = errors.New("malformed download token")
	errTokenForged    = errors.New("download token signature mismatch")
	errTokenExpired   = errors.New("download token expired")
	errTokenScope     = errors.New("download token is for another file")
)

var b64 = base64.RawURLEncoding

type signer struct{ key []byte }

func (s signer) mac(payload string) string {
	h := hmac.New(sha256.New, s.key)
	h.Write([]byte(payload))
	return base64.RawURLEncoding.EncodeToString(h.Sum(nil))
}

func (s signer) issue(fileID, userID, sessionID string, exp time.Time) string {
	payload := fileID + "." + userID + "." + sessionID + "." + strconv.FormatInt(exp.Unix(), 10)
	return base64.RawURLEncoding.EncodeToString([]byte(payload + "." + s.mac(payload)))
}

// verify checks tok for fileID at now and returns the user and the session
// it was issued to.
func (s signer) verify(tok, fileID string, now time.Time) (userID, sessionID string, err error) {
	raw, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil || len(raw) > 512 {
		return "", "", errTokenMalformed
	}
	parts := strings.Split(string(raw), ".")
	if len(parts) != 5 {
		return "", "", errTokenMalformed
	}
	payload := strings.Join(parts[:4], ".")
	if !hmac.Equal([]byte(parts[4]), []byte(s.mac(payload))) {
		return "", "", errTokenForged
	}
	exp, err := strconv.ParseInt(parts[3], 10, 64)
	if err != nil {
		return "", "", errTokenMalformed
	}
	if now.Unix() >= exp {
		return "", "", errTokenExpired
	}
	if parts[0] != fileID {
		return "", "", errTokenScope
	}
	return parts[1], parts[2], nil
}
