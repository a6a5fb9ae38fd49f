package sdktest

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/parleychat/parley/clients/parley"
	"github.com/parleychat/parley/standalone/server"
)

// stalledPatch starts a PATCH of path at offset 0 that declares size bytes,
// sends the first sent of them and then nothing: a client trickling a body
// in (or gone without a FIN). Its answer, if one comes, arrives on the
// returned channel (nil when the connection closed without one).
func stalledPatch(t *testing.T, base, token, path string, size, sent int) <-chan *http.Response {
	t.Helper()
	c, err := net.Dial("tcp", hostPort(base))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	head := "PATCH " + path + " HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\nContent-Type: application/offset+octet-stream\r\n" +
		"Authorization: Bearer " + token + "\r\nUpload-Offset: 0\r\nContent-Length: " + strconv.Itoa(size) + "\r\n\r\n"
	if _, err := c.Write(append([]byte(head), make([]byte, sent)...)); err != nil {
		t.Fatal(err)
	}
	answer := make(chan *http.Response, 1)
	go func() {
		resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: http.MethodPatch})
		if err != nil {
			answer <- nil
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		answer <- resp
	}()
	return answer
}

// TestSlowUploadsCannotStarveOthers: alice's uploads that stall hold at
// most -max-uploads-per-user of the gateway's upload slots; her further
// ones are refused (503, Retry-After) while bob's upload goes through.
func TestSlowUploadsCannotStarveOthers(t *testing.T) {
	p, alice, bob := aliceAndBob(t, func(c *server.Config) {
		c.Gateway.MaxUploads = 4
		c.Gateway.MaxUploadsPerUser = 2
		c.Gateway.UploadMinRate = 0 // only the slots are under test: the stalls stay
	})
	ctx := ctxT(t)
	data, sum := randomData(t, 1<<20)
	answers := make(chan *http.Response, 4)
	for range 4 {
		o, err := alice.OfferFile(ctx, parley.OfferRequest{To: "bob", Name: "slow.bin", Size: uint64(len(data)), SHA256: sum})
		if err != nil {
			t.Fatal(err)
		}
		a := stalledPatch(t, p.HTTPBase(), alice.Session().Token, o.UploadPath, len(data), 16<<10)
		go func() { answers <- <-a }()
	}
	// Two of the four hold alice's slots; the other two are refused.
	timeout := time.After(wait)
	for range 2 {
		select {
		case <-timeout:
			t.Fatalf("fewer than 2 of alice's 4 stalled uploads refused within %v (-max-uploads-per-user 2)", wait)
		case r := <-answers:
			if r == nil || r.StatusCode != http.StatusServiceUnavailable || r.Header.Get("Retry-After") == "" {
				t.Fatalf("alice's upload beyond her slots: %v; want 503 with Retry-After", r)
			}
		}
	}
	// bob's upload gets a slot at once.
	bobData, bobSum := randomData(t, 300<<10)
	o, err := bob.OfferFile(ctx, parley.OfferRequest{To: "alice", Name: "bob.bin", Size: uint64(len(bobData)), SHA256: bobSum})
	if err != nil {
		t.Fatal(err)
	}
	r := tusRequest(t, http.MethodPatch, p.HTTPBase()+o.UploadPath, bob.Session().Token, bytes.NewReader(bobData),
		map[string]string{"Content-Type": "application/offset+octet-stream", "Upload-Offset": "0"})
	if r.StatusCode != http.StatusNoContent || r.Header.Get("Upload-Offset") != strconv.Itoa(len(bobData)) {
		t.Fatalf("bob's upload while alice's stall: %s, Upload-Offset %q; want 204 with the whole file", r.Status, r.Header.Get("Upload-Offset"))
	}
	select {
	case r := <-answers:
		t.Fatalf("a stalled upload holding a slot was answered: %v", r)
	default:
	}
}

// pacedReader yields step bytes of r every every: a client on a slow but
// steady link.
type pacedReader struct {
	r     io.Reader
	step  int
	every time.Duration
}

func (p *pacedReader) Read(b []byte) (int, error) {
	time.Sleep(p.every)
	return p.r.Read(b[:min(len(b), p.step)])
}

// TestUploadMinRate: a PATCH whose body stops arriving is ended once a
// -upload-rate-window passes without -upload-min-rate's worth of bytes:
// what arrived is kept, the answer (503, Retry-After, Connection: close)
// says where to resume. A body arriving slowly but above the floor is not
// interrupted.
func TestUploadMinRate(t *testing.T) {
	p, alice, _ := aliceAndBob(t, func(c *server.Config) {
		c.Gateway.UploadMinRate = 1 << 10 // 1 KiB in every window
		c.Gateway.UploadRateWindow = time.Second
	})
	ctx := ctxT(t)
	data, sum := randomData(t, 256<<10)
	offer := func() string {
		o, err := alice.OfferFile(ctx, parley.OfferRequest{To: "bob", Name: "x.bin", Size: uint64(len(data)), SHA256: sum})
		if err != nil {
			t.Fatal(err)
		}
		return o.UploadPath
	}
	stalled, slow := offer(), offer()
	var r *http.Response
	select {
	case r = <-stalledPatch(t, p.HTTPBase(), alice.Session().Token, stalled, len(data), 16<<10):
	case <-time.After(wait):
		t.Fatalf("a stalled upload body was not ended within %v", wait)
	}
	if r == nil || r.StatusCode != http.StatusServiceUnavailable || r.Header.Get("Retry-After") == "" || !r.Close ||
		r.Header.Get("Upload-Offset") != strconv.Itoa(16<<10) {
		t.Fatalf("stalled upload answered %v; want 503, Retry-After, Connection: close, Upload-Offset 16384", r)
	}
	if got := headOffset(t, p.HTTPBase()+stalled, alice.Session().Token); got != 16<<10 {
		t.Fatalf("offset %d after the stalled body was ended; want the 16 KiB that arrived", got)
	}

	// 4 KiB every 50 ms: about 80 KiB/s, far above the floor.
	body := &pacedReader{r: bytes.NewReader(data), step: 4 << 10, every: 50 * time.Millisecond}
	r = tusRequest(t, http.MethodPatch, p.HTTPBase()+slow, alice.Session().Token, body,
		map[string]string{"Content-Type": "application/offset+octet-stream", "Upload-Offset": "0"})
	if r.StatusCode != http.StatusNoContent || r.Header.Get("Upload-Offset") != strconv.Itoa(len(data)) {
		t.Fatalf("slow upload above the floor: %s, Upload-Offset %q; want 204 with the whole file", r.Status, r.Header.Get("Upload-Offset"))
	}
}
