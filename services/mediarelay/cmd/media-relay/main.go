// Command media-relay runs one replica of Parley's media relay: call
// signalling (place, join, reject, leave, mute) and the forwarding of each
// call's audio between the gateways of its participants (see package
// relaysvc). Any number of replicas may run on one NATS: each call's media
// is forwarded by one of them, and the others take it over within about
// -relay-dead-after plus -relay-heartbeat when that one dies.
//
// Every flag can also be set as PARLEY_<FLAG> (-relay-ring-timeout:
// PARLEY_RELAY_RING_TIMEOUT); see -help.
package main

import (
	"context"
	"flag"

	"github.com/parleychat/parley/libs/service"
	"github.com/parleychat/parley/services/mediarelay/relaysvc"
)

func main() { service.Main("media-relay", run) }

// run serves until ctx ends (a signal), then shuts down gracefully within
// -shutdown-timeout.
func run(ctx context.Context, args []string) error {
	var cfg relaysvc.Config
	register := func(fs *flag.FlagSet) { cfg.RegisterFlags(fs) }
	return service.Run(ctx, "media-relay", "127.0.0.1:7495", args, register, func(_ context.Context, p *service.Process) (service.Component, error) {
		return relaysvc.New(cfg, p.Deps())
	})
}
