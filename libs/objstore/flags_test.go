package objstore_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/parleychat/parley/libs/objstore"
)

// TestConfigValidate: the storage flags are checked without creating or
// contacting anything, every problem named by its flag.
func TestConfigValidate(t *testing.T) {
	minio := objstore.MinIOConfig{Endpoint: "127.0.0.1:9000", AccessKey: "k", SecretKey: "s", Bucket: "parley-files"}
	tests := []struct {
		name   string
		cfg    objstore.Config
		errHas []string // empty: valid
	}{
		{"a directory", objstore.Config{Dir: "files"}, nil},
		{"minio", objstore.Config{MinIO: minio}, nil},
		{"neither", objstore.Config{}, []string{"-storage-dir or -minio-endpoint"}},
		{"both", objstore.Config{Dir: "files", MinIO: minio}, []string{"not both"}},
		{"endpoint with a scheme, no keys, bad bucket", objstore.Config{MinIO: objstore.MinIOConfig{Endpoint: "http://minio:9000", Bucket: "A_b"}},
			[]string{"-minio-endpoint", "-minio-access-key", "-minio-bucket"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if len(tt.errHas) == 0 {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if !errors.Is(err, objstore.ErrInvalidArgument) {
				t.Fatalf("Validate: %v, want ErrInvalidArgument", err)
			}
			for _, want := range tt.errHas {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("%q does not mention %s", err, want)
				}
			}
		})
	}
	// Validate creates nothing, even for a directory store.
	dir := filepath.Join(t.TempDir(), "files")
	if err := (objstore.Config{Dir: dir}).Validate(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("Validate created %s (stat: %v)", dir, err)
	}
}
