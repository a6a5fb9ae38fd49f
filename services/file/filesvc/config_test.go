package filesvc_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/parleychat/parley/libs/objstore"
	"github.com/parleychat/parley/libs/service"
	"github.com/parleychat/parley/libs/testenv"
	"github.com/parleychat/parley/services/file/filesvc"
)

// TestConfig: a replica is not made from a configuration it could not
// run with; every flag's rule is checked, all at once.
func TestConfig(t *testing.T) {
	nc := testenv.Connect(t, testenv.NATS(t))
	store, err := objstore.NewDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	deps := service.Deps{NC: nc}
	if _, err := filesvc.New(filesvc.DefaultConfig(), deps, store); err != nil {
		t.Fatalf("the defaults: %v", err)
	}
	for _, tc := range []struct {
		rule string
		edit func(*filesvc.Config)
	}{
		{"-file-max-size at least 1", func(c *filesvc.Config) { c.MaxFileSize = 0 }},
		{"-file-max-size at most 1 TiB", func(c *filesvc.Config) { c.MaxFileSize = filesvc.MaxFileSizeLimit + 1 }},
		{"-file-ttl positive", func(c *filesvc.Config) { c.FileTTL = 0 }},
		{"-file-upload-ttl positive", func(c *filesvc.Config) { c.UploadTTL = -time.Second }},
		{"-file-token-ttl positive", func(c *filesvc.Config) { c.TokenTTL = 0 }},
		{"-file-lease-ttl positive", func(c *filesvc.Config) { c.LeaseTTL = 0 }},
		{"-file-sweep-interval positive", func(c *filesvc.Config) { c.SweepInterval = 0 }},
		{"-file-request-timeout positive", func(c *filesvc.Config) { c.RequestTimeout = 0 }},
		{"-file-token-key at least 32 bytes", func(c *filesvc.Config) { c.TokenKey = "short" }},
		{"-file-kv-replicas 1 to 5", func(c *filesvc.Config) { c.KVReplicas = 6 }},
		{"-file-kv-replicas at least 1", func(c *filesvc.Config) { c.KVReplicas = 0 }},
		{"-file-user-quota not negative", func(c *filesvc.Config) { c.UserQuota = -1 }},
		{"-file-offer-rate not negative", func(c *filesvc.Config) { c.OfferRate = -1 }},
		{"-file-workers at least 1", func(c *filesvc.Config) { c.Workers = 0 }},
	} {
		cfg := filesvc.DefaultConfig()
		tc.edit(&cfg)
		if _, err := filesvc.New(cfg, deps, store); !errors.Is(err, filesvc.ErrBadConfig) {
			t.Errorf("%s: New: %v", tc.rule, err)
		}
	}
	bad := filesvc.DefaultConfig()
	bad.FileTTL, bad.Workers = 0, 0
	if _, err := filesvc.New(bad, deps, store); err == nil || !strings.Contains(err.Error(), "-file-ttl") || !strings.Contains(err.Error(), "-file-workers") {
		t.Errorf("two broken rules: %v, want both named", err)
	}
	if _, err := filesvc.New(filesvc.DefaultConfig(), service.Deps{}, store); !errors.Is(err, service.ErrNoNATS) {
		t.Errorf("no NATS: %v", err)
	}
	if _, err := filesvc.New(filesvc.DefaultConfig(), service.Deps{NC: nc}, nil); !errors.Is(err, filesvc.ErrNoStorage) {
		t.Errorf("no storage: %v", err)
	}
}
