package server_test

import (
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/parleychat/parley/libs/proto/internalv1"
	"github.com/parleychat/parley/libs/subject"
	"github.com/parleychat/parley/libs/testenv"
	"github.com/parleychat/parley/protocol/parleyv1"
)

func usernames(users []*parleyv1.OnlineUser) []string {
	var out []string
	for _, u := range users {
		out = append(out, u.GetUsername())
	}
	slices.Sort(out)
	return out
}

func TestLoginFlow(t *testing.T) {
	e := startGateway(t, nil)
	alice := dialTCP(t, e)
	s := alice.login("alice", &parleyv1.ClientOptions{Device: "laptop"})
	if s.GetUserId() != "u-alice" || s.GetToken() != "tok-alice" {
		t.Fatalf("session %v", s)
	}

	// Auth saw the client's address and this gateway.
	logins := e.auth.Logins()
	if len(logins) != 1 {
		t.Fatalf("auth saw %d logins", len(logins))
	}
	if got, want := logins[0].header.Get(subject.HeaderRemoteAddr), alice.raw.LocalAddr().String(); got != want {
		t.Errorf("remote addr header %q, want %q", got, want)
	}
	if got := logins[0].header.Get(subject.HeaderGatewayID); got != "gw-test" {
		t.Errorf("gateway header %q", got)
	}

	// Presence has the connection.
	rec := e.presence.connOf(s.GetSessionId())
	if rec == nil || rec.GetGatewayId() != "gw-test" || rec.GetUserId() != "u-alice" || rec.GetUsername() != "alice" || rec.GetConnId() == "" {
		t.Fatalf("presence connect %v", rec)
	}

	users, _ := alice.snapshot()
	if got := usernames(users); !slices.Equal(got, []string{"alice"}) {
		t.Errorf("alice's snapshot: %v", got)
	}

	bob := dialTCP(t, e)
	bob.login("bob", nil)
	users, _ = bob.snapshot()
	if got := usernames(users); !slices.Equal(got, []string{"alice", "bob"}) {
		t.Errorf("bob's snapshot: %v", got)
	}
	alice.change("bob", true)

	// A client without the feed gets neither snapshot nor events, but is
	// seen by the others.
	carol := dialTCP(t, e)
	carol.login("carol", &parleyv1.ClientOptions{SkipPresenceFeed: true})
	alice.change("carol", true)
	bob.change("carol", true)
	dave := dialTCP(t, e)
	dave.login("dave", nil)
	alice.change("dave", true)
	carol.ping(5)
	if len(carol.stash) != 0 {
		t.Errorf("carol (skip_presence_feed) received %v", carol.stash)
	}

	// Resume starts a session too.
	erin := dialTCP(t, e)
	erin.hello()
	r := erin.request(&parleyv1.Frame{Body: &parleyv1.Frame_Resume{Resume: &parleyv1.ResumeRequest{Token: "tok-erin"}}})
	if !r.GetSession().GetResumed() || r.GetSession().GetUsername() != "erin" {
		t.Fatalf("resume: %v", r)
	}
	alice.change("erin", true)
	if n := e.metric("parley_gateway_authenticated_connections", nil); n != 5 {
		t.Errorf("authenticated connections metric = %v, want 5", n)
	}
}

// TestSnapshotChunks: a large online list arrives in frames of at most 500
// users, all with the list's seq, the last one marked.
func TestSnapshotChunks(t *testing.T) {
	e := startGateway(t, nil)
	e.presence.preload(1100)
	c := dialTCP(t, e)
	c.login("alice", nil)
	users, frames := c.snapshot()
	if len(users) != 1101 || len(frames) != 3 {
		t.Fatalf("%d users in %d frames, want 1101 in 3", len(users), len(frames))
	}
	for i, f := range frames {
		if len(f.GetUsers()) > 500 || f.GetLast() != (i == 2) || f.GetSeq() != frames[0].GetSeq() {
			t.Errorf("frame %d: %d users, last=%v seq=%d", i, len(f.GetUsers()), f.GetLast(), f.GetSeq())
		}
	}
}

// TestFeedOrdering: events published by presence while clients log in reach
// each client after its snapshot, in seq order, none older than the
// snapshot and none missing.
func TestFeedOrdering(t *testing.T) {
	e := startGateway(t, nil)
	const events = 300
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range events {
			// Played by the stand-in presence's own counter, so seq and
			// the snapshot's seq agree.
			e.presence.mu.Lock()
			e.presence.publishLocked(&internalv1.Conn{UserId: "u-ghost", Username: "ghost"}, i%2 == 0)
			e.presence.mu.Unlock()
			if i%20 == 0 {
				time.Sleep(time.Millisecond)
			}
		}
	}()
	var clients []*client
	for i := range 5 {
		c := dialTCP(t, e)
		c.login("user"+string(rune('a'+i)), nil)
		clients = append(clients, c)
	}
	<-done
	e.presence.mu.Lock()
	last := e.presence.seq
	e.presence.mu.Unlock()
	for i, c := range clients {
		_, frames := c.snapshot()
		seq := frames[0].GetSeq()
		for seq < last {
			f := c.waitFor("presence change", func(f *parleyv1.Frame) bool { return f.GetPresenceChange() != nil })
			if got := f.GetPresenceChange().GetSeq(); got != seq+1 {
				t.Fatalf("client %d: event seq %d after %d", i, got, seq)
			}
			seq++
		}
	}
}

func TestLogout(t *testing.T) {
	e := startGateway(t, nil)
	alice := dialTCP(t, e)
	s := alice.login("alice", nil)
	alice.snapshot()
	connID := e.presence.connOf(s.GetSessionId()).GetConnId()

	// The client pads its LogoutRequest with a field claiming another
	// identity (unknown to the schema); none of it may reach auth.
	var spoof []byte
	spoof = protowire.AppendTag(spoof, 15, protowire.BytesType)
	spoof = protowire.AppendString(spoof, "Parley-User: u-bob")
	logout := &parleyv1.LogoutRequest{}
	if err := proto.Unmarshal(spoof, logout); err != nil {
		t.Fatal(err)
	}
	r := alice.request(&parleyv1.Frame{Body: &parleyv1.Frame_Logout{Logout: logout}})
	if r.GetOk() == nil {
		t.Fatalf("logout: %v", r)
	}
	calls := e.auth.Logouts()
	if len(calls) != 1 {
		t.Fatalf("auth saw %d logouts", len(calls))
	}
	h := calls[0].header
	if h.Get(subject.HeaderUserID) != "u-alice" || h.Get(subject.HeaderSessionID) != s.GetSessionId() {
		t.Errorf("logout headers user=%q session=%q, want u-alice %s", h.Get(subject.HeaderUserID), h.Get(subject.HeaderSessionID), s.GetSessionId())
	}
	if len(calls[0].data) != 0 {
		t.Errorf("logout body carries client bytes: %x", calls[0].data)
	}
	if !e.presence.Disconnected(connID) {
		t.Error("no PresenceDisconnect after logout")
	}

	// The connection stays open, unauthenticated; logging in again works.
	r = alice.request(&parleyv1.Frame{Body: &parleyv1.Frame_Who{Who: &parleyv1.WhoRequest{}}})
	if r.GetError().GetCode() != parleyv1.ErrorCode_ERROR_CODE_UNAUTHENTICATED {
		t.Errorf("who after logout: %v", r)
	}
	alice.ping(1)
	alice.login("alice", nil)
}

func TestDisconnect(t *testing.T) {
	e := startGateway(t, nil)
	alice := dialTCP(t, e)
	alice.login("alice", nil)
	alice.snapshot()
	bob := dialTCP(t, e)
	s := bob.login("bob", nil)
	alice.change("bob", true)
	connID := e.presence.connOf(s.GetSessionId()).GetConnId()

	bob.close()
	testenv.Eventually(t, 5*time.Second, "PresenceDisconnect for bob", func() bool { return e.presence.Disconnected(connID) })
	alice.change("bob", false)
	testenv.Eventually(t, 5*time.Second, "connection gauges drop", func() bool {
		return e.metric("parley_gateway_authenticated_connections", nil) == 1 &&
			e.metric("parley_gateway_connections", map[string]string{"transport": "tcp"}) == 1
	})
}

func TestSessionKick(t *testing.T) {
	e := startGateway(t, nil)
	first := dialTCP(t, e)
	s1 := first.login("alice", nil)
	first.snapshot() // the feed's list request follows the user subscription on the gateway's NATS connection
	second := dialTCP(t, e)
	s2 := second.login("alice", nil)
	second.snapshot()
	connID := e.presence.connOf(s1.GetSessionId()).GetConnId()

	kick, _ := proto.Marshal(&internalv1.SessionKick{
		UserId:    "u-alice",
		SessionId: s1.GetSessionId(),
		Reason:    parleyv1.ErrorCode_ERROR_CODE_LOGGED_IN_ELSEWHERE,
		Message:   "you logged in on another device",
	})
	if err := e.nc.Publish(subject.SessionKick("u-alice"), kick); err != nil {
		t.Fatal(err)
	}
	f := first.waitFor("SessionEnded", func(f *parleyv1.Frame) bool { return f.GetSessionEnded() != nil })
	if got := f.GetSessionEnded(); got.GetReason() != parleyv1.ErrorCode_ERROR_CODE_LOGGED_IN_ELSEWHERE || got.GetMessage() != "you logged in on another device" {
		t.Errorf("SessionEnded %v", got)
	}
	first.expectClosed()
	testenv.Eventually(t, 5*time.Second, "PresenceDisconnect for the kicked connection", func() bool { return e.presence.Disconnected(connID) })

	// The other session of the same user is untouched.
	second.ping(2)
	if s2.GetSessionId() == s1.GetSessionId() {
		t.Fatal("stand-in gave both logins one session")
	}
	r := second.request(&parleyv1.Frame{Body: &parleyv1.Frame_Who{Who: &parleyv1.WhoRequest{}}})
	if r.GetWhoReply() == nil {
		t.Errorf("who after the other session was kicked: %v", r)
	}
}

func resumeFrame(token string) *parleyv1.Frame {
	return &parleyv1.Frame{Body: &parleyv1.Frame_Resume{Resume: &parleyv1.ResumeRequest{Token: token}}}
}

// twoConnsOneSession logs alice in on a and resumes her session on b; it
// returns the session and a's and b's connection ids (as presence saw them).
func twoConnsOneSession(t *testing.T, e *env) (a, b *client, s *parleyv1.Session, aID, bID string) {
	t.Helper()
	a = dialTCP(t, e)
	s = a.login("alice", noFeed)
	b = dialTCP(t, e)
	b.hello()
	r := b.request(resumeFrame(s.GetToken()))
	if r.GetSession().GetSessionId() != s.GetSessionId() || !r.GetSession().GetResumed() {
		t.Fatalf("resume on a second connection: %v", r)
	}
	conns := e.presence.Connects()
	if len(conns) != 2 {
		t.Fatalf("presence saw %d connects", len(conns))
	}
	return a, b, s, conns[0].GetConnId(), conns[1].GetConnId()
}

// TestLogoutEndsTheSessionEverywhere: a logout ends the session's other
// connections too (SessionEnded{SESSION_REVOKED}, then the close); the
// connection that logged out stays open without a session. The gateway
// names the connection in every auth request (Parley-Conn), which is how
// auth's kick spares it.
func TestLogoutEndsTheSessionEverywhere(t *testing.T) {
	e := startGateway(t, nil)
	a, b, s, aID, bID := twoConnsOneSession(t, e)
	for i, call := range e.auth.Logins() {
		want := []string{aID, bID}[i]
		if got := call.header.Get(subject.HeaderConnID); got != want {
			t.Errorf("auth request %d: %s %q, want %q", i, subject.HeaderConnID, got, want)
		}
	}

	if r := a.request(&parleyv1.Frame{Body: &parleyv1.Frame_Logout{Logout: &parleyv1.LogoutRequest{}}}); r.GetOk() == nil {
		t.Fatalf("logout: %v", r)
	}
	if got := e.auth.Logouts()[0].header.Get(subject.HeaderConnID); got != aID {
		t.Errorf("logout: %s %q, want %q", subject.HeaderConnID, got, aID)
	}
	f := b.waitFor("SessionEnded", func(f *parleyv1.Frame) bool { return f.GetSessionEnded() != nil })
	if f.GetSessionEnded().GetReason() != parleyv1.ErrorCode_ERROR_CODE_SESSION_REVOKED || f.GetRequestId() != 0 {
		t.Errorf("SessionEnded %v", f)
	}
	b.expectClosed()
	testenv.Eventually(t, 5*time.Second, "PresenceDisconnect for the other connection", func() bool { return e.presence.Disconnected(bID) })

	// The connection that logged out is open, without a session.
	a.ping(7)
	if r := a.request(&parleyv1.Frame{Body: &parleyv1.Frame_Who{Who: &parleyv1.WhoRequest{}}}); r.GetError().GetCode() != parleyv1.ErrorCode_ERROR_CODE_UNAUTHENTICATED {
		t.Errorf("who after logout: %v", r)
	}
	if r := a.request(resumeFrame(s.GetToken())); r.GetError().GetCode() != parleyv1.ErrorCode_ERROR_CODE_SESSION_REVOKED {
		t.Errorf("resume of the logged-out session: %v", r)
	}
}

// TestResumeTakeover: under a policy where a resume takes the session
// over, auth kicks the session's other connections (LOGGED_IN_ELSEWHERE)
// sparing the resuming one.
func TestResumeTakeover(t *testing.T) {
	e := startGateway(t, nil)
	e.auth.setTakeover(true)
	a := dialTCP(t, e)
	s := a.login("alice", noFeed)
	b := dialTCP(t, e)
	b.hello()
	if r := b.request(resumeFrame(s.GetToken())); r.GetSession().GetSessionId() != s.GetSessionId() {
		t.Fatalf("resume: %v", r)
	}
	f := a.waitFor("SessionEnded", func(f *parleyv1.Frame) bool { return f.GetSessionEnded() != nil })
	if f.GetSessionEnded().GetReason() != parleyv1.ErrorCode_ERROR_CODE_LOGGED_IN_ELSEWHERE {
		t.Errorf("SessionEnded %v", f)
	}
	a.expectClosed()
	b.ping(1)
	if r := b.request(&parleyv1.Frame{Body: &parleyv1.Frame_Who{Who: &parleyv1.WhoRequest{}}}); r.GetWhoReply() == nil {
		t.Errorf("who on the resumed connection: %v", r)
	}
}

// TestKickSparesTheNamedConnection: a SessionKick ends every connection of
// its session on this gateway except the one named by except_gateway_id
// and except_conn_id; the same conn id on another gateway is not it.
func TestKickSparesTheNamedConnection(t *testing.T) {
	e := startGateway(t, nil)
	a, b, s, aID, _ := twoConnsOneSession(t, e)
	kick := func(exceptGateway string) {
		t.Helper()
		e.publishUserEvent(subject.SessionKick("u-alice"), &internalv1.SessionKick{
			UserId: "u-alice", SessionId: s.GetSessionId(), Reason: parleyv1.ErrorCode_ERROR_CODE_SESSION_REVOKED,
			Message: "logged out", ExceptGatewayId: exceptGateway, ExceptConnId: aID,
		})
	}
	kick("gw-test")
	b.waitFor("SessionEnded", func(f *parleyv1.Frame) bool { return f.GetSessionEnded() != nil })
	b.expectClosed()
	// a keeps its session: requests still work after the kick was handled
	// (b's close came after it).
	if r := a.request(&parleyv1.Frame{Body: &parleyv1.Frame_Who{Who: &parleyv1.WhoRequest{}}}); r.GetWhoReply() == nil {
		t.Fatalf("who on the spared connection: %v", r)
	}
	for _, f := range a.stash {
		if f.GetSessionEnded() != nil {
			t.Fatalf("the spared connection got %v", f)
		}
	}

	kick("gw-other")
	a.waitFor("SessionEnded", func(f *parleyv1.Frame) bool { return f.GetSessionEnded() != nil })
	a.expectClosed()
}
