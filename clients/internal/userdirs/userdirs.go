// Package userdirs finds the user's standard folders as desktops define
// them: today the download folder, where the terminal client saves
// received files unless told otherwise.
package userdirs

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"strings"
)

// Downloads returns the folder downloads go to by default, the first of:
//
//  1. $XDG_DOWNLOAD_DIR;
//  2. XDG_DOWNLOAD_DIR as set in $XDG_CONFIG_HOME/user-dirs.dirs (default
//     ~/.config/user-dirs.dirs), the file desktops keep it in;
//  3. ~/Downloads, if it exists;
//  4. "." (the current folder), the last resort.
//
// An XDG folder is created (mode 0700) when missing, as xdg-user-dirs
// would; one that is relative or cannot be created is skipped. getenv
// reads the environment; home is $HOME, or %USERPROFILE% on Windows.
func Downloads(getenv func(string) string) string {
	home := getenv("HOME")
	if home == "" {
		home = getenv("USERPROFILE")
	}
	if d := expandHome(getenv("XDG_DOWNLOAD_DIR"), home); d != "" && ensureDir(d) {
		return d
	}
	if d := fromUserDirs(getenv("XDG_CONFIG_HOME"), home); d != "" && ensureDir(d) {
		return d
	}
	if home != "" {
		d := filepath.Join(home, "Downloads")
		if st, err := os.Stat(d); err == nil && st.IsDir() {
			return d
		}
	}
	return "."
}

// expandHome turns "$HOME/x" or "${HOME}/x" into an absolute path; an
// absolute path stays as it is; anything else (relative, or $HOME without
// a home) gives "".
func expandHome(p, home string) string {
	for _, pre := range []string{"$HOME", "${HOME}"} {
		if rest, ok := strings.CutPrefix(p, pre); ok && (rest == "" || rest[0] == '/') {
			if home == "" {
				return ""
			}
			return filepath.Join(home, rest)
		}
	}
	if !filepath.IsAbs(p) {
		return ""
	}
	return filepath.Clean(p)
}

func ensureDir(d string) bool {
	if err := os.MkdirAll(d, 0o700); err != nil {
		return false
	}
	st, err := os.Stat(d)
	return err == nil && st.IsDir()
}

// fromUserDirs reads XDG_DOWNLOAD_DIR from user-dirs.dirs in configHome
// (default home/.config); "" when the file or the line is missing.
func fromUserDirs(configHome, home string) string {
	if configHome == "" {
		if home == "" {
			return ""
		}
		configHome = filepath.Join(home, ".config")
	}
	b, err := os.ReadFile(filepath.Join(configHome, "user-dirs.dirs"))
	if err != nil {
		return ""
	}
	return expandHome(parseUserDirs(b, "XDG_DOWNLOAD_DIR"), home)
}

// parseUserDirs returns key's value in a user-dirs.dirs file: lines of
// the form KEY="VALUE" in shell syntax, # comments, the value $HOME/...
// or an absolute path with \ escaping the next character (user-dirs.dirs(5);
// read as GLib reads it). The last assignment wins.
func parseUserDirs(b []byte, key string) string {
	var val string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || strings.TrimSpace(k) != key {
			continue
		}
		v = strings.TrimSpace(v)
		if len(v) < 2 || v[0] != '"' {
			continue
		}
		var out strings.Builder
		closed := false
		for i := 1; i < len(v); i++ {
			switch c := v[i]; {
			case c == '\\' && i+1 < len(v):
				i++
				out.WriteByte(v[i])
			case c == '"':
				closed = true
			default:
				out.WriteByte(c)
			}
			if closed {
				break
			}
		}
		if closed {
			val = out.String()
		}
	}
	return val
}
