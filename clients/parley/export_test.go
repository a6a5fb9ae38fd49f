package parley

import "time"

// SetWhoPageLimit lets tests make Who walk several small pages.
func SetWhoPageLimit(n uint32) (restore func()) {
	old := whoPageLimit
	whoPageLimit = n
	return func() { whoPageLimit = old }
}

// SetConversationsPageLimit lets tests make Conversations walk several
// small pages.
func SetConversationsPageLimit(n uint32) (restore func()) {
	old := convPageLimit
	convPageLimit = n
	return func() { convPageLimit = old }
}

// CatchUpGrace is how long a gap waits for late live events.
func CatchUpGrace() time.Duration { return catchUpGrace }

// Bearer is the Authorization header the client's next HTTP request carries.
func (c *Client) Bearer() string { return c.bearer() }
