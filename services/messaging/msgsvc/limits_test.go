package msgsvc_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/parleychat/parley/libs/subject"
	"github.com/parleychat/parley/protocol/convid"
	"github.com/parleychat/parley/protocol/errcode"
	"github.com/parleychat/parley/protocol/parleyv1"
	"github.com/parleychat/parley/services/messaging/msgsvc"
)

const (
	rateLimited   = parleyv1.ErrorCode_ERROR_CODE_RATE_LIMITED
	quotaExceeded = parleyv1.ErrorCode_ERROR_CODE_QUOTA_EXCEEDED
)

// fakeClock is the replica's clock in tests of rates: it moves only when
// the test says (no test waits for a bucket to refill).
type fakeClock struct {
	mu sync.Mutex // guards t
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Unix(1_700_000_000, 0)} }

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// many returns n users u000, u001, ... known to the auth stand-in.
func many(prefix string, n int) []user {
	out := make([]user, n)
	for i := range out {
		out[i] = user{id: fmt.Sprintf("u%s%03d", prefix, i), name: fmt.Sprintf("%s%03d", prefix, i)}
	}
	return out
}

func names(us []user) []string {
	out := make([]string, len(us))
	for i, u := range us {
		out[i] = u.name
	}
	return out
}

// wantRateLimited fails unless err is RATE_LIMITED with retry_after_ms
// wait.
func wantRateLimited(t testing.TB, err error, wait time.Duration) {
	t.Helper()
	var e *errcode.Error
	if !errors.As(err, &e) || e.Code != rateLimited || time.Duration(e.RetryAfter)*time.Millisecond != wait {
		t.Fatalf("got %v (retry after %v), want RATE_LIMITED after %v", err, retryAfter(err), wait)
	}
}

func retryAfter(err error) time.Duration {
	var e *errcode.Error
	if errors.As(err, &e) {
		return time.Duration(e.RetryAfter) * time.Millisecond
	}
	return 0
}

// Each per-user rate: the allowance passes, the next request is refused
// with RATE_LIMITED and the time until one more is allowed, nothing of it
// happens, the same request passes once that time has passed, and another
// user is not affected.
func TestPerUserRates(t *testing.T) {
	others := many("x", 120)
	for _, tc := range []struct {
		name    string
		edit    func(*msgsvc.Config)
		allowed int           // requests that pass at once
		wait    time.Duration // retry_after of the next one
		// act makes request i as u; done checks afterwards that refused
		// request i left no trace (nil: nothing to check).
		act  func(t *testing.T, e *env, u user, i int) error
		done func(t *testing.T, e *env, u user, i int)
	}{
		{
			name: "messages", edit: func(c *msgsvc.Config) { c.SendLimit, c.SendBurst = 60, 5 },
			allowed: 5, wait: time.Second,
			act: func(t *testing.T, e *env, u user, i int) error {
				_, err := e.sendReq(u, &parleyv1.SendRequest{Conversation: convid.PublicRoom, Text: fmt.Sprint("m", i), ClientKey: e.key()})
				return err
			},
		},
		{
			name: "message re-sends count too", edit: func(c *msgsvc.Config) { c.SendLimit, c.SendBurst = 60, 2 },
			allowed: 2, wait: time.Second,
			act: func(t *testing.T, e *env, u user, i int) error {
				_, err := e.sendReq(u, &parleyv1.SendRequest{Conversation: convid.PublicRoom, Text: "same", ClientKey: "same-key-" + u.id})
				return err
			},
		},
		{
			name: "friend requests", edit: func(c *msgsvc.Config) { c.FriendRequestLimit = 3 },
			allowed: 3, wait: 20 * time.Minute,
			act: func(t *testing.T, e *env, u user, i int) error { return e.addFriend(u, others[i].name) },
			done: func(t *testing.T, e *env, u user, i int) {
				wantList(t, "friends of the user asked too many", e.friends(t, others[i]), "")
			},
		},
		{
			name: "group creation", edit: func(c *msgsvc.Config) { c.GroupCreateLimit = 2 },
			allowed: 2, wait: 30 * time.Minute,
			act: func(t *testing.T, e *env, u user, i int) error {
				return e.call(u, subject.MsgCreateGroup, &parleyv1.CreateGroupRequest{Name: fmt.Sprint("g", i)}, &parleyv1.Conversation{})
			},
			done: func(t *testing.T, e *env, u user, i int) {
				if n := len(groupsOf(t, e, u)); n != 2 {
					t.Errorf("%s is in %d groups, want the 2 allowed", u.name, n)
				}
			},
		},
		{
			// Each invited user counts: 100 in one request, then one more.
			name: "invitations", edit: func(c *msgsvc.Config) { c.InviteLimit = 100 },
			allowed: 1, wait: 36 * time.Second,
			act: func(t *testing.T, e *env, u user, i int) error {
				invite := names(others[:100])
				if i > 0 {
					invite = []string{others[99+i].name}
				}
				if i == 0 {
					e.createGroup(t, u, "big", invite...)
					return nil
				}
				conv := groupsOf(t, e, u)[0]
				_, err := e.invite(u, conv, invite...)
				return err
			},
			done: func(t *testing.T, e *env, u user, i int) {
				ms, err := e.members(u, groupsOf(t, e, u)[0])
				if err != nil || len(ms) != 101 {
					t.Errorf("members after a refused invitation: %d %v, want 101", len(ms), err)
				}
			},
		},
		{
			name: "username lookups", edit: func(c *msgsvc.Config) { c.LookupLimit, c.LookupBurst = 100, 100 },
			allowed: 100, wait: 36 * time.Second,
			act: func(t *testing.T, e *env, u user, i int) error {
				_, err := e.openDirect(u, others[i].name)
				return err
			},
		},
		{
			name: "unknown usernames cost as much", edit: func(c *msgsvc.Config) { c.LookupLimit, c.LookupBurst = 100, 100 },
			allowed: 100, wait: 36 * time.Second,
			act: func(t *testing.T, e *env, u user, i int) error {
				if _, err := e.openDirect(u, fmt.Sprint("nobody", i)); !isCode(err, notFound) {
					return err
				}
				return nil
			},
		},
		{
			name: "typing indicators", edit: func(c *msgsvc.Config) { c.TypingLimit, c.TypingBurst = 30, 3 },
			allowed: 3, wait: 2 * time.Second,
			act: func(t *testing.T, e *env, u user, i int) error {
				return e.typing(u, directID(u.id, others[i].id))
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, others...)
			clock := newFakeClock()
			cfg := testConfig()
			tc.edit(&cfg)
			e.startClock(t, cfg, clock.now)
			for i := range tc.allowed {
				if err := tc.act(t, e, alice, i); err != nil {
					t.Fatalf("request %d of %d allowed: %v", i+1, tc.allowed, err)
				}
			}
			next := tc.allowed
			wantRateLimited(t, tc.act(t, e, alice, next), tc.wait)
			if tc.done != nil {
				tc.done(t, e, alice, next)
			}
			if err := tc.act(t, e, bob, 0); err != nil {
				t.Errorf("bob is limited by alice's requests: %v", err)
			}
			clock.advance(tc.wait * 99 / 100)
			if err := tc.act(t, e, alice, next); !isCode(err, rateLimited) || retryAfter(err) > tc.wait/100+time.Millisecond {
				t.Fatalf("1%% before retry_after: %v (retry after %v), want RATE_LIMITED after about %v", err, retryAfter(err), tc.wait/100)
			}
			clock.advance(tc.wait / 100)
			if err := tc.act(t, e, alice, next); err != nil {
				t.Errorf("after retry_after: %v", err)
			}
		})
	}
}

// A request naming more users than the lookup budget has left is refused
// whole, before auth is asked about any of them, and passes once the
// budget has refilled enough for all of them.
func TestLookupBudgetChargesEveryName(t *testing.T) {
	others := many("x", 100)
	e := newEnv(t, others...)
	clock := newFakeClock()
	cfg := testConfig()
	cfg.LookupLimit, cfg.LookupBurst = 100, 100
	e.startClock(t, cfg, clock.now)
	g := e.createGroup(t, alice, "g", names(others[:60])...)
	asked := e.lookups.Load()
	_, err := e.invite(alice, g.Id, names(others[60:])...) // 40 names, 40 left
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.invite(alice, g.Id, "bob", "carol")
	wantRateLimited(t, err, 72*time.Second) // 2 names at 100 an hour
	if n := e.lookups.Load() - asked; n != 40 {
		t.Errorf("auth asked %d times, want 40 (none for the refused request)", n)
	}
	ms, _ := e.members(alice, g.Id)
	if len(ms) != 101 {
		t.Errorf("%d members and invitees, want 101", len(ms))
	}
	// Every request that resolves a name draws on the same budget.
	for _, tc := range []struct {
		name string
		do   func() error
	}{
		{"send to_username", func() error {
			_, err := e.sendReq(alice, &parleyv1.SendRequest{ToUsername: "bob", Text: "x", ClientKey: e.key()})
			return err
		}},
		{"open_direct", func() error { _, err := e.openDirect(alice, "bob"); return err }},
		{"add_friend", func() error { return e.addFriend(alice, "bob") }},
		{"answer_friend", func() error { return e.answerFriend(alice, "bob", true) }},
		{"remove_friend", func() error { return e.removeFriend(alice, "bob") }},
		{"block", func() error { return e.block(alice, "bob") }},
		{"unblock", func() error { return e.unblock(alice, "bob") }},
		{"create_group", func() error {
			return e.call(alice, subject.MsgCreateGroup, &parleyv1.CreateGroupRequest{Name: "h", Usernames: []string{"bob"}}, nil)
		}},
		{"invite", func() error { _, err := e.invite(alice, g.Id, "bob"); return err }},
		{"remove_member", func() error { return e.remove(alice, g.Id, "bob") }},
	} {
		if err := tc.do(); !isCode(err, rateLimited) {
			t.Errorf("%s with the budget spent: %v, want RATE_LIMITED", tc.name, err)
		}
	}
}

// A request refused after it was charged keeps its charges
// (docs/protocol.md §15.6): a send to an unknown to_username costs one
// message and one lookup, although nothing was sent.
func TestRefusedRequestKeepsItsCharges(t *testing.T) {
	e := newEnv(t)
	clock := newFakeClock()
	cfg := testConfig()
	cfg.SendLimit, cfg.SendBurst = 60, 2
	cfg.LookupLimit, cfg.LookupBurst = 100, 100
	e.startClock(t, cfg, clock.now)
	_, err := e.sendReq(alice, &parleyv1.SendRequest{ToUsername: "nobody", Text: "x", ClientKey: e.key()})
	if !isCode(err, notFound) {
		t.Fatalf("send to an unknown user: %v, want NOT_FOUND", err)
	}
	// One message of the burst of 2 is left ...
	if _, err := e.sendReq(alice, &parleyv1.SendRequest{Conversation: convid.PublicRoom, Text: "x", ClientKey: e.key()}); err != nil {
		t.Fatal(err)
	}
	_, err = e.sendReq(alice, &parleyv1.SendRequest{Conversation: convid.PublicRoom, Text: "y", ClientKey: e.key()})
	wantRateLimited(t, err, time.Second)
	// ... and 99 lookups of 100.
	for i := range 99 {
		if _, err := e.openDirect(alice, fmt.Sprint("nobody", i)); !isCode(err, notFound) {
			t.Fatalf("lookup %d: %v, want NOT_FOUND", i+1, err)
		}
	}
	_, err = e.openDirect(alice, "bob")
	wantRateLimited(t, err, 36*time.Second)
}

// The caps are counts, not rates: QUOTA_EXCEEDED until the user frees a
// place, however long they wait.
func TestPerUserCaps(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*msgsvc.Config)
		// fill reaches the cap; over tries one more (and must be refused);
		// free makes room. Each returns what to check.
		fill func(t *testing.T, e *env)
		over func(e *env) error
		free func(t *testing.T, e *env)
		// unchanged checks that the refused request did nothing.
		unchanged func(t *testing.T, e *env)
	}{
		{
			name: "groups created", edit: func(c *msgsvc.Config) { c.MaxGroups = 2 },
			fill: func(t *testing.T, e *env) { e.createGroup(t, alice, "one"); e.createGroup(t, alice, "two") },
			over: func(e *env) error {
				return e.call(alice, subject.MsgCreateGroup, &parleyv1.CreateGroupRequest{Name: "three", Usernames: []string{"bob"}}, nil)
			},
			free: func(t *testing.T, e *env) {
				if err := e.leave(alice, groupsOf(t, e, alice)[0]); err != nil {
					t.Fatal(err)
				}
			},
			unchanged: func(t *testing.T, e *env) {
				if n := len(groupsOf(t, e, bob)); n != 0 {
					t.Errorf("bob got %d invitations from a refused creation", n)
				}
			},
		},
		{
			name: "groups joined", edit: func(c *msgsvc.Config) { c.MaxGroups = 2 },
			fill: func(t *testing.T, e *env) {
				e.createGroup(t, bob, "bob's", "alice")
				e.createGroup(t, alice, "one")
				e.createGroup(t, alice, "two")
			},
			over: func(e *env) error {
				for _, c := range e.listAll(alice) {
					if c.Invited {
						_, err := e.join(alice, c.Id)
						return err
					}
				}
				return errors.New("no invitation")
			},
			free: func(t *testing.T, e *env) {
				for _, c := range e.listAll(alice) {
					if !c.Invited && c.Kind == parleyv1.ConversationKind_CONVERSATION_KIND_GROUP {
						if err := e.leave(alice, c.Id); err != nil {
							t.Fatal(err)
						}
						return
					}
				}
			},
			unchanged: func(t *testing.T, e *env) {
				invited := 0
				for _, c := range e.listAll(alice) {
					if c.Invited {
						invited++
					}
				}
				if invited != 1 {
					t.Errorf("alice holds %d invitations after a refused join, want 1", invited)
				}
			},
		},
		{
			name: "pending invitations", edit: func(c *msgsvc.Config) { c.MaxPendingInvites = 2 },
			fill: func(t *testing.T, e *env) {
				e.createGroup(t, alice, "a1", "bob")
				e.createGroup(t, carol, "c1", "bob")
			},
			// A creation with an invitee at the cap creates nothing.
			over: func(e *env) error {
				return e.call(carol, subject.MsgCreateGroup, &parleyv1.CreateGroupRequest{Name: "c2", Usernames: []string{"alice", "bob"}}, nil)
			},
			free: func(t *testing.T, e *env) {
				if err := e.leave(bob, groupsOf(t, e, bob)[0]); err != nil { // declines
					t.Fatal(err)
				}
			},
			unchanged: func(t *testing.T, e *env) {
				if n := len(groupsOf(t, e, carol)); n != 1 {
					t.Errorf("carol is in %d groups, want 1: a refused creation created one", n)
				}
				if n := len(groupsOf(t, e, alice)); n != 1 {
					t.Errorf("alice is in or invited to %d groups, want 1", n)
				}
			},
		},
		{
			name: "pending invitations by invite", edit: func(c *msgsvc.Config) { c.MaxPendingInvites = 1 },
			fill: func(t *testing.T, e *env) {
				e.createGroup(t, alice, "a1", "bob")
				e.createGroup(t, carol, "c1")
			},
			// Nobody in the request is invited, carol's other invitee neither.
			over: func(e *env) error {
				var c *parleyv1.Conversation
				for _, cv := range e.listAll(carol) {
					if cv.Kind == parleyv1.ConversationKind_CONVERSATION_KIND_GROUP {
						c = cv
					}
				}
				_, err := e.invite(carol, c.Id, "alice", "bob")
				return err
			},
			free: func(t *testing.T, e *env) {
				if err := e.remove(alice, groupsOf(t, e, alice)[0], "bob"); err != nil { // withdrawn
					t.Fatal(err)
				}
			},
			unchanged: func(t *testing.T, e *env) {
				if n := len(groupsOf(t, e, alice)); n != 1 {
					t.Errorf("alice is in or invited to %d groups, want 1", n)
				}
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			clock := newFakeClock()
			cfg := testConfig()
			tc.edit(&cfg)
			e.startClock(t, cfg, clock.now)
			tc.fill(t, e)
			wantCode(t, tc.over(e), quotaExceeded)
			tc.unchanged(t, e)
			clock.advance(24 * time.Hour)
			wantCode(t, tc.over(e), quotaExceeded)
			tc.free(t, e)
			if err := tc.over(e); err != nil {
				t.Errorf("with a place free: %v", err)
			}
		})
	}
}

// An index entry left by a replica that died between writing a group
// record and the user's entry does not cost the user a place: at the cap
// the entries are checked against the records and stale ones deleted.
func TestStaleEntriesDoNotCount(t *testing.T) {
	e := newEnv(t)
	cfg := testConfig()
	cfg.MaxPendingInvites = 1
	e.start(t, cfg)
	js, err := jetstream.New(e.nc)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(context.Background(), subject.BucketConvs)
	if err != nil {
		t.Fatal(err)
	}
	stale := bob.id + ".group.g" + strings.Repeat("a", 20) // a group that does not exist
	if _, err := kv.Put(context.Background(), stale, []byte(`{"group":true,"invited":true}`)); err != nil {
		t.Fatal(err)
	}
	e.createGroup(t, alice, "g", "bob")
	if _, err := kv.Get(context.Background(), stale); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Errorf("stale entry: %v, want deleted", err)
	}
	_, err = e.invite(carol, e.createGroup(t, carol, "c").Id, "bob")
	wantCode(t, err, quotaExceeded)
}

// Blocking stops group invitations from the blocked user as it stops
// their private messages: BLOCKED, and nobody in the request is invited.
func TestBlockStopsInvitations(t *testing.T) {
	e := newEnv(t)
	e.start(t, testConfig())
	if err := e.block(bob, "alice"); err != nil {
		t.Fatal(err)
	}
	err := e.call(alice, subject.MsgCreateGroup, &parleyv1.CreateGroupRequest{Name: "g", Usernames: []string{"carol", "bob"}}, nil)
	wantCode(t, err, blockedCode)
	if n := len(groupsOf(t, e, alice)) + len(groupsOf(t, e, carol)); n != 0 {
		t.Fatalf("a refused creation left %d groups or invitations", n)
	}
	g := e.createGroup(t, alice, "g")
	_, err = e.invite(alice, g.Id, "carol", "bob")
	wantCode(t, err, blockedCode)
	if ms, _ := e.members(alice, g.Id); memberList(ms) != "Alice*" {
		t.Fatalf("after a refused invitation: %s", memberList(ms))
	}
	// Others may invite bob to the same group; alice again once unblocked.
	if _, err := e.invite(alice, g.Id, "carol"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.join(carol, g.Id); err != nil {
		t.Fatal(err)
	}
	if _, err := e.invite(carol, g.Id, "bob"); err != nil {
		t.Errorf("carol invites bob: %v", err)
	}
	if err := e.leave(bob, g.Id); err != nil {
		t.Fatal(err)
	}
	if err := e.unblock(bob, "alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.invite(alice, g.Id, "bob"); err != nil {
		t.Errorf("after unblocking: %v", err)
	}
}

// groupsOf lists the groups u is a member of or invited to.
func groupsOf(t testing.TB, e *env, u user) []string {
	t.Helper()
	var out []string
	for _, c := range e.listAll(u) {
		if c.Kind == parleyv1.ConversationKind_CONVERSATION_KIND_GROUP {
			out = append(out, c.Id)
		}
	}
	return out
}
