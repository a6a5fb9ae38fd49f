package filesvc

import (
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/parleychat/parley/libs/rpc"
	"github.com/parleychat/parley/libs/subject"
	"github.com/parleychat/parley/libs/testenv"
	"github.com/parleychat/parley/protocol/errcode"
	"github.com/parleychat/parley/protocol/parleyv1"
)

// TestSessionAliveFailsClosed: a download token is honoured only when auth
// says its session exists. When auth cannot answer (no replica, or it says
// something else) the download is refused as UNAVAILABLE, never let
// through on a session that may have ended.
func TestSessionAliveFailsClosed(t *testing.T) {
	nc := testenv.Connect(t, testenv.NATS(t))
	s := &Service{nc: nc, cfg: Config{RequestTimeout: 2 * time.Second}, log: slog.New(slog.DiscardHandler)}
	check := func() parleyv1.ErrorCode {
		err := s.sessionAlive(t.Context(), "u1", "s1")
		if err == nil {
			return parleyv1.ErrorCode_ERROR_CODE_UNSPECIFIED
		}
		return errcode.Code(err)
	}
	if got := check(); got != parleyv1.ErrorCode_ERROR_CODE_UNAVAILABLE {
		t.Fatalf("no auth replica: %v, want UNAVAILABLE", got)
	}
	// The log sees why: auth had no responders.
	if err := s.sessionAlive(t.Context(), "u1", "s1"); !errors.Is(err, nats.ErrNoResponders) || rpc.Failed(err) == nil {
		t.Fatalf("no auth replica: %v lost its cause", err)
	}
	for _, tc := range []struct {
		name  string
		reply func(m *nats.Msg)
		want  parleyv1.ErrorCode
	}{
		{"alive", func(m *nats.Msg) { _ = rpc.Respond(m, nil) }, parleyv1.ErrorCode_ERROR_CODE_UNSPECIFIED},
		{"ended", func(m *nats.Msg) {
			_ = rpc.RespondError(m, errcode.New(parleyv1.ErrorCode_ERROR_CODE_SESSION_REVOKED, "gone"))
		}, parleyv1.ErrorCode_ERROR_CODE_SESSION_REVOKED},
		{"auth overloaded", func(m *nats.Msg) {
			_ = rpc.RespondError(m, errcode.New(parleyv1.ErrorCode_ERROR_CODE_UNAVAILABLE, "busy"))
		}, parleyv1.ErrorCode_ERROR_CODE_UNAVAILABLE},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sub, err := nc.Subscribe(subject.AuthSessionCheck, tc.reply)
			if err != nil {
				t.Fatal(err)
			}
			defer sub.Unsubscribe()
			if err := nc.Flush(); err != nil {
				t.Fatal(err)
			}
			if got := check(); got != tc.want {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}
