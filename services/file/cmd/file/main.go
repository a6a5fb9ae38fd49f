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

	"github.com/parleychat/parley/libs/objstore"
	"github.com/parleychat/parley/libs/service"
	"github.com/parleychat/parley/services/file/filesvc"
)

func main() { service.Main("file", run) }

// run serves until ctx ends (a signal), then shuts down gracefully within
// -shutdown-timeout.
func run(ctx context.Context, args []string) error {
	var (
		cfg filesvc.Config
		sc  objstore.Config
	)
	register := func(fs *flag.FlagSet) {
		cfg.RegisterFlags(fs)
		sc.RegisterFlags(fs)
	}
	return service.Run(ctx, "file", "127.0.0.1:7494", args, register, func(ctx context.Context, p *service.Process) (service.Component, error) {
		// With MinIO, at once: requests that need storage answer
		// UNAVAILABLE until the server answers (objstore.Gate).
		st, err := sc.Open(ctx, objstore.GateOptions{Log: p.Log, Registry: p.Registry})
		if err != nil {
			return nil, err
		}
		if g, ok := st.(*objstore.Gate); ok {
			p.Defer(g.Close)
		}
		return filesvc.New(cfg, p.Deps(), st)
	})
}
