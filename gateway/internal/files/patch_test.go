package files_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/parleychat/parley/gateway/internal/files"
	"github.com/parleychat/parley/libs/subject"
	"github.com/parleychat/parley/libs/testenv"
	"github.com/parleychat/parley/protocol/errcode"
	"github.com/parleychat/parley/protocol/parleyv1"
)

// mustDownload reads a file whole as bob and checks it is data.
func (g *gw) mustDownload(path string, data []byte) {
	g.t.Helper()
	a := g.do(req{"GET", path + "/content", map[string]string{"Authorization": "Bearer tok-bob"}, nil})
	if a.status != http.StatusOK || a.body != string(data) {
		g.t.Fatalf("download: %d, %d bytes (want %d) %.100s", a.status, len(a.body), len(data), a.body)
	}
}

// TestUploadInPieces: an upload sent in PATCHes that end anywhere — inside
// the first part, across a part boundary, at the end — continues from
// where each stopped (tus core: HEAD gives Upload-Offset, PATCH appends
// there) and arrives intact.
func TestUploadInPieces(t *testing.T) {
	g := startFiles(t, nil)
	data := randomBytes(t, 2*testPartSize+12345)
	path := g.offer(data)
	for _, end := range []int{3 << 20, 7 << 20, len(data)} {
		from := g.offset(path)
		a := g.patch(path, from, data[from:end])
		if a.status != http.StatusNoContent || a.header.Get("Upload-Offset") != strconv.Itoa(end) {
			t.Fatalf("PATCH %d-%d: %d Upload-Offset %q %s", from, end, a.status, a.header.Get("Upload-Offset"), a.body)
		}
		if got := g.offset(path); got != end {
			t.Fatalf("HEAD after PATCH to %d: %d", end, got)
		}
	}
	if st := g.fs.file(fileID(path)).GetState(); st != parleyv1.FileState_FILE_STATE_AVAILABLE {
		t.Fatalf("state %v after the last byte", st)
	}
	g.mustDownload(path, data)
}

// TestUploadWhole: a file of several 8 MiB parts (the default part size)
// sent in one PATCH is stored part by part and arrives intact, also when
// its size is a whole number of parts; one PATCH of a tiny file too.
func TestUploadWhole(t *testing.T) {
	g := startFiles(t, nil)
	g.fs.set(8<<20, false)
	data := randomBytes(t, 4*(8<<20)+1)
	path := g.offer(data)
	g.upload(path, data)
	g.mustDownload(path, data)

	// A size of whole parts: the PATCH's last part completes the file.
	data = randomBytes(t, 2*(8<<20))
	path = g.offer(data)
	g.upload(path, data)
	g.mustDownload(path, data)

	tiny := []byte("x")
	path = g.offer(tiny)
	g.upload(path, tiny)
	g.mustDownload(path, tiny)
}

// TestUploadBadChecksumFails: bytes that do not match the declared SHA-256
// fail the upload at its last byte (460), and nothing of it can be
// downloaded.
func TestUploadBadChecksumFails(t *testing.T) {
	g := startFiles(t, nil)
	data := []byte("the declared bytes")
	path := g.offer(data)
	if a := g.patch(path, 0, []byte("THE DECLARED BYTES")); a.status != 460 {
		t.Fatalf("PATCH of other bytes: %d %s", a.status, a.body)
	}
	if a := g.do(req{"GET", path + "/content", map[string]string{"Authorization": "Bearer tok-bob"}, nil}); a.status != 460 {
		t.Errorf("download of a failed file: %d", a.status)
	}
}

// TestPatchAtTheWrongPlace: tus core's answers to a PATCH that does not
// fit the upload: 409 at another offset (with the right one), 413 for a
// body past Upload-Length (declared or streamed), and for a complete
// upload 413 with a body, 204 without.
func TestPatchAtTheWrongPlace(t *testing.T) {
	g := startFiles(t, nil)
	data := randomBytes(t, 1000)
	path := g.offer(data)
	g.patch(path, 0, data[:100])
	a := g.patch(path, 50, data[50:200])
	if a.status != http.StatusConflict || a.header.Get("Upload-Offset") != "100" {
		t.Errorf("PATCH at 50 of 100: %d Upload-Offset %q", a.status, a.header.Get("Upload-Offset"))
	}
	if a := g.patch(path, 100, make([]byte, 901)); a.status != http.StatusRequestEntityTooLarge {
		t.Errorf("PATCH past Upload-Length (Content-Length): %d", a.status)
	}
	// Chunked, so the handler sees it only while reading.
	h := tus("alice", "Content-Type", "application/offset+octet-stream", "Upload-Offset", "100")
	if a := g.do(req{"PATCH", path, h, io.MultiReader(bytes.NewReader(data[100:]), strings.NewReader("!"))}); a.status != http.StatusRequestEntityTooLarge {
		t.Errorf("PATCH past Upload-Length (chunked): %d %s", a.status, a.body)
	}
	if got := g.offset(path); got != 100 {
		t.Errorf("offset %d after the refused PATCHes, want 100", got)
	}
	g.patch(path, 100, data[100:])
	if a := g.patch(path, 1000, []byte("more")); a.status != http.StatusRequestEntityTooLarge || a.header.Get("Upload-Offset") != "1000" {
		t.Errorf("PATCH with a body after the end: %d %v", a.status, a.header)
	}
	if a := g.patch(path, 1000, nil); a.status != http.StatusNoContent || a.header.Get("Upload-Offset") != "1000" {
		t.Errorf("empty PATCH after the end: %d %v", a.status, a.header)
	}
	g.mustDownload(path, data)
}

// TestPatchChecksum: with Upload-Checksum (tus checksum extension) a body
// is kept only if it matches: 460 and the offset unchanged otherwise, also
// for a body longer than a part (its parts are stored, but not recorded).
func TestPatchChecksum(t *testing.T) {
	g := startFiles(t, nil)
	sum1 := func(b []byte) string { s := sha1.Sum(b); return "sha1 " + base64.StdEncoding.EncodeToString(s[:]) }
	sum256 := func(b []byte) string {
		s := sha256.Sum256(b)
		return "sha256 " + base64.StdEncoding.EncodeToString(s[:])
	}
	data := randomBytes(t, testPartSize+5000)
	path := g.offer(data)
	if a := g.patch(path, 0, data[:100], "Upload-Checksum", sum1(data[:100])); a.status != http.StatusNoContent || a.header.Get("Upload-Offset") != "100" {
		t.Fatalf("matching PATCH: %d %v %s", a.status, a.header, a.body)
	}
	if a := g.patch(path, 100, data[100:200], "Upload-Checksum", sum1(data[:100])); a.status != 460 {
		t.Fatalf("mismatching PATCH: %d %s", a.status, a.body)
	}
	if got := g.offset(path); got != 100 {
		t.Fatalf("offset %d after a mismatch, want 100", got)
	}
	rest := data[100:]
	if a := g.patch(path, 100, rest, "Upload-Checksum", sum256(append([]byte("x"), rest[1:]...))); a.status != 460 {
		t.Fatalf("mismatching PATCH of more than a part: %d %s", a.status, a.body)
	}
	if got := g.offset(path); got != 100 {
		t.Fatalf("offset %d after a mismatch of more than a part, want 100", got)
	}
	if a := g.patch(path, 100, rest, "Upload-Checksum", sum256(rest)); a.status != http.StatusNoContent || a.header.Get("Upload-Offset") != strconv.Itoa(len(data)) {
		t.Fatalf("matching PATCH of more than a part: %d %v %s", a.status, a.header, a.body)
	}
	g.mustDownload(path, data)
}

// rawPatch opens a connection, sends the head of user name's PATCH with Content-Length
// n and the given part of its body, and returns the connection.
func (g *gw) rawPatch(name, path string, offset, n int, body []byte, more ...string) net.Conn {
	g.t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(g.base, "http://"))
	if err != nil {
		g.t.Fatal(err)
	}
	g.t.Cleanup(func() { c.Close() })
	var head strings.Builder
	fmt.Fprintf(&head, "PATCH %s HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\nAuthorization: Bearer tok-%s\r\n", path, name)
	fmt.Fprintf(&head, "Content-Type: application/offset+octet-stream\r\nUpload-Offset: %d\r\n", offset)
	if n >= 0 {
		fmt.Fprintf(&head, "Content-Length: %d\r\n", n)
	}
	for i := 0; i+1 < len(more); i += 2 {
		fmt.Fprintf(&head, "%s: %s\r\n", more[i], more[i+1])
	}
	head.WriteString("\r\n")
	if _, err := c.Write(append([]byte(head.String()), body...)); err != nil {
		g.t.Fatal(err)
	}
	return c
}

// TestCutOffBodyIsKept: a PATCH whose connection breaks mid-body keeps
// every byte that arrived, whole parts and the bytes after them, so HEAD
// tells the client where to continue (§18.3: "what arrived is kept"). With
// Upload-Checksum nothing of it is kept: it cannot be checked.
func TestCutOffBodyIsKept(t *testing.T) {
	g := startFiles(t, nil)
	data := randomBytes(t, 2*testPartSize)
	path := g.offer(data)
	sent := testPartSize + 3000
	g.rawPatch("alice", path, 0, len(data), data[:sent]).Close()
	testenv.Eventually(t, 10*time.Second, "the cut-off body's bytes recorded", func() bool { return g.offset(path) == sent })

	s := sha256.Sum256(data[sent:])
	g.rawPatch("alice", path, sent, len(data)-sent, data[sent:sent+100], "Upload-Checksum", "sha256 "+base64.StdEncoding.EncodeToString(s[:])).Close()
	testenv.Eventually(t, 10*time.Second, "the checked PATCH began", func() bool { return g.fs.callCount(subject.FileUploadBegin) == 2 })
	// The rest goes from where the unchecked body stopped: had the checked
	// one recorded its 100 bytes, this would be a 409.
	if a := g.patch(path, sent, data[sent:]); a.status != http.StatusNoContent {
		t.Fatalf("PATCH of the rest after a cut-off checked body: %d %v %s", a.status, a.header, a.body)
	}
	g.mustDownload(path, data)
}

// TestBrokenChunkedBody: a body that breaks off with a malformed chunk is
// answered 400 with the Upload-Offset its good bytes reached.
func TestBrokenChunkedBody(t *testing.T) {
	g := startFiles(t, nil)
	data := randomBytes(t, 100)
	path := g.offer(data)
	c := g.rawPatch("alice", path, 0, -1, []byte("5\r\n"+string(data[:5])+"\r\nZZ\r\n"), "Transfer-Encoding", "chunked")
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Upload-Offset") != "5" {
		t.Fatalf("broken chunked body: %d %v", resp.StatusCode, resp.Header)
	}
	if got := g.offset(path); got != 5 {
		t.Fatalf("offset %d, want 5", got)
	}
}

// TestCommitRetried: while the file service does not answer a commit (its
// replicas restarting) the gateway retries it rather than lose the parts
// it stored; a commit the file service refuses (another PATCH took the
// upload over) is a 409.
func TestCommitRetried(t *testing.T) {
	g := startFiles(t, nil)
	data := randomBytes(t, testPartSize+10)
	path := g.offer(data)
	unavailable := errcode.New(parleyv1.ErrorCode_ERROR_CODE_UNAVAILABLE, "no replica")
	g.fs.failNext(subject.FileUploadCommit, unavailable, errcode.New(parleyv1.ErrorCode_ERROR_CODE_TIMEOUT, "slow"), unavailable)
	g.upload(path, data)
	g.mustDownload(path, data)

	path = g.offer(data)
	g.fs.failNext(subject.FileUploadCommit, errcode.New(parleyv1.ErrorCode_ERROR_CODE_CONFLICT, "another upload of this file took over"))
	if a := g.patch(path, 0, data); a.status != http.StatusConflict {
		t.Fatalf("PATCH whose commit was refused: %d %s", a.status, a.body)
	}
}

// TestStorageFailures: storage that lost what the upload needs is
// reported, not papered over: an upload removed from storage is 404, a
// stored tail that cannot be read back is 503 (resume later).
func TestStorageFailures(t *testing.T) {
	g := startFiles(t, nil)
	data := randomBytes(t, testPartSize+10)
	path := g.offer(data)
	key, uploadID := g.fs.multipart(fileID(path))
	if err := g.store.Abort(context.Background(), key, uploadID); err != nil {
		t.Fatal(err)
	}
	if a := g.patch(path, 0, data); a.status != http.StatusNotFound {
		t.Errorf("PATCH of an upload gone from storage: %d %s", a.status, a.body)
	}

	path = g.offer(data)
	g.patch(path, 0, data[:10])
	tails, err := g.store.List(context.Background(), "tails/")
	if err != nil || len(tails) != 1 {
		t.Fatalf("tails: %v %v", tails, err)
	}
	if err := g.store.Delete(context.Background(), tails[0].Key); err != nil {
		t.Fatal(err)
	}
	if a := g.patch(path, 10, data[10:]); a.status != http.StatusServiceUnavailable {
		t.Errorf("PATCH after its tail was lost: %d %s", a.status, a.body)
	}
}

// holdPatch starts a PATCH of n bytes as user name, sends the first of
// them and holds the rest: it returns once the gateway asked the file
// service for the upload, with the connection to write the rest to and the
// answer to come. fasthttp calls the handler only once it has the first
// 8 KiB of a body (8 KiB and a byte when the body is above the app's
// BodyLimit), so first must be more than that: holdFirst.
func (g *gw) holdPatch(name, path string, offset, n int, first []byte) (net.Conn, <-chan answer) {
	g.t.Helper()
	before := g.fs.callCount(subject.FileUploadBegin)
	c := g.rawPatch(name, path, offset, n, first)
	done := make(chan answer, 1)
	go func() {
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			done <- answer{status: -1, body: err.Error()}
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		done <- answer{status: resp.StatusCode, header: resp.Header, body: string(b)}
	}()
	testenv.Eventually(g.t, 10*time.Second, "the held PATCH began", func() bool { return g.fs.callCount(subject.FileUploadBegin) > before })
	return c, done
}

// holdFirst is what holdPatch sends of a body before holding the rest.
const holdFirst = 16 << 10

func wait(t testing.TB, done <-chan answer) answer {
	t.Helper()
	select {
	case a := <-done:
		return a
	case <-time.After(20 * time.Second):
		t.Fatal("no answer within 20s")
		return answer{}
	}
}

// TestDrainKeepsWhatArrived: a gateway shutting down stops reading uploads
// at the next part, keeps what it read and answers 503 with Retry-After
// and the offset to resume from; new PATCHes are refused the same way.
func TestDrainKeepsWhatArrived(t *testing.T) {
	g := startFiles(t, nil)
	data := randomBytes(t, 3*testPartSize)
	path := g.offer(data)
	pw, done := g.holdPatch("alice", path, 0, len(data), data[:holdFirst])
	g.h.Drain()
	go func() { _, _ = pw.Write(data[holdFirst:]) }()
	a := wait(t, done)
	off, _ := strconv.Atoi(a.header.Get("Upload-Offset"))
	if a.status != http.StatusServiceUnavailable || a.header.Get("Retry-After") != "1" || off%testPartSize != 0 || off >= len(data) {
		t.Fatalf("PATCH during drain: %d %v %s", a.status, a.header, a.body)
	}
	if got := g.offset(path); got != off {
		t.Fatalf("HEAD %d, the answer said %d", got, off)
	}
	a = g.patch(path, off, data[off:off+1000]) // small: refused before it is read
	if a.status != http.StatusServiceUnavailable || a.header.Get("Retry-After") != "1" {
		t.Fatalf("PATCH after drain: %d %v", a.status, a.header)
	}
}

// TestUploadSlots: a gateway writes at most MaxUploads PATCHes at once and
// one user at most MaxUploadsPerUser; more wait a little, then are
// answered 503 with Retry-After (§18.3), while other users go on.
func TestUploadSlots(t *testing.T) {
	t.Run("per gateway", func(t *testing.T) {
		t.Parallel()
		g := startFiles(t, func(o *files.Options) { o.MaxUploads = 1 })
		data := randomBytes(t, 100<<10)
		first, second := g.offer(data), g.offer(data)
		pw, done := g.holdPatch("alice", first, 0, len(data), data[:holdFirst])
		if a := g.patch(second, 0, data); a.status != http.StatusServiceUnavailable || a.header.Get("Retry-After") != "5" {
			t.Errorf("a second PATCH: %d %v", a.status, a.header)
		}
		if _, err := pw.Write(data[holdFirst:]); err != nil {
			t.Fatal(err)
		}
		if a := wait(t, done); a.status != http.StatusNoContent {
			t.Fatalf("the held PATCH: %d %s", a.status, a.body)
		}
		g.upload(second, data)
	})
	t.Run("per user", func(t *testing.T) {
		t.Parallel()
		g := startFiles(t, func(o *files.Options) { o.MaxUploadsPerUser = 1 })
		data := randomBytes(t, 100<<10)
		first, second := g.offer(data), g.offer(data)
		pw, done := g.holdPatch("alice", first, 0, len(data), data[:holdFirst])
		if a := g.patch(second, 0, data); a.status != http.StatusServiceUnavailable || a.header.Get("Retry-After") != "5" {
			t.Errorf("alice's second PATCH: %d %v", a.status, a.header)
		}
		// Carol is not held back by alice (her PATCH reaches the file
		// service, which says the file is not hers).
		h := tus("carol", "Content-Type", "application/offset+octet-stream", "Upload-Offset", "0")
		if a := g.do(req{"PATCH", second, h, bytes.NewReader(data)}); a.status != http.StatusNotFound {
			t.Errorf("carol's PATCH: %d %s", a.status, a.body)
		}
		if _, err := pw.Write(data[holdFirst:]); err != nil {
			t.Fatal(err)
		}
		if a := wait(t, done); a.status != http.StatusNoContent {
			t.Fatalf("the held PATCH: %d %s", a.status, a.body)
		}
		g.upload(second, data)
	})
}

// TestSlowBodyEnded: a body arriving below the minimum rate is ended (503,
// Retry-After, Connection: close) and what arrived is kept (§18.3, "Slow
// bodies").
func TestSlowBodyEnded(t *testing.T) {
	g := startFiles(t, func(o *files.Options) { o.MinRate = 1 << 20; o.RateWindow = 300 * time.Millisecond })
	data := randomBytes(t, 1<<20)
	path := g.offer(data)
	_, done := g.holdPatch("alice", path, 0, len(data), data[:holdFirst])
	a := wait(t, done)
	if a.status != http.StatusServiceUnavailable || a.header.Get("Upload-Offset") != strconv.Itoa(holdFirst) || a.header.Get("Retry-After") != "1" ||
		!strings.Contains(a.body, "slower than") {
		t.Fatalf("slow PATCH: %d %v %s", a.status, a.header, a.body)
	}
	if got := g.offset(path); got != holdFirst {
		t.Fatalf("offset %d, want %d", got, holdFirst)
	}
}
