package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// startMinIO runs the real MinIO server (.tools/bin/minio, built by
// scripts/deps.sh, or $PARLEY_MINIO_BIN) on a free port with a fresh data
// directory, as libs/testenv does for the services' tests.
func startMinIO(t *testing.T) Config {
	t.Helper()
	bin := os.Getenv("PARLEY_MINIO_BIN")
	if bin == "" {
		bin = filepath.Join("..", "..", ".tools", "bin", "minio")
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("minio server binary not found (%v): run scripts/deps.sh or set PARLEY_MINIO_BIN", err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))
	console := net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))
	var logBuf bytes.Buffer
	cmd := exec.Command(bin, "server", t.TempDir(), "--address", addr, "--console-address", console)
	cmd.Env = append(os.Environ(), "MINIO_ROOT_USER=rootuser", "MINIO_ROOT_PASSWORD=rootpassword", "MINIO_BROWSER=off")
	cmd.Stdout, cmd.Stderr = &logBuf, &logBuf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("minio log:\n%s", logBuf.String())
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/minio/health/cluster")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("minio at %s not ready after 60s", addr)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return Config{
		Endpoint: addr, Bucket: "parley-files", Policy: "parley-files-rw",
		RootUser: "rootuser", RootPassword: "rootpassword",
		AccessKey: "parley", SecretKey: "parley-secret-1",
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func s3As(t *testing.T, cfg Config, access, secret string) *minio.Core {
	t.Helper()
	c, err := minio.NewCore(cfg.Endpoint, &minio.Options{Creds: credentials.NewStaticV4(access, secret, "")})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestParleyUserCanDoWhatParleyDoesAndNothingElse sets up a real MinIO
// twice (the second run must change nothing and not fail), then, as
// Parley's user, does everything libs/objstore does with the bucket, and
// is refused everything outside it.
func TestParleyUserCanDoWhatParleyDoesAndNothingElse(t *testing.T) {
	cfg := startMinIO(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))

	if err := Check(ctx, cfg); err == nil {
		t.Fatal("Check succeeded before the setup ran")
	}
	for i := range 2 {
		if err := Ensure(ctx, cfg, log); err != nil {
			t.Fatalf("Ensure (run %d): %v", i+1, err)
		}
	}
	if err := Check(ctx, cfg); err != nil {
		t.Fatalf("Check after the setup: %v", err)
	}

	c := s3As(t, cfg, cfg.AccessKey, cfg.SecretKey)
	const bucket = "parley-files"
	// A whole object: put, stat, get, delete.
	body := []byte("hello parley")
	if _, err := c.PutObject(ctx, bucket, "files/a", bytes.NewReader(body), int64(len(body)), "", "", minio.PutObjectOptions{}); err != nil {
		t.Fatalf("put: %v", err)
	}
	if _, err := c.StatObject(ctx, bucket, "files/a", minio.StatObjectOptions{}); err != nil {
		t.Fatalf("stat: %v", err)
	}
	rc, _, _, err := c.GetObject(ctx, bucket, "files/a", minio.GetObjectOptions{})
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	got, _ := io.ReadAll(rc)
	rc.Close()
	if !bytes.Equal(got, body) {
		t.Fatalf("get returned %q, want %q", got, body)
	}
	if err := c.RemoveObject(ctx, bucket, "files/a", minio.RemoveObjectOptions{}); err != nil {
		t.Fatalf("delete: %v", err)
	}
	// Multipart: start, upload a part, list parts and uploads, complete;
	// start another and abort it.
	id, err := c.NewMultipartUpload(ctx, bucket, "files/b", minio.PutObjectOptions{})
	if err != nil {
		t.Fatalf("new multipart upload: %v", err)
	}
	part, err := c.PutObjectPart(ctx, bucket, "files/b", id, 1, bytes.NewReader(body), int64(len(body)), minio.PutObjectPartOptions{})
	if err != nil {
		t.Fatalf("put part: %v", err)
	}
	if _, err := c.ListObjectParts(ctx, bucket, "files/b", id, 0, 100); err != nil {
		t.Fatalf("list parts: %v", err)
	}
	if _, err := c.ListMultipartUploads(ctx, bucket, "files/", "", "", "", 100); err != nil {
		t.Fatalf("list multipart uploads: %v", err)
	}
	if _, err := c.CompleteMultipartUpload(ctx, bucket, "files/b", id,
		[]minio.CompletePart{{PartNumber: 1, ETag: part.ETag}}, minio.PutObjectOptions{}); err != nil {
		t.Fatalf("complete: %v", err)
	}
	id2, err := c.NewMultipartUpload(ctx, bucket, "files/c", minio.PutObjectOptions{})
	if err != nil {
		t.Fatalf("new multipart upload: %v", err)
	}
	if err := c.AbortMultipartUpload(ctx, bucket, "files/c", id2); err != nil {
		t.Fatalf("abort: %v", err)
	}

	// Refused: another bucket's objects, new buckets, deleting the bucket.
	root := s3As(t, cfg, cfg.RootUser, cfg.RootPassword)
	if err := root.MakeBucket(ctx, "other", minio.MakeBucketOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := root.PutObject(ctx, "other", "secret", bytes.NewReader(body), int64(len(body)), "", "", minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	denied := func(what string, err error) {
		t.Helper()
		if err == nil {
			t.Errorf("%s: allowed for Parley's user, want AccessDenied", what)
		} else if code := minio.ToErrorResponse(err).Code; code != "AccessDenied" {
			t.Errorf("%s: %v (code %q), want AccessDenied", what, err, code)
		}
	}
	_, _, _, err = c.GetObject(ctx, "other", "secret", minio.GetObjectOptions{})
	denied("read another bucket", err)
	denied("create a bucket", c.MakeBucket(ctx, "mine", minio.MakeBucketOptions{}))
	// MinIO answers a bucket listing with the buckets the user may see.
	buckets, err := c.ListBuckets(ctx)
	if err != nil {
		t.Fatalf("list buckets: %v", err)
	}
	for _, b := range buckets {
		if b.Name != bucket {
			t.Errorf("Parley's user sees bucket %q", b.Name)
		}
	}
	denied("delete the bucket", c.RemoveBucket(ctx, bucket))
}

// TestEnsureRotatesTheSecret: a changed secret key in the Secret takes
// effect at the next run; the old one stops working.
func TestEnsureRotatesTheSecret(t *testing.T) {
	cfg := startMinIO(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if err := Ensure(ctx, cfg, log); err != nil {
		t.Fatal(err)
	}
	old := cfg
	cfg.SecretKey = "parley-secret-2"
	if err := Ensure(ctx, cfg, log); err != nil {
		t.Fatal(err)
	}
	if err := Check(ctx, cfg); err != nil {
		t.Fatalf("new secret: %v", err)
	}
	if err := Check(ctx, old); err == nil {
		t.Fatal("the old secret still works after the rotation")
	}
}

func TestConfigRefusesRootAsParleysUser(t *testing.T) {
	cfg := Config{Endpoint: "x:9000", Bucket: "b", Policy: "p", RootUser: "admin", RootPassword: "password1",
		AccessKey: "admin", SecretKey: "password1"}
	if err := cfg.validate(); err == nil {
		t.Fatal("validate accepted the root user as Parley's user")
	}
}
