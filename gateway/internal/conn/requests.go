package conn

import (
	"context"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"

	"github.com/parleychat/parley/libs/identity"
	"github.com/parleychat/parley/libs/proto/internalv1"
	"github.com/parleychat/parley/libs/subject"
	"github.com/parleychat/parley/protocol/errcode"
	"github.com/parleychat/parley/protocol/parleyv1"
)

// dispatch handles a frame after the handshake (docs/protocol.md §5-§6):
//
//   - Ping: Pong with the same nonce and request_id, at any time.
//   - Pong: ignored (a client may answer a server Ping; it resets the idle
//     timer like any frame).
//   - Media (a sealed voice packet, §19.4): to the media plane (calls.go),
//     never answered, whatever its request_id or fate.
//   - P2PRelay (a direct session's packet, §20.4): to the relay (p2p.go),
//     never answered, whatever its request_id or fate.
//   - Hello again: Error HANDSHAKE_REQUIRED (non-fatal).
//   - A request (routes, routes.go): request_id must be non-zero (else
//     INVALID_ARGUMENT). Register, Login and Resume need no session
//     (ALREADY_AUTHENTICATED if there is one); the others need one
//     (UNAUTHENTICATED). It goes to its subject; the client gets its reply
//     body, or an Error with the service's code, message and
//     retry_after_ms (no responders: UNAVAILABLE; no answer within
//     -request-timeout: TIMEOUT).
//   - Any other body (one only the server sends: Welcome, Error, Session,
//     Ok, WhoReply, ..., MessageEvent): UNKNOWN_REQUEST.
//
// Requests on one connection are handled one at a time, in order (a slow
// one, a long history read say, delays the next; replies never overtake).
// A request still running when the connection ends (the client went, or
// the gateway closes it) is abandoned: its context is the connection's
// (ctx), and nothing is sent for it.
func (c *Conn) dispatch(f *parleyv1.Frame) {
	rid := f.GetRequestId()
	switch b := f.GetBody().(type) {
	case *parleyv1.Frame_Ping:
		c.send(&parleyv1.Frame{RequestId: rid, Body: &parleyv1.Frame_Pong{Pong: &parleyv1.Pong{Nonce: b.Ping.GetNonce()}}})
		return
	case *parleyv1.Frame_Pong:
		return
	case *parleyv1.Frame_Hello:
		c.sendError(rid, parleyv1.ErrorCode_ERROR_CODE_HANDSHAKE_REQUIRED, "Hello was already received on this connection")
		return
	case *parleyv1.Frame_Media:
		c.media(b.Media)
		return
	case *parleyv1.Frame_P2PRelay:
		c.p2pRelay(b.P2PRelay)
		return
	}
	m := f.ProtoReflect()
	fd := m.WhichOneof(bodyOneof) // never nil: wire.Decode refuses a frame without a body
	var r *route
	if fd != nil {
		r = routeOf[fd.Name()]
	}
	if r == nil {
		c.sendError(rid, parleyv1.ErrorCode_ERROR_CODE_UNKNOWN_REQUEST, bodyName(f)+" is not a request")
		return
	}
	if rid == 0 {
		c.sendError(0, parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "request_id must be non-zero on a request")
		return
	}
	s := c.session()
	switch {
	case r.access == opensSession && s != nil:
		c.sendError(rid, parleyv1.ErrorCode_ERROR_CODE_ALREADY_AUTHENTICATED, "this connection already has a session; log out first")
		return
	case r.access == needsSession && s == nil:
		c.sendError(rid, parleyv1.ErrorCode_ERROR_CODE_UNAUTHENTICATED, "log in or resume first")
		return
	}
	start := time.Now()
	c.h.Metrics.RequestsInFlight.Inc()
	defer func() {
		c.h.Metrics.RequestsInFlight.Dec()
		c.h.Metrics.RequestDuration.WithLabelValues(string(r.request)).Observe(time.Since(start).Seconds())
	}()
	handle := r.handle
	if handle == nil {
		handle = (*Conn).forward
	}
	req := m.Get(fd).Message().Interface()
	if k, ok := req.(interface{ GetClientKey() string }); r.ownEvent && ok && k.GetClientKey() != "" {
		c.out.hold(k.GetClientKey())
		defer c.out.release() // after the reply is queued below
	}
	reply, err := handle(c, r, rid, req, s)
	switch {
	case c.ctx.Err() != nil:
		c.debug("request abandoned: the connection ended", "request", r.request, "request_id", rid)
	case err != nil:
		c.sendErr(rid, err)
	case reply == nil:
		// answered by handle
	case r.large:
		c.sendWait(r.frame(rid, reply))
	default:
		c.send(r.frame(rid, reply))
	}
}

// bodyOneof is the Frame's body oneof.
var bodyOneof = new(parleyv1.Frame).ProtoReflect().Descriptor().Oneofs().ByName("body")

// forward sends req to r's subject on behalf of the session s and returns
// the service's reply (routes says what travels). An Ok reply carries
// nothing: whatever body the service sent is not passed on.
func (c *Conn) forward(r *route, _ uint32, req proto.Message, s *session) (proto.Message, error) {
	reply := r.newReply()
	into := reply
	if r.reply == "ok" {
		into = nil
	}
	if err := c.sessionRequest(r.subject, s, req, into, r.tooLargeCode()); err != nil {
		return nil, err
	}
	return reply, nil
}

// request is one request to a service on behalf of this connection: it
// ends with the connection (ctx) and after -request-timeout.
func (c *Conn) request(subj string, hdr nats.Header, req, reply proto.Message, tooLarge parleyv1.ErrorCode) error {
	ctx, cancel := context.WithTimeout(c.ctx, c.h.Limits.RequestTimeout)
	defer cancel()
	return c.busRequest(ctx, subj, hdr, req, reply, tooLarge)
}

// sessionRequest is request on behalf of session s, with its identity
// headers (identity), whose size is known.
func (c *Conn) sessionRequest(subj string, s *session, req, reply proto.Message, tooLarge parleyv1.ErrorCode) error {
	ctx, cancel := context.WithTimeout(c.ctx, c.h.Limits.RequestTimeout)
	defer cancel()
	return c.busRequestSized(ctx, subj, s.hdr, s.hdrSize, req, reply, tooLarge)
}

// authenticate forwards a Register, Login or Resume request, unchanged, to
// the auth service with the client's address, this gateway's id and this
// connection's id in headers (a SessionKick that auth publishes for a
// takeover names the connection that asked, so it is spared). On success
// the session starts (startSession), which sends the Session reply.
func (c *Conn) authenticate(r *route, rid uint32, req proto.Message, _ *session) (proto.Message, error) {
	hdr := nats.Header{}
	c.origin().Set(hdr)
	reply := new(internalv1.AuthReply)
	if err := c.request(r.subject, hdr, req, reply, r.tooLargeCode()); err != nil {
		return nil, err
	}
	s := reply.GetSession()
	if s.GetUserId() == "" || s.GetSessionId() == "" {
		c.log().Error("auth reply without a session", "subject", r.subject)
		return nil, errcode.New(parleyv1.ErrorCode_ERROR_CODE_INTERNAL, "internal server error")
	}
	if c.ctx.Err() != nil {
		return nil, nil // the client has gone: no session to start
	}
	opts := req.(sessionRequest).GetOptions()
	c.startSession(rid, s, opts)
	return nil, nil
}

// sessionRequest is a request that opens a session (RegisterRequest,
// LoginRequest, ResumeRequest): it carries the client's options.
type sessionRequest interface {
	GetOptions() *parleyv1.ClientOptions
}

// startSession makes the connection authenticated, in this order:
//
//  1. PresenceConnect registers it with presence. If presence does not
//     answer the login still succeeds: the next heartbeat sees the count
//     differ and the resync repairs presence's view.
//  2. The registry subscribes to the user's subjects (once per user on this
//     gateway), so a SessionKick for this session can reach it.
//  3. The session is set on the connection and the Session reply queued in
//     one step under the send queue's lock: message events (Deliver) and the
//     messaging requests look at the session, so no MessageEvent is queued
//     before the Session reply, and none published after the client read
//     its Session is missed (the reply could reach the client before the
//     session was set, when these were two steps).
//  4. Unless options.skip_presence_feed, the PresenceSnapshot frames, then
//     PresenceChange events (see presence.Feed.Join for the ordering). The
//     snapshot is read for this connection: it stops when the connection
//     ends (ctx).
func (c *Conn) startSession(rid uint32, s *parleyv1.Session, opts *parleyv1.ClientOptions) {
	rec := &internalv1.Conn{
		GatewayId: c.h.GatewayID,
		ConnId:    c.id,
		UserId:    s.GetUserId(),
		Username:  s.GetUsername(),
		SessionId: s.GetSessionId(),
	}
	if err := c.request(subject.PresenceConnect, nil, &internalv1.PresenceConnect{Conn: rec}, nil,
		parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT); err != nil && c.ctx.Err() == nil {
		c.log().Warn("presence connect failed; the heartbeat resync will repair it", "user", rec.UserId, "err", err)
	}
	if c.h.Registry.Authenticate(c, rec) {
		// A takeover kick or a direct message published right after the
		// client sees its Session must find the subscription in place.
		if err := c.h.NC.FlushTimeout(c.h.Limits.RequestTimeout); err != nil {
			c.log().Warn("nats flush after subscribing user subjects", "user", rec.UserId, "err", err)
		}
	}
	sess := &session{rec: rec, feed: !opts.GetSkipPresenceFeed()}
	sess.hdr = c.identity(rec)
	sess.hdrSize = headerSize(sess.hdr)
	c.log().Info("session started", "user", rec.UserId, "username", rec.Username, "session", rec.SessionId,
		"device", opts.GetDevice(), "resumed", s.GetResumed())
	c.out.pushFrameAfter(&parleyv1.Frame{RequestId: rid, Body: &parleyv1.Frame_Session{Session: s}},
		func() { c.setSession(sess) })
	c.sessionChanged(true)
	if sess.feed {
		c.h.Feed.Join(c.ctx, c)
	}
}

// logout ends the session: the auth service revokes it (identity from this
// connection's session in the headers, see identity; never from the
// client), then presence forgets the connection and Ok is sent. The
// connection stays open, unauthenticated. Auth publishes a SessionKick
// for the session naming this connection (HeaderConnID): every other
// connection holding it, on any gateway, gets SessionEnded and closes. If
// auth fails, the error is sent and the session continues.
func (c *Conn) logout(r *route, _ uint32, _ proto.Message, s *session) (proto.Message, error) {
	// A fresh, empty body: nothing the client put in its frame travels on.
	if err := c.sessionRequest(r.subject, s, &parleyv1.LogoutRequest{}, nil, r.tooLargeCode()); err != nil {
		return nil, err
	}
	c.h.Feed.Leave(c)
	// Room events queued for the session are dropped with it: none may
	// follow the Ok.
	c.out.endEvents(func() { c.setSession(nil) })
	c.sessionChanged(false)
	if c.h.Media != nil {
		c.h.Media.Drop(c)
	}
	if c.h.P2P != nil {
		c.h.P2P.DropConn(c)
	}
	if rec := c.h.Registry.Deauthenticate(c); rec != nil {
		c.presenceDisconnect(rec)
	}
	c.log().Info("logged out", "user", s.rec.GetUserId(), "session", s.rec.GetSessionId())
	return &parleyv1.Ok{}, nil
}

// who answers a WhoRequest with one page of presence's online list: the
// client's cursor and limit go to presence as they are (presence applies
// the default and the maximum), the reply carries presence's next cursor.
func (c *Conn) who(r *route, _ uint32, req proto.Message, _ *session) (proto.Message, error) {
	w := req.(*parleyv1.WhoRequest)
	// The cursor is the only field of any size: check it fits the bus.
	if err := c.checkBusSize(r.subject, 0, &internalv1.PresenceListRequest{Cursor: w.GetCursor(), Limit: w.GetLimit()},
		r.tooLargeCode()); err != nil {
		return nil, err
	}
	list, err := c.h.Feed.List(c.ctx, w.GetCursor(), w.GetLimit())
	if err != nil {
		return nil, err
	}
	return &parleyv1.WhoReply{Users: list.GetUsers(), NextCursor: list.GetNextCursor()}, nil
}

// identity is the headers that tell a service who asks (libs/identity):
// the session's user, session and display name, the client's address, this
// gateway and this connection. They are built when the session starts
// (startSession), from the session auth returned; nothing from the client's
// frame becomes a header, so no request body can claim another identity.
// The session's requests share the map: read only.
func (c *Conn) identity(rec *internalv1.Conn) nats.Header {
	return identity.Header(identity.Caller{UserID: rec.GetUserId(), SessionID: rec.GetSessionId(), Username: rec.GetUsername()},
		c.origin())
}

// origin is where this connection's requests come from: the client's
// address, this gateway and this connection.
func (c *Conn) origin() identity.Origin {
	return identity.Origin{RemoteAddr: c.remote, GatewayID: c.h.GatewayID, ConnID: c.id}
}

// bodyName is the frame body's field name in the schema ("login"), for
// metrics and messages.
func bodyName(f *parleyv1.Frame) string {
	if f == nil || f.GetBody() == nil {
		return "none"
	}
	fd := f.ProtoReflect().WhichOneof(bodyOneof)
	if fd == nil {
		return "none"
	}
	return string(fd.Name())
}
