package rdvsvc

import (
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"time"
)

// Fixed by the protocol (docs/protocol.md §20.2).
const (
	// MaxSessions is how many open sessions (opened, or accepted) a user
	// may have when opening another: QUOTA_EXCEEDED beyond.
	MaxSessions = 8
	// MaxCandidates bounds the host candidates of one side.
	MaxCandidates = 8
	// maxRTT bounds the rtt_ms a side reports (a larger one is taken as
	// this): start_delay_ms is half a difference of two of them, and a
	// client must not be told to wait for minutes.
	maxRTT = 10_000
)

// Config is the rendezvous's configuration. RegisterFlags defines every
// field with its default; DefaultConfig returns those defaults.
type Config struct {
	// STUNAddr is the primary STUN address (ip:port) the server binds.
	// Port 0 picks a free port (tests).
	STUNAddr string
	// STUNAltAddr is the alternate address, another IP and another port
	// than STUNAddr's (RFC 5780); empty: one address, no CHANGE-REQUEST.
	// With it the server binds four sockets: both IPs on both ports.
	STUNAltAddr string
	// STUNPublicAddr and STUNPublicAltAddr are the addresses clients reach
	// the primary and the alternate at, when the bound ones are not (a
	// NAT in front, a wildcard bind): sent in OTHER-ADDRESS,
	// RESPONSE-ORIGIN and P2PSession.stun_addr/stun_alt_addr. Empty: the
	// bound address.
	STUNPublicAddr    string
	STUNPublicAltAddr string
	// STUNRate and STUNBurst bound the STUN requests answered per source,
	// an IPv4 address or an IPv6 /64 (per second, bucket size): a server that answers
	// anything is a reflector, and spoofed sources must not turn it into
	// a flood. 0 disables the limit.
	STUNRate  int
	STUNBurst int
	// STUNWorkers bounds the registrations (authenticated Bindings, each a
	// KV read and write) handled at once; more are dropped (clients
	// retransmit).
	STUNWorkers int

	// OfferTimeout closes an offer not answered within it (EXPIRED).
	OfferTimeout time.Duration
	// IdleTimeout closes an accepted session unchanged for this long.
	IdleTimeout time.Duration
	// SweepInterval is how often a replica looks for expired sessions.
	SweepInterval time.Duration
	// KVReplicas is the JetStream replica count of the sessions bucket.
	KVReplicas int
	// Workers bounds concurrently handled requests per subject.
	Workers int
	// RequestTimeout bounds one request to messaging or auth, and one
	// registration's store work.
	RequestTimeout time.Duration
}

// RegisterFlags defines the rendezvous's flags on fs, storing into c. The
// STUN ones carry a stun- prefix, the others rdv-, so the one-binary
// server can register them next to the other services' flags.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.STUNAddr, "stun-addr", "127.0.0.1:3478", "primary STUN address of the rendezvous (ip:port; port 0: any free one)")
	fs.StringVar(&c.STUNAltAddr, "stun-alt-addr", "", "alternate STUN address (RFC 5780): another IP and another port than -stun-addr's; both IPs are bound on both ports. Empty: one address (NAT filtering cannot be classified; CHANGE-REQUEST answered 420)")
	fs.StringVar(&c.STUNPublicAddr, "stun-public-addr", "", "the address clients reach -stun-addr at, when it is not the bound one (a NAT or load balancer in front, a wildcard bind); default: -stun-addr")
	fs.StringVar(&c.STUNPublicAltAddr, "stun-public-alt-addr", "", "the address clients reach -stun-alt-addr at; default: -stun-alt-addr")
	fs.IntVar(&c.STUNRate, "stun-rate", 50, "STUN requests answered per second per source, an IPv4 address or an IPv6 /64 (0: no limit)")
	fs.IntVar(&c.STUNBurst, "stun-burst", 100, "burst of -stun-rate")
	fs.IntVar(&c.STUNWorkers, "stun-workers", 64, "session registrations handled at once (more are dropped; clients retransmit)")
	fs.DurationVar(&c.OfferTimeout, "rdv-offer-timeout", 60*time.Second, "an offer not answered within this is closed (EXPIRED)")
	fs.DurationVar(&c.IdleTimeout, "rdv-idle-timeout", 24*time.Hour, "an accepted session unchanged for this long is closed (EXPIRED)")
	fs.DurationVar(&c.SweepInterval, "rdv-sweep-interval", time.Second, "how often a replica looks for expired sessions")
	fs.IntVar(&c.KVReplicas, "rdv-kv-replicas", 1, "JetStream replicas of the direct sessions KV bucket")
	fs.IntVar(&c.Workers, "rdv-workers", 64, "signalling requests handled at once per subject by this replica")
	fs.DurationVar(&c.RequestTimeout, "rdv-request-timeout", 5*time.Second, "timeout of requests to messaging and auth, and of a registration's store work")
}

// DefaultConfig returns the configuration RegisterFlags defaults to.
func DefaultConfig() Config {
	var c Config
	c.RegisterFlags(flag.NewFlagSet("rendezvous", flag.ContinueOnError))
	return c
}

// ErrBadConfig is wrapped by every configuration error.
var ErrBadConfig = errors.New("rendezvous: bad config")

// Validate reports every problem with c at once (joined with
// errors.Join), each naming its flag and wrapping ErrBadConfig; it starts
// nothing. New applies the same checks.
func (c Config) Validate() error {
	_, err := c.addrs()
	return err
}

// addrConfig is the parsed STUN addresses.
type addrConfig struct {
	bind, alt         netip.AddrPort // alt invalid: one address
	public, publicAlt netip.AddrPort // invalid: the bound one
}

// addrs parses and checks the addresses and validates the rest.
func (c Config) addrs() (addrConfig, error) {
	var (
		errs []error
		a    addrConfig
	)
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf(format+": %w", append(args, ErrBadConfig)...))
	}
	parse := func(flag, s string, port0 bool) netip.AddrPort {
		ap, err := netip.ParseAddrPort(s)
		switch {
		case err != nil:
			bad("%s %q: want ip:port", flag, s)
		case ap.Addr().Zone() != "":
			bad("%s %q: no zone", flag, s)
		case ap.Port() == 0 && !port0:
			bad("%s %q: port 0", flag, s)
		default:
			return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
		}
		return netip.AddrPort{}
	}
	a.bind = parse("-stun-addr", c.STUNAddr, true)
	if c.STUNAltAddr != "" {
		a.alt = parse("-stun-alt-addr", c.STUNAltAddr, true)
	}
	if c.STUNPublicAddr != "" {
		a.public = parse("-stun-public-addr", c.STUNPublicAddr, false)
	}
	if c.STUNPublicAltAddr != "" {
		a.publicAlt = parse("-stun-public-alt-addr", c.STUNPublicAltAddr, false)
		if c.STUNAltAddr == "" {
			bad("-stun-public-alt-addr needs -stun-alt-addr")
		}
	}
	for _, p := range []struct {
		flag string
		ap   netip.AddrPort
	}{{"-stun-public-addr", a.public}, {"-stun-public-alt-addr", a.publicAlt}} {
		if p.ap.IsValid() && (p.ap.Addr().IsUnspecified() || p.ap.Addr().IsMulticast()) {
			bad("%s %s: not an address clients can reach", p.flag, p.ap)
		}
	}
	if a.bind.IsValid() && a.bind.Addr().IsUnspecified() && !a.public.IsValid() {
		bad("-stun-addr %s binds every interface: give -stun-public-addr, the address clients reach", a.bind)
	}
	if a.bind.IsValid() && a.alt.IsValid() {
		switch {
		case a.bind.Addr().Is4() != a.alt.Addr().Is4():
			bad("-stun-alt-addr %s and -stun-addr %s must be of one address family", a.alt, a.bind)
		case a.bind.Addr().IsUnspecified() || a.alt.Addr().IsUnspecified():
			bad("with -stun-alt-addr both STUN addresses must be addresses of an interface, not %s", netip.IPv4Unspecified())
		case a.bind.Addr() == a.alt.Addr():
			bad("-stun-alt-addr %s must have another IP than -stun-addr %s", a.alt, a.bind)
		case a.bind.Port() == a.alt.Port() && a.bind.Port() != 0:
			bad("-stun-alt-addr %s must have another port than -stun-addr %s", a.alt, a.bind)
		case (a.bind.Port() == 0) != (a.alt.Port() == 0):
			bad("-stun-addr and -stun-alt-addr: port 0 in both or in neither")
		}
	}
	if a.public.IsValid() && a.publicAlt.IsValid() &&
		(a.public.Addr() == a.publicAlt.Addr() || a.public.Port() == a.publicAlt.Port()) {
		bad("-stun-public-alt-addr %s must differ from -stun-public-addr %s in IP and in port", a.publicAlt, a.public)
	}
	if c.STUNRate < 0 {
		bad("-stun-rate must not be negative")
	}
	if c.STUNBurst < 0 {
		bad("-stun-burst must not be negative")
	}
	if c.STUNWorkers < 1 {
		bad("-stun-workers must be at least 1")
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"-rdv-offer-timeout", c.OfferTimeout}, {"-rdv-idle-timeout", c.IdleTimeout},
		{"-rdv-sweep-interval", c.SweepInterval}, {"-rdv-request-timeout", c.RequestTimeout}} {
		if d.v <= 0 {
			bad("%s must be positive", d.name)
		}
	}
	if c.KVReplicas < 1 || c.KVReplicas > 5 {
		bad("-rdv-kv-replicas must be between 1 and 5")
	}
	if c.Workers < 1 {
		bad("-rdv-workers must be at least 1")
	}
	return a, errors.Join(errs...)
}
