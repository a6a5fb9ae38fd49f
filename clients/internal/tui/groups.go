package tui

import (
	"context"
	"fmt"
	"slices"
	"strings"

	tea "github.com/charmbracelet/bubbletea"

	"github.com/parleychat/parley/clients/parley"
)

// Groups in the chat screen: they are listed as "+name" (an invitation as
// "+name (invited)"), their system messages ("alice invited bob") show as
// system lines, and the /group commands act on the selected group. What a
// command changes comes back as the group's system message, so success is
// mostly silent; failures are error lines in the group.

// groupOp names a group command, for its reply and its error line.
type groupOp string

const (
	opCreate  groupOp = "/group"
	opInvite  groupOp = "/invite"
	opJoin    groupOp = "/join"
	opLeave   groupOp = "/leave"
	opMembers groupOp = "/members"
	opRename  groupOp = "/rename"
	opKick    groupOp = "/kick"
)

// groupMsg reports a group command: the group's state (create, join,
// rename) or its members (invite, members).
type groupMsg struct {
	op      groupOp
	conv    string // the group's id ("" for create)
	cv      *parley.Conversation
	members []parley.Member
	err     error
}

func groupCmd(ctx context.Context, op groupOp, conv string, fn func(ctx context.Context) (*parley.Conversation, []parley.Member, error)) tea.Cmd {
	return func() tea.Msg {
		ctx, cancel := context.WithTimeout(ctx, requestTimeout)
		defer cancel()
		cv, ms, err := fn(ctx)
		return groupMsg{op: op, conv: conv, cv: cv, members: ms, err: err}
	}
}

// splitName takes a group name off the front of s: a "quoted name" (for
// names with spaces) or one word. It returns the name and the rest.
func splitName(s string) (name, rest string) {
	s = strings.TrimSpace(s)
	if q, ok := strings.CutPrefix(s, `"`); ok {
		if name, rest, ok := strings.Cut(q, `"`); ok {
			return name, strings.TrimSpace(rest)
		}
		return q, ""
	}
	name, rest, _ = strings.Cut(s, " ")
	return name, strings.TrimSpace(rest)
}

// users are the usernames in s, "@" optional.
func users(s string) []string {
	var out []string
	for _, f := range strings.Fields(s) {
		if u := strings.TrimPrefix(f, "@"); u != "" {
			out = append(out, u)
		}
	}
	return out
}

// groupCommand runs /group, /invite, /join, /leave, /members, /rename and
// /kick; args is the text after the command. It reports false for other
// commands.
func (m *model) groupCommand(op groupOp, args string) (tea.Cmd, bool) {
	switch op {
	case opCreate, opInvite, opJoin, opLeave, opMembers, opRename, opKick:
	default:
		return nil, false
	}
	c := m.client
	if op == opCreate {
		name, rest := splitName(args)
		if name == "" {
			m.chat.add(lineError, `usage: /group NAME [USER...] (a name with spaces in "quotes")`)
			return nil, true
		}
		if c == nil {
			return notConnected(op, ""), true
		}
		invite := users(rest)
		return groupCmd(m.ctx, op, "", func(ctx context.Context) (*parley.Conversation, []parley.Member, error) {
			cv, err := c.CreateGroup(ctx, name, invite...)
			return cv, nil, err
		}), true
	}

	cv := m.chat.selected()
	if cv == nil || cv.kind != parley.ConversationGroup {
		m.chat.add(lineError, string(op)+": select a group first (tab)")
		return nil, true
	}
	id := cv.id
	var fn func(ctx context.Context) (*parley.Conversation, []parley.Member, error)
	switch op {
	case opInvite:
		us := users(args)
		if len(us) == 0 {
			m.chat.add(lineError, "usage: /invite USER...")
			return nil, true
		}
		fn = func(ctx context.Context) (*parley.Conversation, []parley.Member, error) {
			ms, err := c.Invite(ctx, id, us...)
			return nil, ms, err
		}
	case opJoin:
		if !cv.invited {
			m.chat.add(lineError, "/join: you are already a member of "+cv.name())
			return nil, true
		}
		fn = func(ctx context.Context) (*parley.Conversation, []parley.Member, error) {
			j, err := c.JoinGroup(ctx, id)
			return j, nil, err
		}
	case opLeave:
		fn = func(ctx context.Context) (*parley.Conversation, []parley.Member, error) {
			return nil, nil, c.LeaveGroup(ctx, id)
		}
	case opMembers:
		fn = func(ctx context.Context) (*parley.Conversation, []parley.Member, error) {
			ms, err := c.Members(ctx, id)
			return nil, ms, err
		}
	case opRename:
		name := strings.TrimSpace(args)
		if unq, ok := strings.CutPrefix(name, `"`); ok {
			name = strings.TrimSuffix(unq, `"`)
		}
		if name == "" {
			m.chat.add(lineError, "usage: /rename NAME")
			return nil, true
		}
		fn = func(ctx context.Context) (*parley.Conversation, []parley.Member, error) {
			r, err := c.RenameGroup(ctx, id, name)
			return r, nil, err
		}
	case opKick:
		us := users(args)
		if len(us) != 1 {
			m.chat.add(lineError, "usage: /kick USER")
			return nil, true
		}
		fn = func(ctx context.Context) (*parley.Conversation, []parley.Member, error) {
			return nil, nil, c.RemoveMember(ctx, id, us[0])
		}
	}
	if c == nil {
		return notConnected(op, id), true
	}
	return groupCmd(m.ctx, op, id, fn), true
}

func notConnected(op groupOp, conv string) tea.Cmd {
	return func() tea.Msg { return groupMsg{op: op, conv: conv, err: errNotConnected} }
}

// onGroup shows the outcome of a group command.
func (m *model) onGroup(msg groupMsg) tea.Cmd {
	if m.screen != screenChat {
		return nil
	}
	if msg.err != nil {
		m.noticeIn(msg.conv, lineError, string(msg.op)+": "+describe(msg.err))
		return nil
	}
	switch msg.op {
	case opCreate:
		// Select the new group; its "created" message follows as an
		// event.
		cv, _ := m.chat.ensureConv(msg.cv.ID, parley.ConversationGroup, msg.cv.Title)
		m.updateGroup(cv, *msg.cv)
		cmd := m.selectConv(slices.Index(m.chat.convs, cv))
		m.chat.system("group %s created: /invite USER to add people", cv.name())
		return cmd
	case opJoin, opRename:
		if cv := m.chat.conv(msg.conv); cv != nil {
			cv.title = msg.cv.Title
			m.updateGroup(cv, *msg.cv)
			// After a join, the messages from the invitation on
			// arrive as events ("bob joined" first); the history
			// before it stays closed.
			m.chat.sortConvs()
			m.chat.refresh()
		}
	case opLeave:
		name := msg.conv
		if cv := m.chat.conv(msg.conv); cv != nil {
			name = cv.name()
		}
		m.chat.removeConv(msg.conv)
		m.chat.system("you left %s", name)
	case opMembers:
		m.showMembers(msg.conv, msg.members)
	}
	return nil
}

// showMembers lists a group's members as system lines in the group.
func (m *model) showMembers(conv string, ms []parley.Member) {
	name := conv
	if cv := m.chat.conv(conv); cv != nil {
		name = cv.name()
	}
	m.noticeIn(conv, lineSystem, fmt.Sprintf("members of %s (%d):", name, len(ms)))
	for _, mb := range ms {
		s := mb.Username
		switch {
		case mb.Owner:
			s += " (owner)"
		case mb.Invited:
			s += " (invited)"
		}
		if mb.Username == m.chat.me {
			s += " — you"
		}
		m.noticeIn(conv, lineSystem, "  "+s)
	}
}

// updateGroup takes a group's state from the server. An invitation that
// is new to this screen (live, or found at login) is announced wherever
// the user is.
func (m *model) updateGroup(cv *convView, sc parley.Conversation) {
	if sc.Kind != parley.ConversationGroup {
		return
	}
	cv.ownerID = sc.OwnerID
	if sc.Invited && !cv.invited {
		title := sc.Title
		if title == "" {
			title = cv.title
		}
		by := "you are invited"
		if cv.invitedBy != "" {
			by = cv.invitedBy + " invited you"
		}
		m.chat.system("%s to the group +%s: select it (tab) and /join, or /leave to decline", by, title)
	}
	cv.invited = sc.Invited
}
