package sdktest

import (
	"fmt"
	"slices"
	"testing"

	"github.com/parleychat/parley/clients/internal/parleytest"
	"github.com/parleychat/parley/clients/parley"
)

// TestConversationsPagesAndSync: with pages of 3 (the server pages the
// list, docs/protocol.md §15.1), Conversations reads every page and lists
// the public room first, then the rest in ascending id order; after a
// break, the sync reads the list the same way and catches up the messages
// missed in conversations of every page, each once, in order.
func TestConversationsPagesAndSync(t *testing.T) {
	p := parleytest.Start(t, nil)
	relay := parleytest.NewRelay(t, p.HostPort())
	ctx := ctxT(t)
	alice := chat(t, relay.Addr(), "alice", true, parley.WithPageSize(3))
	bob := chat(t, p.TCPAddr(), "bob", true, parley.WithPageSize(3))
	alice.waitSynced(1)

	dm := dmID(alice.sess.UserID, bob.sess.UserID)
	if _, err := bob.SendTo(ctx, "alice", "hello"); err != nil {
		t.Fatal(err)
	}
	var groups []string
	for i := range 5 {
		g, err := alice.CreateGroup(ctx, fmt.Sprint("group ", i), "bob")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := bob.JoinGroup(ctx, g.ID); err != nil {
			t.Fatal(err)
		}
		groups = append(groups, g.ID)
	}
	rest := append([]string{dm}, groups...)
	slices.Sort(rest)
	want := append([]string{parley.PublicRoom}, rest...) // 7: pages of 3, 3, 1

	convs, err := alice.Conversations(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := ids(convs); !slices.Equal(got, want) {
		t.Fatalf("conversations %v, want %v", got, want)
	}
	// Alice has everything so far: the message, and per group its
	// creation, bob's invitation and bob joining.
	alice.inConv(dm, 1)
	for _, g := range groups {
		alice.inConv(g, 3)
	}

	// Alice hears nothing while bob writes in every conversation; the
	// reconnect's sync finds it all.
	relay.StallReplies()
	before := relay.HistoryRequests()
	for _, conv := range rest {
		if _, err := bob.Send(ctx, conv, "while you were away"); err != nil {
			t.Fatal(err)
		}
	}
	relay.Cut()
	alice.waitSynced(2)
	checkInOrder(t, alice.inConv(dm, 2), 1, 2)
	for _, g := range groups {
		checkInOrder(t, alice.inConv(g, 4), 1, 4)
	}
	if relay.HistoryRequests() == before {
		t.Error("caught up without reading history: the messages came another way")
	}
	convs, err = alice.Conversations(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range convs[1:] {
		if c.Unread() == 0 {
			t.Errorf("%s: nothing unread after bob's message", c.ID)
		}
	}
}

func ids(cs []parley.Conversation) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.ID
	}
	return out
}
