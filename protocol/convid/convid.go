// Package convid is the grammar of conversation ids (docs/protocol.md
// §15.1, §16, §18.2), parsed in one place for the gateway, the services and
// the clients:
//
//	room.<name>                 a room; the one there is: room.public
//	dm.<user id>.<user id>      a private chat: two different users, in
//	                            ascending byte order
//	group.<group id>            a group
//
// Every id is dot-separated tokens of ASCII letters, digits, '-' and '_'
// (§18.2: "2-4 dot-separated tokens"), 1 to MaxTokenLen bytes each and at
// most MaxLen bytes in all: an id is a NATS subject token sequence and a
// JetStream KV key part, so it holds no wildcards, spaces or empty tokens.
//
// The package decides what an id says, not whether the conversation exists
// or who is in a group: those are the messaging service's answers. It uses
// the standard library only, so clients can depend on it.
package convid

import (
	"errors"
	"strings"
)

// Kind is what a conversation id names.
type Kind uint8

// The kinds of conversation (parleyv1.ConversationKind on the wire).
const (
	KindUnknown Kind = iota
	KindRoom
	KindDirect
	KindGroup
)

func (k Kind) String() string {
	switch k {
	case KindRoom:
		return "room"
	case KindDirect:
		return "dm"
	case KindGroup:
		return "group"
	}
	return "unknown"
}

// PublicRoom is the id of the public room every user is in.
const PublicRoom = "room.public"

// Limits of an id's shape.
const (
	// MaxTokenLen bounds one token (a user, group or room id).
	MaxTokenLen = 64
	// MaxLen bounds a whole id.
	MaxLen = 200
	// maxTokens is the most tokens a well-shaped id has (§18.2).
	maxTokens = 4
)

// Parse errors; test with errors.Is. What each means to a client is the
// caller's to say (the services map them to wire errors).
var (
	// ErrMalformed: not shaped like a conversation id at all (§18.2: 2-4
	// dot-separated tokens of letters, digits, '-', '_'; see the package
	// comment for the lengths).
	ErrMalformed = errors.New("convid: not shaped like a conversation id")
	// ErrUnknown: shaped like one, but not room.<name>, dm.<a>.<b> or
	// group.<id> (another first token, or the wrong number of tokens for
	// its kind).
	ErrUnknown = errors.New("convid: no such kind of conversation")
	// ErrUnordered: a private chat's user ids not in ascending byte order;
	// the id is not canonical, and names no conversation (§15.1).
	ErrUnordered = errors.New("convid: a private chat's user ids must be in ascending order")
	// ErrSelf: a private chat naming one user twice.
	ErrSelf = errors.New("convid: a private chat needs two different users")
	// ErrNotMember: ParseFor's answer for a private chat that does not name
	// the user asking.
	ErrNotMember = errors.New("convid: a private chat of other users")
)

// ID is a parsed, canonical conversation id. The zero ID is not a valid id
// (its Kind is KindUnknown). IDs are comparable.
type ID struct {
	kind Kind
	a, b string // room: a = name; direct: a < b; group: a = group id
}

// Kind reports what id names.
func (id ID) Kind() Kind { return id.kind }

// String is the id's wire form; Parse(id.String()) == id.
func (id ID) String() string {
	switch id.kind {
	case KindRoom:
		return "room." + id.a
	case KindDirect:
		return "dm." + id.a + "." + id.b
	case KindGroup:
		return "group." + id.a
	}
	return ""
}

// RoomName is a room's name ("public"), "" for other kinds.
func (id ID) RoomName() string { return id.pick(KindRoom) }

// GroupID is a group's id, "" for other kinds.
func (id ID) GroupID() string { return id.pick(KindGroup) }

func (id ID) pick(k Kind) string {
	if id.kind != k {
		return ""
	}
	return id.a
}

// Users are a private chat's two user ids in ascending order, "" for other
// kinds.
func (id ID) Users() (string, string) {
	if id.kind != KindDirect {
		return "", ""
	}
	return id.a, id.b
}

// Has reports whether a private chat names user uid.
func (id ID) Has(uid string) bool {
	return id.kind == KindDirect && uid != "" && (id.a == uid || id.b == uid)
}

// Peer is the other user of a private chat that names uid, "" otherwise.
func (id ID) Peer(uid string) string {
	switch {
	case !id.Has(uid):
		return ""
	case id.a == uid:
		return id.b
	}
	return id.a
}

// Parse checks that s is a canonical conversation id and returns it.
func Parse(s string) (ID, error) {
	tokens, ok := split(s)
	if !ok {
		return ID{}, ErrMalformed
	}
	switch kindOf(tokens[0]) {
	case KindRoom:
		if len(tokens) == 2 {
			return ID{kind: KindRoom, a: tokens[1]}, nil
		}
	case KindGroup:
		if len(tokens) == 2 {
			return ID{kind: KindGroup, a: tokens[1]}, nil
		}
	case KindDirect:
		if len(tokens) == 3 {
			a, b := tokens[1], tokens[2]
			switch {
			case a == b:
				return ID{}, ErrSelf
			case a > b:
				return ID{}, ErrUnordered
			}
			return ID{kind: KindDirect, a: a, b: b}, nil
		}
	}
	return ID{}, ErrUnknown
}

// ParseFor is Parse for an id that user uid asks about: a private chat
// that does not name uid is ErrNotMember whatever else is wrong with it
// (malformed, unordered), so the answer about other users' chats does not
// depend on how the id is written (§15.1: PERMISSION_DENIED for a
// conversation the user is not in).
func ParseFor(s, uid string) (ID, error) {
	if KindOf(s) == KindDirect && !mentions(s, uid) {
		return ID{}, ErrNotMember
	}
	return Parse(s)
}

// mentions reports whether uid is one of the tokens after s's first.
func mentions(s, uid string) bool {
	if uid == "" {
		return false
	}
	_, rest, _ := strings.Cut(s, ".")
	for t := range strings.SplitSeq(rest, ".") {
		if t == uid {
			return true
		}
	}
	return false
}

// KindOf is the kind s claims by its first token ("dm" for "dm.x"),
// whether or not the rest is a valid id; KindUnknown when it claims none. It
// is for choosing which rules apply (a typing indicator is for private
// chats only; a group id is looked up); Parse says whether the id is valid.
func KindOf(s string) Kind {
	first, _, ok := strings.Cut(s, ".")
	if !ok {
		return KindUnknown
	}
	return kindOf(first)
}

func kindOf(first string) Kind {
	switch first {
	case "room":
		return KindRoom
	case "dm":
		return KindDirect
	case "group":
		return KindGroup
	}
	return KindUnknown
}

// DM is the id of the private chat between users a and b, in either order.
func DM(a, b string) (ID, error) {
	switch {
	case !ValidToken(a), !ValidToken(b):
		return ID{}, ErrMalformed
	case a == b:
		return ID{}, ErrSelf
	case b < a:
		a, b = b, a
	}
	return ID{kind: KindDirect, a: a, b: b}, nil
}

// Group is the id of the group conversation of group gid.
func Group(gid string) (ID, error) {
	if !ValidToken(gid) {
		return ID{}, ErrMalformed
	}
	return ID{kind: KindGroup, a: gid}, nil
}

// Room is the id of the room named name.
func Room(name string) (ID, error) {
	if !ValidToken(name) {
		return ID{}, ErrMalformed
	}
	return ID{kind: KindRoom, a: name}, nil
}

// split returns s's tokens when s is shaped like a conversation id.
func split(s string) ([]string, bool) {
	if len(s) > MaxLen {
		return nil, false
	}
	tokens := strings.Split(s, ".")
	if len(tokens) < 2 || len(tokens) > maxTokens {
		return nil, false
	}
	for _, t := range tokens {
		if !ValidToken(t) {
			return nil, false
		}
	}
	return tokens, true
}

// ValidToken reports whether s can be one token of an id (a user, group or
// room id): 1 to MaxTokenLen ASCII letters, digits, '-' or '_'.
func ValidToken(s string) bool {
	if s == "" || len(s) > MaxTokenLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
