package sdktest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/parleychat/parley/clients/internal/parleytest"
	"github.com/parleychat/parley/clients/parley"
	"github.com/parleychat/parley/protocol/parleyv1"
	"github.com/parleychat/parley/standalone/server"
)

const (
	password = "correct horse battery"
	wait     = 15 * time.Second // bound on anything a test waits for
)

func ctxT(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// dial connects with fast reconnects and closes the client at test end.
func dial(t *testing.T, addr string, opts ...parley.Option) *parley.Client {
	t.Helper()
	opts = append([]parley.Option{parley.WithBackoff(20*time.Millisecond, 200*time.Millisecond)}, opts...)
	c, err := parley.Dial(ctxT(t), addr, opts...)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func register(t *testing.T, c *parley.Client, user string) *parley.Session {
	t.Helper()
	s, err := c.Register(ctxT(t), user, password)
	if err != nil {
		t.Fatalf("register %s: %v", user, err)
	}
	return s
}

func login(t *testing.T, c *parley.Client, user string) *parley.Session {
	t.Helper()
	s, err := c.Login(ctxT(t), user, password)
	if err != nil {
		t.Fatalf("login %s: %v", user, err)
	}
	return s
}

// next reads events until one of type T satisfying ok (nil: any) arrives.
func next[T parley.Event](t *testing.T, c *parley.Client, ok func(T) bool) T {
	t.Helper()
	timeout := time.After(wait)
	for {
		select {
		case ev, open := <-c.Events():
			if !open {
				var zero T
				t.Fatalf("events closed (client error %v) while waiting for %T", c.Err(), zero)
			}
			if e, is := ev.(T); is && (ok == nil || ok(e)) {
				return e
			}
		case <-timeout:
			var zero T
			t.Fatalf("no %T within %v", zero, wait)
		}
	}
}

func names(us []parley.OnlineUser) []string {
	out := []string{}
	for _, u := range us {
		out = append(out, u.Username)
	}
	return out
}

func snapshotWith(want ...string) func(parley.PresenceSnapshotEvent) bool {
	return func(ev parley.PresenceSnapshotEvent) bool {
		got := names(ev.Users)
		for _, w := range want {
			if !slices.Contains(got, w) {
				return false
			}
		}
		return true
	}
}

func TestRegisterLoginWho(t *testing.T) {
	p := parleytest.Start(t, nil)
	ctx := ctxT(t)

	c1 := dial(t, p.TCPAddr(), parley.WithPresenceFeed(false))
	if w := c1.Welcome(); w.Version != 1 || w.GatewayID != "gw-test" {
		t.Errorf("welcome = %v", w)
	}
	if _, err := c1.Ping(ctx); err != nil {
		t.Errorf("ping before login: %v", err)
	}
	if _, err := c1.Who(ctx); !errors.Is(err, parley.ErrUnauthenticated) {
		t.Errorf("who before login: %v, want ErrUnauthenticated", err)
	}
	s := register(t, c1, "alice")
	if s.Username != "alice" || s.UserID == "" || s.SessionID == "" || s.Token == "" || s.Resumed {
		t.Errorf("register session = %+v", s)
	}
	if got := c1.Session(); got == nil || got.SessionID != s.SessionID {
		t.Errorf("Session() = %+v, want the registered one", got)
	}

	c2 := dial(t, p.TCPAddr(), parley.WithPresenceFeed(false))
	if _, err := c2.Register(ctx, "alice", password); !errors.Is(err, parley.ErrUsernameTaken) {
		t.Errorf("second register of alice: %v, want ErrUsernameTaken", err)
	}
	_, err := c2.Login(ctx, "alice", "wrong password!")
	var pe *parley.Error
	if !errors.Is(err, parley.ErrBadCredentials) || !errors.As(err, &pe) || pe.Message == "" {
		t.Errorf("login with a wrong password: %v, want ErrBadCredentials with a message", err)
	}
	if _, err := c2.Login(ctx, "nobody", password); !errors.Is(err, parley.ErrBadCredentials) {
		t.Errorf("login of an unknown user: %v, want ErrBadCredentials", err)
	}
	s2 := login(t, c2, "alice")
	if s2.UserID != s.UserID || s2.SessionID == s.SessionID {
		t.Errorf("second login = %+v: want the same user, a new session", s2)
	}
	if _, err := c2.Login(ctx, "alice", password); !errors.Is(err, parley.ErrAlreadyAuthenticated) {
		t.Errorf("login twice on one connection: %v, want ErrAlreadyAuthenticated", err)
	}

	users, err := c2.Who(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(users) != 1 || users[0].Username != "alice" || users[0].Sessions != 2 {
		t.Errorf("who = %+v, want alice with 2 sessions", users)
	}

	// Concurrent requests on one connection are correlated correctly.
	errs := make(chan error, 20)
	for range 20 {
		go func() {
			us, err := c1.Who(ctx)
			if err == nil && !reflect.DeepEqual(names(us), []string{"alice"}) {
				err = fmt.Errorf("who = %v", names(us))
			}
			errs <- err
		}()
	}
	for range 20 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

func TestWeakPasswordAndBadUsername(t *testing.T) {
	p := parleytest.Start(t, nil)
	c := dial(t, p.TCPAddr(), parley.WithPresenceFeed(false))
	ctx := ctxT(t)
	if _, err := c.Register(ctx, "alice", "short"); !errors.Is(err, parley.ErrWeakPassword) {
		t.Errorf("short password: %v, want ErrWeakPassword", err)
	}
	if _, err := c.Register(ctx, "no spaces allowed", password); !errors.Is(err, parley.ErrInvalidUsername) {
		t.Errorf("bad username: %v, want ErrInvalidUsername", err)
	}
}

func TestPresenceAcrossClients(t *testing.T) {
	p := parleytest.Start(t, nil)
	alice := dial(t, p.TCPAddr())
	register(t, alice, "alice")
	snap := next(t, alice, snapshotWith("alice"))
	if got := names(snap.Users); !reflect.DeepEqual(got, []string{"alice"}) {
		t.Errorf("alice's snapshot = %v, want [alice]", got)
	}

	bob := dial(t, p.TCPAddr(), parley.WithPresenceFeed(false))
	register(t, bob, "bob")
	on := next(t, alice, func(e parley.UserOnlineEvent) bool { return e.User.Username == "bob" })
	if on.User.UserID == "" {
		t.Errorf("online event without user id: %+v", on)
	}
	if got := names(alice.Online()); !reflect.DeepEqual(got, []string{"alice", "bob"}) {
		t.Errorf("alice's online list = %v, want [alice bob]", got)
	}
	if got := bob.Online(); len(got) != 0 {
		t.Errorf("bob has no presence feed but Online() = %v", names(got))
	}

	bob.Close()
	next(t, alice, func(e parley.UserOfflineEvent) bool { return e.User.Username == "bob" })
	if got := names(alice.Online()); !reflect.DeepEqual(got, []string{"alice"}) {
		t.Errorf("after bob left, alice's online list = %v", got)
	}
	if _, err := bob.Who(ctxT(t)); !errors.Is(err, parley.ErrClosed) {
		t.Errorf("who after Close: %v, want ErrClosed", err)
	}
}

func TestReconnectResumesSession(t *testing.T) {
	p := parleytest.Start(t, nil)
	relay := parleytest.NewRelay(t, p.HostPort())
	alice := dial(t, relay.Addr())
	s := register(t, alice, "alice")
	next(t, alice, snapshotWith("alice"))
	bob := dial(t, p.TCPAddr(), parley.WithPresenceFeed(false))
	register(t, bob, "bob")
	next(t, alice, func(e parley.UserOnlineEvent) bool { return e.User.Username == "bob" })

	relay.Cut()
	dis := next[parley.DisconnectedEvent](t, alice, nil)
	if dis.Err == nil {
		t.Error("DisconnectedEvent without a cause")
	}
	re := next[parley.ReconnectedEvent](t, alice, nil)
	if re.Session == nil || re.Session.SessionID != s.SessionID || re.Session.UserID != s.UserID || !re.Session.Resumed {
		t.Fatalf("reconnected with %+v, want session %s resumed", re.Session, s.SessionID)
	}
	snap := next(t, alice, snapshotWith("alice", "bob"))
	if got := names(snap.Users); !reflect.DeepEqual(got, []string{"alice", "bob"}) {
		t.Errorf("snapshot after reconnect = %v", got)
	}
	if got := names(alice.Online()); !reflect.DeepEqual(got, []string{"alice", "bob"}) {
		t.Errorf("online list after reconnect = %v", got)
	}
	users, err := alice.Who(ctxT(t))
	if err != nil || !reflect.DeepEqual(names(users), []string{"alice", "bob"}) {
		t.Errorf("who after reconnect = %v, %v", names(users), err)
	}
	if got := alice.Session(); got.SessionID != s.SessionID || got.Token == "" {
		t.Errorf("Session() after reconnect = %+v", got)
	}
	// Presence changes keep flowing on the new connection.
	bob.Close()
	next(t, alice, func(e parley.UserOfflineEvent) bool { return e.User.Username == "bob" })
}

func TestReconnectAfterServerRestart(t *testing.T) {
	p := parleytest.Start(t, nil)
	alice := dial(t, p.TCPAddr())
	s := register(t, alice, "alice")
	next(t, alice, snapshotWith("alice"))

	p.Stop()
	next[parley.DisconnectedEvent](t, alice, nil)
	// A request made while the server is down waits for the reconnect.
	type answer struct {
		users []parley.OnlineUser
		err   error
	}
	who := make(chan answer, 1)
	ctx := ctxT(t)
	go func() {
		us, err := alice.Who(ctx)
		who <- answer{us, err}
	}()
	p.Restart()

	re := next[parley.ReconnectedEvent](t, alice, nil)
	if re.Session == nil || re.Session.SessionID != s.SessionID {
		t.Fatalf("reconnected with %+v, want session %s", re.Session, s.SessionID)
	}
	next(t, alice, snapshotWith("alice"))
	select {
	case a := <-who:
		if a.err != nil || !reflect.DeepEqual(names(a.users), []string{"alice"}) {
			t.Errorf("who during the outage answered %v, %v after the reconnect", names(a.users), a.err)
		}
	case <-time.After(wait):
		t.Fatal("the request made during the outage never finished")
	}
}

func TestLogoutStopsReconnect(t *testing.T) {
	p := parleytest.Start(t, nil)
	relay := parleytest.NewRelay(t, p.HostPort())
	alice := dial(t, relay.Addr())
	s := register(t, alice, "alice")
	next(t, alice, snapshotWith("alice"))
	ctx := ctxT(t)

	if err := alice.Logout(ctx); err != nil {
		t.Fatalf("logout: %v", err)
	}
	if alice.Session() != nil || len(alice.Online()) != 0 {
		t.Errorf("after logout: session %+v, online %v", alice.Session(), names(alice.Online()))
	}
	if _, err := alice.Who(ctx); !errors.Is(err, parley.ErrUnauthenticated) {
		t.Errorf("who after logout: %v, want ErrUnauthenticated (the connection stays open)", err)
	}

	relay.Cut()
	next[parley.DisconnectedEvent](t, alice, nil)
	select {
	case ev, open := <-alice.Events():
		if open {
			t.Errorf("event after the final disconnect: %#v", ev)
		}
	case <-time.After(wait):
		t.Fatal("events not closed after the final disconnect")
	}
	if !errors.Is(alice.Err(), parley.ErrClosed) {
		t.Errorf("Err() = %v, want ErrClosed", alice.Err())
	}
	if _, err := alice.Who(ctx); !errors.Is(err, parley.ErrClosed) {
		t.Errorf("who after the end: %v, want ErrClosed", err)
	}

	// The logged-out token is dead.
	other := dial(t, p.TCPAddr())
	_, err := other.Resume(ctx, s.Token)
	if !errors.Is(err, parley.ErrSessionRevoked) && !errors.Is(err, parley.ErrTokenInvalid) {
		t.Errorf("resume after logout: %v, want ErrSessionRevoked", err)
	}
}

func TestNoReconnectOption(t *testing.T) {
	p := parleytest.Start(t, nil)
	relay := parleytest.NewRelay(t, p.HostPort())
	c := dial(t, relay.Addr(), parley.WithReconnect(false))
	register(t, c, "alice")
	relay.Cut()
	next[parley.DisconnectedEvent](t, c, nil)
	if _, err := c.Who(ctxT(t)); !errors.Is(err, parley.ErrClosed) {
		t.Errorf("who after the break: %v, want ErrClosed", err)
	}
}

func TestResumeWithStoredToken(t *testing.T) {
	p := parleytest.Start(t, nil)
	c1 := dial(t, p.TCPAddr())
	s := register(t, c1, "alice")
	c1.Close()

	c2 := dial(t, p.TCPAddr())
	r, err := c2.Resume(ctxT(t), s.Token)
	if err != nil {
		t.Fatalf("resume: %v", err)
	}
	if r.SessionID != s.SessionID || r.Username != "alice" || !r.Resumed || r.Token == "" {
		t.Errorf("resumed session = %+v", r)
	}
	if _, err := c2.Resume(ctxT(t), "not-a-token"); err == nil {
		t.Error("resume with garbage succeeded")
	}
	c3 := dial(t, p.TCPAddr())
	if _, err := c3.Resume(ctxT(t), "not-a-token"); !errors.Is(err, parley.ErrTokenInvalid) {
		t.Errorf("resume with garbage: %v, want ErrTokenInvalid", err)
	}
}

func TestTakeoverEndsOldSession(t *testing.T) {
	p := parleytest.Start(t, func(c *server.Config) { c.Auth.SessionPolicy = "takeover" })
	relay := parleytest.NewRelay(t, p.HostPort())
	old := dial(t, relay.Addr())
	register(t, old, "alice")
	next(t, old, snapshotWith("alice"))

	newer := dial(t, p.TCPAddr())
	login(t, newer, "alice")

	ended := next[parley.SessionEndedEvent](t, old, nil)
	if !errors.Is(ended.Err(), parley.ErrLoggedInElsewhere) {
		t.Errorf("session ended with %v, want LOGGED_IN_ELSEWHERE", ended.Err())
	}
	// It is the last event: no reconnect, no resume.
	select {
	case ev, open := <-old.Events():
		if open {
			t.Errorf("event after SessionEnded: %#v", ev)
		}
	case <-time.After(wait):
		t.Fatal("events not closed after SessionEnded")
	}
	if err := old.Err(); !errors.Is(err, parley.ErrClosed) || !errors.Is(err, parley.ErrLoggedInElsewhere) {
		t.Errorf("Err() = %v, want ErrClosed and ErrLoggedInElsewhere", err)
	}
	// The old connection's presence record goes when the gateway has
	// closed it, a moment after SessionEnded.
	deadline := time.Now().Add(wait)
	for {
		users, err := newer.Who(ctxT(t))
		if err == nil && len(users) == 1 && users[0].Sessions == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("who = %+v, %v: want alice with the one new session", users, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestWebSocket(t *testing.T) {
	p := parleytest.Start(t, nil)
	alice := dial(t, p.WSAddr())
	register(t, alice, "alice")
	next(t, alice, snapshotWith("alice"))
	bob := dial(t, p.WSAddr(), parley.WithPresenceFeed(false))
	register(t, bob, "bob")
	next(t, alice, func(e parley.UserOnlineEvent) bool { return e.User.Username == "bob" })
	users, err := bob.Who(ctxT(t))
	if err != nil || !reflect.DeepEqual(names(users), []string{"alice", "bob"}) {
		t.Errorf("who over websocket = %v, %v", names(users), err)
	}
	if _, err := bob.Ping(ctxT(t)); err != nil {
		t.Errorf("ping over websocket: %v", err)
	}
}

func TestHeartbeatKeepsIdleConnectionAlive(t *testing.T) {
	// The gateway drops connections silent for its idle timeout; the
	// client's pings must keep an idle session alive well past it.
	p := parleytest.Start(t, func(c *server.Config) {
		c.Gateway.HeartbeatInterval = 100 * time.Millisecond
		c.Gateway.IdleTimeout = 400 * time.Millisecond
	})
	c := dial(t, p.TCPAddr())
	register(t, c, "alice")
	next(t, c, snapshotWith("alice"))
	next[parley.SyncedEvent](t, c, nil) // the login's message sync
	select {
	case ev := <-c.Events():
		t.Fatalf("unexpected event on an idle connection: %#v", ev)
	case <-time.After(1500 * time.Millisecond):
	}
	if _, err := c.Who(ctxT(t)); err != nil {
		t.Errorf("who after idling: %v", err)
	}
}

func TestInFlightRequestsFailRetryably(t *testing.T) {
	p := parleytest.Start(t, nil)
	relay := parleytest.NewRelay(t, p.HostPort())
	c := dial(t, relay.Addr(), parley.WithPresenceFeed(false))
	register(t, c, "alice")

	// Requests racing a break either succeed (before it, or after the
	// reconnect) or fail with a retryable error; none hangs.
	ctx := ctxT(t)
	errs := make(chan error, 200)
	for range 8 {
		go func() {
			for range 25 {
				_, err := c.Who(ctx)
				errs <- err
			}
		}()
	}
	relay.Cut()
	lost := 0
	for range 200 {
		err := <-errs
		switch {
		case err == nil:
		case parley.Retryable(err) && errors.Is(err, parley.ErrConnectionLost):
			lost++
		default:
			t.Errorf("request during a break: %v, want success or a retryable ErrConnectionLost", err)
		}
	}
	t.Logf("%d of 200 requests were lost in the break", lost)
	if _, err := c.Who(ctx); err != nil {
		t.Errorf("who after the reconnect: %v", err)
	}
}

func TestFrameSizeLimit(t *testing.T) {
	p := parleytest.Start(t, nil)
	// A Session reply (with its token) is larger than this gateway's
	// Welcome: with a limit that just admits the Welcome, the client
	// refuses the Session from its length prefix and drops the connection.
	w := dial(t, p.TCPAddr()).Welcome()
	welcome := proto.Size(&parleyv1.Welcome{Version: w.Version, Server: w.Server, GatewayId: w.GatewayID,
		MaxFrameSize: w.MaxFrameSize, HeartbeatIntervalMs: uint32(w.HeartbeatInterval.Milliseconds()),
		IdleTimeoutMs: uint32(w.IdleTimeout.Milliseconds()), HttpUrl: w.HTTPURL, StunAddr: w.STUNAddr}) // its size on the wire
	c := dial(t, p.TCPAddr(), parley.WithMaxFrameSize(uint32(welcome+8)), parley.WithReconnect(false))
	_, err := c.Register(ctxT(t), "alice", password)
	if !errors.Is(err, parley.ErrConnectionLost) || !errors.Is(err, parley.ErrFrameTooLarge) {
		t.Errorf("register with a tiny frame limit: %v, want ErrConnectionLost from ErrFrameTooLarge", err)
	}
}

// TestWhoFollowsPages: with a page size of 2, Who walks several pages of
// the real presence list and returns every online user exactly once.
func TestWhoFollowsPages(t *testing.T) {
	p := parleytest.Start(t, nil)
	var want []string
	var last *parley.Client
	for i := range 7 {
		last = dial(t, p.TCPAddr(), parley.WithPresenceFeed(false), parley.WithPageSize(2))
		name := fmt.Sprintf("pager%d", i)
		register(t, last, name)
		want = append(want, name)
	}
	users, err := last.Who(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if got := names(users); !reflect.DeepEqual(got, want) {
		t.Fatalf("who = %v, want %v", got, want)
	}
}
