package parley

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parleychat/parley/protocol/parleyv1"
)

// Client is a connection to a Parley gateway that survives network breaks:
// it redials with backoff and resumes its session (see Dial). All methods
// are safe for concurrent use; any number of requests may be in flight.
type Client struct {
	cfg    config
	addr   address
	log    *slog.Logger
	events *eventQueue
	ctx    context.Context // ends when the client ends; stops reconnecting
	cancel context.CancelFunc
	wg     sync.WaitGroup // the supervisor goroutine

	mu         sync.Mutex    // guards the fields below
	conn       *conn         // the live connection; nil while reconnecting
	changed    chan struct{} // closed and replaced whenever conn or ended changes
	welcome    Welcome
	session    *Session
	loggingOut bool  // Logout sent or done: a break must not resume the session
	ended      error // non-nil once the client is over; wraps ErrClosed
	online     *onlineView
	resuming   *conn                  // a reconnect's connection before it goes live
	held       []*parleyv1.Frame      // events that arrived on resuming, replayed in order
	track      *tracker               // message delivery per conversation (delivery.go)
	trackUser  string                 // the user track belongs to
	syncAll    bool                   // a full sync is wanted (sync.go)
	catchUps   map[string]struct{}    // conversations with a gap to read
	gapWaits   map[string]*time.Timer // conversations with a gap waiting catchUpGrace for live events

	syncWake chan struct{} // wakes syncLoop (cap 1)

	callMu      sync.Mutex       // guards the fields below; taken after mu, before a CallSession's mu
	calls       []*CallSession   // running call sessions
	recentCalls map[string]*Call // the latest state of recent calls by id (call events)
	recentOrder []string         // recentCalls' ids, oldest first

	// Direct sessions (direct.go): the state is made on first use.
	p2pOnce  sync.Once
	p2pState atomic.Pointer[directState] // set once by p2pOnce
	p2pErr   error

	ackMu   sync.Mutex        // guards acks
	acks    map[string]uint64 // WithAutoAck: conversation -> seq to acknowledge
	ackWake chan struct{}     // wakes ackLoop (cap 1)
}

// Dial connects to a gateway and performs the handshake. addr is one of
//
//	host:port or tcp://host:port   TCP (default port 7420)
//	tls://host:port                TLS
//	ws://host:port/v1/ws           WebSocket (path defaults to /v1/ws)
//	wss://host:port/v1/ws          WebSocket over TLS
//
// ctx bounds the dial and the handshake only. A server that speaks no common
// protocol version makes Dial fail with an error matching
// ErrUnsupportedVersion.
//
// The client then stays connected until Close. After a network break it
// redials with backoff, redoes the handshake and resumes the session with
// its token (reported as DisconnectedEvent then ReconnectedEvent), unless
// WithReconnect(false), after Logout, or when the server ended the session.
func Dial(ctx context.Context, addr string, opts ...Option) (*Client, error) {
	a, err := parseAddr(addr)
	if err != nil {
		return nil, err
	}
	cfg := defaultConfig()
	for _, o := range opts {
		o(&cfg)
	}
	c := &Client{
		cfg:      cfg,
		addr:     a,
		log:      cfg.logger.With("server", a.String()),
		changed:  make(chan struct{}),
		online:   newOnlineView(),
		track:    newTracker(),
		catchUps: make(map[string]struct{}),
		gapWaits: make(map[string]*time.Timer),
		syncWake: make(chan struct{}, 1),
		acks:     make(map[string]uint64),
		ackWake:  make(chan struct{}, 1),
	}
	cn, w, err := c.connect(ctx)
	if err != nil {
		return nil, err
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.mu.Lock() // the connection's reader may already look at c.conn
	var delivered func(Event)
	if cfg.autoAck {
		delivered = c.autoAcked
	}
	c.events = newEventQueue(cfg.eventBuffer, delivered)
	c.conn, c.welcome = cn, w
	c.mu.Unlock()
	c.wg.Add(2)
	go c.supervise(cn)
	go c.syncLoop()
	if cfg.autoAck {
		c.wg.Add(1)
		go c.ackLoop()
	}
	return c, nil
}

// connect dials and shakes hands. The connection's reader runs from the
// start; its events are routed by handleEvent according to the client's
// state.
func (c *Client) connect(ctx context.Context) (*conn, Welcome, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, defaultHandshakeTimeout)
		defer cancel()
	}
	t, err := dialTransport(ctx, c.addr, &c.cfg)
	if err != nil {
		return nil, Welcome{}, fmt.Errorf("parley: dial %s: %w", c.addr, err)
	}
	cn := newConn(t, c.log, c.handleEvent)
	cn.start()
	w, err := cn.handshake(ctx, &c.cfg)
	if err != nil {
		cn.fail(err)
		cn.wait()
		var perr *Error
		if errors.As(err, &perr) {
			return nil, Welcome{}, perr
		}
		return nil, Welcome{}, fmt.Errorf("parley: handshake with %s: %w", c.addr, err)
	}
	return cn, welcomeFromWire(w), nil
}

// Addr is the server address in canonical form ("tcp://127.0.0.1:7420").
func (c *Client) Addr() string { return c.addr.String() }

// Welcome is what the gateway told about itself and this connection in the
// handshake (docs/protocol.md §4).
type Welcome struct {
	Version   uint32 // the protocol version chosen for this connection
	Server    string // the server's name and version
	GatewayID string // which gateway replica serves this connection
	// MaxFrameSize is the largest frame (bytes, without the length
	// prefix) the server accepts.
	MaxFrameSize uint32
	// HeartbeatInterval and IdleTimeout are the server's heartbeat
	// settings: a side sends a Ping when idle for HeartbeatInterval, and
	// the server closes a connection silent for IdleTimeout.
	HeartbeatInterval time.Duration
	IdleTimeout       time.Duration
	// HTTPURL is the base URL of the gateway's HTTP port, where files
	// travel (docs/protocol.md §18); empty when the gateway serves no
	// files. HTTPBase says which base the client uses.
	HTTPURL string
	// STUNAddr is the rendezvous's address (host:port) for NAT
	// classification and direct sessions (§20); empty when the
	// deployment runs none.
	STUNAddr string
}

func welcomeFromWire(w *parleyv1.Welcome) Welcome {
	return Welcome{
		Version:           w.GetVersion(),
		Server:            w.GetServer(),
		GatewayID:         w.GetGatewayId(),
		MaxFrameSize:      w.GetMaxFrameSize(),
		HeartbeatInterval: time.Duration(w.GetHeartbeatIntervalMs()) * time.Millisecond,
		IdleTimeout:       time.Duration(w.GetIdleTimeoutMs()) * time.Millisecond,
		HTTPURL:           w.GetHttpUrl(),
		STUNAddr:          w.GetStunAddr(),
	}
}

// Welcome returns the current connection's Welcome (server name, gateway
// id, limits). It changes after a reconnect.
func (c *Client) Welcome() Welcome {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.welcome
}

// Session returns the current session, nil when not logged in.
func (c *Client) Session() *Session {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.session == nil {
		return nil
	}
	s := *c.session
	return &s
}

// adoptNewestToken replaces the session's token with a newer one of the
// same session from WithTokenSource, if there is one: another process that
// shares the session may have resumed it since, which retires the token
// this client holds.
func (c *Client) adoptNewestToken() {
	if c.cfg.newestToken == nil {
		return
	}
	c.mu.Lock()
	var id string
	if c.session != nil {
		id = c.session.SessionID
	}
	c.mu.Unlock()
	if id == "" {
		return
	}
	token, expires := c.cfg.newestToken(id)
	if token == "" {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.session
	if s != nil && s.SessionID == id && s.Token != token && expires.After(s.ExpiresAt) {
		n := *s
		n.Token, n.ExpiresAt = token, expires
		c.session = &n
	}
}

// Online returns the client's current view of the online users, sorted by
// username: the last presence snapshot with the changes since applied.
// Empty before the first snapshot and with WithPresenceFeed(false).
func (c *Client) Online() []OnlineUser {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.online.list()
}

// Events returns the channel of events (messages, presence, disconnects,
// the end of the session). Receive from it continually, or presence events
// beyond the buffer are dropped (WithEventBuffer); message events are never
// dropped, and catching up on history waits while they pile up unread. It is closed after the client ends:
// right away on Close, after the final event otherwise.
func (c *Client) Events() <-chan Event { return c.events.out }

// DroppedEvents counts presence events dropped because Events was not read
// fast enough.
func (c *Client) DroppedEvents() uint64 { return c.events.droppedCount() }

// Err returns why the client ended, nil while it is usable. The error wraps
// ErrClosed and, when the server ended the session, the code's sentinel.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ended
}

// Close ends the client: the connection is closed without logging out (the
// session can still be resumed with its token), pending requests fail, and
// Events is closed. It waits for the client's goroutines and is idempotent.
func (c *Client) Close() error {
	c.closeDirect()
	c.end(ErrClosed, nil)
	c.events.stop()
	c.wg.Wait()
	return nil
}

// notifyLocked wakes everything waiting for a state change.
func (c *Client) notifyLocked() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// end makes the client over for good, with last (if any) as the final
// event. Only the first call has an effect.
func (c *Client) end(err error, last Event) {
	c.mu.Lock()
	if c.ended != nil {
		c.mu.Unlock()
		return
	}
	c.ended = err
	cn := c.conn
	c.conn = nil
	c.notifyLocked()
	c.mu.Unlock()
	c.events.finish(last)
	c.cancel()
	if cn != nil {
		cn.fail(err)
	}
}

// live returns the live connection, waiting (bounded by ctx) while the
// client reconnects.
func (c *Client) live(ctx context.Context) (*conn, error) {
	for {
		c.mu.Lock()
		if c.ended != nil {
			err := c.ended
			c.mu.Unlock()
			return nil, err
		}
		cn, changed := c.conn, c.changed
		c.mu.Unlock()
		if cn != nil && !cn.isDead() {
			return cn, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return nil, fmt.Errorf("parley: waiting for reconnect: %w", ctx.Err())
		}
	}
}

// supervise watches the live connection and replaces it when it breaks. It
// ends when the client ends.
func (c *Client) supervise(cn *conn) {
	defer c.wg.Done()
	for cn != nil {
		select {
		case <-cn.dead:
		case <-c.ctx.Done():
			cn.fail(ErrClosed)
			cn.wait()
			return
		}
		cn.wait()
		cause := cn.err()

		c.mu.Lock()
		if c.ended != nil {
			c.mu.Unlock()
			return
		}
		if c.conn == cn {
			c.conn = nil
			c.notifyLocked()
		}
		again := c.cfg.reconnect && !c.loggingOut
		if again {
			c.events.push(DisconnectedEvent{Err: cause})
		}
		c.mu.Unlock()

		if !again {
			c.log.Info("parley: disconnected", "err", cause)
			c.end(fmt.Errorf("%w: %w", ErrClosed, cause), DisconnectedEvent{Err: cause})
			return
		}
		c.log.Warn("parley: disconnected; reconnecting", "err", cause)
		cn = c.reconnect()
	}
}

// reconnect redials with backoff until a connection is up (and its session
// resumed) or the client ends; it returns nil in the latter case.
func (c *Client) reconnect() *conn {
	bo := Backoff{Base: c.cfg.backoffMin, Max: c.cfg.backoffMax}
	timer := time.NewTimer(0)
	defer timer.Stop()
	<-timer.C
	var serverWait time.Duration // what the last refusal asked for (retry_after_ms)
	for attempt := 1; ; attempt++ {
		// Even the first attempt waits a random share of the base, and
		// the server's retry_after_ms is a floor: redialling sooner is
		// refused again (docs/protocol.md §5, §11, §12).
		timer.Reset(bo.Delay(attempt, serverWait))
		select {
		case <-timer.C:
		case <-c.ctx.Done():
			return nil
		}
		cn, err := c.reconnectOnce()
		if err == nil {
			c.log.Info("parley: reconnected", "attempt", attempt)
			return cn
		}
		if c.ctx.Err() != nil {
			return nil
		}
		serverWait = retryAfter(err)
		c.log.Warn("parley: reconnect failed", "attempt", attempt, "err", err, "retry_after", serverWait)
		switch {
		case sessionFatal(err):
			var e *Error
			errors.As(err, &e)
			c.end(fmt.Errorf("%w: %w", ErrClosed, err), SessionEndedEvent{Reason: e.Code, Message: e.Message})
			return nil
		case errors.Is(err, ErrUnsupportedVersion):
			c.end(fmt.Errorf("%w: %w", ErrClosed, err), DisconnectedEvent{Err: err})
			return nil
		}
	}
}

// retryAfter is the wait a refusal asked for (RATE_LIMITED's
// retry_after_ms), zero for any other error.
func retryAfter(err error) time.Duration {
	var e *Error
	if errors.As(err, &e) {
		return e.RetryAfter
	}
	return 0
}

// reconnectOnce makes one attempt: dial, handshake, resume. Events arriving
// before the connection goes live are held and replayed after the
// ReconnectedEvent, so a consumer sees Reconnected before the new snapshot.
func (c *Client) reconnectOnce() (*conn, error) {
	ctx, cancel := context.WithTimeout(c.ctx, defaultHandshakeTimeout)
	defer cancel()
	cn, w, err := c.connect(ctx)
	if err != nil {
		return nil, err
	}
	c.adoptNewestToken()
	c.mu.Lock()
	var token string
	if c.session != nil {
		token = c.session.Token
	}
	c.resuming, c.held = cn, nil
	c.mu.Unlock()

	var sess *Session
	if token != "" {
		reply, err := cn.roundTrip(ctx, &parleyv1.Frame{Body: &parleyv1.Frame_Resume{Resume: &parleyv1.ResumeRequest{
			Token: token, Options: c.clientOptions(),
		}}})
		if err == nil {
			sess, err = sessionReply(reply)
		}
		if err != nil {
			c.mu.Lock()
			c.resuming, c.held = nil, nil
			c.mu.Unlock()
			cn.fail(err)
			cn.wait()
			return nil, err
		}
	}

	c.mu.Lock()
	c.resuming = nil
	if c.ended != nil {
		err := c.ended
		c.mu.Unlock()
		cn.fail(ErrClosed)
		cn.wait()
		return nil, err
	}
	c.conn, c.welcome = cn, w
	if sess != nil && c.cfg.presenceFeed {
		c.online.reset() // keep showing the old list until the new snapshot
	} else {
		c.online.clear()
	}
	if sess != nil {
		c.session = sess
	}
	c.notifyLocked()
	var ev ReconnectedEvent
	if sess != nil {
		s := *sess
		ev.Session = &s
	}
	c.events.push(ev)
	if sess != nil {
		c.requestSyncLocked() // read what was missed while away
	}
	if sess != nil {
		c.rejoinCalls()    // their streams went with the old connection
		c.reattachDirect() // and so did the relay of direct sessions
	}
	held := c.held
	c.held = nil
	var fin *SessionEndedEvent
	for _, f := range held {
		if e := c.handleEventLocked(f); e != nil {
			fin = e
		}
	}
	c.mu.Unlock()
	if fin != nil {
		c.end(fmt.Errorf("%w: %w", ErrClosed, fin.Err()), *fin)
	}
	return cn, nil
}

// handleEvent receives frames pushed by the server (request_id 0) from a
// connection's reader.
func (c *Client) handleEvent(cn *conn, f *parleyv1.Frame) {
	if m, ok := f.Body.(*parleyv1.Frame_Media); ok {
		// Media is no event: it goes to the call sessions at once, on
		// whichever connection it came (the key authenticates it).
		c.routeMedia(m.Media.GetPacket())
		return
	}
	if r, ok := f.Body.(*parleyv1.Frame_P2PRelay); ok {
		// Relayed packets of direct sessions, likewise (QUIC
		// authenticates them end to end).
		c.routeRelay(r.P2PRelay)
		return
	}
	c.mu.Lock()
	switch cn {
	case c.resuming:
		c.held = append(c.held, f)
		c.mu.Unlock()
		return
	case c.conn:
	default:
		c.mu.Unlock() // a connection being dialled or already replaced
		return
	}
	fin := c.handleEventLocked(f)
	c.mu.Unlock()
	if fin != nil {
		c.end(fmt.Errorf("%w: %w", ErrClosed, fin.Err()), *fin)
	}
}

// handleEventLocked applies one event to the client's state and queues what
// the application should see. It returns the SessionEndedEvent when the
// server ended the session; the caller ends the client (outside c.mu).
func (c *Client) handleEventLocked(f *parleyv1.Frame) *SessionEndedEvent {
	switch b := f.Body.(type) {
	case *parleyv1.Frame_PresenceSnapshot:
		users, changes, complete := c.online.snapshot(b.PresenceSnapshot)
		if complete {
			c.events.push(PresenceSnapshotEvent{Users: users})
			for _, ev := range changes {
				c.pushChangeLocked(ev)
			}
		}
	case *parleyv1.Frame_PresenceChange:
		if ev, ok := c.online.change(b.PresenceChange); ok {
			c.pushChangeLocked(ev)
		}
	case *parleyv1.Frame_Error:
		// A connection-level, non-fatal error: the only one the gateway
		// sends today replaces an unfinished presence snapshot.
		for _, ev := range c.online.abandonSnapshot() {
			c.pushChangeLocked(ev)
		}
	case *parleyv1.Frame_Message:
		if m := b.Message.GetMessage(); m != nil {
			c.offerLocked(messageFromWire(m))
		}
	case *parleyv1.Frame_FriendEvent, *parleyv1.Frame_TypingEvent, *parleyv1.Frame_Receipt:
		if !c.events.push(socialEvent(f)) {
			c.log.Warn("parley: event buffer full; dropped a typing or receipt event")
		}
	case *parleyv1.Frame_FileEvent:
		if !c.events.push(fileEventFromWire(b.FileEvent)) {
			c.log.Warn("parley: event buffer full; dropped a file event (Files has the state)")
		}
	case *parleyv1.Frame_CallEvent:
		ev := callEventFromWire(b.CallEvent)
		c.events.push(ev)
		c.callEventLocked(callOf(ev))
	case *parleyv1.Frame_P2PEvent:
		c.handleP2PEventLocked(b.P2PEvent)
	case *parleyv1.Frame_SessionEnded:
		c.session = nil
		c.online.clear()
		return &SessionEndedEvent{Reason: Code(b.SessionEnded.GetReason()), Message: b.SessionEnded.GetMessage()}
	default:
		c.log.Debug("parley: ignoring server frame", "type", fmt.Sprintf("%T", f.Body))
	}
	return nil
}

func (c *Client) pushChangeLocked(ev Event) {
	if !c.events.push(ev) {
		c.log.Warn("parley: event buffer full; dropped a presence event (Online is still accurate)")
	}
}

func (c *Client) clientOptions() *parleyv1.ClientOptions {
	return &parleyv1.ClientOptions{Device: c.cfg.device, SkipPresenceFeed: !c.cfg.presenceFeed}
}
