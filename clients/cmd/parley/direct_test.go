package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/parleychat/parley/clients/internal/parleytest"
)

// TestDirectPolicyFlag: --direct takes ask, friends or never, on the TUI
// and on `parley direct` alike (and PARLEY_DIRECT for the TUI).
func TestDirectPolicyFlag(t *testing.T) {
	cfg := t.TempDir()
	tests := []struct {
		env    map[string]string
		args   []string
		stderr string
	}{
		{nil, []string{"tui", "--direct", "sometimes"}, `--direct must be ask, friends or never, not "sometimes"`},
		{map[string]string{"PARLEY_DIRECT": "always"}, []string{"tui"}, `--direct must be ask, friends or never, not "always"`},
		{nil, []string{"--config-dir", cfg, "direct", "@bob", "--direct", "maybe"}, `--direct must be ask, friends or never, not "maybe"`},
		{nil, []string{"--config-dir", cfg, "direct", "--accept", "--direct", "never"}, "--accept takes an offer: not with --direct never"},
	}
	for _, tt := range tests {
		code, _, stderr := runCLI(t, tt.env, "", tt.args...)
		if code != exitUsage || !strings.Contains(stderr, tt.stderr) {
			t.Errorf("parley %q: exit %d, stderr %q; want %d and %q", tt.args, code, stderr, exitUsage, tt.stderr)
		}
	}
	// A valid policy gets past the flags (to the missing session).
	code, _, stderr := runCLI(t, nil, "", "--config-dir", cfg, "direct", "@bob", "--direct", "Friends")
	if code != exitError || !strings.Contains(stderr, "not logged in") {
		t.Errorf("--direct Friends: exit %d, stderr %q", code, stderr)
	}
}

// TestNATCommand: `parley nat` asks the server where its rendezvous is and
// classifies this machine (no NAT on loopback), with the advice that
// natcheck gives.
func TestNATCommand(t *testing.T) {
	p := parleytest.Start(t, nil)
	code, out, stderr := runCLI(t, nil, "", "--server", p.TCPAddr(), "nat")
	if code != exitOK {
		t.Fatalf("parley nat: exit %d, stderr %q", code, stderr)
	}
	for _, want := range []string{"NAT: open internet\n", "mapping: endpoint-independent\n", "public address: 127.0.0.1:",
		"direct sessions: direct with almost every peer\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("parley nat printed %q, lacking %q", out, want)
		}
	}
	code, out, stderr = runCLI(t, nil, "", "--server", p.TCPAddr(), "nat", "--json")
	var v map[string]any
	if code != exitOK || json.Unmarshal([]byte(out), &v) != nil {
		t.Fatalf("parley nat --json: exit %d, %q, stderr %q", code, out, stderr)
	}
	if v["name"] != "open internet" || v["advice"] != "direct with almost every peer" || v["no_nat"] != true {
		t.Errorf("parley nat --json: %v", v)
	}
}
