// Package server runs all of Parley in one process: an in-process
// nats-server with JetStream on a local data directory, an in-process
// Redis-protocol server (miniredis) for presence, the auth, presence,
// messaging, file, media relay and rendezvous services and one gateway. It wires the very same packages the separate
// binaries run; only the wiring differs. cmd/parleyd is its command, and
// tests use it to get a whole Parley in a few lines.
package server

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/alicebob/miniredis/v2"
	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	gateway "github.com/parleychat/parley/gateway/server"
	"github.com/parleychat/parley/libs/objstore"
	"github.com/parleychat/parley/libs/service"
	"github.com/parleychat/parley/services/auth/authsvc"
	"github.com/parleychat/parley/services/file/filesvc"
	"github.com/parleychat/parley/services/mediarelay/relaysvc"
	"github.com/parleychat/parley/services/messaging/msgsvc"
	"github.com/parleychat/parley/services/presence/presencesvc"
	"github.com/parleychat/parley/services/rendezvous/rdvsvc"
)

// Config is the whole embedded deployment's configuration.
type Config struct {
	DataDir    string // JetStream data (accounts, sessions) lives under DataDir/nats, files under DataDir/files
	NATSListen string // empty: NATS is in-process only; "127.0.0.1:4222": also open to other processes
	// NATSToken is the token the embedded NATS requires from every
	// client, the in-process services included; empty: none. A
	// non-loopback NATSListen needs it (or Gateway.Insecure): whoever
	// reaches that NATS reads the signing key and password hashes and
	// can send as anyone.
	NATSToken string

	// Runner is how every service runs its requests (-handler-timeout,
	// -drain-timeout).
	Runner service.RunnerConfig
	// Clock is every service's time source; nil: time.Now. Tests set it.
	Clock func() time.Time

	Gateway   gateway.Config
	Auth      authsvc.Config
	Presence  presencesvc.Config
	Messaging msgsvc.Config
	File      filesvc.Config
	Relay     relaysvc.Config
	// Rendezvous is the STUN server and direct-session signalling. parleyd
	// binds -stun-addr (127.0.0.1:3478) and -stun-alt-addr (127.0.0.2:3479;
	// dropped at start when 127.0.0.2 cannot be bound, as on macOS).
	Rendezvous rdvsvc.Config
	Storage    objstore.Config // default: a directory under DataDir
}

// Defaults of the embedded rendezvous's two addresses: the primary on the
// STUN port, the alternate (RFC 5780: another IP and another port) on a
// second loopback address, which Linux answers without configuration.
const (
	defaultSTUNAddr    = "127.0.0.1:3478"
	defaultSTUNAltAddr = "127.0.0.2:3479"
)

// sharedFlags are flags both the gateway and a service define, with one
// meaning: parleyd defines them once, for the service, and passes the
// value on. -stun-addr is the address the rendezvous binds and the one the
// gateway announces (Welcome.stun_addr).
var sharedFlags = map[string]bool{"stun-addr": true}

// DefaultConfig returns the defaults RegisterFlags sets.
func DefaultConfig() Config {
	var c Config
	c.RegisterFlags(flag.NewFlagSet("parleyd", flag.ContinueOnError))
	return c
}

// RegisterFlags defines every flag of the gateway and the services, plus the
// embedded deployment's own.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.DataDir, "data-dir", "parley-data", "directory for durable data (accounts and sessions)")
	fs.StringVar(&c.NATSListen, "nats-listen", "", "also expose the embedded NATS on this address (e.g. 127.0.0.1:4222) so separate processes can join; empty: in-process only. A non-loopback address is refused without -nats-token (or -insecure): that NATS holds the token signing key and password hashes")
	fs.StringVar(&c.NATSToken, "nats-token", "", fmt.Sprintf("token the embedded NATS requires from every client, this process's included (at least %d characters); processes joining through -nats-listen use -nats-url nats://<token>@host:port", service.MinTokenLen))
	c.Runner.RegisterFlags(fs)
	c.Rendezvous.RegisterFlags(fs)
	setDefault(fs, "stun-addr", defaultSTUNAddr)
	setDefault(fs, "stun-alt-addr", defaultSTUNAltAddr)
	fs.Lookup("stun-alt-addr").Usage += "; parleyd: " + defaultSTUNAltAddr + " by default, left out when 127.0.0.2 cannot be bound (macOS)"
	gw := flag.NewFlagSet("gateway", flag.ContinueOnError)
	c.Gateway.RegisterFlags(gw)
	gw.VisitAll(func(f *flag.Flag) {
		if !sharedFlags[f.Name] {
			fs.Var(f.Value, f.Name, f.Usage)
		}
	})
	// One -insecure (the gateway's) covers every listener of parleyd.
	fs.Lookup("insecure").Usage = "allow non-loopback addresses without protection: plaintext client listeners (no -tls-cert), the embedded NATS without -nats-token, the admin port without -admin-token"
	c.Auth.RegisterFlags(fs)
	c.Presence.RegisterFlags(fs)
	c.Messaging.RegisterFlags(fs)
	c.File.RegisterFlags(fs)
	c.Relay.RegisterFlags(fs)
	c.Storage.RegisterFlags(fs)
}

// setDefault changes the default of flag name (and its value) on fs.
func setDefault(fs *flag.FlagSet, name, value string) {
	f := fs.Lookup(name)
	if err := f.Value.Set(value); err != nil {
		panic(fmt.Sprintf("parleyd: default -%s %q: %v", name, value, err))
	}
	f.DefValue = value
}

// Server is a running embedded Parley.
type Server struct {
	cfg Config
	log *slog.Logger
	reg prometheus.Registerer

	ns       *natsserver.Server
	redis    *miniredis.Miniredis
	rdb      *redis.Client
	conns    []*nats.Conn
	gw       *gateway.Server
	services []service.Component // auth, presence, messaging, file, media-relay, rendezvous
	rdv      *rdvsvc.Service
	gate     *objstore.Gate // the MinIO store's prober, with -minio-endpoint; nil otherwise

	startOnce sync.Once
	startErr  error
}

// ErrExposed means a listener on a non-loopback address would serve
// without credentials.
var ErrExposed = errors.New("exposed without credentials")

// New checks the configuration (Validate); it starts nothing.
func New(cfg Config, log *slog.Logger, reg prometheus.Registerer) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("parleyd: %w", err)
	}
	if log == nil {
		return nil, errors.New("parleyd: nil logger")
	}
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	return &Server{cfg: cfg, log: log, reg: reg}, nil
}

// Validate checks every component's configuration (the gateway, auth,
// presence, messaging, file, the embedded NATS and the file store) and
// reports every problem at once, each naming its flag. It starts nothing:
// no port is opened, no directory created, nothing contacted (a TLS
// certificate is read). New calls it, so a bad value anywhere stops
// parleyd before any part of it has started.
func (c Config) Validate() error {
	var errs []error
	if c.DataDir == "" {
		errs = append(errs, errors.New("-data-dir must not be empty"))
	}
	errs = append(errs,
		c.checkNATS(),
		c.Gateway.Validate(),
		c.Auth.Validate(),
		c.Presence.Validate(),
		c.Messaging.Validate(),
		c.File.Validate(),
		c.Relay.Validate(),
		c.Rendezvous.Validate(),
		c.storage().Validate(),
	)
	return errors.Join(errs...)
}

// storage is the file store's configuration: -storage-dir or
// -minio-endpoint when given, else the directory DataDir/files.
func (c Config) storage() objstore.Config {
	sc := c.Storage
	if sc.Dir == "" && sc.MinIO.Endpoint == "" {
		sc.Dir = filepath.Join(c.DataDir, "files")
	}
	return sc
}

// Start brings up NATS, the presence store, the services and binds the
// gateway's listeners, so TCPAddr and HTTPAddr are known before Run.
func (s *Server) Start() error {
	s.startOnce.Do(func() { s.startErr = s.start() })
	return s.startErr
}

func (s *Server) start() (err error) {
	defer func() {
		if err != nil {
			s.close()
		}
	}()
	if err := os.MkdirAll(s.cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("parleyd: data dir: %w", err)
	}
	if s.ns, err = startNATS(s.cfg.DataDir, s.cfg.NATSListen, s.cfg.NATSToken, s.log); err != nil {
		return err
	}
	// miniredis is a Redis-protocol server on a loopback port: presence
	// talks to it with go-redis exactly as it talks to a real Redis.
	s.redis = miniredis.NewMiniRedis()
	if err := s.redis.StartAddr("127.0.0.1:0"); err != nil {
		return fmt.Errorf("parleyd: presence store: %w", err)
	}
	s.rdb = redis.NewClient(&redis.Options{Addr: s.redis.Addr(), DialTimeout: 2 * time.Second,
		ReadTimeout: 2 * time.Second, WriteTimeout: 2 * time.Second})
	storage, err := s.openStorage()
	if err != nil {
		return err
	}
	rdvCfg := s.rendezvousConfig()
	// Every part has its own in-process NATS connection, as separate
	// binaries would.
	connect := func(name string) (*nats.Conn, error) {
		nc, err := connectInProcess(s.ns, "parleyd-"+name, s.cfg.NATSToken, s.log)
		if err == nil {
			s.conns = append(s.conns, nc)
		}
		return nc, err
	}
	for _, svc := range []struct {
		name  string
		build func(service.Deps) (service.Component, error)
	}{
		{"auth", func(d service.Deps) (service.Component, error) { return authsvc.New(s.cfg.Auth, d) }},
		{"presence", func(d service.Deps) (service.Component, error) { return presencesvc.New(s.cfg.Presence, d, s.rdb) }},
		{"messaging", func(d service.Deps) (service.Component, error) { return msgsvc.New(s.cfg.Messaging, d) }},
		{"file", func(d service.Deps) (service.Component, error) { return filesvc.New(s.cfg.File, d, storage) }},
		{"media-relay", func(d service.Deps) (service.Component, error) { return relaysvc.New(s.cfg.Relay, d) }},
		{"rendezvous", func(d service.Deps) (service.Component, error) {
			// Bound here, so the addresses are known before Run (STUNAddrs,
			// and the gateway announces the primary).
			rdv, err := rdvsvc.New(rdvCfg, d)
			if err == nil {
				err = rdv.Listen()
			}
			s.rdv = rdv
			return rdv, err
		}},
	} {
		nc, err := connect(svc.name)
		if err != nil {
			return err
		}
		c, err := svc.build(service.Deps{NC: nc, Log: s.log.With("service", svc.name), Registry: s.reg,
			Clock: s.cfg.Clock, Runner: s.cfg.Runner})
		if err != nil {
			return err
		}
		s.services = append(s.services, c)
	}
	nc, err := connect("gateway")
	if err != nil {
		return err
	}
	// The gateway announces the rendezvous it runs next to
	// (Welcome.stun_addr): its primary address as clients reach it.
	s.cfg.Gateway.STUNAddr, _ = s.rdv.PublicAddrs()
	if s.gw, err = gateway.New(s.cfg.Gateway, gateway.Deps{NC: nc, Log: s.log, Registry: s.reg, Files: storage}); err != nil {
		return err
	}
	return s.gw.Listen()
}

// rendezvousConfig is the rendezvous's configuration as parleyd runs it:
// without the alternate when it is a loopback address the machine does not
// have (only 127.0.0.1 is configured on macOS; Linux answers the whole of
// 127.0.0.0/8), so the default works everywhere, with NAT classification
// where the second address exists.
func (s *Server) rendezvousConfig() rdvsvc.Config {
	c := s.cfg.Rendezvous
	alt, err := netip.ParseAddrPort(c.STUNAltAddr)
	if err != nil || !alt.Addr().IsLoopback() {
		return c
	}
	probe, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(alt.Addr(), 0)))
	if err == nil {
		_ = probe.Close()
		return c
	}
	s.log.Warn("rendezvous: one STUN address only (NAT filtering cannot be classified): the alternate's IP cannot be bound",
		"stun_alt_addr", c.STUNAltAddr, "err", err)
	c.STUNAltAddr, c.STUNPublicAltAddr = "", ""
	return c
}

// openStorage opens the file store (Config.storage) without waiting for
// a MinIO: chat is served while it is down (objstore.Gate, closed by
// close).
func (s *Server) openStorage() (objstore.Store, error) {
	st, err := s.cfg.storage().Open(context.Background(), objstore.GateOptions{Log: s.log, Registry: s.reg})
	if err != nil {
		return nil, fmt.Errorf("parleyd: file storage: %w", err)
	}
	s.gate, _ = st.(*objstore.Gate)
	return st, nil
}

// TCPAddr is the gateway's TCP (or TLS) address, nil when disabled.
func (s *Server) TCPAddr() net.Addr { return s.gw.TCPAddr() }

// HTTPAddr is the gateway's HTTP/WebSocket address, nil when disabled.
func (s *Server) HTTPAddr() net.Addr { return s.gw.HTTPAddr() }

// UDPAddr is the gateway's media (UDP) address, nil when disabled.
func (s *Server) UDPAddr() net.Addr { return s.gw.UDPAddr() }

// STUNAddrs are the rendezvous's STUN addresses as clients are told them:
// the primary and the alternate ("" when it has one address).
func (s *Server) STUNAddrs() (primary, alternate string) { return s.rdv.PublicAddrs() }

// NATSURL is the embedded NATS's client URL when -nats-listen is set.
func (s *Server) NATSURL() string {
	if s.cfg.NATSListen == "" {
		return ""
	}
	return s.ns.ClientURL()
}

// Ready reports whether every part is serving.
func (s *Server) Ready() error {
	for _, c := range s.services {
		if err := c.Ready(); err != nil {
			return err
		}
	}
	return s.gw.Ready()
}

// Run starts (if needed) and serves until ctx ends or a part fails, then
// stops the gateway first (clients are told SERVER_SHUTDOWN), then the
// services, then NATS and the presence store.
func (s *Server) Run(ctx context.Context) error {
	if err := s.Start(); err != nil {
		return err
	}
	defer s.close()

	svcCtx, stopSvcs := context.WithCancel(context.Background())
	defer stopSvcs()
	var svcErr error
	svcDone := make(chan struct{})
	runs := make([]func(context.Context) error, len(s.services))
	for i, c := range s.services {
		runs[i] = c.Run
	}
	go func() { defer close(svcDone); svcErr = service.Group(svcCtx, runs...) }()
	// Clients reconnecting to a restarted parleyd wait in the listen
	// backlog until the services answer, rather than meeting "no
	// responders" in their first requests.
	s.waitServices(ctx, svcDone, 15*time.Second)
	gwErr := service.Group(ctx, s.gw.Run, func(ctx context.Context) error {
		select {
		case <-ctx.Done():
			return nil
		case <-svcDone: // a service failed: the rest are stopping
			return svcErr
		}
	})
	stopSvcs()
	<-svcDone
	if gwErr != nil {
		return gwErr
	}
	return svcErr
}

// waitServices waits (at most within) until every service is serving; the
// gateway starts either way.
func (s *Server) waitServices(ctx context.Context, failed <-chan struct{}, within time.Duration) {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		ready := true
		for _, c := range s.services {
			ready = ready && c.Ready() == nil
		}
		if ready {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-failed:
			return
		case <-time.After(20 * time.Millisecond):
		}
	}
	s.log.Warn("starting the gateway before every service is ready")
}

func (s *Server) close() {
	if s.gate != nil {
		s.gate.Close()
	}
	if s.rdv != nil {
		s.rdv.Close() // its sockets, bound in start, when Run never ran
	}
	for _, c := range s.conns {
		c.Close()
	}
	s.conns = nil
	if s.rdb != nil {
		_ = s.rdb.Close()
	}
	if s.redis != nil {
		s.redis.Close()
	}
	if s.ns != nil {
		s.ns.Shutdown()
		s.ns.WaitForShutdown()
	}
}

// checkNATS checks the embedded NATS's flags: a -nats-listen address, and
// no non-loopback one without a token unless -insecure.
func (c Config) checkNATS() error {
	errs := []error{service.CheckToken("-nats-token", c.NATSToken)}
	if c.NATSListen != "" {
		if _, _, err := splitHostPort(c.NATSListen); err != nil {
			errs = append(errs, fmt.Errorf("-nats-listen %q: want host:port: %w", c.NATSListen, err))
		}
	}
	if c.NATSListen != "" && !service.IsLoopback(c.NATSListen) && c.NATSToken == "" && !c.Gateway.Insecure {
		errs = append(errs, fmt.Errorf("refusing -nats-listen %s without -nats-token: whoever reaches it can read the signing key and password hashes and send as anyone (give -nats-token, or -insecure on a network you trust): %w",
			c.NATSListen, ErrExposed))
	}
	return errors.Join(errs...)
}

// CheckAdmin is parleyd's rule for its admin port (-admin-addr): a
// non-loopback address needs -admin-token, unless insecure. (The service
// binaries do not apply it: they run in pods whose admin port is the
// cluster's business.)
func CheckAdmin(addr, token string, insecure bool) error {
	if err := service.CheckToken("-admin-token", token); err != nil {
		return err
	}
	if addr != "" && !service.IsLoopback(addr) && token == "" && !insecure {
		return fmt.Errorf("refusing -admin-addr %s without -admin-token: /metrics would be open to anyone who reaches it (give -admin-token, or -insecure on a network you trust): %w",
			addr, ErrExposed)
	}
	return nil
}

func splitHostPort(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		return "", 0, err
	}
	return host, port, nil
}
