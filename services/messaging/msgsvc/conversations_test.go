package msgsvc_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/parleychat/parley/libs/rpc"
	"github.com/parleychat/parley/libs/subject"
	"github.com/parleychat/parley/protocol/convid"
	"github.com/parleychat/parley/protocol/parleyv1"
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
	e.send(t, carol, convid.PublicRoom, "hi all")

	bc := e.conversations(t, bob)
	if len(bc) != 2 {
		t.Fatalf("bob's conversations: %v", bc)
	}
	if r := bc[convid.PublicRoom]; r.Kind != parleyv1.ConversationKind_CONVERSATION_KIND_ROOM || r.Title != "public" || r.LastSeq != 1 || r.AckedSeq != 0 {
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
	if err := e.ack(bob, convid.PublicRoom, 1); err != nil {
		t.Fatal(err)
	}
	if got := e.conversations(t, bob)[convid.PublicRoom].AckedSeq; got != 1 {
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

// page reads one page of u's conversation list.
func (e *env) page(u user, after string, limit uint32) (*parleyv1.ConversationsReply, error) {
	var reply parleyv1.ConversationsReply
	err := rpc.Request(context.Background(), e.nc, subject.MsgConversations, header(u),
		&parleyv1.ConversationsRequest{AfterId: after, Limit: limit}, &reply)
	return &reply, err
}

// longUsers are n users with ids and names as long as real ones (ids "u" +
// 20 characters, 32-character names).
func longUsers(n int) []user {
	out := make([]user, n)
	for i := range out {
		out[i] = user{id: fmt.Sprintf("u%020d", i), name: fmt.Sprintf("member-%025d", i)}
	}
	return out
}

// walk reads u's list with pages of limit, checking each page: ascending
// ids after the previous page, at most want entries per page, more set on
// every page but the last. It returns the ids and the page sizes.
func walk(t *testing.T, e *env, u user, limit uint32, want int) (ids []string, sizes []int) {
	t.Helper()
	after := ""
	for {
		r, err := e.page(u, after, limit)
		if err != nil {
			t.Fatalf("page after %q: %v", after, err)
		}
		for _, c := range r.Conversations {
			if c.Id <= after {
				t.Fatalf("page after %q holds %q", after, c.Id)
			}
			after = c.Id
			ids = append(ids, c.Id)
		}
		sizes = append(sizes, len(r.Conversations))
		if len(r.Conversations) > want {
			t.Fatalf("a page of %d with limit %d", len(r.Conversations), limit)
		}
		if !r.More {
			return ids, sizes
		}
		if len(r.Conversations) == 0 {
			t.Fatalf("empty page after %q with more", after)
		}
	}
}

// More conversations than a page: pages of the requested size (0: 200,
// above 500: 500) in ascending id order, each conversation exactly once,
// stale entries left out, unread counts right on every page.
func TestConversationsPaging(t *testing.T) {
	peers := longUsers(230)
	e := newEnv(t, peers...)
	cfg := testConfig()
	cfg.LookupLimit, cfg.GroupCreateLimit = 0, 0
	e.start(t, cfg)
	want := []string{convid.PublicRoom}
	for _, p := range peers {
		c, err := e.openDirect(alice, p.name)
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, c.Id)
	}
	for i := range 20 {
		want = append(want, e.createGroup(t, alice, fmt.Sprint("mine ", i)).Id)
	}
	for i := range 5 {
		want = append(want, e.createGroup(t, bob, fmt.Sprint("bob's ", i), "alice").Id)
	}
	// An entry of a group that no longer exists is not listed.
	putStaleGroupEntry(t, e, alice.id, false)
	slices.Sort(want)
	dm := directID(alice.id, peers[229].id)
	e.send(t, peers[229], dm, "hi")
	for _, tc := range []struct {
		name  string
		limit uint32
		per   int
		sizes []int
	}{
		{"default 200", 0, 200, []int{200, 56}},
		{"7", 7, 7, nil},
		{"above 500: 500", 1000, 500, []int{256}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ids, sizes := walk(t, e, alice, tc.limit, tc.per)
			if !slices.Equal(ids, want) {
				t.Fatalf("listed %d conversations, want %d (first difference at %d)", len(ids), len(want), firstDiff(ids, want))
			}
			if tc.sizes != nil && !slices.Equal(sizes, tc.sizes) {
				t.Errorf("page sizes %v, want %v", sizes, tc.sizes)
			}
		})
	}
	// after_id need not be a listed id.
	r, err := e.page(alice, dm[:len(dm)-1], 1)
	if err != nil || len(r.Conversations) != 1 || r.Conversations[0].Id != dm || !r.More {
		t.Fatalf("the page after %q: %v %v", dm[:len(dm)-1], r, err)
	}
	if c := r.Conversations[0]; c.LastSeq != 1 || c.AckedSeq != 0 || c.Title != peers[229].name {
		t.Errorf("last entry %v, want one unread message from %s", c, peers[229].name)
	}
	if r, err := e.page(alice, convid.PublicRoom, 0); err != nil || len(r.Conversations) != 0 || r.More {
		t.Errorf("after the last id: %v %v, want an empty last page", r, err)
	}
}

// A list whose one reply would exceed NATS's max_payload (here 32 KiB; 1
// MiB in production, where 17,500 invitations did it) is still read whole:
// a page is also bounded by bytes.
func TestConversationsFitMaxPayload(t *testing.T) {
	const maxPayload = 32 << 10
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(),
		MaxPayload: maxPayload, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	peers := longUsers(400)
	e := newEnvOn(t, ns, peers...)
	cfg := testConfig()
	cfg.LookupLimit = 0
	e.start(t, cfg)
	want := []string{convid.PublicRoom}
	whole := 0
	for _, p := range peers {
		c, err := e.openDirect(alice, p.name)
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, c.Id)
		whole += proto.Size(c) + 4
	}
	if whole <= maxPayload {
		t.Fatalf("the whole list is %d bytes: not above max_payload %d", whole, maxPayload)
	}
	slices.Sort(want)
	ids, sizes := walk(t, e, alice, 500, 500)
	if !slices.Equal(ids, want) {
		t.Fatalf("listed %d conversations, want %d", len(ids), len(want))
	}
	if len(sizes) < 2 {
		t.Errorf("pages %v: the byte bound did not cut the list", sizes)
	}
	r, err := e.page(alice, "", 500)
	if err != nil || proto.Size(r) > maxPayload || !r.More {
		t.Errorf("first page: %d bytes, more %v, %v", proto.Size(r), r.More, err)
	}
}

func firstDiff(a, b []string) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// putStaleGroupEntry writes uid's index entry of a group that does not
// exist, as a replica that died between the group record's change and the
// entry's would leave it.
func putStaleGroupEntry(t testing.TB, e *env, uid string, invited bool) string {
	t.Helper()
	js, err := jetstream.New(e.nc)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(context.Background(), subject.BucketConvs)
	if err != nil {
		t.Fatal(err)
	}
	key := uid + ".group.g" + strings.Repeat("b", 20)
	if _, err := kv.Put(context.Background(), key, fmt.Appendf(nil, `{"group":true,"invited":%v}`, invited)); err != nil {
		t.Fatal(err)
	}
	return key
}
