// Package identity carries who sent a request, and from where, across
// NATS: the headers the gateway sets from a connection's session (never
// from anything the client sent) and every service reads. Clients cannot
// reach NATS, so a service trusts these headers; it still checks their
// shape, because they become subject tokens and KV key parts.
//
// The header keys are subject.HeaderUserID, HeaderSessionID,
// HeaderUsername (the Caller) and HeaderRemoteAddr, HeaderGatewayID,
// HeaderConnID (the Origin).
package identity

import (
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"

	"github.com/parleychat/parley/libs/subject"
	"github.com/parleychat/parley/protocol/convid"
)

// MaxLen bounds each id and the username (auth's usernames are at most 64
// bytes; its ids are "u"/"s" + 20 characters).
const MaxLen = convid.MaxTokenLen

// Errors from Read; test with errors.Is. A service answers both as "not
// authenticated" (or, where a session is required, as its own error).
var (
	// ErrMissing: no user header (a request the gateway did not
	// authenticate), or no session header where ReadSession needs one.
	ErrMissing = errors.New("identity: header missing")
	// ErrMalformed: a header that is not what the gateway writes.
	ErrMalformed = errors.New("identity: malformed header")
)

// Caller is the authenticated user a request is made for. The gateway
// sends all three fields; a service calling another on a user's behalf
// sends the user (and the username when it has it).
type Caller struct {
	UserID    string // auth's user id
	SessionID string // the session the request came through; "" between services
	Username  string // the user's display name; may be ""
}

// Set writes c onto h, leaving out empty fields (a header the reader
// treats as absent).
func (c Caller) Set(h nats.Header) {
	set(h, subject.HeaderUserID, c.UserID)
	set(h, subject.HeaderSessionID, c.SessionID)
	set(h, subject.HeaderUsername, c.Username)
}

// Header is a fresh header carrying c.
func (c Caller) Header() nats.Header {
	h := nats.Header{}
	c.Set(h)
	return h
}

// Origin is where a request entered Parley: the client's address as the
// gateway saw it, the gateway replica and the client connection on it.
// Auth uses it for rate limits and to spare the asking connection from a
// SessionKick.
type Origin struct {
	RemoteAddr string
	GatewayID  string
	ConnID     string
}

// NamesConn reports whether o names one client connection (a gateway and a
// connection on it); a gateway that predates HeaderConnID names none.
func (o Origin) NamesConn() bool { return o.GatewayID != "" && o.ConnID != "" }

// Set writes o onto h, leaving out empty fields.
func (o Origin) Set(h nats.Header) {
	set(h, subject.HeaderRemoteAddr, o.RemoteAddr)
	set(h, subject.HeaderGatewayID, o.GatewayID)
	set(h, subject.HeaderConnID, o.ConnID)
}

// Header is a fresh header carrying c and o: what the gateway sends with
// every request of an authenticated connection.
func Header(c Caller, o Origin) nats.Header {
	h := c.Header()
	o.Set(h)
	return h
}

func set(h nats.Header, key, v string) {
	if v != "" {
		h.Set(key, v)
	}
}

// Read returns the caller h names: the user id is required (ErrMissing);
// it and the session id, when present, must be plain ids (1 to MaxLen
// ASCII letters, digits, '-', '_': convid.ValidToken, since user ids make
// up private chats' ids, and both are subject tokens and KV key parts),
// and the username at most MaxLen bytes of printable ASCII (ErrMalformed).
func Read(h nats.Header) (Caller, error) {
	c := Caller{UserID: h.Get(subject.HeaderUserID), SessionID: h.Get(subject.HeaderSessionID),
		Username: h.Get(subject.HeaderUsername)}
	switch {
	case c.UserID == "":
		return Caller{}, fmt.Errorf("%s: %w", subject.HeaderUserID, ErrMissing)
	case !convid.ValidToken(c.UserID):
		return Caller{}, fmt.Errorf("%s: %w", subject.HeaderUserID, ErrMalformed)
	case c.SessionID != "" && !convid.ValidToken(c.SessionID):
		return Caller{}, fmt.Errorf("%s: %w", subject.HeaderSessionID, ErrMalformed)
	case !printable(c.Username):
		return Caller{}, fmt.Errorf("%s: %w", subject.HeaderUsername, ErrMalformed)
	}
	return c, nil
}

// ReadSession is Read for a request that must come through a session
// (logging out; a download URL bound to the session): the session id is
// required too.
func ReadSession(h nats.Header) (Caller, error) {
	c, err := Read(h)
	if err == nil && c.SessionID == "" {
		return Caller{}, fmt.Errorf("%s: %w", subject.HeaderSessionID, ErrMissing)
	}
	return c, err
}

// ReadOrigin returns where the request came from, as h says; fields the
// sender did not set are "". The values are not checked: they only name
// things (a connection to spare, an address to count).
func ReadOrigin(h nats.Header) Origin {
	return Origin{RemoteAddr: h.Get(subject.HeaderRemoteAddr), GatewayID: h.Get(subject.HeaderGatewayID),
		ConnID: h.Get(subject.HeaderConnID)}
}

// printable reports whether s is at most MaxLen bytes of printable ASCII.
func printable(s string) bool {
	if len(s) > MaxLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}
