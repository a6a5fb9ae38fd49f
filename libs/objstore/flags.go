package objstore

import (
	"context"
	"flag"
	"fmt"
)

// Config selects and configures a store from flags, so the file service and
// the gateways (which must use the same store) take the same flags:
// -storage-dir DIR for a local directory (one machine), or -minio-endpoint
// with credentials and bucket for MinIO or any S3.
type Config struct {
	Dir   string
	MinIO MinIOConfig
}

// RegisterFlags defines the storage flags on fs, storing into c.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Dir, "storage-dir", "", "store files in this local directory (one machine only; every gateway and file service must see it)")
	fs.StringVar(&c.MinIO.Endpoint, "minio-endpoint", "", "MinIO/S3 endpoint host:port; with it files go to MinIO")
	fs.StringVar(&c.MinIO.AccessKey, "minio-access-key", "", "MinIO access key")
	fs.StringVar(&c.MinIO.SecretKey, "minio-secret-key", "", "MinIO secret key")
	fs.StringVar(&c.MinIO.Bucket, "minio-bucket", "parley-files", "MinIO bucket (created if missing)")
	fs.StringVar(&c.MinIO.Region, "minio-region", "", "MinIO/S3 region (empty: discovered)")
	fs.BoolVar(&c.MinIO.Secure, "minio-tls", false, "talk HTTPS to MinIO")
}

// ErrNoStore: neither -storage-dir nor -minio-endpoint was given.
var ErrNoStore = fmt.Errorf("objstore: %w: give -storage-dir or -minio-endpoint", ErrInvalidArgument)

// Validate reports every problem with c at once (joined with
// errors.Join, each naming its flag); it creates and contacts nothing.
// Open applies the same checks.
func (c Config) Validate() error {
	switch {
	case c.Dir != "" && c.MinIO.Endpoint != "":
		return fmt.Errorf("objstore: %w: give -storage-dir or -minio-endpoint, not both", ErrInvalidArgument)
	case c.Dir != "":
		return nil
	case c.MinIO.Endpoint != "":
		return c.MinIO.Validate()
	}
	return ErrNoStore
}

// Open returns the configured store without waiting for its server: a
// MinIO store is a *Gate (OpenMinIO) that answers ErrUnavailable until
// the server answers and the bucket exists, so a process serves what does
// not need files while storage is down. Its prober logs with o.Log,
// exports parley_storage_up to o.Registry and runs until ctx ends.
func (c Config) Open(ctx context.Context, o GateOptions) (Store, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if c.Dir != "" {
		return NewDir(c.Dir)
	}
	return OpenMinIO(ctx, c.MinIO, o)
}
