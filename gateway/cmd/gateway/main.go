// Command gateway runs one Parley gateway replica: it accepts client
// connections over TCP/TLS and WebSocket and talks to the services over NATS.
//
// Every flag can also be set as PARLEY_<FLAG> (dashes as underscores), e.g.
// PARLEY_TCP_ADDR=0.0.0.0:7420.
package main

import (
	"context"
	"errors"
	"flag"
	"os"
	"os/signal"
	"syscall"

	"github.com/parleychat/parley/gateway/server"
	"github.com/parleychat/parley/libs/objstore"
	"github.com/parleychat/parley/libs/service"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	service.Exit("gateway", err)
}

// run serves until sigCtx ends (a signal), then shuts down gracefully
// within -shutdown-timeout: clients are told SERVER_SHUTDOWN first.
func run(sigCtx context.Context, args []string) error {
	var cfg server.Config
	var storage objstore.Config
	p, err := service.Setup("gateway", "127.0.0.1:7490", args, func(fs *flag.FlagSet) {
		cfg.RegisterFlags(fs)
		storage.RegisterFlags(fs)
	})
	if err != nil {
		return err
	}
	defer p.Close()
	if err := cfg.CheckShutdown(p.Common.ShutdownTimeout); err != nil {
		return err
	}
	deps := server.Deps{NC: p.NC, Log: p.Log, Registry: p.Registry}
	// Without a store the gateway serves chat only; file endpoints 404.
	// With MinIO it starts at once: file endpoints answer 503 until the
	// server answers (objstore.Gate).
	if st, err := storage.Open(sigCtx, objstore.GateOptions{Log: p.Log, Registry: p.Registry}); err == nil {
		deps.Files = st
	} else if !errors.Is(err, objstore.ErrNoStore) {
		return err
	} else {
		p.Log.Warn("no file storage configured (-storage-dir or -minio-endpoint): file transfer is off")
	}
	srv, err := server.New(cfg, deps)
	if err != nil {
		return err
	}
	if err := srv.Listen(); err != nil {
		return err
	}
	admin, err := p.Common.NewAdmin(p.Registry, p.Log, map[string]func() error{"nats": service.NATSReady(p.NC), "gateway": srv.Ready})
	if err != nil {
		return err
	}
	return service.Serve(sigCtx, p.Log, p.Common.ShutdownTimeout, admin, srv.Run)
}
