// Command presence runs the presence service: who is online, from the
// gateways' connections, kept in Redis (see package presencesvc).
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

	"github.com/redis/go-redis/v9"

	"github.com/parleychat/parley/libs/service"
	"github.com/parleychat/parley/services/presence/presencesvc"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "presence:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("presence", flag.ContinueOnError)
	var (
		common service.Common
		cfg    presencesvc.Config
		rcfg   presencesvc.RedisConfig
	)
	service.RegisterCommon(fs, &common, "127.0.0.1:7492")
	cfg.RegisterFlags(fs)
	rcfg.RegisterFlags(fs)
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

	nc, err := service.ConnectNATS(common.NATSURL, "parley-presence", log)
	if err != nil {
		return fmt.Errorf("nats: %w", err)
	}
	defer nc.Close()
	// go-redis logs pool dial failures itself; route them to our logger at
	// debug level (the service already reports Redis trouble, once per
	// outage, at warn).
	redis.SetLogger(redisLog{log})
	rdb := rcfg.NewClient()
	defer rdb.Close()

	reg := service.NewRegistry()
	svc, err := presencesvc.New(cfg, presencesvc.Deps{NC: nc, Redis: rdb, Log: log, Registry: reg})
	if err != nil {
		return err
	}
	admin, err := common.NewAdmin(reg, log, map[string]func() error{"presence": svc.Ready})
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := service.Serve(ctx, log, common.ShutdownTimeout, admin, svc.Run); err != nil {
		return err
	}
	// Published events still buffered in the client go out before exit.
	if nc.IsConnected() {
		if err := nc.FlushTimeout(time.Second); err != nil {
			log.Warn("nats flush on shutdown", "err", err)
		}
	}
	log.Info("stopped")
	return nil
}

// redisLog adapts slog to go-redis's process-wide internal logger.
type redisLog struct{ log *slog.Logger }

func (l redisLog) Printf(ctx context.Context, format string, v ...any) {
	l.log.DebugContext(ctx, "redis client: "+fmt.Sprintf(format, v...))
}
