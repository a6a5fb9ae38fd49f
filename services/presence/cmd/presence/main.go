// Command presence runs the presence service: who is online, from the
// gateways' connections, kept in Redis (see package presencesvc).
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/redis/go-redis/v9"

	"github.com/parleychat/parley/libs/service"
	"github.com/parleychat/parley/services/presence/presencesvc"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	service.Exit("presence", err)
}

// run serves until sigCtx ends (a signal), then shuts down gracefully
// within -shutdown-timeout.
func run(sigCtx context.Context, args []string) error {
	var (
		cfg  presencesvc.Config
		rcfg presencesvc.RedisConfig
	)
	p, err := service.Setup("presence", "127.0.0.1:7492", args, func(fs *flag.FlagSet) {
		cfg.RegisterFlags(fs)
		rcfg.RegisterFlags(fs)
	})
	if err != nil {
		return err
	}
	defer p.Close()
	// go-redis logs pool dial failures itself; route them to our logger at
	// debug level (the service already reports Redis trouble, once per
	// outage, at warn).
	redis.SetLogger(redisLog{p.Log})
	rdb := rcfg.NewClient()
	defer rdb.Close()

	svc, err := presencesvc.New(cfg, presencesvc.Deps{NC: p.NC, Redis: rdb, Log: p.Log, Registry: p.Registry})
	if err != nil {
		return err
	}
	admin, err := p.Common.NewAdmin(p.Registry, p.Log, map[string]func() error{"presence": svc.Ready})
	if err != nil {
		return err
	}
	return service.Serve(sigCtx, p.Log, p.Common.ShutdownTimeout, admin, svc.Run)
}

// redisLog adapts slog to go-redis's process-wide internal logger.
type redisLog struct{ log *slog.Logger }

func (l redisLog) Printf(ctx context.Context, format string, v ...any) {
	l.log.DebugContext(ctx, "redis client: "+fmt.Sprintf(format, v...))
}
