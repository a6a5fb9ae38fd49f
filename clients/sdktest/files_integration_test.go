package sdktest

import (
	"bytes"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parleychat/parley/clients/internal/parleytest"
	"github.com/parleychat/parley/clients/parley"
	"github.com/parleychat/parley/libs/objstore"
	"github.com/parleychat/parley/libs/testenv"
	"github.com/parleychat/parley/standalone/server"
)

func randomData(t *testing.T, n int) ([]byte, string) {
	t.Helper()
	b := make([]byte, n)
	_, _ = rand.Read(b)
	s := sha256.Sum256(b)
	return b, hex.EncodeToString(s[:])
}

// cutReader yields n bytes of r, then fails: a client killed mid-upload.
type cutReader struct {
	r io.Reader
	n int
}

var errCut = errors.New("client killed")

func (c *cutReader) Read(p []byte) (int, error) {
	if c.n <= 0 {
		return 0, errCut
	}
	if len(p) > c.n {
		p = p[:c.n]
	}
	k, err := c.r.Read(p)
	c.n -= k
	return k, err
}

func tusRequest(t *testing.T, method, url, token string, body io.Reader, hdr map[string]string) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(ctxT(t), method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Tus-Resumable", "1.0.0")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func headOffset(t *testing.T, url, token string) uint64 {
	t.Helper()
	resp := tusRequest(t, http.MethodHead, url, token, nil, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("HEAD %s: %s", url, resp.Status)
	}
	off, err := strconv.ParseUint(resp.Header.Get("Upload-Offset"), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return off
}

func wantCode(t *testing.T, err error, code parley.Code) {
	t.Helper()
	var pe *parley.Error
	if !errors.As(err, &pe) || pe.Code != code {
		t.Fatalf("got %v, want %v", err, code)
	}
}

// aliceAndBob starts a Parley (edit adjusts its configuration) with two
// registered users whose clients also speak HTTP to it.
func aliceAndBob(t *testing.T, edit func(*server.Config)) (*parleytest.Parley, *parley.Client, *parley.Client) {
	t.Helper()
	p := parleytest.Start(t, edit)
	alice := dial(t, p.TCPAddr(), parley.WithHTTPBase(p.HTTPBase()))
	bob := dial(t, p.TCPAddr(), parley.WithHTTPBase(p.HTTPBase()))
	register(t, alice, "alice")
	register(t, bob, "bob")
	return p, alice, bob
}

// TestFileTransfer: a private file goes from alice to bob through the real
// gateway, file service and store: an upload killed in the middle resumes
// with less than one part sent again, bob accepts and downloads it intact
// (whole, by Range, and resuming a partial download), and nobody else can
// read it.
func TestFileTransfer(t *testing.T) {
	t.Run("dir", func(t *testing.T) { testFileTransfer(t, nil) })
	t.Run("minio", func(t *testing.T) {
		m := testenv.StartMinIO(t)
		testFileTransfer(t, func(c *server.Config) {
			c.Storage.MinIO = objstore.MinIOConfig{Endpoint: m.Endpoint, AccessKey: m.AccessKey, SecretKey: m.SecretKey, Bucket: "parley-test"}
		})
	})
}

func testFileTransfer(t *testing.T, edit func(*server.Config)) {
	p := parleytest.Start(t, edit)
	alice := dial(t, p.TCPAddr(), parley.WithHTTPBase(p.HTTPBase()))
	bob := dial(t, p.TCPAddr(), parley.WithHTTPBase(p.HTTPBase()))
	carol := dial(t, p.TCPAddr(), parley.WithHTTPBase(p.HTTPBase()))
	register(t, alice, "alice")
	register(t, bob, "bob")
	register(t, carol, "carol")
	ctx := ctxT(t)

	data, sum := randomData(t, 20<<20+12345) // three 8 MiB parts, the last one short
	offer, err := alice.OfferFile(ctx, parley.OfferRequest{To: "bob", Name: "../../etc/报告 final.bin", Size: uint64(len(data)),
		ContentType: "application/octet-stream", SHA256: sum})
	if err != nil {
		t.Fatal(err)
	}
	f := offer.File
	if f.Name != "报告 final.bin" || f.SenderName != "alice" || f.State != parley.FileStateUploading {
		t.Fatalf("offer: %v", f)
	}
	if offer.PartSize != 8<<20 {
		t.Fatalf("part size %d", offer.PartSize)
	}
	// bob finds the offer waiting for his answer, and in the chat.
	pending, err := bob.Files(ctx, "")
	if err != nil || len(pending) != 1 || pending[0].ID != f.ID {
		t.Fatalf("bob's pending offers: %v %v", pending, err)
	}

	// The client dies after 13 MiB + 77 bytes: what arrived is kept.
	url := p.HTTPBase() + offer.UploadPath
	sent := 13<<20 + 77
	req, _ := http.NewRequestWithContext(ctx, http.MethodPatch, url, &cutReader{r: bytes.NewReader(data), n: sent})
	req.ContentLength = int64(len(data))
	req.Header.Set("Tus-Resumable", "1.0.0")
	req.Header.Set("Content-Type", "application/offset+octet-stream")
	req.Header.Set("Upload-Offset", "0")
	req.Header.Set("Authorization", "Bearer "+alice.Session().Token)
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("cut upload answered %s", resp.Status)
	}
	// The gateway records the whole parts as they are stored and what
	// followed them once it notices the cut: wait until the offset is
	// settled (the same three times in a row).
	var off uint64
	same := 0
	testenv.Eventually(t, wait, "the server to settle the cut upload's offset", func() bool {
		o := headOffset(t, url, alice.Session().Token)
		if o > 0 && o == off {
			same++
		} else {
			same = 0
		}
		off = o
		time.Sleep(50 * time.Millisecond)
		return same >= 2
	})
	if off > uint64(sent) || uint64(sent)-off > offer.PartSize {
		t.Fatalf("offset after the cut = %d, sent %d: more than one part (%d) lost", off, sent, offer.PartSize)
	}
	t.Logf("cut after %d bytes; the server kept %d; resending %d", sent, off, uint64(sent)-off)

	// Someone else cannot see or write the upload.
	if r := tusRequest(t, http.MethodHead, url, carol.Session().Token, nil, nil); r.StatusCode != http.StatusNotFound {
		t.Errorf("carol HEAD: %s", r.Status)
	}
	// A chunk whose Upload-Checksum is wrong is refused whole (tus 460).
	bad := sha1Of([]byte("something else"))
	r := tusRequest(t, http.MethodPatch, url, alice.Session().Token, bytes.NewReader(data[off:off+1000]), map[string]string{
		"Content-Type": "application/offset+octet-stream", "Upload-Offset": strconv.FormatUint(off, 10), "Upload-Checksum": "sha1 " + bad})
	if r.StatusCode != 460 {
		t.Fatalf("bad chunk checksum: %s", r.Status)
	}
	if got := headOffset(t, url, alice.Session().Token); got != off {
		t.Fatalf("offset moved to %d after a refused chunk (was %d)", got, off)
	}
	// A wrong offset is a conflict.
	r = tusRequest(t, http.MethodPatch, url, alice.Session().Token, bytes.NewReader(data[:10]), map[string]string{
		"Content-Type": "application/offset+octet-stream", "Upload-Offset": "0"})
	if r.StatusCode != http.StatusConflict {
		t.Fatalf("wrong offset: %s", r.Status)
	}

	// Resume with the SDK: it asks for the offset and sends the rest.
	var progress uint64
	if err := alice.Upload(ctx, offer, bytes.NewReader(data), parley.UploadOptions{Progress: func(s, _ uint64) { progress = s }}); err != nil {
		t.Fatal(err)
	}
	if progress != uint64(len(data)) {
		t.Errorf("progress ended at %d", progress)
	}

	// carol may not download; only bob answers (§18.2: the sender is told
	// PERMISSION_DENIED, anyone else NOT_FOUND, as for an unknown file);
	// bob accepts and downloads it intact.
	_, err = carol.DownloadURL(ctx, f.ID)
	wantCode(t, err, parley.CodePermissionDenied)
	wantCode(t, alice.AnswerFile(ctx, f.ID, true), parley.CodePermissionDenied)
	wantCode(t, carol.AnswerFile(ctx, f.ID, false), parley.CodeNotFound)
	if err := bob.AnswerFile(ctx, f.ID, true); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "got.bin")
	info, err := bob.DownloadTo(ctx, f.ID, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(path); !bytes.Equal(got, data) || info.State != parley.FileStateAvailable {
		t.Fatalf("downloaded %d bytes (equal %v), state %v", len(got), bytes.Equal(got, data), info.State)
	}
	// A partial download resumes from what is on disk.
	part := filepath.Join(dir, "part.bin")
	if err := os.WriteFile(part, data[:9<<20+3], 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.DownloadTo(ctx, f.ID, part, nil); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(part); !bytes.Equal(got, data) {
		t.Fatal("resumed download differs")
	}
	// Range across a part boundary, by the URL's token alone.
	dl, err := bob.DownloadURL(ctx, f.ID)
	if err != nil {
		t.Fatal(err)
	}
	r = tusRequest(t, http.MethodGet, p.HTTPBase()+dl.Path, "", nil, map[string]string{"Range": fmt.Sprintf("bytes=%d-%d", 8<<20-10, 8<<20+9)})
	got, _ := io.ReadAll(r.Body)
	if r.StatusCode != http.StatusPartialContent || !bytes.Equal(got, data[8<<20-10:8<<20+10]) {
		t.Fatalf("range: %s, %d bytes", r.Status, len(got))
	}
	// A forged token, and carol's session, get nothing.
	r = tusRequest(t, http.MethodGet, p.HTTPBase()+offer.UploadPath+"/content?token=AAAA"+dl.Path[len(dl.Path)-8:], "", nil, nil)
	if r.StatusCode != http.StatusUnauthorized {
		t.Errorf("forged token: %s", r.Status)
	}
	r = tusRequest(t, http.MethodGet, p.HTTPBase()+offer.UploadPath+"/content", carol.Session().Token, nil, nil)
	if r.StatusCode != http.StatusForbidden {
		t.Errorf("carol download: %s", r.Status)
	}
}

func sha1Of(b []byte) string {
	h := sha1.New()
	h.Write(b)
	return base64.StdEncoding.EncodeToString(h.Sum(nil))
}

// TestFileChecksumAndReject: bytes that do not match the declared SHA-256
// fail the file (460, nothing downloadable); a rejected offer cannot be
// uploaded or downloaded any more.
func TestFileChecksumAndReject(t *testing.T) {
	_, alice, bob := aliceAndBob(t, nil)
	ctx := ctxT(t)

	data, _ := randomData(t, 1<<20)
	_, other := randomData(t, 10)
	offer, err := alice.OfferFile(ctx, parley.OfferRequest{To: "bob", Name: "x.bin", Size: uint64(len(data)), SHA256: other})
	if err != nil {
		t.Fatal(err)
	}
	err = alice.Upload(ctx, offer, bytes.NewReader(data), parley.UploadOptions{})
	if !errors.Is(err, parley.ErrChecksum) {
		t.Fatalf("upload with the wrong SHA-256: %v", err)
	}
	_, err = bob.DownloadURL(ctx, offer.File.ID)
	wantCode(t, err, parley.CodeChecksumMismatch)

	data2, sum2 := randomData(t, 3<<20)
	offer2, err := alice.OfferFile(ctx, parley.OfferRequest{To: "bob", Name: "y.bin", Size: uint64(len(data2)), SHA256: sum2})
	if err != nil {
		t.Fatal(err)
	}
	if err := bob.AnswerFile(ctx, offer2.File.ID, false); err != nil {
		t.Fatal(err)
	}
	err = alice.Upload(ctx, offer2, bytes.NewReader(data2), parley.UploadOptions{})
	var he *parley.HTTPError
	if !errors.As(err, &he) || he.Status != http.StatusNotFound {
		t.Fatalf("upload after reject: %v", err)
	}
	_, err = bob.DownloadURL(ctx, offer2.File.ID)
	wantCode(t, err, parley.CodePermissionDenied)
}

// TestGroupShelf: a file sent to a group is listed on the group's shelf and
// any member can download it; a non-member cannot.
func TestGroupShelf(t *testing.T) {
	p := parleytest.Start(t, nil)
	alice := dial(t, p.TCPAddr(), parley.WithHTTPBase(p.HTTPBase()))
	bob := dial(t, p.TCPAddr(), parley.WithHTTPBase(p.HTTPBase()))
	carol := dial(t, p.TCPAddr(), parley.WithHTTPBase(p.HTTPBase()))
	register(t, alice, "alice")
	register(t, bob, "bob")
	register(t, carol, "carol")
	ctx := ctxT(t)
	g, err := alice.CreateGroup(ctx, "team", "bob")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bob.JoinGroup(ctx, g.ID); err != nil {
		t.Fatal(err)
	}
	data, sum := randomData(t, 100<<10)
	offer, err := alice.OfferFile(ctx, parley.OfferRequest{Conversation: g.ID, Name: "plan.txt", ContentType: "text/plain", Size: uint64(len(data)), SHA256: sum})
	if err != nil {
		t.Fatal(err)
	}
	if err := alice.Upload(ctx, offer, bytes.NewReader(data), parley.UploadOptions{ChunkSize: 30 << 10}); err != nil {
		t.Fatal(err)
	}
	shelf, err := bob.Files(ctx, g.ID)
	if err != nil || len(shelf) != 1 || shelf[0].Name != "plan.txt" || shelf[0].State != parley.FileStateAvailable ||
		shelf[0].SenderName != "alice" || shelf[0].Size != uint64(len(data)) {
		t.Fatalf("shelf: %v %v", shelf, err)
	}
	path := filepath.Join(t.TempDir(), "plan.txt")
	if _, err := bob.DownloadTo(ctx, shelf[0].ID, path, nil); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(path); !bytes.Equal(got, data) {
		t.Fatal("group download differs")
	}
	_, err = carol.Files(ctx, g.ID)
	if err == nil {
		t.Fatal("carol listed a group she is not in")
	}
	_, err = carol.DownloadURL(ctx, shelf[0].ID)
	wantCode(t, err, parley.CodePermissionDenied)
}

// tusJSModules finds the tus-js-client installation scripts/deps.sh makes
// (<repo>/.tools/node/node_modules).
func tusJSModules(t *testing.T) string {
	t.Helper()
	dir, _ := os.Getwd()
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			m := filepath.Join(dir, ".tools", "node", "node_modules")
			if _, err := os.Stat(filepath.Join(m, "tus-js-client")); err != nil {
				t.Fatalf("tus-js-client is not installed in %s: run scripts/deps.sh (make test does)", m)
			}
			return m
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.work above the test's directory")
		}
		dir = parent
	}
}

// TestTusJSClientInterop: the npm package tus-js-client, run with Node.js,
// uploads a file to the gateway (creation + chunked PATCHes) and the
// recipient downloads it intact.
func TestTusJSClientInterop(t *testing.T) {
	modules := tusJSModules(t)
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("node is not installed: run scripts/deps.sh (make test does)")
	}
	p, alice, bob := aliceAndBob(t, nil)
	data, sum := randomData(t, 7<<20+999) // two tus-js chunks of 3 MiB and a short one; one 8 MiB part
	src := filepath.Join(t.TempDir(), "src.bin")
	if err := os.WriteFile(src, data, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctxT(t), node, "testdata/tus_upload.js", p.HTTPBase()+"/v1/files", alice.Session().Token, src, "bob", sum)
	cmd.Env = append(os.Environ(), "NODE_PATH="+modules)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("tus-js-client: %v\n%s", err, out)
	}
	uploadURL := strings.TrimSpace(string(out))
	id := uploadURL[strings.LastIndexByte(uploadURL, '/')+1:]
	pending, err := bob.Files(ctxT(t), "")
	if err != nil || len(pending) != 1 || pending[0].ID != id || pending[0].Name != "from-tus-js.bin" {
		t.Fatalf("bob's offers after the tus-js upload %s: %v %v", uploadURL, pending, err)
	}
	path := filepath.Join(t.TempDir(), "got.bin")
	if _, err := bob.DownloadTo(ctxT(t), id, path, nil); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(path); !bytes.Equal(got, data) {
		t.Fatal("download differs from what tus-js-client uploaded")
	}
}

// TestPictureThumbnail: a picture is recognised by its bytes (whatever the
// sender declared) and its listing carries a small upright JPEG thumbnail;
// a file that claims to be a picture but is not one is relabelled and gets
// no thumbnail.
func TestPictureThumbnail(t *testing.T) {
	_, alice, bob := aliceAndBob(t, nil)
	ctx := ctxT(t)

	img := image.NewNRGBA(image.Rect(0, 0, 1200, 800))
	for y := range 800 {
		for x := range 1200 {
			img.SetNRGBA(x, y, color.NRGBA{R: uint8(x), G: uint8(y), B: 90, A: 255})
		}
	}
	var pic bytes.Buffer
	if err := png.Encode(&pic, img); err != nil {
		t.Fatal(err)
	}
	send := func(name, ctype string, data []byte) string {
		t.Helper()
		s := sha256.Sum256(data)
		offer, err := alice.OfferFile(ctx, parley.OfferRequest{To: "bob", Name: name, ContentType: ctype,
			Size: uint64(len(data)), SHA256: hex.EncodeToString(s[:])})
		if err != nil {
			t.Fatal(err)
		}
		if err := alice.Upload(ctx, offer, bytes.NewReader(data), parley.UploadOptions{}); err != nil {
			t.Fatal(err)
		}
		return offer.File.ID
	}
	picID := send("holiday.png", "application/octet-stream", pic.Bytes())
	fakeID := send("notes.jpg", "image/jpeg", []byte("plain text pretending to be a photo"))

	d, err := bob.DownloadURL(ctx, picID)
	if err != nil {
		t.Fatal(err)
	}
	f := d.File
	if f.ContentType != "image/png" {
		t.Fatalf("picture's content type %q, want image/png (recognised by its bytes)", f.ContentType)
	}
	th, err := jpeg.Decode(bytes.NewReader(f.Thumbnail))
	if err != nil {
		t.Fatalf("thumbnail (%d bytes) is not a JPEG: %v", len(f.Thumbnail), err)
	}
	if b := th.Bounds(); b.Dx() != 160 || b.Dy() != 106 {
		t.Fatalf("thumbnail %dx%d, want 160x106 (1200x800 scaled)", b.Dx(), b.Dy())
	}
	// The same thumbnail is in the conversation's file list.
	list, err := bob.Files(ctx, f.Conversation)
	if err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, x := range list {
		switch x.ID {
		case picID:
			found = bytes.Equal(x.Thumbnail, f.Thumbnail)
		case fakeID:
			if x.ContentType != "application/octet-stream" || len(x.Thumbnail) != 0 {
				t.Fatalf("fake picture: type %q, thumbnail %d bytes; want relabelled, none", x.ContentType, len(x.Thumbnail))
			}
		}
	}
	if !found {
		t.Fatalf("picture or its thumbnail missing from the list: %v", list)
	}
}

// TestFilesPaging: a shelf longer than a page is listed newest first in
// pages that neither repeat nor skip a file, and Files fetches them all.
func TestFilesPaging(t *testing.T) {
	_, alice, _ := aliceAndBob(t, nil)
	ctx := ctxT(t)
	g, err := alice.CreateGroup(ctx, "shelf", "bob")
	if err != nil {
		t.Fatal(err)
	}
	var sent []string // oldest first
	for i := range 7 {
		data, sum := randomData(t, 1000+i)
		offer, err := alice.OfferFile(ctx, parley.OfferRequest{Conversation: g.ID, Name: fmt.Sprintf("f%d.bin", i),
			Size: uint64(len(data)), SHA256: sum})
		if err != nil {
			t.Fatal(err)
		}
		sent = append(sent, offer.File.ID)
	}
	var got []string
	after := ""
	for pages := 1; ; pages++ {
		files, more, err := alice.FilesPage(ctx, g.ID, after, 3)
		if err != nil {
			t.Fatal(err)
		}
		if len(files) > 3 {
			t.Fatalf("page of %d files, asked for 3", len(files))
		}
		for _, f := range files {
			got = append(got, f.ID)
		}
		if !more {
			if pages != 3 {
				t.Fatalf("%d pages for 7 files by 3", pages)
			}
			break
		}
		after = files[len(files)-1].ID
	}
	want := slices.Clone(sent)
	slices.Reverse(want)
	if !slices.Equal(got, want) {
		t.Fatalf("pages gave %v, want newest first %v", got, want)
	}
	all, err := alice.Files(ctx, g.ID)
	if err != nil || len(all) != 7 {
		t.Fatalf("Files: %d files, %v", len(all), err)
	}
	_, _, err = alice.FilesPage(ctx, g.ID, "f-no-such-file", 3)
	wantCode(t, err, parley.CodeInvalidArgument)
}

// gatedReaderAt serves data up to gate at once and the rest only after
// open is closed: an uploader on a slow link.
type gatedReaderAt struct {
	data []byte
	gate int64
	open chan struct{}
}

func (g *gatedReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if off+int64(len(p)) > g.gate {
		if off < g.gate {
			return copy(p, g.data[off:g.gate]), nil
		}
		<-g.open
	}
	if off >= int64(len(g.data)) {
		return 0, io.EOF
	}
	n := copy(p, g.data[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// TestLiveDownload: bob, online when alice offers him a file, accepts and
// downloads it while alice is still uploading: he gets the parts stored so
// far at once, the rest as it arrives, and the whole file is intact. Carol,
// offline at the offer, waits for the upload to finish instead.
func TestLiveDownload(t *testing.T) {
	p, alice, bob := aliceAndBob(t, nil)
	ctx := ctxT(t)

	data, sum := randomData(t, 20<<20+999) // parts of 8 MiB
	offer, err := alice.OfferFile(ctx, parley.OfferRequest{To: "bob", Name: "live.bin", Size: uint64(len(data)), SHA256: sum})
	if err != nil {
		t.Fatal(err)
	}
	src := &gatedReaderAt{data: data, gate: 10 << 20, open: make(chan struct{})}
	uploaded := make(chan error, 1)
	go func() { uploaded <- alice.Upload(ctx, offer, src, parley.UploadOptions{}) }()

	id := offer.File.ID
	if err := bob.AnswerFile(ctx, id, true); err != nil {
		t.Fatal(err)
	}
	var got atomic.Uint64
	downloaded := make(chan error, 1)
	path := filepath.Join(t.TempDir(), "live.bin")
	go func() {
		_, err := bob.DownloadTo(ctx, id, path, func(done, _ uint64) { got.Store(done) })
		downloaded <- err
	}()
	// alice is stuck at 10 MiB: bob has the first whole part (8 MiB) already.
	testenv.Eventually(t, wait, "bob to receive the stored part while the upload runs", func() bool {
		return got.Load() >= 8<<20
	})
	if n := got.Load(); n > 10<<20 {
		t.Fatalf("bob has %d bytes, more than alice sent", n)
	}
	select {
	case err := <-downloaded:
		t.Fatalf("download ended before the upload: %v", err)
	default:
	}
	close(src.open)
	if err := <-uploaded; err != nil {
		t.Fatalf("upload: %v", err)
	}
	if err := <-downloaded; err != nil {
		t.Fatalf("live download: %v", err)
	}
	if b, _ := os.ReadFile(path); !bytes.Equal(b, data) {
		t.Fatal("live download differs from the file")
	}

	// Carol is offline when alice offers: not live; her download waits
	// for the end of the upload and then arrives whole.
	carol := dial(t, p.TCPAddr(), parley.WithHTTPBase(p.HTTPBase()))
	register(t, carol, "carol")
	carolOnline := func() bool {
		return slices.ContainsFunc(alice.Online(), func(u parley.OnlineUser) bool { return u.Username == "carol" })
	}
	// Seen online first, so "not listed" below means she went offline.
	testenv.Eventually(t, wait, "alice to see carol online", carolOnline)
	carol.Close()
	testenv.Eventually(t, wait, "carol to be offline", func() bool { return !carolOnline() })
	offer2, err := alice.OfferFile(ctx, parley.OfferRequest{To: "carol", Name: "later.bin", Size: uint64(len(data)), SHA256: sum})
	if err != nil {
		t.Fatal(err)
	}
	carol = dial(t, p.TCPAddr(), parley.WithHTTPBase(p.HTTPBase()))
	login(t, carol, "carol")
	src2 := &gatedReaderAt{data: data, gate: 10 << 20, open: make(chan struct{})}
	go func() { uploaded <- alice.Upload(ctx, offer2, src2, parley.UploadOptions{}) }()
	var got2 atomic.Uint64
	path2 := filepath.Join(t.TempDir(), "later.bin")
	go func() {
		_, err := carol.DownloadTo(ctx, offer2.File.ID, path2, func(done, _ uint64) { got2.Store(done) })
		downloaded <- err
	}()
	testenv.Eventually(t, wait, "alice's upload to reach 8 MiB", func() bool {
		fs, err := alice.Files(ctx, offer2.File.Conversation)
		return err == nil && len(fs) > 0 && fs[0].Uploaded >= 8<<20
	})
	time.Sleep(300 * time.Millisecond) // a live download would have moved by now
	if n := got2.Load(); n != 0 {
		t.Fatalf("carol (offline at the offer) received %d bytes before the upload finished", n)
	}
	close(src2.open)
	if err := <-uploaded; err != nil {
		t.Fatal(err)
	}
	if err := <-downloaded; err != nil {
		t.Fatalf("carol's waiting download: %v", err)
	}
	if b, _ := os.ReadFile(path2); !bytes.Equal(b, data) {
		t.Fatal("carol's download differs")
	}
}

// TestUploadSlots: a gateway writes at most -max-uploads uploads at once
// (each holds a part buffer); one more waits a few seconds for a slot and
// is then told to come back later (503, Retry-After) without losing
// anything; a waiting one goes through as soon as a slot is free.
func TestUploadSlots(t *testing.T) {
	p, alice, _ := aliceAndBob(t, func(c *server.Config) { c.Gateway.MaxUploads = 1 })
	ctx := ctxT(t)
	data, sum := randomData(t, 3<<20)
	offer := func() *parley.FileOffer {
		o, err := alice.OfferFile(ctx, parley.OfferRequest{To: "bob", Name: "x.bin", Size: uint64(len(data)), SHA256: sum})
		if err != nil {
			t.Fatal(err)
		}
		return o
	}
	first, second := offer(), offer()
	src := &gatedReaderAt{data: data, gate: 1 << 20, open: make(chan struct{})}
	done := make(chan error, 1)
	go func() { done <- alice.Upload(ctx, first, src, parley.UploadOptions{}) }()

	url := p.HTTPBase() + second.UploadPath
	patch := func(body []byte) *http.Response {
		return tusRequest(t, http.MethodPatch, url, alice.Session().Token, bytes.NewReader(body), map[string]string{
			"Content-Type": "application/offset+octet-stream", "Upload-Offset": "0"})
	}
	// Empty PATCHes (which change nothing when they get the slot) until
	// the first upload holds it.
	var r *http.Response
	testenv.Eventually(t, wait, "an upload beyond -max-uploads to be refused", func() bool {
		r = patch(nil)
		return r.StatusCode != http.StatusNoContent
	})
	if r.StatusCode != http.StatusServiceUnavailable || r.Header.Get("Retry-After") == "" {
		t.Fatalf("upload beyond -max-uploads: %s, Retry-After %q; want 503 with Retry-After", r.Status, r.Header.Get("Retry-After"))
	}
	if got := headOffset(t, url, alice.Session().Token); got != 0 {
		t.Fatalf("refused upload moved to offset %d", got)
	}
	// One that arrives while the slot is taken waits for it.
	queued := make(chan *http.Response, 1)
	go func() { queued <- patch(data) }()
	time.Sleep(200 * time.Millisecond)
	close(src.open)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if r := <-queued; r.StatusCode != http.StatusNoContent {
		t.Fatalf("upload waiting for the slot: %s", r.Status)
	}
	if got := headOffset(t, url, alice.Session().Token); got != uint64(len(data)) {
		t.Fatalf("offset %d after the whole upload", got)
	}
}

// TestOfferIdempotent: an offer re-sent with the same client key (a client
// that lost the answer) makes no second file and no second message; the
// key cannot be reused for another file.
func TestOfferIdempotent(t *testing.T) {
	_, alice, bob := aliceAndBob(t, nil)
	ctx := ctxT(t)
	data, sum := randomData(t, 4096)
	req := parley.OfferRequest{To: "bob", Name: "once.bin", Size: uint64(len(data)), SHA256: sum, ClientKey: "offer-1"}
	first, err := alice.OfferFile(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	again, err := alice.OfferFile(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if again.File.ID != first.File.ID || !again.Duplicate || first.Duplicate {
		t.Fatalf("repeat offer: file %s (dup %v), first %s (dup %v)", again.File.ID, again.Duplicate,
			first.File.ID, first.Duplicate)
	}
	conv := first.File.Conversation
	files, err := bob.Files(ctx, conv)
	if err != nil || len(files) != 1 {
		t.Fatalf("bob sees %d files (%v), want 1", len(files), err)
	}
	msgs, _, err := bob.History(ctx, conv, 0, 50)
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 1 {
		t.Fatalf("%d offer messages in the chat, want 1", len(msgs))
	}
	// The same key for another file is refused; a key too long too. The
	// limit is 64 characters, not bytes.
	_, other := randomData(t, 10)
	_, err = alice.OfferFile(ctx, parley.OfferRequest{To: "bob", Name: "other.bin", Size: 10, SHA256: other, ClientKey: "offer-1"})
	wantCode(t, err, parley.CodeConflict)
	_, err = alice.OfferFile(ctx, parley.OfferRequest{To: "bob", Name: "x", Size: 10, SHA256: other, ClientKey: strings.Repeat("k", 65)})
	wantCode(t, err, parley.CodeInvalidArgument)
	_, err = alice.OfferFile(ctx, parley.OfferRequest{To: "bob", Name: "x", Size: 10, SHA256: other, ClientKey: strings.Repeat("é", 65)})
	wantCode(t, err, parley.CodeInvalidArgument)
	if _, err := alice.OfferFile(ctx, parley.OfferRequest{To: "bob", Name: "x", Size: 10, SHA256: other, ClientKey: strings.Repeat("é", 64)}); err != nil {
		t.Fatalf("a key of 64 two-byte characters: %v", err)
	}
	// Without a key the SDK picks a fresh one: two calls, two files.
	a, err := alice.OfferFile(ctx, parley.OfferRequest{To: "bob", Name: "a", Size: 10, SHA256: other})
	if err != nil {
		t.Fatal(err)
	}
	b, err := alice.OfferFile(ctx, parley.OfferRequest{To: "bob", Name: "a", Size: 10, SHA256: other})
	if err != nil || a.File.ID == b.File.ID {
		t.Fatalf("two offers without a key: %v, %v", b, err)
	}
}

// TestRetention: with short time-to-lives, the sweeper removes a finished
// file after -file-ttl and an unfinished upload after -file-upload-ttl
// (aborting its multipart upload explicitly), and also what no record owns:
// a finished object, a tail and a multipart upload left by a crash.
func TestRetention(t *testing.T) {
	root := filepath.Join(t.TempDir(), "store")
	p, alice, bob := aliceAndBob(t, func(c *server.Config) {
		c.Storage.Dir = root
		c.File.FileTTL = 3 * time.Second
		c.File.UploadTTL = 3 * time.Second
		c.File.SweepInterval = 250 * time.Millisecond
	})
	ctx := ctxT(t)
	st, err := objstore.NewDir(root) // the same directory, as a second process would
	if err != nil {
		t.Fatal(err)
	}

	data, sum := randomData(t, 1<<20)
	done, err := alice.OfferFile(ctx, parley.OfferRequest{To: "bob", Name: "kept.bin", Size: uint64(len(data)), SHA256: sum})
	if err != nil {
		t.Fatal(err)
	}
	if err := alice.Upload(ctx, done, bytes.NewReader(data), parley.UploadOptions{}); err != nil {
		t.Fatal(err)
	}
	half, err := alice.OfferFile(ctx, parley.OfferRequest{To: "bob", Name: "half.bin", Size: uint64(len(data)), SHA256: sum})
	if err != nil {
		t.Fatal(err)
	}
	halfURL := p.HTTPBase() + half.UploadPath
	r := tusRequest(t, http.MethodPatch, halfURL, alice.Session().Token, bytes.NewReader(data[:300<<10]), map[string]string{
		"Content-Type": "application/offset+octet-stream", "Upload-Offset": "0"})
	if r.StatusCode != http.StatusNoContent || headOffset(t, halfURL, alice.Session().Token) != 300<<10 {
		t.Fatalf("half upload: %s", r.Status)
	}
	// What a crash leaves: objects and an upload no record owns.
	for _, k := range []string{"files/f0123456789abcdef01234567", "tails/f0123456789abcdef01234567/100", "live/f0123456789abcdef01234567/1"} {
		if _, err := st.Put(ctx, k, strings.NewReader("orphan"), 6, "application/octet-stream"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := st.NewUpload(ctx, "files/f76543210fedcba9876543210"); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.DownloadURL(ctx, done.File.ID); err != nil {
		t.Fatalf("before its time-to-live: %v", err)
	}

	testenv.Eventually(t, 20*time.Second, "retention to remove the files, the upload and the orphans", func() bool {
		objs, err1 := st.List(ctx, "")
		ups, err2 := st.ListUploads(ctx, "")
		return err1 == nil && err2 == nil && len(objs) == 0 && len(ups) == 0
	})
	_, err = bob.DownloadURL(ctx, done.File.ID)
	wantCode(t, err, parley.CodeNotFound)
	if r := tusRequest(t, http.MethodHead, halfURL, alice.Session().Token, nil, nil); r.StatusCode != http.StatusNotFound {
		t.Fatalf("HEAD of the expired upload: %s", r.Status)
	}
	files, err := bob.Files(ctx, done.File.Conversation)
	if err != nil || len(files) != 0 {
		t.Fatalf("expired files still listed: %v %v", files, err)
	}
}

// TestFileEvents: the SDK hands the application what happens to a file:
// the offer as a message carrying the file and as an OFFERED event, the
// recipient's answer to the sender, and AVAILABLE to both when the upload
// is complete.
func TestFileEvents(t *testing.T) {
	p := parleytest.Start(t, nil)
	alice := newSocial(t, p.TCPAddr(), "alice", parley.WithHTTPBase(p.HTTPBase()))
	bob := newSocial(t, p.TCPAddr(), "bob", parley.WithHTTPBase(p.HTTPBase()))
	ctx := ctxT(t)
	data, sum := randomData(t, 50_000)
	offer, err := alice.OfferFile(ctx, parley.OfferRequest{To: "bob", Name: "events.bin", Size: uint64(len(data)), SHA256: sum})
	if err != nil {
		t.Fatal(err)
	}
	id := offer.File.ID
	isFile := func(k parley.FileEventKind) func(parley.FileEvent) bool {
		return func(e parley.FileEvent) bool { return e.Kind == k && e.File.ID == id }
	}
	waitEvent(bob, "the offer as a message", func(e parley.MessageEvent) bool {
		return e.Message.File.ID == id && e.Message.Text == "events.bin" && e.Message.SenderName == "alice"
	})
	if ev := waitEvent(bob, "the offer event", isFile(parley.FileEventOffered)); ev.Username != "alice" || ev.File.Size != uint64(len(data)) {
		t.Fatalf("offer event %+v", ev)
	}
	if err := bob.AnswerFile(ctx, id, true); err != nil {
		t.Fatal(err)
	}
	if ev := waitEvent(alice, "bob's answer", isFile(parley.FileEventAccepted)); ev.Username != "bob" {
		t.Fatalf("answer event from %q", ev.Username)
	}
	if err := alice.Upload(ctx, offer, bytes.NewReader(data), parley.UploadOptions{}); err != nil {
		t.Fatal(err)
	}
	waitEvent(bob, "the file available to bob", isFile(parley.FileEventAvailable))
	waitEvent(alice, "the file available to alice", isFile(parley.FileEventAvailable))
}

// TestAnswerFileWhoMay: only a private file's recipient answers it. Its
// sender is told PERMISSION_DENIED; anyone else gets NOT_FOUND, exactly as
// for a file id that does not exist, so answering reveals nothing about
// other people's files (docs/protocol.md §18.2).
func TestAnswerFileWhoMay(t *testing.T) {
	p, alice, bob := aliceAndBob(t, nil)
	carol := dial(t, p.TCPAddr(), parley.WithHTTPBase(p.HTTPBase()))
	register(t, carol, "carol")
	ctx := ctxT(t)
	_, sum := randomData(t, 10)
	offer, err := alice.OfferFile(ctx, parley.OfferRequest{To: "bob", Name: "x.bin", Size: 10, SHA256: sum})
	if err != nil {
		t.Fatal(err)
	}
	id := offer.File.ID
	wantCode(t, alice.AnswerFile(ctx, id, true), parley.CodePermissionDenied)
	wantCode(t, carol.AnswerFile(ctx, id, false), parley.CodeNotFound)
	wantCode(t, carol.AnswerFile(ctx, "f-no-such-file", false), parley.CodeNotFound)
	if err := bob.AnswerFile(ctx, id, true); err != nil {
		t.Fatalf("the recipient's answer: %v", err)
	}
}
