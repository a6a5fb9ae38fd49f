package files_test

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/parleychat/parley/gateway/internal/files"
	"github.com/parleychat/parley/protocol/fileurl"
)

// uploadNamed offers data with a declared name and type (tus creation) and
// uploads it whole.
func (g *gw) uploadNamed(data []byte, name, ctype string) string {
	g.t.Helper()
	a := g.do(req{"POST", fileurl.Prefix, tus("alice", "Upload-Length", strconv.Itoa(len(data)),
		"Upload-Metadata", metadata("filename", name, "filetype", ctype, "to", "bob", "sha256", sha256Hex(data))), nil})
	if a.status != http.StatusCreated {
		g.t.Fatalf("creation: %d %s", a.status, a.body)
	}
	path := a.header.Get("Location")
	g.upload(path, data)
	return path
}

// TestDownload: a complete file is served whole or by one Range (RFC 9110
// §14), by session or by download token, with the headers docs/protocol.md
// §18.4 lists, to the users the file service allows.
func TestDownload(t *testing.T) {
	g := startFiles(t, nil)
	data := randomBytes(t, 1000)
	path := g.uploadNamed(data, `报告 "final".png`, "image/png")
	content := path + "/content"
	bob := map[string]string{"Authorization": "Bearer tok-bob"}

	a := g.do(req{"GET", content, bob, nil})
	if a.status != http.StatusOK || a.body != string(data) {
		t.Fatalf("GET: %d, %d bytes", a.status, len(a.body))
	}
	sum := sha256Hex(data)
	for k, want := range map[string]string{
		"Accept-Ranges": "bytes", "Content-Type": "image/png", "Content-Length": "1000",
		"Content-Disposition":     `attachment; filename="__ _final_.png"; filename*=UTF-8''%E6%8A%A5%E5%91%8A%20%22final%22.png`,
		"ETag":                    `"` + sum + `"`,
		"X-Parley-Sha256":         sum,
		"Cache-Control":           "private, no-store",
		"Content-Security-Policy": "default-src 'none'; sandbox",
		"X-Content-Type-Options":  "nosniff",
		"X-Parley-Live":           "",
	} {
		if got := a.header.Get(k); got != want {
			t.Errorf("GET: %s = %q, want %q", k, got, want)
		}
	}

	for _, tc := range []struct {
		rule, rng    string
		status       int
		contentRange string
		body         []byte
	}{
		{"§14.2: one range, 206 with Content-Range (§14.4)", "bytes=10-19", 206, "bytes 10-19/1000", data[10:20]},
		{"§14.1.2: a suffix range", "bytes=-5", 206, "bytes 995-999/1000", data[995:]},
		{"§14.1.2: to the end (a resumed download)", "bytes=990-", 206, "bytes 990-999/1000", data[990:]},
		{"§14.1.2: past the end is cut at the end", "bytes=998-5000", 206, "bytes 998-999/1000", data[998:]},
		{"§15.5.17: unsatisfiable: 416 with Content-Range: bytes */length", "bytes=1000-", 416, "bytes */1000", nil},
		{"§14.2: malformed, and rejected", "bytes=9-1", 416, "bytes */1000", nil},
		{"§14.2: several ranges are ignored: the whole file", "bytes=0-1,5-6", 200, "", data},
	} {
		h := map[string]string{"Authorization": "Bearer tok-bob", "Range": tc.rng}
		a := g.do(req{"GET", content, h, nil})
		if a.status != tc.status || a.header.Get("Content-Range") != tc.contentRange || (tc.body != nil && a.body != string(tc.body)) {
			t.Errorf("%s: Range %q: %d Content-Range %q, %d bytes", tc.rule, tc.rng, a.status, a.header.Get("Content-Range"), len(a.body))
		}
		// HEAD answers what GET would, without the body.
		h2 := g.do(req{"HEAD", content, h, nil})
		if h2.status != tc.status || h2.header.Get("Content-Range") != tc.contentRange || h2.body != "" ||
			(tc.body != nil && h2.header.Get("Content-Length") != strconv.Itoa(len(tc.body))) {
			t.Errorf("%s: HEAD with Range %q: %d %v", tc.rule, tc.rng, h2.status, h2.header)
		}
	}

	// The download URL's token, without a session.
	if a := g.do(req{"GET", content + "?token=tok-for-bob", nil, nil}); a.status != http.StatusOK || a.body != string(data) {
		t.Errorf("GET by token: %d", a.status)
	}
	for _, tc := range []struct {
		name   string
		path   string
		header map[string]string
		status int
	}{
		{"§18.4: an invalid token", content + "?token=forged", nil, 401},
		{"§18.4: neither token nor session", content, nil, 401},
		{"§18.4: a token for someone the file was not sent to", content + "?token=tok-for-carol", nil, 403},
		{"§18.4: a session of someone the file was not sent to", content, map[string]string{"Authorization": "Bearer tok-carol"}, 403},
		{"§18.4: an unknown file", fileurl.Prefix + "/nosuch/content", bob, 404},
	} {
		if a := g.do(req{"GET", tc.path, tc.header, nil}); a.status != tc.status {
			t.Errorf("%s: %d, want %d", tc.name, a.status, tc.status)
		}
	}
	// The sender may download what she sent.
	if a := g.do(req{"GET", content, map[string]string{"Authorization": "Bearer tok-alice"}, nil}); a.status != http.StatusOK {
		t.Errorf("the sender's download: %d", a.status)
	}

	// Bytes gone from storage (expired behind the record's back): 404.
	if err := g.store.Delete(context.Background(), "files/"+fileID(path)); err != nil {
		t.Fatal(err)
	}
	if a := g.do(req{"GET", content, bob, nil}); a.status != http.StatusNotFound {
		t.Errorf("GET of bytes gone: %d", a.status)
	}
}

// TestDownloadWhileUploading: a file that is not live answers 409 with
// Retry-After until it is complete (§18.4).
func TestDownloadWhileUploading(t *testing.T) {
	g := startFiles(t, nil)
	data := randomBytes(t, 100)
	path := g.offer(data)
	g.patch(path, 0, data[:50])
	a := g.do(req{"GET", path + "/content", map[string]string{"Authorization": "Bearer tok-bob"}, nil})
	if a.status != http.StatusConflict || a.header.Get("Retry-After") != "2" {
		t.Fatalf("GET while uploading: %d %v", a.status, a.header)
	}
	g.patch(path, 50, data[50:])
	g.mustDownload(path, data)
}

// TestServedType: a download keeps its declared Content-Type only when a
// browser shows it passively; everything else is served as
// application/octet-stream (§18.4).
func TestServedType(t *testing.T) {
	g := startFiles(t, nil)
	for declared, served := range map[string]string{
		"image/png":                 "image/png",
		"image/jpeg":                "image/jpeg",
		"video/mp4":                 "video/mp4",
		"audio/ogg":                 "audio/ogg",
		"text/plain; charset=utf-8": "text/plain; charset=utf-8",
		"text/csv":                  "text/csv",
		"text/html":                 "application/octet-stream",
		"image/svg+xml":             "application/octet-stream",
		"video/x+xml":               "application/octet-stream",
		"application/pdf":           "application/octet-stream",
		"text/javascript":           "application/octet-stream",
		"":                          "application/octet-stream",
		"not a type":                "application/octet-stream",
	} {
		path := g.uploadNamed([]byte("x"), "f", declared)
		a := g.do(req{"GET", path + "/content", map[string]string{"Authorization": "Bearer tok-bob"}, nil})
		if a.status != http.StatusOK || a.header.Get("Content-Type") != served {
			t.Errorf("declared %q: %d served as %q, want %q", declared, a.status, a.header.Get("Content-Type"), served)
		}
	}
}

// liveGet starts a download as bob and returns its response, headers read.
func (g *gw) liveGet(path string, rng string) *http.Response {
	g.t.Helper()
	hr, err := http.NewRequest("GET", g.base+path+"/content", nil)
	if err != nil {
		g.t.Fatal(err)
	}
	hr.Header.Set("Authorization", "Bearer tok-bob")
	if rng != "" {
		hr.Header.Set("Range", rng)
	}
	resp, err := g.http.Do(hr)
	if err != nil {
		g.t.Fatal(err)
	}
	g.t.Cleanup(func() { resp.Body.Close() })
	if resp.Header.Get("X-Parley-Live") != "1" {
		g.t.Fatalf("GET of a live upload: %s, X-Parley-Live %q", resp.Status, resp.Header.Get("X-Parley-Live"))
	}
	return resp
}

// readAsync reads a body whole in the background.
func readAsync(body io.Reader) <-chan []byte {
	done := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(body)
		done <- b
	}()
	return done
}

// TestLiveDownload: a download of a live file (its recipient was online)
// may start while the upload runs: it gets the bytes stored so far at
// once — whole parts' readable copies and the tail — and the rest as the
// uploader sends it, whole or from a Range (§18.4, "Live downloads").
func TestLiveDownload(t *testing.T) {
	g := startFiles(t, nil)
	g.fs.set(testPartSize, true)
	data := randomBytes(t, 3*testPartSize+1000)
	path := g.offer(data)
	stored := testPartSize + 500 // a part and a tail
	g.patch(path, 0, data[:stored])

	whole := g.liveGet(path, "")
	if whole.StatusCode != http.StatusOK || whole.ContentLength != int64(len(data)) {
		t.Fatalf("live GET: %s, Content-Length %d", whole.Status, whole.ContentLength)
	}
	got := make([]byte, stored)
	if _, err := io.ReadFull(whole.Body, got); err != nil || string(got) != string(data[:stored]) {
		t.Fatalf("the bytes stored so far: %v", err)
	}
	from := testPartSize + 100 // inside the tail
	ranged := g.liveGet(path, "bytes="+strconv.Itoa(from)+"-")
	if ranged.StatusCode != http.StatusPartialContent {
		t.Fatalf("live GET with Range: %s", ranged.Status)
	}
	rest, tail := readAsync(whole.Body), readAsync(ranged.Body)

	// The uploader goes on in two PATCHes; the downloads follow.
	mid := 2*testPartSize + 7
	g.patch(path, stored, data[stored:mid])
	g.patch(path, mid, data[mid:])
	for name, tc := range map[string]struct {
		got  <-chan []byte
		want []byte
	}{"whole": {rest, data[stored:]}, "ranged": {tail, data[from:]}} {
		select {
		case b := <-tc.got:
			if string(b) != string(tc.want) {
				t.Errorf("%s live download: %d bytes, want %d", name, len(b), len(tc.want))
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("%s live download did not end", name)
		}
	}
}

// TestLiveDownloadEndsShort: a live download whose upload is removed, or
// stops moving for the idle timeout, ends before Content-Length, so the
// client sees a short download it can resume (§18.4).
func TestLiveDownloadEndsShort(t *testing.T) {
	g := startFiles(t, func(o *files.Options) { o.IdleTimeout = time.Second })
	g.fs.set(testPartSize, true)
	data := randomBytes(t, 2*testPartSize)
	for _, how := range []string{"removed", "idle"} {
		path := g.offer(data)
		g.patch(path, 0, data[:100])
		resp := g.liveGet(path, "")
		got := readAsync(resp.Body)
		if how == "removed" {
			if a := g.do(req{"DELETE", path, tus("alice"), nil}); a.status != http.StatusNoContent {
				t.Fatalf("DELETE: %d", a.status)
			}
		}
		select {
		case b := <-got:
			if len(b) != 100 || string(b) != string(data[:100]) {
				t.Errorf("%s: the download ended after %d bytes, want the 100 stored", how, len(b))
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("%s: the live download did not end", how)
		}
	}
}
