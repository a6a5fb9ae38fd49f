// Command rendezvous runs one replica of Parley's rendezvous for direct
// (peer-to-peer) sessions: a STUN server on two addresses (RFC 8489,
// RFC 5780) that also records each session's server-reflexive addresses,
// and the signalling that opens, answers, updates and closes sessions and
// introduces the two sides (see package rdvsvc, docs/protocol.md §20).
// Any number of replicas may run on one NATS: they share sessions through
// JetStream KV only, so any replica answers any request or registration.
//
// Every flag can also be set as PARLEY_<FLAG> (-stun-alt-addr:
// PARLEY_STUN_ALT_ADDR); see -help.
package main

import (
	"context"
	"flag"

	"github.com/parleychat/parley/libs/service"
	"github.com/parleychat/parley/services/rendezvous/rdvsvc"
)

func main() { service.Main("rendezvous", run) }

// run serves until ctx ends (a signal), then shuts down gracefully within
// -shutdown-timeout.
func run(ctx context.Context, args []string) error {
	var cfg rdvsvc.Config
	register := func(fs *flag.FlagSet) { cfg.RegisterFlags(fs) }
	return service.Run(ctx, "rendezvous", "127.0.0.1:7496", args, register, func(_ context.Context, p *service.Process) (service.Component, error) {
		return rdvsvc.New(cfg, p.Deps())
	})
}
