package p2pchan

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/quic-go/quic-go"

	"github.com/parleychat/parley/clients/parley/internal/devkey"
	"github.com/parleychat/parley/protocol/parleyv1"
)

// QUIC parameters of §20.5.
const (
	// packetSize is every QUIC packet's size limit. Path-MTU discovery
	// is off, so no UDP payload is ever larger: well under the 1452 bytes
	// §20.5 allows, and large enough for a 1200-byte Opus frame in one
	// datagram (12 bytes of header, 3 of DATAGRAM frame, at most 25 of
	// short header with a 20-byte connection id and 4-byte packet number,
	// 16 of AEAD tag: 1256 at the very worst, 1240 with our 4-byte ids).
	packetSize = 1252

	DefaultIdleTimeout      = 30 * time.Second
	DefaultKeepAlivePeriod  = 15 * time.Second
	DefaultHandshakeTimeout = 5 * time.Second

	minRedial = 100 * time.Millisecond // the controlling side's redial backoff
	maxRedial = 2 * time.Second

	maxIncomingStreams = 32 // concurrent incoming file streams
	maxQueuedFrames    = 1 << 16
)

// Config configures a Channel. Key and PeerKey are required; the rest has
// defaults.
type Config struct {
	// Key is this device's private key (devkey).
	Key ed25519.PrivateKey
	// PeerKey is the peer device's public key, as the session names it
	// (P2PSession.peer_device) and only once it is pinned or accepted
	// (devkey.Pins): the handshake accepts no other (§20.5).
	PeerKey ed25519.PublicKey
	// Client is what DirectHello.client says; default "parley-go".
	Client string
	// History stores received chat messages (nil: in memory, for the
	// channel's life only).
	History History
	// Logger logs connection changes (nil: discarded).
	Logger *slog.Logger

	// OnChat is called once per received message, after History stored
	// it and before it is acknowledged, on the control stream's reader:
	// one at a time and in the order the peer sent them.
	OnChat func(ChatMessage)
	// OnChatAck is called when the peer acknowledges one of this side's
	// messages, also those whose Send gave up waiting; before that Send
	// returns.
	OnChatAck func(id string)
	// OnFile decides about an incoming file: accept (and where it goes)
	// or reject. It may block (to ask the user); ctx ends when the
	// connection does. Nil rejects every file.
	OnFile func(ctx context.Context, offer FileOffer) FileDecision
	// OnAudio is called for each audio datagram received (§20.7), on the
	// datagram reader: return quickly. Opus is the callee's to keep.
	OnAudio func(Audio)
	// OnCall is called when the peer says a call's audio goes direct (or
	// stops, §20.7). A reconnect repeats the peer's last DirectCall.
	OnCall func(Call)
	// OnState is called when a connection comes up (connected, err nil)
	// and when it is lost (err says why) while the channel lives.
	OnState func(connected bool, err error)

	// IdleTimeout closes a QUIC connection that heard nothing for this
	// long (the channel then connects again); default and §20.5: 30 s.
	IdleTimeout time.Duration
	// KeepAlivePeriod: a PING after this long without sending; default
	// 15 s (§20.4), at most half of IdleTimeout.
	KeepAlivePeriod time.Duration
	// HandshakeTimeout bounds one connection attempt's silence, and the
	// wait for the peer's DirectHello; default 5 s.
	HandshakeTimeout time.Duration
}

func (c *Config) validate() error {
	if len(c.Key) != ed25519.PrivateKeySize {
		return fmt.Errorf("%w: Config.Key is not an Ed25519 private key", ErrInvalid)
	}
	if len(c.PeerKey) != ed25519.PublicKeySize {
		return fmt.Errorf("%w: Config.PeerKey is not an Ed25519 public key", ErrInvalid)
	}
	if c.Client == "" {
		c.Client = "parley-go"
	}
	if err := checkLabel("Config.Client", c.Client, maxClient); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if c.History == nil {
		c.History = NewMemoryHistory()
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.KeepAlivePeriod <= 0 {
		c.KeepAlivePeriod = DefaultKeepAlivePeriod
	}
	c.KeepAlivePeriod = min(c.KeepAlivePeriod, c.IdleTimeout/2)
	if c.HandshakeTimeout <= 0 {
		c.HandshakeTimeout = DefaultHandshakeTimeout
	}
	return nil
}

// Channel is the end-to-end encrypted channel to one peer device (§20.5):
// chat, files and call audio over QUIC on the session's socket. It
// outlives QUIC connections: when one is lost the controlling side dials
// again and the controlled side accepts again on the same socket, and
// unacknowledged chat messages and cut file transfers carry on over the
// new one. It ends with Close, when the peer closes, or on a protocol
// violation (Done, Err).
//
// Callbacks (Config.On...) run on the channel's goroutines: they must not
// call Close, and all but OnFile should return quickly.
type Channel struct {
	cfg         Config
	log         *slog.Logger
	controlling bool
	peerDevice  string
	tr          *quic.Transport
	qconf       *quic.Config
	cert        tls.Certificate
	peer        net.Addr       // controlling side: where it dials
	ln          *quic.Listener // controlled side

	ctx    context.Context // ends when the channel does, with the reason as cause
	cancel context.CancelCauseFunc
	wg     sync.WaitGroup // every goroutine the channel started
	up     chan struct{}  // closed when the first connection is ready
	upOnce sync.Once
	early  chan error // a handshake failure that ends Dial/Accept before the first connection

	histMu sync.Mutex // serialises History and OnChat across overlapping connections

	mu         sync.Mutex // guards the fields below, and the sessions' queues
	cur        *session   // the connection in use; nil while reconnecting
	changed    chan struct{}
	outbox     []*outMsg // unacknowledged chat messages, in the order sent
	seq        uint64    // the last outMsg.seq given
	call       *parleyv1.DirectCall
	closed     bool
	err        error
	isUp       bool
	transfers  map[string]chan struct{} // incoming transfer ids being written
	completed  map[string]completedFile // incoming transfers finished on this channel
	peerClient string

	release sync.Once // Close's release of the socket
}

// Dial makes the controlling side's channel (side a, the QUIC client,
// §20.5) over pc to peer, and returns once the first connection is
// up: it keeps trying until ctx ends (the path may start working a little
// later), but fails at once when the peer presents another key
// (ErrPeerKey) or refuses this one (ErrRefused). pc is the channel's until
// Close (quic-go reads it); Close does not close it.
func Dial(ctx context.Context, pc net.PacketConn, peer net.Addr, cfg Config) (*Channel, error) {
	if peer == nil {
		return nil, fmt.Errorf("%w: no peer address", ErrInvalid)
	}
	c, err := newChannel(pc, cfg, true)
	if err != nil {
		return nil, err
	}
	c.peer = peer
	c.wg.Go(c.dialLoop)
	return c.waitUp(ctx)
}

// Accept makes the controlled side's channel (side b, the QUIC server)
// over pc and returns once the peer connected with the expected key and
// said hello, or fails when ctx ends first, or at once when a peer
// presented another key (ErrPeerKey). pc is the channel's until Close.
func Accept(ctx context.Context, pc net.PacketConn, cfg Config) (*Channel, error) {
	c, err := newChannel(pc, cfg, false)
	if err != nil {
		return nil, err
	}
	ln, err := c.tr.Listen(serverTLS(c.cert, c.cfg.PeerKey, c.earlyFailure), c.qconf)
	if err != nil {
		c.tr.Close()
		return nil, err
	}
	c.ln = ln
	c.wg.Go(c.acceptLoop)
	return c.waitUp(ctx)
}

func newChannel(pc net.PacketConn, cfg Config, controlling bool) (*Channel, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cert, err := certificate(cfg.Key)
	if err != nil {
		return nil, err
	}
	c := &Channel{
		cfg:         cfg,
		log:         cfg.Logger.With("peer_device", devkey.DeviceID(cfg.PeerKey), "controlling", controlling),
		controlling: controlling,
		peerDevice:  devkey.DeviceID(cfg.PeerKey),
		cert:        cert,
		tr: &quic.Transport{
			Conn:              quietConn{pc},
			StatelessResetKey: statelessResetKey(cfg.Key),
		},
		qconf: &quic.Config{
			Versions:                []quic.Version{quic.Version1},
			HandshakeIdleTimeout:    cfg.HandshakeTimeout,
			MaxIdleTimeout:          cfg.IdleTimeout,
			KeepAlivePeriod:         cfg.KeepAlivePeriod,
			InitialPacketSize:       packetSize,
			DisablePathMTUDiscovery: true,
			EnableDatagrams:         true,
			MaxIncomingStreams:      maxIncomingStreams,
			MaxIncomingUniStreams:   -1,
		},
		up:        make(chan struct{}),
		early:     make(chan error, 1),
		changed:   make(chan struct{}),
		transfers: map[string]chan struct{}{},
		completed: map[string]completedFile{},
	}
	c.ctx, c.cancel = context.WithCancelCause(context.Background())
	return c, nil
}

// waitUp waits for the first connection; on failure it closes the channel.
func (c *Channel) waitUp(ctx context.Context) (*Channel, error) {
	var err error
	select {
	case <-c.up:
		return c, nil
	case err = <-c.early:
		if !c.controlling {
			// This side refused the dialer's key inside the handshake;
			// quic-go is about to send the dialer that verdict (a crypto
			// error). Closing the listener first would answer the
			// handshake with CONNECTION_REFUSED instead, which the
			// dialer cannot tell from a peer that is not listening.
			select {
			case <-time.After(refuseLinger):
			case <-ctx.Done():
			}
		}
	case <-c.ctx.Done():
		err = c.Err()
	case <-ctx.Done():
		err = ctx.Err()
	}
	c.shutdown(err, codeClosed, "gave up")
	c.Close()
	return nil, err
}

// refuseLinger is how long an accepting side that refused the dialer's key
// keeps listening, so that its refusal goes out before the listener
// closes.
const refuseLinger = 200 * time.Millisecond

// earlyFailure ends Dial or Accept with err if no connection came up yet;
// later it is only logged (a reconnect keeps trying).
func (c *Channel) earlyFailure(err error) {
	c.mu.Lock()
	up := c.isUp
	c.mu.Unlock()
	if up {
		c.log.Warn("p2p handshake refused", "err", err)
		return
	}
	select {
	case c.early <- err:
	default:
	}
}

// Controlling reports whether this is the controlling side (Dial).
func (c *Channel) Controlling() bool { return c.controlling }

// PeerDevice is the peer's device_id.
func (c *Channel) PeerDevice() string { return c.peerDevice }

// PeerClient is what the peer's last DirectHello said it is.
func (c *Channel) PeerClient() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.peerClient
}

// Connected reports whether a connection is up right now.
func (c *Channel) Connected() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cur != nil
}

// Done is closed when the channel has ended.
func (c *Channel) Done() <-chan struct{} { return c.ctx.Done() }

// Err says why the channel ended (nil while it lives): ErrClosed after
// Close, ErrPeerClosed, an error matching ErrProtocol (either side's
// violation: the message says which), or the socket's error (matching
// net.ErrClosed when it was closed).
func (c *Channel) Err() error {
	if c.ctx.Err() == nil {
		return nil
	}
	return context.Cause(c.ctx)
}

// Close ends the channel: the peer is told (its channel ends with
// ErrPeerClosed), unacknowledged messages are no longer sent (Pending
// still lists them), transfers stop (resumable on a new channel). It waits for the
// channel's goroutines, then releases the socket (not closing it). Close
// may be called again, also after the channel ended by itself.
func (c *Channel) Close() error {
	c.shutdown(ErrClosed, codeClosed, "closed")
	c.wg.Wait()
	c.release.Do(func() {
		if c.ln != nil {
			c.ln.Close()
		}
		c.tr.Close()
	})
	return nil
}

// shutdown ends the channel with cause, telling the peer code and desc.
func (c *Channel) shutdown(cause error, code quic.ApplicationErrorCode, desc string) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	c.err = cause
	s := c.cur
	c.cur = nil
	c.signalLocked()
	c.mu.Unlock()
	c.cancel(cause)
	if s != nil {
		s.conn.CloseWithError(code, truncate(desc, 256))
	}
}

// violate ends the channel on a protocol violation of the peer's.
func (c *Channel) violate(err error) {
	c.log.Warn("p2p protocol violation", "err", err)
	c.shutdown(err, codeProtocol, err.Error())
}

// signalLocked wakes everyone waiting for c.cur to change. c.mu is held.
func (c *Channel) signalLocked() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// waitSession returns the connection in use, waiting for one that is not
// last (a connection that broke) while the channel reconnects.
func (c *Channel) waitSession(ctx context.Context, last *session) (*session, error) {
	for {
		c.mu.Lock()
		s, ch, closed, err := c.cur, c.changed, c.closed, c.err
		c.mu.Unlock()
		if closed {
			return nil, err
		}
		if s != nil && s != last {
			return s, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func (c *Channel) state(connected bool, err error) {
	if c.cfg.OnState != nil && c.ctx.Err() == nil {
		c.cfg.OnState(connected, err)
	}
}

// dialLoop is the controlling side: connect, serve the connection until it
// is lost, connect again, until the channel ends.
func (c *Channel) dialLoop() {
	wait := minRedial
	for c.ctx.Err() == nil {
		s, err := c.dialOnce()
		if err != nil {
			if c.ctx.Err() != nil {
				return
			}
			if errors.Is(err, ErrPeerKey) || errors.Is(err, ErrRefused) {
				c.earlyFailure(err)
			}
			if errors.Is(err, net.ErrClosed) { // the socket is gone: nothing to retry on
				c.shutdown(fmt.Errorf("p2pchan: the socket: %w", err), codeClosed, "gone")
				return
			}
			c.log.Debug("p2p dial failed", "err", err, "retry_in", wait)
			select {
			case <-time.After(wait):
			case <-c.ctx.Done():
				return
			}
			wait = min(2*wait, maxRedial)
			continue
		}
		wait = minRedial
		c.serve(s)
	}
}

func (c *Channel) dialOnce() (*session, error) {
	var mu sync.Mutex
	var mismatch error
	tlsConf := clientTLS(c.cert, c.cfg.PeerKey, func(err error) {
		mu.Lock()
		mismatch = err
		mu.Unlock()
	})
	// refused tells the peer refusing this device's key: the server
	// checks the client's certificate after the client's side of the
	// handshake is done, so its verdict may come with the first stream.
	refused := func(err error) error {
		mu.Lock()
		defer mu.Unlock()
		if mismatch != nil {
			return mismatch
		}
		var te *quic.TransportError
		if errors.As(err, &te) && te.Remote && te.ErrorCode.IsCryptoError() {
			return fmt.Errorf("%w: %v", ErrRefused, err)
		}
		return err
	}
	conn, err := c.tr.Dial(c.ctx, c.peer, tlsConf, c.qconf)
	if err != nil {
		return nil, refused(err)
	}
	ctx, cancel := context.WithTimeout(c.ctx, c.cfg.HandshakeTimeout)
	defer cancel()
	ctrl, err := conn.OpenStreamSync(ctx)
	if err != nil {
		conn.CloseWithError(codeReplaced, "no control stream")
		return nil, refused(err)
	}
	s := c.newSession(conn, ctrl)
	if err := s.hello(true); err != nil {
		return nil, refused(err)
	}
	return s, nil
}

// acceptLoop is the controlled side: every connection the peer makes
// (with the right key) replaces the one before.
func (c *Channel) acceptLoop() {
	for {
		conn, err := c.ln.Accept(c.ctx)
		if err != nil {
			if c.ctx.Err() == nil {
				c.shutdown(fmt.Errorf("p2pchan: accepting: %w", err), codeClosed, "gone")
			}
			return
		}
		c.wg.Go(func() {
			ctx, cancel := context.WithTimeout(c.ctx, c.cfg.HandshakeTimeout)
			ctrl, err := conn.AcceptStream(ctx)
			cancel()
			if err != nil {
				conn.CloseWithError(codeClosed, "no control stream")
				c.log.Debug("p2p connection without a control stream", "err", err)
				return
			}
			s := c.newSession(conn, ctrl)
			if err := s.hello(false); err != nil {
				c.log.Debug("p2p hello failed", "err", err)
				return
			}
			c.serve(s)
		})
	}
}

// serve makes s the connection in use, runs it until it ends, and then
// decides what its end means for the channel.
func (c *Channel) serve(s *session) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		s.conn.CloseWithError(codeClosed, "closed")
		return
	}
	old := c.cur
	c.cur = s
	c.peerClient = s.peerClient
	c.isUp = true
	// A new connection resends every unacknowledged message, in order
	// (s.sentUpTo is 0), and repeats the call state (§20.6, §20.7).
	if c.call != nil {
		s.frames = append(s.frames, &parleyv1.DirectFrame{Body: &parleyv1.DirectFrame_Call{Call: c.call}})
	}
	c.signalLocked()
	c.mu.Unlock()
	c.upOnce.Do(func() { close(c.up) })
	if old != nil {
		old.conn.CloseWithError(codeReplaced, "replaced by a new connection")
	}
	c.log.Info("p2p connection up", "remote", s.conn.RemoteAddr())
	c.state(true, nil)

	c.wg.Go(s.readLoop)
	c.wg.Go(s.writeLoop)
	c.wg.Go(s.acceptStreams)
	c.wg.Go(s.readDatagrams)
	s.poke()

	<-s.conn.Context().Done()
	cause := context.Cause(s.conn.Context())
	c.mu.Lock()
	wasCur := c.cur == s
	if wasCur {
		c.cur = nil
		c.signalLocked()
	}
	c.mu.Unlock()

	var ae *quic.ApplicationError
	if errors.As(cause, &ae) && ae.Remote {
		switch ae.ErrorCode {
		case codeClosed:
			c.shutdown(ErrPeerClosed, codeClosed, "")
			return
		case codeProtocol:
			c.shutdown(fmt.Errorf("%w: the peer closed the channel: %s", ErrProtocol, peerText(ae.ErrorMessage)), codeClosed, "")
			return
		}
	}
	if wasCur && c.ctx.Err() == nil {
		c.log.Info("p2p connection lost", "err", cause)
		c.state(false, cause)
	}
}

// truncate cuts s to at most n bytes, at a character boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// peerText makes a string the peer chose (a reason, an error) safe to
// show: valid UTF-8, no control characters, at most 256 bytes.
func peerText(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
	return truncate(s, 256)
}

// quietConn hands quic-go the socket as a plain net.PacketConn whose
// buffer sizes can always be "set". quic-go otherwise prints a warning on
// the process's standard logger when it cannot raise the socket buffers
// (any unprivileged Linux process, any PacketConn that is not a
// *net.UDPConn): an SDK must not write to the user's terminal. The cost:
// no batched system calls (GSO, recvmmsg) on a bare *net.UDPConn, which
// the NAT traversal's PacketConn does not offer anyway.
type quietConn struct{ net.PacketConn }

func (c quietConn) SetReadBuffer(n int) error {
	if b, ok := c.PacketConn.(interface{ SetReadBuffer(int) error }); ok {
		b.SetReadBuffer(n)
	}
	return nil
}

func (c quietConn) SetWriteBuffer(n int) error {
	if b, ok := c.PacketConn.(interface{ SetWriteBuffer(int) error }); ok {
		b.SetWriteBuffer(n)
	}
	return nil
}
