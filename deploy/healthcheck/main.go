// Command healthcheck probes one HTTP URL and exits 0 when it answers 2xx.
//
// The runtime image is distroless (no shell, curl or wget), so Docker and
// compose healthchecks need a binary of their own to call the service's admin
// port: HEALTHCHECK CMD ["/healthcheck", "http://127.0.0.1:7491/readyz"].
// Kubernetes does not need it; its kubelet probes the admin port directly.
//
// It lives in its own stdlib-only module (not listed in go.work) so building
// it never touches the services' dependency graph; build it with GOWORK=off.
package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: healthcheck URL")
		os.Exit(2)
	}
	if err := probe(os.Args[1], 3*time.Second); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func probe(url string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	defer resp.Body.Close()
	// The body names the failing readiness checks; show it in `docker inspect`.
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("healthcheck: %s: %s: %s", url, resp.Status, body)
	}
	return nil
}
