package conn

import (
	"errors"

	"google.golang.org/protobuf/proto"

	"github.com/parleychat/parley/gateway/internal/callmedia"
	"github.com/parleychat/parley/protocol/errcode"
	"github.com/parleychat/parley/protocol/parleyv1"
)

// Calls (docs/protocol.md §19). The signalling requests go to the
// media-relay like any forwarded request; place_call and join_call also
// make this gateway serve the participant's media (joinCall), leave_call
// stops it (leaveCall). Media frames from the client go to the media
// plane (media), never answered.

// joinCall forwards a PlaceCallRequest or JoinCallRequest. On the relay's
// CallJoined it installs the participant's stream (stream id, key, call,
// this connection) in the media plane, replacing any stream this
// connection had (one call per user), subscribes to the call's media if
// it is this gateway's first participant of it, and fills udp_addr: where
// this client sends its packets ("" without a media port: media frames).
func (c *Conn) joinCall(r *route, _ uint32, req proto.Message, s *session) (proto.Message, error) {
	reply := new(parleyv1.CallJoined)
	if err := c.sessionRequest(r.subject, s, req, reply, r.tooLargeCode()); err != nil {
		return nil, err
	}
	reply.UdpAddr = ""
	if c.h.Media == nil {
		return reply, nil
	}
	newCall, err := c.h.Media.Install(c, reply.GetCall().GetCallId(), reply.GetStreamId(), reply.GetMediaKey())
	switch {
	case errors.Is(err, callmedia.ErrClosed):
		return nil, errcode.New(parleyv1.ErrorCode_ERROR_CODE_UNAVAILABLE, "the gateway is shutting down; reconnect and join again")
	case err != nil:
		c.log().Error("media-relay answered a call join the gateway cannot serve", "subject", r.subject, "err", err)
		return nil, errcode.New(parleyv1.ErrorCode_ERROR_CODE_INTERNAL, "internal server error")
	}
	if newCall {
		// The owner's audio and roster published after the client reads
		// this reply must find the subscription in place.
		if err := c.h.NC.FlushTimeout(c.h.Limits.RequestTimeout); err != nil {
			c.log().Warn("nats flush after subscribing a call's media", "call", reply.GetCall().GetCallId(), "err", err)
		}
	}
	if c.h.UDPAddr != nil {
		reply.UdpAddr = c.h.UDPAddr(c.t)
	}
	c.debug("call joined", "call", reply.GetCall().GetCallId(), "stream", reply.GetStreamId())
	return reply, nil
}

// leaveCall forwards a LeaveCallRequest; when the relay accepts it, the
// connection's stream in that call stops at once (the owner's Roster would
// drop it a moment later).
func (c *Conn) leaveCall(r *route, rid uint32, req proto.Message, s *session) (proto.Message, error) {
	reply, err := c.forward(r, rid, req, s)
	if err == nil && c.h.Media != nil {
		c.h.Media.Leave(c, req.(*parleyv1.LeaveCallRequest).GetCallId())
	}
	return reply, err
}

// media hands a media frame's packet to the media plane with this
// connection as its return path. It is not a request: whatever becomes of
// the packet, nothing is sent back (the plane counts drops); without a
// session or a media plane it is dropped.
func (c *Conn) media(m *parleyv1.MediaPacket) {
	if c.h.Media == nil || c.session() == nil {
		return
	}
	c.h.Media.Packet(c, m.GetPacket())
}

// PushMedia queues a media frame from the media plane if the send queue
// has room for it now (callmedia.Conn); see outbox.pushMedia.
func (c *Conn) PushMedia(frame []byte) bool { return c.out.pushMedia(frame) }

var _ callmedia.Conn = (*Conn)(nil)
