package tui

import (
	"slices"
	"time"

	"github.com/parleychat/parley/clients/parley"
	"github.com/parleychat/parley/protocol/convid"
)

// convView is one conversation as the chat screen shows it: its lines
// (messages in seq order, with the notices that happened while it was
// selected), how far back it is loaded, and its unread count.
type convView struct {
	id      string
	kind    parley.ConversationKind
	title   string // "" until known (a private chat opened by our own message)
	lines   []line
	seen    map[uint64]bool // seqs of the messages in lines
	lastSeq uint64          // newest seq known on the server
	acked   uint64          // how far this user has acknowledged
	unread  uint64
	loading bool // an older page is being read (PgUp)
	noOlder bool // the first message is loaded

	// Groups: invited until joined (nothing to read before); invitedBy is
	// who sent the invitation, when it arrived live; ownerID from the
	// server's listing.
	invited   bool
	invitedBy string
	ownerID   string

	// Private chats: when the peer last said they were typing, and how
	// far they have seen (read receipts).
	typingAt   time.Time
	typingUser string
	peerAcked  uint64

	// Private chats: the messages of direct sessions with the peer
	// (direct.go), by time, shown among lines; directIDs are their ids;
	// directLoaded: the local history was asked for.
	direct       []line
	directIDs    map[string]bool
	directLoaded bool
}

func newConvView(id string, kind parley.ConversationKind, title string) *convView {
	return &convView{id: id, kind: kind, title: title, seen: make(map[uint64]bool), directIDs: make(map[string]bool)}
}

// addDirect puts a direct message at its place by time; it reports false
// for one already shown.
func (c *convView) addDirect(l line) bool {
	if l.id != "" {
		if c.directIDs[l.id] {
			return false
		}
		c.directIDs[l.id] = true
	}
	at := len(c.direct)
	for at > 0 && c.direct[at-1].at.After(l.at) {
		at--
	}
	c.direct = slices.Insert(c.direct, at, l)
	if len(c.direct) > maxLines {
		for _, d := range c.direct[:len(c.direct)-maxLines] {
			delete(c.directIDs, d.id)
		}
		c.direct = slices.Clone(c.direct[len(c.direct)-maxLines:])
	}
	return true
}

// kindOf guesses a conversation's kind from its id, for one first seen in
// a message (ids are opaque, but their forms are the protocol's: convid).
func kindOf(id string) parley.ConversationKind {
	switch convid.KindOf(id) {
	case convid.KindRoom:
		return parley.ConversationRoom
	case convid.KindDirect:
		return parley.ConversationDirect
	case convid.KindGroup:
		return parley.ConversationGroup
	}
	return parley.ConversationUnknown
}

// name is what the conversations pane shows: #room, +group, @user.
func (c *convView) name() string {
	switch {
	case c.title == "":
		return "…"
	case c.kind == parley.ConversationRoom:
		return "#" + c.title
	case c.kind == parley.ConversationGroup && c.invited:
		return "+" + c.title + " (invited)"
	case c.kind == parley.ConversationGroup:
		return "+" + c.title
	}
	return "@" + c.title
}

// kindRank orders the pane: rooms, groups, private chats, then those not
// known yet.
func kindRank(k parley.ConversationKind) int {
	switch k {
	case parley.ConversationRoom:
		return 0
	case parley.ConversationGroup:
		return 1
	case parley.ConversationDirect:
		return 2
	}
	return 3
}

// oldest is the smallest seq loaded (0: none).
func (c *convView) oldest() uint64 {
	for _, l := range c.lines {
		if l.seq > 0 {
			return l.seq
		}
	}
	return 0
}

// newest is the highest seq loaded (0: none).
func (c *convView) newest() uint64 {
	for i := len(c.lines) - 1; i >= 0; i-- {
		if c.lines[i].seq > 0 {
			return c.lines[i].seq
		}
	}
	return 0
}

// canLoadOlder: messages before the oldest loaded exist, or nothing is
// loaded of a conversation that has messages.
func (c *convView) canLoadOlder() bool {
	if c.loading || c.noOlder || c.invited { // an invitee may not read
		return false
	}
	if o := c.oldest(); o > 0 {
		return o > 1
	}
	return c.lastSeq > 0
}

// addMessage puts a message at its place by seq; it reports false for one
// already shown (a history page overlapping live delivery).
func (c *convView) addMessage(l line) bool {
	if c.seen[l.seq] {
		return false
	}
	c.seen[l.seq] = true
	c.lastSeq = max(c.lastSeq, l.seq)
	// After the last message with a smaller seq (and the notices after
	// it), before the first with a larger one.
	at := len(c.lines)
	for i := len(c.lines) - 1; i >= 0; i-- {
		if s := c.lines[i].seq; s > 0 {
			if s < l.seq {
				break
			}
			at = i
		}
	}
	c.lines = slices.Insert(c.lines, at, l)
	c.trim()
	return true
}

func (c *convView) addNotice(kind lineKind, text string) {
	c.lines = append(c.lines, line{kind: kind, at: time.Now(), text: text})
	c.trim()
}

// trim bounds the scrollback; what is dropped can be paged in again.
func (c *convView) trim() {
	if len(c.lines) <= maxLines {
		return
	}
	for _, l := range c.lines[:len(c.lines)-maxLines] {
		delete(c.seen, l.seq)
	}
	c.lines = slices.Clone(c.lines[len(c.lines)-maxLines:])
	c.noOlder = false
}

// markRead clears the unread count and returns the seq to acknowledge (0:
// nothing new).
func (c *convView) markRead() uint64 {
	c.unread = 0
	n := c.newest()
	if n <= c.acked {
		return 0
	}
	c.acked = n
	return n
}
