// Package server is the Parley gateway: it terminates client connections
// over TCP, TLS and WebSocket, speaks the wire protocol (docs/protocol.md)
// with them and talks to the services over NATS only. cmd/gateway runs it
// alone; standalone/ runs it next to the services in one process.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/parleychat/parley/gateway/internal/callmedia"
	"github.com/parleychat/parley/gateway/internal/clientaddr"
	"github.com/parleychat/parley/gateway/internal/conn"
	"github.com/parleychat/parley/gateway/internal/connlimit"
	"github.com/parleychat/parley/gateway/internal/files"
	"github.com/parleychat/parley/gateway/internal/metrics"
	"github.com/parleychat/parley/gateway/internal/p2prelay"
	"github.com/parleychat/parley/gateway/internal/presence"
	"github.com/parleychat/parley/gateway/internal/registry"
	"github.com/parleychat/parley/gateway/internal/reqbody"
	"github.com/parleychat/parley/gateway/internal/transport"
	"github.com/parleychat/parley/libs/certfile"
	"github.com/parleychat/parley/libs/rpc"
)

// Version is the gateway's version, sent to clients in Welcome as
// "parley-gateway/<Version>". Release builds set it with
// -ldflags "-X github.com/parleychat/parley/gateway/server.Version=...".
var Version = "dev"

// Deps are the gateway's injected dependencies. NC is required; a nil Log
// discards logs and a nil Registry keeps metrics unregistered.
type Deps struct {
	NC       *nats.Conn
	Log      *slog.Logger
	Registry prometheus.Registerer
	// Files is the object store shared with the file service; nil leaves
	// the file endpoints (/v1/files) out: they answer 404.
	Files files.Storage
}

// Server is one gateway replica.
type Server struct {
	cfg     Config
	nc      *nats.Conn
	log     *slog.Logger
	tlsConf *tls.Config          // nil: plaintext
	tlsRecs *transport.TLSConfig // tlsConf for the TCP listener's streams (-tls-records)
	certs   *certfile.Reloader   // the certificate tlsConf serves; nil: plaintext
	proxies clientaddr.Proxies   // -proxy-protocol-from
	httpFwd clientaddr.Proxies   // -trusted-proxies
	reg     *registry.Registry
	feed    *presence.Feed
	handler *conn.Handler
	replies *rpc.Replies // the connections' requests to services
	hb      *presence.Heartbeat
	media   *callmedia.Plane
	p2p     *p2prelay.Relay            // nil: direct sessions are not relayed
	files   *files.Handler             // nil: no file endpoints
	origin  atomic.Pointer[httpOrigin] // the HTTP listener, for Welcome.http_url; nil until bound

	mu      sync.Mutex // guards the fields below
	tcpLn   net.Listener
	httpLn  net.Listener
	app     *fiber.App
	serving bool // Run is accepting connections
	stopped bool // Run began shutting down

	wg sync.WaitGroup // accept loops and TCP connection goroutines
}

// keepAlive is the TCP keepalive of client sockets: it detects peers that
// vanished without a FIN even when the idle timeout is long.
var keepAlive = net.KeepAliveConfig{Enable: true, Idle: 30 * time.Second, Interval: 10 * time.Second, Count: 3}

// New validates cfg and builds a gateway; it binds nothing (see Listen).
func New(cfg Config, deps Deps) (*Server, error) {
	if deps.NC == nil {
		return nil, errors.New("gateway: nil NATS connection")
	}
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("gateway config: %w", err)
	}
	log := deps.Log
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	log = log.With("gateway", cfg.GatewayID)
	promReg := deps.Registry
	if promReg == nil {
		promReg = prometheus.NewRegistry()
	}
	s := &Server{cfg: cfg, nc: deps.NC, log: log, proxies: cfg.ProxyProtocolFrom, httpFwd: cfg.TrustedProxies}
	if cfg.TLSCert != "" {
		certs, err := certfile.New(cfg.TLSCert, cfg.TLSKey, log)
		if err != nil {
			return nil, fmt.Errorf("gateway tls: %w", err)
		}
		s.certs, s.tlsConf = certs, certs.TLSConfig()
		s.tlsRecs = transport.NewTLSConfig(s.tlsConf, cfg.TLSRecords != TLSRecordsGo)
	}
	m := metrics.New(promReg)
	mp, err := callmedia.New(callmedia.Config{NC: deps.NC, Log: log, Metrics: m, GatewayID: cfg.GatewayID,
		UDPAddr: cfg.UDPAddr, AliveInterval: cfg.MediaAlive})
	if err != nil {
		return nil, fmt.Errorf("gateway media: %w", err)
	}
	s.media = mp
	if cfg.P2PRelayRate > 0 {
		if s.p2p, err = p2prelay.New(p2prelay.Config{NC: deps.NC, Log: log, Metrics: m,
			Rate: cfg.P2PRelayRate, Burst: cfg.P2PRelayBurst}); err != nil {
			return nil, fmt.Errorf("gateway p2p relay: %w", err)
		}
	}
	s.reg = registry.New(deps.NC, log, m, cfg.RoomBatch, cfg.SendQueueFrames/2, cfg.SendQueueBytes/2)
	s.feed = presence.NewFeed(deps.NC, log, cfg.RequestTimeout, cfg.SendQueueFrames)
	s.replies = rpc.NewReplies(deps.NC)
	s.handler = conn.NewHandler(conn.Options{
		NC:        deps.NC,
		Requests:  s.replies,
		Log:       log,
		Metrics:   m,
		Registry:  s.reg,
		Feed:      s.feed,
		GatewayID: cfg.GatewayID,
		Server:    "parley-gateway/" + Version,
		HTTPURL:   s.httpURL,
		Media:     s.media,
		UDPAddr:   s.udpAddr,
		P2P:       s.p2p,
		STUNAddr:  cfg.STUNAddr,
		Admission: connlimit.New(connlimit.Config{
			Total:         cfg.MaxConns,
			PerAddr:       cfg.MaxConnsPerAddr,
			UnauthPerAddr: cfg.MaxUnauthConnsPerAddr,
			Exempt:        cfg.ConnLimitExempt,
		}),
		Limits: conn.Limits{
			MaxFrameSize:      uint32(cfg.MaxFrameSize),
			PreloginFrameSize: uint32(cfg.PreloginFrameSize),
			HandshakeTimeout:  cfg.HandshakeTimeout,
			HeartbeatInterval: cfg.HeartbeatInterval,
			IdleTimeout:       cfg.IdleTimeout,
			WriteTimeout:      cfg.WriteTimeout,
			RequestTimeout:    cfg.RequestTimeout,
			SendQueueFrames:   cfg.SendQueueFrames,
			SendQueueBytes:    cfg.SendQueueBytes,
		},
	})
	if deps.Files != nil {
		fh, err := files.New(files.Options{NC: deps.NC, Storage: deps.Files, Log: log, GatewayID: cfg.GatewayID,
			RequestTimeout: cfg.RequestTimeout, IdleTimeout: cfg.IdleTimeout, MaxSize: cfg.MaxUploadSize, MaxUploads: cfg.MaxUploads,
			MaxUploadsPerUser: cfg.MaxUploadsPerUser, MinRate: cfg.UploadMinRate, RateWindow: cfg.UploadRateWindow,
			CORSOrigins: cfg.CORSOrigins, LiveFallback: cfg.LiveFallback, ClientAddr: s.clientAddr})
		if err != nil {
			return nil, err
		}
		s.files = fh
	}
	s.hb = &presence.Heartbeat{
		NC:        deps.NC,
		Log:       log,
		GatewayID: cfg.GatewayID,
		Interval:  cfg.PresenceHeartbeat,
		Timeout:   cfg.RequestTimeout,
		Source:    s.reg,
	}
	return s, nil
}

// GatewayID is this replica's id (generated when the config left it empty).
func (s *Server) GatewayID() string { return s.cfg.GatewayID }

// Listen binds the configured listeners, so callers can read TCPAddr and
// HTTPAddr before Run. Run calls it if it was not called.
func (s *Server) Listen() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tcpLn != nil || s.httpLn != nil {
		return nil
	}
	if err := s.media.Listen(); err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	lc := net.ListenConfig{KeepAliveConfig: keepAlive}
	if s.cfg.TCPAddr != "" {
		ln, err := lc.Listen(context.Background(), "tcp", s.cfg.TCPAddr)
		if err != nil {
			s.media.Close()
			return fmt.Errorf("gateway tcp listen: %w", err)
		}
		s.tcpLn = ln
	}
	if s.cfg.HTTPAddr != "" {
		ln, err := lc.Listen(context.Background(), "tcp", s.cfg.HTTPAddr)
		if err != nil {
			if s.tcpLn != nil {
				_ = s.tcpLn.Close()
				s.tcpLn = nil
			}
			s.media.Close()
			return fmt.Errorf("gateway http listen: %w", err)
		}
		s.httpLn = ln
		s.origin.Store(newHTTPOrigin(ln, s.cfg.HTTPAddr, s.tlsConf != nil))
		if s.cfg.HTTPReadBuffer > 0 {
			s.httpLn = readBufferListener{Listener: ln, size: s.cfg.HTTPReadBuffer}
		}
	}
	return nil
}

// readBufferListener sets each accepted connection's receive buffer: it
// bounds the bytes in flight to the gateway, which an upload loses when
// the gateway stops (Linux would otherwise grow it up to tcp_rmem's
// maximum, tens of MiB).
type readBufferListener struct {
	net.Listener
	size int
}

func (l readBufferListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetReadBuffer(l.size)
	}
	return c, err
}

// TCPAddr is the bound TCP (TLS) address, nil if disabled or not bound.
func (s *Server) TCPAddr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tcpLn == nil {
		return nil
	}
	return s.tcpLn.Addr()
}

// UDPAddr is the bound media port (UDP), nil if disabled or not bound.
func (s *Server) UDPAddr() net.Addr {
	if a := s.media.UDPAddr(); a != nil {
		return a
	}
	return nil
}

// HTTPAddr is the bound HTTP (HTTPS) address, nil if disabled or not bound.
func (s *Server) HTTPAddr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.httpLn == nil {
		return nil
	}
	return s.httpLn.Addr()
}

// Ready is the gateway's /readyz check: NATS is connected and the listeners
// are accepting.
func (s *Server) Ready() error {
	if !s.nc.IsConnected() {
		return errors.New("nats not connected")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.serving || s.stopped {
		return errors.New("gateway listeners not accepting")
	}
	return nil
}

// Run serves until ctx ends, then shuts down: it stops accepting, sends
// every connection a fatal SERVER_SHUTDOWN, sends PresenceDisconnect for each
// authenticated one (each bounded by a few seconds), closes them all and
// waits for every goroutine it started.
func (s *Server) Run(ctx context.Context) error {
	if err := s.Listen(); err != nil {
		return err
	}
	if err := s.feed.Start(); err != nil {
		s.closeListeners()
		return fmt.Errorf("gateway: subscribe presence events: %w", err)
	}
	if err := s.reg.Start(); err != nil {
		s.feed.Stop()
		s.closeListeners()
		return fmt.Errorf("gateway: subscribe room messages: %w", err)
	}
	bgCtx, stopBg := context.WithCancel(context.Background())
	// The media plane outlives the connections (they drop their streams
	// as they close); it stops after them.
	mediaCtx, stopMedia := context.WithCancel(context.Background())
	mediaDone := make(chan struct{})
	go func() { defer close(mediaDone); _ = s.media.Run(mediaCtx) }()
	var bg sync.WaitGroup
	bg.Add(2)
	go func() { defer bg.Done(); _ = s.reg.Run(bgCtx) }()
	go func() { defer bg.Done(); _ = s.hb.Run(bgCtx) }()
	if s.certs != nil && s.cfg.TLSReload > 0 {
		// Renewed certificates are served to new connections (and
		// handshakes) from the next poll on.
		bg.Add(1)
		go func() { defer bg.Done(); s.certs.Run(bgCtx, s.cfg.TLSReload) }()
	}

	s.mu.Lock()
	tcpLn, httpLn := s.tcpLn, s.httpLn
	if tcpLn != nil {
		// TLS (and the PROXY header before it) is applied per connection,
		// in its own goroutine (newStream).
		s.wg.Add(1)
		go func() { defer s.wg.Done(); s.acceptLoop(tcpLn) }()
	}
	httpErr := make(chan error, 1)
	if httpLn != nil {
		s.app = s.newApp()
		// Under TLS, so a connection closed with a body unread closes
		// gently (reqbody.Listener).
		ln := reqbody.Listener(httpLn)
		if s.tlsConf != nil {
			ln = tls.NewListener(ln, s.tlsConf)
		}
		app := s.app
		s.wg.Add(1)
		go func() { defer s.wg.Done(); httpErr <- app.Listener(ln) }()
	}
	s.serving = true
	s.mu.Unlock()
	s.log.Info("gateway listening", "tcp", addrString(s.tcpLn), "http", addrString(s.httpLn), "udp", s.UDPAddr(), "tls", s.tlsConf != nil,
		"proxy_protocol_from", fmt.Sprint(s.cfg.ProxyProtocolFrom), "trusted_proxies", fmt.Sprint(s.cfg.TrustedProxies))

	var runErr error
	select {
	case <-ctx.Done():
	case err := <-httpErr:
		if err != nil {
			runErr = fmt.Errorf("gateway http: %w", err)
		}
	}

	s.log.Info("gateway shutting down")
	s.mu.Lock()
	s.stopped = true
	app := s.app
	s.mu.Unlock()
	stopBg() // no more heartbeats or resyncs while connections go
	if s.tcpLn != nil {
		_ = s.tcpLn.Close()
	}
	if s.files != nil {
		// Uploads keep what they read and tell their clients to resume
		// elsewhere, before the HTTP server waits for requests to end.
		s.files.Drain()
	}
	appDone := make(chan struct{})
	go func() {
		defer close(appDone)
		if app != nil {
			// WebSocket connections are hijacked from fasthttp and ended
			// below through the registry; this only stops accepting and
			// ends plain HTTP requests.
			_ = app.ShutdownWithTimeout(s.cfg.WriteTimeout)
		}
	}()
	// Spread over -drain-period: the other gateways get the reconnects
	// gradually (and /readyz already fails, so no new clients arrive).
	s.reg.ShutdownOver(s.cfg.DrainPeriod)
	s.reg.Wait()
	<-appDone
	if httpLn != nil {
		// fasthttp's shutdown closes only the listeners its Serve has taken
		// already: one that came before (a gateway stopped right after it
		// started) left Serve accepting for good. Closing it here ends that
		// Serve (an error from a second close is expected, and ignored).
		_ = httpLn.Close()
	}
	s.wg.Wait()
	stopMedia()
	<-mediaDone
	if s.p2p != nil {
		s.p2p.Close() // the connections detached theirs; this is a backstop
	}
	s.feed.Stop()
	s.reg.Stop()
	_ = s.replies.Close() // the connections are done: none waits
	bg.Wait()
	s.log.Info("gateway stopped")
	return runErr
}

// acceptLoop accepts connections on ln until it is closed.
func (s *Server) acceptLoop(ln net.Listener) {
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and similar: wait and retry rather
			// than spin or give up.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.log.Warn("accept failed", "err", err, "retry_in", backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		s.wg.Add(1)
		go s.startStream(c)
	}
}

// startStream runs on a short-lived goroutine per accepted connection: it
// reads the PROXY header and does the TLS handshake (newStream), then
// starts the connection's reader goroutine and returns. The handshake
// needs a deep stack (see transport.NewTLSStream); done on the reader, it
// would leave that goroutine's stack larger for the connection's whole
// life. Here it dies with this goroutine.
func (s *Server) startStream(c net.Conn) {
	t := s.newStream(c)
	if t == nil {
		s.wg.Done()
		return
	}
	go s.serveStream(t) // takes over this goroutine's s.wg count
}

// serveStream is the reader goroutine of one TCP or TLS connection. Its
// frame stays on the stack of every idle connection: keep it minimal (see
// conn.Handler.Serve), hence no defer.
func (s *Server) serveStream(t transport.Transport) {
	s.handler.Serve(t)
	s.wg.Done()
}

// newStream makes the transport of an accepted TCP connection: first the
// PROXY protocol header if it comes from a load balancer that sends one
// (-proxy-protocol-from), then the TLS handshake, each within
// HandshakeTimeout. Nil if the connection was refused (and closed) for its
// PROXY header or its handshake failed or took too long.
func (s *Server) newStream(c net.Conn) transport.Transport {
	if len(s.proxies) > 0 {
		pc, err := s.proxies.Stream(c, s.cfg.HandshakeTimeout)
		if err != nil {
			s.log.Info("connection refused", "peer", c.RemoteAddr().String(), "err", err)
			_ = c.Close()
			return nil
		}
		c = pc
	}
	if s.tlsConf == nil {
		return transport.NewStream(c, uint32(s.cfg.MaxFrameSize), "tcp")
	}
	t, err := transport.NewTLSStream(c, s.tlsRecs, uint32(s.cfg.MaxFrameSize), s.cfg.HandshakeTimeout)
	if err != nil {
		s.handler.Metrics.HandshakeFailures.WithLabelValues("TLS").Inc()
		if s.log.Enabled(context.Background(), slog.LevelDebug) {
			s.log.Debug("tls handshake failed", "peer", c.RemoteAddr().String(), "err", err)
		}
		_ = c.Close()
		return nil
	}
	records := "crypto_tls"
	if t.OwnRecords() {
		records = "gateway"
	}
	s.handler.Metrics.TLSRecords.WithLabelValues(records).Inc()
	return t
}

// clientAddr is the address of the client of an HTTP request: the peer,
// or, when the peer is a trusted proxy (-trusted-proxies), the client it
// names in X-Forwarded-For (with port 0: the client's port is not known).
func (s *Server) clientAddr(c *fiber.Ctx) net.Addr {
	peer := c.Context().RemoteAddr()
	if len(s.httpFwd) == 0 {
		return peer
	}
	ap, err := netip.ParseAddrPort(peer.String())
	if err != nil {
		return peer
	}
	ip := s.httpFwd.Forwarded(ap.Addr(), headerValues(c, fiber.HeaderXForwardedFor))
	if ip == ap.Addr().Unmap() {
		return peer
	}
	return net.TCPAddrFromAddrPort(netip.AddrPortFrom(ip, 0))
}

// httpScheme is the scheme the client used to reach the HTTP listener, as
// a trusted proxy tells it (X-Forwarded-Proto); "" when none does.
func (s *Server) httpScheme(c *fiber.Ctx) string {
	if len(s.httpFwd) == 0 {
		return ""
	}
	ap, err := netip.ParseAddrPort(c.Context().RemoteAddr().String())
	if err != nil {
		return ""
	}
	return s.httpFwd.Scheme(ap.Addr(), headerValues(c, fiber.HeaderXForwardedProto))
}

// headerValues are every value of a request header, in order.
func headerValues(c *fiber.Ctx, name string) []string {
	var out []string
	for _, v := range c.Request().Header.PeekAll(name) {
		out = append(out, string(v))
	}
	return out
}

// newApp builds the HTTP app: WebSocket upgrades at WebSocketPath, 426 for
// anything else there, 404 elsewhere, every answer with nosniff. No request
// body is ever left half read on a connection that stays open
// (reqbody.Guard, around every route).
func (s *Server) newApp() *fiber.App {
	app := fiber.New(fiber.Config{
		DisableStartupMessage: true,
		ReadTimeout:           s.cfg.HandshakeTimeout,
		WriteTimeout:          s.cfg.WriteTimeout,
		IdleTimeout:           s.cfg.IdleTimeout,
		// Upload bodies are streamed part by part (files.Handler), never
		// held whole; other requests have no body worth the name.
		StreamRequestBody: true,
		BodyLimit:         64 << 10,
		// Nothing here takes forms: without this, fasthttp reads a
		// multipart body whole (into temporary files) before any
		// handler could refuse it.
		DisablePreParseMultipartForm: true,
	})
	// No answer here is for a browser to sniff: the file endpoints set it
	// too (files.tusHeaders), this covers the rest (a 404 echoes the path).
	app.Use(func(c *fiber.Ctx) error {
		c.Set(fiber.HeaderXContentTypeOptions, "nosniff")
		return c.Next()
	})
	app.Use(reqbody.Guard)
	if s.files != nil {
		s.files.Register(app)
	}
	app.Get(WebSocketPath, s.upgradeWebSocket)
	// WebSocket connections leave fasthttp once upgraded (upgradeWebSocket):
	// it must not close them when the hijack handler returns.
	app.Server().KeepHijackedConns = true
	return app
}

// closeListeners closes the bound listeners when Run fails before serving.
func (s *Server) closeListeners() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.media.Close()
	for _, ln := range []net.Listener{s.tcpLn, s.httpLn} {
		if ln != nil {
			_ = ln.Close()
		}
	}
}

func addrString(ln net.Listener) string {
	if ln == nil {
		return ""
	}
	return ln.Addr().String()
}
