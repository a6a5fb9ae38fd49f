// Package callmedia is the gateway's media plane for voice calls
// (docs/protocol.md §19, protocol/media, libs/mediabus): the UDP media
// port, the table of the call participants' streams this gateway serves,
// and the two paths a packet takes.
//
// Up: a sealed packet arrives over UDP, or as a MediaPacket frame on the
// participant's connection. media.ParseHeader gives the stream id; the
// packet is opened, direction Up, with the key of each local stream of that
// id (two calls may have picked the same random id) until one
// authenticates it; the stream's ReplayWindow must accept its sequence
// number. Then a Probe is answered with a ProbeReply (same stream id,
// sequence number and timestamp, sealed with the client's key, direction
// Down) by the way it came; a Keepalive only refreshes the return path;
// Audio is published as mediabus Audio on subject.MediaUp(call) for the
// relay replica that owns the call. A UDP source address becomes the
// stream's media address only once proven (path validation, as QUIC's):
// an authenticated fresh packet from an address that is not the proven
// one is answered with a ProbeReply carrying a random path token (a probe
// always, audio and keepalives at most every challengeEvery), and a probe
// from that address echoing the token moves the stream there. So a
// participant who spoofs their source cannot aim the call's media at
// someone else: an unproven address gets one 40-byte answer per packet or
// per 100 ms at most. A packet that came as a frame makes the connection
// its return path. A packet failing any step is dropped and counted by reason
// (metrics.MediaDrops), nothing else: a client never gets an error for
// media.
//
// Down: for each call with local streams the plane subscribes to
// subject.MediaDown(call). Audio is re-sealed, header as received, with
// each local listener's key, direction Down, except the speaker's own
// stream, and sent by the listener's return path: UDP to its proven address,
// or a media frame on its connection when its last packet came that way or
// no address is proven yet (without waiting: a connection that cannot take
// it now misses the packet, never SLOW_CONSUMER). A Roster
// drops the local streams of the call it does not list, except those
// installed less than RosterGrace ago that no roster listed yet (a join
// committed by another relay replica may be followed by the owner's
// periodic repeat of the roster from before it); an empty one ends the
// call here. A Roster of an older revision of the call's record than one
// already taken is ignored: a replica whose view of the call is behind
// sent it (an old owner's repeat around a takeover).
//
// Alive: every AliveInterval, for each call with local streams, a mediabus
// Alive naming this gateway and those of the streams that are not idle
// goes to subject.MediaUp(call), so the owner keeps the participants. A
// stream is idle when no authenticated packet of it came for StreamIdle
// (counted from its install): its client abandoned the call (clients probe
// every 5 s and send a keepalive at least every 15 s), so the owner is let
// to time the participant out.
//
// The streams are installed by the connection that joined (Install, after
// the relay's CallJoined) and dropped when it leaves, rejoins, closes
// (Drop), or the owner's Roster leaves them out.
package callmedia

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/parleychat/parley/gateway/internal/metrics"
	"github.com/parleychat/parley/libs/mediabus"
	"github.com/parleychat/parley/libs/subject"
	"github.com/parleychat/parley/protocol/media"
)

// Errors.
var (
	// ErrClosed: the plane has shut down; nothing is installed.
	ErrClosed = errors.New("callmedia: media plane closed")
	// ErrJoin: a CallJoined the plane cannot serve (no call id, stream id
	// 0, a key that is not 32 bytes).
	ErrJoin = errors.New("callmedia: invalid call join")
	// ErrConfig: an invalid Config.
	ErrConfig = errors.New("callmedia: invalid config")
)

// Drop reasons, the label values of metrics.MediaDrops.
const (
	dropMalformed = "malformed"      // not a media packet (media.ParseHeader refused it)
	dropUnknown   = "unknown_stream" // no local stream has its stream id
	dropAuth      = "auth"           // no local stream of its id opens it
	dropReplay    = "replay"         // its sequence number was seen (or is too old)
	dropRate      = "rate"           // the stream sent more than streamRate packets a second
	dropType      = "type"           // a probe reply from a client, or a probe whose payload is not a path token
	dropWrongConn = "wrong_conn"     // a frame on a connection that is not its stream's
	dropQueueFull = "queue_full"     // the listener's connection had no room for the frame
	dropNoPath    = "no_path"        // a UDP answer, and the gateway has no media port
	dropSend      = "send_error"     // the UDP write failed
	dropBus       = "bus"            // a MediaDown message that does not parse
	dropPublish   = "bus_publish"    // publishing the audio on MediaUp failed
)

// Conn is a client connection as the plane sees it: the return path of its
// stream's packets when they travel as frames.
type Conn interface {
	// PushMedia queues frame, one encoded, length-prefixed media frame
	// (the bytes are the caller's again once it returns), if the
	// connection's send queue has room now; it reports false if the frame
	// was dropped. It never waits and never closes the connection.
	PushMedia(frame []byte) bool
}

// Config configures a Plane.
type Config struct {
	NC        *nats.Conn
	Log       *slog.Logger
	Metrics   *metrics.Metrics
	GatewayID string // in every Alive
	// UDPAddr is the media port's address; "" serves none (media then
	// travels as frames only).
	UDPAddr string
	// AliveInterval is the period of the Alive messages (2 s).
	AliveInterval time.Duration
	// StreamIdle: a stream with no authenticated packet for this long
	// (counted from its install) is left out of the Alive messages; 0:
	// DefaultStreamIdle.
	StreamIdle time.Duration
	// RosterGrace: a Roster does not drop a stream installed less than
	// this long ago; 0: DefaultRosterGrace.
	RosterGrace time.Duration
}

// Defaults of Config.
const (
	// DefaultStreamIdle exceeds the clients' longest silence (a keepalive
	// every 15 s, a probe every 5 s) with room for a lost packet.
	DefaultStreamIdle = 20 * time.Second
	// DefaultRosterGrace exceeds the owner's roster period (2 s), so a
	// roster from before a join cannot undo it.
	DefaultRosterGrace = 3 * time.Second
)

// Plane is the media plane of one gateway. It is safe for concurrent use.
type Plane struct {
	cfg Config
	nc  *nats.Conn
	log *slog.Logger
	m   *metrics.Metrics

	pc *net.UDPConn // the media port; nil: none (set by Listen, before Run)

	// The per-packet counters, resolved once.
	inUDP, inFrame, outUDP, outFrame prometheus.Counter
	challenged, proven               prometheus.Counter

	idle, grace atomic.Int64 // StreamIdle and RosterGrace, in nanoseconds (SetStreamLimits)

	mu     sync.RWMutex // guards the fields below; the packet paths hold it for reading
	byID   map[uint32][]*stream
	calls  map[string]*call
	byConn map[Conn]*stream // a connection serves at most one stream (one call per user)
	closed bool

	frameBufs sync.Pool // *buffers for the frame path (many connections at once)
	wg        sync.WaitGroup
}

// call is a call with local streams.
type call struct {
	id      string
	up      string             // subject.MediaUp(id)
	sub     *nats.Subscription // to subject.MediaDown(id)
	streams []*stream          // guarded by Plane.mu
	roster  []uint32           // the last Roster's stream ids (guarded by Plane.mu): a stream installed after the roster that listed it counts as listed
	rev     uint64             // the newest Roster's revision taken (guarded by Plane.mu): an older one is ignored

	// Owned by the subscription's goroutine (nats.go runs one per
	// subscription, one message at a time).
	buf     []byte    // a sealed packet, behind room for a frame's prefix
	targets []*stream // the streams a packet goes to
	ids     []uint32  // a Roster's stream ids
}

// stream is one participant served here: its key and return path.
type stream struct {
	id        uint32
	call      *call
	key       *media.Key
	conn      Conn
	installed time.Time
	listed    bool // a Roster listed it (guarded by Plane.mu)

	mu     sync.Mutex // guards the fields below
	replay media.ReplayWindow
	heard  time.Time      // the last authenticated fresh packet; installed until one came
	addr   netip.AddrPort // the proven UDP address media is sent to; invalid until one is proven
	// cand is the UDP address the stream's latest packet came from when
	// that is not addr, token the path token sent there to prove it
	// (challenged: when last sent, at most every challengeEvery).
	cand       netip.AddrPort
	token      [media.PathTokenLen]byte
	challenged time.Time
	tokens     float64   // the stream's packet allowance (allow)
	refill     time.Time // when tokens was last topped up
	framed     bool      // the last packet came as a frame: answer with frames
	gone       bool      // dropped from the table
}

// buffers are one packet path's scratch space.
type buffers struct {
	open []byte // the opened payload
	out  []byte // a probe reply or an Audio bus message
}

func newBuffers() *buffers {
	return &buffers{
		open: make([]byte, 0, media.MaxPayload),
		out:  make([]byte, 0, mediaFramePrefix+media.MaxPacket+1+media.HeaderLen),
	}
}

// New validates cfg and returns a Plane; it binds nothing (see Listen).
func New(cfg Config) (*Plane, error) {
	switch {
	case cfg.NC == nil:
		return nil, fmt.Errorf("nil NATS connection: %w", ErrConfig)
	case cfg.Metrics == nil:
		return nil, fmt.Errorf("nil metrics: %w", ErrConfig)
	case cfg.AliveInterval <= 0:
		return nil, fmt.Errorf("alive interval must be positive: %w", ErrConfig)
	case cfg.GatewayID == "" || len(cfg.GatewayID) > 255:
		return nil, fmt.Errorf("gateway id must be 1-255 bytes: %w", ErrConfig)
	case cfg.StreamIdle < 0 || cfg.RosterGrace < 0:
		return nil, fmt.Errorf("stream idle limit and roster grace must not be negative: %w", ErrConfig)
	}
	if cfg.StreamIdle == 0 {
		cfg.StreamIdle = DefaultStreamIdle
	}
	if cfg.RosterGrace == 0 {
		cfg.RosterGrace = DefaultRosterGrace
	}
	if cfg.UDPAddr != "" {
		if _, err := netip.ParseAddrPort(cfg.UDPAddr); err != nil {
			if _, _, err := net.SplitHostPort(cfg.UDPAddr); err != nil {
				return nil, fmt.Errorf("udp address %q: %w", cfg.UDPAddr, ErrConfig)
			}
		}
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p := &Plane{
		cfg:    cfg,
		nc:     cfg.NC,
		log:    log,
		m:      cfg.Metrics,
		byID:   make(map[uint32][]*stream),
		calls:  make(map[string]*call),
		byConn: make(map[Conn]*stream),
	}
	p.idle.Store(int64(cfg.StreamIdle))
	p.grace.Store(int64(cfg.RosterGrace))
	p.frameBufs.New = func() any { return newBuffers() }
	p.inUDP = p.m.MediaIn.WithLabelValues("udp")
	p.inFrame = p.m.MediaIn.WithLabelValues("frame")
	p.outUDP = p.m.MediaOut.WithLabelValues("udp")
	p.outFrame = p.m.MediaOut.WithLabelValues("frame")
	p.challenged = p.m.MediaPaths.WithLabelValues("challenged")
	p.proven = p.m.MediaPaths.WithLabelValues("proven")
	return p, nil
}

// Listen binds the media port (if configured). Run calls it if it was not
// called.
func (p *Plane) Listen() error {
	if p.pc != nil || p.cfg.UDPAddr == "" {
		return nil
	}
	a, err := net.ResolveUDPAddr("udp", p.cfg.UDPAddr)
	if err != nil {
		return fmt.Errorf("media udp address: %w", err)
	}
	pc, err := net.ListenUDP("udp", a)
	if err != nil {
		return fmt.Errorf("media udp listen: %w", err)
	}
	// Bursts from many speakers must not overflow the socket's queue
	// while the read loop publishes; the kernel caps it (rmem_max).
	_ = pc.SetReadBuffer(4 << 20)
	p.pc = pc
	return nil
}

// SetStreamLimits changes StreamIdle and RosterGrace (a value <= 0 keeps
// the current one); it is safe while the plane runs (tests shorten them).
func (p *Plane) SetStreamLimits(idle, grace time.Duration) {
	if idle > 0 {
		p.idle.Store(int64(idle))
	}
	if grace > 0 {
		p.grace.Store(int64(grace))
	}
}

// Close closes the media port of a Plane whose Run never started (its
// owner failed before serving).
func (p *Plane) Close() {
	if p.pc != nil {
		_ = p.pc.Close()
	}
}

// UDPAddr is the bound media port, nil without one (or before Listen).
func (p *Plane) UDPAddr() *net.UDPAddr {
	if p.pc == nil {
		return nil
	}
	return p.pc.LocalAddr().(*net.UDPAddr)
}

// Run serves the media port and sends the Alive messages until ctx ends,
// then closes the port, drops every stream, unsubscribes and waits for its
// goroutines. Call it once, after Listen.
func (p *Plane) Run(ctx context.Context) error {
	if err := p.Listen(); err != nil {
		return err
	}
	if p.pc != nil {
		p.wg.Go(p.readLoop)
	}
	p.wg.Go(func() { p.aliveLoop(ctx) })
	<-ctx.Done()
	if p.pc != nil {
		_ = p.pc.Close() // ends readLoop
	}
	p.mu.Lock()
	p.closed = true
	for _, c := range p.calls {
		for _, s := range c.streams {
			p.retireLocked(s)
		}
		_ = c.sub.Unsubscribe()
	}
	clear(p.calls)
	clear(p.byID)
	clear(p.byConn)
	p.mu.Unlock()
	p.wg.Wait()
	return nil
}

// Install makes conn a participant's connection in call callID with
// stream streamID and key (the relay's CallJoined): the stream's packets
// are accepted from now on, and the call's audio is sent to it. A stream
// conn had before is dropped (one call per user). newCall reports that
// the plane subscribed to the call's MediaDown for it: flush the NATS
// connection before telling the client, so nothing published after the
// reply is missed.
func (p *Plane) Install(conn Conn, callID string, streamID uint32, key []byte) (newCall bool, err error) {
	if !validCallID(callID) || streamID == 0 {
		return false, ErrJoin
	}
	k, err := media.NewKey(key)
	if err != nil {
		return false, fmt.Errorf("%w: %w", ErrJoin, err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false, ErrClosed
	}
	if old := p.byConn[conn]; old != nil {
		p.dropLocked(old)
	}
	c := p.calls[callID]
	if c == nil {
		c = &call{id: callID, up: subject.MediaUp(callID), buf: make([]byte, 0, mediaFramePrefix+media.MaxPacket)}
		sub, err := p.nc.Subscribe(subject.MediaDown(callID), func(msg *nats.Msg) { p.down(c, msg.Data) })
		if err != nil {
			return false, fmt.Errorf("subscribe media of call %s: %w", callID, err)
		}
		// Audio is 50 packets a second per speaker; a gateway that falls
		// far behind drops it rather than hold it (late audio is useless).
		_ = sub.SetPendingLimits(4096, 8<<20)
		c.sub = sub
		p.calls[callID] = c
		newCall = true
	}
	for _, o := range c.streams {
		if o.id == streamID { // the relay never reuses one: a stale copy
			p.dropLocked(o)
			break
		}
	}
	now := time.Now()
	s := &stream{id: streamID, call: c, key: k, conn: conn, installed: now, heard: now, listed: slices.Contains(c.roster, streamID)}
	if p.pc == nil {
		s.framed = true // no media port: frames are the only way
	}
	c.streams = append(c.streams, s)
	p.byID[streamID] = append(p.byID[streamID], s)
	p.byConn[conn] = s
	p.m.MediaStreams.Inc()
	return newCall, nil
}

// Leave drops conn's stream if it is in call callID (the client left it).
func (p *Plane) Leave(conn Conn, callID string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if s := p.byConn[conn]; s != nil && s.call.id == callID {
		p.dropLocked(s)
	}
}

// Drop drops conn's stream, if any: the connection closed.
func (p *Plane) Drop(conn Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if s := p.byConn[conn]; s != nil {
		p.dropLocked(s)
	}
}

// dropLocked removes s from the table; a call left without local streams
// is unsubscribed (p.mu held for writing).
func (p *Plane) dropLocked(s *stream) {
	c := s.call
	c.streams = removeStream(c.streams, s)
	if ss := removeStream(p.byID[s.id], s); len(ss) == 0 {
		delete(p.byID, s.id)
	} else {
		p.byID[s.id] = ss
	}
	if p.byConn[s.conn] == s {
		delete(p.byConn, s.conn)
	}
	p.retireLocked(s)
	if len(c.streams) == 0 && p.calls[c.id] == c {
		delete(p.calls, c.id)
		_ = c.sub.Unsubscribe()
	}
}

// retireLocked marks s gone, so a packet path holding it lets it be.
func (p *Plane) retireLocked(s *stream) {
	s.mu.Lock()
	s.gone = true
	s.mu.Unlock()
	p.m.MediaStreams.Dec()
}

func removeStream(ss []*stream, s *stream) []*stream {
	for i, o := range ss {
		if o == s {
			last := len(ss) - 1
			ss[i] = ss[last]
			ss[last] = nil
			return ss[:last]
		}
	}
	return ss
}

// validCallID reports whether id can be one NATS subject token.
func validCallID(id string) bool {
	return id != "" && len(id) <= 64 && !strings.ContainsAny(id, ". *>\t\r\n")
}

// aliveLoop publishes the Alive messages every AliveInterval until ctx
// ends.
func (p *Plane) aliveLoop(ctx context.Context) {
	t := time.NewTicker(p.cfg.AliveInterval)
	defer t.Stop()
	type alive struct {
		subject string
		msg     []byte
	}
	var out []alive
	ids := make([]uint32, 0, 8)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		out = out[:0]
		idleSince := time.Now().Add(-time.Duration(p.idle.Load()))
		p.mu.RLock()
		for _, c := range p.calls {
			ids = ids[:0]
			for _, s := range c.streams {
				// An idle stream is left out: its client abandoned the
				// call, and the owner times the participant out.
				s.mu.Lock()
				idle := s.heard.Before(idleSince)
				s.mu.Unlock()
				if !idle {
					ids = append(ids, s.id)
				}
			}
			for len(ids) > 0 {
				n := min(len(ids), mediabus.MaxStreams)
				out = append(out, alive{c.up, mediabus.AppendAlive(nil, p.cfg.GatewayID, ids[:n])})
				ids = ids[n:]
			}
		}
		p.mu.RUnlock()
		for _, a := range out {
			if err := p.nc.Publish(a.subject, a.msg); err != nil {
				p.log.Warn("media alive", "subject", a.subject, "err", err)
			}
		}
	}
}

// drop counts a dropped packet.
func (p *Plane) drop(reason string) { p.m.MediaDrops.WithLabelValues(reason).Inc() }

// debug logs at debug level without building anything when it is off.
func (p *Plane) debug(msg string, args ...any) {
	if p.log.Enabled(context.Background(), slog.LevelDebug) {
		p.log.Debug(msg, args...)
	}
}
