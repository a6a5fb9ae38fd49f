package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"time"

	"github.com/parleychat/parley/clients/parley"
)

func cmdRegister(ctx context.Context, a *app, args []string) error {
	return startSession(ctx, a, "register", args, true)
}

func cmdLogin(ctx context.Context, a *app, args []string) error {
	return startSession(ctx, a, "login", args, false)
}

// startSession registers or logs in, prints the session and stores its
// token.
func startSession(ctx context.Context, a *app, name string, args []string, register bool) error {
	fs := a.flags(name, "[username]")
	fromStdin := fs.Bool("password-stdin", false, "read the password from the first line of stdin")
	if err := parse(fs, args, 1); err != nil {
		return err
	}
	key, err := a.serverKey()
	if err != nil {
		return err
	}
	user, err := a.username(fs)
	if err != nil {
		return err
	}
	// The password is read before connecting, so a prompt is not raced by
	// the handshake timeout.
	pw, err := a.passwords(*fromStdin).password(register)
	if err != nil {
		return err
	}
	ctx, cancel := a.withTimeout(ctx)
	defer cancel()
	c, err := a.dial(ctx, parley.WithPresenceFeed(false))
	if err != nil {
		return err
	}
	defer c.Close()
	var sess *parley.Session
	if register {
		sess, err = c.Register(ctx, user, pw)
	} else {
		sess, err = c.Login(ctx, user, pw)
	}
	if err != nil {
		return err
	}
	if err := a.store().save(key, sess, savedLogin); err != nil {
		return fmt.Errorf("logged in, but storing the session failed: %w", err)
	}
	verb := "logged in as"
	if register {
		verb = "registered and logged in as"
	}
	fmt.Fprintf(a.stdout, "%s %s (user %s, session %s%s)\n", verb, sess.Username, sess.UserID, sess.SessionID, expiry(sess))
	return nil
}

func expiry(s *parley.Session) string {
	if s.ExpiresAt.IsZero() {
		return ""
	}
	return ", expires " + s.ExpiresAt.UTC().Format(time.RFC3339)
}

// errNotLoggedIn: no stored session for this server (and user).
var errNotLoggedIn = errors.New("not logged in")

// loadStored finds the stored session for --user (or the last user) on
// the server; it fails before any connection is made when there is none.
func (a *app) loadStored(key string) (*savedSession, error) {
	saved, err := a.store().load(key, a.g.user)
	if err != nil {
		return nil, err
	}
	if saved == nil {
		who := ""
		if a.g.user != "" {
			who = " as " + a.g.user
		}
		return nil, fmt.Errorf("%w%s on %s: run `parley login` first", errNotLoggedIn, who, key)
	}
	return saved, nil
}

// resumeStored resumes saved on c and stores the refreshed token. A token
// the server refuses is read again from the store first: another process
// sharing the session may have replaced it with a newer one (protocol
// §8.3) just before, so the resume is tried once more with that. A session
// the server no longer accepts is forgotten.
func (a *app) resumeStored(ctx context.Context, c *parley.Client, key string, saved *savedSession) (*parley.Session, error) {
	sess, err := c.Resume(ctx, saved.Token)
	if sessionGone(err) {
		if again, lerr := a.store().load(key, saved.Username); lerr == nil && again != nil &&
			again.SessionID == saved.SessionID && again.Token != saved.Token {
			saved = again
			sess, err = c.Resume(ctx, saved.Token)
		}
	}
	if err != nil {
		if sessionGone(err) {
			_ = a.store().forget(key, saved.Username, saved.SessionID, saved.Token)
			return nil, fmt.Errorf("the session of %s has ended (%s): run `parley login` again", saved.Username, describe(err))
		}
		return nil, err
	}
	if err := a.store().save(key, sess, savedResumed); err != nil {
		return nil, fmt.Errorf("storing the refreshed session: %w", err)
	}
	return sess, nil
}

// sessionGone reports whether a resume failed because the token or its
// session is no good any more (rather than the network or the server).
func sessionGone(err error) bool {
	return errors.Is(err, parley.ErrTokenExpired) || errors.Is(err, parley.ErrTokenInvalid) || errors.Is(err, parley.ErrSessionRevoked)
}

// sessionCommand parses fs (no positional arguments), dials, resumes the
// stored session, then runs fn.
func sessionCommand(ctx context.Context, a *app, fs *flag.FlagSet, args []string, fn func(ctx context.Context, c *parley.Client, key string, s *parley.Session) error) error {
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	return withSession(ctx, a, fn)
}

// withSession dials, resumes the stored session, then runs fn, all bounded
// by --timeout. The client does not reconnect: a one-shot command fails
// instead of hanging.
func withSession(ctx context.Context, a *app, fn func(ctx context.Context, c *parley.Client, key string, s *parley.Session) error) error {
	ctx, cancel := a.withTimeout(ctx)
	defer cancel()
	c, key, s, err := a.openSession(ctx, parley.WithReconnect(false), parley.WithPresenceFeed(false))
	if err != nil {
		return err
	}
	defer c.Close()
	return fn(ctx, c, key, s)
}

// openSession loads the stored session for --user, dials with the global
// options plus extra and resumes it; the caller closes the client.
func (a *app) openSession(ctx context.Context, extra ...parley.Option) (*parley.Client, string, *parley.Session, error) {
	key, err := a.serverKey()
	if err != nil {
		return nil, "", nil, err
	}
	saved, err := a.loadStored(key)
	if err != nil {
		return nil, "", nil, err
	}
	opts, err := a.clientOptions()
	if err != nil {
		return nil, "", nil, err
	}
	c, err := parley.Dial(ctx, a.g.server, append(opts, extra...)...)
	if err != nil {
		return nil, "", nil, err
	}
	s, err := a.resumeStored(ctx, c, key, saved)
	if err != nil {
		c.Close()
		return nil, "", nil, err
	}
	return c, key, s, nil
}

func cmdWhoami(ctx context.Context, a *app, args []string) error {
	return sessionCommand(ctx, a, a.flags("whoami", ""), args, func(_ context.Context, _ *parley.Client, _ string, s *parley.Session) error {
		fmt.Fprintln(a.stdout, s.Username)
		return nil
	})
}

func cmdWho(ctx context.Context, a *app, args []string) error {
	fs := a.flags("who", "")
	asJSON := fs.Bool("json", false, "print a JSON array of {user_id, username, sessions}")
	return sessionCommand(ctx, a, fs, args, func(ctx context.Context, c *parley.Client, _ string, _ *parley.Session) error {
		users, err := c.Who(ctx)
		if err != nil {
			return err
		}
		if *asJSON {
			type jsonUser struct {
				UserID   string `json:"user_id"`
				Username string `json:"username"`
				Sessions int    `json:"sessions"`
			}
			out := make([]jsonUser, 0, len(users))
			for _, u := range users {
				out = append(out, jsonUser{u.UserID, u.Username, u.Sessions})
			}
			enc := json.NewEncoder(a.stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(out)
		}
		for _, u := range users {
			fmt.Fprintln(a.stdout, u.Username)
		}
		return nil
	})
}

func cmdLogout(ctx context.Context, a *app, args []string) error {
	return sessionCommand(ctx, a, a.flags("logout", ""), args, func(ctx context.Context, c *parley.Client, key string, s *parley.Session) error {
		if err := c.Logout(ctx); err != nil {
			return err
		}
		if err := a.store().forget(key, s.Username, s.SessionID, ""); err != nil {
			return fmt.Errorf("logged out, but removing the stored token failed: %w", err)
		}
		fmt.Fprintf(a.stdout, "logged out %s\n", s.Username)
		return nil
	})
}

// cmdWatch prints the online list as it changes, one line per change:
// "online NAME" or "offline NAME". The first snapshot prints every user
// already online; after a reconnect only the differences are printed, so
// the lines always add up to the current list. It runs until interrupted
// (exit 0) or the session ends (exit 1).
func cmdWatch(ctx context.Context, a *app, args []string) error {
	fs := a.flags("watch", "")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	dctx, cancel := a.withTimeout(ctx)
	c, key, _, err := a.openSession(dctx)
	cancel()
	if err != nil {
		return err
	}
	defer c.Close()

	shown := map[string]string{} // user id -> username, as printed
	online := func(u parley.OnlineUser) {
		if _, ok := shown[u.UserID]; !ok {
			shown[u.UserID] = u.Username
			fmt.Fprintf(a.stdout, "online %s\n", u.Username)
		}
	}
	offline := func(id, name string) {
		if _, ok := shown[id]; ok {
			delete(shown, id)
			fmt.Fprintf(a.stdout, "offline %s\n", name)
		}
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-c.Events():
			if !ok {
				if err := c.Err(); err != nil && !errors.Is(err, context.Canceled) {
					return err
				}
				return nil
			}
			switch ev := ev.(type) {
			case parley.PresenceSnapshotEvent:
				now := map[string]bool{}
				for _, u := range ev.Users {
					now[u.UserID] = true
				}
				for id, name := range shown {
					if !now[id] {
						offline(id, name)
					}
				}
				for _, u := range ev.Users {
					online(u)
				}
			case parley.UserOnlineEvent:
				online(ev.User)
			case parley.UserOfflineEvent:
				offline(ev.User.UserID, ev.User.Username)
			case parley.DisconnectedEvent:
				fmt.Fprintf(a.stderr, "parley watch: disconnected (%s); reconnecting\n", describe(ev.Err))
			case parley.ReconnectedEvent:
				if ev.Session != nil {
					_ = a.store().save(key, ev.Session, savedResumed)
				}
				fmt.Fprintln(a.stderr, "parley watch: reconnected")
			case parley.SessionEndedEvent:
				return ev.Err()
			}
		}
	}
}

func cmdPing(ctx context.Context, a *app, args []string) error {
	fs := a.flags("ping", "")
	count := fs.Int("count", 1, "how many pings")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if *count < 1 {
		return usageError{errors.New("--count must be at least 1")}
	}
	ctx, cancel := a.withTimeout(ctx)
	defer cancel()
	c, err := a.dial(ctx, parley.WithPresenceFeed(false))
	if err != nil {
		return err
	}
	defer c.Close()
	w := c.Welcome()
	for i := range *count {
		rtt, err := c.Ping(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintf(a.stdout, "pong from %s (%s, gateway %s) seq=%d time=%v\n",
			c.Addr(), w.Server, w.GatewayID, i+1, rtt.Round(time.Microsecond))
		if i+1 < *count {
			select {
			case <-time.After(time.Second):
			case <-ctx.Done():
				return nil
			}
		}
	}
	return nil
}
