// Package filename makes the names senders give files safe to show and to
// create in a receiver's download folder. The file service applies it to
// every offered name and clients apply it again before writing: nothing a
// sender names can make a receiver write outside its folder.
package filename

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxBytes bounds a file name after sanitising.
const MaxBytes = 255

// Sanitize turns what a sender calls a file into a name that is safe
// to show and to create in any download folder: the last path element
// only (both / and \ separate), no control or format characters, none of
// <>:"|?* (refused by Windows), no leading or trailing dots or spaces, at
// most MaxBytes bytes (cut at a character, keeping the extension when
// it is short), never "", "." or "..", never a Windows device name (CON,
// NUL, COM1, ... get a leading "_"). A name that ends up empty becomes
// "file".
func Sanitize(name string) string {
	name = strings.ToValidUTF8(name, "")
	if i := strings.LastIndexAny(name, `/\`); i >= 0 {
		name = name[i+1:]
	}
	name = strings.Map(func(r rune) rune {
		switch {
		case unicode.IsControl(r), unicode.Is(unicode.Cf, r), r == utf8.RuneError:
			return -1
		case strings.ContainsRune(`<>:"|?*`, r):
			return '_'
		}
		return r
	}, name)
	name = strings.Trim(name, " .")
	if len(name) > MaxBytes {
		ext := ""
		if i := strings.LastIndexByte(name, '.'); i > 0 && len(name)-i <= 16 {
			ext = name[i:]
		}
		name = Truncate(name[:len(name)-len(ext)], MaxBytes-len(ext)) + ext
		name = strings.Trim(name, " .")
	}
	if name == "" {
		return "file"
	}
	if reservedOnWindows(name) {
		name = "_" + name
	}
	return name
}

// reservedOnWindows: CON, PRN, AUX, NUL, COM1-9 and LPT1-9, with any
// extension, name devices on Windows, not files.
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

// Truncate cuts s to at most n bytes at a character boundary.
func Truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
