package parley

import (
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"time"

	"github.com/parleychat/parley/protocol/wire"
)

// Version is this SDK's version, sent in Hello as "parley-go/<Version>".
const Version = "0.2.0"

// Defaults for the options below.
const (
	DefaultBackoffMin  = 200 * time.Millisecond
	DefaultBackoffMax  = 10 * time.Second
	DefaultEventBuffer = 1024

	// Used when the server's Welcome leaves the heartbeat fields at zero.
	defaultHeartbeat = 15 * time.Second
	// How long the handshake (dial, Hello, Welcome) may take when the
	// caller's context has no deadline.
	defaultHandshakeTimeout = 15 * time.Second
	// A write that makes no progress for this long kills the connection.
	writeTimeout = 15 * time.Second
)

// Option configures Dial.
type Option func(*config)

type config struct {
	tlsConfig    *tls.Config
	logger       *slog.Logger
	reconnect    bool
	backoffMin   time.Duration
	backoffMax   time.Duration
	device       string
	presenceFeed bool
	maxFrameSize uint32
	heartbeat    time.Duration // 0: the server's
	idleTimeout  time.Duration // 0: the server's
	dialer       *net.Dialer
	eventBuffer  int
	clientName   string
	autoAck      bool
	httpBase     string // file transfers; "": derived from the address
	pageSize     uint32 // 0: each list's protocol maximum
	// Direct sessions (direct.go).
	stateDir        string
	directPolicy    DirectPolicy
	directDownloads string
	directRelayOnly bool
	// newestToken: WithTokenSource's function; nil: the client presents
	// the token it last received.
	newestToken func(sessionID string) (token string, expiresAt time.Time)
}

func defaultConfig() config {
	return config{
		logger:       slog.New(slog.NewTextHandler(io.Discard, nil)),
		reconnect:    true,
		backoffMin:   DefaultBackoffMin,
		backoffMax:   DefaultBackoffMax,
		presenceFeed: true,
		maxFrameSize: wire.DefaultMaxFrameSize,
		dialer:       &net.Dialer{KeepAlive: 30 * time.Second},
		eventBuffer:  DefaultEventBuffer,
		clientName:   "parley-go/" + Version,
	}
}

// WithTLSConfig sets the TLS configuration for tls:// and wss:// addresses
// (for example RootCAs with a private CA). ServerName defaults to the
// address's host. The config is cloned.
func WithTLSConfig(c *tls.Config) Option {
	return func(o *config) {
		if c != nil {
			o.tlsConfig = c.Clone()
		}
	}
}

// WithLogger sets where the client logs connection events (reconnects,
// dropped events). The default discards everything.
func WithLogger(l *slog.Logger) Option {
	return func(o *config) {
		if l != nil {
			o.logger = l
		}
	}
}

// WithReconnect turns automatic reconnection on (the default) or off. With it
// off, a broken connection ends the client: requests fail with ErrClosed.
func WithReconnect(on bool) Option { return func(o *config) { o.reconnect = on } }

// WithBackoff sets the reconnect schedule (see Backoff): attempt n waits a
// uniformly random time between zero and min(max, min·2^(n−1)), default
// 200ms doubling to 10s, plus whatever a refusal's retry_after_ms asked.
func WithBackoff(min, max time.Duration) Option {
	return func(o *config) { o.backoffMin, o.backoffMax = min, max }
}

// WithDevice sets the device label sent with every request that starts a
// session (shown in server logs).
func WithDevice(name string) Option { return func(o *config) { o.device = name } }

// WithPresenceFeed chooses whether the server pushes the online list and its
// changes to this connection (default true). Turn it off for clients that
// never look at presence (scripts, load generators): Online stays empty and
// no presence events arrive.
func WithPresenceFeed(on bool) Option { return func(o *config) { o.presenceFeed = on } }

// WithMaxFrameSize sets the largest frame the client accepts from the server
// (default 1 MiB); a larger length prefix kills the connection before any
// buffer is allocated.
func WithMaxFrameSize(n uint32) Option {
	return func(o *config) {
		if n > 0 {
			o.maxFrameSize = n
		}
	}
}

// WithHeartbeat overrides the server's heartbeat settings: the client sends a
// Ping after interval without traffic, and gives the connection up as dead
// after idle without receiving anything. Zero keeps the server's value.
func WithHeartbeat(interval, idle time.Duration) Option {
	return func(o *config) { o.heartbeat, o.idleTimeout = interval, idle }
}

// WithDialer sets the dialer for the underlying TCP connection, for example
// one with LocalAddr set to spread many connections over source addresses.
func WithDialer(d *net.Dialer) Option {
	return func(o *config) {
		if d != nil {
			o.dialer = d
		}
	}
}

// WithEventBuffer sets how many presence events may wait unread on the
// Events channel (default 1024). Beyond that, online/offline events are
// dropped (Online stays accurate; see DroppedEvents); lifecycle events are
// never dropped.
func WithEventBuffer(n int) Option {
	return func(o *config) {
		if n > 0 {
			o.eventBuffer = n
		}
	}
}

// WithClientName overrides the client name sent in Hello
// (default "parley-go/<Version>").
func WithClientName(name string) Option {
	return func(o *config) {
		if name != "" {
			o.clientName = name
		}
	}
}

// WithAutoAck makes the client acknowledge each message once the
// application has received its MessageEvent (default false: call Ack for
// what the user has actually seen). Acks are sent in the background, one
// per conversation for a run of messages.
func WithAutoAck(on bool) Option { return func(o *config) { o.autoAck = on } }

// WithPageSize caps how many entries each page of a paged list (Who,
// Conversations) asks the server for. The methods still return the whole
// list, in more round trips of smaller replies; 0, the default, asks for
// the protocol's maximum (1,000 users, 500 conversations).
func WithPageSize(n uint32) Option { return func(o *config) { o.pageSize = n } }

// pageLimit is the page size to ask for of a list whose protocol maximum
// is max.
func (o *config) pageLimit(max uint32) uint32 {
	if o.pageSize > 0 && o.pageSize < max {
		return o.pageSize
	}
	return max
}

// WithTokenSource lets clients in several processes share one session
// (protocol §8.3: each resume returns a fresh token and retires the one it
// replaced, after a minute). Whenever the client presents its session's
// token, resuming after a reconnect or authorizing an HTTP file transfer,
// it first calls newest with the session's id and uses the token returned
// instead of its own when that one expires later (it was issued later).
// The application saves every token it receives (the Session that Login,
// Register and Resume return, ReconnectedEvent.Session) where newest reads
// it; "" means none. newest is called without any lock held and should be
// quick (reading a small file is fine).
func WithTokenSource(newest func(sessionID string) (token string, expiresAt time.Time)) Option {
	return func(o *config) { o.newestToken = newest }
}
