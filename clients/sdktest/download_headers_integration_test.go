package sdktest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"image"
	"image/png"
	"io"
	"net/http"
	"testing"

	"github.com/parleychat/parley/clients/parley"
	"github.com/parleychat/parley/standalone/server"
)

// TestDownloadHeaders: a download can never act on the gateway's origin.
// Every download carries nosniff and a sandboxing Content-Security-Policy;
// types a browser would run or render as active content are served as
// application/octet-stream, passive ones (pictures, audio, video, plain
// text) as declared; and no answer allows every origin.
func TestDownloadHeaders(t *testing.T) {
	p, alice, bob := aliceAndBob(t, nil)
	ctx := ctxT(t)
	var pic bytes.Buffer
	if err := png.Encode(&pic, image.NewGray(image.Rect(0, 0, 4, 4))); err != nil {
		t.Fatal(err)
	}
	html := []byte("<html><script>fetch('/v1/files')</script></html>")
	for _, tc := range []struct {
		name, declared string
		data           []byte
		served         string
	}{
		{"page.html", "text/html", html, "application/octet-stream"},
		{"page.htm", "TEXT/HTML; charset=utf-8", html, "application/octet-stream"},
		{"x.xhtml", "application/xhtml+xml", html, "application/octet-stream"},
		{"logo.svg", "image/svg+xml", []byte(`<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>`), "application/octet-stream"},
		{"x.xml", "text/xml", html, "application/octet-stream"},
		{"feed.atom", "application/atom+xml", html, "application/octet-stream"},
		{"app.js", "text/javascript", html, "application/octet-stream"},
		{"app.mjs", "application/javascript", html, "application/octet-stream"},
		{"style.css", "text/css", html, "application/octet-stream"},
		{"doc.pdf", "application/pdf", html, "application/octet-stream"},
		{"x.swf", "application/x-shockwave-flash", html, "application/octet-stream"},
		{"mixed", "multipart/x-mixed-replace; boundary=x", html, "application/octet-stream"},
		{"undeclared.bin", "", html, "application/octet-stream"},
		{"notes.txt", "text/plain; charset=utf-8", []byte("hello"), "text/plain; charset=utf-8"},
		{"data.csv", "text/csv", []byte("a,b\n1,2\n"), "text/csv"},
		{"clip.mp4", "video/mp4", []byte("not really a video"), "video/mp4"},
		{"song.ogg", "audio/ogg", []byte("not really audio"), "audio/ogg"},
		{"pic.png", "image/png", pic.Bytes(), "image/png"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sum := sha256.Sum256(tc.data)
			offer, err := alice.OfferFile(ctx, parley.OfferRequest{To: "bob", Name: tc.name, ContentType: tc.declared,
				Size: uint64(len(tc.data)), SHA256: hex.EncodeToString(sum[:])})
			if err != nil {
				t.Fatal(err)
			}
			if err := alice.Upload(ctx, offer, bytes.NewReader(tc.data), parley.UploadOptions{}); err != nil {
				t.Fatal(err)
			}
			d, err := bob.DownloadURL(ctx, offer.File.ID)
			if err != nil {
				t.Fatal(err)
			}
			for _, method := range []string{http.MethodGet, http.MethodHead} {
				req, _ := http.NewRequestWithContext(ctx, method, p.HTTPBase()+d.Path, nil)
				req.Header.Set("Origin", "https://evil.example")
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				h := resp.Header
				switch {
				case resp.StatusCode != http.StatusOK:
					t.Fatalf("%s: %s", method, resp.Status)
				case h.Get("Content-Type") != tc.served:
					t.Errorf("%s: Content-Type %q, want %q", method, h.Get("Content-Type"), tc.served)
				case h.Get("X-Content-Type-Options") != "nosniff":
					t.Errorf("%s: X-Content-Type-Options %q", method, h.Get("X-Content-Type-Options"))
				case h.Get("Content-Security-Policy") != "default-src 'none'; sandbox":
					t.Errorf("%s: Content-Security-Policy %q", method, h.Get("Content-Security-Policy"))
				case h.Get("Access-Control-Allow-Origin") != "":
					t.Errorf("%s: Access-Control-Allow-Origin %q with no origin allowed", method, h.Get("Access-Control-Allow-Origin"))
				case resp.ContentLength != int64(len(tc.data)):
					// HEAD gives the GET's headers: the file's size, not
					// the length of a status text.
					t.Errorf("%s: Content-Length %d, want the file's %d", method, resp.ContentLength, len(tc.data))
				}
			}
		})
	}
}

// TestCORS: without -cors-origins no answer of the file endpoints allows
// any origin (there used to be "*" on every one); with it, the listed
// origins, and only they, are echoed with Vary: Origin, and their preflight
// gets the methods and headers a tus client needs.
func TestCORS(t *testing.T) {
	const app = "https://chat.example.com"
	call := func(t *testing.T, base, method, path, origin string, hdr map[string]string) *http.Response {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctxT(t), method, base+path, nil)
		req.Header.Set("Tus-Resumable", "1.0.0")
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	preflight := map[string]string{"Access-Control-Request-Method": "PATCH", "Access-Control-Request-Headers": "authorization,upload-offset"}
	requests := []struct{ method, path string }{
		{http.MethodOptions, "/v1/files"},
		{http.MethodHead, "/v1/files/nope"},
		{http.MethodPatch, "/v1/files/nope"},
		{http.MethodPost, "/v1/files"},
		{http.MethodGet, "/v1/files/nope/content?token=x"},
	}

	t.Run("none", func(t *testing.T) {
		p, _, _ := aliceAndBob(t, nil)
		for _, r := range requests {
			for _, origin := range []string{"", app, "https://evil.example"} {
				resp := call(t, p.HTTPBase(), r.method, r.path, origin, preflight)
				if v := resp.Header.Get("Access-Control-Allow-Origin"); v != "" {
					t.Errorf("%s %s from %q: Access-Control-Allow-Origin %q", r.method, r.path, origin, v)
				}
				if resp.Header.Get("X-Content-Type-Options") != "nosniff" {
					t.Errorf("%s %s: no nosniff", r.method, r.path)
				}
			}
		}
	})
	t.Run("configured", func(t *testing.T) {
		p, _, _ := aliceAndBob(t, func(c *server.Config) { c.Gateway.CORSOrigins = []string{app, "http://localhost:5173"} })
		for _, r := range requests {
			resp := call(t, p.HTTPBase(), r.method, r.path, app, preflight)
			if v := resp.Header.Get("Access-Control-Allow-Origin"); v != app {
				t.Errorf("%s %s from %s: Access-Control-Allow-Origin %q", r.method, r.path, app, v)
			}
			if resp.Header.Get("Vary") != "Origin" {
				t.Errorf("%s %s: Vary %q, want Origin", r.method, r.path, resp.Header.Get("Vary"))
			}
			if resp.Header.Get("Access-Control-Expose-Headers") == "" {
				t.Errorf("%s %s: no Access-Control-Expose-Headers", r.method, r.path)
			}
			resp = call(t, p.HTTPBase(), r.method, r.path, "https://evil.example", preflight)
			if v := resp.Header.Get("Access-Control-Allow-Origin"); v != "" || resp.Header.Get("Vary") != "Origin" {
				t.Errorf("%s %s from another origin: Access-Control-Allow-Origin %q, Vary %q", r.method, r.path, v, resp.Header.Get("Vary"))
			}
		}
		resp := call(t, p.HTTPBase(), http.MethodOptions, "/v1/files/x", app, preflight)
		if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Access-Control-Allow-Methods") == "" ||
			!bytes.Contains(bytes.ToLower([]byte(resp.Header.Get("Access-Control-Allow-Headers"))), []byte("upload-offset")) {
			t.Errorf("preflight: %s, methods %q, headers %q", resp.Status, resp.Header.Get("Access-Control-Allow-Methods"), resp.Header.Get("Access-Control-Allow-Headers"))
		}
		if resp := call(t, p.HTTPBase(), http.MethodOptions, "/v1/files/x", "https://evil.example", preflight); resp.Header.Get("Access-Control-Allow-Methods") != "" {
			t.Errorf("preflight from another origin allowed methods %q", resp.Header.Get("Access-Control-Allow-Methods"))
		}
	})
}

// TestDownloadRanges: the download answers of §18.4 as a client written
// from the text sees them: one range is 206 with Content-Range, none or
// several are the whole file (200), a range past the end or malformed is
// 416 with the size in Content-Range; every success carries the file's
// SHA-256 (ETag, X-Parley-Sha256), Accept-Ranges and no caching.
func TestDownloadRanges(t *testing.T) {
	p, alice, bob := aliceAndBob(t, nil)
	ctx := ctxT(t)
	data := []byte("0123456789")
	sum := sha256.Sum256(data)
	hexSum := hex.EncodeToString(sum[:])
	offer, err := alice.OfferFile(ctx, parley.OfferRequest{To: "bob", Name: "digits.txt", ContentType: "text/plain",
		Size: uint64(len(data)), SHA256: hexSum})
	if err != nil {
		t.Fatal(err)
	}
	if err := alice.Upload(ctx, offer, bytes.NewReader(data), parley.UploadOptions{}); err != nil {
		t.Fatal(err)
	}
	d, err := bob.DownloadURL(ctx, offer.File.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		rng          string
		status       int
		contentRange string
		body         string
	}{
		{"", http.StatusOK, "", "0123456789"},
		{"bytes=2-5", http.StatusPartialContent, "bytes 2-5/10", "2345"},
		{"bytes=7-", http.StatusPartialContent, "bytes 7-9/10", "789"},
		{"bytes=-3", http.StatusPartialContent, "bytes 7-9/10", "789"},
		{"bytes=8-100", http.StatusPartialContent, "bytes 8-9/10", "89"},
		{"bytes=0-1,4-5", http.StatusOK, "", "0123456789"},
		{"bytes=10-", http.StatusRequestedRangeNotSatisfiable, "bytes */10", ""},
		{"bytes=x-y", http.StatusRequestedRangeNotSatisfiable, "bytes */10", ""},
	} {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, p.HTTPBase()+d.Path, nil)
		if tc.rng != "" {
			req.Header.Set("Range", tc.rng)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		h := resp.Header
		if resp.StatusCode != tc.status || h.Get("Content-Range") != tc.contentRange {
			t.Errorf("Range %q: %s, Content-Range %q; want %d, %q", tc.rng, resp.Status, h.Get("Content-Range"), tc.status, tc.contentRange)
			continue
		}
		if resp.StatusCode >= 300 {
			continue
		}
		switch {
		case string(body) != tc.body:
			t.Errorf("Range %q: body %q, want %q", tc.rng, body, tc.body)
		case h.Get("ETag") != `"`+hexSum+`"`, h.Get("X-Parley-Sha256") != hexSum:
			t.Errorf("Range %q: ETag %q, X-Parley-Sha256 %q", tc.rng, h.Get("ETag"), h.Get("X-Parley-Sha256"))
		case h.Get("Accept-Ranges") != "bytes", h.Get("Cache-Control") != "private, no-store":
			t.Errorf("Range %q: Accept-Ranges %q, Cache-Control %q", tc.rng, h.Get("Accept-Ranges"), h.Get("Cache-Control"))
		}
	}
}
