package presencesvc

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"

	"github.com/parleychat/parley/libs/proto/internalv1"
	"github.com/parleychat/parley/libs/subject"
	"github.com/parleychat/parley/protocol/errcode"
	"github.com/parleychat/parley/protocol/parleyv1"
	"github.com/parleychat/parley/services/presence/internal/store"
)

// Wire errors presence answers with.
var (
	errStoreDown = errcode.New(parleyv1.ErrorCode_ERROR_CODE_UNAVAILABLE, "presence store unavailable, try again")
)

func invalid(format string, args ...any) error {
	return errcode.Newf(parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, format, args...)
}

func decode(m *nats.Msg, into proto.Message) error {
	if err := proto.Unmarshal(m.Data, into); err != nil {
		return invalid("malformed %s", into.ProtoReflect().Descriptor().Name())
	}
	return nil
}

// storeFailed logs a Redis failure and returns the wire error for it; the
// caller (a gateway) retries or repairs on its next heartbeat.
func (s *Service) storeFailed(op string, err error) error {
	s.log.Warn("presence store", "op", op, "err", err)
	return errStoreDown
}

func toStore(c *internalv1.Conn, gatewayID string) (store.Conn, error) {
	if gatewayID == "" {
		gatewayID = c.GetGatewayId()
	}
	sc := store.Conn{GatewayID: gatewayID, ConnID: c.GetConnId(), UserID: c.GetUserId(),
		Username: c.GetUsername(), SessionID: c.GetSessionId()}
	if sc.GatewayID == "" || sc.ConnID == "" || sc.UserID == "" {
		return sc, invalid("conn needs gateway_id, conn_id and user_id")
	}
	return sc, nil
}

func (s *Service) handleConnect(ctx context.Context, m *nats.Msg) (proto.Message, error) {
	req := new(internalv1.PresenceConnect)
	if err := decode(m, req); err != nil {
		return nil, err
	}
	c, err := toStore(req.GetConn(), "")
	if err != nil {
		return nil, err
	}
	changes, err := s.store.Connect(ctx, c)
	if err != nil {
		return nil, s.storeFailed("connect", err)
	}
	s.publish(changes)
	return nil, nil
}

func (s *Service) handleDisconnect(ctx context.Context, m *nats.Msg) (proto.Message, error) {
	req := new(internalv1.PresenceDisconnect)
	if err := decode(m, req); err != nil {
		return nil, err
	}
	if req.GetGatewayId() == "" || req.GetConnId() == "" {
		return nil, invalid("disconnect needs gateway_id and conn_id")
	}
	changes, err := s.store.Disconnect(ctx, req.GetGatewayId(), req.GetConnId())
	if err != nil {
		return nil, s.storeFailed("disconnect", err)
	}
	s.publish(changes)
	return nil, nil
}

// handleHeartbeat refreshes the gateway's liveness and asks for a resync
// when presence's count of its connections differs from the gateway's. A
// connect or disconnect in flight during the heartbeat can cause one
// needless resync; that is harmless, a resync of a correct view changes
// nothing.
func (s *Service) handleHeartbeat(ctx context.Context, m *nats.Msg) (proto.Message, error) {
	req := new(internalv1.GatewayHeartbeat)
	if err := decode(m, req); err != nil {
		return nil, err
	}
	if req.GetGatewayId() == "" {
		return nil, invalid("heartbeat needs gateway_id")
	}
	n, err := s.store.Heartbeat(ctx, req.GetGatewayId())
	if err != nil {
		return nil, s.storeFailed("heartbeat", err)
	}
	resync := n != int(req.GetConns())
	if resync {
		s.log.Info("gateway view differs, asking for resync", "gateway", req.GetGatewayId(),
			"presence_conns", n, "gateway_conns", req.GetConns())
	}
	return &internalv1.GatewayHeartbeatReply{Resync: resync}, nil
}

func (s *Service) handleResync(ctx context.Context, m *nats.Msg) (proto.Message, error) {
	req := new(internalv1.GatewayResync)
	if err := decode(m, req); err != nil {
		return nil, err
	}
	if req.GetGatewayId() == "" || req.GetResyncId() == "" {
		return nil, invalid("resync needs gateway_id and resync_id")
	}
	r := store.Resync{GatewayID: req.GetGatewayId(), ResyncID: req.GetResyncId(),
		Last: req.GetLast(), Chunks: req.GetChunks(), Conns: make([]store.Conn, 0, len(req.GetConns()))}
	for _, c := range req.GetConns() {
		// Conns of a resync belong to the resyncing gateway whatever they say.
		sc, err := toStore(c, req.GetGatewayId())
		if err != nil {
			return nil, err
		}
		r.Conns = append(r.Conns, sc)
	}
	applied, changes, err := s.store.Resync(ctx, r)
	if err != nil {
		return nil, s.storeFailed("resync", err)
	}
	s.publish(changes)
	if applied {
		s.log.Info("gateway resynced", "gateway", r.GatewayID, "resync_id", r.ResyncID, "changes", len(changes))
	}
	return nil, nil
}

// handleList answers one page of the online list (internalv1.PresenceListRequest;
// an empty body is the first page with the default limit). The callers walk
// the pages themselves: the gateway for a snapshot, a client through Who.
func (s *Service) handleList(ctx context.Context, m *nats.Msg) (proto.Message, error) {
	req := new(internalv1.PresenceListRequest)
	if err := decode(m, req); err != nil {
		return nil, err
	}
	page, err := s.store.List(ctx, req.GetCursor(), int(min(req.GetLimit(), store.MaxListLimit)))
	if errors.Is(err, store.ErrBadCursor) {
		return nil, invalid("malformed list cursor")
	}
	if err != nil {
		return nil, s.storeFailed("list", err)
	}
	reply := &internalv1.PresenceListReply{Seq: page.Seq, NextCursor: page.Next,
		Users: make([]*parleyv1.OnlineUser, 0, len(page.Users))}
	for _, u := range page.Users {
		reply.Users = append(reply.Users, &parleyv1.OnlineUser{UserId: u.UserID, Username: u.Username, Sessions: u.Conns})
	}
	return reply, nil
}

func (s *Service) handleUser(ctx context.Context, m *nats.Msg) (proto.Message, error) {
	req := new(internalv1.UserPresenceRequest)
	if err := decode(m, req); err != nil {
		return nil, err
	}
	if req.GetUserId() == "" {
		return nil, invalid("user presence needs user_id")
	}
	ids, err := s.store.UserSessions(ctx, req.GetUserId())
	if err != nil {
		return nil, s.storeFailed("user", err)
	}
	return &internalv1.UserPresenceReply{SessionIds: ids}, nil
}

// publish sends each change on subject.PresenceEvents, in seq order. The
// changes are already committed in Redis, so a publish failure cannot be
// undone: it is logged, and gateways that missed the event get the right
// list with their clients' next snapshot.
func (s *Service) publish(changes []store.Change) {
	for _, c := range changes {
		ev := &parleyv1.PresenceChange{
			User:   &parleyv1.OnlineUser{UserId: c.UserID, Username: c.Username},
			Online: c.Online,
			Seq:    c.Seq,
		}
		if c.Online {
			ev.User.Sessions = 1 // an online change is always the first connection
		}
		data, err := proto.Marshal(ev)
		if err == nil {
			err = s.nc.Publish(subject.PresenceEvents, data)
		}
		if err != nil {
			s.log.Error("publish presence change", "user", c.UserID, "online", c.Online, "seq", c.Seq,
				"err", fmt.Errorf("presence event: %w", err))
			continue
		}
		s.metrics.events.WithLabelValues(fmt.Sprint(c.Online)).Inc()
	}
}
