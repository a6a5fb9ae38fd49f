package authsvc_test

import (
	"testing"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"

	"github.com/parleychat/parley/libs/proto/internalv1"
	"github.com/parleychat/parley/libs/subject"
	"github.com/parleychat/parley/libs/testenv"
	"github.com/parleychat/parley/protocol/parleyv1"
	"github.com/parleychat/parley/services/auth/authsvc"
)

// watchKicks subscribes to the user's kick subject the way a gateway
// serving the user does.
func watchKicks(t *testing.T, nc *nats.Conn, userID string) *nats.Subscription {
	t.Helper()
	sub, err := nc.SubscribeSync(subject.SessionKick(userID))
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return sub
}

// noKickQueued fails if a kick is waiting on sub. Auth publishes a kick
// before it replies, on the same connection, and the test requests on the
// connection it subscribed with: once the reply is in, any kick is already
// queued, so this needs no wait.
func noKickQueued(t *testing.T, sub *nats.Subscription) {
	t.Helper()
	if n, _, err := sub.Pending(); err != nil || n != 0 {
		m, _ := sub.NextMsg(0)
		var k internalv1.SessionKick
		if m != nil {
			_ = proto.Unmarshal(m.Data, &k)
		}
		t.Fatalf("unexpected kick (%d queued, %v): %v", n, err, &k)
	}
}

// headerFrom is the gateway's header for a request from connection conn on
// gateway gw; empty values are left out (a gateway that predates them).
func headerFrom(gw, conn string) nats.Header {
	h := nats.Header{}
	h.Set(subject.HeaderRemoteAddr, clientAddr)
	if gw != "" {
		h.Set(subject.HeaderGatewayID, gw)
	}
	if conn != "" {
		h.Set(subject.HeaderConnID, conn)
	}
	return h
}

// Logout ends the session on every connection but the one that logged
// out, whichever gateway holds them, and only that session.
func TestLogoutKicksTheSessionEverywhere(t *testing.T) {
	ns := testenv.NATS(t)
	startAuth(t, ns.ClientURL(), fastConfig()) // policy multi
	nc := testenv.Connect(t, ns)
	laptop := mustRegister(t, nc, "wendy", "wendy's password")
	phone, err := login(nc, clientAddr, "wendy", "wendy's password")
	if err != nil {
		t.Fatal(err)
	}
	kicks := watchKicks(t, nc, laptop.UserId)

	if err := logoutWith(nc, headerFrom("gw-2", "c7"), laptop.UserId, laptop.SessionId); err != nil {
		t.Fatalf("logout: %v", err)
	}
	k := nextKick(t, kicks)
	want := &internalv1.SessionKick{UserId: laptop.UserId, SessionId: laptop.SessionId,
		Reason: parleyv1.ErrorCode_ERROR_CODE_SESSION_REVOKED, Message: "this session was logged out",
		ExceptGatewayId: "gw-2", ExceptConnId: "c7"}
	if !proto.Equal(k, want) {
		t.Fatalf("kick = %v, want %v", k, want)
	}
	noKickQueued(t, kicks) // the phone's session is not touched
	if _, err := resume(nc, phone.Token); err != nil {
		t.Fatalf("the other session: %v", err)
	}
	_, err = resume(nc, laptop.Token)
	wantCode(t, err, parleyv1.ErrorCode_ERROR_CODE_SESSION_REVOKED)

	// A retry of a logout whose reply was lost kicks again: a connection
	// that missed the first kick does not keep the session.
	if err := logoutWith(nc, headerFrom("gw-2", "c7"), laptop.UserId, laptop.SessionId); err != nil {
		t.Fatalf("second logout: %v", err)
	}
	if k := nextKick(t, kicks); k.SessionId != laptop.SessionId || k.ExceptConnId != "c7" {
		t.Fatalf("second kick = %v", k)
	}
	// Without the connection's name nothing is spared.
	if err := logoutWith(nc, headerFrom("", ""), phone.UserId, phone.SessionId); err != nil {
		t.Fatal(err)
	}
	if k := nextKick(t, kicks); k.SessionId != phone.SessionId || k.ExceptGatewayId != "" || k.ExceptConnId != "" {
		t.Fatalf("kick without a named connection = %v", k)
	}

	// Another user's session: refused, nothing kicked.
	xavier := mustRegister(t, nc, "xavier", "xavier's password")
	xkicks := watchKicks(t, nc, xavier.UserId)
	wantCode(t, logout(nc, laptop.UserId, xavier.SessionId), parleyv1.ErrorCode_ERROR_CODE_PERMISSION_DENIED)
	noKickQueued(t, xkicks)
	noKickQueued(t, kicks)
	if _, err := resume(nc, xavier.Token); err != nil {
		t.Fatalf("xavier's session: %v", err)
	}
}

// Under takeover and reject a session lives on one connection: resuming it
// ends its other connections (a client that reconnected while its old
// connection lingers, or a second device holding a copy of the token).
// Under multi connections share a session and a resume ends nothing.
func TestResumeEndsTheSessionsOtherConnections(t *testing.T) {
	for _, policy := range []string{authsvc.PolicyMulti, authsvc.PolicyTakeover, authsvc.PolicyReject} {
		t.Run(policy, func(t *testing.T) {
			ns := testenv.NATS(t)
			cfg := fastConfig()
			cfg.SessionPolicy = policy
			startAuth(t, ns.ClientURL(), cfg)
			nc := testenv.Connect(t, ns)
			s := mustRegister(t, nc, "yara", "yara's password")
			if policy == authsvc.PolicyReject {
				// The session's first connection is online.
				startStandInPresence(t, testenv.Connect(t, ns)).set(s.UserId, s.SessionId)
			}
			kicks := watchKicks(t, nc, s.UserId)

			// A second connection (gateway gw-2, connection c9) resumes it.
			re, err := resumeWith(nc, headerFrom("gw-2", "c9"), s.Token)
			if err != nil {
				t.Fatalf("resume: %v", err)
			}
			if policy == authsvc.PolicyMulti {
				noKickQueued(t, kicks)
			} else {
				k := nextKick(t, kicks)
				want := &internalv1.SessionKick{UserId: s.UserId, SessionId: s.SessionId,
					Reason:  parleyv1.ErrorCode_ERROR_CODE_LOGGED_IN_ELSEWHERE,
					Message: "this session was resumed on another connection", ExceptGatewayId: "gw-2", ExceptConnId: "c9"}
				if !proto.Equal(k, want) {
					t.Fatalf("kick = %v, want %v", k, want)
				}
				noKickQueued(t, kicks)
			}
			// The session goes on with the fresh token.
			if _, err := resumeWith(nc, headerFrom("gw-2", "c9"), re.Token); err != nil {
				t.Fatalf("resume again: %v", err)
			}
			// A gateway that does not name the connection: nothing is
			// ended, since the kick could end the resuming connection.
			for sub := kicks; ; {
				if n, _, _ := sub.Pending(); n == 0 {
					break
				}
				_, _ = sub.NextMsg(0)
			}
			if _, err := resumeWith(nc, headerFrom("gw-2", ""), re.Token); err != nil {
				t.Fatalf("resume from an older gateway: %v", err)
			}
			noKickQueued(t, kicks)
		})
	}
}
