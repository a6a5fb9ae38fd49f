package sdktest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/parleychat/parley/clients/internal/parleytest"
	"github.com/parleychat/parley/clients/parley"
	"github.com/parleychat/parley/libs/testenv"
	"github.com/parleychat/parley/standalone/server"
)

// The gateway's HTTP edge (docs/protocol.md §18.3) against requests
// hidden in bodies: whatever a handler answers before reading a body, the
// rest of that body is never parsed as requests on the connection.

// rawExchange writes raw to the gateway on a fresh connection (in the
// background, then half-closes: the server may answer and close before
// reading everything) and reads every response until the server closes,
// parsing the i-th as the answer to methods[i] (HEAD has no body; OPTIONS
// beyond the list). Interim 100 Continue answers are skipped.
func rawExchange(t testing.TB, addr string, raw []byte, methods ...string) []*http.Response {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second)) // a bound on a hung server, not an expectation
	go func() {
		if _, err := c.Write(raw); err == nil {
			_ = c.(*net.TCPConn).CloseWrite()
		}
	}()
	br := bufio.NewReader(c)
	var got []*http.Response
	for {
		method := http.MethodOptions
		if len(got) < len(methods) {
			method = methods[len(got)]
		}
		resp, err := http.ReadResponse(br, &http.Request{Method: method})
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("the gateway neither answered nor closed the connection (after %d responses)", len(got))
			}
			return got // closed (EOF, or a reset after the answers)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusContinue {
			got = append(got, resp)
		}
	}
}

func hostPort(base string) string { return strings.TrimPrefix(base, "http://") }

// TestSmuggledRequestsNotServed is issue 9's report: one PATCH with no
// token whose 39 KB body is a thousand OPTIONS requests, on one
// connection, is answered once (401) and nothing else.
func TestSmuggledRequestsNotServed(t *testing.T) {
	p := parleytest.Start(t, nil)
	body := strings.Repeat("OPTIONS /v1/files HTTP/1.1\r\nHost: x\r\n\r\n", 1000)
	raw := fmt.Sprintf("PATCH /v1/files/nope HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\n"+
		"Content-Type: application/offset+octet-stream\r\nUpload-Offset: 0\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	got := rawExchange(t, hostPort(p.HTTPBase()), []byte(raw), http.MethodPatch)
	if len(got) != 1 || got[0].StatusCode != http.StatusUnauthorized {
		t.Fatalf("%d responses %v; want one 401", len(got), statusList(got))
	}
}

func statusList(rs []*http.Response) []int {
	var s []int
	for _, r := range rs {
		s = append(s, r.StatusCode)
	}
	return s
}

// TestEarlyAnswersDoNotSmuggle: every answer the file endpoints give
// before (or without) reading a body — 401, 403, 404, 409, 412, 415, 413,
// 400, 503, 460, 201 — comes once, for bodies of fixed length and
// chunked, small enough to skip and too large to; the requests hidden in
// the body are never answered, and a request pipelined after the body gets
// its own answer, or the connection closes after the first.
func TestEarlyAnswersDoNotSmuggle(t *testing.T) {
	p, alice, bob := aliceAndBob(t, func(c *server.Config) {
		c.Gateway.MaxUploadsPerUser = 1 // a second PATCH of alice's at once is refused (503)
		c.Gateway.UploadMinRate = 0     // the upload holding alice's slot stalls on purpose
	})
	ctx := ctxT(t)
	addr := hostPort(p.HTTPBase())
	data, sum := randomData(t, 1<<20)
	offer := func() string {
		o, err := alice.OfferFile(ctx, parley.OfferRequest{To: "bob", Name: "x.bin", Size: uint64(len(data)), SHA256: sum})
		if err != nil {
			t.Fatal(err)
		}
		return o.UploadPath
	}
	up, small := offer(), ""
	{
		o, err := alice.OfferFile(ctx, parley.OfferRequest{To: "bob", Name: "small.bin", Size: 1000, SHA256: sum})
		if err != nil {
			t.Fatal(err)
		}
		small = o.UploadPath
	}
	at, bt := alice.Session().Token, bob.Session().Token

	// The legitimate requests after the body: alice asks for her upload's
	// offset, the second time closing the connection.
	legit := "HEAD " + up + " HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\nAuthorization: Bearer " + at + "\r\n\r\n"
	legitLast := "HEAD " + up + " HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\nAuthorization: Bearer " + at + "\r\nConnection: close\r\n\r\n"
	// What hides in the bodies: OPTIONS, answered 204 with Tus-Version.
	hidden := "OPTIONS /v1/files HTTP/1.1\r\nHost: x\r\n\r\n"
	patch := func(path, token string, extra ...string) string {
		h := "PATCH " + path + " HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\nContent-Type: application/offset+octet-stream\r\nUpload-Offset: 0\r\n"
		if token != "" {
			h += "Authorization: Bearer " + token + "\r\n"
		}
		return h + strings.Join(extra, "")
	}
	wrongSum := sha256.Sum256([]byte("not the body"))
	cases := []struct {
		name   string
		head   string // request line and headers, without framing
		status int
		hold   bool // alice holds her one upload slot meanwhile
	}{
		{"401 no token", patch(up, ""), 401, false},
		{"403 not the sender", patch(up, bt), 403, false},
		{"404 unknown upload", patch("/v1/files/f0123456789abcdef01234567", at), 404, false},
		{"409 stale offset", strings.Replace(patch(up, at), "Upload-Offset: 0", "Upload-Offset: 7", 1), 409, false},
		{"412 no Tus-Resumable", strings.Replace(patch(up, at), "Tus-Resumable: 1.0.0\r\n", "", 1), 412, false},
		{"415 wrong Content-Type", strings.Replace(patch(up, at), "application/offset+octet-stream", "text/plain", 1), 415, false},
		{"413 past Upload-Length", patch(small, at), 413, false},
		{"400 bad Upload-Offset", strings.Replace(patch(up, at), "Upload-Offset: 0", "Upload-Offset: x", 1), 400, false},
		{"503 no upload slot", patch(up, at), 503, true},
		{"460 checksum mismatch", patch(up, at, "Upload-Checksum: sha256 "+base64.StdEncoding.EncodeToString(wrongSum[:])+"\r\n"), 460, false},
		{"201 creation with a body", "POST /v1/files HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\nAuthorization: Bearer " + at +
			"\r\nUpload-Length: 10\r\nUpload-Metadata: to " + base64.StdEncoding.EncodeToString([]byte("bob")) +
			",sha256 " + base64.StdEncoding.EncodeToString([]byte(sum)) + "\r\n", 201, false},
		{"401 download with a body", "GET " + up + "/content HTTP/1.1\r\nHost: x\r\n", 401, false},
		{"404 no such route", "PUT /v1/nothing HTTP/1.1\r\nHost: x\r\n", 404, false},
		{"404 multipart form", "POST /v1/nothing HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n", 404, false},
	}
	for _, tc := range cases {
		for _, size := range []int{40_000, 1 << 20} {
			for _, chunked := range []bool{false, true} {
				if tc.name == "460 checksum mismatch" && size > len(data) {
					continue
				}
				t.Run(fmt.Sprintf("%s/%d/chunked=%v", tc.name, size, chunked), func(t *testing.T) {
					if tc.hold {
						release := holdSlot(t, p, at, offer())
						defer release()
					}
					framing, body := smuggleBody(hidden, size, chunked)
					method := strings.Fields(tc.head)[0]
					raw := append([]byte(tc.head+framing+"\r\n"), body...)
					raw = append(raw, legit+legitLast...)
					got := rawExchange(t, addr, raw, method, http.MethodHead, http.MethodHead)
					if len(got) == 0 || got[0].StatusCode != tc.status {
						t.Fatalf("responses %v; want %d first", statusList(got), tc.status)
					}
					for i, r := range got[1:] {
						if r.StatusCode != http.StatusOK || r.Header.Get("Upload-Offset") == "" {
							t.Fatalf("response %d is %s (Tus-Version %q), not the pipelined HEAD's: a request in the body was served",
								i+2, r.Status, r.Header.Get("Tus-Version"))
						}
					}
					if n := len(got); n != 1 && n != 3 {
						t.Fatalf("%d responses %v; want the answer alone or with the two HEADs'", n, statusList(got))
					}
					if len(got) == 1 && !got[0].Close {
						t.Fatalf("the answer came alone but without Connection: close")
					}
					if size <= 256<<10 && len(got) != 3 && tc.status != 503 {
						t.Fatalf("a %d-byte body was not skipped: the pipelined requests went unanswered", size)
					}
				})
			}
		}
	}
	// Nothing hidden reached alice's upload.
	if off := headOffset(t, p.HTTPBase()+up, at); off != 0 {
		t.Fatalf("upload offset %d after refused requests", off)
	}
}

// smuggleBody is size bytes of the request req repeated, as a body with
// Content-Length or in chunks of 4 KiB; it returns the framing header.
func smuggleBody(req string, size int, chunked bool) (string, []byte) {
	raw := []byte(strings.Repeat(req, size/len(req)+1)[:size])
	if !chunked {
		return "Content-Length: " + strconv.Itoa(size) + "\r\n", raw
	}
	var b bytes.Buffer
	for len(raw) > 0 {
		k := min(4096, len(raw))
		fmt.Fprintf(&b, "%x\r\n%s\r\n", k, raw[:k])
		raw = raw[k:]
	}
	b.WriteString("0\r\n\r\n")
	return "Transfer-Encoding: chunked\r\n", b.Bytes()
}

// holdSlot starts a PATCH of alice's upload at path that sends 16 KiB of
// its 1 MiB and stalls, holding one of her upload slots, until release.
func holdSlot(t *testing.T, p *parleytest.Parley, token, path string) (release func()) {
	t.Helper()
	c, err := net.Dial("tcp", hostPort(p.HTTPBase()))
	if err != nil {
		t.Fatal(err)
	}
	head := "PATCH " + path + " HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\nContent-Type: application/offset+octet-stream\r\n" +
		"Authorization: Bearer " + token + "\r\nUpload-Offset: " + strconv.FormatUint(headOffset(t, p.HTTPBase()+path, token), 10) +
		"\r\nContent-Length: " + strconv.Itoa(1<<20) + "\r\n\r\n"
	if _, err := c.Write(append([]byte(head), make([]byte, 16<<10)...)); err != nil {
		t.Fatal(err)
	}
	// An empty PATCH of no upload is refused (503) while alice's slot is
	// taken, else answered 404.
	slotTaken := func() bool {
		got := rawExchange(t, hostPort(p.HTTPBase()), []byte("PATCH /v1/files/none HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\n"+
			"Content-Type: application/offset+octet-stream\r\nAuthorization: Bearer "+token+"\r\nUpload-Offset: 0\r\n"+
			"Content-Length: 0\r\nConnection: close\r\n\r\n"), http.MethodPatch)
		return len(got) == 1 && got[0].StatusCode == http.StatusServiceUnavailable
	}
	testenv.Eventually(t, wait, "the stalled upload to hold alice's slot", slotTaken)
	return func() {
		c.Close()
		testenv.Eventually(t, wait, "the stalled upload to end and free alice's slot", func() bool { return !slotTaken() })
	}
}

// TestStaleOffsetKeepsPooledConnectionClean: a Go HTTP client whose PATCH
// with a stale Upload-Offset is refused (409) before its 1 MiB body was
// read gets, for its next request on the same pooled connection, that
// request's own answer (the body once yielded a 400 for the next request).
func TestStaleOffsetKeepsPooledConnectionClean(t *testing.T) {
	p, alice, _ := aliceAndBob(t, nil)
	ctx := ctxT(t)
	data, sum := randomData(t, 2<<20)
	o, err := alice.OfferFile(ctx, parley.OfferRequest{To: "bob", Name: "x.bin", Size: uint64(len(data)), SHA256: sum})
	if err != nil {
		t.Fatal(err)
	}
	url, tok := p.HTTPBase()+o.UploadPath, alice.Session().Token
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	defer hc.CloseIdleConnections()
	body := bytes.Repeat([]byte("HEAD /v1/files HTTP/1.1\r\nHost: x\r\n\r\n"), (1<<20)/36)
	for i := range 5 {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPatch, url, bytes.NewReader(body))
		req.Header.Set("Tus-Resumable", "1.0.0")
		req.Header.Set("Content-Type", "application/offset+octet-stream")
		req.Header.Set("Upload-Offset", "12345")
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("PATCH %d: %v", i, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusConflict {
			t.Fatalf("PATCH %d with a stale offset: %s, want 409", i, resp.Status)
		}
		req, _ = http.NewRequestWithContext(ctx, http.MethodHead, url, nil)
		req.Header.Set("Tus-Resumable", "1.0.0")
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err = hc.Do(req)
		if err != nil {
			t.Fatalf("HEAD %d: %v", i, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Upload-Offset") != "0" {
			t.Fatalf("HEAD %d after the refused PATCH: %s, Upload-Offset %q; want its own 200 with 0", i, resp.Status, resp.Header.Get("Upload-Offset"))
		}
	}
}

// fuzzMethods are the methods FuzzHTTPEdge sends (an index picks one, so
// the reader knows which answers have no body).
var fuzzMethods = []string{"PATCH", "POST", "HEAD", "GET", "DELETE", "OPTIONS", "PUT"}

// FuzzHTTPEdge sends a real Parley's HTTP port 1-3 pipelined copies of a
// request whose path, headers and body are fuzzed ("$UPLOAD" and "$TOKEN"
// stand for a real upload of a real user's and that user's session
// token), framed by Content-Length or in chunks, then half-closes. Whatever
// the bytes, the gateway must not crash and must never answer more
// requests than were sent: nothing in a header or a body is served as a
// request of its own. Seeds: the smuggling report, each endpoint.
func FuzzHTTPEdge(f *testing.F) {
	p := parleytest.Start(f, func(c *server.Config) { c.File.Live = false }) // no download waits for an upload
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	alice, err := parley.Dial(ctx, p.TCPAddr(), parley.WithHTTPBase(p.HTTPBase()))
	if err != nil {
		f.Fatal(err)
	}
	defer alice.Close()
	bob, err := parley.Dial(ctx, p.TCPAddr())
	if err != nil {
		f.Fatal(err)
	}
	defer bob.Close()
	for c, name := range map[*parley.Client]string{alice: "alice", bob: "bob"} {
		if _, err := c.Register(ctx, name, password); err != nil {
			f.Fatal(err)
		}
	}
	sum := sha256.Sum256(make([]byte, 1<<20))
	offer, err := alice.OfferFile(ctx, parley.OfferRequest{To: "bob", Name: "fuzz.bin", Size: 1 << 20, SHA256: hex.EncodeToString(sum[:])})
	if err != nil {
		f.Fatal(err)
	}
	upload, token, addr := offer.UploadPath, alice.Session().Token, hostPort(p.HTTPBase())

	tus := "Tus-Resumable: 1.0.0\nAuthorization: Bearer $TOKEN\n"
	f.Add(uint8(0), "/v1/files/nope", "Tus-Resumable: 1.0.0\nContent-Type: application/offset+octet-stream\nUpload-Offset: 0",
		[]byte(strings.Repeat("OPTIONS /v1/files HTTP/1.1\r\nHost: x\r\n\r\n", 1000)), false, uint8(0))
	f.Add(uint8(0), "$UPLOAD", tus+"Content-Type: application/offset+octet-stream\nUpload-Offset: 0", []byte("some bytes"), false, uint8(2))
	f.Add(uint8(0), "$UPLOAD", tus+"Content-Type: application/offset+octet-stream\nUpload-Offset: 9", []byte("GET / HTTP/1.1\r\n\r\n"), true, uint8(1))
	f.Add(uint8(1), "/v1/files", tus+"Upload-Length: 5\nUpload-Metadata: to Ym9i,sha256 eA==", []byte("x"), false, uint8(1))
	f.Add(uint8(2), "$UPLOAD", tus, []byte{}, false, uint8(2))
	f.Add(uint8(3), "$UPLOAD/content", "Authorization: Bearer $TOKEN\nRange: bytes=0-", []byte("HEAD / HTTP/1.1\r\n\r\n"), true, uint8(0))
	f.Add(uint8(4), "/v1/files/nope", tus+"Content-Length: 3", []byte("abc"), true, uint8(0))
	f.Add(uint8(5), "/v1/files", "Expect: 100-continue", []byte("0\r\n\r\nGET / HTTP/1.1\r\n\r\n"), true, uint8(2))
	f.Add(uint8(6), "/v1/ws", "Connection: Upgrade\nUpgrade: websocket", []byte("x"), false, uint8(0))
	f.Add(uint8(0), "/v1/files/nope", "Transfer-Encoding: chunked", []byte("5\r\nhello\r\n0\r\n\r\nOPTIONS / HTTP/1.1\r\n\r\n"), false, uint8(0))

	f.Fuzz(func(t *testing.T, m uint8, path, headers string, body []byte, chunked bool, copies uint8) {
		method := fuzzMethods[int(m)%len(fuzzMethods)]
		path = strings.ReplaceAll(path, "$UPLOAD", upload)
		var head strings.Builder
		head.WriteString(method + " " + path + " HTTP/1.1\r\nHost: x\r\n")
		for line := range strings.SplitSeq(strings.ReplaceAll(headers, "$TOKEN", token), "\n") {
			// No empty line: the header block ends where the framing says.
			if line = strings.TrimRight(line, "\r"); line != "" {
				head.WriteString(line + "\r\n")
			}
		}
		framing, framed := "Content-Length: "+strconv.Itoa(len(body))+"\r\n", body
		if chunked {
			var b bytes.Buffer
			if len(body) > 0 {
				fmt.Fprintf(&b, "%x\r\n%s\r\n", len(body), body)
			}
			b.WriteString("0\r\n\r\n")
			framing, framed = "Transfer-Encoding: chunked\r\n", b.Bytes()
		}
		req := append([]byte(head.String()+framing+"\r\n"), framed...)
		n := 1 + int(copies%3)
		methods := make([]string, n)
		var raw []byte
		for i := range n {
			raw, methods[i] = append(raw, req...), method
		}
		if got := rawExchange(t, addr, raw, methods...); len(got) > n {
			t.Fatalf("%d requests sent, %d answered: %v", n, len(got), statusList(got))
		}
	})
}
