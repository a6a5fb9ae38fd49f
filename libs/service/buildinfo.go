package service

import (
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/parleychat/parley/libs/version"
)

// versionFlag is -version: Parse defines it on every binary's flag set.
// It reads only the command line: the value given to it (by the
// environment too, PARLEY_VERSION, as ff sets every flag) is ignored, so
// a deployment's PARLEY_VERSION=0.4.0 neither fails nor stops a start.
type versionFlag struct{}

func (versionFlag) String() string   { return "false" }
func (versionFlag) Set(string) error { return nil }
func (versionFlag) IsBoolFlag() bool { return true }

// parseVersion reports whether the command line asks for -version: it
// parses args with the flags of fs (same names, same bool-ness) into a
// throwaway set, so "-nats-url -version" is still a URL, and stops where
// fs.Parse would.
func parseVersion(fs *flag.FlagSet, args []string) bool {
	scratch := flag.NewFlagSet(fs.Name(), flag.ContinueOnError)
	scratch.SetOutput(io.Discard)
	var asked bool
	fs.VisitAll(func(f *flag.Flag) {
		if f.Name == "version" {
			scratch.BoolVar(&asked, "version", false, "")
			return
		}
		scratch.Var(sink{isBool: isBoolFlag(f.Value)}, f.Name, "")
	})
	if err := scratch.Parse(args); err != nil {
		return false // fs.Parse reports it
	}
	return asked
}

// sink accepts any value: parseVersion looks only at -version.
type sink struct{ isBool bool }

func (sink) String() string     { return "" }
func (sink) Set(string) error   { return nil }
func (s sink) IsBoolFlag() bool { return s.isBool }

func isBoolFlag(v flag.Value) bool {
	b, ok := v.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// parseWithVersion is Parse: with -version on the command line it prints
// the build ("gateway 0.4.0 (commit abc1234, go1.26.8)") to stdout and
// returns flag.ErrHelp, which Exit turns into status 0.
func parseWithVersion(fs *flag.FlagSet, args []string, parse func(*flag.FlagSet, []string) error) error {
	return parseVersionTo(fs, args, os.Stdout, parse)
}

// parseVersionTo is parseWithVersion printing to stdout.
func parseVersionTo(fs *flag.FlagSet, args []string, stdout io.Writer, parse func(*flag.FlagSet, []string) error) error {
	if fs.Lookup("version") == nil {
		fs.Var(versionFlag{}, "version", "print the version, git commit and Go version, then exit")
	}
	if parseVersion(fs, args) {
		fmt.Fprintln(stdout, version.Get().String(fs.Name()))
		return flag.ErrHelp
	}
	return parse(fs, args)
}

// buildInfo returns the parley_build_info gauge: always 1, its labels say
// which build is running (version, commit, goversion), so a dashboard can
// join it to any other series of the same instance.
func buildInfo() prometheus.Collector {
	i := version.Get()
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "parley_build_info",
		Help: "Which build of Parley is running: version, git commit and Go version; always 1.",
		ConstLabels: prometheus.Labels{
			"version":   i.Version,
			"commit":    i.Commit,
			"goversion": i.GoVersion,
		},
	})
	g.Set(1)
	return g
}
