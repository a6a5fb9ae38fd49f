package msgsvc

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/parleychat/parley/libs/proto/parleyv1"
)

// Conversation ids (docs/protocol.md §15): the public room, and a direct
// conversation "dm.<a>.<b>" between users a < b (byte order). The ids are
// NATS subject tokens (subject.Store(id)) and KV key parts, so user ids must
// be plain tokens.
const (
	RoomPublic = "room.public"
	roomName   = "public" // subject.RoomMessages(roomName); the room's title
	dmPrefix   = "dm."
)

// conversation is a conversation id checked against one user.
type conversation struct {
	id   string
	kind parleyv1.ConversationKind
	peer string // direct: the other user's id
	// group: the members' ids when checked, who live delivery goes to
	members []string
	// group: users who get a message's event besides the members (the
	// invitee of an invitation, the user who left or was removed)
	alsoTo []string
}

// DirectID is the id of the direct conversation between users a and b.
func DirectID(a, b string) string {
	if b < a {
		a, b = b, a
	}
	return dmPrefix + a + "." + b
}

// resolve checks that user uid may read and post in conversation id.
// Unknown ids are NOT_FOUND; a direct conversation not naming uid is
// PERMISSION_DENIED (also when malformed: it says nothing about others'
// conversations); one naming uid twice is INVALID_ARGUMENT.
func resolve(id, uid string) (conversation, error) {
	if id == RoomPublic {
		return conversation{id: id, kind: parleyv1.ConversationKind_CONVERSATION_KIND_ROOM}, nil
	}
	rest, ok := strings.CutPrefix(id, dmPrefix)
	if !ok {
		return conversation{}, errNoConversation
	}
	parts := strings.Split(rest, ".")
	member := false
	for _, p := range parts {
		member = member || p == uid
	}
	switch {
	case !member:
		return conversation{}, errNotMember
	case len(parts) != 2:
		return conversation{}, errNoConversation
	case parts[0] == parts[1]:
		return conversation{}, errSelf
	case parts[0] > parts[1], !validUserID(parts[0]), !validUserID(parts[1]):
		return conversation{}, errNoConversation
	}
	peer := parts[0]
	if peer == uid {
		peer = parts[1]
	}
	return conversation{id: id, kind: parleyv1.ConversationKind_CONVERSATION_KIND_DIRECT, peer: peer}, nil
}

// validUserID accepts user ids that are safe as subject tokens and KV key
// parts (auth issues "u" + 20 base32 characters).
func validUserID(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// checkText applies the message text rules: valid UTF-8 (the protobuf
// decoder already refuses anything else), not empty or only white space,
// at most maxChars code points and MaxMessageBytes bytes.
func checkText(text string, maxChars int) error {
	if len(text) > MaxMessageBytes || utf8.RuneCountInString(text) > maxChars {
		return errTooLarge(maxChars)
	}
	if !utf8.ValidString(text) {
		return errMalformed
	}
	if strings.TrimFunc(text, unicode.IsSpace) == "" {
		return errEmpty
	}
	return nil
}

// checkClientKey: 1-64 characters, none of them control characters (the
// key goes into the Nats-Msg-Id header, where CR or LF would break it).
func checkClientKey(k string) error {
	if k == "" || utf8.RuneCountInString(k) > 64 || !utf8.ValidString(k) {
		return errClientKey
	}
	for _, r := range k {
		if unicode.IsControl(r) {
			return errClientKey
		}
	}
	return nil
}
