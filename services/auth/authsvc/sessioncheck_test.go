package authsvc_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/parleychat/parley/libs/proto/internalv1"
	"github.com/parleychat/parley/libs/rpc"
	"github.com/parleychat/parley/libs/subject"
	"github.com/parleychat/parley/libs/testenv"
	"github.com/parleychat/parley/protocol/parleyv1"
	"github.com/parleychat/parley/services/auth/authsvc"
)

// sessionCheck is exactly what the file service does before serving a
// download URL.
func sessionCheck(nc *nats.Conn, userID, sessionID string) error {
	return rpc.Request(context.Background(), nc, subject.AuthSessionCheck, nil,
		&internalv1.SessionCheckRequest{UserId: userID, SessionId: sessionID}, nil)
}

func TestSessionCheck(t *testing.T) {
	ns := testenv.NATS(t)
	clk := newClock()
	cfg := fastConfig()
	cfg.TokenTTL = time.Hour
	cfg.SessionPolicy = authsvc.PolicyTakeover
	startAuthClock(t, ns.ClientURL(), cfg, clk.Now)
	nc := testenv.Connect(t, ns)
	uma := mustRegister(t, nc, "uma", "uma's password")
	victor := mustRegister(t, nc, "victor", "victor's password")

	if err := sessionCheck(nc, uma.UserId, uma.SessionId); err != nil {
		t.Fatalf("live session: %v", err)
	}
	// The token's expiry does not end the session: a connection
	// authenticated with it keeps working, and so do its download URLs.
	clk.Advance(2 * time.Hour)
	if err := sessionCheck(nc, uma.UserId, uma.SessionId); err != nil {
		t.Fatalf("session whose token expired: %v", err)
	}

	for name, tc := range map[string]struct {
		uid, sid string
		code     parleyv1.ErrorCode
	}{
		"another user's session": {victor.UserId, uma.SessionId, parleyv1.ErrorCode_ERROR_CODE_SESSION_REVOKED},
		"unknown session":        {uma.UserId, "snosuchsession", parleyv1.ErrorCode_ERROR_CODE_SESSION_REVOKED},
		"not an id":              {uma.UserId, "s.*>", parleyv1.ErrorCode_ERROR_CODE_SESSION_REVOKED},
		"no user":                {"", uma.SessionId, parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT},
		"no session":             {uma.UserId, "", parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT},
	} {
		t.Run(name, func(t *testing.T) {
			wantCode(t, sessionCheck(nc, tc.uid, tc.sid), tc.code)
		})
	}

	// Taken over: a new login ends the old session.
	if _, err := login(nc, clientAddr, "uma", "uma's password"); err != nil {
		t.Fatal(err)
	}
	wantCode(t, sessionCheck(nc, uma.UserId, uma.SessionId), parleyv1.ErrorCode_ERROR_CODE_SESSION_REVOKED)
	// Logged out.
	if err := logout(nc, victor.UserId, victor.SessionId); err != nil {
		t.Fatal(err)
	}
	wantCode(t, sessionCheck(nc, victor.UserId, victor.SessionId), parleyv1.ErrorCode_ERROR_CODE_SESSION_REVOKED)
}
