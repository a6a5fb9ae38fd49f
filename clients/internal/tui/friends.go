package tui

import (
	"context"
	"strings"
	"time"

	tea "github.com/charmbracelet/bubbletea"

	"github.com/parleychat/parley/clients/parley"
)

// Friends, blocking, typing indicators and read receipts in the chat
// screen. Friend commands answer with a notice; what others do (a request,
// an acceptance) arrives as FriendEvents and is a notice too. In a private
// chat the header says when the peer is typing, the TUI tells the peer
// when this user types, and the user's last message is marked "seen" once
// the peer has acknowledged it.

// Typing timings: the hint stays typingShown after the peer's last
// TypingEvent (the SDK repeats it every few seconds while they type), and
// the user's typing is told at most every typingEvery.
const (
	typingShown = 5 * time.Second
	typingEvery = 3 * time.Second
)

// friendMsg reports a friend command.
type friendMsg struct {
	op      string // "/friend add", "/friends", "/block", ...
	user    string
	state   parley.FriendState // after /friend add
	friends []parley.Friend    // /friends
	err     error
}

// typingExpiredMsg re-renders once a typing hint may have expired.
type typingExpiredMsg struct{}

func friendCmd(ctx context.Context, op, user string, fn func(ctx context.Context) (parley.FriendState, []parley.Friend, error)) tea.Cmd {
	return func() tea.Msg {
		ctx, cancel := context.WithTimeout(ctx, requestTimeout)
		defer cancel()
		st, fr, err := fn(ctx)
		return friendMsg{op: op, user: user, state: st, friends: fr, err: err}
	}
}

// friendCommand runs /friend, /friends, /block and /unblock; it reports
// false for other commands.
func (m *model) friendCommand(cmd, args string) (tea.Cmd, bool) {
	c := m.client
	var (
		op   string
		user string
		fn   func(ctx context.Context) (parley.FriendState, []parley.Friend, error)
	)
	switch cmd {
	case "/friends":
		op = cmd
		fn = func(ctx context.Context) (parley.FriendState, []parley.Friend, error) {
			fr, err := c.Friends(ctx)
			return parley.FriendUnknown, fr, err
		}
	case "/friend":
		action, rest, _ := strings.Cut(strings.TrimSpace(args), " ")
		us := users(rest)
		if len(us) != 1 {
			m.chat.add(lineError, "usage: /friend add|accept|decline|remove USER")
			return nil, true
		}
		op, user = "/friend "+action, us[0]
		switch action {
		case "add":
			fn = func(ctx context.Context) (parley.FriendState, []parley.Friend, error) {
				if err := c.AddFriend(ctx, user); err != nil {
					return parley.FriendUnknown, nil, err
				}
				// If they had asked first, the two are friends now.
				fr, err := c.Friends(ctx)
				if err == nil {
					for _, f := range fr {
						if f.Username == user {
							return f.State, nil, nil
						}
					}
				}
				return parley.FriendOutgoing, nil, nil
			}
		case "accept", "decline":
			accept := action == "accept"
			fn = func(ctx context.Context) (parley.FriendState, []parley.Friend, error) {
				return parley.FriendUnknown, nil, c.AnswerFriend(ctx, user, accept)
			}
		case "remove":
			fn = func(ctx context.Context) (parley.FriendState, []parley.Friend, error) {
				return parley.FriendUnknown, nil, c.RemoveFriend(ctx, user)
			}
		default:
			m.chat.add(lineError, "usage: /friend add|accept|decline|remove USER")
			return nil, true
		}
	case "/block", "/unblock":
		us := users(args)
		if len(us) != 1 {
			m.chat.add(lineError, "usage: "+cmd+" USER")
			return nil, true
		}
		op, user = cmd, us[0]
		block := cmd == "/block"
		fn = func(ctx context.Context) (parley.FriendState, []parley.Friend, error) {
			if block {
				return parley.FriendUnknown, nil, c.Block(ctx, user)
			}
			return parley.FriendUnknown, nil, c.Unblock(ctx, user)
		}
	default:
		return nil, false
	}
	if c == nil {
		return func() tea.Msg { return friendMsg{op: op, user: user, err: errNotConnected} }, true
	}
	return friendCmd(m.ctx, op, user, fn), true
}

// onFriend shows the outcome of a friend command.
func (m *model) onFriend(msg friendMsg) {
	if m.screen != screenChat {
		return
	}
	if msg.err != nil {
		m.chat.add(lineError, msg.op+": "+describe(msg.err))
		return
	}
	u := msg.user
	switch msg.op {
	case "/friends":
		m.showFriends(msg.friends)
	case "/friend add":
		if msg.state == parley.FriendFriend {
			m.chat.system("you and %s are friends now", u)
		} else {
			m.chat.system("asked %s to be friends", u)
		}
	case "/friend accept":
		m.chat.system("you and %s are friends now", u)
	case "/friend decline":
		m.chat.system("declined the friend request of %s", u)
	case "/friend remove":
		m.chat.system("removed %s from your friends", u)
	case "/block":
		m.chat.system("blocked %s: their private messages and friend requests are refused", u)
	case "/unblock":
		m.chat.system("unblocked %s", u)
	}
}

func (m *model) showFriends(fr []parley.Friend) {
	if len(fr) == 0 {
		m.chat.system("no friends yet: /friend add USER")
		return
	}
	m.chat.system("friends (%d):", len(fr))
	for _, f := range fr {
		var s string
		switch f.State {
		case parley.FriendFriend:
			s = "offline"
			if f.Online {
				s = "online"
			}
		case parley.FriendIncoming:
			s = "asks to be friends (/friend accept " + f.Username + ")"
		case parley.FriendOutgoing:
			s = "request sent"
		case parley.FriendBlocked:
			s = "blocked"
		default:
			s = f.State.String()
		}
		m.chat.system("  %s — %s", f.Username, s)
	}
}

// onFriendEvent announces what another user did.
func (m *model) onFriendEvent(ev parley.FriendEvent) {
	u := ev.Username
	switch ev.Kind {
	case parley.FriendEventRequest:
		m.chat.system("%s asks to be friends: /friend accept %s or /friend decline %s", u, u, u)
	case parley.FriendEventAccepted:
		m.chat.system("%s accepted: you are friends now", u)
	case parley.FriendEventDeclined:
		m.chat.system("%s declined your friend request", u)
	case parley.FriendEventRemoved:
		m.chat.system("%s is no longer your friend", u)
	}
}

// onTyping notes that the peer of a private chat is typing; the hint goes
// by itself typingShown later (the tick only re-renders).
func (m *model) onTyping(ev parley.TypingEvent) tea.Cmd {
	cv := m.chat.conv(ev.Conversation)
	if cv == nil || ev.UserID == m.chat.myID {
		return nil
	}
	cv.typingAt, cv.typingUser = m.now(), ev.Username
	return tea.Tick(typingShown, func(time.Time) tea.Msg { return typingExpiredMsg{} })
}

// onReceipt notes how far the peer has seen a private chat.
func (m *model) onReceipt(ev parley.ReceiptEvent) {
	cv := m.chat.conv(ev.Conversation)
	if cv == nil || ev.UserID == m.chat.myID || ev.Seq <= cv.peerAcked {
		return
	}
	cv.peerAcked = ev.Seq
	if cv == m.chat.selected() {
		m.chat.refresh()
	}
}

// typingHint is the header's "bob is typing…" for the selected private
// chat, "" when there is none to show.
func (m *model) typingHint() string {
	cv := m.chat.selected()
	if cv == nil || cv.kind != parley.ConversationDirect || cv.typingAt.IsZero() || m.now().Sub(cv.typingAt) >= typingShown {
		return ""
	}
	return cv.typingUser + " is typing…"
}

// typed is called after a key changed the input: in a private chat, the
// peer is told (at most every typingEvery per chat). Commands are not
// typing.
func (m *model) typed() tea.Cmd {
	cv := m.chat.selected()
	text := m.chat.input.Value()
	if cv == nil || cv.kind != parley.ConversationDirect || strings.TrimSpace(text) == "" || strings.HasPrefix(text, "/") {
		return nil
	}
	now := m.now()
	if cv.id == m.typingConv && now.Sub(m.typingSent) < typingEvery {
		return nil
	}
	m.typingConv, m.typingSent = cv.id, now
	if m.client == nil {
		return nil
	}
	c, id := m.client, cv.id
	return func() tea.Msg {
		ctx, cancel := context.WithTimeout(m.ctx, requestTimeout)
		defer cancel()
		_ = c.Typing(ctx, id) // a lost typing notice is not worth a line
		return nil
	}
}

// seenLine is the index in cv.lines of the user's last message of a
// private chat if the peer has seen it, else -1.
func seenLine(cv *convView) int {
	if cv.kind != parley.ConversationDirect || cv.peerAcked == 0 {
		return -1
	}
	for i := len(cv.lines) - 1; i >= 0; i-- {
		if l := cv.lines[i]; l.kind == lineOwn && l.seq > 0 {
			if l.seq <= cv.peerAcked {
				return i
			}
			return -1
		}
	}
	return -1
}
