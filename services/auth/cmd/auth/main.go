// Command auth runs one replica of Parley's auth service: accounts, logins,
// session tokens and the session policy, answering gateways over NATS.
// Run any number of replicas against one NATS (JetStream) cluster.
//
// Every flag can also be set as PARLEY_<FLAG> (-token-ttl: PARLEY_TOKEN_TTL);
// see -help.
package main

import (
	"context"

	"github.com/parleychat/parley/libs/service"
	"github.com/parleychat/parley/services/auth/authsvc"
)

func main() { service.Main("auth", run) }

// run serves until ctx ends (a signal), then shuts down gracefully within
// -shutdown-timeout.
func run(ctx context.Context, args []string) error {
	var cfg authsvc.Config
	return service.Run(ctx, "auth", "127.0.0.1:7491", args, cfg.RegisterFlags, func(_ context.Context, p *service.Process) (service.Component, error) {
		return authsvc.New(cfg, p.Deps())
	})
}
