package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/parleychat/parley/libs/testenv"
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

// TestBadConfigStartsNothing: parleyd checks every flag before it starts
// anything: with a bad value anywhere it reports all the problems at once,
// each named by its flag, and has opened no port and created no directory.
func TestBadConfigStartsNothing(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"gateway", []string{"-idle-timeout", "0"}, []string{"-idle-timeout"}},
		{"gateway certificate", []string{"-tls-cert", "/nonexistent.pem", "-tls-key", "/nonexistent.key"}, []string{"-tls-cert"}},
		{"storage", []string{"-minio-endpoint", "http://minio:9000"}, []string{"-minio-endpoint", "-minio-access-key"}},
		{"everywhere", []string{"-session-policy", "some", "-gateway-ttl", "0", "-msg-retention", "-1s", "-file-kv-replicas", "0",
			"-nats-listen", "127.0.0.1", "-log-level", "loud", "-admin-addr", "0.0.0.0:7490", "-max-conns", "-1"},
			[]string{"-session-policy", "-gateway-ttl", "-msg-retention", "-file-kv-replicas", "-nats-listen", "-log-level", "-admin-token", "-max-conns"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dataDir := filepath.Join(t.TempDir(), "parley-data")
			tcp := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
			http := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
			admin := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
			args := append([]string{"-data-dir", dataDir, "-tcp-addr", tcp, "-http-addr", http, "-admin-addr", admin}, tc.args...)
			err := run(args)
			if err == nil {
				t.Fatal("parleyd started")
			}
			for _, want := range tc.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("%q does not mention %s", err, want)
				}
			}
			if _, err := os.Stat(dataDir); !os.IsNotExist(err) {
				t.Errorf("the data directory exists (stat: %v)", err)
			}
			for _, addr := range []string{tcp, http, admin} {
				if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
					c.Close()
					t.Errorf("something listens on %s", addr)
				}
			}
		})
	}
}
