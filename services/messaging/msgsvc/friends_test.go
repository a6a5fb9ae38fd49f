package msgsvc_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"

	"github.com/parleychat/parley/libs/proto/internalv1"
	"github.com/parleychat/parley/libs/rpc"
	"github.com/parleychat/parley/libs/subject"
	"github.com/parleychat/parley/libs/testenv"
	"github.com/parleychat/parley/protocol/convid"
	"github.com/parleychat/parley/protocol/errcode"
	"github.com/parleychat/parley/protocol/parleyv1"
)

const (
	alreadyFriends = parleyv1.ErrorCode_ERROR_CODE_ALREADY_FRIENDS
	blockedCode    = parleyv1.ErrorCode_ERROR_CODE_BLOCKED
	invalidArg     = parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT
)

// servePresence answers subject.PresenceUser: the users in online have one
// live session, everyone else none.
//
// STAND-IN for the presence service (services must not import each other);
// it answers the query as presence does. The real presence handler has its
// own tests in services/presence, and the end-to-end tests run messaging
// with the real presence.
func servePresence(t testing.TB, e *env, online ...user) {
	t.Helper()
	nc := testenv.Connect(t, e.ns)
	on := map[string]bool{}
	for _, u := range online {
		on[u.id] = true
	}
	_, err := nc.QueueSubscribe(subject.PresenceUser, subject.QueuePresence, func(m *nats.Msg) {
		var req internalv1.UserPresenceRequest
		if proto.Unmarshal(m.Data, &req) != nil {
			return
		}
		reply := &internalv1.UserPresenceReply{}
		if on[req.UserId] {
			reply.SessionIds = []string{"s-" + req.UserId}
		}
		_ = rpc.Respond(m, reply)
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
}

func (e *env) addFriend(u user, name string) error {
	return e.call(u, subject.MsgAddFriend, &parleyv1.AddFriendRequest{Username: name}, nil)
}

func (e *env) answerFriend(u user, name string, accept bool) error {
	return e.call(u, subject.MsgAnswerFriend, &parleyv1.AnswerFriendRequest{Username: name, Accept: accept}, nil)
}

func (e *env) removeFriend(u user, name string) error {
	return e.call(u, subject.MsgRemoveFriend, &parleyv1.RemoveFriendRequest{Username: name}, nil)
}

func (e *env) block(u user, name string) error {
	return e.call(u, subject.MsgBlock, &parleyv1.BlockRequest{Username: name}, nil)
}

func (e *env) unblock(u user, name string) error {
	return e.call(u, subject.MsgUnblock, &parleyv1.UnblockRequest{Username: name}, nil)
}

// friends renders u's friends list as sorted "Name:state" entries, with
// "+" for an online friend.
func (e *env) friends(t testing.TB, u user) string {
	t.Helper()
	var r parleyv1.FriendsReply
	if err := e.call(u, subject.MsgFriends, &parleyv1.FriendsRequest{}, &r); err != nil {
		t.Fatalf("friends of %s: %v", u.name, err)
	}
	var out []string
	for _, f := range r.Friends {
		s := f.Username + ":" + strings.ToLower(strings.TrimPrefix(f.State.String(), "FRIEND_STATE_"))
		if f.Online {
			s += "+"
		}
		out = append(out, s)
	}
	slices.Sort(out)
	return strings.Join(out, " ")
}

// recorder collects the events published on one subject, decoded as T.
type recorder[T proto.Message] struct {
	mu  sync.Mutex // guards got
	got []T
}

func record[T proto.Message](t testing.TB, e *env, subj string, newT func() T) *recorder[T] {
	t.Helper()
	r := &recorder[T]{}
	_, err := e.nc.Subscribe(subj, func(m *nats.Msg) {
		v := newT()
		if err := proto.Unmarshal(m.Data, v); err != nil {
			t.Errorf("undecodable event on %s: %v", subj, err)
			return
		}
		r.mu.Lock()
		r.got = append(r.got, v)
		r.mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return r
}

func (r *recorder[T]) all() []T {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got)
}

// friendEvents watches uid's friend events, rendered "KIND:Name".
func friendEvents(t testing.TB, e *env, u user) func() []string {
	r := record(t, e, subject.UserFriendEvents(u.id), func() *parleyv1.FriendEvent { return new(parleyv1.FriendEvent) })
	return func() []string {
		var out []string
		for _, ev := range r.all() {
			out = append(out, strings.TrimPrefix(ev.Kind.String(), "KIND_")+":"+ev.Username)
		}
		return out
	}
}

func isCode(err error, code parleyv1.ErrorCode) bool {
	var e *errcode.Error
	return errors.As(err, &e) && e.Code == code
}

func waitFor(t testing.TB, what string, get func() []string, want ...string) {
	t.Helper()
	testenv.Eventually(t, 5*time.Second, what, func() bool { return slices.Equal(get(), want) })
}

func wantList(t testing.TB, what, got, want string) {
	t.Helper()
	if got != want {
		t.Fatalf("%s: %q, want %q", what, got, want)
	}
}

func TestFriendRequestAcceptedShowsOnlineFriends(t *testing.T) {
	e := newEnv(t)
	e.start(t, testConfig())
	servePresence(t, e, bob) // bob is online, alice is not
	aliceEv, bobEv := friendEvents(t, e, alice), friendEvents(t, e, bob)

	if err := e.addFriend(alice, "bob"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "bob is asked", bobEv, "REQUEST:Alice")
	wantList(t, "alice's list", e.friends(t, alice), "Bob:outgoing")
	wantList(t, "bob's list", e.friends(t, bob), "Alice:incoming")

	if err := e.answerFriend(bob, "alice", true); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "alice learns of the acceptance", aliceEv, "ACCEPTED:Bob")
	wantList(t, "alice's list", e.friends(t, alice), "Bob:friend+")
	wantList(t, "bob's list", e.friends(t, bob), "Alice:friend")

	if err := e.removeFriend(alice, "bob"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "bob learns of the removal", bobEv, "REQUEST:Alice", "REMOVED:Alice")
	wantList(t, "alice's list", e.friends(t, alice), "")
	wantList(t, "bob's list", e.friends(t, bob), "")
}

func TestFriendRequestDeclinedAndWithdrawn(t *testing.T) {
	e := newEnv(t)
	e.start(t, testConfig())
	servePresence(t, e)
	aliceEv, bobEv := friendEvents(t, e, alice), friendEvents(t, e, bob)

	if err := e.addFriend(alice, "Bob"); err != nil {
		t.Fatal(err)
	}
	if err := e.answerFriend(bob, "alice", false); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "alice learns of the decline", aliceEv, "DECLINED:Bob")
	wantList(t, "alice's list", e.friends(t, alice), "")
	wantList(t, "bob's list", e.friends(t, bob), "")

	// Asking back after a decline starts over; the asker may withdraw.
	if err := e.addFriend(alice, "bob"); err != nil {
		t.Fatal(err)
	}
	if err := e.removeFriend(alice, "bob"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "bob sees the request come and go", bobEv, "REQUEST:Alice", "REQUEST:Alice", "REMOVED:Alice")
	wantList(t, "bob's list", e.friends(t, bob), "")
	wantCode(t, e.answerFriend(bob, "alice", true), notFound)
}

func TestAskingBackMakesFriends(t *testing.T) {
	e := newEnv(t)
	e.start(t, testConfig())
	servePresence(t, e, alice, bob)
	if err := e.addFriend(alice, "bob"); err != nil {
		t.Fatal(err)
	}
	if err := e.addFriend(bob, "alice"); err != nil {
		t.Fatal(err)
	}
	wantList(t, "alice's list", e.friends(t, alice), "Bob:friend+")
	wantList(t, "bob's list", e.friends(t, bob), "Alice:friend+")
}

// Crossing requests handled by two replicas at the same moment end in a
// friendship on both sides, every time.
func TestCrossingRequestsOnTwoReplicasMakeFriends(t *testing.T) {
	e := newEnv(t)
	e.start(t, testConfig())
	e.start(t, testConfig())
	servePresence(t, e)
	pairs := []struct{ a, b user }{{alice, bob}, {alice, carol}, {bob, carol}}
	for round := range 5 {
		var wg sync.WaitGroup
		for _, p := range pairs {
			wg.Go(func() {
				if err := e.addFriend(p.a, p.b.name); err != nil {
					t.Errorf("%s asks %s: %v", p.a.name, p.b.name, err)
				}
			})
			wg.Go(func() {
				if err := e.addFriend(p.b, p.a.name); err != nil && !isCode(err, alreadyFriends) {
					t.Errorf("%s asks %s: %v", p.b.name, p.a.name, err)
				}
			})
		}
		wg.Wait()
		wantList(t, fmt.Sprintf("round %d: alice's list", round), e.friends(t, alice), "Bob:friend Carol:friend")
		wantList(t, fmt.Sprintf("round %d: bob's list", round), e.friends(t, bob), "Alice:friend Carol:friend")
		wantList(t, fmt.Sprintf("round %d: carol's list", round), e.friends(t, carol), "Alice:friend Bob:friend")
		for _, p := range pairs {
			if err := e.removeFriend(p.a, p.b.name); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func TestFriendRules(t *testing.T) {
	e := newEnv(t)
	e.start(t, testConfig())
	servePresence(t, e)
	if err := e.addFriend(alice, "carol"); err != nil {
		t.Fatal(err)
	}
	if err := e.answerFriend(carol, "alice", true); err != nil {
		t.Fatal(err)
	}
	if err := e.block(bob, "carol"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		do   func() error
		want parleyv1.ErrorCode
	}{
		{"add an unknown user", func() error { return e.addFriend(alice, "nobody") }, notFound},
		{"add yourself", func() error { return e.addFriend(alice, "alice") }, invalidArg},
		{"add without a name", func() error { return e.addFriend(alice, "") }, invalidArg},
		{"add a friend", func() error { return e.addFriend(alice, "carol") }, alreadyFriends},
		{"add someone who blocked you", func() error { return e.addFriend(carol, "bob") }, blockedCode},
		{"add someone you blocked", func() error { return e.addFriend(bob, "carol") }, invalidArg},
		{"answer without a request", func() error { return e.answerFriend(alice, "bob", true) }, notFound},
		{"answer a friend", func() error { return e.answerFriend(alice, "carol", true) }, notFound},
		{"remove a stranger", func() error { return e.removeFriend(alice, "bob") }, notFound},
		{"block yourself", func() error { return e.block(alice, "alice") }, invalidArg},
		{"block an unknown user", func() error { return e.block(alice, "nobody") }, notFound},
	} {
		t.Run(tc.name, func(t *testing.T) { wantCode(t, tc.do(), tc.want) })
	}
	wantList(t, "alice's list", e.friends(t, alice), "Carol:friend")
	wantList(t, "bob's list", e.friends(t, bob), "Carol:blocked")
	wantList(t, "carol's list", e.friends(t, carol), "Alice:friend")
	if err := call(e, alice, subject.MsgFriends, nil); !isCode(err, parleyv1.ErrorCode_ERROR_CODE_UNAUTHENTICATED) {
		t.Fatalf("friends without identity: %v", err)
	}
}

// call makes a request without the gateway's identity headers when u is
// the zero user.
func call(e *env, u user, subj string, reply proto.Message) error {
	var h nats.Header
	if u.id == "" {
		h = nats.Header{}
	}
	return rpc.Request(context.Background(), e.nc, subj, h, &parleyv1.FriendsRequest{}, reply)
}

func TestBlockingStopsPrivateMessagesAndEndsFriendship(t *testing.T) {
	e := newEnv(t)
	e.start(t, testConfig())
	servePresence(t, e)
	aliceEv := friendEvents(t, e, alice)
	dm := directID(alice.id, bob.id)

	// Strangers may message each other: friendship is not needed.
	e.send(t, alice, dm, "hello stranger")
	if err := e.addFriend(alice, "bob"); err != nil {
		t.Fatal(err)
	}
	if err := e.answerFriend(bob, "alice", true); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "accepted", aliceEv, "ACCEPTED:Bob")

	if err := e.block(bob, "alice"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "alice sees the friendship end", aliceEv, "ACCEPTED:Bob", "REMOVED:Bob")
	wantList(t, "alice's list", e.friends(t, alice), "")
	wantList(t, "bob's list", e.friends(t, bob), "Alice:blocked")

	stored := e.storedCount(t)
	_, err := e.sendReq(alice, &parleyv1.SendRequest{Conversation: dm, Text: "are you there?", ClientKey: e.key()})
	wantCode(t, err, blockedCode)
	_, err = e.sendReq(alice, &parleyv1.SendRequest{ToUsername: "bob", Text: "are you there?", ClientKey: e.key()})
	wantCode(t, err, blockedCode)
	wantCode(t, e.addFriend(alice, "bob"), blockedCode)
	if n := e.storedCount(t); n != stored {
		t.Fatalf("stored messages went from %d to %d while blocked", stored, n)
	}
	if h := e.allHistory(t, bob, dm); len(h) != 1 {
		t.Fatalf("bob's history has %d messages, want the 1 from before the block", len(h))
	}
	// The blocker may still write; the room is not affected.
	e.send(t, bob, dm, "I can still talk")
	e.send(t, alice, convid.PublicRoom, "in the room")

	if err := e.unblock(bob, "alice"); err != nil {
		t.Fatal(err)
	}
	if err := e.unblock(bob, "alice"); err != nil {
		t.Fatalf("unblocking twice: %v", err)
	}
	wantList(t, "bob's list after unblock", e.friends(t, bob), "")
	e.send(t, alice, dm, "thanks")
	if h := e.allHistory(t, bob, dm); len(h) != 3 {
		t.Fatalf("bob's history has %d messages, want 3", len(h))
	}
}

func TestBlockingDropsPendingRequests(t *testing.T) {
	e := newEnv(t)
	e.start(t, testConfig())
	servePresence(t, e)
	aliceEv := friendEvents(t, e, alice)
	if err := e.addFriend(alice, "bob"); err != nil {
		t.Fatal(err)
	}
	if err := e.block(bob, "alice"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "alice's request is declined", aliceEv, "DECLINED:Bob")
	wantList(t, "alice's list", e.friends(t, alice), "")
	wantList(t, "bob's list", e.friends(t, bob), "Alice:blocked")
}

// Without a presence service the list still answers, friends offline.
func TestFriendsWithoutPresenceAreOffline(t *testing.T) {
	e := newEnv(t)
	cfg := testConfig()
	cfg.PresenceTimeout = 200 * time.Millisecond
	e.start(t, cfg)
	if err := e.addFriend(alice, "bob"); err != nil {
		t.Fatal(err)
	}
	if err := e.addFriend(bob, "alice"); err != nil {
		t.Fatal(err)
	}
	wantList(t, "alice's list", e.friends(t, alice), "Bob:friend")
}

func TestReadReceipts(t *testing.T) {
	e := newEnv(t)
	e.start(t, testConfig())
	dm := directID(alice.id, bob.id)
	aliceRc := record(t, e, subject.UserReceipts(alice.id), func() *parleyv1.ReceiptEvent { return new(parleyv1.ReceiptEvent) })
	bobRc := record(t, e, subject.UserReceipts(bob.id), func() *parleyv1.ReceiptEvent { return new(parleyv1.ReceiptEvent) })
	receipts := func(r *recorder[*parleyv1.ReceiptEvent]) func() []string {
		return func() []string {
			var out []string
			for _, ev := range r.all() {
				out = append(out, fmt.Sprintf("%s %s %d", ev.Conversation, ev.UserId, ev.Seq))
			}
			return out
		}
	}
	e.send(t, alice, dm, "one")
	e.send(t, alice, dm, "two")
	e.send(t, alice, convid.PublicRoom, "room")

	if err := e.ack(bob, dm, 2); err != nil {
		t.Fatal(err)
	}
	if err := e.ack(bob, dm, 1); err != nil { // not forward: no receipt
		t.Fatal(err)
	}
	if err := e.ack(bob, convid.PublicRoom, 1); err != nil { // rooms have no receipts
		t.Fatal(err)
	}
	waitFor(t, "alice gets bob's receipt", receipts(aliceRc), dm+" "+bob.id+" 2")
	if c := e.conversations(t, alice)[dm]; c.PeerAckedSeq != 2 || c.AckedSeq != 0 {
		t.Fatalf("alice's view: acked %d, peer acked %d; want 0 and 2", c.AckedSeq, c.PeerAckedSeq)
	}
	if c := e.conversations(t, bob)[dm]; c.PeerAckedSeq != 0 || c.AckedSeq != 2 {
		t.Fatalf("bob's view: acked %d, peer acked %d; want 2 and 0", c.AckedSeq, c.PeerAckedSeq)
	}
	// Flush a marker through bob's subject to be sure nothing else came.
	if err := e.ack(alice, dm, 2); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "bob gets alice's receipt only", receipts(bobRc), dm+" "+alice.id+" 2")
	if got := receipts(aliceRc)(); len(got) != 1 {
		t.Fatalf("alice got receipts %v, want one", got)
	}
}
