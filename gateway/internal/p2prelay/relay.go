// Package p2prelay is the gateway's relay for direct sessions
// (docs/protocol.md §20.4): while two devices have no direct path, the
// packets of their session travel as p2p_relay frames on their
// connections, and between the gateways holding the two connections over
// NATS.
//
// A connection relays a session only once it is attached to it: the
// rendezvous answered this connection's p2p_open, p2p_answer or
// p2p_update with the session, naming the side the connection's device
// holds ("a" or "b"). Attaching subscribes subject.P2PRelay(session,
// side); what arrives there (the raw packet, published by the gateway of
// the other side) goes to the connection as Frame{p2p_relay:
// P2PRelay{session_id, packet}}, never waiting: a connection whose send
// queue is more than half full misses the packet (the session's QUIC
// retransmits), never SLOW_CONSUMER. A client's p2p_relay frame is
// published to subject.P2PRelay(session, other side) if that session is
// attached to the connection, the packet is 1 to MaxPacket bytes and the
// connection's allowance (a token bucket of Config.Rate bytes a second,
// Config.Burst deep) covers it; otherwise it is dropped. Nothing is ever
// answered: drops are counted by reason (metrics.P2PRelayDrops).
//
// The gateway needs no state of the session beyond that: the rendezvous
// decides who may attach which side (it answers only the session's own
// users, with their side), and the packets are end-to-end encrypted
// (QUIC between the devices), so the relay neither reads nor checks them.
//
// A side has one connection: attaching publishes a takeover notice on
// subject.P2PRelay(session, side) (no data, the attachment's token, its
// time and a tiebreak, in the Parley-Relay-Attach header), and any older
// attachment of that side, on this gateway or another, detaches when it
// reads it (a newer one that reads an older one's notice sends its own
// again: the older may have subscribed after it went out) (the device
// reconnected, or sent p2p_update on another connection: §20.2). A
// connection holds at most Config.MaxSessions attachments. One is
// detached when its p2p_close is answered, when a P2PEvent{CLOSED} for it
// reaches the connection, when another connection takes its side over,
// and with all the others when the connection ends or logs out (DropConn). Each attachment costs one NATS
// subscription, whose messages nats.go hands to one goroutine of its own,
// so a session's packets reach the client in order.
package p2prelay

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/parleychat/parley/gateway/internal/metrics"
	"github.com/parleychat/parley/libs/subject"
	"github.com/parleychat/parley/protocol/parleyv1"
	"github.com/parleychat/parley/protocol/wire"
)

// MaxPacket is the largest packet relayed (docs/protocol.md §20.4).
const MaxPacket = 1500

// DefaultMaxSessions is how many sessions one connection may have
// attached when Config.MaxSessions is 0: as many as a user may have open
// (docs/protocol.md §20.2).
const DefaultMaxSessions = 8

// Errors.
var (
	// ErrConfig: an invalid Config.
	ErrConfig = errors.New("p2prelay: invalid config")
	// ErrClosed: the relay has shut down; nothing is attached.
	ErrClosed = errors.New("p2prelay: relay closed")
	// ErrSession: a session id that cannot be a subject token, or a side
	// other than "a" and "b".
	ErrSession = errors.New("p2prelay: invalid session id or side")
	// ErrTooMany: the connection has MaxSessions attached already.
	ErrTooMany = errors.New("p2prelay: too many sessions on this connection")
)

// Drop reasons, the label values of metrics.P2PRelayDrops.
const (
	DropUnattached = "unattached" // no session of that id attached to the connection
	DropSize       = "size"       // an empty packet, or one above MaxPacket
	DropRate       = "rate"       // beyond the connection's allowance
	DropQueue      = "queue"      // the receiving connection had no room for the frame
	DropDisabled   = "disabled"   // the gateway relays nothing (-p2p-relay-rate 0); counted by the caller
	DropBus        = "bus"        // publishing on NATS failed
)

// Conn is a client connection as the relay sees it.
type Conn interface {
	// PushRelay queues frame, one encoded, length-prefixed p2p_relay
	// frame (the bytes are the caller's again once it returns), if the
	// connection's send queue has room now; it reports false if the frame
	// was dropped. It never waits and never closes the connection.
	PushRelay(frame []byte) bool
}

// Config configures a Relay.
type Config struct {
	NC      *nats.Conn
	Log     *slog.Logger
	Metrics *metrics.Metrics
	// Rate is how many packet bytes a second one connection may relay;
	// Burst how many it may send at once (at least MaxPacket).
	Rate, Burst int
	// MaxSessions bounds the sessions attached to one connection; 0:
	// DefaultMaxSessions.
	MaxSessions int
	// Now is the clock of the allowance; nil: time.Now.
	Now func() time.Time
}

// Relay is one gateway's relay. It is safe for concurrent use.
type Relay struct {
	cfg Config
	nc  *nats.Conn
	log *slog.Logger
	m   *metrics.Metrics

	upPackets, upBytes, downPackets, downBytes prometheus.Counter
	drops                                      map[string]prometheus.Counter

	mu     sync.RWMutex // guards conns and closed; taken before a peer's mu
	conns  map[Conn]*peer
	closed bool
}

// peer is one connection's attachments and allowance.
type peer struct {
	conn Conn

	mu       sync.Mutex // guards the fields below
	sessions map[string]*attachment
	tokens   float64   // bytes the connection may send now
	refill   time.Time // when tokens was last topped up
}

// attachment is one session attached to a connection.
type attachment struct {
	id    string
	side  string
	token atomic.Pointer[string] // in its takeover notice (headerAttach): when it attached, and a random tiebreak
	to    string                 // subject.P2PRelay(id, the other side): where the client's packets go
	sub   *nats.Subscription
	gone  atomic.Bool // detached: a message still being handled is dropped

	buf []byte // the frame being built; owned by sub's goroutine
}

// New validates cfg and returns a Relay; it subscribes to nothing yet.
func New(cfg Config) (*Relay, error) {
	switch {
	case cfg.NC == nil:
		return nil, fmt.Errorf("nil NATS connection: %w", ErrConfig)
	case cfg.Metrics == nil:
		return nil, fmt.Errorf("nil metrics: %w", ErrConfig)
	case cfg.Rate <= 0:
		return nil, fmt.Errorf("rate must be positive: %w", ErrConfig)
	case cfg.Burst < MaxPacket:
		return nil, fmt.Errorf("burst must be at least %d bytes: %w", MaxPacket, ErrConfig)
	case cfg.MaxSessions < 0:
		return nil, fmt.Errorf("max sessions must not be negative: %w", ErrConfig)
	}
	if cfg.MaxSessions == 0 {
		cfg.MaxSessions = DefaultMaxSessions
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := cfg.Metrics
	r := &Relay{
		cfg: cfg, nc: cfg.NC, log: log, m: m,
		upPackets:   m.P2PRelayPackets.WithLabelValues("up"),
		upBytes:     m.P2PRelayBytes.WithLabelValues("up"),
		downPackets: m.P2PRelayPackets.WithLabelValues("down"),
		downBytes:   m.P2PRelayBytes.WithLabelValues("down"),
		drops:       map[string]prometheus.Counter{},
		conns:       map[Conn]*peer{},
	}
	for _, reason := range []string{DropUnattached, DropSize, DropRate, DropQueue, DropBus} {
		r.drops[reason] = m.P2PRelayDrops.WithLabelValues(reason)
	}
	return r, nil
}

// MaxSessions is how many sessions one connection may have attached.
func (r *Relay) MaxSessions() int { return r.cfg.MaxSessions }

// CanAttach reports whether conn could attach session id now: it is
// attached already, or conn has fewer than MaxSessions. The gateway asks
// before it sends a request that would attach, so that a connection at
// the limit is refused before the rendezvous acts on it.
func (r *Relay) CanAttach(conn Conn, id string) bool {
	attached, n := r.state(conn, id)
	return attached || n < r.cfg.MaxSessions
}

// state reports whether conn has session id attached, and how many
// sessions it has attached.
func (r *Relay) state(conn Conn, id string) (attached bool, n int) {
	r.mu.RLock()
	p := r.conns[conn]
	r.mu.RUnlock()
	if p == nil {
		return false, 0
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	_, attached = p.sessions[id]
	return attached, len(p.sessions)
}

// Attach makes conn the connection of side side ("a" or "b") of session
// id: packets for that side are delivered to it, and its packets for the
// session go to the other side. Attaching a session conn has already
// attached replaces the side (a repeated attach of the same side changes
// nothing). subscribed reports a new NATS subscription: flush the NATS
// connection before telling the client, so nothing published after the
// reply is missed.
func (r *Relay) Attach(conn Conn, id, side string) (subscribed bool, err error) {
	other, ok := otherSide(side)
	if !ok || !validSessionID(id) {
		return false, ErrSession
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return false, ErrClosed
	}
	p := r.conns[conn]
	if p == nil {
		p = &peer{conn: conn, sessions: map[string]*attachment{}, tokens: float64(r.cfg.Burst), refill: r.cfg.Now()}
		r.conns[conn] = p
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	old := p.sessions[id]
	switch {
	case old != nil && old.side == side:
		old.stamp(r.cfg.Now()) // attached again: the newest of the side now
		r.takeOver(old)
		return false, nil
	case old == nil && len(p.sessions) >= r.cfg.MaxSessions:
		return false, ErrTooMany
	}
	a := &attachment{id: id, side: side, to: subject.P2PRelay(id, other)}
	a.stamp(r.cfg.Now())
	sub, err := r.nc.Subscribe(subject.P2PRelay(id, side), func(msg *nats.Msg) { r.down(conn, a, msg) })
	if err != nil {
		return false, fmt.Errorf("subscribe the relay of session %s: %w", id, err)
	}
	// A client far behind misses packets rather than hold them: QUIC
	// retransmits what matters, and late packets are worth little.
	_ = sub.SetPendingLimits(1024, 2<<20)
	a.sub = sub
	p.sessions[id] = a
	if old != nil {
		r.retire(old)
	} else {
		r.m.P2PRelaySessions.Inc()
	}
	r.takeOver(a)
	return true, nil
}

// headerAttach carries a takeover notice's token (see the package comment).
const headerAttach = "Parley-Relay-Attach"

// attachToken is an attachment's token: the time it attached, as 16 hex
// digits of Unix nanoseconds, then a random tiebreak. Tokens compare as
// strings in the order the attachments were made (to within the
// gateways' clock skew), so when two connections attach one side at the
// same moment, each reads the other's notice and exactly one, the older,
// detaches.
func attachToken(now time.Time) string {
	return fmt.Sprintf("%016x.%s", uint64(now.UnixNano()), nats.NewInbox())
}

// stamp gives a a new token, made at now.
func (a *attachment) stamp(now time.Time) {
	t := attachToken(now)
	a.token.Store(&t)
}

// takeOver publishes a's takeover notice: other connections attached to
// its side detach. Its own subscription reads it too, and ignores it.
func (r *Relay) takeOver(a *attachment) {
	msg := &nats.Msg{Subject: subject.P2PRelay(a.id, a.side), Header: nats.Header{headerAttach: []string{*a.token.Load()}}}
	if err := r.nc.PublishMsg(msg); err != nil {
		r.log.Warn("publish a relay takeover", "session", a.id, "err", err)
	}
}

// takenOver detaches a from conn, another connection having attached its
// side (unless conn has attached the session anew since).
func (r *Relay) takenOver(conn Conn, a *attachment) {
	if r.detach(conn, a.id, a) {
		r.debug("direct session relay taken over by another connection", "session", a.id, "side", a.side)
	}
}

// Detach ends conn's attachment to session id, if it has one.
func (r *Relay) Detach(conn Conn, id string) { r.detach(conn, id, nil) }

// detach ends conn's attachment to session id if it has one (and it is
// only, unless only is nil), and reports whether it did.
func (r *Relay) detach(conn Conn, id string, only *attachment) bool {
	r.mu.RLock()
	p := r.conns[conn]
	r.mu.RUnlock()
	if p == nil {
		return false
	}
	p.mu.Lock()
	a := p.sessions[id]
	if a == nil || only != nil && a != only {
		p.mu.Unlock()
		return false
	}
	delete(p.sessions, id)
	r.m.P2PRelaySessions.Dec() // under p.mu, as Attach counts: the gauge agrees with the sessions held
	p.mu.Unlock()
	r.retire(a)
	return true
}

// DropConn detaches every session of conn and forgets it: the connection
// ended or logged out.
func (r *Relay) DropConn(conn Conn) {
	r.mu.Lock()
	p := r.conns[conn]
	delete(r.conns, conn)
	r.mu.Unlock()
	if p != nil {
		r.dropPeer(p)
	}
}

// Close detaches everything; later attaches fail with ErrClosed. The
// gateway calls it after its connections are gone.
func (r *Relay) Close() {
	r.mu.Lock()
	r.closed = true
	peers := make([]*peer, 0, len(r.conns))
	for _, p := range r.conns {
		peers = append(peers, p)
	}
	clear(r.conns)
	r.mu.Unlock()
	for _, p := range peers {
		r.dropPeer(p)
	}
}

func (r *Relay) dropPeer(p *peer) {
	p.mu.Lock()
	as := make([]*attachment, 0, len(p.sessions))
	for _, a := range p.sessions {
		as = append(as, a)
	}
	clear(p.sessions)
	r.m.P2PRelaySessions.Sub(float64(len(as)))
	p.mu.Unlock()
	for _, a := range as {
		r.retire(a)
	}
}

// retire ends a's subscription; a message its goroutine is handling now
// is dropped (gone).
func (r *Relay) retire(a *attachment) {
	a.gone.Store(true)
	if err := a.sub.Unsubscribe(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
		r.log.Warn("unsubscribe a session's relay", "session", a.id, "err", err)
	}
}

// Packet relays pkt, a p2p_relay frame's packet from conn for session id
// (see the package comment). Nothing is ever sent back. pkt is not kept.
func (r *Relay) Packet(conn Conn, id string, pkt []byte) {
	if len(pkt) == 0 || len(pkt) > MaxPacket {
		r.drop(DropSize)
		return
	}
	r.mu.RLock()
	p := r.conns[conn]
	r.mu.RUnlock()
	if p == nil {
		r.drop(DropUnattached)
		return
	}
	p.mu.Lock()
	a := p.sessions[id]
	if a == nil {
		p.mu.Unlock()
		r.drop(DropUnattached)
		return
	}
	if !p.takeLocked(len(pkt), r.cfg.Now(), r.cfg.Rate, r.cfg.Burst) {
		p.mu.Unlock()
		r.drop(DropRate)
		return
	}
	to := a.to
	p.mu.Unlock()
	if err := r.nc.Publish(to, pkt); err != nil {
		r.drop(DropBus)
		r.debug("publish a relayed packet", "session", id, "err", err)
		return
	}
	r.upPackets.Inc()
	r.upBytes.Add(float64(len(pkt)))
}

// takeLocked takes n bytes from the allowance if it has them, after
// topping it up for the time since the last top-up (p.mu held).
func (p *peer) takeLocked(n int, now time.Time, rate, burst int) bool {
	if elapsed := now.Sub(p.refill); elapsed > 0 {
		p.tokens = min(float64(burst), p.tokens+elapsed.Seconds()*float64(rate))
		p.refill = now
	}
	if p.tokens < float64(n) {
		return false
	}
	p.tokens -= float64(n)
	return true
}

// down delivers a packet published for a's side to conn; it runs on a's
// subscription's goroutine, one packet at a time.
func (r *Relay) down(conn Conn, a *attachment, msg *nats.Msg) {
	if a.gone.Load() {
		return
	}
	if t := msg.Header.Get(headerAttach); t != "" {
		switch mine := *a.token.Load(); {
		case t > mine: // a newer attachment of the side
			r.takenOver(conn, a)
		case t < mine:
			// An older one, whose subscription may not have existed when
			// our notice went out (it published this one after it
			// subscribed): tell it again.
			r.takeOver(a)
		}
		return
	}
	pkt := msg.Data
	if len(pkt) == 0 || len(pkt) > MaxPacket {
		r.drop(DropSize)
		return
	}
	a.buf = AppendFrame(a.buf[:0], a.id, pkt)
	if !conn.PushRelay(a.buf) {
		r.drop(DropQueue)
		return
	}
	r.downPackets.Inc()
	r.downBytes.Add(float64(len(pkt)))
}

func (r *Relay) drop(reason string) { r.drops[reason].Inc() }

// debug logs at debug level without building anything when it is off.
func (r *Relay) debug(msg string, args ...any) {
	if r.log.Enabled(context.Background(), slog.LevelDebug) {
		r.log.Debug(msg, args...)
	}
}

// Field numbers of Frame.p2p_relay, P2PRelay.session_id and
// P2PRelay.packet, read from the schema.
var (
	relayFields    = (&parleyv1.P2PRelay{}).ProtoReflect().Descriptor().Fields()
	frameRelayNum  = wire.BodyField("p2p_relay")
	relaySessionID = relayFields.ByName("session_id").Number()
	relayPacketNum = relayFields.ByName("packet").Number()
)

// AppendFrame appends the length-prefixed encoding of
// Frame{p2p_relay: P2PRelay{session_id: id, packet: pkt}} (request_id 0)
// to dst: the protobuf encoding written directly, so the down path
// allocates nothing per packet (TestAppendFrame checks it decodes as the
// schema says).
func AppendFrame(dst []byte, id string, pkt []byte) []byte {
	inner := protowire.SizeTag(relaySessionID) + protowire.SizeBytes(len(id)) +
		protowire.SizeTag(relayPacketNum) + protowire.SizeBytes(len(pkt))
	frame := protowire.SizeTag(frameRelayNum) + protowire.SizeBytes(inner)
	dst = binary.BigEndian.AppendUint32(dst, uint32(frame))
	dst = protowire.AppendTag(dst, frameRelayNum, protowire.BytesType)
	dst = protowire.AppendVarint(dst, uint64(inner))
	dst = protowire.AppendTag(dst, relaySessionID, protowire.BytesType)
	dst = protowire.AppendString(dst, id)
	dst = protowire.AppendTag(dst, relayPacketNum, protowire.BytesType)
	return protowire.AppendBytes(dst, pkt)
}

// otherSide is the side opposite side; ok is false for anything but "a"
// and "b".
func otherSide(side string) (other string, ok bool) {
	switch side {
	case "a":
		return "b", true
	case "b":
		return "a", true
	}
	return "", false
}

// validSessionID reports whether id can be one NATS subject token (at
// most 64 bytes).
func validSessionID(id string) bool {
	return id != "" && len(id) <= 64 && !strings.ContainsAny(id, ". *>\t\r\n")
}
