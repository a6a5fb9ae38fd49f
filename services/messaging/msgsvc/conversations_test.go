package msgsvc_test

import (
	"testing"

	"github.com/parleychat/parley/libs/proto/parleyv1"
	"github.com/parleychat/parley/services/messaging/msgsvc"
)

func TestConversationsUnreadAndAcks(t *testing.T) {
	e := newEnv(t)
	e.start(t, testConfig())
	const ab = "dm.ualice.ubob"
	if _, err := e.sendReq(alice, &parleyv1.SendRequest{ToUsername: "bob", Text: "one", ClientKey: "1"}); err != nil {
		t.Fatal(err)
	}
	e.send(t, alice, ab, "two")
	e.send(t, alice, ab, "three")
	e.send(t, carol, msgsvc.RoomPublic, "hi all")

	bc := e.conversations(t, bob)
	if len(bc) != 2 {
		t.Fatalf("bob's conversations: %v", bc)
	}
	if r := bc[msgsvc.RoomPublic]; r.Kind != parleyv1.ConversationKind_CONVERSATION_KIND_ROOM || r.Title != "public" || r.LastSeq != 1 || r.AckedSeq != 0 {
		t.Errorf("room = %v", r)
	}
	if d := bc[ab]; d.Kind != parleyv1.ConversationKind_CONVERSATION_KIND_DIRECT || d.Title != "Alice" || d.PeerId != alice.id || d.LastSeq != 3 || d.AckedSeq != 0 {
		t.Errorf("bob's dm = %v", d)
	}
	if d := e.conversations(t, alice)[ab]; d.GetTitle() != "Bob" || d.PeerId != bob.id || d.LastSeq != 3 {
		t.Errorf("alice's dm = %v", d)
	}
	if cc := e.conversations(t, carol); len(cc) != 1 {
		t.Errorf("carol sees %v, want only the room", cc)
	}

	// Acks move forward only, and are per user.
	for _, tc := range []struct {
		seq, want uint64
	}{{2, 2}, {1, 2}, {0, 2}, {3, 3}, {2, 3}} {
		if err := e.ack(bob, ab, tc.seq); err != nil {
			t.Fatalf("ack %d: %v", tc.seq, err)
		}
		if got := e.conversations(t, bob)[ab].AckedSeq; got != tc.want {
			t.Fatalf("after ack %d: acked_seq %d, want %d", tc.seq, got, tc.want)
		}
	}
	if got := e.conversations(t, alice)[ab].AckedSeq; got != 0 {
		t.Errorf("alice's acked_seq %d: bob's ack moved it", got)
	}
	if err := e.ack(bob, msgsvc.RoomPublic, 1); err != nil {
		t.Fatal(err)
	}
	if got := e.conversations(t, bob)[msgsvc.RoomPublic].AckedSeq; got != 1 {
		t.Errorf("room acked_seq %d, want 1", got)
	}
	wantCode(t, e.ack(bob, ab, 4), parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT)
	wantCode(t, e.ack(carol, ab, 1), parleyv1.ErrorCode_ERROR_CODE_PERMISSION_DENIED)
	wantCode(t, e.ack(carol, "room.nope", 1), parleyv1.ErrorCode_ERROR_CODE_NOT_FOUND)

	// A new message is unread again.
	e.send(t, alice, ab, "four")
	if d := e.conversations(t, bob)[ab]; d.LastSeq != 4 || d.AckedSeq != 3 {
		t.Errorf("after a new message: %v", d)
	}
}

func TestOpenDirect(t *testing.T) {
	e := newEnv(t)
	e.start(t, testConfig())
	c, err := e.openDirect(carol, "ALICE")
	if err != nil {
		t.Fatal(err)
	}
	if c.Id != "dm.ualice.ucarol" || c.Kind != parleyv1.ConversationKind_CONVERSATION_KIND_DIRECT || c.Title != "Alice" ||
		c.PeerId != alice.id || c.LastSeq != 0 || c.AckedSeq != 0 {
		t.Fatalf("open direct = %v", c)
	}
	// The opener lists it at once; the other user once it has a message.
	if _, ok := e.conversations(t, carol)[c.Id]; !ok {
		t.Error("carol does not list the conversation she opened")
	}
	if _, ok := e.conversations(t, alice)[c.Id]; ok {
		t.Error("alice lists an empty conversation someone else opened")
	}
	e.send(t, carol, c.Id, "hello")
	if d := e.conversations(t, alice)[c.Id]; d.GetTitle() != "Carol" || d.LastSeq != 1 {
		t.Errorf("alice's view after a message: %v", d)
	}
	if again, err := e.openDirect(carol, "alice"); err != nil || again.LastSeq != 1 || again.Id != c.Id {
		t.Errorf("open again = %v %v", again, err)
	}

	_, err = e.openDirect(carol, "nobody")
	wantCode(t, err, parleyv1.ErrorCode_ERROR_CODE_NOT_FOUND)
	_, err = e.openDirect(carol, "Carol")
	wantCode(t, err, parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT)
	_, err = e.openDirect(carol, "")
	wantCode(t, err, parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT)
}

// A conversation started by id (the sender never looked the peer up) shows
// the peer's id as title until the peer's first message gives their name.
func TestDirectTitleLearntFromPeer(t *testing.T) {
	e := newEnv(t)
	e.start(t, testConfig())
	const bc = "dm.ubob.ucarol"
	e.send(t, bob, bc, "hi carol")
	if d := e.conversations(t, carol)[bc]; d.GetTitle() != "Bob" {
		t.Errorf("carol's title %q, want Bob", d.GetTitle())
	}
	if d := e.conversations(t, bob)[bc]; d.GetTitle() != carol.id {
		t.Errorf("bob's title %q before carol wrote, want her id", d.GetTitle())
	}
	e.send(t, carol, bc, "hi bob")
	if d := e.conversations(t, bob)[bc]; d.GetTitle() != "Carol" {
		t.Errorf("bob's title %q after carol wrote, want Carol", d.GetTitle())
	}
}
