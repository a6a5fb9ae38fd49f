package filesvc_test

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/parleychat/parley/libs/testenv"
	"github.com/parleychat/parley/protocol/errcode"
	"github.com/parleychat/parley/protocol/parleyv1"
	"github.com/parleychat/parley/services/file/filesvc"
)

// TestSweep: retention (docs/protocol.md §18.5; docs/architecture.md,
// "Retention"): uploads past -file-upload-ttl and files past -file-ttl
// are removed and EXPIRED, their records purged a week later; multipart
// uploads and objects no record owns are removed once older than the
// upload deadline, and nothing younger or owned is touched.
func TestSweep(t *testing.T) {
	m := testenv.StartMinIO(t)
	e := newEnv(t, m, func(c *filesvc.Config) { c.UploadTTL, c.FileTTL = time.Hour, 3*time.Hour })
	bobEvents := e.events(bob)
	sweep := func() { e.svc.Sweep(context.Background()) }
	data := []byte("kept for a while")

	stalled := e.offer(alice, "bob", data).GetFile().GetFileId()
	if _, err := e.writeFrom(alice, stalled).tail(data, 0, 5); err != nil {
		t.Fatal(err)
	}
	finished := e.offer(alice, "bob", data).GetFile().GetFileId()
	e.upload(alice, finished, data)
	failed := e.offer(alice, "bob", data).GetFile().GetFileId()
	if _, err := e.writeFrom(alice, failed).parts(bytes.ToUpper(data), 0, len(data)); code(err) != parleyv1.ErrorCode_ERROR_CODE_CHECKSUM_MISMATCH {
		t.Fatal(err)
	}
	// What a crash leaves: an upload whose record was never written, a
	// tail nobody committed, a file whose record was lost.
	orphan, err := e.store.NewUpload(context.Background(), "files/forphan")
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"tails/forphan/7", "files/fgone", "live/forphan/1"} {
		if _, err := e.store.Put(context.Background(), key, strings.NewReader("x"), 1, "application/octet-stream"); err != nil {
			t.Fatal(err)
		}
	}

	// Young: nothing goes.
	sweep()
	if len(e.uploads()) != 2 || len(e.objects("tails/")) != 2 || len(e.objects("files/")) != 2 || len(e.objects("live/")) != 1 {
		t.Fatalf("a sweep before any deadline removed something: uploads %v, objects %v %v %v",
			e.uploads(), e.objects("tails/"), e.objects("files/"), e.objects("live/"))
	}

	// Past the upload deadline: the stalled upload and the orphans go;
	// the finished file stays.
	e.clock.advance(time.Hour + time.Minute)
	sweep()
	bobEvents.wait(t, parleyv1.FileEvent_KIND_EXPIRED, stalled)
	if u := e.uploads(); len(u) != 0 {
		t.Errorf("multipart uploads after the upload deadline: %v (the orphan %s too)", u, orphan)
	}
	if objs := slices.Concat(e.objects("tails/"), e.objects("files/"), e.objects("live/")); !slices.Equal(objs, []string{"files/" + finished}) {
		t.Errorf("objects after the upload deadline: %v, want only the finished file", objs)
	}
	if _, err := e.status(alice, stalled); !isExpired(err) {
		t.Errorf("the stalled upload: %v", err)
	}
	if _, err := e.open(bob, finished, ""); err != nil {
		t.Errorf("the finished file before its deadline: %v", err)
	}

	// Past the file's deadline: it goes.
	e.clock.advance(3 * time.Hour)
	sweep()
	bobEvents.wait(t, parleyv1.FileEvent_KIND_EXPIRED, finished)
	if objs := e.objects("files/"); len(objs) != 0 {
		t.Errorf("objects after the file deadline: %v", objs)
	}
	if _, err := e.open(bob, finished, ""); !isExpired(err) {
		t.Errorf("the expired file: %v", err)
	}
	if p, err := e.list(bob, &parleyv1.FilesRequest{Conversation: dm(alice, bob)}); err != nil || len(p.GetFiles()) != 0 {
		t.Errorf("the chat's files after expiry: %v %v", p, err)
	}

	// A week later the records go: no such file, rather than expired.
	e.clock.advance(7 * 24 * time.Hour)
	sweep()
	for _, id := range []string{stalled, finished, failed} {
		if _, err := e.open(alice, id, ""); code(err) != parleyv1.ErrorCode_ERROR_CODE_NOT_FOUND || isExpired(err) {
			t.Errorf("record of %s a week after it ended: %v", id, err)
		}
	}
	// What an operator sees: 1 upload, 1 file, 3 records, 1 orphaned
	// upload and 3 orphaned objects.
	if c := e.metric("parley_file_swept_total"); c != 9 {
		t.Errorf("parley_file_swept_total = %v, want 9", c)
	}
}

// isExpired reports the answer for a removed file (NOT_FOUND "expired or
// was removed"), as opposed to one never known.
func isExpired(err error) bool {
	var e *errcode.Error
	return errors.As(err, &e) && e.Code == parleyv1.ErrorCode_ERROR_CODE_NOT_FOUND && strings.Contains(e.Message, "expired")
}

// metric sums a counter's values over its labels.
func (e *env) metric(name string) float64 {
	e.t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		e.t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}
