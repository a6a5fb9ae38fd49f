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

	"github.com/parleychat/parley/libs/service"
	"github.com/parleychat/parley/services/messaging/msgsvc"
)

func main() { service.Main("messaging", run) }

// run serves until ctx ends (a signal), then shuts down gracefully within
// -shutdown-timeout.
func run(ctx context.Context, args []string) error {
	var cfg msgsvc.Config
	return service.Run(ctx, "messaging", "127.0.0.1:7493", args, cfg.RegisterFlags, func(_ context.Context, p *service.Process) (service.Component, error) {
		return msgsvc.New(cfg, p.Deps())
	})
}
