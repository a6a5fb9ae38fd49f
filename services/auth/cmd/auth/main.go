// Command auth runs one replica of Parley's auth service: accounts, logins,
// session tokens and the session policy, answering gateways over NATS.
// Run any number of replicas against one NATS (JetStream) cluster.
//
// Every flag can also be set as PARLEY_<FLAG> (-token-ttl: PARLEY_TOKEN_TTL);
// see -help.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/parleychat/parley/libs/service"
	"github.com/parleychat/parley/services/auth/authsvc"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "auth:", err)
		os.Exit(1)
	}
}

// run serves until sigCtx ends (a signal), then shuts down gracefully
// within -shutdown-timeout.
func run(sigCtx context.Context, args []string) error {
	fs := flag.NewFlagSet("auth", flag.ContinueOnError)
	var common service.Common
	service.RegisterCommon(fs, &common, "127.0.0.1:7491")
	var cfg authsvc.Config
	cfg.RegisterFlags(fs)
	if err := service.Parse(fs, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	log, err := service.NewLogger(os.Stderr, common.LogFormat, common.LogLevel)
	if err != nil {
		return err
	}
	nc, err := service.ConnectNATS(common.NATSURL, "parley-auth", log)
	if err != nil {
		return fmt.Errorf("nats: %w", err)
	}
	defer nc.Close()

	reg := service.NewRegistry()
	svc, err := authsvc.New(cfg, nc, log, reg)
	if err != nil {
		return err
	}
	admin, err := common.NewAdmin(reg, log, map[string]func() error{"nats": service.NATSReady(nc), "auth": svc.Ready})
	if err != nil {
		return err
	}
	if err := service.Serve(sigCtx, log, common.ShutdownTimeout, admin, svc.Run); err != nil {
		return err
	}
	if err := nc.Drain(); err != nil {
		log.Warn("nats drain", "err", err)
	}
	return nil
}
