// Package version says which build of Parley a binary is: its version, the
// git commit it was built from and the Go toolchain. Every binary prints it
// for -version and exports it as the parley_build_info gauge.
//
// Release builds set Version and Commit at link time (the Makefile and the
// Dockerfile do):
//
//	go build -ldflags "-X github.com/parleychat/parley/libs/version.Version=0.4.0 \
//	  -X github.com/parleychat/parley/libs/version.Commit=abc1234" ./cmd/gateway
//
// Without them, a build from a git checkout (go build with -buildvcs, the
// default outside this repository's GOFLAGS) reports the commit Go stamped
// into the binary, and `go install …@v0.4.0` the module version; anything
// else is "dev" at commit "unknown".
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
)

// Set with -ldflags -X at link time; empty means "work it out from the
// build information".
var (
	Version string
	Commit  string
)

// Info is one binary's build.
type Info struct {
	Version   string // "0.4.0", "v0.4.0-3-gabc1234-dirty" (git describe) or "dev"
	Commit    string // the git commit (abbreviated), "-dirty" appended when the tree was modified; or "unknown"
	GoVersion string // runtime.Version(): "go1.26.8"
}

// Get returns the running binary's build.
func Get() Info {
	bi, _ := debug.ReadBuildInfo()
	return resolve(Version, Commit, bi)
}

// resolve prefers the link-time values and falls back on what the Go
// toolchain recorded in bi (nil when the binary has no build information).
func resolve(version, commit string, bi *debug.BuildInfo) Info {
	info := Info{Version: version, Commit: commit, GoVersion: runtime.Version()}
	if bi != nil {
		if info.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			info.Version = bi.Main.Version
		}
		if info.Commit == "" {
			var rev, modified string
			for _, s := range bi.Settings {
				switch s.Key {
				case "vcs.revision":
					rev = s.Value
				case "vcs.modified":
					modified = s.Value
				}
			}
			if rev != "" {
				info.Commit = rev[:min(len(rev), 12)]
				if modified == "true" {
					info.Commit += "-dirty"
				}
			}
		}
	}
	if info.Version == "" {
		info.Version = "dev"
	}
	if info.Commit == "" {
		info.Commit = "unknown"
	}
	return info
}

// String is the -version line: "gateway 0.4.0 (commit abc1234, go1.26.8)".
func (i Info) String(name string) string {
	return fmt.Sprintf("%s %s (commit %s, %s)", name, strings.TrimSpace(i.Version), i.Commit, i.GoVersion)
}
