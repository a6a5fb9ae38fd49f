// Command gatewayprof is the gateway (the same gateway/server package,
// wired as gateway/cmd/gateway wires it) plus net/http/pprof on
// -pprof-addr, for finding out where the memory of idle connections goes:
//
//	connbench -gateway-bin gatewayprof -profile DIR
//
// fetches a heap profile (after a forced GC) from every gateway once its
// connections have settled, and
//
//	filebench -gateway-bin gatewayprof -profile DIR
//
// CPU profiles during file transfers (it takes the gateway's storage flags,
// -storage-dir or -minio-*, as the gateway does). It is a benchmark tool,
// never deployed.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	_ "net/http/pprof" // registers /debug/pprof on http.DefaultServeMux
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"

	"github.com/parleychat/parley/gateway/server"
	"github.com/parleychat/parley/libs/objstore"
	"github.com/parleychat/parley/libs/service"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "gatewayprof:", err)
		os.Exit(1)
	}
}

func run() error {
	fs := flag.NewFlagSet("gatewayprof", flag.ContinueOnError)
	var common service.Common
	service.RegisterCommon(fs, &common, "127.0.0.1:7490")
	var cfg server.Config
	cfg.RegisterFlags(fs)
	var storage objstore.Config
	storage.RegisterFlags(fs)
	pprofAddr := fs.String("pprof-addr", "127.0.0.1:6060", "net/http/pprof listen address")
	// Go samples one allocation per 512 KiB by default: far too coarse to
	// attribute a few KiB per connection.
	rate := fs.Int("mem-profile-rate", 64, "runtime.MemProfileRate: record one allocation per this many bytes")
	if err := service.Parse(fs, os.Args[1:]); err != nil {
		return err
	}
	runtime.MemProfileRate = *rate
	log, err := service.NewLogger(os.Stderr, common.LogFormat, common.LogLevel)
	if err != nil {
		return err
	}
	nc, err := service.ConnectNATS(common.NATSURL, "parley-gateway", log)
	if err != nil {
		return fmt.Errorf("nats: %w", err)
	}
	defer nc.Close()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	reg := service.NewRegistry()
	deps := server.Deps{NC: nc, Log: log, Registry: reg}
	// As gateway/cmd/gateway: without a store, file transfer is off.
	if st, err := storage.Open(ctx, objstore.GateOptions{Log: log}); err == nil {
		deps.Files = st
	} else if !errors.Is(err, objstore.ErrNoStore) {
		return err
	}
	srv, err := server.New(cfg, deps)
	if err != nil {
		return err
	}
	if err := srv.Listen(); err != nil {
		return err
	}
	admin := &service.Admin{
		Addr:   common.AdminAddr,
		Gather: reg,
		Checks: map[string]func() error{"nats": service.NATSReady(nc), "gateway": srv.Ready},
		Log:    log,
	}
	if _, err := admin.Listen(); err != nil {
		return err
	}
	pl, err := net.Listen("tcp", *pprofAddr)
	if err != nil {
		return err
	}
	ps := &http.Server{Handler: http.DefaultServeMux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := ps.Serve(pl); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("pprof server", "err", err)
		}
	}()
	defer ps.Close()

	done := make(chan error, 1)
	go func() { done <- service.Group(ctx, srv.Run, admin.Run) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	select {
	case err := <-done:
		return err
	case <-time.After(common.ShutdownTimeout):
		return fmt.Errorf("shutdown took longer than %s", common.ShutdownTimeout)
	}
}
