package main

import (
	"context"
	"os"

	"github.com/parleychat/parley/clients/internal/tui"
	"github.com/parleychat/parley/clients/parley"
)

func cmdTUI(ctx context.Context, a *app, args []string) error {
	fs := a.flags("tui", "")
	downloads := fs.String("download-dir", os.Getenv("PARLEY_DOWNLOAD_DIR"), "where received files are saved (default: the current folder; env PARLEY_DOWNLOAD_DIR)")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	key, err := a.serverKey()
	if err != nil {
		return err
	}
	opts, err := a.clientOptions()
	if err != nil {
		return err
	}
	cfg := tui.Config{
		Server:      a.g.server,
		User:        a.g.user,
		Options:     append(opts, parley.WithDevice("parley-tui")),
		DownloadDir: *downloads,
		SaveSession: func(s *parley.Session) error {
			return a.store().save(key, s)
		},
		ForgetSession: func(user string) error {
			return a.store().forget(key, user)
		},
	}
	if saved, err := a.store().load(key, a.g.user); err == nil && saved != nil {
		cfg.Token = saved.Token
		cfg.User = saved.Username
	}
	return tui.Run(ctx, cfg)
}
