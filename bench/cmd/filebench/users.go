package main

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/parleychat/parley/clients/parley"
)

// benchPassword is every benchmark user's password.
const benchPassword = "file-benchmark-pw"

// user is a registered, logged-in SDK client (presence feed off) on the
// gateway, its HTTP base pointing at the gateway's HTTP port.
type user struct {
	name   string
	id     string
	client *parley.Client
}

// registerUser registers name on the gateway and keeps the connection.
func registerUser(ctx context.Context, c *cluster, name string) (*user, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cl, err := parley.Dial(ctx, "tcp://"+c.gwTCP, parley.WithPresenceFeed(false), parley.WithDevice("filebench"),
		parley.WithHTTPBase("http://"+c.gwHTTP))
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", c.gwTCP, err)
	}
	s, err := cl.Register(ctx, name, benchPassword)
	if err != nil {
		cl.Close()
		return nil, fmt.Errorf("register %s: %w", name, err)
	}
	return &user{name: name, id: s.UserID, client: cl}, nil
}

// token is the user's current session token (for HTTP requests the SDK
// does not make itself).
func (u *user) token() string { return u.client.Session().Token }

// waitOffline waits until u no longer sees name online (presence has
// noticed the closed connection): the file service asks presence whether
// a recipient is online when a file is offered.
func waitOffline(ctx context.Context, u *user, name string) error {
	deadline := time.Now().Add(15 * time.Second)
	for {
		online, err := u.client.Who(ctx)
		if err != nil {
			return fmt.Errorf("who: %w", err)
		}
		if !slices.ContainsFunc(online, func(o parley.OnlineUser) bool { return o.Username == name }) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s still online 15s after closing its connection", name)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
