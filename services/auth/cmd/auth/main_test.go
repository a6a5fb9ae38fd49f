package main

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/parleychat/parley/libs/proto/internalv1"
	"github.com/parleychat/parley/libs/rpc"
	"github.com/parleychat/parley/libs/subject"
	"github.com/parleychat/parley/libs/testenv"
	"github.com/parleychat/parley/protocol/parleyv1"
)

// A smoke test of the binary's wiring: flags, admin port,
// serving, and graceful shutdown on the signal context.
func TestRunServesAndShutsDown(t *testing.T) {
	ns := testenv.NATS(t)
	admin := "127.0.0.1:" + itoa(testenv.FreePort(t))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-nats-url", ns.ClientURL(), "-admin-addr", admin,
			"-argon2-memory", "64", "-argon2-time", "1", "-log-level", "error"})
	}()
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + admin + path)
		if err != nil {
			return 0, ""
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	testenv.Eventually(t, 10*time.Second, "/readyz 200", func() bool { code, _ := get("/readyz"); return code == 200 })

	var reply internalv1.AuthReply
	err := rpc.Request(context.Background(), testenv.Connect(t, ns), subject.AuthRegister, nil,
		&parleyv1.RegisterRequest{Username: "smoke", Password: "smoke test password"}, &reply)
	if err != nil || reply.Session.GetToken() == "" {
		t.Fatalf("register through the binary: %v %v", &reply, err)
	}
	// The request is counted just after its reply is sent: look again
	// until it shows.
	for _, want := range []string{`parley_auth_registrations_total{result="ok"} 1`, "parley_auth_password_hash_seconds", "parley_rpc_requests_total"} {
		testenv.Eventually(t, 5*time.Second, "/metrics to show "+want, func() bool {
			_, metrics := get("/metrics")
			return strings.Contains(metrics, want)
		})
	}

	cancel() // what SIGTERM does
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("run did not return after the signal")
	}
}

func TestRunRejectsBadFlags(t *testing.T) {
	if err := run(context.Background(), []string{"-session-policy", "sometimes", "-admin-addr", ""}); err == nil {
		t.Fatal("bad -session-policy accepted")
	}
	// Draining must end before the process gives up on its shutdown.
	if err := run(context.Background(), []string{"-drain-timeout", "20s", "-shutdown-timeout", "10s", "-admin-addr", ""}); err == nil {
		t.Fatal("-drain-timeout above -shutdown-timeout accepted")
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
