package objstore_test

import (
	"bytes"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parleychat/parley/libs/objstore"
	"github.com/parleychat/parley/libs/testenv"
)

const mib = 1 << 20

// env is one store under test plus a way to restart the storage under it.
type env struct {
	store objstore.Store
	// restart stops and starts the storage (MinIO: the server process;
	// Dir: a new Dir on the same root) and returns the store to use after.
	restart func(t *testing.T) objstore.Store
	// outside is a directory that must stay untouched (Dir: the parent of
	// its root); "" for MinIO.
	outside string
}

type contractTest struct {
	name string
	run  func(t *testing.T, e env)
}

var contract = []contractTest{
	{"MultipartRoundTrip", testMultipartRoundTrip},
	{"RePutReplacesPart", testRePutReplacesPart},
	{"PartsSurviveRestart", testPartsSurviveRestart},
	{"CompleteTooSmallMiddlePart", testCompleteTooSmall},
	{"CompleteInvalidParts", testCompleteInvalidParts},
	{"ShortReader", testShortReader},
	{"Abort", testAbort},
	{"ListUploadsByPrefix", testListUploadsByPrefix},
	{"Missing", testMissing},
	{"ListByPrefix", testListByPrefix},
	{"InvalidKeys", testInvalidKeys},
	{"PutGetSmall", testPutGetSmall},
	{"EmptyObject", testEmptyObject},
	{"Streamed64MiB", testStreamed64MiB},
}

// TestContract runs the same suite against a Dir and against a real MinIO
// server (one for the package, one bucket per test).
func TestContract(t *testing.T) {
	t.Run("Dir", func(t *testing.T) {
		for _, c := range contract {
			t.Run(c.name, func(t *testing.T) {
				t.Parallel()
				parent := t.TempDir()
				root := filepath.Join(parent, "root")
				d, err := objstore.NewDir(root)
				if err != nil {
					t.Fatal(err)
				}
				c.run(t, env{
					store:   d,
					outside: parent,
					restart: func(t *testing.T) objstore.Store {
						d2, err := objstore.NewDir(root)
						if err != nil {
							t.Fatal(err)
						}
						return d2
					},
				})
			})
		}
	})
	t.Run("MinIO", func(t *testing.T) {
		srv := testenv.StartMinIO(t)
		var n atomic.Int32
		for _, c := range contract {
			// Sequential: one test restarts the shared server.
			t.Run(c.name, func(t *testing.T) {
				m := newMinIO(t, srv, fmt.Sprintf("contract-%d", n.Add(1)))
				c.run(t, env{
					store: m,
					restart: func(t *testing.T) objstore.Store {
						srv.Stop()
						srv.Start(t)
						return m
					},
				})
			})
		}
		t.Run("BucketCreationRace", func(t *testing.T) { testBucketCreationRace(t, srv) })
		t.Run("WrongCredentials", func(t *testing.T) { testWrongCredentials(t, srv) })
	})
}

func newMinIO(t *testing.T, srv *testenv.MinIO, bucket string) *objstore.MinIO {
	t.Helper()
	m, err := objstore.NewMinIO(t.Context(), objstore.MinIOConfig{
		Endpoint:  srv.Endpoint,
		AccessKey: srv.AccessKey,
		SecretKey: srv.SecretKey,
		Bucket:    bucket,
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// data returns n deterministic pseudo-random bytes.
func data(seed uint64, n int) []byte {
	b := make([]byte, n)
	var s [32]byte
	s[0] = byte(seed)
	s[1] = byte(seed >> 8)
	_, _ = rand.NewChaCha8(s).Read(b)
	return b
}

func md5hex(b []byte) string {
	s := md5.Sum(b)
	return hex.EncodeToString(s[:])
}

func putPart(t *testing.T, s objstore.Store, key, id string, n int, b []byte) objstore.Part {
	t.Helper()
	p, err := s.PutPart(t.Context(), key, id, n, bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatalf("PutPart %d: %v", n, err)
	}
	want := objstore.Part{Number: n, ETag: md5hex(b), Size: int64(len(b))}
	if p != want {
		t.Fatalf("PutPart %d = %+v, want %+v", n, p, want)
	}
	return p
}

func newUpload(t *testing.T, s objstore.Store, key string) string {
	t.Helper()
	id, err := s.NewUpload(t.Context(), key)
	if err != nil {
		t.Fatalf("NewUpload %q: %v", key, err)
	}
	if id == "" {
		t.Fatal("NewUpload returned an empty ID")
	}
	return id
}

func readAll(t *testing.T, s objstore.Store, key string, off, n int64) []byte {
	t.Helper()
	rc, err := s.Get(t.Context(), key, off, n)
	if err != nil {
		t.Fatalf("Get(%q, %d, %d): %v", key, off, n, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("Get(%q, %d, %d): read: %v", key, off, n, err)
	}
	return b
}

func wantErr(t *testing.T, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: error %v, want %v", what, err, target)
	}
}

func listUploadIDs(t *testing.T, s objstore.Store, prefix string) []string {
	t.Helper()
	ups, err := s.ListUploads(t.Context(), prefix)
	if err != nil {
		t.Fatalf("ListUploads(%q): %v", prefix, err)
	}
	var ids []string
	for _, u := range ups {
		ids = append(ids, u.UploadID)
	}
	return ids
}

// threeParts uploads 5 MiB, 5 MiB and 1 KiB and returns the parts and the
// whole content.
func threeParts(t *testing.T, s objstore.Store, key, id string) ([]objstore.Part, []byte) {
	t.Helper()
	chunks := [][]byte{data(1, 5*mib), data(2, 5*mib), data(3, 1024)}
	var parts []objstore.Part
	for i, c := range chunks {
		parts = append(parts, putPart(t, s, key, id, i+1, c))
	}
	return parts, bytes.Join(chunks, nil)
}

func testMultipartRoundTrip(t *testing.T, e env) {
	ctx, s, key := t.Context(), e.store, "files/round-trip.bin"
	id := newUpload(t, s, key)
	parts, whole := threeParts(t, s, key, id)

	listed, err := s.ListParts(ctx, key, id)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(listed, parts) {
		t.Fatalf("ListParts = %+v, want %+v", listed, parts)
	}
	if ids := listUploadIDs(t, s, "files/"); !slices.Contains(ids, id) {
		t.Fatalf("ListUploads does not show the unfinished upload %s: %v", id, ids)
	}

	info, err := s.Complete(ctx, key, id, parts)
	if err != nil {
		t.Fatal(err)
	}
	size := int64(len(whole))
	if info.Key != key || info.Size != size || info.ETag == "" || info.ModTime.IsZero() {
		t.Fatalf("Complete = %+v, want key %q size %d with ETag and ModTime", info, key, size)
	}
	st, err := s.Stat(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if st.Size != size || st.ETag != info.ETag {
		t.Fatalf("Stat = %+v, Complete said %+v", st, info)
	}

	if got := readAll(t, s, key, 0, -1); !bytes.Equal(got, whole) {
		t.Fatalf("whole object: got %d bytes (sha256 %x), want %d", len(got), sha256.Sum256(got), size)
	}
	ranges := []struct {
		name      string
		off, n    int64
		from, end int64 // expected slice of whole
	}{
		{"first byte", 0, 1, 0, 1},
		{"across part boundary", 5*mib - 10, 20, 5*mib - 10, 5*mib + 10},
		{"across second boundary", 10*mib - 1, 2, 10*mib - 1, 10*mib + 1},
		{"last bytes to end", size - 100, -1, size - 100, size},
		{"last bytes exact", size - 100, 100, size - 100, size},
		{"length past end is cut", size - 10, 1000, size - 10, size},
		{"offset at size reads nothing", size, -1, size, size},
	}
	for _, r := range ranges {
		t.Run(r.name, func(t *testing.T) {
			got := readAll(t, s, key, r.off, r.n)
			if !bytes.Equal(got, whole[r.from:r.end]) {
				t.Fatalf("Get(%d, %d): got %d bytes, want bytes %d..%d", r.off, r.n, len(got), r.from, r.end)
			}
		})
	}
	_, err = s.Get(ctx, key, size+1, -1)
	wantErr(t, "Get past end", err, objstore.ErrRange)
	_, err = s.Get(ctx, key, size+1, 10)
	wantErr(t, "Get past end with length", err, objstore.ErrRange)

	if ids := listUploadIDs(t, s, ""); slices.Contains(ids, id) {
		t.Fatalf("completed upload %s still listed", id)
	}
	_, err = s.ListParts(ctx, key, id)
	wantErr(t, "ListParts after Complete", err, objstore.ErrUploadNotFound)
}

func testRePutReplacesPart(t *testing.T, e env) {
	ctx, s, key := t.Context(), e.store, "files/reput"
	id := newUpload(t, s, key)
	first := putPart(t, s, key, id, 1, data(10, 5*mib))
	second := data(11, 5*mib+7)
	p1 := putPart(t, s, key, id, 1, second)
	p2 := putPart(t, s, key, id, 2, []byte("tail"))

	listed, err := s.ListParts(ctx, key, id)
	if err != nil {
		t.Fatal(err)
	}
	if want := []objstore.Part{p1, p2}; !slices.Equal(listed, want) {
		t.Fatalf("ListParts = %+v, want %+v (replaced part gone)", listed, want)
	}
	_, err = s.Complete(ctx, key, id, []objstore.Part{first, p2})
	wantErr(t, "Complete with the replaced part's ETag", err, objstore.ErrInvalidPart)

	if _, err := s.Complete(ctx, key, id, []objstore.Part{p1, p2}); err != nil {
		t.Fatal(err)
	}
	want := append(slices.Clone(second), "tail"...)
	if got := readAll(t, s, key, 0, -1); !bytes.Equal(got, want) {
		t.Fatalf("object holds %d bytes, want the replacement part (%d bytes)", len(got), len(want))
	}
}

func testPartsSurviveRestart(t *testing.T, e env) {
	key := "files/resume"
	id := newUpload(t, e.store, key)
	a, b := data(20, 5*mib), data(21, 5*mib)
	p1 := putPart(t, e.store, key, id, 1, a)
	p2 := putPart(t, e.store, key, id, 2, b)

	s := e.restart(t)
	ctx := t.Context()
	listed, err := s.ListParts(ctx, key, id)
	if err != nil {
		t.Fatalf("ListParts after restart: %v", err)
	}
	if want := []objstore.Part{p1, p2}; !slices.Equal(listed, want) {
		t.Fatalf("ListParts after restart = %+v, want %+v", listed, want)
	}
	// The transfer resumes: a last part, then Complete.
	p3 := putPart(t, s, key, id, 3, []byte("end"))
	if _, err := s.Complete(ctx, key, id, []objstore.Part{p1, p2, p3}); err != nil {
		t.Fatal(err)
	}
	want := slices.Concat(a, b, []byte("end"))
	if got := readAll(t, s, key, 0, -1); !bytes.Equal(got, want) {
		t.Fatalf("resumed object: %d bytes, want %d", len(got), len(want))
	}
}

func testCompleteTooSmall(t *testing.T, e env) {
	ctx, s, key := t.Context(), e.store, "files/small-middle"
	id := newUpload(t, s, key)
	parts := []objstore.Part{
		putPart(t, s, key, id, 1, data(30, 5*mib)),
		putPart(t, s, key, id, 2, data(31, 1024)),
		putPart(t, s, key, id, 3, data(32, 1024)),
	}
	_, err := s.Complete(ctx, key, id, parts)
	wantErr(t, "Complete with a 1 KiB middle part", err, objstore.ErrPartTooSmall)
	// The upload is still there to be fixed.
	fixed := putPart(t, s, key, id, 2, data(33, 5*mib))
	if _, err := s.Complete(ctx, key, id, []objstore.Part{parts[0], fixed, parts[2]}); err != nil {
		t.Fatalf("Complete after re-putting the middle part: %v", err)
	}
	if st, err := s.Stat(ctx, key); err != nil || st.Size != 10*mib+1024 {
		t.Fatalf("Stat = %+v, %v; want %d bytes", st, err, 10*mib+1024)
	}
}

func testCompleteInvalidParts(t *testing.T, e env) {
	ctx, s, key := t.Context(), e.store, "files/invalid-parts"
	id := newUpload(t, s, key)
	p1 := putPart(t, s, key, id, 1, data(40, 5*mib))
	p2 := putPart(t, s, key, id, 2, data(41, 100))
	wrong := p2
	wrong.ETag = md5hex([]byte("something else"))
	cases := []struct {
		name  string
		parts []objstore.Part
	}{
		{"wrong ETag", []objstore.Part{p1, wrong}},
		{"part never uploaded", []objstore.Part{p1, p2, {Number: 3, ETag: p2.ETag, Size: 100}}},
		{"descending", []objstore.Part{p2, p1}},
		{"duplicate", []objstore.Part{p1, p1}},
		{"number 0", []objstore.Part{{Number: 0, ETag: p1.ETag}}},
		{"number above MaxParts", []objstore.Part{p1, {Number: objstore.MaxParts + 1, ETag: p2.ETag}}},
		{"no parts", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := s.Complete(ctx, key, id, c.parts)
			wantErr(t, "Complete", err, objstore.ErrInvalidPart)
		})
	}
	_, err := s.PutPart(ctx, key, id, objstore.MaxParts+1, strings.NewReader("x"), 1)
	wantErr(t, "PutPart number above MaxParts", err, objstore.ErrInvalidPart)
	// None of that harmed the upload.
	if _, err := s.Complete(ctx, key, id, []objstore.Part{p1, p2}); err != nil {
		t.Fatalf("Complete with the right parts: %v", err)
	}
}

func testShortReader(t *testing.T, e env) {
	ctx, s, key := t.Context(), e.store, "files/short"
	id := newUpload(t, s, key)
	_, err := s.PutPart(ctx, key, id, 1, bytes.NewReader(data(50, 100)), 1000)
	wantErr(t, "PutPart with 100 of 1000 bytes", err, objstore.ErrShortPart)
	parts, err := s.ListParts(ctx, key, id)
	if err != nil {
		t.Fatal(err)
	}
	if len(parts) != 0 {
		t.Fatalf("short part was recorded: %+v", parts)
	}

	// A short re-put leaves the part it would have replaced.
	good := putPart(t, s, key, id, 2, data(51, 2000))
	_, err = s.PutPart(ctx, key, id, 2, io.LimitReader(bytes.NewReader(data(52, 2000)), 1500), 2000)
	wantErr(t, "short re-put", err, objstore.ErrShortPart)
	parts, err = s.ListParts(ctx, key, id)
	if err != nil {
		t.Fatal(err)
	}
	if want := []objstore.Part{good}; !slices.Equal(parts, want) {
		t.Fatalf("after a short re-put ListParts = %+v, want %+v", parts, want)
	}

	// Put has the same rule.
	_, err = s.Put(ctx, "thumbs/short", strings.NewReader("abc"), 10, "text/plain")
	wantErr(t, "Put with 3 of 10 bytes", err, objstore.ErrShortPart)
	_, err = s.Stat(ctx, "thumbs/short")
	wantErr(t, "Stat after short Put", err, objstore.ErrNotFound)

	// A longer reader is cut at size.
	p := putPart(t, s, key, id, 3, []byte("exact"))
	p3, err := s.PutPart(ctx, key, id, 3, strings.NewReader("exact and more"), 5)
	if err != nil || p3 != p {
		t.Fatalf("PutPart reading 5 of a longer reader = %+v, %v; want %+v", p3, err, p)
	}
}

func testAbort(t *testing.T, e env) {
	ctx, s, key := t.Context(), e.store, "files/abort"
	id := newUpload(t, s, key)
	putPart(t, s, key, id, 1, data(60, 1000))
	other := newUpload(t, s, key)

	// The upload belongs to its key.
	_, err := s.ListParts(ctx, "files/other-key", id)
	wantErr(t, "ListParts with another key", err, objstore.ErrUploadNotFound)

	if err := s.Abort(ctx, key, id); err != nil {
		t.Fatal(err)
	}
	ids := listUploadIDs(t, s, "files/")
	if slices.Contains(ids, id) || !slices.Contains(ids, other) {
		t.Fatalf("after Abort ListUploads = %v, want %s gone and %s listed", ids, id, other)
	}
	_, err = s.ListParts(ctx, key, id)
	wantErr(t, "ListParts after Abort", err, objstore.ErrUploadNotFound)
	_, err = s.PutPart(ctx, key, id, 2, strings.NewReader("x"), 1)
	wantErr(t, "PutPart after Abort", err, objstore.ErrUploadNotFound)
	_, err = s.Complete(ctx, key, id, []objstore.Part{{Number: 1, ETag: md5hex(data(60, 1000))}})
	wantErr(t, "Complete after Abort", err, objstore.ErrUploadNotFound)
	wantErr(t, "Abort again", s.Abort(ctx, key, id), objstore.ErrUploadNotFound)
	_, err = s.Stat(ctx, key)
	wantErr(t, "Stat of the aborted upload's key", err, objstore.ErrNotFound)
}

func testListUploadsByPrefix(t *testing.T, e env) {
	ctx, s := t.Context(), e.store
	before := time.Now().Add(-time.Minute)
	b := newUpload(t, s, "up/b")
	a := newUpload(t, s, "up/a")
	newUpload(t, s, "upx/c")
	newUpload(t, s, "other/d")
	ups, err := s.ListUploads(ctx, "up/")
	if err != nil {
		t.Fatal(err)
	}
	if len(ups) != 2 || ups[0].Key != "up/a" || ups[0].UploadID != a || ups[1].Key != "up/b" || ups[1].UploadID != b {
		t.Fatalf("ListUploads(up/) = %+v, want up/a (%s) then up/b (%s)", ups, a, b)
	}
	for _, u := range ups {
		if u.Initiated.Before(before) {
			t.Fatalf("upload %s: Initiated %v is not the time it started", u.UploadID, u.Initiated)
		}
	}
	if ids := listUploadIDs(t, s, "up"); len(ids) != 3 {
		t.Fatalf("ListUploads(up) = %v, want 3 (up/a, up/b, upx/c)", ids)
	}
	if ids := listUploadIDs(t, s, ""); len(ids) != 4 {
		t.Fatalf("ListUploads() = %v, want all 4", ids)
	}
}

func testMissing(t *testing.T, e env) {
	ctx, s := t.Context(), e.store
	_, err := s.Get(ctx, "no/such/key", 0, -1)
	wantErr(t, "Get", err, objstore.ErrNotFound)
	_, err = s.Get(ctx, "no/such/key", 100, 10)
	wantErr(t, "Get with a range", err, objstore.ErrNotFound)
	_, err = s.Stat(ctx, "no/such/key")
	wantErr(t, "Stat", err, objstore.ErrNotFound)
	if err := s.Delete(ctx, "no/such/key"); err != nil {
		t.Fatalf("Delete of a missing key: %v", err)
	}
	// A key that is only a prefix of another is not an object.
	if _, err := s.Put(ctx, "dir/child", strings.NewReader("x"), 1, ""); err != nil {
		t.Fatal(err)
	}
	_, err = s.Stat(ctx, "dir")
	wantErr(t, "Stat of a prefix", err, objstore.ErrNotFound)
	if err := s.Delete(ctx, "dir"); err != nil {
		t.Fatalf("Delete of a prefix: %v", err)
	}
	if _, err := s.Stat(ctx, "dir/child"); err != nil {
		t.Fatalf("Delete of its prefix removed dir/child: %v", err)
	}
}

func testListByPrefix(t *testing.T, e env) {
	ctx, s := t.Context(), e.store
	objs := map[string]int{"a/1": 10, "a/2": 20, "a/sub/3": 30, "a2/4": 40, "b/5": 50}
	for k, n := range objs {
		if _, err := s.Put(ctx, k, bytes.NewReader(data(70, n)), int64(n), "application/octet-stream"); err != nil {
			t.Fatalf("Put %q: %v", k, err)
		}
	}
	cases := []struct {
		prefix string
		want   []string
	}{
		{"a/", []string{"a/1", "a/2", "a/sub/3"}},
		{"a", []string{"a/1", "a/2", "a/sub/3", "a2/4"}},
		{"a/s", []string{"a/sub/3"}},
		{"", []string{"a/1", "a/2", "a/sub/3", "a2/4", "b/5"}},
		{"zzz/", nil},
	}
	for _, c := range cases {
		t.Run("prefix="+c.prefix, func(t *testing.T) {
			infos, err := s.List(ctx, c.prefix)
			if err != nil {
				t.Fatal(err)
			}
			var keys []string
			for _, in := range infos {
				keys = append(keys, in.Key)
				if in.Size != int64(objs[in.Key]) || in.ModTime.IsZero() || in.ETag == "" {
					t.Fatalf("List entry %+v: want size %d, a ModTime and an ETag", in, objs[in.Key])
				}
			}
			if !slices.Equal(keys, c.want) {
				t.Fatalf("List(%q) = %v, want %v", c.prefix, keys, c.want)
			}
		})
	}
	if err := s.Delete(ctx, "a/sub/3"); err != nil {
		t.Fatal(err)
	}
	infos, err := s.List(ctx, "a/")
	if err != nil {
		t.Fatal(err)
	}
	if len(infos) != 2 || infos[0].Key != "a/1" || infos[1].Key != "a/2" {
		t.Fatalf("after Delete List(a/) = %+v", infos)
	}
}

func testInvalidKeys(t *testing.T, e env) {
	ctx, s := t.Context(), e.store
	var before []os.DirEntry
	if e.outside != "" {
		before, _ = os.ReadDir(e.outside)
	}
	keys := []string{
		"../x", "/abs", "a//b", `a\b`, "", "a/", "x/../y", "..", ".hidden", "a/./b",
		"a\x00b", "bad\xffutf8", strings.Repeat("k", objstore.MaxKeyLen+1),
		"a/" + strings.Repeat("s", objstore.MaxSegmentLen+1),
	}
	for _, k := range keys {
		t.Run(fmt.Sprintf("%.20q", k), func(t *testing.T) {
			_, err := s.Put(ctx, k, strings.NewReader("x"), 1, "")
			wantErr(t, "Put", err, objstore.ErrInvalidKey)
			_, err = s.Get(ctx, k, 0, -1)
			wantErr(t, "Get", err, objstore.ErrInvalidKey)
			_, err = s.Stat(ctx, k)
			wantErr(t, "Stat", err, objstore.ErrInvalidKey)
			wantErr(t, "Delete", s.Delete(ctx, k), objstore.ErrInvalidKey)
			_, err = s.NewUpload(ctx, k)
			wantErr(t, "NewUpload", err, objstore.ErrInvalidKey)
		})
	}
	for _, p := range []string{"../", "/", "a//", `a\`, "x/../"} {
		_, err := s.List(ctx, p)
		wantErr(t, fmt.Sprintf("List(%q)", p), err, objstore.ErrInvalidKey)
		_, err = s.ListUploads(ctx, p)
		wantErr(t, fmt.Sprintf("ListUploads(%q)", p), err, objstore.ErrInvalidKey)
	}
	if e.outside != "" {
		after, _ := os.ReadDir(e.outside)
		if len(after) != len(before) {
			t.Fatalf("invalid keys changed the directory around the root: %v -> %v", before, after)
		}
	}
	// The longest valid keys and segments work.
	for _, long := range []string{
		strings.Repeat("a/", objstore.MaxKeyLen/2-1) + "zz",
		strings.Repeat("s", objstore.MaxSegmentLen) + "/x",
	} {
		if _, err := s.Put(ctx, long, strings.NewReader("x"), 1, ""); err != nil {
			t.Fatalf("Put of a %d-byte key: %v", len(long), err)
		}
		if got := readAll(t, s, long, 0, -1); string(got) != "x" {
			t.Fatalf("Get of the %d-byte key = %q", len(long), got)
		}
	}
}

func testPutGetSmall(t *testing.T, e env) {
	ctx, s, key := t.Context(), e.store, "thumbs/photo.jpg"
	img := data(80, 3000)
	info, err := s.Put(ctx, key, bytes.NewReader(img), int64(len(img)), "image/jpeg")
	if err != nil {
		t.Fatal(err)
	}
	if info.Key != key || info.Size != 3000 || info.ETag == "" || info.ModTime.IsZero() {
		t.Fatalf("Put = %+v", info)
	}
	st, err := s.Stat(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if st.Size != info.Size || st.ETag != info.ETag {
		t.Fatalf("Stat = %+v, Put said %+v", st, info)
	}
	if got := readAll(t, s, key, 0, -1); !bytes.Equal(got, img) {
		t.Fatal("Get returned other bytes than Put stored")
	}
	if got := readAll(t, s, key, 1000, 10); !bytes.Equal(got, img[1000:1010]) {
		t.Fatal("ranged Get returned other bytes")
	}

	// Replacing changes the content and the ETag.
	img2 := data(81, 2000)
	info2, err := s.Put(ctx, key, bytes.NewReader(img2), int64(len(img2)), "image/jpeg")
	if err != nil {
		t.Fatal(err)
	}
	if info2.ETag == info.ETag || info2.Size != 2000 {
		t.Fatalf("replacing Put = %+v, first was %+v: want a new ETag and size", info2, info)
	}
	if got := readAll(t, s, key, 0, -1); !bytes.Equal(got, img2) {
		t.Fatal("Get after replacing returned the old bytes")
	}

	if err := s.Delete(ctx, key); err != nil {
		t.Fatal(err)
	}
	_, err = s.Stat(ctx, key)
	wantErr(t, "Stat after Delete", err, objstore.ErrNotFound)
	_, err = s.Get(ctx, key, 0, -1)
	wantErr(t, "Get after Delete", err, objstore.ErrNotFound)
}

func testEmptyObject(t *testing.T, e env) {
	ctx, s, key := t.Context(), e.store, "files/empty"
	info, err := s.Put(ctx, key, strings.NewReader(""), 0, "")
	if err != nil {
		t.Fatal(err)
	}
	if info.Size != 0 {
		t.Fatalf("Put of nothing = %+v", info)
	}
	if got := readAll(t, s, key, 0, -1); len(got) != 0 {
		t.Fatalf("Get of an empty object = %q", got)
	}
	if got := readAll(t, s, key, 0, 0); len(got) != 0 {
		t.Fatalf("Get of 0 bytes = %q", got)
	}
	_, err = s.Get(ctx, key, 1, -1)
	wantErr(t, "Get at offset 1 of an empty object", err, objstore.ErrRange)
	_, err = s.Put(ctx, key, strings.NewReader(""), -1, "")
	wantErr(t, "Put with a negative size", err, objstore.ErrInvalidArgument)
}

// genReader yields n pseudo-random bytes without holding them.
func genReader(seed uint64, n int64) io.Reader {
	var s [32]byte
	s[0], s[1] = byte(seed), 0xAB
	return io.LimitReader(rand.NewChaCha8(s), n)
}

func testStreamed64MiB(t *testing.T, e env) {
	ctx, s, key := t.Context(), e.store, "files/big.bin"
	const size = 64 * mib
	partSize := objstore.PartSize(size)
	src := genReader(90, size)
	want := sha256.New()
	id := newUpload(t, s, key)
	var parts []objstore.Part
	for n, left := 1, int64(size); left > 0; n++ {
		ps := min(partSize, left)
		r := io.TeeReader(io.LimitReader(src, ps), want)
		p, err := s.PutPart(ctx, key, id, n, r, ps)
		if err != nil {
			t.Fatalf("PutPart %d: %v", n, err)
		}
		parts = append(parts, p)
		left -= ps
	}
	if len(parts) != size/objstore.DefaultPartSize {
		t.Fatalf("%d parts, want %d", len(parts), size/objstore.DefaultPartSize)
	}
	info, err := s.Complete(ctx, key, id, parts)
	if err != nil {
		t.Fatal(err)
	}
	if info.Size != size {
		t.Fatalf("Complete: size %d, want %d", info.Size, size)
	}
	rc, err := s.Get(ctx, key, 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	got := sha256.New()
	n, err := io.Copy(got, rc)
	if err != nil {
		t.Fatal(err)
	}
	if n != size || !bytes.Equal(got.Sum(nil), want.Sum(nil)) {
		t.Fatalf("read back %d bytes with sha256 %x, wrote %d with %x", n, got.Sum(nil), size, want.Sum(nil))
	}
}
