package msgsvc

import (
	"errors"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/parleychat/parley/protocol/convid"
	"github.com/parleychat/parley/protocol/parleyv1"
)

// Conversation ids are protocol/convid's (docs/protocol.md §15.1): the public
// room convid.PublicRoom, private chats "dm.<a>.<b>" between users a < b
// (byte order) and groups "group.<gid>" (group_rules.go). The ids are NATS
// subject tokens (subject.Store(id)) and KV key parts.

// roomName is the public room's name: subject.RoomMessages(roomName), and
// its title.
const roomName = "public"

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

// resolve checks that user uid may read and post in conversation id (the
// room or a private chat; groups: resolveConv). Unknown and non-canonical
// ids are NOT_FOUND; a private chat not naming uid is PERMISSION_DENIED
// (also when malformed: it says nothing about others' conversations); one
// naming uid twice is INVALID_ARGUMENT (convid.ParseFor).
func resolve(id, uid string) (conversation, error) {
	c, err := convid.ParseFor(id, uid)
	switch {
	case errors.Is(err, convid.ErrNotMember):
		return conversation{}, errNotMember
	case errors.Is(err, convid.ErrSelf):
		return conversation{}, errSelf
	case err != nil:
		return conversation{}, errNoConversation
	case id == convid.PublicRoom:
		return conversation{id: id, kind: parleyv1.ConversationKind_CONVERSATION_KIND_ROOM}, nil
	case c.Kind() == convid.KindDirect:
		return conversation{id: id, kind: parleyv1.ConversationKind_CONVERSATION_KIND_DIRECT, peer: c.Peer(uid)}, nil
	}
	return conversation{}, errNoConversation
}

// direct is the private chat of users uid and peer (INVALID_ARGUMENT when
// they are one user).
func direct(uid, peer string) (conversation, error) {
	c, err := convid.DM(uid, peer)
	switch {
	case errors.Is(err, convid.ErrSelf):
		return conversation{}, errSelf
	case err != nil:
		return conversation{}, errNoConversation
	}
	return conversation{id: c.String(), kind: parleyv1.ConversationKind_CONVERSATION_KIND_DIRECT, peer: peer}, nil
}

// checkText applies the message text rules (docs/protocol.md §15.2): valid
// UTF-8 (the protobuf decoder already refuses anything else), at most
// maxChars code points and MaxMessageBytes bytes, and not blank: at least
// one character that is neither white space nor invisible (see blank).
func checkText(text string, maxChars int) error {
	if len(text) > MaxMessageBytes || utf8.RuneCountInString(text) > maxChars {
		return errTooLarge(maxChars)
	}
	if !utf8.ValidString(text) {
		return errMalformed
	}
	if strings.IndexFunc(text, func(r rune) bool { return !blank(r) }) < 0 {
		return errEmpty
	}
	return nil
}

// blank reports whether r shows nothing on its own: Unicode White_Space
// (unicode.IsSpace: tab, LF, VT, FF, CR, space, U+0085, U+00A0 and the
// separators Zs, Zl, Zp: U+1680, U+2000-U+200A, U+2028, U+2029, U+202F,
// U+205F, U+3000) or Default_Ignorable_Code_Point (Unicode's
// DerivedCoreProperties: format characters Cf, variation selectors and
// Other_Default_Ignorable_Code_Point, less white space, U+FFF9-U+FFFB,
// U+13430-U+1343F and the prepended concatenation marks): zero-width
// spaces and joiners (U+200B-U+200D, U+2060, U+FEFF), direction marks,
// the soft hyphen U+00AD, the Hangul fillers U+115F, U+1160, U+3164,
// U+FFA0, variation selectors, tag characters. A text of only these would
// look empty.
func blank(r rune) bool {
	if unicode.IsSpace(r) {
		return true
	}
	switch {
	case r >= 0xFFF9 && r <= 0xFFFB, r >= 0x13430 && r <= 0x1343F, unicode.Is(unicode.Prepended_Concatenation_Mark, r):
		return false
	}
	return unicode.In(r, unicode.Cf, unicode.Variation_Selector, unicode.Other_Default_Ignorable_Code_Point)
}

// checkClientKey: 1-64 printable characters (unicode.IsPrint: letters,
// marks, numbers, punctuation, symbols and the ASCII space U+0020), not
// starting or ending with a space. The key goes into the Nats-Msg-Id
// header ("<sender>:<key>"), where CR or LF would break the header and
// the server trims trailing white space: "k" and "k " would name one
// message, and a different text sent as "k " would be answered with "k"'s
// message and lost.
func checkClientKey(k string) error {
	if k == "" || utf8.RuneCountInString(k) > 64 || !utf8.ValidString(k) ||
		strings.HasPrefix(k, " ") || strings.HasSuffix(k, " ") {
		return errClientKey
	}
	for _, r := range k {
		if !unicode.IsPrint(r) {
			return errClientKey
		}
	}
	return nil
}
