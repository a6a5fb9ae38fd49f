package presence

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/parleychat/parley/libs/proto/internalv1"
	"github.com/parleychat/parley/libs/rpc"
	"github.com/parleychat/parley/libs/subject"
	"github.com/parleychat/parley/protocol/errcode"
)

// ResyncChunk is the most connections one GatewayResync message carries.
const ResyncChunk = 500

// Source is the gateway's set of authenticated connections.
type Source interface {
	Count() int
	Conns() []*internalv1.Conn
}

// Heartbeat tells presence, every interval, that this gateway is alive and
// how many authenticated connections it holds (GatewayHeartbeat). When
// presence's count differs it answers resync=true and the gateway sends its
// whole list as GatewayResync chunks sharing one resync_id, the last with
// last=true. A failed heartbeat or resync is logged and simply retried at
// the next tick: presence asks again while the counts differ.
type Heartbeat struct {
	NC        *nats.Conn
	Log       *slog.Logger
	GatewayID string
	Interval  time.Duration
	Timeout   time.Duration // per request
	Source    Source
}

// Run beats immediately, then every Interval until ctx ends.
func (h *Heartbeat) Run(ctx context.Context) error {
	t := time.NewTicker(h.Interval)
	defer t.Stop()
	for {
		h.beat(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (h *Heartbeat) beat(ctx context.Context) {
	rctx, cancel := context.WithTimeout(ctx, h.Timeout)
	defer cancel()
	reply := new(internalv1.GatewayHeartbeatReply)
	hb := &internalv1.GatewayHeartbeat{GatewayId: h.GatewayID, Conns: uint32(h.Source.Count())}
	if err := rpc.Request(rctx, h.NC, subject.PresenceHeartbeat, nil, hb, reply); err != nil {
		if ctx.Err() == nil {
			h.Log.Warn("presence heartbeat", "err", err)
		}
		return
	}
	if reply.GetResync() {
		h.resync(ctx)
	}
}

// resync sends the full connection list in chunks of at most ResyncChunk.
// An empty list is one chunk with no conns and last=true. The last chunk
// carries the number of chunks.
func (h *Heartbeat) resync(ctx context.Context) {
	conns := h.Source.Conns()
	id := resyncID()
	h.Log.Info("presence resync", "conns", len(conns), "resync_id", id)
	total := uint32(max(1, (len(conns)+ResyncChunk-1)/ResyncChunk))
	for {
		n := min(len(conns), ResyncChunk)
		msg := &internalv1.GatewayResync{GatewayId: h.GatewayID, ResyncId: id, Conns: conns[:n], Last: n == len(conns)}
		if msg.Last {
			// Chunks go one at a time, each after the previous reply, so
			// 0 would do; the count makes the resync safe regardless.
			msg.Chunks = total
		}
		rctx, cancel := context.WithTimeout(ctx, h.Timeout)
		err := rpc.Request(rctx, h.NC, subject.PresenceResync, nil, msg, nil)
		cancel()
		if err != nil {
			h.Log.Warn("presence resync", "resync_id", id, "err", err)
			return
		}
		conns = conns[n:]
		if len(conns) == 0 {
			return
		}
	}
}

func resyncID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// rpcError is err as a wire error (rpc.Request returns *errcode.Error).
func rpcError(err error) *errcode.Error { return errcode.From(err) }
