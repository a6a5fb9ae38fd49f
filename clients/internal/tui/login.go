package tui

import (
	"strings"

	"github.com/charmbracelet/bubbles/textinput"
	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/lipgloss"
)

// loginScreen asks for the username and password (twice to register).
type loginScreen struct {
	register bool
	inputs   [3]textinput.Model // username, password, repeat password
	focus    int
	err      string
	status   string // "logging in…" while a request is in flight
	busy     bool
}

const (
	fieldUser = iota
	fieldPass
	fieldConfirm
)

func newLoginScreen(user string) loginScreen {
	var l loginScreen
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
	if user != "" {
		l.focus = fieldPass
	}
	l.inputs[l.focus].Focus()
	return l
}

// fields is how many inputs the current mode shows.
func (l *loginScreen) fields() int {
	if l.register {
		return 3
	}
	return 2
}

func (l *loginScreen) setFocus(i int) {
	n := l.fields()
	i = (i%n + n) % n
	l.inputs[l.focus].Blur()
	l.focus = i
	l.inputs[i].Focus()
}

// submission is a validated form: what to send.
type submission struct {
	register       bool
	user, password string
}

// update handles a key; it returns a submission when the form is complete
// and valid. Checks that need no server (empty fields, the two passwords
// differing) happen here, before anything is sent.
func (l *loginScreen) update(msg tea.Msg) (*submission, tea.Cmd) {
	k, ok := msg.(tea.KeyMsg)
	if !ok {
		var cmd tea.Cmd
		l.inputs[l.focus], cmd = l.inputs[l.focus].Update(msg)
		return nil, cmd
	}
	switch k.String() {
	case "tab", "down":
		l.setFocus(l.focus + 1)
		return nil, nil
	case "shift+tab", "up":
		l.setFocus(l.focus - 1)
		return nil, nil
	case "ctrl+r":
		l.register = !l.register
		l.err = ""
		l.inputs[fieldConfirm].SetValue("")
		if l.focus >= l.fields() {
			l.setFocus(fieldPass)
		}
		return nil, nil
	case "enter":
		if l.busy {
			return nil, nil
		}
		if l.focus < l.fields()-1 && l.inputs[l.focus].Value() != "" {
			l.setFocus(l.focus + 1)
			return nil, nil
		}
		return l.validate(), nil
	}
	var cmd tea.Cmd
	l.inputs[l.focus], cmd = l.inputs[l.focus].Update(msg)
	return nil, cmd
}

func (l *loginScreen) validate() *submission {
	user := strings.TrimSpace(l.inputs[fieldUser].Value())
	pass := l.inputs[fieldPass].Value()
	switch {
	case user == "":
		l.err = "enter a username"
		l.setFocus(fieldUser)
		return nil
	case pass == "":
		l.err = "enter a password"
		l.setFocus(fieldPass)
		return nil
	case l.register && l.inputs[fieldConfirm].Value() != pass:
		l.err = "passwords do not match"
		l.inputs[fieldConfirm].SetValue("")
		l.setFocus(fieldConfirm)
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
	if l.inputs[fieldUser].Value() == "" {
		l.setFocus(fieldUser)
	} else {
		l.setFocus(fieldPass)
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
	labels := []string{"Username", "Password", "Repeat password"}
	for i := range l.fields() {
		label := dimStyle.Render(labels[i])
		if i == l.focus {
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
	b.WriteString(dimStyle.Render("tab: next field · enter: submit · ctrl+r: " + other + " · esc: quit"))
	box := boxStyle.Render(b.String())
	if width == 0 || height == 0 {
		return box
	}
	return lipgloss.Place(width, height, lipgloss.Center, lipgloss.Center, box)
}
