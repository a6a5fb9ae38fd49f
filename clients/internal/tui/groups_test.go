package tui

import (
	"slices"
	"strings"
	"testing"

	tea "github.com/charmbracelet/bubbletea"

	"github.com/parleychat/parley/clients/parley"
)

const grp = "group.g1"

func systemMessage(conv string, seq uint64, fromID, from, text string) parley.MessageEvent {
	ev := message(conv, seq, fromID, from, text)
	ev.Message.System = true
	return ev
}

// enter types text into the input and presses enter; it returns what the
// command produced (run at once: there is no connection in these tests).
func enter(m *model, text string) tea.Msg {
	typeText(m, text)
	cmd := press(m, tea.KeyEnter)
	if cmd == nil {
		return nil
	}
	return cmd()
}

func room(last uint64) parley.Conversation {
	return parley.Conversation{ID: parley.PublicRoom, Kind: parley.ConversationRoom, Title: "public", LastSeq: last, AckedSeq: last}
}

// TestGroupInvitation: an invitation arriving live shows a notice and the
// group as an invitation; /join (answered by the server) turns it into a
// group whose system messages show as system lines.
func TestGroupInvitation(t *testing.T) {
	m := loggedIn(t)
	m.onEvent(systemMessage(grp, 2, "u2", "bob", "bob invited alice"))
	// The listing the new group asks for tells its name.
	m.Update(convsMsg{convs: []parley.Conversation{
		room(0),
		{ID: grp, Kind: parley.ConversationGroup, Title: "Team", Invited: true, LastSeq: 2, OwnerID: "u2"},
	}})
	if got := paneRows(m); !slices.Equal(got, []string{"› #public", "+Team (invited) (1)"}) {
		t.Errorf("pane = %q", got)
	}
	if v := m.View(); !strings.Contains(v, "bob invited you to the group +Team") || !strings.Contains(v, "/join") {
		t.Errorf("no notice of the invitation in the room:\n%s", v)
	}
	// The same listing again (a reconnect) announces nothing new.
	m.Update(convsMsg{convs: []parley.Conversation{room(0), {ID: grp, Kind: parley.ConversationGroup, Title: "Team", Invited: true, LastSeq: 2}}})
	if n := strings.Count(m.View(), "invited you"); n != 1 {
		t.Errorf("invitation announced %d times", n)
	}

	// /join in the room is refused; in the invitation it asks the server.
	if got := enter(m, "/join"); got != nil {
		t.Errorf("/join in the room produced %#v", got)
	}
	if !strings.Contains(m.View(), "/join: select a group first") {
		t.Errorf("no hint to select a group:\n%s", m.View())
	}
	m.Update(tea.KeyMsg{Type: tea.KeyTab})
	cv := m.chat.selected()
	if cv.id != grp || cv.loading {
		t.Fatalf("selected %s (loading %v): want the invitation, and no history asked (closed to invitees)", cv.id, cv.loading)
	}
	if v := m.View(); !strings.Contains(v, "* bob invited alice") || strings.Contains(v, "bob: bob invited") {
		t.Errorf("the invitation is not a system line:\n%s", v)
	}
	if got, ok := enter(m, "/join").(groupMsg); !ok || got.op != opJoin || got.conv != grp {
		t.Fatalf("/join produced %#v", got)
	}
	m.Update(groupMsg{op: opJoin, conv: grp, cv: &parley.Conversation{ID: grp, Kind: parley.ConversationGroup, Title: "Team", OwnerID: "u2", LastSeq: 3}})
	m.onEvent(systemMessage(grp, 3, "u1", "alice", "alice joined"))
	m.onEvent(message(grp, 4, "u2", "bob", "welcome!"))
	if got := paneRows(m); !slices.Equal(got, []string{"#public", "› +Team"}) {
		t.Errorf("pane after joining = %q", got)
	}
	v := m.View()
	for _, want := range []string{"* alice joined", "bob: welcome!"} {
		if !strings.Contains(v, want) {
			t.Errorf("group lacks %q:\n%s", want, v)
		}
	}
	if got := enter(m, "/join"); got != nil || !strings.Contains(m.View(), "already a member") {
		t.Errorf("a second /join: %#v\n%s", got, m.View())
	}
}

// TestGroupCommands: create selects the new group; the commands act on
// the selected group and check their arguments; /members lists as system
// lines; /leave drops the group from the pane; renames show.
func TestGroupCommands(t *testing.T) {
	m := loggedIn(t)
	for _, tt := range []struct{ input, want string }{
		{"/group", "usage: /group NAME"},
		{"/invite bob", "/invite: select a group first"},
		{"/kick bob", "/kick: select a group first"},
	} {
		if got := enter(m, tt.input); got != nil {
			t.Errorf("%s produced %#v", tt.input, got)
		}
		if !strings.Contains(m.View(), tt.want) {
			t.Errorf("%s: screen lacks %q:\n%s", tt.input, tt.want, m.View())
		}
	}
	if got, ok := enter(m, `/group "My Team" bob @carol`).(groupMsg); !ok || got.op != opCreate {
		t.Fatalf("/group produced %#v", got)
	}
	m.Update(groupMsg{op: opCreate, cv: &parley.Conversation{ID: grp, Kind: parley.ConversationGroup, Title: "My Team", OwnerID: "u1"}})
	if got := paneRows(m); !slices.Equal(got, []string{"#public", "› +My Team"}) {
		t.Fatalf("pane after /group = %q", got)
	}
	// The server's system messages, the user's own not counted unread.
	m.onEvent(systemMessage(grp, 1, "u1", "alice", `alice created the group "My Team"`))
	m.onEvent(systemMessage(grp, 2, "u1", "alice", "alice invited bob, carol"))
	if !strings.Contains(m.View(), "* alice invited bob, carol") {
		t.Errorf("system message not shown:\n%s", m.View())
	}

	for _, tt := range []struct{ input, want string }{
		{"/invite", "usage: /invite USER"},
		{"/kick", "usage: /kick USER"},
		{"/kick bob carol", "usage: /kick USER"},
		{"/rename", "usage: /rename NAME"},
	} {
		if got := enter(m, tt.input); got != nil {
			t.Errorf("%s produced %#v", tt.input, got)
		}
		if !strings.Contains(m.View(), tt.want) {
			t.Errorf("%s: screen lacks %q:\n%s", tt.input, tt.want, m.View())
		}
	}
	for _, tt := range []struct {
		input string
		op    groupOp
	}{{"/invite dave", opInvite}, {"/members", opMembers}, {"/rename Best Team", opRename}, {"/kick @bob", opKick}, {"/leave", opLeave}} {
		if got, ok := enter(m, tt.input).(groupMsg); !ok || got.op != tt.op || got.conv != grp {
			t.Errorf("%s produced %#v", tt.input, got)
		}
	}

	// A refused command is an error line in the group.
	m.Update(groupMsg{op: opKick, conv: grp, err: &parley.Error{Code: parley.CodePermissionDenied, Message: "only the owner may remove members"}})
	if !strings.Contains(m.View(), "! /kick: only the owner may remove members") {
		t.Errorf("refusal not shown:\n%s", m.View())
	}
	m.Update(groupMsg{op: opMembers, conv: grp, members: []parley.Member{
		{UserID: "u1", Username: "alice", Owner: true}, {UserID: "u2", Username: "bob"}, {UserID: "u4", Username: "dave", Invited: true},
	}})
	v := m.View()
	for _, want := range []string{"* members of +My Team (3):", "*   alice (owner) — you", "*   bob", "*   dave (invited)"} {
		if !strings.Contains(v, want) {
			t.Errorf("members list lacks %q:\n%s", want, v)
		}
	}

	// A rename (here from the owner's reply) renames the pane's row.
	m.Update(groupMsg{op: opRename, conv: grp, cv: &parley.Conversation{ID: grp, Kind: parley.ConversationGroup, Title: "Best Team", OwnerID: "u1"}})
	if got := paneRows(m); !slices.Equal(got, []string{"#public", "› +Best Team"}) {
		t.Errorf("pane after /rename = %q", got)
	}
	m.Update(groupMsg{op: opLeave, conv: grp})
	if got := paneRows(m); !slices.Equal(got, []string{"› #public"}) {
		t.Errorf("pane after /leave = %q", got)
	}
	if !strings.Contains(m.View(), "you left +Best Team") {
		t.Errorf("no notice of leaving:\n%s", m.View())
	}
}

// TestGroupRenamedByOthers: a rename seen in a listing renames the row and
// keeps the pane's order (rooms, groups, private chats) and selection.
func TestGroupRenamedByOthers(t *testing.T) {
	m := loggedIn(t)
	list := func(groupTitle string) convsMsg {
		return convsMsg{convs: []parley.Conversation{
			room(0),
			{ID: dmAB, Kind: parley.ConversationDirect, Title: "bob"},
			{ID: grp, Kind: parley.ConversationGroup, Title: groupTitle, OwnerID: "u2"},
			{ID: "group.g2", Kind: parley.ConversationGroup, Title: "Mid", OwnerID: "u2"},
		}}
	}
	m.Update(list("Alpha"))
	m.Update(tea.KeyMsg{Type: tea.KeyTab})
	if got := paneRows(m); !slices.Equal(got, []string{"#public", "› +Alpha", "+Mid", "@bob"}) {
		t.Fatalf("pane = %q", got)
	}
	m.onEvent(systemMessage(grp, 1, "u2", "bob", `bob renamed the group to "Zulu"`))
	m.Update(list("Zulu"))
	if got := paneRows(m); !slices.Equal(got, []string{"#public", "+Mid", "› +Zulu", "@bob"}) {
		t.Errorf("pane after the rename = %q", got)
	}
}

func TestSplitName(t *testing.T) {
	for _, tt := range []struct{ in, name, rest string }{
		{"Team bob carol", "Team", "bob carol"},
		{`"My Team" bob`, "My Team", "bob"},
		{`"My Team"`, "My Team", ""},
		{`"unclosed name`, "unclosed name", ""},
		{"  Team  ", "Team", ""},
		{"", "", ""},
	} {
		if name, rest := splitName(tt.in); name != tt.name || rest != tt.rest {
			t.Errorf("splitName(%q) = %q, %q; want %q, %q", tt.in, name, rest, tt.name, tt.rest)
		}
	}
	if got := users(" @bob  carol @ "); !slices.Equal(got, []string{"bob", "carol"}) {
		t.Errorf("users = %q", got)
	}
}
