// Command auth runs one replica of Parley's auth service: accounts, logins,
// session tokens and the session policy, answering gateways over NATS.
// Run any number of replicas against one NATS (JetStream) cluster.
//
// Every flag can also be set as PARLEY_<FLAG> (-token-ttl: PARLEY_TOKEN_TTL);
// see -help.
package main

import (
	"context"
	"flag"
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
	service.Exit("auth", err)
}

// run serves until sigCtx ends (a signal), then shuts down gracefully
// within -shutdown-timeout.
func run(sigCtx context.Context, args []string) error {
	var cfg authsvc.Config
	p, err := service.Setup("auth", "127.0.0.1:7491", args, func(fs *flag.FlagSet) { cfg.RegisterFlags(fs) })
	if err != nil {
		return err
	}
	defer p.Close()
	svc, err := authsvc.New(cfg, p.NC, p.Log, p.Registry)
	if err != nil {
		return err
	}
	admin, err := p.Common.NewAdmin(p.Registry, p.Log, map[string]func() error{"nats": service.NATSReady(p.NC), "auth": svc.Ready})
	if err != nil {
		return err
	}
	return service.Serve(sigCtx, p.Log, p.Common.ShutdownTimeout, admin, svc.Run)
}
