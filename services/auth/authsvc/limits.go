package authsvc

import (
	"net/netip"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/parleychat/parley/libs/identity"
	"github.com/parleychat/parley/libs/ratelimit"
	"github.com/parleychat/parley/services/auth/internal/familiar"
)

// Login rate limiting (protocol §8.2) slows password guessing without
// giving strangers a button that locks an account's owner out:
//
//   - Per address: failed logins per source address (IPv4 address, IPv6
//     /64), over all accounts. One guesser at one address is slowed
//     whatever it guesses.
//   - Per account and location: failed logins for one account share one
//     allowance among all unfamiliar addresses (the stranger's), while each
//     familiar location of the account (a network it logged in from
//     successfully within 30 days, package familiar) has an allowance of
//     its own. Guessing from many addresses is slowed by the shared one;
//     it cannot use up the owner's.
//
// The owner on a brand-new network while the account is attacked shares
// the strangers' allowance and may be answered RATE_LIMITED: that is the
// price of not letting any stranger in faster. Sessions already held go on
// (resume is not limited), and a familiar network still works.
//
// The familiar list is in the account record in KV (shared, durable); the
// counters are per replica (package ratelimit), so with N replicas an
// attacker gets up to N times the configured rates.

// sourceAddr is the client's address from the gateway's Parley-Remote-Addr
// header (ip:port, or a bare ip); invalid when missing or unparseable.
func sourceAddr(m *nats.Msg) netip.Addr {
	raw := identity.ReadOrigin(m.Header).RemoteAddr
	if ap, err := netip.ParseAddrPort(raw); err == nil {
		return ap.Addr().Unmap()
	}
	if ip, err := netip.ParseAddr(raw); err == nil {
		return ip.Unmap()
	}
	return netip.Addr{}
}

// addressKey is the per-address limiter key: ratelimit.Source's (an IPv6
// client is keyed by its /64). Requests without an address share one
// bucket.
func addressKey(ip netip.Addr) string {
	if !ip.IsValid() {
		return "unknown"
	}
	return ratelimit.Source(ip).String()
}

// accountKey is the per-account limiter key for a login to canonical from
// location loc: the location's own allowance when it is familiar, else the
// allowance all unfamiliar locations share. Canonical names have no
// spaces, so the keys cannot collide.
func accountKey(canonical string, known familiar.List, loc string, now time.Time) string {
	if known.Contains(loc, now) {
		return canonical + " " + loc
	}
	return canonical
}
