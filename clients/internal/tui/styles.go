package tui

import "github.com/charmbracelet/lipgloss"

// Colours are ANSI 256 so they look the same on most terminals; lipgloss
// degrades them on terminals with fewer colours.
var (
	colAccent = lipgloss.Color("39")  // blue
	colOwn    = lipgloss.Color("42")  // green
	colOther  = lipgloss.Color("213") // pink
	colDim    = lipgloss.Color("245") // grey
	colError  = lipgloss.Color("203") // red
	colWarn   = lipgloss.Color("214") // orange

	titleStyle   = lipgloss.NewStyle().Bold(true).Foreground(colAccent)
	dimStyle     = lipgloss.NewStyle().Foreground(colDim)
	errorStyle   = lipgloss.NewStyle().Foreground(colError)
	warnStyle    = lipgloss.NewStyle().Foreground(colWarn)
	ownNameStyle = lipgloss.NewStyle().Bold(true).Foreground(colOwn)
	otherName    = lipgloss.NewStyle().Bold(true).Foreground(colOther)
	systemStyle  = lipgloss.NewStyle().Italic(true).Foreground(colDim)
	activeTab    = lipgloss.NewStyle().Bold(true).Foreground(colAccent).Underline(true)
	inactiveTab  = lipgloss.NewStyle().Foreground(colDim)

	// The call bar: a ringing call's banner, a running call's title.
	ringStyle = lipgloss.NewStyle().Bold(true).Foreground(lipgloss.Color("0")).Background(colWarn)
	callStyle = lipgloss.NewStyle().Bold(true).Foreground(lipgloss.Color("0")).Background(colOwn)

	paneStyle = lipgloss.NewStyle().Border(lipgloss.RoundedBorder()).BorderForeground(colDim)
	boxStyle  = lipgloss.NewStyle().Border(lipgloss.RoundedBorder()).BorderForeground(colAccent).Padding(1, 3)
)
