// Command gateway runs one Parley gateway replica: it accepts client
// connections over TCP/TLS and WebSocket and talks to the services over NATS.
//
// Every flag can also be set as PARLEY_<FLAG> (dashes as underscores), e.g.
// PARLEY_TCP_ADDR=0.0.0.0:7420.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/parleychat/parley/gateway/server"
	"github.com/parleychat/parley/libs/service"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "gateway:", err)
		os.Exit(1)
	}
}

func run() error {
	fs := flag.NewFlagSet("gateway", flag.ContinueOnError)
	var common service.Common
	service.RegisterCommon(fs, &common, "127.0.0.1:7490")
	var cfg server.Config
	cfg.RegisterFlags(fs)
	if err := service.Parse(fs, os.Args[1:]); err != nil {
		return err
	}
	log, err := service.NewLogger(os.Stderr, common.LogFormat, common.LogLevel)
	if err != nil {
		return err
	}
	nc, err := service.ConnectNATS(common.NATSURL, "parley-gateway", log)
	if err != nil {
		return fmt.Errorf("nats: %w", err)
	}
	defer nc.Close()

	reg := service.NewRegistry()
	srv, err := server.New(cfg, server.Deps{NC: nc, Log: log, Registry: reg})
	if err != nil {
		return err
	}
	if err := srv.Listen(); err != nil {
		return err
	}
	runs := []func(context.Context) error{srv.Run}
	if common.AdminAddr != "" {
		admin := &service.Admin{
			Addr:   common.AdminAddr,
			Gather: reg,
			Checks: map[string]func() error{"nats": service.NATSReady(nc), "gateway": srv.Ready},
			Log:    log,
		}
		if _, err := admin.Listen(); err != nil {
			return err
		}
		runs = append(runs, admin.Run)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	done := make(chan error, 1)
	go func() { done <- service.Group(ctx, runs...) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	log.Info("signal received, shutting down", "timeout", common.ShutdownTimeout)
	select {
	case err := <-done:
		return err
	case <-time.After(common.ShutdownTimeout):
		return fmt.Errorf("shutdown took longer than %s", common.ShutdownTimeout)
	}
}
