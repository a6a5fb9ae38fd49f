package server

import (
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/parleychat/parley/gateway/internal/files"
	"github.com/parleychat/parley/gateway/internal/p2prelay"
	"github.com/parleychat/parley/libs/service"
	"github.com/parleychat/parley/protocol/wire"
)

// Config is the gateway's configuration. RegisterFlags defines its flags;
// the zero value is not valid, start from the flag defaults (DefaultConfig).
type Config struct {
	TCPAddr  string // TCP (or TLS) listener; empty disables it
	HTTPAddr string // HTTP listener serving WebSocket at /v1/ws; empty disables it
	TLSCert  string // PEM certificate file; with TLSKey, TCP speaks TLS and HTTP is HTTPS/WSS
	TLSKey   string // PEM private key file
	// TLSReload is how often the certificate files are checked for a new
	// pair (a renewal), served from then on without a restart; 0: never.
	TLSReload time.Duration
	// TLSRecords says who protects a TLS 1.3 connection's records after
	// crypto/tls's handshake: "parley" (the gateway itself, keeping an
	// idle connection small: transport/tlsrecord.go) or "go" (crypto/tls,
	// as TLS 1.2 connections always are). Empty: parley.
	TLSRecords string
	// ProxyProtocolFrom are the TCP load balancers (address prefixes) whose
	// connections open with a PROXY protocol header naming the client;
	// connections from them without one are refused. Empty: PROXY
	// protocol off. Connections from elsewhere keep their own address.
	ProxyProtocolFrom []netip.Prefix
	// TrustedProxies are the HTTP proxies (address prefixes) whose
	// X-Forwarded-For and X-Forwarded-Proto are believed on the HTTP
	// listener (WebSocket and file endpoints); empty: nobody's.
	TrustedProxies []netip.Prefix
	Insecure       bool   // allow plaintext on a non-loopback address
	GatewayID      string // this replica's id, a NATS subject token; empty: hostname-xxxxxx
	// PublicHTTPURL is the base URL clients use for files
	// (Welcome.http_url); empty: derived per connection (welcome.go).
	PublicHTTPURL string
	// UDPAddr is the calls' media port (UDP); empty: none, media travels
	// as frames on the connections. Packets are sealed (AES-256-GCM with
	// keys handed out over the connection), so -insecure does not apply.
	UDPAddr string
	// PublicUDPAddr is the host:port clients send media to
	// (CallJoined.udp_addr); empty: derived per connection (welcome.go).
	PublicUDPAddr string
	// MediaAlive is the period of the mediabus Alive messages that keep
	// this gateway's call participants with the relay.
	MediaAlive time.Duration
	// STUNAddr is the rendezvous's primary public address, host:port,
	// sent in Welcome.stun_addr (docs/protocol.md §20.3); empty: none.
	STUNAddr string
	// P2PRelayRate is how many bytes a second of direct sessions' packets
	// one connection may relay (docs/protocol.md §20.4); 0: none relayed.
	// P2PRelayBurst is how many it may send at once.
	P2PRelayRate, P2PRelayBurst int

	MaxFrameSize      int // largest frame accepted, bytes without prefix
	PreloginFrameSize int // largest frame accepted from a connection without a session

	MaxConns              int            // client connections at once (TCP, TLS, WebSocket); 0: no limit
	MaxConnsPerAddr       int            // client connections from one source address; 0: no limit
	MaxUnauthConnsPerAddr int            // connections without a session from one source address; 0: no limit
	ConnLimitExempt       []netip.Prefix // sources not limited per address (a local proxy)

	HandshakeTimeout  time.Duration // Hello must arrive within this (and the TLS handshake before it)
	HeartbeatInterval time.Duration // advertised in Welcome
	IdleTimeout       time.Duration // close a connection silent this long (IDLE_TIMEOUT)
	SendQueueFrames   int           // per-connection outbound queue bound, frames
	SendQueueBytes    int           // per-connection outbound queue bound, bytes
	WriteTimeout      time.Duration // bound on one write to a client
	DrainPeriod       time.Duration // at shutdown, connections are closed (SERVER_SHUTDOWN) spread over this; 0: all at once
	PresenceHeartbeat time.Duration // GatewayHeartbeat period
	RequestTimeout    time.Duration // bound on one NATS request
	RoomBatch         time.Duration // room events closer together than this share one write per connection; 0: every event written alone
	MaxUploadSize     int64         // announced to tus clients (Tus-Max-Size); the file service enforces its own limit
	MaxUploads        int           // uploads (tus PATCH) written at once; each holds up to three parts in memory
	MaxUploadsPerUser int           // uploads one user writes at once through this gateway (0: no bound)
	UploadMinRate     int           // slowest an upload body may arrive, bytes/s, judged over UploadRateWindow (0: no floor)
	UploadRateWindow  time.Duration // each window of this length must bring UploadMinRate × the window's bytes
	HTTPReadBuffer    int           // receive buffer of each HTTP connection, bytes (0: the kernel's autotuning)
	CORSOrigins       Origins       // web origins allowed to call the file endpoints from a browser (none by default)
	LiveFallback      time.Duration // a held live download asks the file service again after this without a progress event
}

// Origins is a list of web origins ("https://chat.example.com"), a flag
// given comma-separated.
type Origins []string

func (o *Origins) String() string { return strings.Join(*o, ",") }

// Set parses a comma-separated list; each must be scheme://host[:port]
// with scheme http or https ("*" and "null" are refused: an origin is
// echoed only when it is named).
func (o *Origins) Set(v string) error {
	var list Origins
	for s := range strings.SplitSeq(v, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		u, err := url.Parse(s)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil ||
			(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
			return fmt.Errorf("%q is not an origin (scheme://host[:port], http or https)", s)
		}
		// As browsers send it: lower case, no default port.
		host := strings.ToLower(u.Host)
		if u.Scheme == "https" {
			host = strings.TrimSuffix(host, ":443")
		} else {
			host = strings.TrimSuffix(host, ":80")
		}
		list = append(list, u.Scheme+"://"+host)
	}
	*o = list
	return nil
}

// The values of -tls-records.
const (
	TLSRecordsParley = "parley"
	TLSRecordsGo     = "go"
)

// WebSocketPath is where the HTTP listener upgrades to WebSocket.
const WebSocketPath = "/v1/ws"

// DefaultConfig returns the configuration the flags default to.
func DefaultConfig() Config {
	return Config{
		TCPAddr:               "127.0.0.1:7420",
		HTTPAddr:              "127.0.0.1:7480",
		UDPAddr:               "127.0.0.1:7470",
		MediaAlive:            2 * time.Second,
		P2PRelayRate:          4 << 20,
		P2PRelayBurst:         1 << 20,
		MaxFrameSize:          wire.DefaultMaxFrameSize,
		PreloginFrameSize:     16 << 10,
		MaxConns:              defaultMaxConns(),
		MaxConnsPerAddr:       1024,
		MaxUnauthConnsPerAddr: 256,
		ConnLimitExempt:       []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")},
		HandshakeTimeout:      10 * time.Second,
		TLSReload:             10 * time.Second,
		TLSRecords:            TLSRecordsParley,
		HeartbeatInterval:     30 * time.Second,
		IdleTimeout:           90 * time.Second,
		SendQueueFrames:       1024,
		SendQueueBytes:        4 << 20,
		WriteTimeout:          10 * time.Second,
		DrainPeriod:           5 * time.Second,
		PresenceHeartbeat:     5 * time.Second,
		RequestTimeout:        10 * time.Second,
		RoomBatch:             20 * time.Millisecond,
		MaxUploadSize:         10 << 30,
		MaxUploads:            24,
		MaxUploadsPerUser:     4,
		UploadMinRate:         1 << 10,
		UploadRateWindow:      30 * time.Second,
		HTTPReadBuffer:        2 << 20,
		LiveFallback:          files.DefaultLiveFallback,
	}
}

// RegisterFlags defines the gateway's flags on fs, writing into c, with the
// DefaultConfig values as defaults.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	d := DefaultConfig()
	fs.StringVar(&c.TCPAddr, "tcp-addr", d.TCPAddr, "TCP (TLS with -tls-cert/-tls-key) listen address for clients; empty disables it")
	fs.StringVar(&c.HTTPAddr, "http-addr", d.HTTPAddr, "HTTP(S) listen address; clients use WebSocket at "+WebSocketPath+"; empty disables it")
	fs.StringVar(&c.TLSCert, "tls-cert", "", "PEM certificate file; with -tls-key, TCP speaks TLS and HTTP is HTTPS/WSS")
	fs.StringVar(&c.TLSKey, "tls-key", "", "PEM private key file for -tls-cert")
	fs.DurationVar(&c.TLSReload, "tls-reload-interval", d.TLSReload, "how often the -tls-cert/-tls-key files are checked for a new pair (cert-manager's renewals, a Secret volume's symlink swap): it is served to new connections from then on, without a restart; a pair that does not load is logged and the previous one kept. 0: never")
	fs.StringVar(&c.TLSRecords, "tls-records", d.TLSRecords, "who protects the records of a TLS 1.3 connection on -tcp-addr after the handshake: parley (the gateway itself: an idle connection keeps its keys but no buffers) or go (crypto/tls, as for TLS 1.2). Clients see standard TLS 1.3 either way")
	fs.Func("proxy-protocol-from", "comma-separated addresses or CIDR prefixes of TCP load balancers that send a PROXY protocol header (v2, v1 accepted) at the start of each connection on -tcp-addr: the client's address is taken from it, and their connections without one are refused. Connections from other addresses are served as they are (a PROXY header from them is not believed: the connection fails). Empty (default): PROXY protocol off", func(v string) error {
		p, err := parsePrefixes(v)
		c.ProxyProtocolFrom = p
		return err
	})
	fs.Func("trusted-proxies", "comma-separated addresses or CIDR prefixes of HTTP proxies (an Ingress controller) whose X-Forwarded-For and X-Forwarded-Proto headers are believed on -http-addr (WebSocket and file endpoints): the client is the rightmost X-Forwarded-For address that is not a trusted proxy. Empty (default): the headers are ignored, the client is the peer", func(v string) error {
		p, err := parsePrefixes(v)
		c.TrustedProxies = p
		return err
	})
	fs.BoolVar(&c.Insecure, "insecure", false, "allow plaintext listeners on non-loopback addresses")
	fs.StringVar(&c.PublicHTTPURL, "public-http-url", "", "base URL clients use for file transfers, sent in Welcome.http_url (e.g. https://chat.example.com:7480); default: http(s):// + the name the client connected with (TLS server name, WebSocket Host), else -http-addr's host, else the local address it connected to, with -http-addr's port. Set it behind a load balancer or NAT that changes the port or address")
	fs.StringVar(&c.UDPAddr, "udp-addr", d.UDPAddr, "UDP listen address of the calls' media port; empty: none (call media then travels on the client connections, slower)")
	fs.StringVar(&c.PublicUDPAddr, "public-udp-addr", "", "host:port clients send call media to, sent in CallJoined.udp_addr; default: the name the client connected with (TLS server name, WebSocket Host), else -udp-addr's host, else the local address it connected to, with -udp-addr's port. Set it behind a load balancer or NAT")
	fs.DurationVar(&c.MediaAlive, "media-alive-interval", d.MediaAlive, "period of the liveness messages about this gateway's call participants to the media-relay (keep well under its 8 s timeout)")
	fs.StringVar(&c.STUNAddr, "stun-addr", "", "host:port of the rendezvous's primary public address (its STUN server, UDP), sent in Welcome.stun_addr so clients can classify their NAT and register direct sessions; empty: none (direct sessions then stay relayed)")
	fs.IntVar(&c.P2PRelayRate, "p2p-relay-rate", d.P2PRelayRate, "bytes per second of direct sessions' packets one connection may relay through the server while no direct path works (p2p_relay frames; the excess is dropped); 0: relay nothing")
	fs.IntVar(&c.P2PRelayBurst, "p2p-relay-burst", d.P2PRelayBurst, "bytes of direct sessions' packets one connection may relay in one burst, the depth of the -p2p-relay-rate token bucket (at least 1500, the largest packet)")
	fs.StringVar(&c.GatewayID, "gateway-id", "", "gateway replica id (letters, digits, - and _); default: hostname-<6 random chars>")
	fs.IntVar(&c.MaxFrameSize, "max-frame-size", d.MaxFrameSize, "largest frame accepted from a client, in bytes")
	fs.IntVar(&c.PreloginFrameSize, "max-prelogin-frame-size", d.PreloginFrameSize, "largest frame accepted from a connection without a session (Hello, Register, Login, Resume, Ping), in bytes; at most -max-frame-size")
	fs.IntVar(&c.MaxConns, "max-conns", d.MaxConns, "client connections (TCP, TLS, WebSocket) at once; more are refused with UNAVAILABLE. Default: the open-file limit minus 256; 0: no limit")
	fs.IntVar(&c.MaxConnsPerAddr, "max-conns-per-addr", d.MaxConnsPerAddr, "client connections from one source address (IPv4 address or IPv6 /64); more are refused with RATE_LIMITED; 0: no limit")
	fs.IntVar(&c.MaxUnauthConnsPerAddr, "max-unauth-conns-per-addr", d.MaxUnauthConnsPerAddr, "connections without a session from one source address; more are refused with RATE_LIMITED; 0: no limit")
	c.ConnLimitExempt = d.ConnLimitExempt
	fs.Func("conn-limit-exempt", "comma-separated addresses or CIDR prefixes not limited per address, e.g. a proxy through which clients arrive (default \"127.0.0.0/8,::1/128\"; empty: none)", func(v string) error {
		p, err := parsePrefixes(v)
		c.ConnLimitExempt = p
		return err
	})
	fs.DurationVar(&c.HandshakeTimeout, "handshake-timeout", d.HandshakeTimeout, "time a new connection has to send Hello (and, under TLS, to complete the TLS handshake before that)")
	fs.DurationVar(&c.HeartbeatInterval, "heartbeat-interval", d.HeartbeatInterval, "ping interval advertised to clients in Welcome")
	fs.DurationVar(&c.IdleTimeout, "idle-timeout", d.IdleTimeout, "close a connection after receiving nothing for this long")
	fs.IntVar(&c.SendQueueFrames, "send-queue-frames", d.SendQueueFrames, "per-connection outbound queue limit in frames (room and group events beyond half of it are shed; overflow of the others: SLOW_CONSUMER)")
	fs.IntVar(&c.SendQueueBytes, "send-queue-bytes", d.SendQueueBytes, "per-connection outbound queue limit in bytes (room and group events beyond half of it are shed; overflow of the others: SLOW_CONSUMER)")
	fs.DurationVar(&c.WriteTimeout, "write-timeout", d.WriteTimeout, "longest time one write to a client may take")
	fs.DurationVar(&c.DrainPeriod, "drain-period", d.DrainPeriod, "at shutdown, close the client connections (SERVER_SHUTDOWN) spread evenly over this long, so their clients reconnect to the other gateways gradually; keep it below -shutdown-timeout; 0: all at once")
	fs.DurationVar(&c.PresenceHeartbeat, "presence-heartbeat", d.PresenceHeartbeat, "period of the heartbeat to the presence service")
	fs.DurationVar(&c.RequestTimeout, "request-timeout", d.RequestTimeout, "timeout of requests to backing services")
	fs.Int64Var(&c.MaxUploadSize, "max-upload-size", d.MaxUploadSize, "largest upload announced to tus clients (Tus-Max-Size); keep it equal to the file service's -file-max-size")
	fs.IntVar(&c.HTTPReadBuffer, "http-read-buffer", d.HTTPReadBuffer, "receive buffer of each HTTP connection in bytes: bounds what an upload has in flight, and re-sends, when the gateway stops; it also caps one upload at about this much per round trip (2 MiB: ~20 MB/s at 100 ms); 0: the kernel's autotuning")
	fs.IntVar(&c.MaxUploads, "max-uploads", d.MaxUploads, "uploads written at once by this gateway; each holds up to three parts (3 x 8 MiB) in memory, more are answered 503 with Retry-After")
	fs.IntVar(&c.MaxUploadsPerUser, "max-uploads-per-user", d.MaxUploadsPerUser, "uploads one user writes at once through this gateway (of -max-uploads), more are answered 503 with Retry-After; 0: no bound")
	fs.IntVar(&c.UploadMinRate, "upload-min-rate", d.UploadMinRate, "slowest an upload body may arrive, in bytes/s: each -upload-rate-window must bring this many bytes per second of it, else the request is ended (what arrived is kept; the client resumes) and its slot freed; 0: no floor")
	fs.DurationVar(&c.UploadRateWindow, "upload-rate-window", d.UploadRateWindow, "window over which -upload-min-rate is judged: a body may pause for up to about this long")
	fs.DurationVar(&c.LiveFallback, "live-fallback-poll", d.LiveFallback, "a download following a running upload waits for the file service's progress events; without one for this long it asks again (events can be lost)")
	fs.Var(&c.CORSOrigins, "cors-origins", "comma-separated web origins (https://chat.example.com) whose pages may use the file endpoints from a browser: their Origin is echoed in Access-Control-Allow-Origin; empty: none")
	fs.DurationVar(&c.RoomBatch, "room-batch", d.RoomBatch, "room messages arriving within this of the previous room write are batched into one write per connection (0: no batching)")
}

// Configuration errors.
var (
	ErrNoListener   = errors.New("no listener: give -tcp-addr or -http-addr")
	ErrTLSPair      = errors.New("-tls-cert and -tls-key must be given together")
	ErrPlaintext    = errors.New("plaintext listener on a non-loopback address")
	ErrGatewayID    = errors.New("invalid gateway id")
	ErrInvalidLimit = errors.New("invalid limit")
	ErrPublicURL    = errors.New("invalid public URL")
	ErrUDPAddr      = errors.New("invalid UDP address")
	ErrTLSRecords   = errors.New("-tls-records must be parley or go")
)

// Validate reports every problem with c at once (joined with
// errors.Join), each naming its flag; it changes nothing and starts
// nothing. New applies the same checks. A TLS certificate and key are
// loaded to check them.
// CheckShutdown checks the drain against the process's graceful shutdown
// bound (-shutdown-timeout): the connections must all have been told to
// go, with time left to close them, before the process gives up.
func (c Config) CheckShutdown(shutdown time.Duration) error {
	if c.DrainPeriod >= shutdown {
		return fmt.Errorf("-drain-period (%s) must be below -shutdown-timeout (%s)", c.DrainPeriod, shutdown)
	}
	return nil
}

func (c Config) Validate() error {
	err := c.validate()
	if c.TLSCert != "" && c.TLSKey != "" {
		if _, tlsErr := tls.LoadX509KeyPair(c.TLSCert, c.TLSKey); tlsErr != nil {
			err = errors.Join(err, fmt.Errorf("-tls-cert/-tls-key: %w", tlsErr))
		}
	}
	return err
}

// validate checks c, reporting every problem at once, and fills in the
// gateway id default and the normalised -public-http-url and
// -cors-origins.
func (c *Config) validate() error {
	var errs []error
	if c.TCPAddr == "" && c.HTTPAddr == "" {
		errs = append(errs, ErrNoListener)
	}
	if c.TLSRecords != TLSRecordsParley && c.TLSRecords != TLSRecordsGo && c.TLSRecords != "" {
		errs = append(errs, fmt.Errorf("%q: %w", c.TLSRecords, ErrTLSRecords))
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		errs = append(errs, ErrTLSPair)
	}
	if c.TLSCert == "" && !c.Insecure {
		for _, addr := range []string{c.TCPAddr, c.HTTPAddr} {
			if addr != "" && !isLoopback(addr) {
				errs = append(errs, fmt.Errorf("refusing plaintext on %s: give -tls-cert/-tls-key or -insecure: %w", addr, ErrPlaintext))
			}
		}
	}
	if c.PublicHTTPURL != "" {
		u, err := url.Parse(c.PublicHTTPURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil ||
			u.RawQuery != "" || u.Fragment != "" || !utf8.ValidString(c.PublicHTTPURL) {
			errs = append(errs, fmt.Errorf("-public-http-url %q: want http(s)://host[:port][/path]: %w", c.PublicHTTPURL, ErrPublicURL))
		}
		c.PublicHTTPURL = strings.TrimRight(c.PublicHTTPURL, "/")
	}
	if c.UDPAddr != "" && !validListenAddr(c.UDPAddr) {
		errs = append(errs, fmt.Errorf("-udp-addr %q: want [host]:port: %w", c.UDPAddr, ErrUDPAddr))
	}
	if c.PublicUDPAddr != "" && !validPublicAddr(c.PublicUDPAddr) {
		errs = append(errs, fmt.Errorf("-public-udp-addr %q: want host:port, port 1-65535: %w", c.PublicUDPAddr, ErrUDPAddr))
	}
	if c.STUNAddr != "" && !validPublicAddr(c.STUNAddr) {
		errs = append(errs, fmt.Errorf("-stun-addr %q: want host:port, port 1-65535: %w", c.STUNAddr, ErrUDPAddr))
	}
	if c.GatewayID == "" {
		c.GatewayID = service.DefaultID("gateway")
	}
	if !service.ValidID(c.GatewayID) {
		errs = append(errs, fmt.Errorf("-gateway-id %q: use 1-64 letters, digits, '-' or '_': %w", c.GatewayID, ErrGatewayID))
	}
	var origins Origins
	if err := origins.Set(strings.Join(c.CORSOrigins, ",")); err != nil {
		errs = append(errs, fmt.Errorf("-cors-origins: %w: %w", err, ErrInvalidLimit))
	}
	c.CORSOrigins = origins
	limits := []struct {
		name string
		ok   bool
		want string
	}{
		{"-max-frame-size", c.MaxFrameSize > 0 && c.MaxFrameSize <= 64<<20, "1 to 64 MiB"},
		{"-max-prelogin-frame-size", c.PreloginFrameSize > 0 && c.PreloginFrameSize <= c.MaxFrameSize, "positive, at most -max-frame-size"},
		{"-max-conns", c.MaxConns >= 0, "0 or more"},
		{"-max-conns-per-addr", c.MaxConnsPerAddr >= 0, "0 or more"},
		{"-max-unauth-conns-per-addr", c.MaxUnauthConnsPerAddr >= 0, "0 or more"},
		{"-handshake-timeout", c.HandshakeTimeout > 0, "positive"},
		{"-tls-reload-interval", c.TLSReload >= 0, "0 or more"},
		{"-heartbeat-interval", c.HeartbeatInterval > 0, "positive"},
		{"-idle-timeout", c.IdleTimeout > 0, "positive"},
		{"-send-queue-frames", c.SendQueueFrames > 0, "positive"},
		{"-send-queue-bytes", c.SendQueueBytes > 0, "positive"},
		{"-write-timeout", c.WriteTimeout > 0, "positive"},
		{"-drain-period", c.DrainPeriod >= 0, "0 or more"},
		{"-presence-heartbeat", c.PresenceHeartbeat > 0, "positive"},
		{"-request-timeout", c.RequestTimeout > 0, "positive"},
		{"-room-batch", c.RoomBatch >= 0 && c.RoomBatch <= time.Second, "0 to 1s"},
		{"-max-uploads", c.MaxUploads > 0, "positive"},
		{"-max-uploads-per-user", c.MaxUploadsPerUser >= 0, "0 or more"},
		{"-upload-min-rate", c.UploadMinRate >= 0, "0 or more"},
		{"-upload-rate-window", c.UploadRateWindow > 0 || c.UploadMinRate == 0, "positive with -upload-min-rate"},
		{"-http-read-buffer", c.HTTPReadBuffer >= 0, "0 or more"},
		{"-live-fallback-poll", c.LiveFallback > 0, "positive"},
		{"-media-alive-interval", c.MediaAlive > 0 && c.MediaAlive <= 4*time.Second, "positive, at most 4s (the relay drops a participant unheard for 8s)"},
		{"-p2p-relay-rate", c.P2PRelayRate >= 0, "0 or more"},
		{"-p2p-relay-burst", c.P2PRelayRate == 0 || c.P2PRelayBurst >= p2prelay.MaxPacket, "at least 1500 (the largest packet) with -p2p-relay-rate"},
	}
	for _, l := range limits {
		if !l.ok {
			errs = append(errs, fmt.Errorf("%s must be %s: %w", l.name, l.want, ErrInvalidLimit))
		}
	}
	return errors.Join(errs...)
}

// fdReserve is what defaultMaxConns leaves of the open-file limit for the
// rest of the process: NATS, listeners, HTTP file transfers, files, and
// accepting a connection only to refuse it.
const fdReserve = 256

// defaultMaxConns is the process's open-file limit minus fdReserve, so that
// a full gateway refuses clients with a frame instead of failing to accept
// them; 0 (no limit) when the limit cannot be read.
func defaultMaxConns() int {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil || rl.Cur == 0 {
		return 0
	}
	if rl.Cur > 1<<30 {
		return 0 // effectively unlimited
	}
	return max(int(rl.Cur)-fdReserve, 64)
}

// parsePrefixes parses a comma-separated list of addresses and CIDR
// prefixes (an address is its own /32 or /128).
func parsePrefixes(v string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(v, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if p, err := netip.ParsePrefix(f); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(f)
		if err != nil {
			return nil, fmt.Errorf("%q is neither an address nor a CIDR prefix", f)
		}
		out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
	}
	return out, nil
}

// isLoopback reports whether addr ("host:port") binds only loopback. An
// empty host (all interfaces) is not loopback; the only name trusted is
// "localhost".
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// validListenAddr reports whether addr is [host]:port with a port
// number 0-65535.
func validListenAddr(addr string) bool {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	n, err := strconv.ParseUint(port, 10, 16)
	return err == nil && n <= 65535
}

// validPublicAddr reports whether addr is host:port for clients: a host
// (validHost) and a port 1-65535.
func validPublicAddr(addr string) bool {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host == "" || !validHost(host) {
		return false
	}
	n, err := strconv.ParseUint(port, 10, 16)
	return err == nil && n > 0
}
