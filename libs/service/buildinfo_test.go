package service

import (
	"errors"
	"flag"
	"io"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/parleychat/parley/libs/version"
)

func TestParseVersion(t *testing.T) {
	tests := []struct {
		args []string
		want bool
	}{
		{[]string{"-version"}, true},
		{[]string{"--version"}, true},
		{[]string{"-log-level", "debug", "-version"}, true},
		{[]string{"-insecure", "-version"}, true},
		{[]string{"-version=false"}, false},
		{[]string{"-nats-url", "-version"}, false}, // a (strange) URL
		{[]string{"--", "-version"}, false},
		{[]string{"serve", "-version"}, false}, // after the first argument
		{[]string{"-no-such-flag", "-version"}, false},
		{nil, false},
	}
	for _, tt := range tests {
		fs := flag.NewFlagSet("gateway", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		var c Common
		RegisterCommon(fs, &c, "127.0.0.1:0")
		fs.Bool("insecure", false, "")
		var out strings.Builder
		err := parseVersionTo(fs, tt.args, &out, func(fs *flag.FlagSet, args []string) error { return fs.Parse(args) })
		if got := errors.Is(err, flag.ErrHelp); got != tt.want {
			t.Errorf("Parse(%q) = %v; want -version seen: %v", tt.args, err, tt.want)
		}
		want := ""
		if tt.want {
			want = version.Get().String("gateway") + "\n"
		}
		if out.String() != want {
			t.Errorf("Parse(%q) printed %q, want %q", tt.args, out.String(), want)
		}
	}
}

// A deployment may well carry PARLEY_VERSION (the release it deploys):
// it must not fail the start, nor stop it as -version would.
func TestParseIgnoresVersionEnv(t *testing.T) {
	for _, v := range []string{"0.4.0", "true"} {
		t.Setenv("PARLEY_VERSION", v)
		fs := flag.NewFlagSet("auth", flag.ContinueOnError)
		var c Common
		RegisterCommon(fs, &c, "127.0.0.1:0")
		if err := Parse(fs, []string{"-log-level", "warn"}); err != nil {
			t.Fatalf("PARLEY_VERSION=%s: Parse = %v", v, err)
		}
		if c.LogLevel != "warn" {
			t.Errorf("PARLEY_VERSION=%s: -log-level = %q", v, c.LogLevel)
		}
	}
}

func TestRegistryHasBuildInfo(t *testing.T) {
	i := version.Get()
	want := `# HELP parley_build_info Which build of Parley is running: version, git commit and Go version; always 1.
# TYPE parley_build_info gauge
parley_build_info{commit="` + i.Commit + `",goversion="` + i.GoVersion + `",version="` + i.Version + `"} 1
`
	if err := testutil.GatherAndCompare(NewRegistry(), strings.NewReader(want), "parley_build_info"); err != nil {
		t.Error(err)
	}
}
