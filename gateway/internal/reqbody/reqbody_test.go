package reqbody_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/parleychat/parley/gateway/internal/reqbody"
)

// smuggled is a request hidden in a body: it must never be answered.
const smuggled = "OPTIONS /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"

// serve runs an app configured as the gateway's (streamed bodies, Guard
// before every route, the gentle-close listener) on a real socket:
//
//	PATCH /early  answers 401 without reading the body
//	PATCH /some   reads 100 bytes of it, answers 409
//	PATCH /all    reads it to its end, and then again, answers 204 with the
//	              byte count
//	OPTIONS /next answers 204 with X-Next (the legitimate pipelined request)
//	OPTIONS /smuggled answers 200 with X-Smuggled (it must never be reached)
func serve(t *testing.T) string {
	t.Helper()
	app := fiber.New(fiber.Config{DisableStartupMessage: true, StreamRequestBody: true, BodyLimit: 64 << 10,
		DisablePreParseMultipartForm: true, ReadTimeout: 10 * time.Second, IdleTimeout: 10 * time.Second})
	app.Use(reqbody.Guard)
	app.Patch("/early", func(c *fiber.Ctx) error { return c.SendStatus(http.StatusUnauthorized) })
	app.Patch("/some", func(c *fiber.Ctx) error {
		if _, err := io.ReadFull(reqbody.Of(c), make([]byte, 100)); err != nil {
			return err
		}
		return c.SendStatus(http.StatusConflict)
	})
	app.Patch("/all", func(c *fiber.Ctx) error {
		b := reqbody.Of(c)
		n, err := io.Copy(io.Discard, b)
		if err != nil {
			return err
		}
		// Reading on after the end must not touch the connection
		// (fasthttp's chunked reader would take the next request's
		// first line for a chunk size).
		for range 3 {
			if k, err := b.Read(make([]byte, 64)); k != 0 || err != io.EOF {
				return fmt.Errorf("read after the end: %d, %v", k, err)
			}
		}
		c.Set("X-Read", fmt.Sprint(n))
		return c.SendStatus(http.StatusNoContent)
	})
	app.Options("/next", func(c *fiber.Ctx) error { c.Set("X-Next", "1"); return c.SendStatus(http.StatusNoContent) })
	app.Options("/smuggled", func(c *fiber.Ctx) error { c.Set("X-Smuggled", "1"); return c.SendStatus(http.StatusOK) })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = app.Listener(reqbody.Listener(ln)) }()
	t.Cleanup(func() { _ = app.Shutdown(); <-done })
	return ln.Addr().String()
}

// body is n bytes of smuggled requests, framed by Content-Length or as
// chunks of 4 KiB.
func body(n int, chunked bool) (hdr string, framed []byte) {
	raw := []byte(strings.Repeat(smuggled, n/len(smuggled)+1)[:n])
	if !chunked {
		return fmt.Sprintf("Content-Length: %d\r\n", n), raw
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

// exchange writes raw on a fresh connection (in the background: the server
// may close before reading it all) and reads every response until the
// server closes, parsing each as the answer to the method in order.
func exchange(t *testing.T, addr string, raw []byte, methods ...string) []*http.Response {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second)) // a bound, not an expectation
	go func() { _, _ = c.Write(raw) }()
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
				t.Fatalf("the server neither answered nor closed (after %d responses)", len(got))
			}
			return got // closed (EOF, or reset after the answers)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusContinue {
			continue // interim (Expect: 100-continue), not an answer
		}
		got = append(got, resp)
	}
}

// TestGuard: whatever a handler read of a body (nothing, part, all), the
// requests inside it are never answered; the answer comes once, and a
// pipelined request after the body gets its own answer, or the connection
// closes after the first answer (a body too large or too slow to skip).
func TestGuard(t *testing.T) {
	addr := serve(t)
	next := "OPTIONS /next HTTP/1.1\r\nHost: x\r\n\r\n"
	last := "OPTIONS /next HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
	for _, tc := range []struct {
		path    string
		size    int
		chunked bool
		expect  bool // Expect: 100-continue
		status  int
		closes  bool // the rest of the body is too large to skip
	}{
		{"/early", 40_000, false, false, 401, false},
		{"/early", 40_000, true, false, 401, false},
		{"/early", 5_000, false, false, 401, false}, // read whole before the handler
		{"/early", 40_000, false, true, 401, false},
		{"/early", 1 << 20, false, false, 401, true},
		{"/early", 1 << 20, true, false, 401, true},
		{"/early", 100 << 10, false, false, 401, false}, // above BodyLimit, below DiscardLimit
		{"/some", 40_000, false, false, 409, false},
		{"/some", 40_000, true, false, 409, false},
		{"/some", 1 << 20, true, true, 409, true},
		{"/all", 40_000, false, false, 204, false},
		{"/all", 40_000, true, false, 204, false},
		{"/all", 1 << 20, true, false, 204, false},
	} {
		name := fmt.Sprintf("%s/%d/chunked=%v/expect=%v", tc.path, tc.size, tc.chunked, tc.expect)
		t.Run(name, func(t *testing.T) {
			framing, b := body(tc.size, tc.chunked)
			head := "PATCH " + tc.path + " HTTP/1.1\r\nHost: x\r\n" + framing
			if tc.expect {
				head += "Expect: 100-continue\r\n"
			}
			raw := append([]byte(head+"\r\n"), b...)
			raw = append(raw, next+last...)
			got := exchange(t, addr, raw, http.MethodPatch)
			if len(got) == 0 {
				t.Fatal("no answer")
			}
			if got[0].StatusCode != tc.status {
				t.Fatalf("answer %s, want %d", got[0].Status, tc.status)
			}
			for i, r := range got {
				if r.Header.Get("X-Smuggled") != "" {
					t.Fatalf("response %d answers a request smuggled in the body", i)
				}
			}
			switch {
			case tc.closes:
				if len(got) != 1 || !got[0].Close {
					t.Fatalf("%d responses (first with Connection: close %v); want the answer alone, closing", len(got), got[0].Close)
				}
			case len(got) != 3 || got[1].Header.Get("X-Next") == "" || got[2].Header.Get("X-Next") == "":
				t.Fatalf("%d responses, want the answer and the two pipelined requests' own: %v", len(got), statuses(got))
			}
			if tc.path == "/all" && got[0].Header.Get("X-Read") != fmt.Sprint(tc.size) {
				t.Fatalf("the handler read %s bytes of %d", got[0].Header.Get("X-Read"), tc.size)
			}
		})
	}
}

// TestGuardBrokenBody: a chunked body that breaks (a bad chunk size) ends
// the connection after the answer; what followed is not parsed.
func TestGuardBrokenBody(t *testing.T) {
	addr := serve(t)
	raw := "PATCH /all HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n0123456789abcdef\r\nzz\r\n" + smuggled + smuggled
	got := exchange(t, addr, []byte(raw), http.MethodPatch)
	if len(got) != 1 {
		t.Fatalf("%d responses %v, want 1", len(got), statuses(got))
	}
}

// TestGuardFramedTwice: a request with both Transfer-Encoding: chunked and
// Content-Length is answered (by its chunks) and the connection closed, so
// what an intermediary might have framed by the length is never parsed.
func TestGuardFramedTwice(t *testing.T) {
	addr := serve(t)
	for _, head := range []string{
		"PATCH /all HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
		"PATCH /all HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\ncontent-length: 3\r\n\r\n",
	} {
		raw := head + "5\r\nhello\r\n0\r\n\r\n" + "OPTIONS /next HTTP/1.1\r\nHost: x\r\n\r\n"
		got := exchange(t, addr, []byte(raw), http.MethodPatch)
		if len(got) != 1 || got[0].StatusCode != http.StatusNoContent || !got[0].Close {
			t.Fatalf("%q: %d responses %v; want one 204 closing the connection", head, len(got), statuses(got))
		}
	}
}

// TestGuardFoldedHeaders: a request with folded header lines (obs-fold) is
// refused and the connection closed. fasthttp unfolds them in its read
// buffer and skips the shorter length, so the last bytes read so far (here
// a request at the end of the body) were parsed again as a request.
func TestGuardFoldedHeaders(t *testing.T) {
	addr := serve(t)
	b := strings.Repeat("x", 100) + "\r\n" + smuggled
	raw := "PATCH /all HTTP/1.1\r\nHost: x\r\nX-A: a\r\n" + strings.Repeat("\t\r\n", (len(smuggled)+1)/2) +
		fmt.Sprintf("Content-Length: %d\r\n\r\n%s", len(b), b)
	got := exchange(t, addr, []byte(raw), http.MethodPatch)
	for i, r := range got {
		if r.Header.Get("X-Smuggled") != "" {
			t.Fatalf("response %d answers a request from the body", i)
		}
	}
	if len(got) != 1 || got[0].StatusCode != http.StatusBadRequest || !got[0].Close {
		t.Fatalf("%d responses %v; want one 400 closing the connection", len(got), statuses(got))
	}
}

func statuses(rs []*http.Response) []int {
	var s []int
	for _, r := range rs {
		s = append(s, r.StatusCode)
	}
	return s
}

// TestGuardClosesGently: a body too large to skip ends the connection
// after the answer, but gently: the server reads on and discards for a
// moment, so a client that writes its whole body before reading (as Go's
// HTTP client does) gets to write it and then reads the answer, instead
// of a reset that loses both.
func TestGuardClosesGently(t *testing.T) {
	addr := serve(t)
	for range 5 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(20 * time.Second)) // a bound, not an expectation
		framing, b := body(1<<20, false)
		// The head and a first piece, then a pause in which the server
		// answers and starts to close, then the rest.
		if _, err := c.Write(append([]byte("PATCH /early HTTP/1.1\r\nHost: x\r\n"+framing+"\r\n"), b[:64<<10]...)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
		if _, err := c.Write(b[64<<10:]); err != nil {
			t.Fatalf("writing the rest of the body: %v (the server reset the connection)", err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: http.MethodPatch})
		if err != nil {
			t.Fatalf("reading the answer: %v", err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized || !resp.Close {
			t.Fatalf("answer %s (Connection: close %v), want 401 closing", resp.Status, resp.Close)
		}
		c.Close()
	}
}
