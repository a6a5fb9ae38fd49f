package tui

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/charmbracelet/bubbles/key"
	"github.com/charmbracelet/bubbles/textarea"
	"github.com/charmbracelet/bubbles/viewport"
	"github.com/charmbracelet/lipgloss"

	"github.com/parleychat/parley/clients/parley"
)

// lineKind decides how a line in the message area looks.
type lineKind int

const (
	lineSystem lineKind = iota // notices: presence, connection state
	lineError
	lineOwn   // what this user sent
	lineOther // what others sent
)

type line struct {
	kind lineKind
	at   time.Time // a message's send time; a notice's arrival
	from string
	text string
	seq  uint64 // a message's seq in its conversation; 0 for notices
	file int    // a file offer: the file's number (its text is the file's state)
	// A message of a direct session (direct.go), marked ⇄: its id, or
	// while it is being sent a placeholder key; note says how its
	// sending goes.
	direct bool
	id     string
	key    string
	note   string
}

// maxLines bounds the scrollback of each conversation.
const maxLines = 2000

// Layout constants.
const (
	sidePaneWidth = 26
	inputHeight   = 3
)

// chatScreen is the main screen: the selected conversation's messages, a
// side pane with the conversations (public room first, then private
// chats, with unread counts) and who is online, and the input.
type chatScreen struct {
	me       string // username
	myID     string
	convs    []*convView // rooms first, then private chats by title
	sel      int         // index of the selected conversation in convs
	online   []parley.OnlineUser
	status   string // "" when connected; "reconnecting…" etc.
	gateway  string
	messages viewport.Model
	input    textarea.Model
	width    int
	height   int

	// Files (files.go): every file known, by number - 1 (a number merged
	// into another entry points to it); by id; the transfers in the pane
	// (running or interrupted); conversations whose file list is being
	// read.
	files     []*fileEntry
	fileIDs   map[string]*fileEntry
	transfers []*transfer
	filesBusy map[string]bool

	// call is the call bar's state (calls.go); barRows its height as the
	// layout last counted it.
	call    callState
	barRows int

	// direct: the direct sessions (direct.go).
	direct directView
}

func newChatScreen() chatScreen {
	in := textarea.New()
	in.Placeholder = "Type a message, /msg USER, /who, /help… (alt+enter: new line)"
	in.ShowLineNumbers = false
	in.Prompt = "┃ "
	in.CharLimit = 4000
	in.SetHeight(inputHeight)
	// Enter sends; Alt+Enter inserts a newline.
	in.KeyMap.InsertNewline = key.NewBinding(key.WithKeys("alt+enter"), key.WithHelp("alt+enter", "new line"))
	in.Focus()
	return chatScreen{messages: viewport.New(0, 0), input: in,
		fileIDs: make(map[string]*fileEntry), filesBusy: make(map[string]bool), direct: newDirectView()}
}

// add shows a notice in the selected conversation.
func (c *chatScreen) add(kind lineKind, text string) {
	if cv := c.selected(); cv != nil {
		cv.addNotice(kind, text)
		c.refresh()
	}
}

func (c *chatScreen) system(format string, args ...any) {
	c.add(lineSystem, fmt.Sprintf(format, args...))
}

func (c *chatScreen) selected() *convView {
	if c.sel < 0 || c.sel >= len(c.convs) {
		return nil
	}
	return c.convs[c.sel]
}

// selectedID is the selected conversation's id ("" if none).
func (c *chatScreen) selectedID() string {
	if cv := c.selected(); cv != nil {
		return cv.id
	}
	return ""
}

func (c *chatScreen) conv(id string) *convView {
	for _, cv := range c.convs {
		if cv.id == id {
			return cv
		}
	}
	return nil
}

// ensureConv returns the conversation, adding it to the pane if new (the
// selection stays on the same conversation).
func (c *chatScreen) ensureConv(id string, kind parley.ConversationKind, title string) (cv *convView, added bool) {
	if cv := c.conv(id); cv != nil {
		if cv.title == "" {
			cv.title = title
		}
		return cv, false
	}
	cv = newConvView(id, kind, title)
	c.convs = append(c.convs, cv)
	c.sortConvs()
	return cv, true
}

// sortConvs orders the pane (rooms, groups, private chats; by title within
// each), keeping the selection on the same conversation.
func (c *chatScreen) sortConvs() {
	cur := c.selected()
	slices.SortStableFunc(c.convs, func(a, b *convView) int {
		if ra, rb := kindRank(a.kind), kindRank(b.kind); ra != rb {
			return ra - rb
		}
		return strings.Compare(a.title, b.title)
	})
	if cur != nil {
		c.sel = slices.Index(c.convs, cur)
	}
}

// removeConv drops a conversation from the pane (a group left); the
// selection moves to the room when it was the selected one.
func (c *chatScreen) removeConv(id string) {
	i := slices.IndexFunc(c.convs, func(cv *convView) bool { return cv.id == id })
	if i < 0 {
		return
	}
	cur := c.selected()
	c.convs = slices.Delete(c.convs, i, i+1)
	if j := slices.Index(c.convs, cur); j >= 0 {
		c.sel = j
	} else {
		c.selectConv(0)
	}
	c.refresh()
}

// selectConv selects the conversation at index i (wrapping around).
func (c *chatScreen) selectConv(i int) *convView {
	if len(c.convs) == 0 {
		return nil
	}
	c.sel = (i%len(c.convs) + len(c.convs)) % len(c.convs)
	c.messages.GotoBottom()
	c.refresh()
	return c.selected()
}

// messageLine is how a message is shown. A group's system message ("alice
// invited bob") is a system line, in its place by seq.
func (c *chatScreen) messageLine(m parley.Message) line {
	kind := lineOther
	switch {
	case m.System:
		kind = lineSystem
	case c.isOwn(m):
		kind = lineOwn
	}
	at := m.SentAt
	if at.IsZero() {
		at = time.Now()
	}
	l := line{kind: kind, at: at, from: m.SenderName, text: m.Text, seq: m.Seq}
	if m.Call != nil {
		l.kind, l.text = lineSystem, c.callText(m)
	}
	if id, ok := offerID(m); ok {
		l.file = c.trackOffer(m, id).num
	}
	return l
}

// isOwn: the user sent m (or, for a system message, caused it).
func (c *chatScreen) isOwn(m parley.Message) bool {
	return m.SenderID == c.myID || (m.SenderID == "" && m.SenderName == c.me)
}

// setOnline replaces the list (from a snapshot or a /who reply).
func (c *chatScreen) setOnline(users []parley.OnlineUser) {
	c.online = append(c.online[:0], users...)
}

func (c *chatScreen) userOnline(u parley.OnlineUser) {
	for i := range c.online {
		if c.online[i].UserID == u.UserID {
			c.online[i] = u
			return
		}
	}
	c.online = append(c.online, u)
	sortByName(c.online)
}

func (c *chatScreen) userOffline(u parley.OnlineUser) {
	for i := range c.online {
		if c.online[i].UserID == u.UserID {
			c.online = append(c.online[:i], c.online[i+1:]...)
			return
		}
	}
}

func sortByName(us []parley.OnlineUser) {
	for i := 1; i < len(us); i++ {
		for j := i; j > 0 && us[j].Username < us[j-1].Username; j-- {
			us[j], us[j-1] = us[j-1], us[j]
		}
	}
}

// resize lays the screen out for the terminal size.
func (c *chatScreen) resize(w, h int) {
	c.width, c.height = w, h
	msgW := max(w-sidePaneWidth-2, 10)
	bodyH := max(h-1-(inputHeight+2)-1-2-c.transferRows()-c.barRows, 3) // header, input box, help, pane borders, transfers, call bar
	c.messages.Width = msgW
	c.messages.Height = bodyH
	c.input.SetWidth(max(w-2, 10))
	c.refresh()
}

// relayout fits the message area around a changed transfers pane.
func (c *chatScreen) relayout() { c.resize(c.width, c.height) }

// transferRows is the transfers pane's height: a row per transfer, at
// most maxTransferRows, and one "… N more".
func (c *chatScreen) transferRows() int {
	n := len(c.transfers)
	if n > maxTransferRows {
		return maxTransferRows + 1
	}
	return n
}

// transfersPane renders the transfers, one row each.
func (c *chatScreen) transfersPane() string {
	w := max(c.width-2, 20)
	var rows []string
	for i, tr := range c.transfers {
		if i == maxTransferRows {
			rows = append(rows, dimStyle.Render(fmt.Sprintf(" … %d more", len(c.transfers)-i)))
			break
		}
		rows = append(rows, " "+tr.row(w))
	}
	return strings.Join(rows, "\n")
}

// refresh re-renders the message area and keeps it scrolled to the end
// when it was there.
func (c *chatScreen) refresh() {
	atBottom := c.messages.AtBottom() || c.messages.TotalLineCount() <= c.messages.Height
	width := max(c.messages.Width, 10)
	var lines []line
	if cv := c.selected(); cv != nil {
		lines = cv.lines
		if seen := seenLine(cv); seen >= 0 {
			lines = slices.Clone(lines)
			lines[seen].text += "  " + dimStyle.Render("✓ seen")
		}
		lines = mergeByTime(lines, cv.direct)
	}
	var b strings.Builder
	for i, l := range lines {
		if i > 0 {
			b.WriteByte('\n')
		}
		var picture string
		if l.file > 0 {
			if e := c.fileByNum(l.file); e != nil {
				l.text = c.fileText(e)
				picture = e.picture()
			}
		}
		b.WriteString(renderLine(l, width))
		if picture != "" {
			// The thumbnail inline, under the offer, aligned with its text.
			b.WriteString("\n      " + strings.ReplaceAll(picture, "\n", "\n      "))
		}
	}
	c.messages.SetContent(b.String())
	if atBottom {
		c.messages.GotoBottom()
	}
}

// mergeByTime puts a conversation's direct messages among its lines by
// time (a direct message goes before the first line that came after it).
func mergeByTime(lines, direct []line) []line {
	if len(direct) == 0 {
		return lines
	}
	out := make([]line, 0, len(lines)+len(direct))
	j := 0
	for _, l := range lines {
		for j < len(direct) && direct[j].at.Before(l.at) {
			out = append(out, direct[j])
			j++
		}
		out = append(out, l)
	}
	return append(out, direct[j:]...)
}

func renderLine(l line, width int) string {
	ts := dimStyle.Render(l.at.Format("15:04") + " ")
	if l.direct {
		ts += titleStyle.Render("⇄") + " "
	}
	if l.note != "" {
		l.text += "  " + dimStyle.Render("("+l.note+")")
	}
	wrap := lipgloss.NewStyle().Width(max(width-6, 4))
	switch l.kind {
	case lineOwn:
		return ts + wrap.Render(ownNameStyle.Render(l.from+":")+" "+l.text)
	case lineOther:
		return ts + wrap.Render(otherName.Render(l.from+":")+" "+l.text)
	case lineError:
		return ts + wrap.Render(errorStyle.Render("! "+l.text))
	default:
		return ts + wrap.Render(systemStyle.Render("* "+l.text))
	}
}

// view renders the screen; hint is shown in the header ("bob is
// typing…"), bar (the call bar, c.barRows rows) under it.
func (c *chatScreen) view(server, hint, badge, bar string) string {
	status := dimStyle.Render("connected")
	if c.status != "" {
		status = warnStyle.Render(c.status)
	}
	header := titleStyle.Render("Parley") + " " + ownNameStyle.Render(c.me) +
		dimStyle.Render(" @ "+server) + "  " + status
	if c.gateway != "" && c.status == "" {
		header += dimStyle.Render(" · " + c.gateway)
	}
	if badge != "" {
		header += "  " + badge
	}
	if hint != "" {
		header += "  " + systemStyle.Render(hint)
	}

	side := c.sidePane()
	sidePane := paneStyle.Width(sidePaneWidth - 2).Height(c.messages.Height).Render(side)
	msgPane := paneStyle.Width(c.messages.Width).Height(c.messages.Height).Render(c.messages.View())
	body := lipgloss.JoinHorizontal(lipgloss.Top, msgPane, sidePane)
	input := paneStyle.Render(c.input.View())
	help := dimStyle.Render("enter: send · alt+enter: new line · tab: next chat · pgup: older · /msg USER · /send PATH · /call · /direct · /help")
	parts := []string{header}
	if bar != "" {
		parts = append(parts, bar)
	}
	parts = append(parts, body)
	if len(c.transfers) > 0 {
		parts = append(parts, c.transfersPane())
	}
	return lipgloss.JoinVertical(lipgloss.Left, append(parts, input, help)...)
}

// sidePane lists the conversations (the selected one marked, unread counts
// in brackets) and then who is online, within the pane's height.
func (c *chatScreen) sidePane() string {
	rows := max(c.messages.Height, 2)
	var out []string
	out = append(out, titleStyle.Render("Chats"))
	for i, cv := range c.convs {
		name := cv.name()
		if cv.unread > 0 {
			name += fmt.Sprintf(" (%d)", cv.unread)
		}
		if i == c.sel {
			out = append(out, activeTab.Render("› "+name))
		} else if cv.unread > 0 {
			out = append(out, "  "+otherName.Render(name))
		} else {
			out = append(out, "  "+name)
		}
	}
	out = append(out, "", titleStyle.Render(fmt.Sprintf("Online (%d)", len(c.online))))
	for i, u := range c.online {
		if len(out) == rows-1 && i < len(c.online)-1 {
			out = append(out, dimStyle.Render(fmt.Sprintf("… %d more", len(c.online)-i)))
			break
		}
		name := u.Username
		if name == c.me {
			name = ownNameStyle.Render(name + " (you)")
		} else {
			name = otherName.Render(name)
		}
		out = append(out, name)
	}
	if len(out) > rows {
		out = out[:rows]
	}
	return strings.Join(out, "\n")
}
