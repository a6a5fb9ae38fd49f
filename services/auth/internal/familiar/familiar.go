// Package familiar keeps an account's familiar locations: the network
// prefixes it logged in from successfully in the last 30 days. Login rate
// limiting uses them the way Microsoft Entra's Smart Lockout uses familiar
// locations: failed logins from unfamiliar networks share one per-account
// allowance, and each familiar network has its own, so a stranger guessing
// a password from elsewhere cannot lock the owner out of the networks the
// owner uses.
//
// A location is the client address's prefix, IPv4 /24 and IPv6 /48: the
// owner's address at home or at work changes within such a block (DHCP,
// IPv6 privacy addresses, a delegated prefix), while an attacker's many
// addresses rarely fall into one the owner used. The list is stored in the
// account record (so it survives restarts and is shared by every auth
// replica) and stays small: at most MaxLocations entries, each forgotten
// TTL after its last successful login, the least recently used one
// replaced when full.
package familiar

import (
	"net/netip"
	"slices"
	"time"
)

const (
	// MaxLocations bounds the list kept per account.
	MaxLocations = 8
	// TTL is how long a location stays familiar after its last
	// successful login.
	TTL = 30 * 24 * time.Hour
	// Refresh is how stale a location's last-seen time may get before a
	// login from it is written again: logins from a known location cost
	// no account write more than once a day.
	Refresh = 24 * time.Hour
)

// Location is one familiar network.
type Location struct {
	Prefix string    `json:"prefix"` // "192.0.2.0/24", "2001:db8:1::/48"
	Seen   time.Time `json:"seen"`   // last successful login from it
}

// List is an account's familiar locations, most recently seen first.
type List []Location

// Prefix is the location of addr: its IPv4 /24 or IPv6 /48 (an IPv4
// address mapped into IPv6 counts as IPv4). It is "" for an invalid
// address, which is never familiar.
func Prefix(addr netip.Addr) string {
	if !addr.IsValid() {
		return ""
	}
	addr = addr.Unmap()
	bits := 48
	if addr.Is4() {
		bits = 24
	}
	p, err := addr.Prefix(bits)
	if err != nil {
		return ""
	}
	return p.String()
}

// Contains reports whether prefix is familiar at now: listed and seen
// within TTL.
func (l List) Contains(prefix string, now time.Time) bool {
	if prefix == "" {
		return false
	}
	for _, loc := range l {
		if loc.Prefix == prefix {
			return now.Sub(loc.Seen) < TTL
		}
	}
	return false
}

// Record notes a successful login from prefix at now and returns the new
// list and whether it differs enough from l to be worth writing: a new
// location, or one last seen Refresh ago or longer. A list that is
// written drops expired entries, is sorted by Seen, newest first, and
// holds at most MaxLocations entries (the least recently seen go).
func (l List) Record(prefix string, now time.Time) (List, bool) {
	if prefix == "" {
		return l, false
	}
	out := make(List, 0, len(l)+1)
	out = append(out, Location{Prefix: prefix, Seen: now})
	changed := true
	for _, loc := range l {
		switch {
		case loc.Prefix == prefix:
			changed = now.Sub(loc.Seen) >= Refresh
		case now.Sub(loc.Seen) >= TTL:
			// Expired: dropped; a write is due only if something else
			// changed (an expired entry is never consulted).
		default:
			out = append(out, loc)
		}
	}
	if len(out) > 1 {
		slices.SortStableFunc(out[1:], func(a, b Location) int { return b.Seen.Compare(a.Seen) })
	}
	if len(out) > MaxLocations {
		out = out[:MaxLocations]
	}
	if !changed {
		return l, false
	}
	return out, true
}
