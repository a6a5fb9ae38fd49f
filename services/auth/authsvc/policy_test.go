package authsvc_test

import (
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"

	"github.com/parleychat/parley/libs/proto/internalv1"
	"github.com/parleychat/parley/libs/rpc"
	"github.com/parleychat/parley/libs/subject"
	"github.com/parleychat/parley/libs/testenv"
	"github.com/parleychat/parley/protocol/parleyv1"
	"github.com/parleychat/parley/services/auth/authsvc"
)

func TestTakeoverKicksOlderSession(t *testing.T) {
	ns := testenv.NATS(t)
	cfg := fastConfig()
	cfg.SessionPolicy = authsvc.PolicyTakeover
	// Two replicas: the kick must not depend on which one served what.
	startAuth(t, ns.ClientURL(), cfg)
	startAuth(t, ns.ClientURL(), cfg)
	nc := testenv.Connect(t, ns)

	first := mustRegister(t, nc, "grace", "grace's password")
	// What a gateway serving grace subscribes to.
	kicks, err := nc.SubscribeSync(subject.SessionKick(first.UserId))
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}

	second, err := login(nc, clientAddr, "grace", "grace's password")
	if err != nil {
		t.Fatalf("second login: %v", err)
	}
	kick := nextKick(t, kicks)
	if kick.UserId != first.UserId || kick.SessionId != first.SessionId ||
		kick.Reason != parleyv1.ErrorCode_ERROR_CODE_LOGGED_IN_ELSEWHERE || kick.Message != "logged in elsewhere" {
		t.Fatalf("kick = %v, want the first session kicked as LOGGED_IN_ELSEWHERE", kick)
	}
	_, err = resume(nc, first.Token)
	wantCode(t, err, parleyv1.ErrorCode_ERROR_CODE_SESSION_REVOKED)

	// Resuming the current session ends no other session, only the
	// session's own other connections (sparing the resuming one).
	if _, err := resume(nc, second.Token); err != nil {
		t.Fatalf("resume current session: %v", err)
	}
	if k := nextKick(t, kicks); k.SessionId != second.SessionId || k.ExceptConnId != testConn {
		t.Fatalf("kick after resuming the live session = %v, want its other connections", k)
	}
	noKickQueued(t, kicks)

	// Concurrent logins: exactly one session survives. Resuming would
	// itself take over, so count what gateways are told instead: every
	// session but one is kicked, and the one not kicked still works.
	var wg sync.WaitGroup
	sessions := make([]*parleyv1.Session, 4)
	for i := range sessions {
		wg.Go(func() {
			s, err := login(nc, clientAddr, "grace", "grace's password")
			if err != nil {
				t.Errorf("concurrent login: %v", err)
			}
			sessions[i] = s
		})
	}
	wg.Wait()
	kicked := map[string]bool{}
	for len(kicked) < len(sessions) {
		kicked[nextKick(t, kicks).SessionId] = true
	}
	if m, err := kicks.NextMsg(300 * time.Millisecond); err == nil {
		var k internalv1.SessionKick
		_ = proto.Unmarshal(m.Data, &k)
		if !kicked[k.SessionId] {
			t.Fatalf("a fifth session was kicked: %v", &k)
		}
	}
	var survivors []*parleyv1.Session
	for _, s := range append(sessions, second) {
		if s != nil && !kicked[s.SessionId] {
			survivors = append(survivors, s)
		}
	}
	if !kicked[second.SessionId] || len(survivors) != 1 {
		t.Fatalf("kicked %v; want the earlier session and all but one concurrent login", kicked)
	}
	if _, err := resume(nc, survivors[0].Token); err != nil {
		t.Fatalf("the surviving session: %v", err)
	}
}

func nextKick(t *testing.T, sub *nats.Subscription) *internalv1.SessionKick {
	t.Helper()
	m, err := sub.NextMsg(5 * time.Second)
	if err != nil {
		t.Fatalf("no kick published: %v", err)
	}
	var k internalv1.SessionKick
	if err := proto.Unmarshal(m.Data, &k); err != nil {
		t.Fatal(err)
	}
	return &k
}

// standInPresence answers subject.PresenceUser the way the presence service
// does. It is a stand-in, not the real service: services may not import each
// other, and this test is about what auth does with the answer.
type standInPresence struct {
	mu     sync.Mutex // guards online
	online map[string][]string
	sub    *nats.Subscription
}

func startStandInPresence(t *testing.T, nc *nats.Conn) *standInPresence {
	t.Helper()
	p := &standInPresence{online: map[string][]string{}}
	sub, err := nc.Subscribe(subject.PresenceUser, func(m *nats.Msg) {
		var req internalv1.UserPresenceRequest
		if err := proto.Unmarshal(m.Data, &req); err != nil {
			_ = rpc.RespondError(m, err)
			return
		}
		p.mu.Lock()
		ids := p.online[req.UserId]
		p.mu.Unlock()
		_ = rpc.Respond(m, &internalv1.UserPresenceReply{SessionIds: ids})
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	p.sub = sub
	return p
}

func (p *standInPresence) set(userID string, sessionIDs ...string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.online[userID] = sessionIDs
}

func TestRejectPolicy(t *testing.T) {
	ns := testenv.NATS(t)
	cfg := fastConfig()
	cfg.SessionPolicy = authsvc.PolicyReject
	cfg.PresenceTimeout = 300 * time.Millisecond
	startAuth(t, ns.ClientURL(), cfg)
	nc := testenv.Connect(t, ns)
	presence := startStandInPresence(t, testenv.Connect(t, ns))

	// Registration never conflicts: a new account has no sessions.
	phone := mustRegister(t, nc, "heidi", "heidi's password")

	// Nobody online: login allowed.
	laptop, err := login(nc, clientAddr, "heidi", "heidi's password")
	if err != nil {
		t.Fatalf("login while offline: %v", err)
	}

	// The phone session is connected: a new login is refused ...
	presence.set(phone.UserId, phone.SessionId)
	_, err = login(nc, clientAddr, "heidi", "heidi's password")
	wantCode(t, err, parleyv1.ErrorCode_ERROR_CODE_ALREADY_LOGGED_IN)
	// ... and so is resuming another session,
	_, err = resume(nc, laptop.Token)
	wantCode(t, err, parleyv1.ErrorCode_ERROR_CODE_ALREADY_LOGGED_IN)
	// but the phone itself may reconnect with its own session.
	if _, err := resume(nc, phone.Token); err != nil {
		t.Fatalf("resume of the online session itself: %v", err)
	}

	// Offline again: allowed.
	presence.set(phone.UserId)
	if _, err := login(nc, clientAddr, "heidi", "heidi's password"); err != nil {
		t.Fatalf("login after going offline: %v", err)
	}

	// Presence not answering: fail closed.
	if err := presence.sub.Unsubscribe(); err != nil {
		t.Fatal(err)
	}
	_, err = login(nc, clientAddr, "heidi", "heidi's password")
	wantCode(t, err, parleyv1.ErrorCode_ERROR_CODE_UNAVAILABLE)
	// A wrong password is still just wrong: presence is asked only after
	// the password checks out.
	_, err = login(nc, clientAddr, "heidi", "wrong password")
	wantCode(t, err, parleyv1.ErrorCode_ERROR_CODE_BAD_CREDENTIALS)
}
