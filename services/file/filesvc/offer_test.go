package filesvc_test

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/parleychat/parley/libs/rpc"
	"github.com/parleychat/parley/libs/subject"
	"github.com/parleychat/parley/libs/testenv"
	"github.com/parleychat/parley/protocol/errcode"
	"github.com/parleychat/parley/protocol/parleyv1"
	"github.com/parleychat/parley/services/file/filesvc"
)

// TestOffers: offering files (docs/protocol.md §18.1): who may offer what
// to whom, what the offer says, idempotent repeats, the offer rate and the
// storage quota.
func TestOffers(t *testing.T) {
	m := testenv.StartMinIO(t)
	t.Run("Refused", func(t *testing.T) { testOfferRefused(t, m) })
	t.Run("Direct", func(t *testing.T) { testOfferDirect(t, m) })
	t.Run("Repeated", func(t *testing.T) { testOfferRepeated(t, m) })
	t.Run("Group", func(t *testing.T) { testOfferGroup(t, m) })
	t.Run("Rate", func(t *testing.T) { testOfferRate(t, m) })
	t.Run("Quota", func(t *testing.T) { testQuota(t, m) })
}

func testOfferRefused(t *testing.T, m *testenv.MinIO) {
	e := newEnv(t, m, func(c *filesvc.Config) { c.MaxFileSize = 1000 })
	e.world.set(func(w *world) {
		w.blocked[[2]string{bob.id, carol.id}] = true
		w.groups["group.g1"] = []string{bob.id}
	})
	sum := sha256Hex([]byte("x"))
	ok := func(edit func(*parleyv1.OfferFileRequest)) *parleyv1.OfferFileRequest {
		r := &parleyv1.OfferFileRequest{ToUsername: "bob", Name: "x", Size: 1, Sha256: sum}
		edit(r)
		return r
	}
	none := func(*parleyv1.OfferFileRequest) {}
	for _, tc := range []struct {
		rule string
		who  user
		req  *parleyv1.OfferFileRequest
		want parleyv1.ErrorCode
	}{
		{"the gateway names the user", user{}, ok(none), parleyv1.ErrorCode_ERROR_CODE_UNAUTHENTICATED},
		{"§18.1: a conversation or a username, not both", alice, ok(func(r *parleyv1.OfferFileRequest) { r.Conversation = "group.g1" }), parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT},
		{"§18.1: a conversation or a username, not neither", alice, ok(func(r *parleyv1.OfferFileRequest) { r.ToUsername = "" }), parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT},
		{"§18.1: empty files cannot be sent", alice, ok(func(r *parleyv1.OfferFileRequest) { r.Size = 0 }), parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT},
		{"§18.1: at most -file-max-size", alice, ok(func(r *parleyv1.OfferFileRequest) { r.Size = 1001 }), parleyv1.ErrorCode_ERROR_CODE_FILE_TOO_LARGE},
		{"§18.1: sha256 is 64 lower-case hex digits", alice, ok(func(r *parleyv1.OfferFileRequest) { r.Sha256 = strings.ToUpper(sum) }), parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT},
		{"§18.1: sha256 is required", alice, ok(func(r *parleyv1.OfferFileRequest) { r.Sha256 = "" }), parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT},
		{"§18.1: client_key is at most 64 characters", alice, ok(func(r *parleyv1.OfferFileRequest) { r.ClientKey = strings.Repeat("é", 65) }), parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT},
		{"messaging: no such user", alice, ok(func(r *parleyv1.OfferFileRequest) { r.ToUsername = "nobody" }), parleyv1.ErrorCode_ERROR_CODE_NOT_FOUND},
		{"messaging: a blocked pair cannot exchange files", bob, ok(func(r *parleyv1.OfferFileRequest) { r.ToUsername = "carol" }), parleyv1.ErrorCode_ERROR_CODE_BLOCKED},
		{"messaging: only a group's members offer there", alice, ok(func(r *parleyv1.OfferFileRequest) { r.ToUsername, r.Conversation = "", "group.g1" }), parleyv1.ErrorCode_ERROR_CODE_PERMISSION_DENIED},
		{"§18.1: rooms have no files", alice, ok(func(r *parleyv1.OfferFileRequest) { r.ToUsername, r.Conversation = "", "room.lobby" }), parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT},
	} {
		if _, err := e.offerReq(tc.who, tc.req); code(err) != tc.want {
			t.Errorf("%s: %v, want %v", tc.rule, err, tc.want)
		}
	}
	// A body that is not an offer at all.
	msg, err := e.nc.RequestMsg(&nats.Msg{Subject: subject.FileOffer, Header: header(alice), Data: []byte{0xff, 0xff}}, 5*time.Second)
	if err != nil || rpc.ErrorOf(msg).Code != parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT {
		t.Errorf("a malformed offer: %v %v", err, rpc.ErrorOf(msg))
	}
	// Offers refused after the multipart upload was created leave none
	// behind.
	if u := e.uploads(); len(u) != 0 {
		t.Errorf("refused offers left %d multipart uploads", len(u))
	}
}

func testOfferDirect(t *testing.T, m *testenv.MinIO) {
	e := newEnv(t, m, nil)
	bobEvents := e.events(bob)
	data := []byte("hello bob")
	before := e.clock.now()
	o, err := e.offerReq(alice, &parleyv1.OfferFileRequest{ToUsername: "bob", Name: "../../etc/报告 final.txt", Size: uint64(len(data)),
		Sha256: sha256Hex(data), ContentType: "Text/Plain; Charset=UTF-8"})
	if err != nil {
		t.Fatal(err)
	}
	f := o.GetFile()
	id := f.GetFileId()
	if o.GetUploadPath() != "/v1/files/"+id || o.GetPartSize() != 8<<20 || o.GetDuplicate() {
		t.Errorf("offer: path %q part size %d duplicate %v", o.GetUploadPath(), o.GetPartSize(), o.GetDuplicate())
	}
	exp := time.UnixMilli(f.GetExpiresAtUnixMs())
	if f.GetName() != "报告 final.txt" || f.GetContentType() != "text/plain; charset=UTF-8" || f.GetSenderId() != alice.id ||
		f.GetSenderName() != "alice" || f.GetConversation() != dm(alice, bob) || f.GetState() != parleyv1.FileState_FILE_STATE_UPLOADING ||
		exp.Before(before.Add(e.cfg.UploadTTL-time.Second)) || exp.After(e.clock.now().Add(e.cfg.UploadTTL)) {
		t.Errorf("the offered file: %v", f)
	}
	// bob hears of it, and finds it among the offers he has not answered.
	bobEvents.wait(t, parleyv1.FileEvent_KIND_OFFERED, id)
	pending, err := e.list(bob, &parleyv1.FilesRequest{})
	if err != nil || len(pending.GetFiles()) != 1 || pending.GetFiles()[0].GetFileId() != id {
		t.Errorf("bob's pending offers: %v %v", pending, err)
	}
	if mine, err := e.list(alice, &parleyv1.FilesRequest{}); err != nil || len(mine.GetFiles()) != 0 {
		t.Errorf("alice's pending offers: %v %v", mine, err)
	}
	for _, u := range []user{alice, bob} {
		if chat, err := e.list(u, &parleyv1.FilesRequest{Conversation: dm(alice, bob)}); err != nil || len(chat.GetFiles()) != 1 {
			t.Errorf("%s's list of the chat: %v %v", u.name, chat, err)
		}
	}
	// It is a message in the chat, posted once.
	e.world.mu.Lock()
	posts := e.world.posts
	e.world.mu.Unlock()
	if len(posts) != 1 || posts[0].GetClientKey() != "file-"+id || posts[0].GetFile().GetFileId() != id || posts[0].GetToUsername() != "bob" {
		t.Errorf("posts to messaging: %v", posts)
	}
	// The upload exists in storage; bob was offline, so the file is not
	// live.
	if u := e.uploads(); len(u) != 1 || u[0].Key != "files/"+id {
		t.Errorf("multipart uploads: %v", u)
	}
	if r, err := e.open(bob, id, ""); err != nil || r.GetLivePrefix() != "" || r.GetFile().GetState() != parleyv1.FileState_FILE_STATE_UPLOADING {
		t.Errorf("bob opens the uploading file: %v %v", r, err)
	}
}

func testOfferRepeated(t *testing.T, m *testenv.MinIO) {
	e := newEnv(t, m, func(c *filesvc.Config) { c.OfferRate = 1 })
	data := []byte("once")
	req := &parleyv1.OfferFileRequest{ToUsername: "bob", Name: "a", Size: uint64(len(data)), Sha256: sha256Hex(data), ClientKey: "k1"}
	first, err := e.offerReq(alice, req)
	if err != nil {
		t.Fatal(err)
	}
	// A repeat (the client lost the answer) is the first offer, neither
	// posted nor limited again.
	again, err := e.offerReq(alice, req)
	if err != nil || !again.GetDuplicate() || again.GetFile().GetFileId() != first.GetFile().GetFileId() || again.GetUploadPath() != first.GetUploadPath() {
		t.Fatalf("repeated offer: %v %v", again, err)
	}
	e.world.mu.Lock()
	posts := len(e.world.posts)
	e.world.mu.Unlock()
	if posts != 1 {
		t.Errorf("%d posts for one offer", posts)
	}
	// The same key for another file is a mistake.
	other := []byte("other")
	if _, err := e.offerReq(alice, &parleyv1.OfferFileRequest{ToUsername: "bob", Name: "b", Size: uint64(len(other)), Sha256: sha256Hex(other), ClientKey: "k1"}); code(err) != parleyv1.ErrorCode_ERROR_CODE_CONFLICT {
		t.Errorf("a client key reused for another file: %v", err)
	}
	// Keys are per sender: bob's "k1" is his own.
	if o, err := e.offerReq(bob, &parleyv1.OfferFileRequest{ToUsername: "alice", Name: "a", Size: uint64(len(data)), Sha256: sha256Hex(data), ClientKey: "k1"}); err != nil || o.GetDuplicate() {
		t.Errorf("bob's offer with alice's key: %v %v", o, err)
	}
}

func testOfferGroup(t *testing.T, m *testenv.MinIO) {
	e := newEnv(t, m, nil)
	e.world.set(func(w *world) { w.groups["group.g1"] = []string{alice.id, bob.id, carol.id} })
	bobEvents := e.events(bob)
	data := []byte("for the group")
	o := e.offer(alice, "group.g1", data)
	id := o.GetFile().GetFileId()
	if o.GetFile().GetConversation() != "group.g1" {
		t.Errorf("conversation %q", o.GetFile().GetConversation())
	}
	// A group's files are on its shelf, not offers to answer.
	if p, err := e.list(bob, &parleyv1.FilesRequest{}); err != nil || len(p.GetFiles()) != 0 {
		t.Errorf("bob's pending offers: %v %v", p, err)
	}
	if s, err := e.list(carol, &parleyv1.FilesRequest{Conversation: "group.g1"}); err != nil || len(s.GetFiles()) != 1 {
		t.Errorf("carol's list of the group: %v %v", s, err)
	}
	if _, err := e.list(dave, &parleyv1.FilesRequest{Conversation: "group.g1"}); code(err) != parleyv1.ErrorCode_ERROR_CODE_PERMISSION_DENIED {
		t.Errorf("dave's list of the group: %v", err)
	}
	if err := e.answer(bob, id, true); code(err) != parleyv1.ErrorCode_ERROR_CODE_PERMISSION_DENIED {
		t.Errorf("answering a group's file: %v", err)
	}
	e.upload(alice, id, data)
	bobEvents.wait(t, parleyv1.FileEvent_KIND_AVAILABLE, id)
	if kinds := bobEvents.kinds(id); len(kinds) != 1 {
		t.Errorf("bob's events about a group file: %v (no OFFERED: it is a message in the group)", kinds)
	}
	// Members now may download; others, and members who left, may not.
	if _, err := e.open(carol, id, ""); err != nil {
		t.Errorf("carol opens: %v", err)
	}
	if _, err := e.downloadURL(dave, id); code(err) != parleyv1.ErrorCode_ERROR_CODE_PERMISSION_DENIED {
		t.Errorf("dave's download URL: %v", err)
	}
	e.world.set(func(w *world) { w.groups["group.g1"] = []string{alice.id, bob.id} })
	if _, err := e.open(carol, id, ""); code(err) != parleyv1.ErrorCode_ERROR_CODE_PERMISSION_DENIED {
		t.Errorf("carol opens after leaving: %v", err)
	}
	if _, err := e.open(alice, id, ""); err != nil {
		t.Errorf("the sender opens: %v", err)
	}
}

func testOfferRate(t *testing.T, m *testenv.MinIO) {
	e := newEnv(t, m, func(c *filesvc.Config) { c.OfferRate = 2 })
	data := []byte("x")
	e.offer(alice, "bob", data)
	e.offer(alice, "bob", data)
	_, err := e.offerReq(alice, &parleyv1.OfferFileRequest{ToUsername: "bob", Size: 1, Sha256: sha256Hex(data)})
	if e := errcode.From(err); e.Code != parleyv1.ErrorCode_ERROR_CODE_RATE_LIMITED || e.RetryAfter == 0 {
		t.Fatalf("the third offer in a minute: %v (retry after %d ms)", err, e.RetryAfter)
	}
	e.offer(bob, "alice", data) // per user
	if u := e.uploads(); len(u) != 3 {
		t.Errorf("%d multipart uploads for 3 offers", len(u))
	}
}

// testQuota: a user's uploading and available files may take at most
// -file-user-quota bytes; a file that fails, is cancelled, rejected or
// expires gives its bytes back; and a usage that drifted (a replica died
// between two writes) is repaired by the sweep.
func testQuota(t *testing.T, m *testenv.MinIO) {
	e := newEnv(t, m, func(c *filesvc.Config) { c.UserQuota = 100 })
	sixty, fifty := make([]byte, 60), make([]byte, 50)
	quotaExceeded := func(what string, data []byte) {
		t.Helper()
		if _, err := e.offerReq(alice, &parleyv1.OfferFileRequest{ToUsername: "bob", Size: uint64(len(data)), Sha256: sha256Hex(data)}); code(err) != parleyv1.ErrorCode_ERROR_CODE_QUOTA_EXCEEDED {
			t.Fatalf("%s: %v, want QUOTA_EXCEEDED", what, err)
		}
	}
	quotaExceeded("alone above the quota", make([]byte, 101))
	first := e.offer(alice, "bob", sixty).GetFile().GetFileId()
	quotaExceeded("60 + 50", fifty)
	e.offer(bob, "alice", fifty) // bob's quota is his own

	// Cancelled: the 60 are free again.
	if err := e.terminate(alice, first); err != nil {
		t.Fatal(err)
	}
	second := e.offer(alice, "bob", sixty).GetFile().GetFileId()
	quotaExceeded("60 + 50 again", fifty)
	// Rejected: free.
	if err := e.answer(bob, second, false); err != nil {
		t.Fatal(err)
	}
	third := e.offer(alice, "bob", sixty).GetFile().GetFileId()
	// Failed its SHA-256 check: free.
	if _, err := e.writeFrom(alice, third).parts(bytes.Repeat([]byte{1}, 60), 0, 60); code(err) != parleyv1.ErrorCode_ERROR_CODE_CHECKSUM_MISMATCH {
		t.Fatalf("upload of other bytes: %v", err)
	}
	fourth := e.offer(alice, "bob", sixty).GetFile().GetFileId()
	quotaExceeded("60 + 50 after the failure", fifty)

	// A usage gone wrong (as a replica that died mid-change leaves it):
	// the next sweep counts the records again.
	js, err := jetstream.New(e.nc)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(context.Background(), subject.BucketFiles)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(context.Background(), "q."+alice.id, []byte(`{"used":101}`)); err != nil {
		t.Fatal(err)
	}
	if err := e.terminate(alice, fourth); err != nil {
		t.Fatal(err)
	}
	quotaExceeded("with the usage drifted to 41 over", sixty)
	e.svc.Sweep(context.Background())
	e.offer(alice, "bob", sixty)
	ent, err := kv.Get(context.Background(), "q."+alice.id)
	if err != nil {
		t.Fatal(err)
	}
	var usage struct {
		Used int64 `json:"used"`
	}
	if err := json.Unmarshal(ent.Value(), &usage); err != nil || usage.Used != 60 {
		t.Errorf("alice's usage after the repair and an offer: %s", ent.Value())
	}
}
