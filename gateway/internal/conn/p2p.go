package conn

import (
	"errors"

	"google.golang.org/protobuf/proto"

	"github.com/parleychat/parley/gateway/internal/p2prelay"
	"github.com/parleychat/parley/protocol/errcode"
	"github.com/parleychat/parley/protocol/parleyv1"
)

// Direct sessions (docs/protocol.md §20). register_device and device_keys
// go to auth like any forwarded request; p2p_open, p2p_answer, p2p_update
// and p2p_close go to the rendezvous. The gateway's own part is the relay
// (gateway/internal/p2prelay): a P2PSession reply that is not CLOSED
// attaches the session's side to this connection (p2pSession), a
// p2p_close detaches it (p2pClose), and p2p_relay frames from the client
// go to the relay (p2pRelay), never answered. A P2PEvent{CLOSED} reaching
// the connection detaches its session too (P2PClosed, from the
// registry), and the connection's end or logout detaches them all.

// p2pSession forwards a P2POpenRequest, P2PAnswerRequest or
// P2PUpdateRequest to the rendezvous. When the reply's session is not
// CLOSED, its side is attached to this connection (a p2p_update after a
// reconnect moves it here); a CLOSED one (an offer declined) is detached.
// A connection with the most sessions attached is refused QUOTA_EXCEEDED
// before the rendezvous hears of the request, unless the request is about
// a session it has attached.
func (c *Conn) p2pSession(r *route, _ uint32, req proto.Message, s *session) (proto.Message, error) {
	relay := c.h.P2P
	if relay != nil && !relay.CanAttach(c, requestSessionID(req)) {
		return nil, errcode.Newf(parleyv1.ErrorCode_ERROR_CODE_QUOTA_EXCEEDED,
			"this connection relays %d direct sessions already; close one first", relay.MaxSessions())
	}
	reply := new(parleyv1.P2PSession)
	if err := c.sessionRequest(r.subject, s, req, reply, r.tooLargeCode()); err != nil {
		return nil, err
	}
	if relay == nil {
		return reply, nil
	}
	if reply.GetState() == parleyv1.P2PSession_STATE_CLOSED {
		relay.Detach(c, reply.GetSessionId())
		return reply, nil
	}
	subscribed, err := relay.Attach(c, reply.GetSessionId(), reply.GetSide())
	switch {
	case errors.Is(err, p2prelay.ErrClosed):
		return nil, errcode.New(parleyv1.ErrorCode_ERROR_CODE_UNAVAILABLE, "the gateway is shutting down; reconnect and send p2p_update")
	case errors.Is(err, p2prelay.ErrTooMany):
		// Not after CanAttach: requests on a connection run one at a time
		// and nothing else attaches. The session is made; it goes direct
		// or not at all.
		c.log().Warn("direct session not relayed: too many on this connection", "session", reply.GetSessionId())
		return reply, nil
	case err != nil:
		c.log().Error("rendezvous answered a session the gateway cannot relay", "subject", r.subject,
			"session", reply.GetSessionId(), "side", reply.GetSide(), "err", err)
		return nil, errcode.New(parleyv1.ErrorCode_ERROR_CODE_INTERNAL, "internal server error")
	}
	if subscribed {
		// The peer's packets sent after this client reads the reply must
		// find the subscription in place.
		if err := c.h.NC.FlushTimeout(c.h.Limits.RequestTimeout); err != nil {
			c.log().Warn("nats flush after subscribing a session's relay", "session", reply.GetSessionId(), "err", err)
		}
	}
	c.debug("direct session attached", "session", reply.GetSessionId(), "side", reply.GetSide(), "state", reply.GetState().String())
	return reply, nil
}

// requestSessionID is the session a p2p request names; "" for an open (a
// new session).
func requestSessionID(req proto.Message) string {
	if r, ok := req.(interface{ GetSessionId() string }); ok {
		return r.GetSessionId()
	}
	return ""
}

// p2pClose forwards a P2PCloseRequest; once the rendezvous has closed the
// session, or does not know it (NOT_FOUND), it is detached from this
// connection.
func (c *Conn) p2pClose(r *route, rid uint32, req proto.Message, s *session) (proto.Message, error) {
	reply, err := c.forward(r, rid, req, s)
	if c.h.P2P != nil && (err == nil || errcode.Code(err) == parleyv1.ErrorCode_ERROR_CODE_NOT_FOUND) {
		c.h.P2P.Detach(c, req.(*parleyv1.P2PCloseRequest).GetSessionId())
	}
	return reply, err
}

// p2pRelay hands a p2p_relay frame's packet to the relay. It is not a
// request: whatever becomes of the packet, nothing is sent back (the relay
// counts drops). Without a session nothing is attached, so the relay
// drops it.
func (c *Conn) p2pRelay(m *parleyv1.P2PRelay) {
	if c.h.P2P == nil {
		c.h.Metrics.P2PRelayDrops.WithLabelValues(p2prelay.DropDisabled).Inc()
		return
	}
	c.h.P2P.Packet(c, m.GetSessionId(), m.GetPacket())
}

// PushRelay queues a p2p_relay frame from the relay if the send queue has
// room for it now (p2prelay.Conn); see outbox.pushMedia.
func (c *Conn) PushRelay(frame []byte) bool { return c.out.pushMedia(frame) }

// P2PClosed detaches session id from this connection: a P2PEvent{CLOSED}
// for it is being delivered (registry.Conn).
func (c *Conn) P2PClosed(id string) {
	if c.h.P2P != nil {
		c.h.P2P.Detach(c, id)
	}
}

var _ p2prelay.Conn = (*Conn)(nil)
