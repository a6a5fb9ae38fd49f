package sdktest

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/parleychat/parley/clients/parley"
	"github.com/parleychat/parley/libs/subject"
	"github.com/parleychat/parley/libs/testenv"
	"github.com/parleychat/parley/standalone/server"
)

// tusCreate is a tus creation (POST /v1/files) of a size-byte file for
// username "to".
func tusCreate(t *testing.T, base, token string, size int) *http.Response {
	t.Helper()
	meta := "to " + base64.StdEncoding.EncodeToString([]byte("bob")) + ",filename " + base64.StdEncoding.EncodeToString([]byte("x.bin")) +
		",sha256 " + base64.StdEncoding.EncodeToString([]byte(strings.Repeat("ab", 32)))
	return tusRequest(t, http.MethodPost, base+"/v1/files", token, nil, map[string]string{
		"Upload-Length": strconv.Itoa(size), "Upload-Metadata": meta})
}

func bodyOf(r *http.Response) string {
	b, _ := io.ReadAll(r.Body)
	return string(b)
}

// TestTusCreationAnswer: a tus creation answers as §18.3 says: 201 with
// Location (the upload's path), X-Parley-File-Id (the file it names),
// Upload-Expires, Tus-Resumable and nosniff; a missing Tus-Resumable is
// 412 on every tus request (creation, HEAD, PATCH, DELETE), and the
// upload is left as it was.
func TestTusCreationAnswer(t *testing.T) {
	p, alice, _ := aliceAndBob(t, nil)
	r := tusCreate(t, p.HTTPBase(), alice.Session().Token, 10)
	h := r.Header
	id := h.Get("X-Parley-File-Id")
	switch {
	case r.StatusCode != http.StatusCreated:
		t.Fatalf("creation: %s %s", r.Status, bodyOf(r))
	case id == "" || h.Get("Location") != "/v1/files/"+id:
		t.Errorf("Location %q, X-Parley-File-Id %q", h.Get("Location"), id)
	case h.Get("Upload-Expires") == "", h.Get("Tus-Resumable") != "1.0.0", h.Get("X-Content-Type-Options") != "nosniff":
		t.Errorf("Upload-Expires %q, Tus-Resumable %q, X-Content-Type-Options %q",
			h.Get("Upload-Expires"), h.Get("Tus-Resumable"), h.Get("X-Content-Type-Options"))
	}
	if _, err := http.ParseTime(h.Get("Upload-Expires")); err != nil {
		t.Errorf("Upload-Expires %q: %v", h.Get("Upload-Expires"), err)
	}
	r = tusRequest(t, http.MethodPost, p.HTTPBase()+"/v1/files", alice.Session().Token, nil,
		map[string]string{"Tus-Resumable": "", "Upload-Length": "10"})
	if r.StatusCode != http.StatusPreconditionFailed {
		t.Errorf("creation without Tus-Resumable: %s, want 412", r.Status)
	}
	upload := p.HTTPBase() + h.Get("Location")
	for _, method := range []string{http.MethodHead, http.MethodPatch, http.MethodDelete} {
		r := tusRequest(t, method, upload, alice.Session().Token, strings.NewReader("0123456789"),
			map[string]string{"Tus-Resumable": "", "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"})
		if r.StatusCode != http.StatusPreconditionFailed {
			t.Errorf("%s without Tus-Resumable: %s, want 412", method, r.Status)
		}
	}
	if off := headOffset(t, upload, alice.Session().Token); off != 0 {
		t.Errorf("after the refused requests the upload is at %d, want 0", off)
	}
}

// TestFileQuota: the bytes of a user's files that are uploading or
// available are bounded by -file-user-quota: an offer (or tus creation)
// beyond it is QUOTA_EXCEEDED (413 over HTTP) and made nothing; cancelling
// a file, or a file failing its SHA-256 check, frees its bytes; another
// user's allowance is their own. The usage the file service keeps is
// repaired by the sweep when it drifts from the files.
func TestFileQuota(t *testing.T) {
	natsAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	p, alice, bob := aliceAndBob(t, func(c *server.Config) {
		c.NATSListen = natsAddr
		c.File.UserQuota = 1 << 20
		c.File.SweepInterval = 100 * time.Millisecond
	})
	ctx := ctxT(t)
	data, sum := randomData(t, 600<<10)
	offer := func(c *parley.Client, to string) (*parley.FileOffer, error) {
		return c.OfferFile(ctx, parley.OfferRequest{To: to, Name: "x.bin", Size: uint64(len(data)), SHA256: sum})
	}
	first, err := offer(alice, "bob")
	if err != nil {
		t.Fatal(err)
	}
	_, err = offer(alice, "bob")
	wantCode(t, err, parley.CodeQuotaExceeded)
	if r := tusCreate(t, p.HTTPBase(), alice.Session().Token, len(data)); r.StatusCode != http.StatusRequestEntityTooLarge ||
		!strings.HasPrefix(bodyOf(r), "QUOTA_EXCEEDED") {
		t.Fatalf("tus creation beyond the quota: %s", r.Status)
	}
	if pending, err := bob.Files(ctx, ""); err != nil || len(pending) != 1 {
		t.Fatalf("bob's pending offers after the refused ones: %d, %v; want only the first", len(pending), err)
	}
	if _, err := offer(bob, "alice"); err != nil {
		t.Fatalf("bob's own allowance: %v", err)
	}

	// Cancelling the first file frees its bytes.
	if r := tusRequest(t, http.MethodDelete, p.HTTPBase()+first.UploadPath, alice.Session().Token, nil, nil); r.StatusCode != http.StatusNoContent {
		t.Fatalf("cancel: %s", r.Status)
	}
	second, err := offer(alice, "bob")
	if err != nil {
		t.Fatalf("offer after cancelling: %v", err)
	}
	// A file that fails its SHA-256 check frees them too.
	wrong := bytes.Repeat([]byte{7}, len(data))
	if err := alice.Upload(ctx, second, bytes.NewReader(wrong), parley.UploadOptions{}); err == nil {
		t.Fatal("upload of the wrong bytes succeeded")
	}
	if _, err := offer(alice, "bob"); err != nil {
		t.Fatalf("offer after a failed upload: %v", err)
	}

	// The usage kept in KV drifts (a replica that died between writes):
	// the sweep puts it back to what alice's files take.
	nc, err := nats.Connect("nats://" + natsAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(ctx, subject.BucketFiles)
	if err != nil {
		t.Fatal(err)
	}
	key := "q." + alice.Session().UserID
	if _, err := kv.Put(ctx, key, []byte(`{"used":0}`)); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, wait, "the sweep to repair alice's usage", func() bool {
		e, err := kv.Get(ctx, key)
		var u struct{ Used int }
		return err == nil && json.Unmarshal(e.Value(), &u) == nil && u.Used == len(data)
	})
	_, err = offer(alice, "bob")
	wantCode(t, err, parley.CodeQuotaExceeded)
}

// TestOfferRateLimit: a user offering files faster than -file-offer-rate
// is told RATE_LIMITED with how long to wait (429 and Retry-After over
// HTTP); a repeat of an earlier offer (same client key) is not counted;
// other users are not affected.
func TestOfferRateLimit(t *testing.T) {
	p, alice, bob := aliceAndBob(t, func(c *server.Config) { c.File.OfferRate = 3 })
	ctx := ctxT(t)
	_, sum := randomData(t, 10)
	req := func(key string) parley.OfferRequest {
		return parley.OfferRequest{To: "bob", Name: "x.bin", Size: 10, SHA256: sum, ClientKey: key}
	}
	for i := range 3 {
		if _, err := alice.OfferFile(ctx, req(fmt.Sprint("k", i))); err != nil {
			t.Fatalf("offer %d: %v", i, err)
		}
	}
	if o, err := alice.OfferFile(ctx, req("k0")); err != nil || !o.Duplicate {
		t.Fatalf("repeat of an offer: %v, %v; want the first offer back", o, err)
	}
	_, err := alice.OfferFile(ctx, req("k3"))
	wantCode(t, err, parley.CodeRateLimited)
	if pe := err.(*parley.Error); pe.RetryAfter <= 0 || pe.RetryAfter > time.Minute {
		t.Fatalf("retry after %v", pe.RetryAfter)
	}
	r := tusCreate(t, p.HTTPBase(), alice.Session().Token, 10)
	if secs, err := strconv.Atoi(r.Header.Get("Retry-After")); r.StatusCode != http.StatusTooManyRequests || err != nil || secs < 1 {
		t.Fatalf("tus creation beyond the rate: %s, Retry-After %q", r.Status, r.Header.Get("Retry-After"))
	}
	if _, err := bob.OfferFile(ctx, parley.OfferRequest{To: "alice", Name: "y.bin", Size: 10, SHA256: sum}); err != nil {
		t.Fatalf("bob limited by alice's offers: %v", err)
	}
}

// TestFilesBadConversation: a file list for something that is not a
// conversation id is INVALID_ARGUMENT (it was INTERNAL: the id went into a
// KV key filter).
func TestFilesBadConversation(t *testing.T) {
	_, alice, _ := aliceAndBob(t, nil)
	me := alice.Session().UserID
	for _, conv := range []string{"a b", "dm." + me + ".>", "dm." + me + ".*", "dm." + me + ". x", "dm." + me + "..x",
		"dm." + me + ".x\x00", "x", "group.", strings.Repeat("group.g", 40)} {
		_, _, err := alice.FilesPage(ctxT(t), conv, "", 0)
		var pe *parley.Error
		if !errors.As(err, &pe) || pe.Code != parley.CodeInvalidArgument {
			t.Errorf("files of %q: %v, want INVALID_ARGUMENT", conv, err)
		}
	}
	// Well-formed but no conversation with files (§18.2): NOT_FOUND for
	// the public room and an unknown group; PERMISSION_DENIED for another
	// pair's private chat.
	for conv, want := range map[string]parley.Code{
		"room.public":                       parley.CodeNotFound,
		"group.gaaaaaaaaaaaaaaaaaaaa":       parley.CodeNotFound,
		"dm.uaaaaaaaaaaaa.uzzzzzzzzzzzzzzz": parley.CodePermissionDenied,
	} {
		_, _, err := alice.FilesPage(ctxT(t), conv, "", 0)
		var pe *parley.Error
		if !errors.As(err, &pe) || pe.Code != want {
			t.Errorf("files of %q: %v, want %v", conv, err, want)
		}
		if conv == "room.public" && pe != nil && strings.Contains(pe.Message, "no such group") {
			t.Errorf("files of the room: message %q speaks of a missing group", pe.Message)
		}
	}
}

// TestDownloadURLEndsWithSession: a download URL is bound to the session
// that asked for it: once that session has ended (logout, takeover) the
// URL answers 401, while the same user's other session gets a working URL
// of its own. The file service asks the real auth service
// (subject.AuthSessionCheck).
func TestDownloadURLEndsWithSession(t *testing.T) {
	p, alice, bob := aliceAndBob(t, nil)
	ctx := ctxT(t)

	data, sum := randomData(t, 1000)
	offer, err := alice.OfferFile(ctx, parley.OfferRequest{To: "bob", Name: "x.bin", Size: uint64(len(data)), SHA256: sum})
	if err != nil {
		t.Fatal(err)
	}
	if err := alice.Upload(ctx, offer, bytes.NewReader(data), parley.UploadOptions{}); err != nil {
		t.Fatal(err)
	}
	id := offer.File.ID
	bob2 := dial(t, p.TCPAddr(), parley.WithHTTPBase(p.HTTPBase()))
	login(t, bob2, "bob")
	get := func(c *parley.Client) (string, func() *http.Response) {
		d, err := c.DownloadURL(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return d.Path, func() *http.Response {
			r, err := http.Get(p.HTTPBase() + d.Path)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { r.Body.Close() })
			return r
		}
	}
	_, first := get(bob)
	_, second := get(bob2)
	if r := first(); r.StatusCode != http.StatusOK {
		t.Fatalf("download before the logout: %s", r.Status)
	}
	if err := bob.Logout(ctx); err != nil {
		t.Fatal(err)
	}
	if r := first(); r.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(bodyOf(r), "SESSION_REVOKED") {
		t.Fatalf("download URL of an ended session: %s; want 401 SESSION_REVOKED", r.Status)
	}
	if r := second(); r.StatusCode != http.StatusOK {
		t.Fatalf("download URL of bob's other session: %s", r.Status)
	}
}
