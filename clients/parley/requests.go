package parley

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/parleychat/parley/protocol/parleyv1"
)

// Register creates an account and logs it in on this connection. Errors
// include ErrUsernameTaken, ErrInvalidUsername, ErrWeakPassword and
// ErrRateLimited.
func (c *Client) Register(ctx context.Context, username, password string) (*Session, error) {
	return c.startSession(ctx, &parleyv1.Frame{Body: &parleyv1.Frame_Register{Register: &parleyv1.RegisterRequest{
		Username: username, Password: password, Options: c.clientOptions(),
	}}})
}

// Login starts a session with a username and password. Errors include
// ErrBadCredentials (unknown user or wrong password, deliberately
// indistinguishable), ErrAlreadyLoggedIn, ErrAlreadyAuthenticated and
// ErrRateLimited.
func (c *Client) Login(ctx context.Context, username, password string) (*Session, error) {
	return c.startSession(ctx, &parleyv1.Frame{Body: &parleyv1.Frame_Login{Login: &parleyv1.LoginRequest{
		Username: username, Password: password, Options: c.clientOptions(),
	}}})
}

// Resume continues an earlier session with its token, without the password
// (for example one saved by a previous run). The returned Session carries a
// refreshed token. Errors include ErrTokenExpired, ErrTokenInvalid and
// ErrSessionRevoked.
func (c *Client) Resume(ctx context.Context, token string) (*Session, error) {
	return c.startSession(ctx, &parleyv1.Frame{Body: &parleyv1.Frame_Resume{Resume: &parleyv1.ResumeRequest{
		Token: token, Options: c.clientOptions(),
	}}})
}

func (c *Client) startSession(ctx context.Context, f *parleyv1.Frame) (*Session, error) {
	reply, err := c.do(ctx, f)
	if err != nil {
		return nil, err
	}
	s, err := sessionReply(reply)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.session = s
	c.loggingOut = false
	if c.trackUser != s.UserID {
		c.track.reset() // what another user was delivered means nothing now
		clear(c.catchUps)
		c.trackUser = s.UserID
	}
	c.requestSyncLocked() // offline messages, and where each conversation is
	c.mu.Unlock()
	out := *s
	return &out, nil
}

func sessionReply(f *parleyv1.Frame) (*Session, error) {
	s := f.GetSession()
	if s == nil {
		return nil, fmt.Errorf("%w: expected Session, got %T", ErrProtocol, f.GetBody())
	}
	return sessionFromWire(s), nil
}

// Logout ends the session and revokes its token. The connection stays open
// and unauthenticated (Login may follow), but the client no longer
// reconnects: if the connection breaks afterwards, the client ends with a
// final DisconnectedEvent.
func (c *Client) Logout(ctx context.Context) error {
	c.mu.Lock()
	was := c.loggingOut
	c.loggingOut = true // from here a break must not resume the session
	c.mu.Unlock()
	reply, err := c.do(ctx, &parleyv1.Frame{Body: &parleyv1.Frame_Logout{Logout: &parleyv1.LogoutRequest{}}})
	if err == nil && reply.GetOk() == nil {
		err = fmt.Errorf("%w: expected Ok, got %T", ErrProtocol, reply.GetBody())
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil && !errors.Is(err, ErrUnauthenticated) {
		var perr *Error
		if errors.As(err, &perr) && !errors.Is(err, ErrConnectionLost) && !errors.Is(err, ErrClosed) {
			// The server refused and the session lives on: keep
			// reconnecting. (When the request may have been lost in a
			// break, logging out wins: no resume.)
			c.loggingOut = was
		}
		return err
	}
	c.session = nil
	c.online.clear()
	c.track.reset()
	clear(c.catchUps)
	c.trackUser = ""
	return err // nil, or UNAUTHENTICATED: there was no session to end
}

// Who asks the server for the online list once, sorted by username. Unlike
// Online, it needs no presence feed.
func (c *Client) Who(ctx context.Context) ([]OnlineUser, error) {
	// The server pages the list (docs/protocol.md §9): follow next_cursor
	// until it is empty. A user may appear on two pages; keep one entry.
	seen := make(map[string]OnlineUser)
	cursor := ""
	for {
		reply, err := c.do(ctx, &parleyv1.Frame{Body: &parleyv1.Frame_Who{Who: &parleyv1.WhoRequest{Cursor: cursor, Limit: c.cfg.pageLimit(maxWhoPage)}}})
		if err != nil {
			return nil, err
		}
		w := reply.GetWhoReply()
		if w == nil {
			return nil, fmt.Errorf("%w: expected WhoReply, got %T", ErrProtocol, reply.GetBody())
		}
		for _, u := range w.GetUsers() {
			seen[u.GetUserId()] = userFromWire(u)
		}
		if cursor = w.GetNextCursor(); cursor == "" {
			break
		}
	}
	users := make([]OnlineUser, 0, len(seen))
	for _, u := range seen {
		users = append(users, u)
	}
	sortUsers(users)
	return users, nil
}

// maxWhoPage is the most users a page of the online list may hold
// (protocol §9).
const maxWhoPage = 1000

// Ping measures the round trip to the gateway. It works before login.
func (c *Client) Ping(ctx context.Context) (time.Duration, error) {
	start := time.Now()
	reply, err := c.do(ctx, &parleyv1.Frame{Body: &parleyv1.Frame_Ping{Ping: &parleyv1.Ping{}}})
	if err != nil {
		return 0, err
	}
	if reply.GetPong() == nil {
		return 0, fmt.Errorf("%w: expected Pong, got %T", ErrProtocol, reply.GetBody())
	}
	return time.Since(start), nil
}

// do sends a request on the live connection (waiting for a reconnect if
// need be) and returns the reply.
func (c *Client) do(ctx context.Context, f *parleyv1.Frame) (*parleyv1.Frame, error) {
	cn, err := c.live(ctx)
	if err != nil {
		return nil, err
	}
	return cn.roundTrip(ctx, f)
}
