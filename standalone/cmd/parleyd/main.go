// Command parleyd runs all of Parley in one process: the gateway, every
// service (the rendezvous's STUN server on 127.0.0.1:3478 and
// 127.0.0.2:3479), an in-process NATS with JetStream (data in
// -data-dir) and an in-process presence store. No external server and no
// config file are needed: `parleyd` alone is a working chat server on
// 127.0.0.1. Every flag can be set as PARLEY_<FLAG> too.
//
// Nothing is exposed beyond loopback without protection: client listeners
// need TLS, -nats-listen needs -nats-token and -admin-addr needs
// -admin-token on a non-loopback address, unless -insecure.
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

	"github.com/parleychat/parley/libs/service"
	"github.com/parleychat/parley/standalone/server"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "parleyd:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("parleyd", flag.ContinueOnError)
	var common service.Common
	service.RegisterCommon(fs, &common, "127.0.0.1:7490")
	fs.Lookup("admin-addr").Usage += "; parleyd refuses a non-loopback address without -admin-token (or -insecure)"
	var cfg server.Config
	cfg.RegisterFlags(fs)
	if err := service.Parse(fs, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	// Every flag is checked before anything starts, and every problem
	// reported at once.
	adminErr := server.CheckAdmin(common.AdminAddr, common.AdminToken, cfg.Gateway.Insecure)
	runnerErr := errors.Join(cfg.Runner.Check(common.ShutdownTimeout), cfg.Gateway.CheckShutdown(common.ShutdownTimeout))
	log, logErr := service.NewLogger(os.Stderr, common.LogFormat, common.LogLevel)
	if logErr != nil {
		log = slog.New(slog.DiscardHandler)
	}
	reg := service.NewRegistry()
	srv, err := server.New(cfg, log, reg)
	if err := errors.Join(adminErr, runnerErr, logErr, err); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := srv.Start(); err != nil {
		return err
	}
	admin, err := common.NewAdmin(reg, log, map[string]func() error{"parley": srv.Ready})
	if err != nil {
		return err
	}
	var adminAddr string
	if admin != nil {
		a, _ := admin.Listen()
		adminAddr = "http://" + a.String()
	}
	ready := "parleyd ready"
	if a := srv.TCPAddr(); a != nil {
		ready += " tcp=" + a.String()
	}
	if a := srv.HTTPAddr(); a != nil {
		scheme := "ws"
		if cfg.Gateway.TLSCert != "" {
			scheme = "wss"
		}
		ready += fmt.Sprintf(" ws=%s://%s/v1/ws", scheme, a)
	}
	if a := srv.UDPAddr(); a != nil {
		ready += " udp=" + a.String()
	}
	if p, a := srv.STUNAddrs(); a != "" {
		ready += " stun=" + p + "," + a
	} else {
		ready += " stun=" + p
	}
	if adminAddr != "" {
		ready += " admin=" + adminAddr
	}
	if u := srv.NATSURL(); u != "" {
		ready += " nats=" + u
	}
	fmt.Println(ready)
	fmt.Println("connect with: parley --server tcp://" + addrOr(srv, "127.0.0.1:7420") + "   (data in " + cfg.DataDir + ")")

	return service.Serve(ctx, log, common.ShutdownTimeout, admin, srv.Run)
}

func addrOr(srv *server.Server, def string) string {
	if a := srv.TCPAddr(); a != nil {
		return a.String()
	}
	return def
}
