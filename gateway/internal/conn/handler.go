package conn

import (
	"context"
	"crypto/rand"
	"log/slog"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/parleychat/parley/gateway/internal/callmedia"
	"github.com/parleychat/parley/gateway/internal/connlimit"
	"github.com/parleychat/parley/gateway/internal/metrics"
	"github.com/parleychat/parley/gateway/internal/p2prelay"
	"github.com/parleychat/parley/gateway/internal/presence"
	"github.com/parleychat/parley/gateway/internal/registry"
	"github.com/parleychat/parley/gateway/internal/transport"
	"github.com/parleychat/parley/libs/proto/internalv1"
	"github.com/parleychat/parley/libs/rpc"
	"github.com/parleychat/parley/libs/subject"
)

// Limits are the per-connection limits and timeouts.
type Limits struct {
	MaxFrameSize      uint32        // largest accepted frame, without prefix, with a session
	PreloginFrameSize uint32        // largest accepted frame while the connection has no session
	HandshakeTimeout  time.Duration // Hello must arrive within this
	HeartbeatInterval time.Duration // advertised in Welcome: ping when idle this long
	IdleTimeout       time.Duration // close after receiving nothing this long
	WriteTimeout      time.Duration // bound on one flush
	RequestTimeout    time.Duration // bound on one NATS request
	SendQueueFrames   int           // outbound queue bound, frames
	SendQueueBytes    int           // outbound queue bound, bytes (with prefixes)
}

// maxBadFrames is how many undecodable frames one connection may send; the
// next one closes it with a fatal BAD_FRAME.
const maxBadFrames = 10

// disconnectTimeout bounds the PresenceDisconnect sent when a connection
// ends, so a shutdown with presence down still finishes quickly.
const disconnectTimeout = 3 * time.Second

// Options configure a Handler.
type Options struct {
	NC *nats.Conn
	// Requests carries the connections' requests to services, reusing
	// reply subjects (rpc.Replies); nil: NC.
	Requests  rpc.Requester
	Log       *slog.Logger
	Metrics   *metrics.Metrics
	Registry  *registry.Registry
	Admission *connlimit.Limiter // connection caps; nil: none
	Feed      *presence.Feed
	GatewayID string
	Server    string // "parley-gateway/<version>", sent in Welcome
	// HTTPURL gives Welcome.http_url for a connection: where its client
	// transfers files ("" or nil: this gateway serves none).
	HTTPURL func(t transport.Transport) string
	// Media is the calls' media plane; nil: call media is not served
	// (CallJoined passes through without udp_addr, media frames are
	// dropped).
	Media *callmedia.Plane
	// UDPAddr gives CallJoined.udp_addr for a connection: where its
	// client sends media packets ("" or nil: no media port).
	UDPAddr func(t transport.Transport) string
	// P2P relays direct sessions' packets; nil: the gateway relays none
	// (p2p_relay frames are dropped, sessions pass through unattached).
	P2P *p2prelay.Relay
	// STUNAddr is Welcome.stun_addr: the rendezvous's primary address
	// ("": none).
	STUNAddr string
	Limits   Limits
}

// Handler serves connections; it is shared by all of them.
type Handler struct {
	Options
	idPrefix string        // random per process, so conn ids never repeat across restarts
	nextID   atomic.Uint64 // conn id counter
	refusals refusalLog
	shed     shedLog
}

// NewHandler returns a Handler.
func NewHandler(o Options) *Handler {
	if o.Requests == nil {
		o.Requests = o.NC
	}
	return &Handler{Options: o, idPrefix: randomToken(4) + "-"}
}

// Serve runs one connection until it ends, on the calling goroutine (the
// connection's reader), then closes t. It never panics on client input.
//
// Stack budget: an idle connection is this goroutine parked in a read
// (ReadFrame before its first frame, Transport.Wait in process after), so
// the frames of Serve, readLoop, process and the read path stay on its
// stack for the connection's whole life. Go starts goroutines with a 2 KiB stack, of which
// 1,120 bytes may be used before it doubles; the parked read path takes
// about 1 KiB of that. Serve therefore keeps only a pointer in its frame and
// leaves the setup and teardown to non-inlined helpers, and callers start
// it from a goroutine with a tiny frame (see server.serveStream). Growing to
// 4 KiB would cost 2 KiB per idle connection (docs/benchmarks.md).
func (h *Handler) Serve(t transport.Transport) {
	c, ok := h.open(t)
	if ok {
		c.readLoop()
	}
	c.finish()
}

// open builds the connection, admits it under the connection caps and
// registers it. ok is false when it must not be served: it was refused
// (a fatal RATE_LIMITED or UNAVAILABLE is queued as its first frame), or
// the gateway is shutting down (SERVER_SHUTDOWN).
//
//go:noinline
func (h *Handler) open(t transport.Transport) (c *Conn, ok bool) {
	c = &Conn{
		h:      h,
		t:      t,
		id:     h.idPrefix + strconv.FormatUint(h.nextID.Add(1), 36),
		remote: t.RemoteAddr().String(),
	}
	c.ctx = &c.cctx
	c.out.c = c
	h.Metrics.Connections.WithLabelValues(t.Kind()).Inc()
	c.debug("connection opened", "transport", t.Kind())
	if h.Admission != nil {
		slot, verdict := h.Admission.Admit(t.RemoteAddr())
		if verdict != connlimit.Admitted {
			c.refuse(verdict)
			return c, false
		}
		c.slot = slot
	}
	c.setFrameLimit(h.Limits.PreloginFrameSize)
	if !h.Registry.Add(c) {
		c.Shutdown()
		return c, false
	}
	return c, true
}

// finish runs on the reader goroutine after the read loop: it stops all
// deliveries, tells presence the connection is gone, lets the last queued
// frames out and closes the transport.
//
//go:noinline
func (c *Conn) finish() {
	h := c.h
	c.cancel()
	if h.Media != nil {
		h.Media.Drop(c) // the relay times the participant out unless it rejoins
	}
	if h.P2P != nil {
		h.P2P.DropConn(c) // the session lives on; a reconnect sends p2p_update
	}
	h.Feed.Leave(c)
	rec := h.Registry.Remove(c)
	c.out.close()
	if rec != nil {
		c.presenceDisconnect(rec)
	}
	_ = c.t.Close()
	c.slot.Release()
	h.Metrics.Connections.WithLabelValues(c.t.Kind()).Dec()
	c.debug("connection closed")
}

// presenceDisconnect tells presence a connection ended. A failure is logged
// only: the heartbeat resync or presence's gateway TTL repairs it.
func (c *Conn) presenceDisconnect(rec *internalv1.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), min(disconnectTimeout, c.h.Limits.RequestTimeout))
	defer cancel()
	msg := &internalv1.PresenceDisconnect{GatewayId: rec.GetGatewayId(), ConnId: rec.GetConnId()}
	if err := rpc.Request(ctx, c.h.NC, subject.PresenceDisconnect, nil, msg, nil); err != nil {
		c.log().Warn("presence disconnect", "user", rec.GetUserId(), "err", err)
	}
}

func (c *Conn) log() *slog.Logger { return c.h.Log.With("conn", c.id, "remote", c.remote) }

// debug logs at debug level with the connection's id and address, without
// building a logger when debug logging is off.
func (c *Conn) debug(msg string, args ...any) {
	if c.h.Log.Enabled(context.Background(), slog.LevelDebug) {
		c.log().Debug(msg, args...)
	}
}

// randomToken returns n random characters from [a-z0-9].
func randomToken(n int) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, n)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}
