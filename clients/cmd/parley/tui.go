package main

import (
	"context"

	"github.com/parleychat/parley/clients/internal/audiodev"
	"github.com/parleychat/parley/clients/internal/tui"
	"github.com/parleychat/parley/clients/parley"
)

// cmdTUI runs the full-screen client. It starts on the login screen, which
// offers to continue the sessions saved on this machine: several TUIs (one
// per terminal) may run side by side as different users, or share one
// user's session. Only an explicit --user (or PARLEY_USER) with a saved
// session resumes it at once.
func cmdTUI(ctx context.Context, a *app, args []string) error {
	fs := a.flags("tui", "")
	downloads := fs.String("download-dir", a.getenv("PARLEY_DOWNLOAD_DIR"), "where received files are saved (env PARLEY_DOWNLOAD_DIR; default: "+downloadsDefault+")")
	policyDefault := a.getenv("PARLEY_DIRECT")
	if policyDefault == "" {
		policyDefault = "ask"
	}
	policyFlag := directPolicyFlag(fs, policyDefault)
	fs.Lookup("direct").Usage += " (env PARLEY_DIRECT)"
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	policy, err := parseDirectPolicy(*policyFlag)
	if err != nil {
		return err
	}
	if *downloads == "" {
		*downloads = a.downloadDir()
	}
	key, err := a.serverKey()
	if err != nil {
		return err
	}
	opts, err := a.clientOptions()
	if err != nil {
		return err
	}
	st := a.store()
	cfg := tui.Config{
		Server:       a.g.server,
		User:         a.g.user,
		Options:      append(opts, parley.WithDevice("parley-tui")),
		DownloadDir:  *downloads,
		DirectPolicy: policy,
		// Each account's device key, pinned peer keys and direct
		// messages, as `parley direct` keeps them.
		StateDir: func(user string) string { return a.deviceDir(key, user) },
		// The real microphone and speaker (none here: the call goes on
		// without them, and the user is told).
		Audio: audiodev.NewSystem(a.logger()),
		SavedUsers: func() []string {
			users, _ := st.users(key)
			return users
		},
		LoadSession: func(user string) (*parley.Session, error) {
			s, err := st.load(key, user)
			if err != nil || s == nil {
				return nil, err
			}
			return s.session(), nil
		},
		SaveSession: func(s *parley.Session, fresh bool) error {
			return st.save(key, s, fresh)
		},
		ForgetSession: func(user, sessionID, token string) error {
			return st.forget(key, user, sessionID, token)
		},
	}
	if a.g.user != "" {
		if saved, err := st.load(key, a.g.user); err == nil && saved != nil {
			cfg.Resume = true
		}
	}
	return tui.Run(ctx, cfg)
}
