package msgsvc_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/parleychat/parley/libs/proto/internalv1"
	"github.com/parleychat/parley/libs/rpc"
	"github.com/parleychat/parley/libs/subject"
	"github.com/parleychat/parley/libs/testenv"
	"github.com/parleychat/parley/protocol/convid"
	"github.com/parleychat/parley/protocol/parleyv1"
)

// postFile is exactly what the file service does: the sender's identity
// in headers, a PostFileRequest as body.
func (e *env) postFile(u user, req *internalv1.PostFileRequest) (*internalv1.PostFileReply, error) {
	var reply internalv1.PostFileReply
	err := e.call(u, subject.MsgPostFile, req, &reply)
	return &reply, err
}

// fileInfo is a file as the file service describes it when posting.
func fileInfo(id, name string) *parleyv1.FileInfo {
	return &parleyv1.FileInfo{
		FileId: id, Name: name, Size: 123456, ContentType: "application/pdf",
		Sha256:          strings.Repeat("ab", 32),
		CreatedAtUnixMs: 1_700_000_000_000, ExpiresAtUnixMs: 1_700_086_400_000,
		State: parleyv1.FileState_FILE_STATE_UPLOADING,
	}
}

// fileMessages keeps the messages that offer a file.
func fileMessages(ms []*parleyv1.Message) []*parleyv1.Message {
	var out []*parleyv1.Message
	for _, m := range ms {
		if m.File != nil {
			out = append(out, m)
		}
	}
	return out
}

// A file posted to a user is a message in their direct conversation: in
// both users' history and conversation lists, and delivered live to both.
func TestPostFileToUser(t *testing.T) {
	e := newEnv(t)
	r := e.start(t, testConfig())
	toAlice, toBob, toCarol := e.watch(t, subject.UserMessages(alice.id)), e.watch(t, subject.UserMessages(bob.id)), e.watch(t, subject.UserMessages(carol.id))

	before := time.Now().UnixMilli()
	reply, err := e.postFile(alice, &internalv1.PostFileRequest{ToUsername: "BOB", File: fileInfo("f1", "report 2024.pdf"), ClientKey: "file-f1"})
	if err != nil {
		t.Fatalf("post file: %v", err)
	}
	const dm = "dm.ualice.ubob"
	msg := reply.Message
	want := fileInfo("f1", "report 2024.pdf")
	want.Conversation, want.SenderId, want.SenderName = dm, alice.id, alice.name
	if msg.Conversation != dm || msg.Seq != 1 || msg.Id == 0 || msg.SenderId != alice.id || msg.SenderName != "Alice" ||
		msg.Text != "report 2024.pdf" || msg.ClientKey != "file-f1" || msg.System || msg.SentAtUnixMs < before {
		t.Fatalf("stored message = %v", msg)
	}
	if !proto.Equal(msg.File, want) {
		t.Errorf("stored file = %v, want %v", msg.File, want)
	}
	if reply.Kind != parleyv1.ConversationKind_CONVERSATION_KIND_DIRECT || !slices.Equal(reply.MemberIds, []string{alice.id, bob.id}) {
		t.Errorf("reply kind %v, members %v; want DIRECT, [alice bob]", reply.Kind, reply.MemberIds)
	}

	// Both users read it in their history, exactly as replied.
	for _, u := range []user{alice, bob} {
		h := e.allHistory(t, u, dm)
		if len(h) != 1 || !proto.Equal(h[0], msg) {
			t.Errorf("%s's history = %v, want the file message", u.name, h)
		}
	}
	// Both list the conversation, titled with the other user, as after a
	// first text message.
	if c := e.conversations(t, bob)[dm]; c.GetTitle() != "Alice" || c.LastSeq != 1 || c.PeerId != alice.id {
		t.Errorf("bob's entry = %v", c)
	}
	if c := e.conversations(t, alice)[dm]; c.GetTitle() != "Bob" || c.LastSeq != 1 {
		t.Errorf("alice's entry = %v", c)
	}

	// Live: both members, nobody else (the marker for carol comes after
	// anything else for her from this replica).
	marker := e.send(t, alice, "dm.ualice.ucarol", "marker")
	testenv.Eventually(t, 5*time.Second, "events delivered", func() bool {
		return len(toAlice.get()) == 2 && len(toBob.get()) == 1 && len(toCarol.get()) == 1
	})
	if got := toBob.get(); !proto.Equal(got[0], msg) {
		t.Errorf("bob's event %v, want %v", got[0], msg)
	}
	if got := toAlice.get(); !proto.Equal(got[0], msg) {
		t.Errorf("alice's event %v, want %v", got[0], msg)
	}
	if got := toCarol.get(); !proto.Equal(got[0], marker) {
		t.Errorf("carol got %v, want only the marker", got)
	}

	// By conversation id works the same, from the other side.
	back, err := e.postFile(bob, &internalv1.PostFileRequest{Conversation: dm, File: fileInfo("f2", "photo.jpg"), ClientKey: "file-f2"})
	if err != nil || back.Message.Seq != 2 || back.Message.File.SenderId != bob.id || !slices.Equal(back.MemberIds, []string{bob.id, alice.id}) {
		t.Fatalf("bob posts by id: %v %v", back, err)
	}
	if n := metricValue(t, r, "parley_messaging_file_messages_stored_total"); n != 2 {
		t.Errorf("file_messages_stored_total = %v, want 2", n)
	}
}

// A file posted to a group reaches every member (not invitees); the reply
// names the members. A non-member may not post there.
func TestPostFileToGroup(t *testing.T) {
	e := newEnv(t)
	e.start(t, testConfig())
	toAlice, toBob, toCarol := e.watch(t, subject.UserMessages(alice.id)), e.watch(t, subject.UserMessages(bob.id)), e.watch(t, subject.UserMessages(carol.id))

	g := e.createGroup(t, alice, "Team", "bob", "carol")
	if _, err := e.join(bob, g.Id); err != nil {
		t.Fatal(err)
	}
	// carol stays invited: not a member.
	reply, err := e.postFile(bob, &internalv1.PostFileRequest{Conversation: g.Id, File: fileInfo("f1", "slides.key"), ClientKey: "k1"})
	if err != nil {
		t.Fatalf("member posts a file: %v", err)
	}
	msg := reply.Message
	if msg.Conversation != g.Id || msg.SenderId != bob.id || msg.Text != "slides.key" || msg.File.GetConversation() != g.Id ||
		msg.File.GetSenderId() != bob.id || msg.File.GetFileId() != "f1" {
		t.Fatalf("stored %v", msg)
	}
	if reply.Kind != parleyv1.ConversationKind_CONVERSATION_KIND_GROUP || !slices.Equal(reply.MemberIds, []string{alice.id, bob.id}) {
		t.Errorf("reply kind %v, members %v; want GROUP, [alice bob] (the members, not the invitee)", reply.Kind, reply.MemberIds)
	}
	if h := fileMessages(e.allHistory(t, alice, g.Id)); len(h) != 1 || !proto.Equal(h[0], msg) {
		t.Errorf("alice's group history files = %v", h)
	}

	// Not a member (invited only), and never invited: refused, nothing
	// stored.
	stored := e.storedCount(t)
	_, err = e.postFile(carol, &internalv1.PostFileRequest{Conversation: g.Id, File: fileInfo("f2", "x.txt"), ClientKey: "k2"})
	wantCode(t, err, denied)
	solo := e.createGroup(t, alice, "Solo")
	stored++ // its creation notice
	_, err = e.postFile(bob, &internalv1.PostFileRequest{Conversation: solo.Id, File: fileInfo("f3", "x.txt"), ClientKey: "k3"})
	wantCode(t, err, denied)
	if n := e.storedCount(t); n != stored {
		t.Errorf("stream holds %d messages after refused posts, want %d", n, stored)
	}

	marker := e.send(t, alice, "dm.ualice.ucarol", "marker")
	testenv.Eventually(t, 5*time.Second, "marker delivered to carol", func() bool {
		return slices.ContainsFunc(toCarol.get(), func(m *parleyv1.Message) bool { return proto.Equal(m, marker) })
	})
	for name, ev := range map[string]*events{"alice": toAlice, "bob": toBob} {
		if got := fileMessages(ev.get()); len(got) != 1 || !proto.Equal(got[0], msg) {
			t.Errorf("%s's file events = %v, want the one file message", name, got)
		}
	}
	if got := fileMessages(toCarol.get()); len(got) != 0 {
		t.Errorf("carol (invited, not a member) got file events %v", got)
	}
}

// A re-post with the same client_key stores nothing new and answers with
// the original; the key cannot name a different message.
func TestPostFileIdempotent(t *testing.T) {
	e := newEnv(t)
	r1 := e.start(t, testConfig())
	r2 := e.start(t, testConfig()) // a re-post may reach another replica
	req := &internalv1.PostFileRequest{ToUsername: "bob", File: fileInfo("f1", "a.bin"), ClientKey: "offer-f1"}
	first, err := e.postFile(alice, req)
	if err != nil {
		t.Fatal(err)
	}
	e.send(t, bob, "dm.ualice.ubob", "interleaved")
	for i := range 3 {
		again, err := e.postFile(alice, req)
		if err != nil {
			t.Fatalf("re-post %d: %v", i, err)
		}
		if !proto.Equal(again.Message, first.Message) || !slices.Equal(again.MemberIds, first.MemberIds) {
			t.Fatalf("re-post %d = %v, want the original %v", i, again, first)
		}
	}
	h := e.allHistory(t, bob, "dm.ualice.ubob")
	if files := fileMessages(h); len(h) != 2 || len(files) != 1 || !proto.Equal(files[0], first.Message) {
		t.Fatalf("history %v, want the file once and the interleaved text", h)
	}
	if n := e.storedCount(t); n != 2 {
		t.Fatalf("stream holds %d messages, want 2", n)
	}

	// The same key for another file, or for a text message: refused.
	_, err = e.postFile(alice, &internalv1.PostFileRequest{ToUsername: "bob", File: fileInfo("f2", "b.bin"), ClientKey: "offer-f1"})
	wantCode(t, err, invalidArg)
	_, err = e.sendReq(alice, &parleyv1.SendRequest{Conversation: "dm.ualice.ubob", Text: "hi", ClientKey: "offer-f1"})
	wantCode(t, err, invalidArg)
	if n := e.storedCount(t); n != 2 {
		t.Fatalf("stream holds %d messages after reusing the key, want 2", n)
	}
	// Counted once, on whichever replica stored it.
	const files = "parley_messaging_file_messages_stored_total"
	if n := metricValue(t, r1, files) + metricValue(t, r2, files); n != 1 {
		t.Errorf("%s over both replicas = %v, want 1", files, n)
	}
}

// Sender fields in the body are ignored: the file's sender and conversation
// come from the headers and the resolved target.
func TestPostFileSenderFromHeadersOnly(t *testing.T) {
	e := newEnv(t)
	e.start(t, testConfig())
	spoofed := fileInfo("f1", "invoice.pdf")
	spoofed.SenderId, spoofed.SenderName, spoofed.Conversation = carol.id, "Carol", "dm.ubob.ucarol"
	reply, err := e.postFile(alice, &internalv1.PostFileRequest{Conversation: "dm.ualice.ubob", File: spoofed, ClientKey: "k"})
	if err != nil {
		t.Fatal(err)
	}
	h := e.allHistory(t, bob, "dm.ualice.ubob")
	if len(h) != 1 {
		t.Fatalf("history %v", h)
	}
	for what, m := range map[string]*parleyv1.Message{"reply": reply.Message, "stored": h[0]} {
		if f := m.File; f.SenderId != alice.id || f.SenderName != alice.name || f.Conversation != "dm.ualice.ubob" ||
			m.SenderId != alice.id || m.SenderName != alice.name {
			t.Errorf("%s message %v: want alice as sender of the file and the message, in dm.ualice.ubob", what, m)
		}
	}
	if _, ok := e.conversations(t, carol)["dm.ubob.ucarol"]; ok {
		t.Error("the spoofed conversation appeared in carol's list")
	}
}

func TestPostFileRejections(t *testing.T) {
	e := newEnv(t)
	e.start(t, testConfig())
	if err := e.block(carol, "alice"); err != nil {
		t.Fatal(err)
	}
	post := func(conv, to string, f *parleyv1.FileInfo) *internalv1.PostFileRequest {
		return &internalv1.PostFileRequest{Conversation: conv, ToUsername: to, File: f, ClientKey: e.key()}
	}
	ok := func(f *parleyv1.FileInfo) *internalv1.PostFileRequest { return post("", "bob", f) }
	withSize := func(n uint64) *parleyv1.FileInfo { f := fileInfo("f", "a.txt"); f.Size = n; return f }
	withThumb := func(n int) *parleyv1.FileInfo {
		f := fileInfo("f", "a.png")
		f.Thumbnail = make([]byte, n)
		return f
	}
	for _, tc := range []struct {
		name string
		req  *internalv1.PostFileRequest
		code parleyv1.ErrorCode
	}{
		{"public room", post(convid.PublicRoom, "", fileInfo("f", "a.txt")), denied},
		{"blocked by name", post("", "carol", fileInfo("f", "a.txt")), blockedCode},
		{"blocked by id", post("dm.ualice.ucarol", "", fileInfo("f", "a.txt")), blockedCode},
		{"yourself", post("", "alice", fileInfo("f", "a.txt")), invalidArg},
		{"dm of others", post("dm.ubob.ucarol", "", fileInfo("f", "a.txt")), denied},
		{"unknown user", post("", "nobody", fileInfo("f", "a.txt")), notFound},
		{"unknown group", post("group.gaaaaaaaaaaaaaaaaaaaa", "", fileInfo("f", "a.txt")), notFound},
		{"no target", post("", "", fileInfo("f", "a.txt")), invalidArg},
		{"two targets", post("dm.ualice.ubob", "bob", fileInfo("f", "a.txt")), invalidArg},
		{"no file", ok(nil), invalidArg},
		{"empty file id", ok(fileInfo("", "a.txt")), invalidArg},
		{"65-character file id", ok(fileInfo(strings.Repeat("é", 65), "a.txt")), invalidArg},
		{"empty name", ok(fileInfo("f", "")), invalidArg},
		{"white space name", ok(fileInfo("f", " \t ")), invalidArg},
		{"256-byte name", ok(fileInfo("f", strings.Repeat("n", 256))), invalidArg},
		{"zero size", ok(withSize(0)), invalidArg},
		{"17 KiB description", ok(withThumb(17 << 10)), invalidArg},
		{"no client_key", &internalv1.PostFileRequest{ToUsername: "bob", File: fileInfo("f", "a.txt")}, invalidArg},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.postFile(alice, tc.req)
			wantCode(t, err, tc.code)
		})
	}
	// Without the identity headers.
	err := rpc.Request(t.Context(), e.nc, subject.MsgPostFile, nil, ok(fileInfo("f", "a.txt")), nil)
	wantCode(t, err, parleyv1.ErrorCode_ERROR_CODE_UNAUTHENTICATED)
	if n := e.storedCount(t); n != 0 {
		t.Fatalf("stream holds %d messages after refused posts, want 0", n)
	}

	// The limits themselves are allowed: a 64-character id, a 255-byte
	// name (multi-byte characters), a one-byte file, a thumbnail that
	// keeps the description under 16 KiB.
	for name, f := range map[string]*parleyv1.FileInfo{
		"64-character id": fileInfo(strings.Repeat("é", 64), "a.txt"),
		"255-byte name":   fileInfo("f1", strings.Repeat("n", 252)+"é"+"x"),
		"one byte":        func() *parleyv1.FileInfo { f := withSize(1); f.FileId = "f2"; return f }(),
		"15 KiB thumb":    func() *parleyv1.FileInfo { f := withThumb(15 << 10); f.FileId = "f3"; return f }(),
	} {
		if len(f.Name) > 255 {
			t.Fatalf("%s: test name is %d bytes", name, len(f.Name))
		}
		if _, err := e.postFile(alice, ok(f)); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	if n := e.storedCount(t); n != 4 {
		t.Errorf("stream holds %d messages, want the 4 at the limits", n)
	}
}
