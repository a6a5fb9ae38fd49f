package authsvc

import (
	"context"
	"errors"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"

	"github.com/parleychat/parley/libs/proto/internalv1"
	"github.com/parleychat/parley/protocol/errcode"
	"github.com/parleychat/parley/protocol/parleyv1"
	"github.com/parleychat/parley/services/auth/internal/store"
)

// sessionCheck answers subject.AuthSessionCheck: does this session still
// exist, and is it this user's? The file service asks it before serving a
// download URL, which is bound to the session that asked for it, so a URL
// stops working when its session ends (logout, takeover, ageing out).
//
// An empty reply means yes. SESSION_REVOKED means no, whether the session
// is gone or belongs to another user (the caller learns nothing about other
// users' sessions); INVALID_ARGUMENT means a field is missing. It is one KV
// read and writes nothing: it neither extends the session nor looks at any
// token (a connection keeps its session after the token it authenticated
// with expires, docs/protocol.md §8.3).
func (s *Service) sessionCheck(ctx context.Context, m *nats.Msg) (proto.Message, error) {
	var req internalv1.SessionCheckRequest
	if err := proto.Unmarshal(m.Data, &req); err != nil {
		return nil, errMalformed
	}
	if req.UserId == "" || req.SessionId == "" {
		return nil, errcode.New(parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "user_id and session_id are required")
	}
	rec, _, err := s.store.Session(ctx, req.SessionId)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, errRevoked
	case err != nil:
		return nil, err
	case rec.UserID != req.UserId:
		return nil, errRevoked
	}
	return nil, nil
}
