package tui

import (
	"strings"

	"github.com/charmbracelet/bubbles/textinput"
	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/lipgloss"
)

// loginScreen asks for the username and password (twice to register). When
// sessions are saved on this machine it first offers to continue one of
// them ("Continue as alice"), the focused choice at start: a second client
// started next to a running one never becomes that user unasked, and
// registering another account is one ctrl+r away.
type loginScreen struct {
	register bool
	// saved: users whose saved session can be continued without the
	// password, offered above the form in login mode.
	saved  []string
	inputs [3]textinput.Model // username, password, repeat password
	// focus: 0..rows()-1 is a "continue as" row, then the form's fields.
	focus  int
	err    string
	status string // "logging in…" while a request is in flight
	busy   bool
}

const (
	fieldUser = iota
	fieldPass
	fieldConfirm
)

func newLoginScreen(user string, saved []string) loginScreen {
	l := loginScreen{saved: saved}
	for i := range l.inputs {
		in := textinput.New()
		in.CharLimit = 128
		in.Width = 28
		in.Prompt = ""
		if i != fieldUser {
			in.EchoMode = textinput.EchoPassword
			in.EchoCharacter = '•'
		}
		l.inputs[i] = in
	}
	l.inputs[fieldUser].SetValue(user)
	switch {
	case user != "": // named on the command line: their password
		l.focus = l.rows() + fieldPass
	case len(saved) > 0:
		l.focus = 0 // continue as the last user who logged in
	default:
		l.focus = l.rows() + fieldUser
	}
	l.syncFocus()
	return l
}

// rows is how many "continue as" rows the current mode shows.
func (l *loginScreen) rows() int {
	if l.register {
		return 0
	}
	return len(l.saved)
}

// fields is how many inputs the current mode shows.
func (l *loginScreen) fields() int {
	if l.register {
		return 3
	}
	return 2
}

// field is the focused input, or -1 on a "continue as" row.
func (l *loginScreen) field() int {
	if l.focus < l.rows() {
		return -1
	}
	return l.focus - l.rows()
}

// setFocus moves the focus to item i (rows, then fields), wrapping.
func (l *loginScreen) setFocus(i int) {
	n := l.rows() + l.fields()
	l.focus = (i%n + n) % n
	l.syncFocus()
}

func (l *loginScreen) setField(f int) { l.setFocus(l.rows() + f) }

// syncFocus gives the cursor to the focused input only.
func (l *loginScreen) syncFocus() {
	for i := range l.inputs {
		if i == l.field() {
			l.inputs[i].Focus()
		} else {
			l.inputs[i].Blur()
		}
	}
}

// setSaved replaces the offered sessions (after a logout or a session
// ended), keeping the focus on the same field.
func (l *loginScreen) setSaved(saved []string) {
	f := l.field()
	l.saved = saved
	if f < 0 {
		f = fieldUser
	}
	l.setField(f)
}

// submission is a validated form: what to send.
type submission struct {
	register       bool
	user, password string
	// resume: continue this user's saved session (no password).
	resume bool
}

// update handles a key; it returns a submission when the form is complete
// and valid. Checks that need no server (empty fields, the two passwords
// differing) happen here, before anything is sent.
func (l *loginScreen) update(msg tea.Msg) (*submission, tea.Cmd) {
	k, ok := msg.(tea.KeyMsg)
	if !ok {
		if f := l.field(); f >= 0 {
			var cmd tea.Cmd
			l.inputs[f], cmd = l.inputs[f].Update(msg)
			return nil, cmd
		}
		return nil, nil
	}
	switch k.String() {
	case "tab", "down":
		l.setFocus(l.focus + 1)
		return nil, nil
	case "shift+tab", "up":
		l.setFocus(l.focus - 1)
		return nil, nil
	case "ctrl+r":
		f := max(l.field(), fieldUser)
		l.register = !l.register
		l.err = ""
		l.inputs[fieldConfirm].SetValue("")
		l.setField(min(f, l.fields()-1))
		return nil, nil
	case "enter":
		if l.busy {
			return nil, nil
		}
		f := l.field()
		if f < 0 {
			l.err = ""
			return &submission{resume: true, user: l.saved[l.focus]}, nil
		}
		if f < l.fields()-1 && l.inputs[f].Value() != "" {
			l.setField(f + 1)
			return nil, nil
		}
		return l.validate(), nil
	}
	f := l.field()
	if f < 0 {
		if k.Type != tea.KeyRunes && k.Type != tea.KeySpace {
			return nil, nil
		}
		// Typing on a "continue as" row types a username: someone who
		// starts writing theirs is not taken for the saved user.
		f = fieldUser
		l.setField(f)
	}
	var cmd tea.Cmd
	l.inputs[f], cmd = l.inputs[f].Update(msg)
	return nil, cmd
}

func (l *loginScreen) validate() *submission {
	user := strings.TrimSpace(l.inputs[fieldUser].Value())
	pass := l.inputs[fieldPass].Value()
	switch {
	case user == "":
		l.err = "enter a username"
		l.setField(fieldUser)
		return nil
	case pass == "":
		l.err = "enter a password"
		l.setField(fieldPass)
		return nil
	case l.register && l.inputs[fieldConfirm].Value() != pass:
		l.err = "passwords do not match"
		l.inputs[fieldConfirm].SetValue("")
		l.setField(fieldConfirm)
		return nil
	}
	l.err = ""
	return &submission{register: l.register, user: user, password: pass}
}

// reset clears the passwords (after a failure or a logout).
func (l *loginScreen) reset(err string) {
	l.busy = false
	l.status = ""
	l.err = err
	l.inputs[fieldPass].SetValue("")
	l.inputs[fieldConfirm].SetValue("")
	switch {
	case l.field() < 0:
		l.syncFocus() // stay on the "continue as" row
	case l.inputs[fieldUser].Value() == "":
		l.setField(fieldUser)
	default:
		l.setField(fieldPass)
	}
}

func (l *loginScreen) view(width, height int, server string) string {
	var b strings.Builder
	b.WriteString(titleStyle.Render("Parley") + dimStyle.Render("  "+server) + "\n\n")
	login, reg := activeTab, inactiveTab
	if l.register {
		login, reg = inactiveTab, activeTab
	}
	b.WriteString(login.Render("Log in") + "   " + reg.Render("Register") + "\n\n")
	for i := range l.rows() {
		row := "  Continue as " + l.saved[i]
		if i == l.focus {
			b.WriteString(titleStyle.Render("▸ Continue as "+l.saved[i]) + "\n")
		} else {
			b.WriteString(dimStyle.Render(row) + "\n")
		}
	}
	if l.rows() > 0 {
		b.WriteString("\n" + dimStyle.Render("or log in as someone else:") + "\n\n")
	}
	labels := []string{"Username", "Password", "Repeat password"}
	for i := range l.fields() {
		label := dimStyle.Render(labels[i])
		if i == l.field() {
			label = titleStyle.Render(labels[i])
		}
		b.WriteString(label + "\n" + "> " + l.inputs[i].View() + "\n\n")
	}
	switch {
	case l.status != "":
		b.WriteString(warnStyle.Render(l.status) + "\n")
	case l.err != "":
		b.WriteString(errorStyle.Render(l.err) + "\n")
	default:
		b.WriteString("\n")
	}
	other := "register"
	if l.register {
		other = "log in"
	}
	help := "tab: next field · enter: submit · ctrl+r: " + other + " · esc: quit"
	if l.field() < 0 {
		help = "enter: continue as " + l.saved[l.focus] + " · tab: another user · ctrl+r: register · esc: quit"
	}
	b.WriteString(dimStyle.Render(help))
	box := boxStyle.Render(b.String())
	if width == 0 || height == 0 {
		return box
	}
	return lipgloss.Place(width, height, lipgloss.Center, lipgloss.Center, box)
}
