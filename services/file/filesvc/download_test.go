package filesvc_test

import (
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/parleychat/parley/libs/rpc"
	"github.com/parleychat/parley/libs/subject"
	"github.com/parleychat/parley/libs/testenv"
	"github.com/parleychat/parley/protocol/parleyv1"
	"github.com/parleychat/parley/services/file/filesvc"
)

// TestAnswersAndDownloads: answering a private offer, cancelling, download
// URLs and who may open a file, and lists (docs/protocol.md §18.2, §18.4).
func TestAnswersAndDownloads(t *testing.T) {
	m := testenv.StartMinIO(t)
	t.Run("Accept", func(t *testing.T) { testAccept(t, m) })
	t.Run("Reject", func(t *testing.T) { testReject(t, m) })
	t.Run("Terminate", func(t *testing.T) { testTerminate(t, m) })
	t.Run("DownloadTokens", func(t *testing.T) { testDownloadTokens(t, m) })
	t.Run("List", func(t *testing.T) { testList(t, m) })
	t.Run("TokenKeyShared", func(t *testing.T) { testTokenKeyShared(t, m) })
}

func testAccept(t *testing.T, m *testenv.MinIO) {
	e := newEnv(t, m, nil)
	aliceEvents := e.events(alice)
	id := e.offer(alice, "bob", []byte("take it")).GetFile().GetFileId()
	for _, tc := range []struct {
		rule string
		who  user
		want parleyv1.ErrorCode
	}{
		{"§18.2: only the recipient answers (not the sender)", alice, parleyv1.ErrorCode_ERROR_CODE_PERMISSION_DENIED},
		{"§18.2: an unrelated user is told there is no such file", carol, parleyv1.ErrorCode_ERROR_CODE_NOT_FOUND},
		{"the gateway names the user", user{}, parleyv1.ErrorCode_ERROR_CODE_UNAUTHENTICATED},
	} {
		if err := e.answer(tc.who, id, true); code(err) != tc.want {
			t.Errorf("%s: %v, want %v", tc.rule, err, tc.want)
		}
	}
	if err := e.answer(bob, id, true); err != nil {
		t.Fatal(err)
	}
	ev := aliceEvents.wait(t, parleyv1.FileEvent_KIND_ACCEPTED, id)
	if ev.GetUserId() != bob.id || ev.GetUsername() != "bob" || ev.GetFile().GetAnswer() != parleyv1.FileAnswer_FILE_ANSWER_ACCEPTED {
		t.Errorf("ACCEPTED event: %v", ev)
	}
	if p, err := e.list(bob, &parleyv1.FilesRequest{}); err != nil || len(p.GetFiles()) != 0 {
		t.Errorf("bob's pending offers after answering: %v %v", p, err)
	}
	if l, err := e.list(bob, &parleyv1.FilesRequest{Conversation: dm(alice, bob)}); err != nil || len(l.GetFiles()) != 1 ||
		l.GetFiles()[0].GetAnswer() != parleyv1.FileAnswer_FILE_ANSWER_ACCEPTED {
		t.Errorf("the chat's files show bob's answer: %v %v", l, err)
	}
}

func testReject(t *testing.T, m *testenv.MinIO) {
	e := newEnv(t, m, nil)
	aliceEvents := e.events(alice)
	data := randomBytes(t, 8<<20+1)
	id := e.offer(alice, "bob", data).GetFile().GetFileId()
	if _, err := e.writeFrom(alice, id).tail(data, 0, 100); err != nil {
		t.Fatal(err)
	}
	if err := e.answer(bob, id, false); err != nil {
		t.Fatal(err)
	}
	aliceEvents.wait(t, parleyv1.FileEvent_KIND_REJECTED, id)
	// Nobody else may download it: its bytes go at once.
	if u := e.uploads(); len(u) != 0 {
		t.Errorf("multipart uploads after a reject: %v", u)
	}
	if tails := e.objects("tails/"); len(tails) != 0 {
		t.Errorf("tails after a reject: %v", tails)
	}
	if _, err := e.begin(alice, id); code(err) != parleyv1.ErrorCode_ERROR_CODE_NOT_FOUND {
		t.Errorf("alice uploads a rejected file: %v", err)
	}
	if _, err := e.downloadURL(bob, id); code(err) != parleyv1.ErrorCode_ERROR_CODE_PERMISSION_DENIED {
		t.Errorf("bob downloads what he rejected: %v", err)
	}
	if err := e.answer(bob, id, true); code(err) != parleyv1.ErrorCode_ERROR_CODE_NOT_FOUND {
		t.Errorf("answering again: %v", err)
	}
}

// testTerminate: the sender cancels an upload or removes a finished file
// (tus DELETE); its bytes go and everyone hears it expired.
func testTerminate(t *testing.T, m *testenv.MinIO) {
	e := newEnv(t, m, nil)
	bobEvents := e.events(bob)
	data := randomBytes(t, 100)
	uploading := e.offer(alice, "bob", data).GetFile().GetFileId()
	if _, err := e.writeFrom(alice, uploading).tail(data, 0, 40); err != nil {
		t.Fatal(err)
	}
	if err := e.terminate(alice, uploading); err != nil {
		t.Fatal(err)
	}
	bobEvents.wait(t, parleyv1.FileEvent_KIND_EXPIRED, uploading)
	if u, tails := e.uploads(), e.objects("tails/"); len(u) != 0 || len(tails) != 0 {
		t.Errorf("after cancelling: uploads %v, tails %v", u, tails)
	}
	if err := e.terminate(alice, uploading); code(err) != parleyv1.ErrorCode_ERROR_CODE_NOT_FOUND {
		t.Errorf("cancelling twice: %v", err)
	}
	if _, err := e.open(bob, uploading, ""); code(err) != parleyv1.ErrorCode_ERROR_CODE_NOT_FOUND {
		t.Errorf("bob opens a cancelled file: %v", err)
	}

	done := e.offer(alice, "bob", data).GetFile().GetFileId()
	e.upload(alice, done, data)
	if err := e.terminate(alice, done); err != nil {
		t.Fatal(err)
	}
	bobEvents.wait(t, parleyv1.FileEvent_KIND_EXPIRED, done)
	if _, err := e.read("files/" + done); err == nil {
		t.Error("a removed file's bytes are still stored")
	}
	if _, err := e.downloadURL(bob, done); code(err) != parleyv1.ErrorCode_ERROR_CODE_NOT_FOUND {
		t.Errorf("download URL of a removed file: %v", err)
	}
}

// tokenOf is the token in a download URL's path.
func tokenOf(t testing.TB, d *parleyv1.FileDownload) string {
	t.Helper()
	u, err := url.Parse(d.GetPath())
	if err != nil {
		t.Fatal(err)
	}
	return u.Query().Get("token")
}

// testDownloadTokens: a download URL names the file, the user and the
// session it was made for, and stops working when it expires or the
// session ends; when auth cannot say, the download is refused (§18.4).
func testDownloadTokens(t *testing.T, m *testenv.MinIO) {
	e := newEnv(t, m, nil)
	data := []byte("to be downloaded")
	id := e.offer(alice, "bob", data).GetFile().GetFileId()
	other := e.offer(alice, "bob", data).GetFile().GetFileId()
	// A URL may be made while the file uploads (the gateway answers 409
	// or serves it live).
	if d, err := e.downloadURL(bob, id); err != nil || d.GetFile().GetState() != parleyv1.FileState_FILE_STATE_UPLOADING {
		t.Errorf("download URL while uploading: %v %v", d, err)
	}
	e.upload(alice, id, data)
	d, err := e.downloadURL(bob, id)
	if err != nil {
		t.Fatal(err)
	}
	tok := tokenOf(t, d)
	if !strings.HasPrefix(d.GetPath(), "/v1/files/"+id+"/content?token=") || tok == "" ||
		time.UnixMilli(d.GetExpiresAtUnixMs()).After(e.clock.now().Add(e.cfg.TokenTTL)) {
		t.Fatalf("download URL: %v", d)
	}
	if r, err := e.open(user{}, id, tok); err != nil || r.GetFile().GetFileId() != id || r.GetKey() != "files/"+id {
		t.Fatalf("open by token: %v %v", r, err)
	}
	for _, tc := range []struct {
		rule  string
		who   user
		file  string
		token string
		want  parleyv1.ErrorCode
	}{
		{"a token is for one file", user{}, other, tok, parleyv1.ErrorCode_ERROR_CODE_TOKEN_INVALID},
		{"a token is signed", user{}, id, tok[:len(tok)-2] + "AA", parleyv1.ErrorCode_ERROR_CODE_TOKEN_INVALID},
		{"a token is base64", user{}, id, "!!", parleyv1.ErrorCode_ERROR_CODE_TOKEN_INVALID},
		{"neither token nor identity", user{}, id, "", parleyv1.ErrorCode_ERROR_CODE_UNAUTHENTICATED},
		{"§18.4: not sent to carol", carol, id, "", parleyv1.ErrorCode_ERROR_CODE_PERMISSION_DENIED},
		{"an unknown file", bob, "f000000000000000000000000", "", parleyv1.ErrorCode_ERROR_CODE_NOT_FOUND},
	} {
		if _, err := e.open(tc.who, tc.file, tc.token); code(err) != tc.want {
			t.Errorf("%s: %v, want %v", tc.rule, err, tc.want)
		}
	}
	if _, err := e.downloadURL(carol, id); code(err) != parleyv1.ErrorCode_ERROR_CODE_PERMISSION_DENIED {
		t.Errorf("carol asks for a download URL: %v", err)
	}
	// A URL is bound to the session asking for it: none, none.
	h := nats.Header{}
	h.Set(subject.HeaderUserID, bob.id)
	if err := rpc.Request(t.Context(), e.nc, subject.FileDownload, h, &parleyv1.FileDownloadRequest{FileId: id}, nil); code(err) != parleyv1.ErrorCode_ERROR_CODE_UNAUTHENTICATED {
		t.Errorf("a download URL without a session: %v", err)
	}

	// Auth cannot answer: refused, try again (503 at the gateway).
	e.world.set(func(w *world) { w.authOff = true })
	if _, err := e.open(user{}, id, tok); code(err) != parleyv1.ErrorCode_ERROR_CODE_UNAVAILABLE {
		t.Errorf("open by token while auth is down: %v", err)
	}
	// The session ended (logout, takeover): the URL dies with it.
	e.world.set(func(w *world) { w.authOff, w.ended["s-"+bob.id] = false, true })
	if _, err := e.open(user{}, id, tok); code(err) != parleyv1.ErrorCode_ERROR_CODE_SESSION_REVOKED {
		t.Errorf("open by the token of an ended session: %v", err)
	}
	e.world.set(func(w *world) { w.ended["s-"+bob.id] = false })
	e.clock.advance(e.cfg.TokenTTL)
	if _, err := e.open(user{}, id, tok); code(err) != parleyv1.ErrorCode_ERROR_CODE_TOKEN_EXPIRED {
		t.Errorf("open by an expired token: %v", err)
	}
}

// testList: a conversation's files newest first, in pages; only the
// conversation's members may list it; rooms have none (§18.2).
func testList(t *testing.T, m *testenv.MinIO) {
	e := newEnv(t, m, nil)
	e.world.set(func(w *world) { w.groups["group.g1"] = []string{alice.id, bob.id} })
	var want []*parleyv1.FileInfo
	for range 5 {
		want = append(want, e.offer(alice, "group.g1", []byte("x")).GetFile())
		e.clock.advance(time.Millisecond)
	}
	failed := e.offer(bob, "group.g1", []byte("y")).GetFile().GetFileId()
	if _, err := e.writeFrom(bob, failed).parts([]byte("z"), 0, 1); code(err) != parleyv1.ErrorCode_ERROR_CODE_CHECKSUM_MISMATCH {
		t.Fatal(err)
	}
	slices.Reverse(want) // newest first
	var got []string
	after := ""
	for pages := 0; ; pages++ {
		p, err := e.list(bob, &parleyv1.FilesRequest{Conversation: "group.g1", Limit: 2, AfterFileId: after})
		if err != nil || pages > 3 {
			t.Fatalf("page %d: %v %v", pages, p, err)
		}
		for _, f := range p.GetFiles() {
			got = append(got, f.GetFileId())
		}
		if !p.GetMore() {
			break
		}
		after = p.GetFiles()[len(p.GetFiles())-1].GetFileId()
	}
	var wantIDs []string
	for _, f := range want {
		wantIDs = append(wantIDs, f.GetFileId())
	}
	if !slices.Equal(got, wantIDs) {
		t.Errorf("the group's files in pages of 2: %v, want %v (the failed one left out)", got, wantIDs)
	}
	if p, err := e.list(bob, &parleyv1.FilesRequest{Conversation: "group.g1"}); err != nil || len(p.GetFiles()) != 5 || p.GetMore() {
		t.Errorf("one default page: %d files, more %v, %v", len(p.GetFiles()), p.GetMore(), err)
	}
	for _, tc := range []struct {
		rule string
		who  user
		req  *parleyv1.FilesRequest
		want parleyv1.ErrorCode
	}{
		{"§18.2: rooms have no files", alice, &parleyv1.FilesRequest{Conversation: "room.lobby"}, parleyv1.ErrorCode_ERROR_CODE_NOT_FOUND},
		{"§18.2: a private chat's files are its two users'", carol, &parleyv1.FilesRequest{Conversation: dm(alice, bob)}, parleyv1.ErrorCode_ERROR_CODE_PERMISSION_DENIED},
		{"§18.2: a group's files are its members'", carol, &parleyv1.FilesRequest{Conversation: "group.g1"}, parleyv1.ErrorCode_ERROR_CODE_PERMISSION_DENIED},
		{"a conversation id, not a wildcard", alice, &parleyv1.FilesRequest{Conversation: "dm.ualice.>"}, parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT},
		{"after_file_id names a file", alice, &parleyv1.FilesRequest{Conversation: "group.g1", AfterFileId: "f000000000000000000000000"}, parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT},
		{"the gateway names the user", user{}, &parleyv1.FilesRequest{}, parleyv1.ErrorCode_ERROR_CODE_UNAUTHENTICATED},
	} {
		if _, err := e.list(tc.who, tc.req); code(err) != tc.want {
			t.Errorf("%s: %v, want %v", tc.rule, err, tc.want)
		}
	}
	if p, err := e.list(alice, &parleyv1.FilesRequest{Conversation: dm(alice, bob)}); err != nil || len(p.GetFiles()) != 0 {
		t.Errorf("an empty private chat: %v %v", p, err)
	}
}

// testTokenKeyShared: without a configured token key, replicas share one
// they keep in KV, so a URL one replica made works at another.
func testTokenKeyShared(t *testing.T, m *testenv.MinIO) {
	e := newEnv(t, m, func(c *filesvc.Config) { c.TokenKey = "" })
	data := []byte("shared")
	id := e.offer(alice, "bob", data).GetFile().GetFileId()
	e.upload(alice, id, data)
	d, err := e.downloadURL(bob, id)
	if err != nil {
		t.Fatal(err)
	}
	e.stop()
	_, _, _ = e.start(e.cfg)
	if r, err := e.open(user{}, id, tokenOf(t, d)); err != nil || r.GetFile().GetFileId() != id {
		t.Fatalf("open at another replica by a token the first made: %v %v", r, err)
	}
}
