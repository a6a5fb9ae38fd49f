package certfile_test

import (
	"context"
	"crypto/tls"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/parleychat/parley/libs/certfile"
	"github.com/parleychat/parley/libs/testenv"
)

// serve runs a TLS server with r's configuration on loopback: each
// connection completes its handshake and is closed.
func serve(t *testing.T, r *certfile.Reloader) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", r.TLSConfig())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				_ = c.(*tls.Conn).Handshake()
				c.Close()
			}()
		}
	}()
	return ln.Addr().String()
}

// serial connects as a client trusting ca and returns the serial number
// of the certificate the server presented.
func serial(t *testing.T, addr string, ca *testenv.CA) int64 {
	t.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: ca.Pool, ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatalf("TLS handshake: %v", err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
}

func writePair(t *testing.T, certFile, keyFile string, certPEM, keyPEM []byte) {
	t.Helper()
	if err := os.WriteFile(certFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestReplacedFilesAreServedWithoutRestart(t *testing.T) {
	ca := testenv.NewCA(t)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	c1, k1 := ca.ServerPEM(t, 101)
	writePair(t, certFile, keyFile, c1, k1)
	r, err := certfile.New(certFile, keyFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, r)
	if got := serial(t, addr, ca); got != 101 {
		t.Fatalf("serial %d, want 101", got)
	}

	c2, k2 := ca.ServerPEM(t, 102)
	writePair(t, certFile, keyFile, c2, k2)
	if changed, err := r.Reload(); !changed || err != nil {
		t.Fatalf("Reload = %v, %v; want a new pair", changed, err)
	}
	if got := serial(t, addr, ca); got != 102 {
		t.Fatalf("after the renewal the server presented serial %d, want 102", got)
	}
	if changed, err := r.Reload(); changed || err != nil {
		t.Fatalf("Reload of unchanged files = %v, %v; want nothing", changed, err)
	}
}

func TestBadReplacementKeepsTheOldCertificate(t *testing.T) {
	ca := testenv.NewCA(t)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	c1, k1 := ca.ServerPEM(t, 201)
	writePair(t, certFile, keyFile, c1, k1)
	r, err := certfile.New(certFile, keyFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, r)
	c2, k2 := ca.ServerPEM(t, 202)

	for _, tc := range []struct {
		name      string
		cert, key []byte
	}{
		{"half-written certificate", c2[:len(c2)/2], k2},
		{"new certificate, old key", c2, k1},
		{"empty key", c2, nil},
	} {
		writePair(t, certFile, keyFile, tc.cert, tc.key)
		if changed, err := r.Reload(); changed || err == nil {
			t.Fatalf("%s: Reload = %v, %v; want an error", tc.name, changed, err)
		}
		if got := serial(t, addr, ca); got != 201 {
			t.Fatalf("%s: server presented serial %d, want the old 201", tc.name, got)
		}
	}
	// Once the pair is complete it is taken up.
	writePair(t, certFile, keyFile, c2, k2)
	if changed, err := r.Reload(); !changed || err != nil {
		t.Fatalf("Reload = %v, %v; want the completed pair", changed, err)
	}
	if got := serial(t, addr, ca); got != 202 {
		t.Fatalf("serial %d, want 202", got)
	}
}

func TestMissingFilesFailAtStart(t *testing.T) {
	dir := t.TempDir()
	if _, err := certfile.New(filepath.Join(dir, "no.crt"), filepath.Join(dir, "no.key"), nil); err == nil {
		t.Fatal("New with missing files succeeded")
	}
}

// The kubelet's renewal: a new directory and an atomic swap of the
// "..data" symlink, noticed by Run's polling.
func TestSecretVolumeSymlinkSwap(t *testing.T) {
	ca := testenv.NewCA(t)
	c1, k1 := ca.ServerPEM(t, 301)
	vol := testenv.NewSecretVolume(t, c1, k1)
	r, err := certfile.New(vol.CertFile(), vol.KeyFile(), nil)
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, r)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.Run(ctx, 10*time.Millisecond) }()
	t.Cleanup(func() { cancel(); <-done })
	if got := serial(t, addr, ca); got != 301 {
		t.Fatalf("serial %d, want 301", got)
	}

	c2, k2 := ca.ServerPEM(t, 302)
	vol.Update(t, c2, k2)
	deadline := time.Now().Add(10 * time.Second)
	for serial(t, addr, ca) != 302 {
		if time.Now().After(deadline) {
			t.Fatal("the swapped-in certificate was never served")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// A swap to a broken pair keeps 302.
	vol.Update(t, c2, []byte("-----BEGIN EC PRIVATE KEY-----\ntruncated"))
	if _, err := r.Reload(); err == nil {
		t.Fatal("a broken pair loaded")
	}
	if got := serial(t, addr, ca); got != 302 {
		t.Fatalf("after a broken swap the server presented %d, want 302", got)
	}
}
