// Command parley-minio-setup gives Parley a MinIO user of its own, so the
// gateways and the file service never hold MinIO's root credentials.
//
// With the root credentials it makes sure, idempotently, that
//   - the bucket exists (default parley-files),
//   - a policy (default parley-files-rw) allows exactly what Parley does in
//     that bucket and nothing else (no other bucket, no admin API),
//   - the user exists with the given secret key and that policy attached.
//
// Run as a second container of the MinIO pod (k8s/base/minio.yaml): it
// waits for the server, applies the above, and applies it again every
// -interval (a restored or wiped volume, a changed password) until SIGTERM.
// With -check it instead exits 0 only when Parley's user can reach the
// bucket: the pod's readiness probe, so the MinIO Service sends no traffic
// before Parley's credentials work.
//
// Credentials come from the environment only (never flags, which show in
// process listings): MINIO_ROOT_USER, MINIO_ROOT_PASSWORD (the server's
// own), MINIO_USER_ACCESS_KEY, MINIO_USER_SECRET_KEY (Parley's user).
//
// Licence note: it imports github.com/minio/madmin-go (GNU AGPL v3), the
// only client of MinIO's admin API, so the built binary is covered by the
// AGPL. It lives in its own module (not in go.work; build with GOWORK=off)
// and ships only inside the MinIO image (deploy/docker/minio.Dockerfile),
// beside the AGPL MinIO server; no Parley binary links it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	os.Exit(run())
}

func run() int {
	fs := flag.NewFlagSet("parley-minio-setup", flag.ContinueOnError)
	cfg := Config{}
	fs.StringVar(&cfg.Endpoint, "endpoint", "127.0.0.1:9000", "MinIO `host:port`")
	fs.BoolVar(&cfg.TLS, "tls", false, "HTTPS to MinIO")
	fs.StringVar(&cfg.Bucket, "bucket", "parley-files", "the bucket Parley stores files in")
	fs.StringVar(&cfg.Policy, "policy", "parley-files-rw", "name of the policy created for the bucket")
	interval := fs.Duration("interval", 5*time.Minute, "how often to apply the setup again; 0: once, then exit")
	wait := fs.Duration("wait", 2*time.Minute, "how long to wait for MinIO to answer before giving up")
	check := fs.Bool("check", false, "only check that Parley's user can reach the bucket (exit 0) or not (exit 1)")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return 2
	}
	cfg.RootUser = os.Getenv("MINIO_ROOT_USER")
	cfg.RootPassword = os.Getenv("MINIO_ROOT_PASSWORD")
	cfg.AccessKey = os.Getenv("MINIO_USER_ACCESS_KEY")
	cfg.SecretKey = os.Getenv("MINIO_USER_SECRET_KEY")

	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	if *check {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if err := Check(cctx, cfg); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		return 0
	}

	if err := cfg.validate(); err != nil {
		log.Error("invalid configuration", "err", err)
		return 2
	}
	for {
		wctx, cancel := context.WithTimeout(ctx, *wait)
		err := Ensure(wctx, cfg, log)
		cancel()
		switch {
		case ctx.Err() != nil:
			return 0
		case err != nil:
			log.Error("setup failed", "err", err)
			if *interval == 0 {
				return 1
			}
		default:
			log.Info("setup applied", "bucket", cfg.Bucket, "policy", cfg.Policy, "user", cfg.AccessKey)
			if *interval == 0 {
				return 0
			}
		}
		// After a failure retry soon; after success, at the interval.
		next := *interval
		if err != nil {
			next = min(next, 10*time.Second)
		}
		select {
		case <-ctx.Done():
			return 0
		case <-time.After(next):
		}
	}
}

// errConfig reports a missing or unusable setting.
var errConfig = errors.New("invalid configuration")
