// Package connlimit caps a gateway's client connections (docs/protocol.md
// §11): in total, per source address, and per source address while they
// have no session. A connection's cost before login is paid by the gateway
// alone (no account, no password check yet), so that is where one address
// is held tightest; once authenticated, the per-address cap only stops one
// host from taking the gateway's whole share of file descriptors, and it
// stays loose because many users can share one NAT address.
//
// A source address is an IPv4 address, or an IPv6 /64 (one host usually
// holds a whole /64). Addresses in Config.Exempt are not limited per
// address: a proxy on the same host, through which every client appears
// to come from one address.
package connlimit

import (
	"net"
	"net/netip"
	"sync"

	"github.com/parleychat/parley/libs/ratelimit"
)

// Config is the set of caps; 0 disables one.
type Config struct {
	Total         int            // connections on this gateway
	PerAddr       int            // connections from one source address
	UnauthPerAddr int            // connections without a session from one source address
	Exempt        []netip.Prefix // sources not limited per address
}

// Verdict is Admit's answer.
type Verdict int

const (
	Admitted       Verdict = iota
	Full                   // Total reached
	AddrFull               // PerAddr reached for this source
	AddrUnauthFull         // UnauthPerAddr reached for this source
)

// Limiter counts connections. It is safe for concurrent use.
type Limiter struct {
	cfg Config

	mu    sync.Mutex // guards total and addrs
	total int
	addrs map[netip.Prefix]*count // sources with at least one connection
}

type count struct{ all, unauth int }

// New returns a Limiter enforcing cfg.
func New(cfg Config) *Limiter {
	return &Limiter{cfg: cfg, addrs: make(map[netip.Prefix]*count)}
}

// Slot is one admitted connection's place; it starts unauthenticated.
// Its methods are called by the goroutines that handle that connection,
// one at a time.
type Slot struct {
	l      *Limiter
	key    netip.Prefix
	keyed  bool // counted per address
	authed bool
	done   bool
}

// Admit counts a new connection from addr, or says which cap refuses it.
func (l *Limiter) Admit(addr net.Addr) (*Slot, Verdict) {
	key, keyed := l.key(addr)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cfg.Total > 0 && l.total >= l.cfg.Total {
		return nil, Full
	}
	var c *count
	if keyed {
		c = l.addrs[key]
		if c == nil {
			c = new(count)
		}
		switch {
		case l.cfg.PerAddr > 0 && c.all >= l.cfg.PerAddr:
			return nil, AddrFull
		case l.cfg.UnauthPerAddr > 0 && c.unauth >= l.cfg.UnauthPerAddr:
			return nil, AddrUnauthFull
		}
		c.all++
		c.unauth++
		l.addrs[key] = c
	}
	l.total++
	return &Slot{l: l, key: key, keyed: keyed}, Admitted
}

// Authenticated records that the connection has (true) or no longer has
// (false, after logout) a session. A connection that loses its session
// counts as unauthenticated again even above UnauthPerAddr: caps refuse
// new connections, they never end existing ones.
func (s *Slot) Authenticated(v bool) {
	if s == nil || s.authed == v || s.done {
		return
	}
	s.authed = v
	if !s.keyed {
		return
	}
	s.l.mu.Lock()
	defer s.l.mu.Unlock()
	if c := s.l.addrs[s.key]; c != nil {
		if v {
			c.unauth--
		} else {
			c.unauth++
		}
	}
}

// Release frees the slot when the connection ends; later calls do nothing.
func (s *Slot) Release() {
	if s == nil || s.done {
		return
	}
	s.done = true
	l := s.l
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total--
	if !s.keyed {
		return
	}
	c := l.addrs[s.key]
	if c == nil {
		return
	}
	c.all--
	if !s.authed {
		c.unauth--
	}
	if c.all == 0 {
		delete(l.addrs, s.key)
	}
}

// Count is the number of connections counted now (for tests and metrics).
func (l *Limiter) Count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total
}

// key is the source address addr is counted under, and whether it is
// counted per address at all (not for exempt or unknown sources, or when
// no per-address cap is set).
func (l *Limiter) key(addr net.Addr) (netip.Prefix, bool) {
	if l.cfg.PerAddr <= 0 && l.cfg.UnauthPerAddr <= 0 {
		return netip.Prefix{}, false
	}
	ip, ok := sourceIP(addr)
	if !ok {
		return netip.Prefix{}, false
	}
	for _, p := range l.cfg.Exempt {
		if p.Contains(ip) {
			return netip.Prefix{}, false
		}
	}
	return ratelimit.Source(ip), true
}

func sourceIP(addr net.Addr) (netip.Addr, bool) {
	switch a := addr.(type) {
	case *net.TCPAddr:
		ip, ok := netip.AddrFromSlice(a.IP)
		return ip.Unmap(), ok
	case nil:
		return netip.Addr{}, false
	}
	ap, err := netip.ParseAddrPort(addr.String())
	if err != nil {
		return netip.Addr{}, false
	}
	return ap.Addr().Unmap(), true
}
