package files

import (
	"bytes"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"strings"
	"testing"
)

// TestNewChecksum: Upload-Checksum as tus 1.0.0 defines it (Checksum
// extension, "Upload-Checksum") and as the handler reads it: a refused
// header is a 400, a body that does not match is a 460.
func TestNewChecksum(t *testing.T) {
	const body = "hello world"
	b64 := base64.StdEncoding.EncodeToString
	md5Sum, sha256Sum := md5.Sum([]byte(body)), sha256.Sum256([]byte(body))
	const spec = "sha1 Kq5sNclPz7QV2+lfQIuc6R7oRu0=" // the spec's example: SHA-1 of "hello world"
	for _, tc := range []struct {
		rule   string
		header string
		body   string
		ok     bool // the header is taken
		match  bool // and the body matches it
	}{
		{"tus Checksum: the spec's example; sha1 MUST be supported", spec, body, true, true},
		{"tus Checksum: md5 is announced in Tus-Checksum-Algorithm", "md5 " + b64(md5Sum[:]), body, true, true},
		{"tus Checksum: sha256 is announced in Tus-Checksum-Algorithm", "sha256 " + b64(sha256Sum[:]), body, true, true},
		{"tus Checksum: another body does not match (460 Checksum Mismatch)", spec, "hello", true, false},
		{"white space around the header is trimmed", "  " + spec + " ", body, true, true},
		{"tus Checksum: name and digest separated by a space", "sha1", body, false, false},
		{"tus Checksum: a digest is required", "sha1 ", body, false, false},
		{"tus Checksum: 400 for an algorithm the server does not support", "crc32 AAAAAA==", body, false, false},
		{"tus Checksum: algorithm names are lower-case; others are not supported", "SHA1 Kq5sNclPz7QV2+lfQIuc6R7oRu0=", body, false, false},
		{"tus Checksum: the digest is Base64 (RFC 4648 §4, with padding)", "sha1 Kq5sNclPz7QV2+lfQIuc6R7oRu0", body, false, false},
		{"tus Checksum: the digest is Base64 (not the URL alphabet)", "sha1 Kq5sNclPz7QV2-lfQIuc6R7oRu0=", body, false, false},
		{"the digest starts right after the first space", "sha1  Kq5sNclPz7QV2+lfQIuc6R7oRu0=", body, false, false},
		{"a digest of the wrong length for its algorithm cannot match", "sha256 Kq5sNclPz7QV2+lfQIuc6R7oRu0=", body, false, false},
		{"an empty digest cannot match", "md5 =", body, false, false},
	} {
		hh, want, err := newChecksum(tc.header)
		if (err == nil) != tc.ok {
			t.Errorf("%s\n  newChecksum(%q): %v", tc.rule, tc.header, err)
			continue
		}
		if err != nil {
			continue
		}
		hh.Write([]byte(tc.body))
		if got := bytes.Equal(hh.Sum(nil), want); got != tc.match {
			t.Errorf("%s\n  newChecksum(%q) on %q: match %v, want %v", tc.rule, tc.header, tc.body, got, tc.match)
		}
	}
	for _, algo := range strings.Split(checksumAlgorithms, ",") {
		if _, _, err := newChecksum(algo + " " + b64(make([]byte, map[string]int{"md5": 16, "sha1": 20, "sha256": 32}[algo]))); err != nil {
			t.Errorf("Tus-Checksum-Algorithm announces %s, which newChecksum refuses: %v", algo, err)
		}
	}
}

// FuzzUploadChecksum: any Upload-Checksum header is refused or gives a
// hash whose digest has the length of the one given, which written back
// as "<algorithm> <digest>" reads the same; and every body's own digest,
// by each algorithm, matches it.
func FuzzUploadChecksum(f *testing.F) {
	f.Add("sha1 Kq5sNclPz7QV2+lfQIuc6R7oRu0=", []byte("hello world"))
	f.Add("md5 XrY7u+Ae7tCTyyK7j1rNww==", []byte("hello world"))
	f.Add("sha256 uU0nuZNNPgilLlLX2n2r+sSE7+N6U4DukIj3rOLvzek=", []byte("hello world"))
	f.Add("crc32 AAAAAA==", []byte{})
	f.Add(" sha1  =", []byte{0})
	names := map[int]string{md5.Size: "md5", sha1.Size: "sha1", sha256.Size: "sha256"}
	b64 := base64.StdEncoding.EncodeToString
	f.Fuzz(func(t *testing.T, header string, body []byte) {
		if hh, want, err := newChecksum(header); err == nil {
			name, ok := names[hh.Size()]
			if !ok || len(want) != hh.Size() {
				t.Fatalf("newChecksum(%q): a %d-byte hash, a %d-byte digest", header, hh.Size(), len(want))
			}
			again := name + " " + b64(want)
			if _, w2, err := newChecksum(again); err != nil || !bytes.Equal(w2, want) {
				t.Fatalf("newChecksum(%q) written back as %q: %x, %v", header, again, w2, err)
			}
		}
		for _, sum := range [][]byte{md5Of(body), sha1Of(body), sha256Of(body)} {
			hh, want, err := newChecksum(names[len(sum)] + " " + b64(sum))
			if err != nil {
				t.Fatal(err)
			}
			hh.Write(body)
			if !bytes.Equal(hh.Sum(nil), want) {
				t.Fatalf("%s of %q does not match itself", names[len(sum)], body)
			}
		}
	})
}

func md5Of(b []byte) []byte    { s := md5.Sum(b); return s[:] }
func sha1Of(b []byte) []byte   { s := sha1.Sum(b); return s[:] }
func sha256Of(b []byte) []byte { s := sha256.Sum256(b); return s[:] }
