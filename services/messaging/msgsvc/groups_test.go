package msgsvc_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/parleychat/parley/libs/rpc"
	"github.com/parleychat/parley/libs/subject"
	"github.com/parleychat/parley/libs/testenv"
	"github.com/parleychat/parley/protocol/parleyv1"
)

const (
	denied        = parleyv1.ErrorCode_ERROR_CODE_PERMISSION_DENIED
	notFound      = parleyv1.ErrorCode_ERROR_CODE_NOT_FOUND
	alreadyMember = parleyv1.ErrorCode_ERROR_CODE_ALREADY_MEMBER
	invalidName   = parleyv1.ErrorCode_ERROR_CODE_INVALID_NAME
)

// call is one group request as the gateway makes it.
func (e *env) call(u user, subj string, req, reply proto.Message) error {
	return rpc.Request(context.Background(), e.nc, subj, header(u), req, reply)
}

func (e *env) createGroup(t testing.TB, u user, name string, invite ...string) *parleyv1.Conversation {
	t.Helper()
	var c parleyv1.Conversation
	if err := e.call(u, subject.MsgCreateGroup, &parleyv1.CreateGroupRequest{Name: name, Usernames: invite}, &c); err != nil {
		t.Fatalf("%s creates %q: %v", u.name, name, err)
	}
	return &c
}

func (e *env) join(u user, conv string) (*parleyv1.Conversation, error) {
	var c parleyv1.Conversation
	err := e.call(u, subject.MsgJoinGroup, &parleyv1.JoinGroupRequest{Conversation: conv}, &c)
	return &c, err
}

func (e *env) invite(u user, conv string, names ...string) (*parleyv1.MembersReply, error) {
	var r parleyv1.MembersReply
	err := e.call(u, subject.MsgInvite, &parleyv1.InviteRequest{Conversation: conv, Usernames: names}, &r)
	return &r, err
}

func (e *env) leave(u user, conv string) error {
	return e.call(u, subject.MsgLeaveGroup, &parleyv1.LeaveGroupRequest{Conversation: conv}, nil)
}

func (e *env) remove(u user, conv, name string) error {
	return e.call(u, subject.MsgRemoveMember, &parleyv1.RemoveMemberRequest{Conversation: conv, Username: name}, nil)
}

func (e *env) rename(u user, conv, name string) (*parleyv1.Conversation, error) {
	var c parleyv1.Conversation
	err := e.call(u, subject.MsgRenameGroup, &parleyv1.RenameGroupRequest{Conversation: conv, Name: name}, &c)
	return &c, err
}

func (e *env) members(u user, conv string) ([]*parleyv1.Member, error) {
	var r parleyv1.MembersReply
	err := e.call(u, subject.MsgMembers, &parleyv1.MembersRequest{Conversation: conv}, &r)
	return r.Members, err
}

// memberList renders members as "Name" with "*" for the owner and "?"
// for an invitation, in reply order.
func memberList(ms []*parleyv1.Member) string {
	var out []string
	for _, m := range ms {
		s := m.Username
		if m.Owner {
			s += "*"
		}
		if m.Invited {
			s += "?"
		}
		out = append(out, s)
	}
	return strings.Join(out, " ")
}

// texts renders messages as "seq:text" ("seq!text" for system messages).
func texts(ms []*parleyv1.Message) []string {
	var out []string
	for _, m := range ms {
		sep := ":"
		if m.System {
			sep = "!"
		}
		out = append(out, fmt.Sprintf("%d%s%s", m.Seq, sep, m.Text))
	}
	return out
}

// A group's messages reach its members only: an invitee gets the system
// message of their invitation and nothing else until they join; an
// outsider gets nothing and may not read or post.
func TestGroupDeliveryAndHistory(t *testing.T) {
	e := newEnv(t)
	e.start(t, testConfig())
	toAlice, toBob, toCarol := e.watch(t, subject.UserMessages(alice.id)), e.watch(t, subject.UserMessages(bob.id)), e.watch(t, subject.UserMessages(carol.id))

	g := e.createGroup(t, alice, "  Team 🚀  ", "bob")
	if !strings.HasPrefix(g.Id, "group.g") || len(g.Id) != len("group.g")+20 || g.Kind != parleyv1.ConversationKind_CONVERSATION_KIND_GROUP ||
		g.Title != "Team 🚀" || g.OwnerId != alice.id || g.Invited {
		t.Fatalf("created %v", g)
	}

	// Bob is invited: he sees the group in his list, marked, and can do
	// nothing in it but join or decline.
	bc := e.conversations(t, bob)[g.Id]
	if bc == nil || !bc.Invited || bc.Title != "Team 🚀" || bc.OwnerId != alice.id || bc.Kind != parleyv1.ConversationKind_CONVERSATION_KIND_GROUP {
		t.Fatalf("bob's entry %v", bc)
	}
	_, err := e.history(bob, &parleyv1.HistoryRequest{Conversation: g.Id})
	wantCode(t, err, denied)
	_, err = e.sendReq(bob, &parleyv1.SendRequest{Conversation: g.Id, Text: "early", ClientKey: e.key()})
	wantCode(t, err, denied)
	wantCode(t, e.ack(bob, g.Id, 1), denied)
	_, err = e.members(bob, g.Id)
	wantCode(t, err, denied)
	_, err = e.invite(bob, g.Id, "carol")
	wantCode(t, err, denied)

	hello := e.send(t, alice, g.Id, "hello team")

	j, err := e.join(bob, g.Id)
	if err != nil || j.Invited || j.Title != "Team 🚀" || j.LastSeq != 4 {
		t.Fatalf("join: %v %v", j, err)
	}
	reply := e.send(t, bob, g.Id, "hi alice")

	// Carol, never invited, sees and reads nothing.
	if _, ok := e.conversations(t, carol)[g.Id]; ok {
		t.Errorf("carol lists the group")
	}
	for _, err := range []error{
		func() error { _, err := e.history(carol, &parleyv1.HistoryRequest{Conversation: g.Id}); return err }(),
		func() error {
			_, err := e.sendReq(carol, &parleyv1.SendRequest{Conversation: g.Id, Text: "x", ClientKey: e.key()})
			return err
		}(),
		e.ack(carol, g.Id, 1),
		func() error { _, err := e.members(carol, g.Id); return err }(),
		func() error { _, err := e.join(carol, g.Id); return err }(),
		e.leave(carol, g.Id),
	} {
		wantCode(t, err, denied)
	}
	// Unknown groups are NOT_FOUND.
	_, err = e.history(alice, &parleyv1.HistoryRequest{Conversation: "group.gaaaaaaaaaaaaaaaaaaaa"})
	wantCode(t, err, notFound)
	_, err = e.join(alice, "group.nonsense")
	wantCode(t, err, notFound)

	marker := e.send(t, alice, "dm.ualice.ucarol", "marker")
	testenv.Eventually(t, 5*time.Second, "events delivered", func() bool {
		return len(toAlice.get()) == 6 && len(toBob.get()) == 3 && len(toCarol.get()) == 1
	})
	want := []string{"1!Alice created the group \"Team 🚀\"", "2!Alice invited Bob", "3:hello team", "4!Bob joined", "5:hi alice"}
	if got := texts(toAlice.get()[:5]); !slices.Equal(got, want) {
		t.Errorf("alice's events %q, want %q", got, want)
	}
	if got, want := texts(toBob.get()), []string{want[1], want[3], want[4]}; !slices.Equal(got, want) {
		t.Errorf("bob's events %q, want %q (no message before he joined but his invitation)", got, want)
	}
	if got := toCarol.get(); !proto.Equal(got[0], marker) {
		t.Errorf("carol got %v, want only the marker", got)
	}

	// History: everything in order, system messages marked with who
	// caused them; what was delivered is what is stored.
	h := e.allHistory(t, bob, g.Id)
	if got := texts(h); !slices.Equal(got, want) {
		t.Errorf("history %q, want %q", got, want)
	}
	if h[1].SenderId != alice.id || h[3].SenderId != bob.id || h[3].SenderName != "Bob" {
		t.Errorf("system message senders: %v / %v", h[1], h[3])
	}
	if !proto.Equal(h[2], hello) || !proto.Equal(h[4], reply) {
		t.Errorf("stored %v %v, sent %v %v", h[2], h[4], hello, reply)
	}

	// Acks and unread counts work as in any conversation.
	if err := e.ack(bob, g.Id, 4); err != nil {
		t.Fatal(err)
	}
	if c := e.conversations(t, bob)[g.Id]; c.Invited || c.LastSeq != 5 || c.AckedSeq != 4 {
		t.Errorf("bob's entry after joining %v", c)
	}
}

// The membership rules, in one group's life.
func TestGroupMembershipRules(t *testing.T) {
	e := newEnv(t)
	e.start(t, testConfig())
	g := e.createGroup(t, alice, "Club", "bob", "carol", "Bob")
	if ms, err := e.members(alice, g.Id); err != nil || memberList(ms) != "Alice* Bob? Carol?" {
		t.Fatalf("members %q %v", memberList(ms), err)
	}
	if _, err := e.join(bob, g.Id); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name string
		do   func() error
		code parleyv1.ErrorCode // 0: succeeds
	}{
		{"join twice", func() error { _, err := e.join(bob, g.Id); return err }, alreadyMember},
		{"invite a member", func() error { _, err := e.invite(alice, g.Id, "carol", "bob"); return err }, alreadyMember},
		{"invite the inviter", func() error { _, err := e.invite(bob, g.Id, "alice"); return err }, alreadyMember},
		{"invite an unknown user", func() error { _, err := e.invite(bob, g.Id, "nobody"); return err }, notFound},
		{"invite nobody", func() error { _, err := e.invite(bob, g.Id); return err }, parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT},
		{"re-invite an invitee", func() error { _, err := e.invite(bob, g.Id, "carol"); return err }, 0},
		{"member removes", func() error { return e.remove(bob, g.Id, "carol") }, denied},
		{"member renames", func() error { _, err := e.rename(bob, g.Id, "Mine"); return err }, denied},
		{"invitee removes", func() error { return e.remove(carol, g.Id, "bob") }, denied},
		{"owner removes an unknown user", func() error { return e.remove(alice, g.Id, "nobody") }, notFound},
		{"owner removes themself", func() error { return e.remove(alice, g.Id, "alice") }, parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT},
		{"empty name", func() error { _, err := e.rename(alice, g.Id, "   "); return err }, invalidName},
		{"65 characters", func() error { _, err := e.rename(alice, g.Id, strings.Repeat("é", 65)); return err }, invalidName},
		{"line break", func() error { _, err := e.rename(alice, g.Id, "a\nb"); return err }, invalidName},
		{"control character", func() error { _, err := e.rename(alice, g.Id, "a\x07b"); return err }, invalidName},
		{"64 characters", func() error { _, err := e.rename(alice, g.Id, strings.Repeat("語", 64)); return err }, 0},
		{"rename", func() error { _, err := e.rename(alice, g.Id, "Book club"); return err }, 0},
		{"owner withdraws an invitation", func() error { return e.remove(alice, g.Id, "carol") }, 0},
		{"join without invitation", func() error { _, err := e.join(carol, g.Id); return err }, denied},
		{"remove who is not in the group", func() error { return e.remove(alice, g.Id, "carol") }, notFound},
		{"invite again", func() error { _, err := e.invite(bob, g.Id, "carol"); return err }, 0},
		{"invitee joins", func() error { _, err := e.join(carol, g.Id); return err }, 0},
		{"owner removes a member", func() error { return e.remove(alice, g.Id, "Bob") }, 0},
		{"removed member reads", func() error {
			_, err := e.history(bob, &parleyv1.HistoryRequest{Conversation: g.Id})
			return err
		}, denied},
		{"removed member leaves", func() error { return e.leave(bob, g.Id) }, denied},
	}
	for _, s := range steps {
		err := s.do()
		if s.code == 0 {
			if err != nil {
				t.Fatalf("%s: %v", s.name, err)
			}
			continue
		}
		wantCode(t, err, s.code)
	}
	// Bad names on create too, and nothing is created.
	for _, name := range []string{"", " ", strings.Repeat("x", 65), "tab\there"} {
		err := e.call(alice, subject.MsgCreateGroup, &parleyv1.CreateGroupRequest{Name: name}, nil)
		wantCode(t, err, invalidName)
	}
	err := e.call(alice, subject.MsgCreateGroup, &parleyv1.CreateGroupRequest{Name: "x", Usernames: []string{"nobody"}}, nil)
	wantCode(t, err, notFound)

	if _, ok := e.conversations(t, bob)[g.Id]; ok {
		t.Errorf("bob still lists the group he was removed from")
	}
	c := e.conversations(t, carol)[g.Id]
	if c == nil || c.Invited || c.Title != "Book club" {
		t.Fatalf("carol's entry %v", c)
	}
	if ms, err := e.members(carol, g.Id); err != nil || memberList(ms) != "Alice* Carol" {
		t.Fatalf("members %q %v", memberList(ms), err)
	}

	// The owner leaves: the longest-standing member owns the group.
	if err := e.leave(alice, g.Id); err != nil {
		t.Fatal(err)
	}
	if ms, err := e.members(carol, g.Id); err != nil || memberList(ms) != "Carol*" {
		t.Fatalf("after the owner left: %q %v", memberList(ms), err)
	}
	if c, err := e.rename(carol, g.Id, "Carol's"); err != nil || c.OwnerId != carol.id {
		t.Fatalf("new owner renames: %v %v", c, err)
	}

	want := []string{
		`1!Alice created the group "Club"`, "2!Alice invited Bob", "3!Alice invited Carol", "4!Bob joined",
		`5!Alice renamed the group to "` + strings.Repeat("語", 64) + `"`, `6!Alice renamed the group to "Book club"`,
		"7!Alice withdrew the invitation of Carol", "8!Bob invited Carol", "9!Carol joined", "10!Alice removed Bob",
		"11!Alice left; Carol now owns the group", `12!Carol renamed the group to "Carol's"`,
	}
	if got := texts(e.allHistory(t, carol, g.Id)); !slices.Equal(got, want) {
		t.Errorf("history\n%q\nwant\n%q", got, want)
	}

	// The last member leaving ends the group.
	if err := e.leave(carol, g.Id); err != nil {
		t.Fatal(err)
	}
	_, err = e.members(carol, g.Id)
	wantCode(t, err, notFound)
	if _, ok := e.conversations(t, carol)[g.Id]; ok {
		t.Errorf("an ended group is still listed")
	}
}

// Declining an invitation removes it; the members learn of it.
func TestGroupDecline(t *testing.T) {
	e := newEnv(t)
	e.start(t, testConfig())
	toBob := e.watch(t, subject.UserMessages(bob.id))
	g := e.createGroup(t, alice, "Crew", "bob")
	if err := e.leave(bob, g.Id); err != nil {
		t.Fatal(err)
	}
	if _, ok := e.conversations(t, bob)[g.Id]; ok {
		t.Errorf("declined group still listed")
	}
	_, err := e.join(bob, g.Id)
	wantCode(t, err, denied)
	testenv.Eventually(t, 5*time.Second, "bob's events", func() bool { return len(toBob.get()) == 2 })
	if got, want := texts(toBob.get()), []string{"2!Alice invited Bob", "3!Bob declined the invitation"}; !slices.Equal(got, want) {
		t.Errorf("bob's events %q, want %q", got, want)
	}
	if ms, err := e.members(alice, g.Id); err != nil || memberList(ms) != "Alice*" {
		t.Fatalf("members %q %v", memberList(ms), err)
	}
}

// Invitations sent at the same moment through two replicas are all kept,
// each with its system message.
func TestConcurrentInvitesAcrossReplicas(t *testing.T) {
	e := newEnv(t)
	// The group-creation limit is per replica (10 an hour): NATS's queue
	// group may hand one replica 11 of the 12 creations (about one run in
	// 160), which is a limit, not what this test is about.
	cfg := testConfig()
	cfg.GroupCreateLimit = 0
	e.start(t, cfg)
	e.start(t, cfg)
	const groups = 12
	for i := range groups {
		g := e.createGroup(t, alice, fmt.Sprintf("g%d", i))
		var wg sync.WaitGroup
		for _, who := range []string{"bob", "carol"} {
			wg.Go(func() {
				if _, err := e.invite(alice, g.Id, who); err != nil {
					t.Errorf("invite %s: %v", who, err)
				}
			})
		}
		wg.Wait()
		ms, err := e.members(alice, g.Id)
		if err != nil {
			t.Fatal(err)
		}
		if l := memberList(ms); l != "Alice* Bob? Carol?" && l != "Alice* Carol? Bob?" {
			t.Errorf("group %d: members %q, want both invitations", i, l)
		}
		h := e.allHistory(t, alice, g.Id)
		var invites []string
		for _, m := range h[1:] {
			invites = append(invites, m.Text)
		}
		slices.Sort(invites)
		if len(h) != 3 || !slices.Equal(invites, []string{"Alice invited Bob", "Alice invited Carol"}) {
			t.Errorf("group %d: history %q", i, texts(h))
		}
	}
}
