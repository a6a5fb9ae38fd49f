// Command presence runs the presence service: who is online, from the
// gateways' connections, kept in Redis (see package presencesvc).
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"

	"github.com/redis/go-redis/v9"

	"github.com/parleychat/parley/libs/service"
	"github.com/parleychat/parley/services/presence/presencesvc"
)

func main() { service.Main("presence", run) }

// run serves until ctx ends (a signal), then shuts down gracefully within
// -shutdown-timeout.
func run(ctx context.Context, args []string) error {
	var (
		cfg  presencesvc.Config
		rcfg presencesvc.RedisConfig
	)
	register := func(fs *flag.FlagSet) {
		cfg.RegisterFlags(fs)
		rcfg.RegisterFlags(fs)
	}
	return service.Run(ctx, "presence", "127.0.0.1:7492", args, register, func(_ context.Context, p *service.Process) (service.Component, error) {
		// go-redis logs pool dial failures itself; route them to our
		// logger at debug level (the service already reports Redis
		// trouble, once per outage, at warn).
		redis.SetLogger(redisLog{p.Log})
		rdb := rcfg.NewClient()
		p.Defer(func() { _ = rdb.Close() })
		return presencesvc.New(cfg, p.Deps(), rdb)
	})
}

// redisLog adapts slog to go-redis's process-wide internal logger.
type redisLog struct{ log *slog.Logger }

func (l redisLog) Printf(ctx context.Context, format string, v ...any) {
	l.log.DebugContext(ctx, "redis client: "+fmt.Sprintf(format, v...))
}
