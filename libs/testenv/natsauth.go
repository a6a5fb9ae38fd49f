package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
)

// ShippedNATSAuth is the NATS permission file Kubernetes ships, relative
// to the repository root; nats.conf includes it.
const ShippedNATSAuth = "k8s/base/nats-auth.conf"

// RepoRoot is the repository's root: the nearest directory above the
// working directory with a go.work.
func RepoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.work above the working directory")
		}
		dir = parent
	}
}

// SecureNATSConfig writes a nats-server configuration that secures NATS as
// Parley's Kubernetes manifests do: TLS with a certificate of ca, client
// certificates required and mapped to users (verify_and_map), the users
// and permissions of the shipped k8s/base/nats-auth.conf (copied beside
// the file unchanged and included), and JetStream in storeDir. It returns
// the configuration file and the server's certificate.
func SecureNATSConfig(t testing.TB, ca *CA, listen, storeDir string) (string, Pair) {
	t.Helper()
	auth, err := os.ReadFile(filepath.Join(RepoRoot(t), ShippedNATSAuth))
	if err != nil {
		t.Fatal(err)
	}
	srv := ca.Server(t, "nats")
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "nats-auth.conf"), auth, 0o600); err != nil {
		t.Fatal(err)
	}
	conf := fmt.Sprintf(`listen: %q
jetstream { store_dir: %q }
tls {
  cert_file: %q
  key_file: %q
  ca_file: %q
  verify_and_map: true
  timeout: 5
}
include "nats-auth.conf"
`, listen, storeDir, srv.Cert, srv.Key, ca.File)
	file := filepath.Join(dir, "nats.conf")
	if err := os.WriteFile(file, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	return file, srv
}

// SecureNATS starts an in-process nats-server with SecureNATSConfig on a
// free port; it is shut down when the test ends.
func SecureNATS(t testing.TB, ca *CA) *server.Server {
	t.Helper()
	file, _ := SecureNATSConfig(t, ca, "127.0.0.1:-1", t.TempDir())
	opts, err := server.ProcessConfigFile(file)
	if err != nil {
		t.Fatalf("nats config: %v", err)
	}
	return StartNATS(t, opts)
}
