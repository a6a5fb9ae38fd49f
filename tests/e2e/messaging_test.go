package e2e

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parleychat/parley/clients/parley"
	"github.com/parleychat/parley/libs/testenv"
)

const room = "room.public"

// collector gathers a client's MessageEvents per conversation.
type collector struct {
	mu   sync.Mutex
	msgs map[string][]parley.Message
}

func collect(t *testing.T, c *parley.Client) *collector {
	col := &collector{msgs: map[string][]parley.Message{}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range c.Events() {
			if m, ok := ev.(parley.MessageEvent); ok {
				col.mu.Lock()
				col.msgs[m.Message.Conversation] = append(col.msgs[m.Message.Conversation], m.Message)
				col.mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() { c.Close(); <-done })
	return col
}

func (col *collector) get(conv string) []parley.Message {
	col.mu.Lock()
	defer col.mu.Unlock()
	return append([]parley.Message(nil), col.msgs[conv]...)
}

func (col *collector) convs() []string {
	col.mu.Lock()
	defer col.mu.Unlock()
	var out []string
	for k := range col.msgs {
		out = append(out, k)
	}
	return out
}

// waitTexts waits until conv holds exactly want (texts, in order), failing
// on anything else (a duplicate, a gap, a reorder).
func (col *collector) waitTexts(t *testing.T, conv string, want []string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		got := col.get(conv)
		var texts []string
		for _, m := range got {
			texts = append(texts, m.Text)
		}
		if len(texts) >= len(want) {
			if strings.Join(texts, "\x00") != strings.Join(want, "\x00") {
				t.Fatalf("%s: got %d messages %q, want %d %q", conv, len(texts), short(texts), len(want), short(want))
			}
			for i, m := range got {
				if i > 0 && m.Seq != got[i-1].Seq+1 {
					t.Fatalf("%s: seq %d after %d", conv, m.Seq, got[i-1].Seq)
				}
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: after %s only %d of %d messages: %q", conv, within, len(texts), len(want), short(texts))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitLastText waits until the newest message col holds in conv is text.
func (col *collector) waitLastText(t *testing.T, conv, text string, within time.Duration) {
	t.Helper()
	testenv.Eventually(t, within, fmt.Sprintf("%q last in %s", text, conv), func() bool {
		got := col.get(conv)
		return len(got) > 0 && got[len(got)-1].Text == text
	})
}

func short(s []string) []string {
	if len(s) > 6 {
		return append(append([]string(nil), s[:3]...), append([]string{"…"}, s[len(s)-3:]...)...)
	}
	return s
}

// TestChatAcrossGateways: three users on two gateways and two messaging
// replicas: room chat reaches everyone; a private chat reaches its two
// members only and the third can neither see nor read it.
func TestChatAcrossGateways(t *testing.T) {
	chatAcrossGateways(t, newCluster(t, 2, clusterOpts{messaging: 2}))
}

// chatAcrossGateways is TestChatAcrossGateways on the cluster c (two
// gateways at least).
func chatAcrossGateways(t *testing.T, c *cluster) {
	alice, as := registered(t, "tcp://"+c.gateways[0].tcp, "alice")
	bob, bs := registered(t, "ws://"+c.gateways[1].http+"/v1/ws", "bob")
	carol, _ := registered(t, "tcp://"+c.gateways[1].tcp, "carol")
	ac, bc, cc := collect(t, alice), collect(t, bob), collect(t, carol)
	// alice's second device, on the other gateway.
	alice2 := dial(t, "tcp://"+c.gateways[1].tcp)
	a2c := collect(t, alice2)
	if _, err := alice2.Login(ctxS(t), as.Username, pw); err != nil {
		t.Fatal(err)
	}

	text := "你好, world 🎉\nsecond line"
	m, err := alice.Send(ctxS(t), room, text)
	if err != nil {
		t.Fatal(err)
	}
	if m.SenderID != as.UserID || m.SenderName != as.Username || m.Seq == 0 || m.SentAt.IsZero() {
		t.Fatalf("stored message %+v: server must set sender, seq and time", m)
	}
	for _, col := range []*collector{ac, bc, cc} {
		col.waitTexts(t, room, []string{text}, 10*time.Second)
	}

	dm, err := alice.SendTo(ctxS(t), bs.Username, "just for bob")
	if err != nil {
		t.Fatal(err)
	}
	bc.waitTexts(t, dm.Conversation, []string{"just for bob"}, 10*time.Second)
	ac.waitTexts(t, dm.Conversation, []string{"just for bob"}, 10*time.Second)
	reply, err := bob.Send(ctxS(t), dm.Conversation, "thanks alice")
	if err != nil {
		t.Fatal(err)
	}
	if reply.Seq != dm.Seq+1 {
		t.Fatalf("reply seq %d after %d", reply.Seq, dm.Seq)
	}
	ac.waitTexts(t, dm.Conversation, []string{"just for bob", "thanks alice"}, 10*time.Second)
	// Multi-device: every session of a user gets the messages, the
	// sender's other device included.
	a2c.waitTexts(t, room, []string{text}, 10*time.Second)
	a2c.waitTexts(t, dm.Conversation, []string{"just for bob", "thanks alice"}, 10*time.Second)

	// carol: a later room message arrives, the private ones never did.
	if _, err := bob.Send(ctxS(t), room, "marker"); err != nil {
		t.Fatal(err)
	}
	cc.waitTexts(t, room, []string{text, "marker"}, 10*time.Second)
	if got := cc.get(dm.Conversation); len(got) != 0 {
		t.Fatalf("carol received %d private messages of alice and bob", len(got))
	}
	_, _, err = carol.History(ctxS(t), dm.Conversation, 0, 50)
	wantErr(t, err, parley.ErrPermissionDenied)
	_, err = carol.Send(ctxS(t), dm.Conversation, "let me in")
	wantErr(t, err, parley.ErrPermissionDenied)
}

// TestOfflineMessagesAndHistory: messages to an offline user arrive in
// order at their next login, unread until acknowledged; history pages back
// across several pages.
func TestOfflineMessagesAndHistory(t *testing.T) {
	c := newCluster(t, 1, clusterOpts{})
	gw := "tcp://" + c.gateways[0].tcp
	alice, _ := registered(t, gw, "alice")
	dave, ds := registered(t, gw, "dave")
	dave.Close() // dave goes offline

	var want []string
	var conv string
	for i := range 3 {
		m, err := alice.SendTo(ctxS(t), ds.Username, fmt.Sprintf("while you were away %d", i))
		if err != nil {
			t.Fatal(err)
		}
		conv = m.Conversation
		want = append(want, m.Text)
	}

	back := dial(t, gw)
	dc := collect(t, back)
	if _, err := back.Login(ctxS(t), ds.Username, pw); err != nil {
		t.Fatal(err)
	}
	dc.waitTexts(t, conv, want, 10*time.Second)
	convs, err := back.Conversations(ctxS(t))
	if err != nil {
		t.Fatal(err)
	}
	var unread uint64
	for _, cv := range convs {
		if cv.ID == conv {
			unread = cv.Unread()
		}
	}
	if unread != 3 {
		t.Fatalf("unread %d in %v, want 3", unread, convs)
	}
	if err := back.Ack(ctxS(t), conv, 3); err != nil {
		t.Fatal(err)
	}

	// History paging: 120 room messages, pages of 50 from the newest back.
	var sent []string
	for i := range 120 {
		m, err := alice.Send(ctxS(t), room, fmt.Sprintf("room %03d", i))
		if err != nil {
			t.Fatal(err)
		}
		sent = append(sent, m.Text)
	}
	var pages [][]parley.Message
	before := uint64(0)
	for {
		page, more, err := back.History(ctxS(t), room, before, 50)
		if err != nil {
			t.Fatal(err)
		}
		pages = append([][]parley.Message{page}, pages...)
		if !more {
			break
		}
		before = page[0].Seq
	}
	var got []string
	for _, p := range pages {
		for _, m := range p {
			got = append(got, m.Text)
		}
	}
	if len(pages) < 3 || strings.Join(got, ",") != strings.Join(sent, ",") {
		t.Fatalf("history in %d pages = %d messages %q, want 120", len(pages), len(got), short(got))
	}
}

// TestBurstSurvivesMessagingReplicaKill: kill -9 of one of two messaging
// replicas in the middle of a burst loses nothing and duplicates nothing;
// the receiver also reconnects (its gateway connection is cut) mid-burst.
func TestBurstSurvivesMessagingReplicaKill(t *testing.T) {
	c := newCluster(t, 2, clusterOpts{messaging: 2})
	alice, _ := registered(t, "tcp://"+c.gateways[0].tcp, "alice")
	bob, bs := registered(t, "tcp://"+c.gateways[1].tcp, "bob")
	bc := collect(t, bob)

	const n = 200
	var want []string
	var conv string
	for i := range n {
		if i == n/3 {
			c.msgs[0].kill()
		}
		m, err := alice.SendTo(ctxT(t, 30*time.Second), bs.Username, fmt.Sprintf("burst %03d", i))
		if err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
		conv = m.Conversation
		want = append(want, m.Text)
	}
	bc.waitTexts(t, conv, want, 30*time.Second)
	page, _, err := bob.History(ctxS(t), conv, 0, 200)
	if err != nil || len(page) != n || page[0].Seq != 1 || page[n-1].Seq != n {
		t.Fatalf("history after the kill: %d messages, err %v", len(page), err)
	}
}

// TestMessagingBadInput: clear errors, nothing stored.
func TestMessagingBadInput(t *testing.T) {
	c := newCluster(t, 1, clusterOpts{})
	gw := "tcp://" + c.gateways[0].tcp
	alice, as := registered(t, gw, "alice")
	cases := []struct {
		name, conv, text string
		want             error
	}{
		{"empty", room, "   \n ", parley.ErrEmptyMessage},
		{"oversized", room, strings.Repeat("字", 4001), parley.ErrMessageTooLarge},
		{"unknown conversation", "room.nowhere", "hi", parley.ErrNotFound},
		{"another pair's chat", "dm.u0000000000000000000a.u0000000000000000000b", "hi", parley.ErrPermissionDenied},
	}
	for _, tc := range cases {
		_, err := alice.Send(ctxS(t), tc.conv, tc.text)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	_, err := alice.SendTo(ctxS(t), "nosuchuser", "hi")
	wantErr(t, err, parley.ErrNotFound)
	_, err = alice.SendTo(ctxS(t), as.Username, "talking to myself")
	wantErr(t, err, parley.ErrInvalidArgument)
	page, _, err := alice.History(ctxS(t), room, 0, 50)
	if err != nil || len(page) != 0 {
		t.Fatalf("room after refused sends: %d messages, %v", len(page), err)
	}
}

// TestGroupAcrossGateways: a group's messages reach its members, on two
// gateways, and nobody else; an outsider can neither read nor post.
func TestGroupAcrossGateways(t *testing.T) {
	groupAcrossGateways(t, newCluster(t, 2, clusterOpts{messaging: 2}))
}

// groupAcrossGateways is TestGroupAcrossGateways on the cluster c (two
// gateways at least).
func groupAcrossGateways(t *testing.T, c *cluster) {
	alice, _ := registered(t, "tcp://"+c.gateways[0].tcp, "alice")
	bob, bs := registered(t, "tcp://"+c.gateways[1].tcp, "bob")
	carol, _ := registered(t, "tcp://"+c.gateways[1].tcp, "carol")
	ac, bc, cc := collect(t, alice), collect(t, bob), collect(t, carol)

	g, err := alice.CreateGroup(ctxS(t), "team 团队", bs.Username)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bob.JoinGroup(ctxS(t), g.ID); err != nil {
		t.Fatalf("join: %v", err)
	}
	if _, err := bob.Send(ctxS(t), g.ID, "hi team"); err != nil {
		t.Fatal(err)
	}
	waitText := func(col *collector, text string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			for _, m := range col.get(g.ID) {
				if m.Text == text && !m.System {
					return
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("%q not received in %s: %+v", text, g.ID, col.get(g.ID))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitText(ac, "hi team")
	waitText(bc, "hi team")

	// carol: a room marker arrives; nothing of the group ever did. (On a
	// cluster that saw room messages before, her login syncs them too.)
	if _, err := alice.Send(ctxS(t), room, "marker"); err != nil {
		t.Fatal(err)
	}
	cc.waitLastText(t, room, "marker", 10*time.Second)
	if got := cc.get(g.ID); len(got) != 0 {
		t.Fatalf("outsider received %d group messages", len(got))
	}
	_, _, err = carol.History(ctxS(t), g.ID, 0, 50)
	wantErr(t, err, parley.ErrPermissionDenied)
	_, err = carol.Send(ctxS(t), g.ID, "let me in")
	wantErr(t, err, parley.ErrPermissionDenied)
	_, err = carol.Members(ctxS(t), g.ID)
	wantErr(t, err, parley.ErrPermissionDenied)
}

// TestBlockedUserRefused: after bob blocks alice, her private messages and
// friend requests are refused with BLOCKED and nothing reaches bob.
func TestBlockedUserRefused(t *testing.T) {
	c := newCluster(t, 2, clusterOpts{})
	alice, _ := registered(t, "tcp://"+c.gateways[0].tcp, "alice")
	bob, bs := registered(t, "tcp://"+c.gateways[1].tcp, "bob")
	as := alice.Session()
	m, err := alice.SendTo(ctxS(t), bs.Username, "before the block")
	if err != nil {
		t.Fatal(err)
	}
	if err := bob.Block(ctxS(t), as.Username); err != nil {
		t.Fatal(err)
	}
	_, err = alice.SendTo(ctxS(t), bs.Username, "after the block")
	wantErr(t, err, parley.ErrBlocked)
	_, err = alice.Send(ctxS(t), m.Conversation, "after the block")
	wantErr(t, err, parley.ErrBlocked)
	err = alice.AddFriend(ctxS(t), bs.Username)
	wantErr(t, err, parley.ErrBlocked)
	page, _, err := bob.History(ctxS(t), m.Conversation, 0, 50)
	if err != nil || len(page) != 1 || page[0].Text != "before the block" {
		t.Fatalf("bob's history after the block: %+v, %v", page, err)
	}
}
