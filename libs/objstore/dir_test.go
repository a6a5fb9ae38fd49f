package objstore_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"

	"github.com/parleychat/parley/libs/objstore"
)

// twoDirs opens two Dirs on one root, as a file service and a gateway
// sharing -storage-dir do.
func twoDirs(t *testing.T) (*objstore.Dir, *objstore.Dir) {
	t.Helper()
	root := t.TempDir()
	a, err := objstore.NewDir(root)
	if err != nil {
		t.Fatal(err)
	}
	b, err := objstore.NewDir(root)
	if err != nil {
		t.Fatal(err)
	}
	return a, b
}

// TestDirSharedRootCompleteOnce: two users of one root completing the same
// upload at once: exactly one succeeds, the other finds the upload gone,
// and the object is whole.
func TestDirSharedRootCompleteOnce(t *testing.T) {
	for round := range 10 {
		a, b := twoDirs(t)
		ctx, key := t.Context(), fmt.Sprintf("files/once-%d", round)
		id := newUpload(t, a, key)
		p1 := putPart(t, a, key, id, 1, data(100, 5*mib))
		p2 := putPart(t, b, key, id, 2, []byte("tail"))
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for i, s := range []objstore.Store{a, b} {
			wg.Go(func() { _, errs[i] = s.Complete(ctx, key, id, []objstore.Part{p1, p2}) })
		}
		wg.Wait()
		ok, gone := 0, 0
		for _, err := range errs {
			switch {
			case err == nil:
				ok++
			case errors.Is(err, objstore.ErrUploadNotFound):
				gone++
			default:
				t.Fatalf("round %d: Complete: %v", round, err)
			}
		}
		if ok != 1 || gone != 1 {
			t.Fatalf("round %d: %d Complete succeeded, %d found the upload gone; want 1 and 1", round, ok, gone)
		}
		if st, err := b.Stat(ctx, key); err != nil || st.Size != 5*mib+4 {
			t.Fatalf("round %d: Stat = %+v, %v", round, st, err)
		}
	}
}

// TestDirSharedRootPutWhileDeleting: deleting the last object under a
// prefix removes its directory; a Put under the same prefix by another
// user of the root at that moment must still succeed.
func TestDirSharedRootPutWhileDeleting(t *testing.T) {
	a, b := twoDirs(t)
	ctx := t.Context()
	const n = 300
	key := func(i int) string { return fmt.Sprintf("tmp/x/%d", i) }
	if _, err := a.Put(ctx, key(0), strings.NewReader("0"), 1, ""); err != nil {
		t.Fatal(err)
	}
	for i := 1; i < n; i++ {
		var wg sync.WaitGroup
		var putErr, delErr error
		wg.Go(func() { _, putErr = a.Put(ctx, key(i), strings.NewReader("1"), 1, "") })
		wg.Go(func() { delErr = b.Delete(ctx, key(i-1)) })
		wg.Wait()
		if putErr != nil || delErr != nil {
			t.Fatalf("round %d: Put: %v, Delete: %v", i, putErr, delErr)
		}
	}
	infos, err := b.List(ctx, "tmp/")
	if err != nil {
		t.Fatal(err)
	}
	if len(infos) != 1 || infos[0].Key != key(n-1) {
		t.Fatalf("List(tmp/) = %+v, want only %s", infos, key(n-1))
	}
	if got := readAll(t, a, key(n-1), 0, -1); !bytes.Equal(got, []byte("1")) {
		t.Fatalf("last object = %q", got)
	}
}

// TestDirAbortWhilePutPart: an Abort by another user of the root while a
// part streams in ends the upload; the part's PutPart then reports the
// upload gone and leaves nothing behind.
func TestDirAbortWhilePutPart(t *testing.T) {
	a, b := twoDirs(t)
	ctx, key := t.Context(), "files/aborted-mid-part"
	id := newUpload(t, a, key)
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		_, err := a.PutPart(ctx, key, id, 1, pr, 1000)
		done <- err
	}()
	if _, err := pw.Write(make([]byte, 500)); err != nil { // half the part is in
		t.Fatal(err)
	}
	if err := b.Abort(ctx, key, id); err != nil {
		t.Fatal(err)
	}
	if _, err := pw.Write(make([]byte, 500)); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, objstore.ErrUploadNotFound) {
		t.Fatalf("PutPart across an Abort: %v, want ErrUploadNotFound", err)
	}
	if ups, err := a.ListUploads(ctx, ""); err != nil || len(ups) != 0 {
		t.Fatalf("ListUploads after Abort = %+v, %v", ups, err)
	}
}
