// Command parleyd runs all of Parley in one process: the gateway, the auth
// and presence services, an in-process NATS with JetStream (data in
// -data-dir) and an in-process presence store. No external server and no
// config file are needed: `parleyd` alone is a working chat server on
// 127.0.0.1. Every flag can be set as PARLEY_<FLAG> too.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

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
	var cfg server.Config
	cfg.RegisterFlags(fs)
	if err := service.Parse(fs, args); err != nil {
		return err
	}
	log, err := service.NewLogger(os.Stderr, common.LogFormat, common.LogLevel)
	if err != nil {
		return err
	}
	reg := service.NewRegistry()
	srv, err := server.New(cfg, log, reg)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := srv.Start(); err != nil {
		return err
	}
	admin := &service.Admin{Addr: common.AdminAddr, Gather: reg, Log: log,
		Checks: map[string]func() error{"parley": srv.Ready}}
	var adminAddr string
	if common.AdminAddr != "" {
		a, err := admin.Listen()
		if err != nil {
			return err
		}
		adminAddr = "http://" + a.String()
	}
	ready := "parleyd ready "
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
	if adminAddr != "" {
		ready += " admin=" + adminAddr
	}
	if u := srv.NATSURL(); u != "" {
		ready += " nats=" + u
	}
	fmt.Println(ready)
	fmt.Println("connect with: parley --server tcp://" + addrOr(srv, "127.0.0.1:7420") + "   (data in " + cfg.DataDir + ")")

	runs := []func(context.Context) error{srv.Run}
	if common.AdminAddr != "" {
		runs = append(runs, admin.Run)
	}
	done := make(chan error, 1)
	go func() { done <- service.Group(ctx, runs...) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down", "timeout", common.ShutdownTimeout)
	select {
	case err := <-done:
		return err
	case <-time.After(common.ShutdownTimeout):
		return fmt.Errorf("shutdown took longer than %s", common.ShutdownTimeout)
	}
}

func addrOr(srv *server.Server, def string) string {
	if a := srv.TCPAddr(); a != nil {
		return a.String()
	}
	return def
}
