// Command messaging runs one replica of Parley's messaging service: the
// public room and private conversations, stored durably in NATS JetStream,
// answering gateways over NATS (see package msgsvc). Run any number of
// replicas against one NATS (JetStream) system.
//
// Every flag can also be set as PARLEY_<FLAG> (-msg-retention:
// PARLEY_MSG_RETENTION); see -help.
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
	"github.com/parleychat/parley/services/messaging/msgsvc"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "messaging:", err)
		os.Exit(1)
	}
}

// run serves until sigCtx ends (a signal), then shuts down gracefully
// within -shutdown-timeout.
func run(sigCtx context.Context, args []string) error {
	fs := flag.NewFlagSet("messaging", flag.ContinueOnError)
	var common service.Common
	service.RegisterCommon(fs, &common, "127.0.0.1:7493")
	var cfg msgsvc.Config
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
	nc, err := service.ConnectNATS(common.NATSURL, "parley-messaging", log)
	if err != nil {
		return fmt.Errorf("nats: %w", err)
	}
	defer nc.Close()

	reg := service.NewRegistry()
	svc, err := msgsvc.New(cfg, msgsvc.Deps{NC: nc, Log: log, Registry: reg})
	if err != nil {
		return err
	}
	admin, err := common.NewAdmin(reg, log, map[string]func() error{"messaging": svc.Ready})
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
