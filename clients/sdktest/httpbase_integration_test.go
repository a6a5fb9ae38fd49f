package sdktest

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/parleychat/parley/clients/internal/parleytest"
	"github.com/parleychat/parley/clients/parley"
)

// TestFilesFollowWelcome: a TCP client told nothing about HTTP uploads and
// downloads a file where the gateway's Welcome.http_url says (here an
// HTTP port other than the default 7480, which a guess from the TCP
// address would have used).
func TestFilesFollowWelcome(t *testing.T) {
	p := parleytest.Start(t, nil)
	alice := dial(t, p.TCPAddr())
	bob := dial(t, p.TCPAddr())
	register(t, alice, "alice")
	register(t, bob, "bob")
	if got := alice.Welcome().HTTPURL; got != p.HTTPBase() {
		t.Fatalf("Welcome.http_url %q, want %q", got, p.HTTPBase())
	}
	if alice.HTTPBase() != p.HTTPBase() || strings.HasSuffix(p.HTTPBase(), ":7480") {
		t.Fatalf("HTTPBase %q, gateway's %q", alice.HTTPBase(), p.HTTPBase())
	}
	ctx := ctxT(t)
	data, sum := randomData(t, 100_000)
	offer, err := alice.OfferFile(ctx, parley.OfferRequest{To: "bob", Name: "a.bin", Size: uint64(len(data)), SHA256: sum})
	if err != nil {
		t.Fatal(err)
	}
	if err := alice.Upload(ctx, offer, bytes.NewReader(data), parley.UploadOptions{}); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "got.bin")
	if _, err := bob.DownloadTo(ctx, offer.File.ID, path, nil); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(path); !bytes.Equal(got, data) {
		t.Fatalf("downloaded %d bytes, not the uploaded ones", len(got))
	}
}
