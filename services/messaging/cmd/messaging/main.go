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
	"flag"
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
	service.Exit("messaging", err)
}

// run serves until sigCtx ends (a signal), then shuts down gracefully
// within -shutdown-timeout.
func run(sigCtx context.Context, args []string) error {
	var cfg msgsvc.Config
	p, err := service.Setup("messaging", "127.0.0.1:7493", args, func(fs *flag.FlagSet) { cfg.RegisterFlags(fs) })
	if err != nil {
		return err
	}
	defer p.Close()
	svc, err := msgsvc.New(cfg, msgsvc.Deps{NC: p.NC, Log: p.Log, Registry: p.Registry})
	if err != nil {
		return err
	}
	admin, err := p.Common.NewAdmin(p.Registry, p.Log, map[string]func() error{"messaging": svc.Ready})
	if err != nil {
		return err
	}
	return service.Serve(sigCtx, p.Log, p.Common.ShutdownTimeout, admin, svc.Run)
}
