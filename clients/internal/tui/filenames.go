package tui

import (
	"fmt"
	"mime"
	"os"
	"path/filepath"
	"strings"
	"time"
	"unicode"

	"github.com/parleychat/parley/protocol/filename"
)

// Names from other users are untrusted (docs/protocol.md §18.1: the server
// sanitises them, "receivers must still treat it as untrusted"). safeName
// applies the same rules again (libs/filename, as the file service and the
// CLI do, Windows device names included), so that a name is safe both
// to print in the terminal (no escape or control characters) and to create
// in the download folder (one path element, never "", "." or "..").

// safeName is name made safe to show and to use as one path element.
func safeName(name string) string { return filename.Sanitize(name) }

// printable strips control and format characters from text shown in the
// terminal (a content type, an error message from a server).
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
			return -1
		}
		return r
	}, strings.ToValidUTF8(s, ""))
}

// displayType is a content type as shown: the media type without its
// parameters ("text/plain" for "text/plain; charset=utf-8").
func displayType(ct string) string {
	if mt, _, err := mime.ParseMediaType(ct); err == nil {
		return mt
	}
	return printable(ct)
}

// expandPath resolves what the user typed as a path: surrounding quotes
// removed and a leading ~ for the home folder.
func expandPath(p string) string {
	p = strings.TrimSpace(p)
	if len(p) >= 2 && (p[0] == '"' && p[len(p)-1] == '"' || p[0] == '\'' && p[len(p)-1] == '\'') {
		p = p[1 : len(p)-1]
	}
	if p == "~" || strings.HasPrefix(p, "~/") {
		if home, err := os.UserHomeDir(); err == nil {
			p = filepath.Join(home, p[1:])
		}
	}
	return p
}

// humanSize renders a byte count: "512 B", "1.5 KiB", "2.3 MiB", "1.1 GiB".
func humanSize(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	v, i := float64(n)/unit, 0
	for v >= unit && i < 4 {
		v /= unit
		i++
	}
	return fmt.Sprintf("%.1f %ciB", v, "KMGTP"[i])
}

// humanRate renders bytes per second.
func humanRate(bps float64) string {
	return humanSize(uint64(bps)) + "/s"
}

// humanETA renders a remaining time: "8s", "1m05s", "2h03m".
func humanETA(d time.Duration) string {
	d = d.Round(time.Second)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	}
	return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
}
