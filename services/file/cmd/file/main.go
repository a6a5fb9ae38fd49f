// Command file runs one replica of Parley's file service: file offers,
// answers, upload bookkeeping, download authorization and retention (see
// package filesvc). The bytes go between gateways and the object store
// (MinIO, or a local directory on a single machine); every replica and
// every gateway must use the same store.
//
// Every flag can also be set as PARLEY_<FLAG> (-file-ttl: PARLEY_FILE_TTL);
// see -help.
package main

import (
	"context"
	"flag"
	"os"
	"os/signal"
	"syscall"

	"github.com/parleychat/parley/libs/objstore"
	"github.com/parleychat/parley/libs/service"
	"github.com/parleychat/parley/services/file/filesvc"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	service.Exit("file", err)
}

func run(sigCtx context.Context, args []string) error {
	var cfg filesvc.Config
	var sc objstore.Config
	p, err := service.Setup("file", "127.0.0.1:7494", args, func(fs *flag.FlagSet) {
		cfg.RegisterFlags(fs)
		sc.RegisterFlags(fs)
	})
	if err != nil {
		return err
	}
	defer p.Close()
	st, err := sc.Open(sigCtx)
	if err != nil {
		return err
	}
	svc, err := filesvc.New(cfg, filesvc.Deps{NC: p.NC, Storage: st, Log: p.Log, Registry: p.Registry})
	if err != nil {
		return err
	}
	admin, err := p.Common.NewAdmin(p.Registry, p.Log, map[string]func() error{"file": svc.Ready})
	if err != nil {
		return err
	}
	return service.Serve(sigCtx, p.Log, p.Common.ShutdownTimeout, admin, svc.Run)
}
