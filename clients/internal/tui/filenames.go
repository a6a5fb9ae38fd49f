package tui

import (
	"errors"
	"fmt"
	"io/fs"
	"mime"
	"os"
	"path/filepath"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/parleychat/parley/libs/filename"
)

// Names from other users are untrusted (docs/protocol.md §18.1: the server
// sanitises them, "receivers must still treat it as untrusted"). safeName
// applies the same rules again (libs/filename, as the file service and the
// CLI do), plus Windows' reserved device names, so that a name is safe both
// to print in the terminal (no escape or control characters) and to create
// in the download folder (one path element, never "", "." or "..").

// safeName is name made safe to show and to use as one path element.
func safeName(name string) string {
	name = filename.Sanitize(name)
	if reservedOnWindows(name) {
		name = "_" + name
	}
	return name
}

// reservedOnWindows: CON, PRN, AUX, NUL, COM1-9, LPT1-9, with any
// extension, name devices on Windows.
func reservedOnWindows(name string) bool {
	base, _, _ := strings.Cut(name, ".")
	switch u := strings.ToUpper(strings.TrimSpace(base)); {
	case u == "CON", u == "PRN", u == "AUX", u == "NUL":
		return true
	case len(u) == 4 && (strings.HasPrefix(u, "COM") || strings.HasPrefix(u, "LPT")) && u[3] >= '1' && u[3] <= '9':
		return true
	}
	return false
}

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

// cutBytes cuts s to at most n bytes at a character boundary.
func cutBytes(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// safeID keeps a file id usable in a file name: letters, digits, _ and -.
func safeID(id string) string {
	id = strings.Map(func(r rune) rune {
		if r < utf8.RuneSelf && (r == '_' || r == '-' || unicode.IsLetter(r) || unicode.IsDigit(r)) {
			return r
		}
		return -1
	}, id)
	return cutBytes(id, 64)
}

// partPath is where a download collects its bytes until the SHA-256 is
// checked: in the download folder, named after the file and its id so a
// later /get or /resume of the same file continues it and no two files
// share one.
func partPath(dir, name, id string) string {
	return filepath.Join(dir, cutBytes(name, 150)+"."+safeID(id)+".part")
}

// errNoFreeName: every candidate name in the download folder is taken.
var errNoFreeName = errors.New("no free file name in the download folder")

// place moves a finished download from part to dir under name, or
// "name (1).ext", "name (2).ext", ... when taken: it never overwrites a
// file. It returns the path used.
func place(part, dir, name string) (string, error) {
	ext := filepath.Ext(name)
	stem := strings.TrimSuffix(name, ext)
	if stem == "" { // ".bashrc"-like: the server trims leading dots, but stay safe
		stem, ext = name, ""
	}
	for i := range 1000 {
		cand := name
		if i > 0 {
			cand = fmt.Sprintf("%s (%d)%s", stem, i, ext)
		}
		dst := filepath.Join(dir, cand)
		// A hard link fails when dst exists, so nothing is overwritten
		// even if another program creates the name meanwhile.
		err := os.Link(part, dst)
		if err == nil {
			_ = os.Remove(part)
			return dst, nil
		}
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		// No hard links on this file system: rename if the name is free.
		if _, statErr := os.Lstat(dst); errors.Is(statErr, fs.ErrNotExist) {
			if err := os.Rename(part, dst); err != nil {
				return "", err
			}
			return dst, nil
		}
	}
	return "", errNoFreeName
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
