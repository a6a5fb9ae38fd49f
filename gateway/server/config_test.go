package server_test

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/parleychat/parley/gateway/server"
	"github.com/parleychat/parley/libs/testenv"
)

// TestOrigins: -cors-origins takes exact web origins only, as browsers send
// them in Origin; a wildcard or anything with a path is refused.
func TestOrigins(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string // nil: refused
	}{
		{"", []string{}},
		{"https://chat.example.com", []string{"https://chat.example.com"}},
		{" https://Chat.Example.com:443 , http://localhost:5173 ", []string{"https://chat.example.com", "http://localhost:5173"}},
		{"http://a.example:80,https://b.example:8443/", []string{"http://a.example", "https://b.example:8443"}},
		{"*", nil},
		{"null", nil},
		{"chat.example.com", nil},
		{"ftp://chat.example.com", nil},
		{"https://chat.example.com/app", nil},
		{"https://user@chat.example.com", nil},
		{"https://chat.example.com?x=1", nil},
		{"https://", nil},
	} {
		var o server.Origins
		err := o.Set(tc.in)
		switch {
		case tc.want == nil && err == nil:
			t.Errorf("%q accepted as %v", tc.in, o)
		case tc.want != nil && err != nil:
			t.Errorf("%q refused: %v", tc.in, err)
		case tc.want != nil && !slices.Equal([]string(o), tc.want) && !(len(o) == 0 && len(tc.want) == 0):
			t.Errorf("%q = %v, want %v", tc.in, o, tc.want)
		}
	}
	cfg := testConfig()
	cfg.CORSOrigins = server.Origins{"*"}
	if _, err := server.New(cfg, server.Deps{NC: testenv.Connect(t, testenv.NATS(t))}); !errors.Is(err, server.ErrInvalidLimit) {
		t.Errorf("New with -cors-origins *: %v, want ErrInvalidLimit", err)
	}
}

// TestConfigValidateReportsAll: Validate names every bad flag at once, so
// an operator fixes a configuration in one round, and checks the TLS files.
func TestConfigValidateReportsAll(t *testing.T) {
	cfg := testConfig()
	cfg.IdleTimeout = 0
	cfg.GatewayID = "gw.1"
	cfg.RoomBatch = 2 * time.Second
	cfg.TLSCert, cfg.TLSKey = "/nonexistent/cert.pem", "/nonexistent/key.pem"
	err := cfg.Validate()
	if err == nil {
		t.Fatal("Validate accepted the config")
	}
	for _, flag := range []string{"-idle-timeout", "-gateway-id", "-room-batch", "-tls-cert"} {
		if !strings.Contains(err.Error(), flag) {
			t.Errorf("%q does not name %s", err, flag)
		}
	}
	if err := testConfig().Validate(); err != nil {
		t.Errorf("Validate of the test config: %v", err)
	}
}
