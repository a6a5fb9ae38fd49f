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
	admin, err := common.NewAdmin(reg, log, map[string]func() error{"nats": service.NATSReady(nc), "gateway": srv.Ready})
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	return service.Serve(ctx, log, common.ShutdownTimeout, admin, srv.Run)
}
