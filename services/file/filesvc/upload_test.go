package filesvc_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"

	"github.com/parleychat/parley/libs/objstore"
	"github.com/parleychat/parley/libs/proto/internalv1"
	"github.com/parleychat/parley/libs/subject"
	"github.com/parleychat/parley/libs/testenv"
	"github.com/parleychat/parley/protocol/parleyv1"
)

// TestUploads: the file service's side of an upload (docs/architecture.md,
// "Files"): leases, commits that must add up, tails, the SHA-256 check at
// the end, pictures, live files.
func TestUploads(t *testing.T) {
	m := testenv.StartMinIO(t)
	t.Run("Whole", func(t *testing.T) { testUploadWhole(t, m) })
	t.Run("TailsAndLeases", func(t *testing.T) { testTailsAndLeases(t, m) })
	t.Run("WhoMayUpload", func(t *testing.T) { testWhoMayUpload(t, m) })
	t.Run("ChecksumMismatch", func(t *testing.T) { testChecksumMismatch(t, m) })
	t.Run("PartNumbersRunOut", func(t *testing.T) { testPartNumbersRunOut(t, m) })
	t.Run("Pictures", func(t *testing.T) { testPictures(t, m) })
	t.Run("Live", func(t *testing.T) { testLive(t, m) })
	t.Run("ConcurrentWriters", func(t *testing.T) { testConcurrentWriters(t, m) })
	t.Run("RepeatedCommit", func(t *testing.T) { testRepeatedCommit(t, m) })
}

func randomBytes(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// progress collects the FileProgress events of a file.
func (e *env) progress(id string) func() []*internalv1.FileProgress {
	e.t.Helper()
	var mu sync.Mutex
	var got []*internalv1.FileProgress
	sub, err := e.nc.Subscribe(subject.FileProgress(id), func(m *nats.Msg) {
		var p internalv1.FileProgress
		if proto.Unmarshal(m.Data, &p) == nil {
			mu.Lock()
			got = append(got, &p)
			mu.Unlock()
		}
	})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := e.nc.Flush(); err != nil {
		e.t.Fatal(err)
	}
	return func() []*internalv1.FileProgress {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(got)
	}
}

func testUploadWhole(t *testing.T, m *testenv.MinIO) {
	e := newEnv(t, m, nil)
	aliceEvents, bobEvents := e.events(alice), e.events(bob)
	data := randomBytes(t, 2*(8<<20)+100)
	id := e.offer(alice, "bob", data).GetFile().GetFileId()
	progress := e.progress(id)

	w := e.writeFrom(alice, id)
	if w.st.GetOffset() != 0 || w.st.GetPartSize() != 8<<20 || w.st.GetNextPart() != 1 || w.st.GetPartLimit() != 33 ||
		w.st.GetLease() == "" || w.st.GetKey() != "files/"+id || w.st.GetUploadId() == "" || w.st.GetState() != parleyv1.FileState_FILE_STATE_UPLOADING {
		t.Fatalf("the first writer's state: %v", w.st)
	}
	st, err := w.parts(data, 0, 8<<20)
	if err != nil || st.GetOffset() != 8<<20 || st.GetPartLimit() != 33 {
		t.Fatalf("first part: %v %v", st, err)
	}
	if s, err := e.status(alice, id); err != nil || s.GetOffset() != 8<<20 || s.GetLease() != "" {
		t.Errorf("status after a part: %v %v (no lease: status takes none)", s, err)
	}
	if st, err = w.parts(data, 8<<20, len(data)); err != nil || st.GetState() != parleyv1.FileState_FILE_STATE_AVAILABLE || st.GetOffset() != uint64(len(data)) {
		t.Fatalf("last parts: %v %v", st, err)
	}
	// Both hear it is available; its bytes are the object the gateway
	// serves; the upload is no more.
	for _, ev := range []*events{aliceEvents, bobEvents} {
		f := ev.wait(t, parleyv1.FileEvent_KIND_AVAILABLE, id).GetFile()
		if f.GetUploaded() != uint64(len(data)) || f.GetExpiresAtUnixMs() < e.clock.now().Add(e.cfg.FileTTL-time.Minute).UnixMilli() {
			t.Errorf("AVAILABLE event: %v", f)
		}
	}
	if got, err := e.read("files/" + id); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("the stored file: %d bytes, %v", len(got), err)
	}
	if u := e.uploads(); len(u) != 0 {
		t.Errorf("multipart uploads left: %v", u)
	}
	testenv.Eventually(t, 5*time.Second, "progress events for both commits", func() bool {
		p := progress()
		return len(p) == 2 && p[0].GetUploaded() == 8<<20 && p[1].GetState() == parleyv1.FileState_FILE_STATE_AVAILABLE
	})
	// A writer coming after the end learns the file is complete (the
	// gateway answers 204) and gets no lease.
	if st, err := e.begin(alice, id); err != nil || st.GetState() != parleyv1.FileState_FILE_STATE_AVAILABLE || st.GetLease() != "" || st.GetOffset() != st.GetSize() {
		t.Errorf("begin after the end: %v %v", st, err)
	}
	if _, err := w.commit(&internalv1.UploadCommitRequest{Offset: uint64(len(data)), HashState: []byte{1}}); code(err) != parleyv1.ErrorCode_ERROR_CODE_CONFLICT {
		t.Errorf("a commit after the end: %v", err)
	}
	if r, err := e.open(bob, id, ""); err != nil || r.GetKey() != "files/"+id || r.GetFile().GetState() != parleyv1.FileState_FILE_STATE_AVAILABLE {
		t.Errorf("bob opens: %v %v", r, err)
	}
}

// testTailsAndLeases: a writer keeps the bytes after its last whole part
// as a tail, replaced as it grows; a second writer (a client that
// reconnected) takes the upload over with the tail and the SHA-256 state
// so far, and the first can no longer commit; commits that do not add up
// are refused.
func testTailsAndLeases(t *testing.T, m *testenv.MinIO) {
	e := newEnv(t, m, nil)
	const ps = 8 << 20
	data := randomBytes(t, 2*ps+500)
	id := e.offer(alice, "bob", data).GetFile().GetFileId()
	w1 := e.writeFrom(alice, id)
	if _, err := w1.tail(data, 0, 300); err != nil {
		t.Fatal(err)
	}
	if _, err := w1.tail(data, 0, 700); err != nil {
		t.Fatal(err)
	}
	if tails := e.objects("tails/"); !slices.Equal(tails, []string{"tails/" + id + "/700"}) {
		t.Errorf("tails after the second: %v (the first replaced)", tails)
	}

	w2 := e.writeFrom(alice, id)
	if w2.st.GetOffset() != 700 || w2.st.GetTailKey() != "tails/"+id+"/700" || w2.st.GetTailSize() != 700 ||
		!bytes.Equal(w2.st.GetHashState(), hashAfter(data, 700)) || w2.st.GetNextPart() != w1.st.GetPartLimit() {
		t.Fatalf("the second writer's state: %v", w2.st)
	}
	if _, err := w1.tail(data, 0, 900); code(err) != parleyv1.ErrorCode_ERROR_CODE_CONFLICT {
		t.Errorf("the first writer commits after the takeover: %v", err)
	}
	for _, tc := range []struct {
		rule string
		req  *internalv1.UploadCommitRequest
	}{
		{"the offset is the parts and the tail", &internalv1.UploadCommitRequest{TailKey: "tails/x", TailSize: 10, Offset: 800, HashState: []byte{1}}},
		{"a tail is smaller than a part", &internalv1.UploadCommitRequest{TailKey: "tails/x", TailSize: ps, Offset: ps, HashState: []byte{1}}},
		{"a part is whole but the file's last", &internalv1.UploadCommitRequest{Parts: []*internalv1.FilePart{{Number: w2.next, Etag: "e", Size: 100}}, Offset: 100, HashState: []byte{1}}},
		{"part numbers are the writer's", &internalv1.UploadCommitRequest{Parts: []*internalv1.FilePart{{Number: 1000, Etag: "e", Size: ps}}, Offset: ps, HashState: []byte{1}}},
		{"a hash state comes with every commit", &internalv1.UploadCommitRequest{TailKey: "tails/x", TailSize: 800, Offset: 800}},
	} {
		if _, err := w2.commit(tc.req); code(err) != parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT {
			t.Errorf("%s: %v", tc.rule, err)
		}
	}
	stale := *w2
	stale.st = proto.Clone(w2.st).(*internalv1.UploadState)
	stale.st.Offset = 300
	if _, err := stale.tail(data, 0, 900); code(err) != parleyv1.ErrorCode_ERROR_CODE_CONFLICT {
		t.Errorf("a commit from an old offset: %v", err)
	}
	// The gateway prepends the tail to its next part: whole parts from 0.
	if _, err := w2.parts(data, 0, 2*ps); err != nil {
		t.Fatal(err)
	}
	// The tail that went into the part is deleted by the commit; the one
	// the superseded writer stored but could not commit is the sweep's.
	if tails := e.objects("tails/"); !slices.Equal(tails, []string{"tails/" + id + "/900"}) {
		t.Errorf("tails after the parts: %v", tails)
	}
	if st, err := w2.parts(data, 2*ps, len(data)); err != nil || st.GetState() != parleyv1.FileState_FILE_STATE_AVAILABLE {
		t.Fatalf("the end: %v %v", st, err)
	}
	if got, err := e.read("files/" + id); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("the stored file: %d bytes, %v", len(got), err)
	}
}

func testWhoMayUpload(t *testing.T, m *testenv.MinIO) {
	e := newEnv(t, m, nil)
	data := []byte("mine")
	id := e.offer(alice, "bob", data).GetFile().GetFileId()
	for _, tc := range []struct {
		rule string
		who  user
		id   string
		want parleyv1.ErrorCode
	}{
		{"§18.3: the recipient is told it is not theirs", bob, id, parleyv1.ErrorCode_ERROR_CODE_PERMISSION_DENIED},
		{"§18.3: anyone else that there is no such file", carol, id, parleyv1.ErrorCode_ERROR_CODE_NOT_FOUND},
		{"the gateway names the user", user{}, id, parleyv1.ErrorCode_ERROR_CODE_UNAUTHENTICATED},
		{"a file id that is none", alice, "nosuch", parleyv1.ErrorCode_ERROR_CODE_NOT_FOUND},
		{"an unknown file", alice, "f000000000000000000000000", parleyv1.ErrorCode_ERROR_CODE_NOT_FOUND},
	} {
		if _, err := e.begin(tc.who, tc.id); code(err) != tc.want {
			t.Errorf("begin: %s: %v, want %v", tc.rule, err, tc.want)
		}
		if _, err := e.status(tc.who, tc.id); code(err) != tc.want {
			t.Errorf("status: %s: %v, want %v", tc.rule, err, tc.want)
		}
		if _, err := e.commit(tc.who, &internalv1.UploadCommitRequest{FileId: tc.id, Lease: "l", Offset: 1, HashState: []byte{1}}); code(err) != tc.want {
			t.Errorf("commit: %s: %v, want %v", tc.rule, err, tc.want)
		}
		if err := e.terminate(tc.who, tc.id); code(err) != tc.want {
			t.Errorf("terminate: %s: %v, want %v", tc.rule, err, tc.want)
		}
	}
	// An upload past its deadline takes nothing more, even before the
	// sweep removes it.
	e.clock.advance(e.cfg.UploadTTL)
	if _, err := e.begin(alice, id); code(err) != parleyv1.ErrorCode_ERROR_CODE_NOT_FOUND {
		t.Errorf("begin past the upload deadline: %v", err)
	}
}

// testChecksumMismatch: bytes that do not match the declared SHA-256 fail
// the file at its last commit: everyone hears it failed, its bytes are
// dropped and nobody can download it (§18.3).
func testChecksumMismatch(t *testing.T, m *testenv.MinIO) {
	e := newEnv(t, m, nil)
	aliceEvents, bobEvents := e.events(alice), e.events(bob)
	declared := randomBytes(t, 8<<20+10)
	id := e.offer(alice, "bob", declared).GetFile().GetFileId()
	sent := slices.Clone(declared)
	sent[len(sent)-1]++
	w := e.writeFrom(alice, id)
	if _, err := w.parts(sent, 0, 8<<20); err != nil {
		t.Fatal(err)
	}
	if _, err := w.parts(sent, 8<<20, len(sent)); code(err) != parleyv1.ErrorCode_ERROR_CODE_CHECKSUM_MISMATCH {
		t.Fatalf("the last commit: %v", err)
	}
	for _, ev := range []*events{aliceEvents, bobEvents} {
		ev.wait(t, parleyv1.FileEvent_KIND_FAILED, id)
	}
	if u := e.uploads(); len(u) != 0 {
		t.Errorf("multipart uploads left: %v", u)
	}
	if _, err := e.status(alice, id); code(err) != parleyv1.ErrorCode_ERROR_CODE_CHECKSUM_MISMATCH {
		t.Errorf("status of a failed upload: %v", err)
	}
	if _, err := e.open(bob, id, ""); code(err) != parleyv1.ErrorCode_ERROR_CODE_CHECKSUM_MISMATCH {
		t.Errorf("open of a failed file: %v", err)
	}
	if _, err := e.downloadURL(bob, id); code(err) != parleyv1.ErrorCode_ERROR_CODE_CHECKSUM_MISMATCH {
		t.Errorf("download URL of a failed file: %v", err)
	}
	if err := e.terminate(alice, id); code(err) != parleyv1.ErrorCode_ERROR_CODE_NOT_FOUND {
		t.Errorf("terminate of a failed file: %v", err)
	}
	if l, err := e.list(bob, &parleyv1.FilesRequest{Conversation: dm(alice, bob)}); err != nil || len(l.GetFiles()) != 0 {
		t.Errorf("the chat's files: %v %v (failed files are left out)", l, err)
	}
}

// testPartNumbersRunOut: S3 has 10,000 part numbers and each writer gets
// 32 of its own; an upload interrupted so often that they run out must be
// sent again (FILE_TOO_LARGE: "interrupted too many times").
func testPartNumbersRunOut(t *testing.T, m *testenv.MinIO) {
	e := newEnv(t, m, nil)
	id := e.offer(alice, "bob", []byte("x")).GetFile().GetFileId()
	writers := 0
	for ; writers <= objstore.MaxParts; writers++ {
		if _, err := e.begin(alice, id); err != nil {
			if code(err) != parleyv1.ErrorCode_ERROR_CODE_FILE_TOO_LARGE {
				t.Fatalf("writer %d: %v", writers+1, err)
			}
			break
		}
	}
	if writers != objstore.MaxParts/32 {
		t.Errorf("%d writers before the part numbers ran out, want %d", writers, objstore.MaxParts/32)
	}
}

func pngOf(t testing.TB, w, h int) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.Set(x, y, color.RGBA{uint8(x), uint8(y), 200, 255})
		}
	}
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// testPictures: a completed picture gets its real content type and a
// thumbnail of at most 160×160, whatever was declared; a file declared a
// picture that is none is relabelled application/octet-stream; other
// files keep their type (docs/architecture.md, "Files").
func testPictures(t *testing.T, m *testenv.MinIO) {
	e := newEnv(t, m, nil)
	bobEvents := e.events(bob)
	for _, tc := range []struct {
		name, declared, want string
		data                 []byte
		thumb                bool
	}{
		{"a PNG declared as anything", "application/octet-stream", "image/png", pngOf(t, 400, 200), true},
		{"text declared as a JPEG", "image/jpeg", "application/octet-stream", []byte("not a picture at all"), false},
		{"text declared as text", "text/plain", "text/plain", []byte("plain text"), false},
		{"a PNG that does not decode", "image/png", "image/png", pngOf(t, 20, 20)[:60], false},
	} {
		o, err := e.offerReq(alice, &parleyv1.OfferFileRequest{ToUsername: "bob", Name: "p", Size: uint64(len(tc.data)),
			Sha256: sha256Hex(tc.data), ContentType: tc.declared})
		if err != nil {
			t.Fatal(err)
		}
		id := o.GetFile().GetFileId()
		e.upload(alice, id, tc.data)
		f := bobEvents.wait(t, parleyv1.FileEvent_KIND_AVAILABLE, id).GetFile()
		if f.GetContentType() != tc.want || (len(f.GetThumbnail()) > 0) != tc.thumb {
			t.Errorf("%s: content type %q, a %d-byte thumbnail", tc.name, f.GetContentType(), len(f.GetThumbnail()))
			continue
		}
		if tc.thumb {
			img, err := jpeg.Decode(bytes.NewReader(f.GetThumbnail()))
			if err != nil || img.Bounds().Dx() != 160 || img.Bounds().Dy() != 80 {
				t.Errorf("%s: thumbnail %v, %v", tc.name, img.Bounds(), err)
			}
		}
	}
}

// testLive: a private file whose recipient is online is live: the
// recipient may open it while it uploads, seeing the committed parts and
// tail, and the parts' readable copies are removed once it is complete.
func testLive(t *testing.T, m *testenv.MinIO) {
	e := newEnv(t, m, nil)
	e.world.set(func(w *world) { w.online[bob.id] = true })
	const ps = 8 << 20
	data := randomBytes(t, ps+1000)
	id := e.offer(alice, "bob", data).GetFile().GetFileId()
	w := e.writeFrom(alice, id)
	if w.st.GetLivePrefix() != "live/"+id+"/" {
		t.Fatalf("the writer's live prefix: %q", w.st.GetLivePrefix())
	}
	// The gateway stores each part twice; here the first.
	if _, err := e.store.Put(context.Background(), w.st.GetLivePrefix()+"1", bytes.NewReader(data[:ps]), ps, "application/octet-stream"); err != nil {
		t.Fatal(err)
	}
	if _, err := w.parts(data, 0, ps); err != nil {
		t.Fatal(err)
	}
	if _, err := w.tail(data, ps, ps+10); err != nil {
		t.Fatal(err)
	}
	r, err := e.open(bob, id, "")
	if err != nil || r.GetLivePrefix() != "live/"+id+"/" || len(r.GetParts()) != 1 || r.GetTailSize() != 10 ||
		r.GetTailKey() == "" || r.GetFile().GetUploaded() != ps+10 {
		t.Fatalf("bob opens the live file: %v %v", r, err)
	}
	if _, err := w.parts(data, ps, len(data)); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, "the live copies removed", func() bool { return len(e.objects("live/")) == 0 })
	if r, err := e.open(bob, id, ""); err != nil || r.GetLivePrefix() != "" || r.GetFile().GetState() != parleyv1.FileState_FILE_STATE_AVAILABLE {
		t.Errorf("bob opens the completed file: %v %v", r, err)
	}
	// An offline recipient's file is written once.
	e.world.set(func(w *world) { w.online[bob.id] = false })
	if st, err := e.begin(alice, e.offer(alice, "bob", data).GetFile().GetFileId()); err != nil || st.GetLivePrefix() != "" {
		t.Errorf("a file for an offline recipient: %v %v", st, err)
	}
}

// testConcurrentWriters: writers beginning at once at two replicas (every
// record change is a compare-and-set) each get part numbers of their own,
// and only the last lease handed out may commit.
func testConcurrentWriters(t *testing.T, m *testenv.MinIO) {
	e := newEnv(t, m, nil)
	e.start(e.cfg) // a second replica on the same bucket and KV
	data := []byte("contended")
	id := e.offer(alice, "bob", data).GetFile().GetFileId()
	const n = 8
	states := make([]*internalv1.UploadState, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { states[i], errs[i] = e.begin(alice, id) })
	}
	wg.Wait()
	type span struct{ from, to uint32 }
	var spans []span
	for i, st := range states {
		switch {
		case errs[i] == nil:
			spans = append(spans, span{st.GetNextPart(), st.GetPartLimit()})
		case code(errs[i]) != parleyv1.ErrorCode_ERROR_CODE_UNAVAILABLE: // busy: the gateway retries
			t.Fatalf("begin %d: %v", i, errs[i])
		}
	}
	if len(spans) == 0 {
		t.Fatal("no writer began")
	}
	slices.SortFunc(spans, func(a, b span) int { return int(a.from) - int(b.from) })
	for i := 1; i < len(spans); i++ {
		if spans[i].from < spans[i-1].to {
			t.Fatalf("writers share part numbers: %v", spans)
		}
	}
	// The writer with the highest range began last: its lease is the one.
	var last *writer
	for i, st := range states {
		if errs[i] == nil && st.GetNextPart() == spans[len(spans)-1].from {
			last = &writer{e: e, u: alice, st: st, next: st.GetNextPart()}
		} else if errs[i] == nil {
			w := &writer{e: e, u: alice, st: st, next: st.GetNextPart()}
			if _, err := w.commit(&internalv1.UploadCommitRequest{Offset: 0, HashState: hashAfter(data, 0)}); code(err) != parleyv1.ErrorCode_ERROR_CODE_CONFLICT {
				t.Errorf("a superseded writer commits: %v", err)
			}
		}
	}
	if _, err := last.parts(data, 0, len(data)); err != nil {
		t.Fatalf("the last writer: %v", err)
	}
}

// testRepeatedCommit: a commit whose answer was lost (the replica died
// after saving it; the gateway timed out) is sent again by the gateway;
// it is answered as the first time, not refused as out of date, so the
// gateway keeps the parts it read meanwhile. Only the very commit
// recorded last is: another one from the old offset, or the same one
// under a lease taken over since, is refused.
func testRepeatedCommit(t *testing.T, m *testenv.MinIO) {
	e := newEnv(t, m, nil)
	const ps = 8 << 20
	data := randomBytes(t, 2*ps+500)
	id := e.offer(alice, "bob", data).GetFile().GetFileId()
	progress := e.progress(id)
	w := e.writeFrom(alice, id)
	first, err := w.parts(data, 0, ps)
	if err != nil {
		t.Fatal(err)
	}
	firstReq := w.last
	again, err := e.commit(alice, firstReq)
	if err != nil || again.GetOffset() != ps || again.GetLease() != first.GetLease() || again.GetPartLimit() != first.GetPartLimit() {
		t.Fatalf("the first part's commit again: %v %v; the first answer: %v", again, err, first)
	}
	if _, err := w.tail(data, ps, ps+100); err != nil {
		t.Fatal(err)
	}
	tail := w.last
	if st, err := e.commit(alice, tail); err != nil || st.GetOffset() != ps+100 || st.GetTailSize() != 100 {
		t.Fatalf("the tail's commit again: %v %v", st, err)
	}
	if s, err := e.status(alice, id); err != nil || s.GetOffset() != ps+100 {
		t.Fatalf("status after repeated commits: %v %v", s, err)
	}
	// The first part's commit is no longer the last one recorded.
	if _, err := e.commit(alice, firstReq); code(err) != parleyv1.ErrorCode_ERROR_CODE_CONFLICT {
		t.Errorf("an older commit sent again: %v", err)
	}
	// Another writer takes over: the first one's commit is out of date.
	w2 := e.writeFrom(alice, id)
	if _, err := e.commit(alice, tail); code(err) != parleyv1.ErrorCode_ERROR_CODE_CONFLICT {
		t.Errorf("a commit again under a lease taken over: %v", err)
	}
	end, err := w2.parts(data, ps, len(data))
	if err != nil || end.GetState() != parleyv1.FileState_FILE_STATE_AVAILABLE {
		t.Fatalf("the rest: %v %v", end, err)
	}
	if st, err := e.commit(alice, w2.last); err != nil || st.GetState() != parleyv1.FileState_FILE_STATE_AVAILABLE || st.GetOffset() != uint64(len(data)) {
		t.Errorf("the last commit again, after the file is complete: %v %v", st, err)
	}
	if got, err := e.read("files/" + id); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("the stored file: %d bytes, %v", len(got), err)
	}
	// Each commit was counted once: 8 MiB, the tail, the end.
	testenv.Eventually(t, 5*time.Second, "three progress events", func() bool { return len(progress()) == 3 })
	time.Sleep(200 * time.Millisecond)
	if p := progress(); len(p) != 3 {
		t.Errorf("%d progress events, want 3 (one per commit recorded): %v", len(p), p)
	}
}
