package sdktest

import (
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parleychat/parley/clients/internal/parleytest"
	"github.com/parleychat/parley/clients/parley"
)

// social is a logged-in client that records every event.
type social struct {
	*parley.Client
	t    *testing.T
	sess *parley.Session

	mu   sync.Mutex // guards evs, cond
	evs  []parley.Event
	cond chan struct{} // closed and replaced on every event
}

func newSocial(t *testing.T, addr, user string, opts ...parley.Option) *social {
	t.Helper()
	c := dial(t, addr, append([]parley.Option{parley.WithPresenceFeed(false)}, opts...)...)
	s := &social{Client: c, t: t, cond: make(chan struct{})}
	s.sess = register(t, c, user)
	go func() {
		for ev := range c.Events() {
			s.mu.Lock()
			s.evs = append(s.evs, ev)
			close(s.cond)
			s.cond = make(chan struct{})
			s.mu.Unlock()
		}
	}()
	return s
}

// events returns the recorded events of type T.
func eventsOf[T parley.Event](s *social) []T {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []T
	for _, ev := range s.evs {
		if e, ok := ev.(T); ok {
			out = append(out, e)
		}
	}
	return out
}

// waitEvent waits until an event of type T satisfying ok was recorded.
func waitEvent[T parley.Event](s *social, what string, ok func(T) bool) T {
	s.t.Helper()
	timeout := time.After(wait)
	for {
		s.mu.Lock()
		cond := s.cond
		s.mu.Unlock()
		for _, e := range eventsOf[T](s) {
			if ok(e) {
				return e
			}
		}
		select {
		case <-cond:
		case <-timeout:
			var zero T
			s.t.Fatalf("%s: no %T within %v", what, zero, wait)
		}
	}
}

// friendList renders the friends list as sorted "name:state" with "+" for
// online.
func (s *social) friendList() string {
	s.t.Helper()
	fs, err := s.Friends(ctxT(s.t))
	if err != nil {
		s.t.Fatalf("friends: %v", err)
	}
	var out []string
	for _, f := range fs {
		e := f.Username + ":" + f.State.String()
		if f.Online {
			e += "+"
		}
		out = append(out, e)
	}
	slices.Sort(out)
	return strings.Join(out, " ")
}

func friendEv(kind parley.FriendEventKind, from string) func(parley.FriendEvent) bool {
	return func(e parley.FriendEvent) bool { return e.Kind == kind && e.Username == from }
}

// TestFriends: a request reaches the other user, who accepts; both list
// each other as online friends. A declined request leaves both lists
// empty.
func TestFriends(t *testing.T) {
	p := parleytest.Start(t, nil)
	ctx := ctxT(t)
	alice := newSocial(t, p.TCPAddr(), "alice")
	bob := newSocial(t, p.TCPAddr(), "bob")
	carol := newSocial(t, p.TCPAddr(), "carol")

	if err := alice.AddFriend(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	ev := waitEvent(bob, "bob is asked", friendEv(parley.FriendEventRequest, "alice"))
	if ev.UserID != alice.sess.UserID {
		t.Errorf("request event %+v", ev)
	}
	if got := bob.friendList(); got != "alice:incoming" {
		t.Errorf("bob's list %q", got)
	}
	if err := bob.AnswerFriend(ctx, "alice", true); err != nil {
		t.Fatal(err)
	}
	waitEvent(alice, "alice hears back", friendEv(parley.FriendEventAccepted, "bob"))
	if got := alice.friendList(); got != "bob:friend+" {
		t.Errorf("alice's list %q", got)
	}
	if got := bob.friendList(); got != "alice:friend+" {
		t.Errorf("bob's list %q", got)
	}
	if err := alice.AddFriend(ctx, "bob"); !errors.Is(err, parley.ErrAlreadyFriends) {
		t.Errorf("adding a friend again: %v", err)
	}
	if err := alice.AddFriend(ctx, "nobody"); !errors.Is(err, parley.ErrNotFound) {
		t.Errorf("adding an unknown user: %v", err)
	}

	// Declined.
	if err := carol.AddFriend(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	waitEvent(alice, "alice is asked", friendEv(parley.FriendEventRequest, "carol"))
	if err := alice.AnswerFriend(ctx, "carol", false); err != nil {
		t.Fatal(err)
	}
	waitEvent(carol, "carol hears back", friendEv(parley.FriendEventDeclined, "alice"))
	if got := carol.friendList(); got != "" {
		t.Errorf("carol's list %q", got)
	}
	if got := alice.friendList(); got != "bob:friend+" {
		t.Errorf("alice's list %q", got)
	}
	if err := alice.AnswerFriend(ctx, "carol", true); !errors.Is(err, parley.ErrNotFound) {
		t.Errorf("answering twice: %v", err)
	}

	// Removed: bob sees it, online state goes with the friendship.
	if err := alice.RemoveFriend(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	waitEvent(bob, "bob sees the end", friendEv(parley.FriendEventRemoved, "alice"))
	if got := bob.friendList(); got != "" {
		t.Errorf("bob's list %q", got)
	}
}

// TestBlock: a blocked user's private messages are refused and not
// stored, their friend requests too; the blocker sees nothing. Unblocking
// lets messages through again.
func TestBlock(t *testing.T) {
	p := parleytest.Start(t, nil)
	ctx := ctxT(t)
	alice := newSocial(t, p.TCPAddr(), "alice")
	bob := newSocial(t, p.TCPAddr(), "bob")
	dm := dmID(alice.sess.UserID, bob.sess.UserID)

	if _, err := bob.SendTo(ctx, "alice", "hi, stranger"); err != nil {
		t.Fatalf("strangers may chat: %v", err)
	}
	if err := alice.Block(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.SendTo(ctx, "alice", "why?"); !errors.Is(err, parley.ErrBlocked) {
		t.Errorf("send to a blocker: %v", err)
	}
	if _, err := bob.Send(ctx, dm, "why?"); !errors.Is(err, parley.ErrBlocked) {
		t.Errorf("send in the dm to a blocker: %v", err)
	}
	if err := bob.AddFriend(ctx, "alice"); !errors.Is(err, parley.ErrBlocked) {
		t.Errorf("friend request to a blocker: %v", err)
	}
	hist, _, err := alice.History(ctx, dm, 0, 50)
	if err != nil || len(hist) != 1 || hist[0].Text != "hi, stranger" {
		t.Fatalf("alice's history %s, %v", brief(hist), err)
	}
	if got := alice.friendList(); got != "bob:blocked" {
		t.Errorf("alice's list %q", got)
	}
	if err := alice.Unblock(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.SendTo(ctx, "alice", "thanks"); err != nil {
		t.Fatalf("after unblock: %v", err)
	}
	hist, _, err = alice.History(ctx, dm, 0, 50)
	if err != nil || len(hist) != 2 {
		t.Fatalf("alice's history %s, %v", brief(hist), err)
	}
}

// TestTypingAndReceipts: a typing notice reaches the other member only;
// an ack sends the other member a receipt and shows in their conversation
// list as PeerAckedSeq.
func TestTypingAndReceipts(t *testing.T) {
	p := parleytest.Start(t, nil)
	ctx := ctxT(t)
	alice := newSocial(t, p.TCPAddr(), "alice")
	bob := newSocial(t, p.TCPAddr(), "bob")
	carol := newSocial(t, p.TCPAddr(), "carol")
	dm := dmID(alice.sess.UserID, bob.sess.UserID)

	if err := alice.Typing(ctx, dm); err != nil {
		t.Fatal(err)
	}
	ev := waitEvent(bob, "bob sees alice typing", func(e parley.TypingEvent) bool { return e.Conversation == dm })
	if ev.Username != "alice" || ev.UserID != alice.sess.UserID {
		t.Errorf("typing event %+v", ev)
	}
	if err := alice.Typing(ctx, parley.PublicRoom); !errors.Is(err, parley.ErrInvalidArgument) {
		t.Errorf("typing in the room: %v", err)
	}
	if err := carol.Typing(ctx, dm); !errors.Is(err, parley.ErrPermissionDenied) {
		t.Errorf("typing in others' chat: %v", err)
	}

	m, err := alice.Send(ctx, dm, "read me")
	if err != nil {
		t.Fatal(err)
	}
	if err := bob.Ack(ctx, dm, m.Seq); err != nil {
		t.Fatal(err)
	}
	rc := waitEvent(alice, "alice gets the receipt", func(e parley.ReceiptEvent) bool { return e.Conversation == dm })
	if rc.UserID != bob.sess.UserID || rc.Seq != m.Seq {
		t.Errorf("receipt %+v", rc)
	}
	convs, err := alice.Conversations(ctx)
	if err != nil {
		t.Fatal(err)
	}
	idx := slices.IndexFunc(convs, func(c parley.Conversation) bool { return c.ID == dm })
	if idx < 0 || convs[idx].PeerAckedSeq != m.Seq {
		t.Errorf("alice's conversations %+v", convs)
	}
	// Nothing of this reached alice as typing, nor carol at all.
	if got := eventsOf[parley.TypingEvent](alice); len(got) != 0 {
		t.Errorf("alice got typing events %+v", got)
	}
	if n := len(eventsOf[parley.TypingEvent](carol)) + len(eventsOf[parley.ReceiptEvent](carol)); n != 0 {
		t.Errorf("carol got %d typing/receipt events", n)
	}
}
