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
// NUL, COM1, COM¹, CONIN$, ... get a leading "_"). A name that ends up empty becomes
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
		// Checked after cutting: a cut can leave a device name behind
		// ("CON" followed by many spaces).
		name = "_" + name
		if len(name) > MaxBytes {
			name = strings.TrimRight(Truncate(name, MaxBytes), " .")
		}
	}
	return name
}

// reservedOnWindows reports whether name, with any extension, names a
// device on Windows rather than a file: CON, PRN, AUX, NUL, COM1-COM9,
// LPT1-LPT9, COM¹-COM³ and LPT¹-LPT³ (Windows counts the superscript
// digits as digits), CONIN$ and CONOUT$ (console handles, which behave as
// CON). Letters compare in ASCII only: "conın$" with a dotless ı is a file.
// COM0 and LPT0 are files (RtlIsDosDeviceName_U, and Go's
// filepath.IsLocal, agree).
func reservedOnWindows(name string) bool {
	base, _, _ := strings.Cut(name, ".")
	base = strings.TrimRight(base, " ")
	switch {
	case asciiFold(base, "CON"), asciiFold(base, "PRN"), asciiFold(base, "AUX"), asciiFold(base, "NUL"),
		asciiFold(base, "CONIN$"), asciiFold(base, "CONOUT$"):
		return true
	case len(base) < 4 || !asciiFold(base[:3], "COM") && !asciiFold(base[:3], "LPT"):
		return false
	}
	switch n := base[3:]; n {
	case "1", "2", "3", "4", "5", "6", "7", "8", "9", "\u00b9", "\u00b2", "\u00b3":
		return true
	}
	return false
}

// asciiFold reports whether s equals upper, an upper-case ASCII string,
// ignoring the case of ASCII letters only.
func asciiFold(s, upper string) bool {
	if len(s) != len(upper) {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		if c != upper[i] {
			return false
		}
	}
	return true
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
