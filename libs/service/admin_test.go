package service_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/parleychat/parley/libs/service"
)

// startAdmin runs the admin port of Common c on a free loopback port and
// returns its base URL.
func startAdmin(t *testing.T, c service.Common) string {
	t.Helper()
	c.AdminAddr = "127.0.0.1:0"
	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewCounter(prometheus.CounterOpts{Name: "parley_test_total", Help: "a test counter"}))
	a, err := c.NewAdmin(reg, slog.New(slog.DiscardHandler), map[string]func() error{"ok": func() error { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	addr, err := a.Listen()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("admin Run: %v", err)
		}
	})
	return "http://" + addr.String()
}

func get(t *testing.T, url, authorization string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

// With -admin-token, /metrics answers only the bearer of the token;
// /healthz and /readyz stay open for probes.
func TestAdminToken(t *testing.T) {
	const token = "0123456789abcdef-metrics"
	base := startAdmin(t, service.Common{AdminToken: token})
	for _, tc := range []struct {
		name, path, auth string
		want             int
	}{
		{"healthz needs nothing", "/healthz", "", http.StatusOK},
		{"readyz needs nothing", "/readyz", "", http.StatusOK},
		{"metrics without a token", "/metrics", "", http.StatusUnauthorized},
		{"metrics with a wrong token", "/metrics", "Bearer 0123456789abcdef-metricz", http.StatusUnauthorized},
		{"metrics with a prefix of the token", "/metrics", "Bearer 0123456789abcdef", http.StatusUnauthorized},
		{"metrics with the token as basic auth", "/metrics", "Basic " + token, http.StatusUnauthorized},
		{"metrics with the token", "/metrics", "Bearer " + token, http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := get(t, base+tc.path, tc.auth)
			if code != tc.want {
				t.Fatalf("%s: status %d, want %d (%q)", tc.path, code, tc.want, body)
			}
			if tc.path == "/metrics" && (code == http.StatusOK) != strings.Contains(body, "parley_test_total") {
				t.Errorf("metrics body %q", body)
			}
		})
	}
}

// Without a token /metrics is open, as before.
func TestAdminWithoutToken(t *testing.T) {
	base := startAdmin(t, service.Common{})
	if code, body := get(t, base+"/metrics", ""); code != http.StatusOK || !strings.Contains(body, "parley_test_total") {
		t.Fatalf("metrics without a token configured: %d %q", code, body)
	}
}

// -pprof serves Go's profiles on the admin port, behind the same token as
// /metrics; without it they are not there.
func TestAdminPprof(t *testing.T) {
	const token = "0123456789abcdef-pprof"
	base := startAdmin(t, service.Common{AdminToken: token, Pprof: true})
	if code, _ := get(t, base+"/debug/pprof/", ""); code != http.StatusUnauthorized {
		t.Errorf("pprof index without the token: %d, want 401", code)
	}
	code, body := get(t, base+"/debug/pprof/goroutine?debug=1", "Bearer "+token)
	if code != http.StatusOK || !strings.Contains(body, "goroutine profile:") {
		t.Errorf("goroutine profile with the token: %d %.80q", code, body)
	}
	off := startAdmin(t, service.Common{})
	if code, _ := get(t, off+"/debug/pprof/", ""); code != http.StatusNotFound {
		t.Errorf("pprof index without -pprof: %d, want 404", code)
	}
}

func TestAdminTokenTooShort(t *testing.T) {
	c := service.Common{AdminAddr: "127.0.0.1:0", AdminToken: "short"}
	if _, err := c.NewAdmin(prometheus.NewRegistry(), slog.New(slog.DiscardHandler), nil); err == nil {
		t.Fatal("NewAdmin accepted a 5-character token")
	}
}

func TestIsLoopback(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:7490":       true,
		"127.1.2.3:7490":       true,
		"[::1]:7490":           true,
		"localhost:7490":       true,
		"[::ffff:127.0.0.1]:1": true,
		":7490":                false, // every interface
		"0.0.0.0:7490":         false,
		"[::]:7490":            false,
		"192.0.2.1:7490":       false,
		"example.com:7490":     false, // a name could resolve anywhere
		"127.0.0.1":            false, // not host:port
	} {
		if got := service.IsLoopback(addr); got != want {
			t.Errorf("IsLoopback(%q) = %v, want %v", addr, got, want)
		}
	}
}
