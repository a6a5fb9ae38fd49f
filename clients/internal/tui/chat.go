package tui

import (
	"fmt"
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
	lineOther // what others sent (arrives with the messaging service)
)

type line struct {
	kind lineKind
	at   time.Time
	from string
	text string
}

// maxLines bounds the scrollback.
const maxLines = 2000

// Layout constants.
const (
	onlinePaneWidth = 24
	inputHeight     = 3
)

// chatScreen is the main screen: messages, online users, input.
type chatScreen struct {
	me       string
	lines    []line
	online   []parley.OnlineUser
	status   string // "" when connected; "reconnecting…" etc.
	gateway  string
	messages viewport.Model
	input    textarea.Model
	width    int
	height   int
}

func newChatScreen() chatScreen {
	in := textarea.New()
	in.Placeholder = "Type /who, /logout, /quit or a message… (alt+enter: new line)"
	in.ShowLineNumbers = false
	in.Prompt = "┃ "
	in.CharLimit = 4000
	in.SetHeight(inputHeight)
	// Enter sends; Alt+Enter inserts a newline.
	in.KeyMap.InsertNewline = key.NewBinding(key.WithKeys("alt+enter"), key.WithHelp("alt+enter", "new line"))
	in.Focus()
	return chatScreen{messages: viewport.New(0, 0), input: in}
}

func (c *chatScreen) add(kind lineKind, from, text string) {
	c.lines = append(c.lines, line{kind: kind, at: time.Now(), from: from, text: text})
	if len(c.lines) > maxLines {
		c.lines = c.lines[len(c.lines)-maxLines:]
	}
	c.refresh()
}

func (c *chatScreen) system(format string, args ...any) {
	c.add(lineSystem, "", fmt.Sprintf(format, args...))
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
	msgW := max(w-onlinePaneWidth-2, 10)
	bodyH := max(h-1-(inputHeight+2)-1-2, 3) // header, input box, help, pane borders
	c.messages.Width = msgW
	c.messages.Height = bodyH
	c.input.SetWidth(max(w-2, 10))
	c.refresh()
}

// refresh re-renders the message area and keeps it scrolled to the end
// when it was there.
func (c *chatScreen) refresh() {
	atBottom := c.messages.AtBottom() || c.messages.TotalLineCount() <= c.messages.Height
	width := max(c.messages.Width, 10)
	var b strings.Builder
	for i, l := range c.lines {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(renderLine(l, width))
	}
	c.messages.SetContent(b.String())
	if atBottom {
		c.messages.GotoBottom()
	}
}

func renderLine(l line, width int) string {
	ts := dimStyle.Render(l.at.Format("15:04") + " ")
	wrap := lipgloss.NewStyle().Width(max(width-6, 4))
	switch l.kind {
	case lineOwn:
		return ts + wrap.Render(ownNameStyle.Render(l.from)+" "+l.text)
	case lineOther:
		return ts + wrap.Render(otherName.Render(l.from)+" "+l.text)
	case lineError:
		return ts + wrap.Render(errorStyle.Render("! "+l.text))
	default:
		return ts + wrap.Render(systemStyle.Render("* "+l.text))
	}
}

func (c *chatScreen) view(server string) string {
	status := dimStyle.Render("connected")
	if c.status != "" {
		status = warnStyle.Render(c.status)
	}
	header := titleStyle.Render("Parley") + " " + ownNameStyle.Render(c.me) +
		dimStyle.Render(" @ "+server) + "  " + status
	if c.gateway != "" && c.status == "" {
		header += dimStyle.Render(" · " + c.gateway)
	}

	var ob strings.Builder
	ob.WriteString(titleStyle.Render(fmt.Sprintf("Online (%d)", len(c.online))))
	maxRows := max(c.messages.Height-1, 1)
	for i, u := range c.online {
		if i == maxRows-1 && len(c.online) > maxRows {
			ob.WriteString("\n" + dimStyle.Render(fmt.Sprintf("… %d more", len(c.online)-i)))
			break
		}
		name := u.Username
		if name == c.me {
			name = ownNameStyle.Render(name + " (you)")
		} else {
			name = otherName.Render(name)
		}
		ob.WriteString("\n" + name)
	}
	onlinePane := paneStyle.Width(onlinePaneWidth - 2).Height(c.messages.Height).Render(ob.String())
	msgPane := paneStyle.Width(c.messages.Width).Height(c.messages.Height).Render(c.messages.View())
	body := lipgloss.JoinHorizontal(lipgloss.Top, msgPane, onlinePane)
	input := paneStyle.Render(c.input.View())
	help := dimStyle.Render("enter: send · alt+enter: new line · pgup/pgdn: scroll · /who · /logout · /quit")
	return lipgloss.JoinVertical(lipgloss.Left, header, body, input, help)
}
