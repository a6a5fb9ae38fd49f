package main

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/parleychat/parley/libs/rpc"
	"github.com/parleychat/parley/libs/subject"
	"github.com/parleychat/parley/libs/testenv"
	"github.com/parleychat/parley/protocol/parleyv1"
)

// A smoke test of the binary's wiring: flags, admin port, serving, and
// graceful shutdown on the signal context.
func TestRunServesAndShutsDown(t *testing.T) {
	ns := testenv.NATS(t)
	admin := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-nats-url", ns.ClientURL(), "-admin-addr", admin, "-log-level", "error",
			"-max-message-chars", "10"})
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

	nc := testenv.Connect(t, ns)
	h := nats.Header{}
	h.Set(subject.HeaderUserID, "usmoke")
	h.Set(subject.HeaderUsername, "smoke")
	var reply parleyv1.SendReply
	if err := rpc.Request(context.Background(), nc, subject.MsgSend, h,
		&parleyv1.SendRequest{Conversation: "room.public", Text: "smoke", ClientKey: "k"}, &reply); err != nil || reply.Message.GetSeq() != 1 {
		t.Fatalf("send through the binary: %v %v", &reply, err)
	}
	// The flag reached the service.
	err := rpc.Request(context.Background(), nc, subject.MsgSend, h,
		&parleyv1.SendRequest{Conversation: "room.public", Text: "eleven char", ClientKey: "k2"}, nil)
	if !strings.Contains(errString(err), "MESSAGE_TOO_LARGE") {
		t.Errorf("11 characters with -max-message-chars 10: %v", err)
	}
	// A request is counted just after its reply is sent: look again
	// until it shows.
	for _, want := range []string{`parley_messaging_messages_stored_total{kind="room"} 1`, "parley_rpc_requests_total"} {
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

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
