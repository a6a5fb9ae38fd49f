// Package pathconn gives a direct session's QUIC connection (§20.5) one
// net.PacketConn whatever path its packets take: the direct pair the punch
// agent selected while there is one, Parley's relay (P2PRelay frames, §20.4)
// otherwise. QUIC sees one fixed peer address and never notices the path
// change; it tolerates the loss and reordering a switch may cause (a packet
// lost meanwhile is retransmitted on the new path), so the Conn neither
// buffers nor duplicates anything: each packet written goes out once, on
// one path.
//
// The Conn also tells the user which path is in use (State): Connecting
// until a pair works or 5 s after the session was accepted, then Direct or
// Relayed (§20.4).
package pathconn

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parleychat/parley/clients/parley/internal/deadline"
)

// State is the path a session's packets take.
type State int

const (
	// Connecting: no direct pair yet, less than 5 s since the session was
	// accepted (packets go through the relay meanwhile).
	Connecting State = iota
	// Relayed: no direct pair; packets go through the server.
	Relayed
	// Direct: packets go straight to the peer.
	Direct
)

func (s State) String() string {
	switch s {
	case Connecting:
		return "connecting"
	case Relayed:
		return "relayed"
	case Direct:
		return "direct"
	}
	return "unknown"
}

// The Conn's fixed addresses: from the benchmarking range (RFC 2544),
// never routed. Both are IPv4 so that QUIC sizes its first packets for
// IPv4. Dial PeerAddr.
var (
	LocalAddr = netip.MustParseAddrPort("198.18.0.1:443")
	PeerAddr  = netip.MustParseAddrPort("198.18.0.2:443")
)

// Errors.
var (
	// ErrBadConfig: a Config without Direct or Relay.
	ErrBadConfig = errors.New("pathconn: bad config")
)

// Config sets a Conn up.
type Config struct {
	// Direct sends a packet on the direct pair (punch.Agent.Send); an
	// error (no pair, or a failed send) sends it through Relay instead.
	Direct func(pkt []byte) error
	// Relay sends a packet through the server (a P2PRelay frame). It must
	// not block long; a packet it cannot send is lost (QUIC sends it
	// again).
	Relay func(pkt []byte) error
	// OnState, if set, gets each change of State in order, one at a
	// time, never with a lock of the Conn held.
	OnState func(State)
	// RelayAfter is how long Connecting lasts after Accepted; 5 s
	// (§20.4).
	RelayAfter time.Duration
	// Queue is how many received packets wait for ReadFrom before more
	// are dropped; 512.
	Queue int
	Log   *slog.Logger
}

// Stats counts packets.
type Stats struct {
	DirectSent, RelaySent         uint64
	DirectReceived, RelayReceived uint64
	SendDropped                   uint64 // neither path took it
	ReceiveDropped                uint64 // the queue was full
}

// Conn is a session's net.PacketConn for QUIC.
type Conn struct {
	cfg    Config
	local  *net.UDPAddr
	peer   *net.UDPAddr
	in     chan []byte
	closed chan struct{}
	once   sync.Once
	rd     *deadline.Deadline
	wdl    atomic.Int64 // write deadline, unix ns; 0: none

	directSent, relaySent, directRecv, relayRecv, sendDrop, recvDrop atomic.Uint64

	mu         sync.Mutex // guards state, introduced, timer, evQ
	state      State
	introduced bool
	timer      *time.Timer
	evQ        []State
	evWake     chan struct{}
	wg         sync.WaitGroup
}

var _ net.PacketConn = (*Conn)(nil)

// New makes a Conn in state Connecting.
func New(cfg Config) (*Conn, error) {
	if cfg.Direct == nil || cfg.Relay == nil {
		return nil, fmt.Errorf("%w: Direct and Relay are required", ErrBadConfig)
	}
	if cfg.RelayAfter <= 0 {
		cfg.RelayAfter = 5 * time.Second
	}
	if cfg.Queue <= 0 {
		cfg.Queue = 512
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	c := &Conn{
		cfg:    cfg,
		local:  net.UDPAddrFromAddrPort(LocalAddr),
		peer:   net.UDPAddrFromAddrPort(PeerAddr),
		in:     make(chan []byte, cfg.Queue),
		closed: make(chan struct{}),
		evWake: make(chan struct{}, 1),
	}
	c.rd = deadline.New()
	if cfg.OnState != nil {
		c.wg.Add(1)
		go c.notify()
	}
	return c, nil
}

// ReadFrom returns the next packet from either path; the address is
// always PeerAddr.
func (c *Conn) ReadFrom(p []byte) (int, net.Addr, error) {
	select {
	case <-c.closed:
		return 0, nil, net.ErrClosed
	default:
	}
	select {
	case pkt := <-c.in:
		return copy(p, pkt), c.peer, nil
	case <-c.closed:
		return 0, nil, net.ErrClosed
	case <-c.rd.Wait():
		return 0, nil, os.ErrDeadlineExceeded
	}
}

// WriteTo sends p on the direct pair, or through the relay when there is
// none; addr is ignored (there is one peer). A packet neither path takes
// is dropped, not an error: QUIC treats write errors as fatal, and UDP
// loses packets anyway.
func (c *Conn) WriteTo(p []byte, _ net.Addr) (int, error) {
	select {
	case <-c.closed:
		return 0, net.ErrClosed
	default:
	}
	if dl := c.wdl.Load(); dl != 0 && time.Now().UnixNano() >= dl {
		return 0, os.ErrDeadlineExceeded
	}
	if err := c.cfg.Direct(p); err == nil {
		c.directSent.Add(1)
		return len(p), nil
	}
	if err := c.cfg.Relay(p); err != nil {
		c.sendDrop.Add(1)
		c.cfg.Log.Debug("pathconn: packet dropped", "err", err)
		return len(p), nil
	}
	c.relaySent.Add(1)
	return len(p), nil
}

// DeliverDirect passes on a packet that came on the direct path
// (punch.Config.OnPacket). pkt is copied.
func (c *Conn) DeliverDirect(pkt []byte) {
	if c.deliver(pkt) {
		c.directRecv.Add(1)
	}
}

// DeliverRelay passes on a packet that came through the relay (a
// P2PRelay frame). pkt is copied.
func (c *Conn) DeliverRelay(pkt []byte) {
	if c.deliver(pkt) {
		c.relayRecv.Add(1)
	}
}

func (c *Conn) deliver(pkt []byte) bool {
	select {
	case <-c.closed:
		return false
	default:
	}
	select {
	case c.in <- append([]byte(nil), pkt...):
		return true
	default:
		c.recvDrop.Add(1)
		return false
	}
}

// Accepted notes that the session was accepted, which starts the time
// after which a session without a direct pair shows as Relayed (§20.4).
// It counts from the acceptance, not from an introduction: a side whose
// UDP is blocked never registers, so neither side is ever introduced.
// Later calls do nothing.
func (c *Conn) Accepted() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.introduced || c.isClosed() {
		return
	}
	c.introduced = true
	c.timer = time.AfterFunc(c.cfg.RelayAfter, func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.state == Connecting && !c.isClosed() {
			c.setState(Relayed)
		}
	})
}

// SetDirect notes that the agent selected a direct pair (true:
// punch.EventDirect) or lost it (false: punch.EventDead).
func (c *Conn) SetDirect(direct bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.isClosed():
	case direct:
		c.setState(Direct)
	case c.state == Direct:
		c.setState(Relayed)
	}
}

// setState changes the state and queues the notification. c.mu is held.
func (c *Conn) setState(s State) {
	if c.state == s {
		return
	}
	c.cfg.Log.Debug("pathconn: state", "from", c.state, "to", s)
	c.state = s
	if c.cfg.OnState == nil {
		return
	}
	c.evQ = append(c.evQ, s)
	select {
	case c.evWake <- struct{}{}:
	default:
	}
}

// notify calls OnState for each change, in order, until Close.
func (c *Conn) notify() {
	defer c.wg.Done()
	for {
		select {
		case <-c.closed:
			return
		case <-c.evWake:
		}
		for {
			c.mu.Lock()
			if len(c.evQ) == 0 || c.isClosed() {
				c.mu.Unlock()
				break
			}
			s := c.evQ[0]
			c.evQ = c.evQ[1:]
			c.mu.Unlock()
			c.cfg.OnState(s)
		}
	}
}

// State is the path in use now.
func (c *Conn) State() State {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state
}

// Stats counts the packets so far.
func (c *Conn) Stats() Stats {
	return Stats{
		DirectSent:     c.directSent.Load(),
		RelaySent:      c.relaySent.Load(),
		DirectReceived: c.directRecv.Load(),
		RelayReceived:  c.relayRecv.Load(),
		SendDropped:    c.sendDrop.Load(),
		ReceiveDropped: c.recvDrop.Load(),
	}
}

func (c *Conn) isClosed() bool {
	select {
	case <-c.closed:
		return true
	default:
		return false
	}
}

// Close unblocks readers and stops notifications. It must not be called
// from OnState.
func (c *Conn) Close() error {
	c.once.Do(func() {
		close(c.closed)
		c.mu.Lock()
		if c.timer != nil {
			c.timer.Stop()
		}
		c.mu.Unlock()
		c.wg.Wait()
	})
	return nil
}

// LocalAddr is LocalAddr.
func (c *Conn) LocalAddr() net.Addr { return c.local }

// RemoteAddr is PeerAddr, the address to give quic.Dial.
func (c *Conn) RemoteAddr() net.Addr { return c.peer }

// SetDeadline sets both deadlines.
func (c *Conn) SetDeadline(t time.Time) error {
	c.SetReadDeadline(t)
	return c.SetWriteDeadline(t)
}

// SetReadDeadline implements net.PacketConn.
func (c *Conn) SetReadDeadline(t time.Time) error {
	c.rd.Set(t)
	return nil
}

// SetWriteDeadline implements net.PacketConn. Writes never block; one
// after the deadline fails.
func (c *Conn) SetWriteDeadline(t time.Time) error {
	if t.IsZero() {
		c.wdl.Store(0)
	} else {
		c.wdl.Store(max(t.UnixNano(), 1))
	}
	return nil
}
