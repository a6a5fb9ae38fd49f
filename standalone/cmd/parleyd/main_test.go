package main

import (
	"errors"
	"strings"
	"testing"

	"github.com/parleychat/parley/standalone/server"
)

// parleyd refuses, before it binds anything, to expose its embedded NATS or
// its admin port beyond loopback without credentials.
func TestRefusesExposure(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-admin-addr", "0.0.0.0:7490"}, "-admin-token"},
		{[]string{"-admin-addr", ":7490"}, "-admin-token"},
		{[]string{"-nats-listen", "0.0.0.0:4222"}, "-nats-token"},
		{[]string{"-nats-listen", "192.0.2.7:4222", "-admin-addr", ""}, "-nats-token"},
	} {
		args := append([]string{"-data-dir", t.TempDir()}, tc.args...)
		err := run(args)
		if !errors.Is(err, server.ErrExposed) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("parleyd %s: %v, want a refusal naming %s", strings.Join(tc.args, " "), err, tc.want)
		}
	}
	// The environment counts as much as the flags.
	t.Setenv("PARLEY_ADMIN_ADDR", "0.0.0.0:7490")
	if err := run([]string{"-data-dir", t.TempDir()}); !errors.Is(err, server.ErrExposed) {
		t.Errorf("PARLEY_ADMIN_ADDR=0.0.0.0:7490: %v, want a refusal", err)
	}
}
