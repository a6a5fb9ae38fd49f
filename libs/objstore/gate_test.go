package objstore_test

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/parleychat/parley/libs/objstore"
	"github.com/parleychat/parley/libs/testenv"
)

// TestGateFollowsTheServer: a store opened while MinIO is down is there at
// once and answers ErrUnavailable; once MinIO runs it works (the bucket
// created) with nothing reopened; when MinIO stops again calls answer
// ErrUnavailable, and it comes back with the server.
func TestGateFollowsTheServer(t *testing.T) {
	srv := testenv.StartMinIO(t)
	srv.Stop()
	reg := prometheus.NewRegistry()
	g, err := objstore.OpenMinIO(t.Context(), objstore.MinIOConfig{Endpoint: srv.Endpoint, AccessKey: srv.AccessKey,
		SecretKey: srv.SecretKey, Bucket: "gated"}, objstore.GateOptions{Registry: reg, RetryMax: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	up := func() float64 {
		n, err := testutil.GatherAndCount(reg, "parley_storage_up")
		if err != nil || n != 1 {
			t.Fatalf("parley_storage_up: %d series, %v", n, err)
		}
		mfs, _ := reg.Gather()
		return mfs[0].GetMetric()[0].GetGauge().GetValue()
	}
	put := func() error {
		_, err := g.Put(t.Context(), "a/b", bytes.NewReader([]byte("hello")), 5, "text/plain")
		return err
	}

	if err := put(); !errors.Is(err, objstore.ErrUnavailable) {
		t.Fatalf("Put with MinIO down = %v, want ErrUnavailable", err)
	}
	if err := g.Available(); !errors.Is(err, objstore.ErrUnavailable) {
		t.Fatalf("Available with MinIO down = %v", err)
	}
	testenv.Eventually(t, 10*time.Second, "the gauge says down", func() bool { return up() == 0 })

	srv.Start(t)
	testenv.Eventually(t, 10*time.Second, "storage available", func() bool { return g.Available() == nil })
	if err := put(); err != nil {
		t.Fatalf("Put once MinIO runs: %v", err)
	}
	rc, err := g.Get(t.Context(), "a/b", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(rc)
	rc.Close()
	if string(b) != "hello" {
		t.Fatalf("read back %q", b)
	}
	if v := up(); v != 1 {
		t.Errorf("parley_storage_up = %v while up", v)
	}

	srv.Stop()
	if err := put(); !errors.Is(err, objstore.ErrUnavailable) {
		t.Fatalf("Put after MinIO stopped = %v, want ErrUnavailable", err)
	}
	if err := g.Available(); !errors.Is(err, objstore.ErrUnavailable) {
		t.Fatalf("Available after a failed call = %v", err)
	}
	srv.Start(t)
	testenv.Eventually(t, 10*time.Second, "storage available again", func() bool { return g.Available() == nil })
	if _, err := g.Stat(t.Context(), "a/b"); err != nil {
		t.Fatalf("Stat after MinIO came back: %v", err)
	}
}
