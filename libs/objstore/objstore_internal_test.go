package objstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
)

func TestPartSize(t *testing.T) {
	const mib = 1 << 20
	cases := []struct {
		name     string
		fileSize int64
		want     int64
	}{
		{"empty", 0, 8 * mib},
		{"1 byte", 1, 8 * mib},
		{"8 MiB x 10000 fits exactly", 8 * mib * MaxParts, 8 * mib},
		{"one byte more grows to 9 MiB", 8*mib*MaxParts + 1, 9 * mib},
		{"100 GiB", 100 << 30, 11 * mib},
		{"5 TiB", 5 << 40, 525 * mib},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := PartSize(c.fileSize)
			if got != c.want {
				t.Fatalf("PartSize(%d) = %d (%.2f MiB), want %d", c.fileSize, got, float64(got)/mib, c.want)
			}
			if parts := (c.fileSize + got - 1) / got; parts > MaxParts {
				t.Fatalf("PartSize(%d) = %d needs %d parts, more than %d", c.fileSize, got, parts, MaxParts)
			}
			if got%mib != 0 || got < MinPartSize || got > MaxPartSize {
				t.Fatalf("PartSize(%d) = %d: not whole MiB within [MinPartSize, MaxPartSize]", c.fileSize, got)
			}
		})
	}
}

// FuzzKey checks Dir's key validation: an accepted key maps to a file
// strictly inside objects/ of the root, at objects/<key>/.data, and a Put
// of it lands exactly there.
func FuzzKey(f *testing.F) {
	for _, k := range []string{
		"files/abc", "a", "a/b/c", "../x", "/abs", "a//b", `a\b`, "..", ".", "a/..", "a/../../b",
		"a/./b", ".data", "a/.data", "objects/../../etc/passwd", "a\x00b", "ü/ñ", "\xff",
		"a/", "", "...", "a..b", "a/..b", "C:/x", "a/b/", strings.Repeat("x", 300),
	} {
		f.Add(k)
	}
	parent := f.TempDir()
	d, err := NewDir(filepath.Join(parent, "root"))
	if err != nil {
		f.Fatal(err)
	}
	objects := d.objects + string(filepath.Separator)
	f.Fuzz(func(t *testing.T, key string) {
		err := ValidateKey(key)
		if err != nil {
			if !errors.Is(err, ErrInvalidKey) {
				t.Fatalf("ValidateKey(%q) = %v, not ErrInvalidKey", key, err)
			}
			if _, err := d.Stat(context.Background(), key); !errors.Is(err, ErrInvalidKey) {
				t.Fatalf("Stat of rejected key %q: %v", key, err)
			}
			return
		}
		p := d.objectPath(key)
		if filepath.Clean(p) != p || !strings.HasPrefix(p, objects) {
			t.Fatalf("key %q maps to %q, outside %s", key, p, objects)
		}
		rel, err := filepath.Rel(d.objects, p)
		if err != nil || strings.HasPrefix(rel, "..") || filepath.IsAbs(rel) {
			t.Fatalf("key %q maps to %q, relative %q", key, p, rel)
		}
		if want := filepath.FromSlash(key) + string(filepath.Separator) + dataName; rel != want {
			t.Fatalf("key %q maps to objects/%s, want objects/%s", key, rel, want)
		}
		if validatePrefix(key) != nil {
			t.Fatalf("valid key %q refused as a prefix", key)
		}
		ctx := context.Background()
		if _, err := d.Put(ctx, key, strings.NewReader("x"), 1, ""); err != nil {
			t.Fatalf("Put(%q): %v", key, err)
		}
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("Put(%q) did not write %s: %v", key, p, err)
		}
		if err := d.Delete(ctx, key); err != nil {
			t.Fatalf("Delete(%q): %v", key, err)
		}
		if entries, _ := os.ReadDir(parent); len(entries) != 1 {
			t.Fatalf("after key %q the root's parent holds %d entries", key, len(entries))
		}
		if entries, _ := os.ReadDir(d.objects); len(entries) != 0 {
			t.Fatalf("after Put and Delete of %q objects/ still holds %v", key, entries)
		}
	})
}

// TestNewDirRemovesStaleTemp: files a crash left in tmp/ do not pile up.
func TestNewDirRemovesStaleTemp(t *testing.T) {
	root := t.TempDir()
	d, err := NewDir(root)
	if err != nil {
		t.Fatal(err)
	}
	old := filepath.Join(d.tmp, "w-crashed")
	fresh := filepath.Join(d.tmp, "w-in-flight")
	for _, p := range []string{old, fresh} {
		if err := os.WriteFile(p, []byte("half"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	past := time.Now().Add(-2 * staleTemp)
	if err := os.Chtimes(old, past, past); err != nil {
		t.Fatal(err)
	}
	if _, err := NewDir(root); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(old); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("stale temp file still there: %v", err)
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Fatalf("recent temp file removed: %v", err)
	}
}

func TestNewDirConfig(t *testing.T) {
	if _, err := NewDir(""); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("NewDir(\"\") = %v, want ErrInvalidArgument", err)
	}
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := NewDir(file); err == nil {
		t.Fatal("NewDir on a regular file succeeded")
	}
}

// TestUnreachable: the errors a stopped or unreachable server causes mark
// storage unavailable (503/UNAVAILABLE to clients), whichever moment of a
// request they hit: dialling, writing the body on a kept-alive connection
// the server has dropped, reading a response cut short. A request's own
// context ending, or the server's ordinary answers, do not.
func TestUnreachable(t *testing.T) {
	onConn := func(op string, errno error) error {
		return &url.Error{Op: "Put", URL: "http://127.0.0.1:9000/b/k", Err: &net.OpError{Op: op, Net: "tcp", Err: os.NewSyscallError(op, errno)}}
	}
	cases := []struct {
		name string
		err  error
		want bool
	}{
		{"connection refused", onConn("dial", syscall.ECONNREFUSED), true},
		{"broken pipe writing a body", onConn("write", syscall.EPIPE), true},
		{"reset reading", onConn("read", syscall.ECONNRESET), true},
		{"response cut short", &url.Error{Op: "Get", URL: "http://127.0.0.1:9000/b/k", Err: io.ErrUnexpectedEOF}, true},
		{"no route", onConn("dial", syscall.EHOSTUNREACH), true},
		{"the caller's context ended", fmt.Errorf("put: %w", context.Canceled), false},
		{"the caller's deadline", &url.Error{Op: "Put", URL: "http://x", Err: context.DeadlineExceeded}, false},
		{"an ordinary answer", minio.ErrorResponse{Code: "AccessDenied", StatusCode: 403}, false},
		{"overloaded", minio.ErrorResponse{Code: "SlowDown", StatusCode: 503}, true},
		{"nil", nil, false},
	}
	for _, tc := range cases {
		if got := unreachable(tc.err); got != tc.want {
			t.Errorf("%s: unreachable(%v) = %v, want %v", tc.name, tc.err, got, tc.want)
		}
	}
}
