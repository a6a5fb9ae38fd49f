package files_test

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/parleychat/parley/gateway/internal/files"
	"github.com/parleychat/parley/libs/objstore"
	"github.com/parleychat/parley/libs/subject"
	"github.com/parleychat/parley/libs/testenv"
	"github.com/parleychat/parley/protocol/errcode"
	"github.com/parleychat/parley/protocol/fileurl"
	"github.com/parleychat/parley/protocol/parleyv1"
)

// TestNewRefusesBadOptions: a handler that could not serve is not made.
func TestNewRefusesBadOptions(t *testing.T) {
	nc := testenv.Connect(t, testenv.NATS(t))
	store, err := objstore.NewDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	good := files.Options{NC: nc, Storage: store, RequestTimeout: time.Second, IdleTimeout: time.Second}
	if _, err := files.New(good); err != nil {
		t.Fatalf("good options: %v", err)
	}
	for name, edit := range map[string]func(*files.Options){
		"no NATS":                   func(o *files.Options) { o.NC = nil },
		"no storage":                func(o *files.Options) { o.Storage = nil },
		"no request timeout":        func(o *files.Options) { o.RequestTimeout = 0 },
		"no idle timeout":           func(o *files.Options) { o.IdleTimeout = -time.Second },
		"a minimum rate, no window": func(o *files.Options) { o.MinRate = 1024 },
		"a negative minimum rate":   func(o *files.Options) { o.MinRate = -1 },
	} {
		o := good
		edit(&o)
		if _, err := files.New(o); err == nil {
			t.Errorf("%s: New accepted it", name)
		}
	}
}

// TestDiscovery: OPTIONS tells a tus client what the server speaks (tus
// 1.0.0 core "OPTIONS"; docs/protocol.md §18.3), without a session, and a
// browser on a configured origin its CORS permissions; other origins get
// none.
func TestDiscovery(t *testing.T) {
	g := startFiles(t, func(o *files.Options) { o.MaxSize = 12345; o.CORSOrigins = []string{"https://chat.example.com"} })
	a := g.do(req{"OPTIONS", fileurl.Prefix, nil, nil})
	if a.status != http.StatusNoContent {
		t.Fatalf("OPTIONS: %d", a.status)
	}
	for k, want := range map[string]string{
		"Tus-Resumable": "1.0.0", "Tus-Version": "1.0.0", "Tus-Extension": "creation,termination,checksum,expiration",
		"Tus-Max-Size": "12345", "Tus-Checksum-Algorithm": "md5,sha1,sha256", "X-Content-Type-Options": "nosniff",
		"Vary": "Origin", "Access-Control-Allow-Origin": "",
	} {
		if got := a.header.Get(k); got != want {
			t.Errorf("OPTIONS: %s = %q, want %q", k, got, want)
		}
	}
	a = g.do(req{"OPTIONS", fileurl.Prefix + "/f1", map[string]string{"Origin": "https://chat.example.com"}, nil})
	if a.header.Get("Access-Control-Allow-Origin") != "https://chat.example.com" ||
		!strings.Contains(a.header.Get("Access-Control-Allow-Methods"), "PATCH") ||
		!strings.Contains(a.header.Get("Access-Control-Allow-Headers"), "Upload-Checksum") ||
		!strings.Contains(a.header.Get("Access-Control-Expose-Headers"), "Upload-Offset") {
		t.Errorf("preflight from the configured origin: %v", a.header)
	}
	a = g.do(req{"OPTIONS", fileurl.Prefix, map[string]string{"Origin": "https://evil.example"}, nil})
	if a.header.Get("Access-Control-Allow-Origin") != "" || a.header.Get("Access-Control-Allow-Methods") != "" {
		t.Errorf("preflight from another origin: %v", a.header)
	}
}

// TestCreation: tus creation makes a file offer from Upload-Length and
// Upload-Metadata, naming the user the session belongs to, and answers 201
// with the upload's Location.
func TestCreation(t *testing.T) {
	g := startFiles(t, nil)
	sum := strings.Repeat("AB", 32)
	a := g.do(req{"POST", fileurl.Prefix, tus("alice", "Upload-Length", "1234",
		"Upload-Metadata", metadata("filename", "报告.pdf", "filetype", "application/pdf", "to", "bob", "sha256", sum)+",is_confidential"), nil})
	if a.status != http.StatusCreated {
		t.Fatalf("POST: %d %s", a.status, a.body)
	}
	id := a.header.Get("X-Parley-File-Id")
	if a.header.Get("Location") != fileurl.Prefix+"/"+id || id == "" {
		t.Errorf("Location %q, X-Parley-File-Id %q", a.header.Get("Location"), id)
	}
	if exp, err := http.ParseTime(a.header.Get("Upload-Expires")); err != nil || !exp.After(time.Now()) {
		t.Errorf("Upload-Expires %q: %v", a.header.Get("Upload-Expires"), err)
	}
	calls := g.fs.offerCalls()
	if len(calls) != 1 {
		t.Fatalf("%d offers reached the file service", len(calls))
	}
	o, h := calls[0].req, calls[0].header
	if o.GetName() != "报告.pdf" || o.GetContentType() != "application/pdf" || o.GetToUsername() != "bob" ||
		o.GetSize() != 1234 || o.GetSha256() != strings.ToLower(sum) || o.GetConversation() != "" {
		t.Errorf("the offer as the file service got it: %v", o)
	}
	if h.Get(subject.HeaderUserID) != "u-alice" || h.Get(subject.HeaderUsername) != "alice" ||
		h.Get(subject.HeaderSessionID) != "s-alice" || h.Get(subject.HeaderGatewayID) != "gw-test" || h.Get(subject.HeaderRemoteAddr) == "" {
		t.Errorf("identity headers: %v", h)
	}

	// To a group: the conversation key.
	a = g.do(req{"POST", fileurl.Prefix + "/", tus("alice", "Upload-Length", "1", "Upload-Metadata", metadata("conversation", "group.g1")), nil})
	if a.status != http.StatusCreated || g.fs.offerCalls()[1].req.GetConversation() != "group.g1" {
		t.Errorf("offer to a group: %d %s", a.status, a.body)
	}
}

// TestEarlyAnswers: requests the handler refuses by their headers are
// answered before anything else is asked (nothing reaches the file
// service); those it cannot answer alone are refused by auth or the file
// service with the status the protocol gives (docs/protocol.md §18.3).
func TestEarlyAnswers(t *testing.T) {
	g := startFiles(t, func(o *files.Options) { o.MaxSize = 1000 })
	path := g.offer([]byte("0123456789"))
	offers := len(g.fs.offerCalls())
	octet := "application/offset+octet-stream"
	for _, tc := range []struct {
		rule   string
		method string
		path   string
		header map[string]string
		status int
	}{
		{"tus core: Tus-Resumable is required (creation)", "POST", fileurl.Prefix, map[string]string{"Authorization": "Bearer tok-alice", "Upload-Length": "1"}, 412},
		{"tus core: a version the server does not speak", "POST", fileurl.Prefix, tus("alice", "Tus-Resumable", "0.2.2", "Upload-Length", "1"), 412},
		{"tus core: Tus-Resumable is required (HEAD)", "HEAD", path, map[string]string{"Authorization": "Bearer tok-alice"}, 412},
		{"tus core: Tus-Resumable is required (PATCH)", "PATCH", path, map[string]string{"Authorization": "Bearer tok-alice", "Content-Type": octet, "Upload-Offset": "0"}, 412},
		{"tus core: Tus-Resumable is required (DELETE)", "DELETE", path, map[string]string{"Authorization": "Bearer tok-alice"}, 412},
		{"§18.3: no session token", "POST", fileurl.Prefix, map[string]string{"Tus-Resumable": "1.0.0", "Upload-Length": "1"}, 401},
		{"§18.3: the token goes as Bearer", "POST", fileurl.Prefix, tus("alice", "Authorization", "Basic YWxpY2U6eA==", "Upload-Length", "1"), 401},
		{"§18.3: an empty Bearer token", "HEAD", path, tus("alice", "Authorization", "Bearer "), 401},
		{"§18.3: an invalid session token (auth)", "POST", fileurl.Prefix, tus("alice", "Authorization", "Bearer nonsense", "Upload-Length", "1"), 401},
		{"§18.3: an expired session token (auth)", "DELETE", path, tus("expired"), 401},
		{"§18.3: Upload-Defer-Length is refused", "POST", fileurl.Prefix, tus("alice", "Upload-Defer-Length", "1"), 400},
		{"tus creation: Upload-Length is a non-negative integer", "POST", fileurl.Prefix, tus("alice", "Upload-Length", "-1"), 400},
		{"tus creation: Upload-Length is required", "POST", fileurl.Prefix, tus("alice"), 400},
		{"tus creation: beyond Tus-Max-Size is 413", "POST", fileurl.Prefix, tus("alice", "Upload-Length", "1001"), 413},
		{"tus creation: Upload-Metadata values are Base64", "POST", fileurl.Prefix, tus("alice", "Upload-Length", "1", "Upload-Metadata", "filename x"), 400},
		{"tus core: PATCH needs Content-Type application/offset+octet-stream", "PATCH", path, tus("alice", "Upload-Offset", "0", "Content-Type", "application/octet-stream"), 415},
		{"tus core: Upload-Offset is a non-negative integer", "PATCH", path, tus("alice", "Content-Type", octet, "Upload-Offset", "-1"), 400},
		{"tus checksum: an unsupported algorithm is 400", "PATCH", path, tus("alice", "Content-Type", octet, "Upload-Offset", "0", "Upload-Checksum", "crc32 AAAAAA=="), 400},
	} {
		if a := g.do(req{tc.method, tc.path, tc.header, nil}); a.status != tc.status || a.header.Get("Tus-Resumable") != "1.0.0" {
			t.Errorf("%s: %s %s answered %d (Tus-Resumable %q) %s, want %d", tc.rule, tc.method, tc.path, a.status, a.header.Get("Tus-Resumable"), a.body, tc.status)
		}
	}
	if n := len(g.fs.offerCalls()); n != offers {
		t.Errorf("%d refused creations reached the file service", n-offers)
	}
	if n := g.fs.callCount(subject.FileUploadBegin); n != 0 {
		t.Errorf("%d refused PATCHes reached the file service", n)
	}
}

// TestServiceErrorsMapped: errors from the file service (or auth) reach
// the client as the HTTP status docs/protocol.md §18.3 gives, with the
// error's short name and message as the one-line body.
func TestServiceErrorsMapped(t *testing.T) {
	g := startFiles(t, nil)
	path := g.offer([]byte("0123456789"))
	e := func(c parleyv1.ErrorCode) error { return errcode.New(c, "what happened") }
	for _, tc := range []struct {
		err        error
		status     int
		retryAfter string
	}{
		{e(parleyv1.ErrorCode_ERROR_CODE_UNAUTHENTICATED), 401, ""},
		{e(parleyv1.ErrorCode_ERROR_CODE_TOKEN_EXPIRED), 401, ""},
		{e(parleyv1.ErrorCode_ERROR_CODE_TOKEN_INVALID), 401, ""},
		{e(parleyv1.ErrorCode_ERROR_CODE_SESSION_REVOKED), 401, ""},
		{e(parleyv1.ErrorCode_ERROR_CODE_PERMISSION_DENIED), 403, ""},
		{e(parleyv1.ErrorCode_ERROR_CODE_BLOCKED), 403, ""},
		{e(parleyv1.ErrorCode_ERROR_CODE_NOT_FOUND), 404, ""},
		{e(parleyv1.ErrorCode_ERROR_CODE_FILE_TOO_LARGE), 413, ""},
		{e(parleyv1.ErrorCode_ERROR_CODE_QUOTA_EXCEEDED), 413, ""},
		{&errcode.Error{Code: parleyv1.ErrorCode_ERROR_CODE_RATE_LIMITED, Message: "what happened", RetryAfter: 1500}, 429, "2"},
		{&errcode.Error{Code: parleyv1.ErrorCode_ERROR_CODE_RATE_LIMITED, Message: "what happened"}, 429, "1"},
		{e(parleyv1.ErrorCode_ERROR_CODE_CHECKSUM_MISMATCH), 460, ""},
		{e(parleyv1.ErrorCode_ERROR_CODE_CONFLICT), 409, ""},
		{e(parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT), 400, ""},
		{e(parleyv1.ErrorCode_ERROR_CODE_INVALID_NAME), 400, ""},
		{e(parleyv1.ErrorCode_ERROR_CODE_UNAVAILABLE), 503, ""},
		{e(parleyv1.ErrorCode_ERROR_CODE_TIMEOUT), 503, ""},
		{e(parleyv1.ErrorCode_ERROR_CODE_INTERNAL), 500, ""},
		{errors.New("a plain error"), 500, ""},
	} {
		g.fs.failNext(subject.FileTerminate, tc.err)
		a := g.do(req{"DELETE", path, tus("alice"), nil})
		e := errcode.From(tc.err) // a plain error goes as INTERNAL, its text kept back
		want := errcode.ShortName(e.Code) + ": " + e.Message + "\n"
		if a.status != tc.status || a.header.Get("Retry-After") != tc.retryAfter || a.body != want ||
			!strings.HasPrefix(a.header.Get("Content-Type"), "text/plain") {
			t.Errorf("%v: %d Retry-After %q %q, want %d %q %q", tc.err, a.status, a.header.Get("Retry-After"), a.body, tc.status, tc.retryAfter, want)
		}
	}
	// No file service at all: 503, try again.
	g2 := startFiles(t, nil)
	path = g2.offer([]byte("x"))
	g2.nc.Close()
	if a := g2.do(req{"HEAD", path, tus("alice"), nil}); a.status != http.StatusServiceUnavailable {
		t.Errorf("no auth or file service: HEAD %d, want 503", a.status)
	}
}

// TestHeadAndTerminate: HEAD tells the sender where the upload stands;
// DELETE cancels it, after which it is gone. Only the sender may do
// either: the recipient is told it is not theirs, anyone else that there
// is no such upload (§18.3).
func TestHeadAndTerminate(t *testing.T) {
	g := startFiles(t, nil)
	path := g.offer(make([]byte, 100))
	g.patch(path, 0, make([]byte, 40))
	a := g.do(req{"HEAD", path, tus("alice"), nil})
	if a.status != http.StatusOK || a.header.Get("Upload-Offset") != "40" || a.header.Get("Upload-Length") != "100" ||
		a.header.Get("Cache-Control") != "no-store" || a.header.Get("Upload-Expires") == "" {
		t.Fatalf("HEAD: %d %v", a.status, a.header)
	}
	for name, status := range map[string]int{"bob": 403, "carol": 404} {
		if a := g.do(req{"HEAD", path, tus(name), nil}); a.status != status {
			t.Errorf("HEAD by %s: %d, want %d", name, a.status, status)
		}
		if a := g.do(req{"DELETE", path, tus(name), nil}); a.status != status {
			t.Errorf("DELETE by %s: %d, want %d", name, a.status, status)
		}
	}
	if a := g.do(req{"HEAD", fileurl.Prefix + "/nosuch", tus("alice"), nil}); a.status != http.StatusNotFound {
		t.Errorf("HEAD of no upload: %d", a.status)
	}
	if a := g.do(req{"DELETE", path, tus("alice"), nil}); a.status != http.StatusNoContent {
		t.Fatalf("DELETE: %d %s", a.status, a.body)
	}
	if a := g.do(req{"HEAD", path, tus("alice"), nil}); a.status != http.StatusNotFound {
		t.Errorf("HEAD after DELETE: %d, want 404", a.status)
	}
	if a := g.patch(path, 40, []byte("more")); a.status != http.StatusNotFound {
		t.Errorf("PATCH after DELETE: %d, want 404", a.status)
	}
	// A complete upload's HEAD has no Upload-Expires (it no longer expires
	// as an upload).
	data := []byte("complete")
	path = g.offer(data)
	g.upload(path, data)
	a = g.do(req{"HEAD", path, tus("alice"), nil})
	if a.status != http.StatusOK || a.header.Get("Upload-Offset") != strconv.Itoa(len(data)) || a.header.Get("Upload-Expires") != "" {
		t.Errorf("HEAD of a complete upload: %d %v", a.status, a.header)
	}
}
