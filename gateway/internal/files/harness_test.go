package files_test

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/nats-io/nats.go"

	"github.com/parleychat/parley/gateway/internal/files"
	"github.com/parleychat/parley/gateway/internal/reqbody"
	"github.com/parleychat/parley/libs/objstore"
	"github.com/parleychat/parley/libs/testenv"
	"github.com/parleychat/parley/protocol/fileurl"
)

// gw is the file handler served over a real socket the way the gateway
// serves it (gateway/server.newApp: streamed bodies, reqbody around every
// route), with stand-in auth and file services on a real nats-server and
// a real objstore.Dir.
type gw struct {
	t     testing.TB
	base  string // http://127.0.0.1:port
	h     *files.Handler
	fs    *standInFiles
	store *objstore.Dir
	nc    *nats.Conn // a test-side connection (the services')
	http  *http.Client
}

// testPartSize is the stand-in's part size: S3's smallest, so a few parts
// make a test file.
const testPartSize = objstore.MinPartSize

// startFiles starts the handler with the options mutate changes.
func startFiles(t testing.TB, mutate func(*files.Options)) *gw {
	t.Helper()
	ns := testenv.NATS(t)
	svcNC := testenv.Connect(t, ns)
	store, err := objstore.NewDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	startStandInAuth(t, svcNC)
	fs := startStandInFiles(t, svcNC, store, testPartSize)
	o := files.Options{NC: testenv.Connect(t, ns), Storage: store, Log: slog.New(slog.DiscardHandler), GatewayID: "gw-test",
		RequestTimeout: 3 * time.Second, IdleTimeout: 5 * time.Second, MaxSize: 1 << 30}
	if mutate != nil {
		mutate(&o)
	}
	h, err := files.New(o)
	if err != nil {
		t.Fatal(err)
	}
	// As gateway/server.newApp configures it, with the default timeouts.
	app := fiber.New(fiber.Config{DisableStartupMessage: true, StreamRequestBody: true, BodyLimit: 64 << 10,
		DisablePreParseMultipartForm: true, ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second, IdleTimeout: 90 * time.Second})
	app.Use(reqbody.Guard)
	h.Register(app)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() { defer close(served); _ = app.Listener(reqbody.Listener(ln)) }()
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{}}
	t.Cleanup(func() {
		client.CloseIdleConnections()
		_ = app.ShutdownWithTimeout(5 * time.Second)
		<-served
	})
	return &gw{t: t, base: "http://" + ln.Addr().String(), h: h, fs: fs, store: store, nc: svcNC, http: client}
}

// req is one HTTP request; a nil header map sends none of the defaults.
type req struct {
	method, path string
	header       map[string]string
	body         io.Reader
}

// tus returns the headers every tus request of user name carries.
func tus(name string, more ...string) map[string]string {
	h := map[string]string{"Tus-Resumable": "1.0.0", "Authorization": "Bearer tok-" + name}
	for i := 0; i+1 < len(more); i += 2 {
		h[more[i]] = more[i+1]
	}
	return h
}

// answer is a response read whole.
type answer struct {
	status int
	header http.Header
	body   string
}

func (g *gw) do(r req) answer {
	g.t.Helper()
	hr, err := http.NewRequest(r.method, g.base+r.path, r.body)
	if err != nil {
		g.t.Fatal(err)
	}
	for k, v := range r.header {
		hr.Header.Set(k, v)
	}
	if b, ok := r.body.(*bytes.Reader); ok {
		hr.ContentLength = int64(b.Len())
	}
	resp, err := g.http.Do(hr)
	if err != nil {
		g.t.Fatalf("%s %s: %v", r.method, r.path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		g.t.Fatalf("%s %s: reading the answer: %v", r.method, r.path, err)
	}
	return answer{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

// offer creates an upload of data for alice (tus creation) and returns its
// path.
func (g *gw) offer(data []byte) string {
	g.t.Helper()
	a := g.do(req{"POST", fileurl.Prefix, tus("alice", "Upload-Length", strconv.Itoa(len(data)),
		"Upload-Metadata", metadata("filename", "report.bin", "to", "bob", "sha256", sha256Hex(data))), nil})
	if a.status != http.StatusCreated {
		g.t.Fatalf("creation: %d %s", a.status, a.body)
	}
	return a.header.Get("Location")
}

// patch appends body at offset as alice.
//
// The body is written beside reading the answer, over a connection of its
// own, as a tus client that honours an early answer does: a gateway that
// refuses a PATCH before reading its body (storage gone, no upload slot)
// answers and closes, and an http.Client still writing the body would
// report the broken pipe rather than the answer.
func (g *gw) patch(path string, offset int, body []byte, more ...string) answer {
	g.t.Helper()
	c := g.rawPatch("alice", path, offset, len(body), nil, more...)
	go func() { _, _ = c.Write(body) }()
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		g.t.Fatalf("PATCH %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		g.t.Fatalf("PATCH %s: reading the answer: %v", path, err)
	}
	return answer{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

// offset is the upload's Upload-Offset (tus HEAD).
func (g *gw) offset(path string) int {
	g.t.Helper()
	a := g.do(req{"HEAD", path, tus("alice"), nil})
	if a.status != http.StatusOK {
		g.t.Fatalf("HEAD %s: %d", path, a.status)
	}
	n, err := strconv.Atoi(a.header.Get("Upload-Offset"))
	if err != nil {
		g.t.Fatalf("HEAD %s: Upload-Offset %q", path, a.header.Get("Upload-Offset"))
	}
	return n
}

// upload sends data whole to path in one PATCH.
func (g *gw) upload(path string, data []byte) {
	g.t.Helper()
	if a := g.patch(path, 0, data); a.status != http.StatusNoContent || a.header.Get("Upload-Offset") != strconv.Itoa(len(data)) {
		g.t.Fatalf("PATCH: %d %q %s", a.status, a.header.Get("Upload-Offset"), a.body)
	}
}

// metadata is an Upload-Metadata header of key, value pairs.
func metadata(kv ...string) string {
	var pairs []string
	for i := 0; i+1 < len(kv); i += 2 {
		pairs = append(pairs, kv[i]+" "+base64.StdEncoding.EncodeToString([]byte(kv[i+1])))
	}
	return strings.Join(pairs, ",")
}

func randomBytes(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// fileID is the id at the end of an upload path.
func fileID(path string) string { return path[strings.LastIndexByte(path, '/')+1:] }
