package sdktest

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/parleychat/parley/clients/internal/parleytest"
	"github.com/parleychat/parley/clients/parley"
)

// TestGroupChat: a group's messages reach its members only; an outsider
// can neither read nor post; an invitation reaches the invitee, who joins
// and from then on receives the group's messages; every change is a system
// message in the history.
func TestGroupChat(t *testing.T) {
	p := parleytest.Start(t, nil)
	ctx := ctxT(t)
	alice := chat(t, p.TCPAddr(), "alice", true)
	bob := chat(t, p.TCPAddr(), "bob", true)
	carol := chat(t, p.TCPAddr(), "carol", true)
	for _, c := range []*chatter{alice, bob, carol} {
		c.waitSynced(1)
	}

	g, err := alice.CreateGroup(ctx, "Team", "bob")
	if err != nil || g.Kind != parley.ConversationGroup || g.Title != "Team" || g.OwnerID != alice.sess.UserID || g.Invited ||
		!strings.HasPrefix(g.ID, "group.") {
		t.Fatalf("create group = %+v, %v", g, err)
	}
	// Bob sees the invitation, live and in his list.
	inv := bob.waitFor("bob's invitation", func(ms []parley.Message, _ int) bool {
		got := only(ms, g.ID)
		return len(got) > 0 && got[len(got)-1].Text == "alice invited bob"
	})
	if m := only(inv, g.ID)[len(only(inv, g.ID))-1]; !m.System || m.SenderID != alice.sess.UserID {
		t.Errorf("invitation message %+v", m)
	}
	convs, err := bob.Conversations(ctx)
	if err != nil || len(convs) != 2 || convs[1].ID != g.ID || !convs[1].Invited || convs[1].Title != "Team" || convs[1].OwnerID != alice.sess.UserID {
		t.Fatalf("bob's conversations = %+v, %v", convs, err)
	}
	if _, _, err := bob.History(ctx, g.ID, 0, 10); !errors.Is(err, parley.ErrPermissionDenied) {
		t.Errorf("invitee reads the group: %v", err)
	}
	if j, err := bob.JoinGroup(ctx, g.ID); err != nil || j.Invited {
		t.Fatalf("bob joins: %+v, %v", j, err)
	}
	if _, err := bob.JoinGroup(ctx, g.ID); !errors.Is(err, parley.ErrAlreadyMember) {
		t.Errorf("joining twice: %v", err)
	}
	if _, err := alice.Send(ctx, g.ID, "hi team"); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.Send(ctx, g.ID, "hi alice"); err != nil {
		t.Fatal(err)
	}
	want := []string{"alice created the group \"Team\"", "alice invited bob", "bob joined", "hi team", "hi alice"}
	if got := texts(alice.inConv(g.ID, 5)); !reflect.DeepEqual(got, want) {
		t.Errorf("alice received %q, want %q", got, want)
	}
	bobs := bob.waitFor("bob's group messages", func(ms []parley.Message, _ int) bool {
		got := only(ms, g.ID)
		return len(got) > 0 && got[len(got)-1].Text == "hi alice"
	})
	bg := only(bobs, g.ID)
	checkInOrder(t, bg, bg[0].Seq, 5)
	if got := texts(bg[len(bg)-3:]); !reflect.DeepEqual(got, want[2:]) {
		t.Errorf("bob received %q", texts(bg))
	}

	// Carol, outside: nothing reaches her, she can neither read nor post.
	if _, err := alice.Send(ctx, parley.PublicRoom, "marker"); err != nil {
		t.Fatal(err)
	}
	carol.inConv(parley.PublicRoom, 1)
	if got := only(carol.received(), g.ID); len(got) != 0 {
		t.Errorf("carol received the group: %s", brief(got))
	}
	if _, _, err := carol.History(ctx, g.ID, 0, 10); !errors.Is(err, parley.ErrPermissionDenied) {
		t.Errorf("carol reads the group: %v", err)
	}
	if _, err := carol.Send(ctx, g.ID, "let me in"); !errors.Is(err, parley.ErrPermissionDenied) {
		t.Errorf("carol posts in the group: %v", err)
	}
	if _, err := carol.Members(ctx, g.ID); !errors.Is(err, parley.ErrPermissionDenied) {
		t.Errorf("carol lists the members: %v", err)
	}
	if err := bob.RemoveMember(ctx, g.ID, "alice"); !errors.Is(err, parley.ErrPermissionDenied) {
		t.Errorf("a member (not the owner) removes: %v", err)
	}

	// Bob invites carol; she joins and takes part.
	ms, err := bob.Invite(ctx, g.ID, "carol")
	if err != nil || len(ms) != 3 || !ms[0].Owner || ms[0].Username != "alice" || ms[1].Username != "bob" || !ms[2].Invited || ms[2].Username != "carol" {
		t.Fatalf("invite = %+v, %v", ms, err)
	}
	carol.waitFor("carol's invitation", func(ms []parley.Message, _ int) bool {
		got := only(ms, g.ID)
		return len(got) > 0 && got[len(got)-1].Text == "bob invited carol" && got[len(got)-1].System
	})
	if _, err := carol.JoinGroup(ctx, g.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := carol.Send(ctx, g.ID, "thanks"); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*chatter{alice, bob, carol} {
		got := c.waitFor(c.sess.Username+" sees carol", func(ms []parley.Message, _ int) bool {
			got := only(ms, g.ID)
			return len(got) > 0 && got[len(got)-1].Text == "thanks"
		})
		cg := only(got, g.ID)
		checkInOrder(t, cg, cg[0].Seq, 8)
	}
	if r, err := alice.RenameGroup(ctx, g.ID, "Team 2"); err != nil || r.Title != "Team 2" {
		t.Fatalf("rename: %+v, %v", r, err)
	}
	if _, err := alice.RenameGroup(ctx, g.ID, ""); !errors.Is(err, parley.ErrInvalidName) {
		t.Errorf("empty name: %v", err)
	}
	if err := alice.RemoveMember(ctx, g.ID, "bob"); err != nil {
		t.Fatal(err)
	}
	if err := carol.LeaveGroup(ctx, g.ID); err != nil {
		t.Fatal(err)
	}
	ms, err = alice.Members(ctx, g.ID)
	if err != nil || len(ms) != 1 || ms[0].Username != "alice" || !ms[0].Owner {
		t.Fatalf("members = %+v, %v", ms, err)
	}

	// The history tells the whole story, system messages marked.
	h, _, err := alice.History(ctx, g.ID, 0, 50)
	if err != nil {
		t.Fatal(err)
	}
	wantAll := []string{"alice created the group \"Team\"", "alice invited bob", "bob joined", "hi team", "hi alice",
		"bob invited carol", "carol joined", "thanks", "alice renamed the group to \"Team 2\"", "alice removed bob", "carol left"}
	if got := texts(h); !reflect.DeepEqual(got, wantAll) {
		t.Errorf("history %q\nwant %q", got, wantAll)
	}
	for _, m := range h {
		if m.System == (m.Text == "hi team" || m.Text == "hi alice" || m.Text == "thanks") {
			t.Errorf("message %q: System = %v", m.Text, m.System)
		}
	}
	// Bob learns he was removed, and cannot read on.
	bob.waitFor("bob's removal", func(ms []parley.Message, _ int) bool {
		got := only(ms, g.ID)
		return got[len(got)-1].Text == "alice removed bob"
	})
	if _, _, err := bob.History(ctx, g.ID, 0, 10); !errors.Is(err, parley.ErrPermissionDenied) {
		t.Errorf("removed member reads: %v", err)
	}
}
