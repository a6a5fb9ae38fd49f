package fileurl_test

import (
	"net/url"
	"testing"

	"github.com/parleychat/parley/protocol/fileurl"
)

// TestPaths: the paths of docs/protocol.md §18.3 and §18.4.
func TestPaths(t *testing.T) {
	const id = "f0123456789abcdef01234567"
	for got, want := range map[string]string{
		fileurl.Prefix:                     "/v1/files",
		fileurl.Upload(id):                 "/v1/files/" + id,
		fileurl.Content(id):                "/v1/files/" + id + "/content",
		fileurl.Download(id, "YWJj-_x"):    "/v1/files/" + id + "/content?token=YWJj-_x",
		fileurl.Upload(":id"):              "/v1/files/:id",
		fileurl.Content(":id"):             "/v1/files/:id/content",
		fileurl.Download(id, "a+b/c=&d e"): "/v1/files/" + id + "/content?token=a%2Bb%2Fc%3D%26d+e",
	} {
		if got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	}
	// A token reads back unchanged, whatever it holds.
	u, err := url.Parse(fileurl.Download(id, "a+b/c=&d e"))
	if err != nil || u.Query().Get(fileurl.TokenParam) != "a+b/c=&d e" || u.Path != fileurl.Content(id) {
		t.Errorf("parsed back: %v %q %q", err, u.Query().Get(fileurl.TokenParam), u.Path)
	}
}
