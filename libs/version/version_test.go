package version

import (
	"runtime"
	"runtime/debug"
	"testing"
)

func TestResolve(t *testing.T) {
	vcs := func(rev, modified string) *debug.BuildInfo {
		bi := &debug.BuildInfo{Main: debug.Module{Path: "github.com/parleychat/parley/gateway", Version: "(devel)"}}
		bi.Settings = append(bi.Settings, debug.BuildSetting{Key: "vcs.revision", Value: rev})
		if modified != "" {
			bi.Settings = append(bi.Settings, debug.BuildSetting{Key: "vcs.modified", Value: modified})
		}
		return bi
	}
	tests := []struct {
		name            string
		version, commit string
		bi              *debug.BuildInfo
		want            Info
	}{
		{"ldflags win", "0.4.0", "abc1234", vcs("0123456789abcdef0123", "true"), Info{"0.4.0", "abc1234", runtime.Version()}},
		{"vcs stamp", "", "", vcs("0123456789abcdef0123", "false"), Info{"dev", "0123456789ab", runtime.Version()}},
		{"vcs stamp, modified tree", "", "", vcs("0123456789abcdef0123", "true"), Info{"dev", "0123456789ab-dirty", runtime.Version()}},
		{"go install at a version", "", "", &debug.BuildInfo{Main: debug.Module{Version: "v0.4.0"}}, Info{"v0.4.0", "unknown", runtime.Version()}},
		{"no build info", "", "", nil, Info{"dev", "unknown", runtime.Version()}},
		{"version only", "0.5.0-rc.1", "", nil, Info{"0.5.0-rc.1", "unknown", runtime.Version()}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := resolve(tt.version, tt.commit, tt.bi); got != tt.want {
				t.Errorf("resolve = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestString(t *testing.T) {
	got := Info{"0.4.0", "abc1234", "go1.26.8"}.String("gateway")
	if want := "gateway 0.4.0 (commit abc1234, go1.26.8)"; got != want {
		t.Errorf("String = %q, want %q", got, want)
	}
}
