package userdirs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDownloads(t *testing.T) {
	type setup struct {
		home, config string // temporary folders
	}
	tests := []struct {
		name     string
		env      func(s setup) map[string]string
		userDirs string // content of user-dirs.dirs in the config folder ("": none)
		mkdirs   []string
		want     func(s setup) string
	}{
		{
			name: "XDG_DOWNLOAD_DIR in the environment",
			env: func(s setup) map[string]string {
				return map[string]string{"HOME": s.home, "XDG_DOWNLOAD_DIR": filepath.Join(s.home, "dl")}
			},
			userDirs: `XDG_DOWNLOAD_DIR="$HOME/other"`,
			mkdirs:   []string{"Downloads"},
			want:     func(s setup) string { return filepath.Join(s.home, "dl") },
		},
		{
			name: "XDG_DOWNLOAD_DIR in the environment, as $HOME/...",
			env: func(s setup) map[string]string {
				return map[string]string{"HOME": s.home, "XDG_DOWNLOAD_DIR": "$HOME/dl"}
			},
			want: func(s setup) string { return filepath.Join(s.home, "dl") },
		},
		{
			name: "user-dirs.dirs in XDG_CONFIG_HOME, localized, among other lines",
			env:  func(s setup) map[string]string { return map[string]string{"HOME": s.home, "XDG_CONFIG_HOME": s.config} },
			userDirs: "# This file is written by xdg-user-dirs-update\n" +
				"XDG_DESKTOP_DIR=\"$HOME/Bureau\"\n" +
				"  XDG_DOWNLOAD_DIR=\"$HOME/Téléchargements\"\n" +
				"XDG_MUSIC_DIR=\"$HOME/Musique\"\n",
			mkdirs: []string{"Downloads"},
			want:   func(s setup) string { return filepath.Join(s.home, "Téléchargements") },
		},
		{
			name:     "user-dirs.dirs in ~/.config, an absolute path with an escaped quote",
			env:      func(s setup) map[string]string { return map[string]string{"HOME": s.home} },
			userDirs: `XDG_DOWNLOAD_DIR="/ABS/my \"files\""`,
			want:     func(s setup) string { return filepath.Join(s.home, `my "files"`) },
		},
		{
			name:     "the last assignment wins",
			env:      func(s setup) map[string]string { return map[string]string{"HOME": s.home} },
			userDirs: "XDG_DOWNLOAD_DIR=\"$HOME/a\"\nXDG_DOWNLOAD_DIR=\"$HOME/b\"\n",
			want:     func(s setup) string { return filepath.Join(s.home, "b") },
		},
		{
			name:     "a relative XDG folder is skipped",
			env:      func(s setup) map[string]string { return map[string]string{"HOME": s.home, "XDG_DOWNLOAD_DIR": "dl"} },
			userDirs: `XDG_DOWNLOAD_DIR="Downloads2"`,
			mkdirs:   []string{"Downloads"},
			want:     func(s setup) string { return filepath.Join(s.home, "Downloads") },
		},
		{
			name: "an XDG folder that cannot be created is skipped",
			env: func(s setup) map[string]string {
				return map[string]string{"HOME": s.home, "XDG_DOWNLOAD_DIR": filepath.Join(s.home, "afile", "dl")}
			},
			mkdirs: []string{"Downloads"},
			want:   func(s setup) string { return filepath.Join(s.home, "Downloads") },
		},
		{
			name:   "~/Downloads",
			env:    func(s setup) map[string]string { return map[string]string{"HOME": s.home} },
			mkdirs: []string{"Downloads"},
			want:   func(s setup) string { return filepath.Join(s.home, "Downloads") },
		},
		{
			name:   "%USERPROFILE%\\Downloads without HOME",
			env:    func(s setup) map[string]string { return map[string]string{"USERPROFILE": s.home} },
			mkdirs: []string{"Downloads"},
			want:   func(s setup) string { return filepath.Join(s.home, "Downloads") },
		},
		{
			name: "no ~/Downloads: the current folder",
			env:  func(s setup) map[string]string { return map[string]string{"HOME": s.home} },
			want: func(setup) string { return "." },
		},
		{
			name: "no home at all: the current folder",
			env:  func(setup) map[string]string { return map[string]string{"XDG_DOWNLOAD_DIR": "$HOME/dl"} },
			want: func(setup) string { return "." },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := setup{home: t.TempDir(), config: t.TempDir()}
			env := tt.env(s)
			if err := os.WriteFile(filepath.Join(s.home, "afile"), nil, 0o600); err != nil {
				t.Fatal(err)
			}
			for _, d := range tt.mkdirs {
				if err := os.MkdirAll(filepath.Join(s.home, d), 0o700); err != nil {
					t.Fatal(err)
				}
			}
			if tt.userDirs != "" {
				dir := env["XDG_CONFIG_HOME"]
				if dir == "" {
					dir = filepath.Join(s.home, ".config")
				}
				content := []byte(strings.ReplaceAll(tt.userDirs, "/ABS", s.home)) // an absolute path
				if err := os.MkdirAll(dir, 0o700); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(dir, "user-dirs.dirs"), content, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			got := Downloads(func(k string) string { return env[k] })
			if want := tt.want(s); got != want {
				t.Fatalf("Downloads() = %q, want %q", got, want)
			}
			if st, err := os.Stat(got); err != nil || !st.IsDir() {
				t.Errorf("%s is not a folder: %v", got, err)
			}
		})
	}
}

func FuzzParseUserDirs(f *testing.F) {
	f.Add([]byte("# comment\nXDG_DOWNLOAD_DIR=\"$HOME/Downloads\"\n"))
	f.Add([]byte(`XDG_DOWNLOAD_DIR="/a \"b\" \\c`))
	f.Fuzz(func(t *testing.T, b []byte) {
		_ = expandHome(parseUserDirs(b, "XDG_DOWNLOAD_DIR"), "/home/u")
	})
}
