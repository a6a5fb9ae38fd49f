package objstore_test

import (
	"bytes"
	"errors"
	"io"
	"sync"
	"testing"

	"github.com/parleychat/parley/libs/objstore"
	"github.com/parleychat/parley/libs/testenv"
)

func TestNewMinIOConfig(t *testing.T) {
	good := objstore.MinIOConfig{Endpoint: "127.0.0.1:9000", AccessKey: "k", SecretKey: "s", Bucket: "files"}
	cases := []struct {
		name   string
		modify func(*objstore.MinIOConfig)
	}{
		{"no endpoint", func(c *objstore.MinIOConfig) { c.Endpoint = "" }},
		{"endpoint with scheme", func(c *objstore.MinIOConfig) { c.Endpoint = "http://127.0.0.1:9000" }},
		{"endpoint with path", func(c *objstore.MinIOConfig) { c.Endpoint = "127.0.0.1:9000/files" }},
		{"no access key", func(c *objstore.MinIOConfig) { c.AccessKey = "" }},
		{"no secret key", func(c *objstore.MinIOConfig) { c.SecretKey = "" }},
		{"no bucket", func(c *objstore.MinIOConfig) { c.Bucket = "" }},
		{"bucket with capitals", func(c *objstore.MinIOConfig) { c.Bucket = "Files" }},
		{"bucket too short", func(c *objstore.MinIOConfig) { c.Bucket = "ab" }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := good
			c.modify(&cfg)
			// Refused before any connection: nothing listens on the endpoint.
			if _, err := objstore.NewMinIO(t.Context(), cfg); !errors.Is(err, objstore.ErrInvalidArgument) {
				t.Fatalf("NewMinIO(%+v) = %v, want ErrInvalidArgument", cfg, err)
			}
		})
	}
}

// testBucketCreationRace: several processes starting at once against a
// fresh MinIO all succeed, and share one bucket.
func testBucketCreationRace(t *testing.T, srv *testenv.MinIO) {
	const n = 8
	stores := make([]*objstore.MinIO, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			stores[i], errs[i] = objstore.NewMinIO(t.Context(), objstore.MinIOConfig{
				Endpoint: srv.Endpoint, AccessKey: srv.AccessKey, SecretKey: srv.SecretKey, Bucket: "raced",
			})
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("NewMinIO %d of %d racing: %v", i+1, n, err)
		}
	}
	if _, err := stores[0].Put(t.Context(), "k", nil, 0, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := stores[n-1].Stat(t.Context(), "k"); err != nil {
		t.Fatalf("object put through one store not seen through another: %v", err)
	}
}

// testWrongCredentials: a misconfigured secret fails at startup, not at
// the first upload.
func testWrongCredentials(t *testing.T, srv *testenv.MinIO) {
	_, err := objstore.NewMinIO(t.Context(), objstore.MinIOConfig{
		Endpoint: srv.Endpoint, AccessKey: srv.AccessKey, SecretKey: "wrong-secret", Bucket: "files",
	})
	if err == nil {
		t.Fatal("NewMinIO with a wrong secret key succeeded")
	}
}

// TestNewMinIOWhileServerStarts: a service started together with MinIO (as
// on Kubernetes) opens its store as soon as MinIO can serve, instead of
// failing on the connection refused or "server not initialized" answers of
// the first seconds.
func TestNewMinIOWhileServerStarts(t *testing.T) {
	srv := testenv.StartMinIO(t)
	srv.Stop()
	srv.Spawn(t) // not waiting: the store must do it
	m, err := objstore.NewMinIO(t.Context(), objstore.MinIOConfig{
		Endpoint:  srv.Endpoint,
		AccessKey: srv.AccessKey,
		SecretKey: srv.SecretKey,
		Bucket:    "starting",
	})
	if err != nil {
		t.Fatalf("NewMinIO while the server starts: %v", err)
	}
	body := []byte("first object after start")
	if _, err := m.Put(t.Context(), "files/first", bytes.NewReader(body), int64(len(body)), "text/plain"); err != nil {
		t.Fatalf("Put: %v", err)
	}
	rc, err := m.Get(t.Context(), "files/first", 0, -1)
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	defer rc.Close()
	got, err := io.ReadAll(rc)
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("Get = %q, %v; want %q", got, err, body)
	}
}
