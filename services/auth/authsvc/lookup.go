package authsvc

import (
	"context"
	"errors"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"

	"github.com/parleychat/parley/libs/proto/internalv1"
	"github.com/parleychat/parley/protocol/errcode"
	"github.com/parleychat/parley/protocol/parleyv1"
	"github.com/parleychat/parley/services/auth/internal/policy"
	"github.com/parleychat/parley/services/auth/internal/store"
)

var errNoSuchUser = errcode.New(parleyv1.ErrorCode_ERROR_CODE_NOT_FOUND, "no such user")

// lookup finds an account by name for other services (messaging resolves
// "send to @bob" with it). Names match case-insensitively, exactly as at
// login. Only services reach this subject, and clients learn no more from it
// than registration already tells them (whether a name is taken).
func (s *Service) lookup(ctx context.Context, m *nats.Msg) (proto.Message, error) {
	var req internalv1.UserLookupRequest
	if err := proto.Unmarshal(m.Data, &req); err != nil {
		return nil, errMalformed
	}
	if req.Username == "" {
		return nil, errcode.New(parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "username is required")
	}
	acct, _, err := s.store.Account(ctx, policy.Canonical(req.Username))
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, errNoSuchUser
	case err != nil:
		return nil, err
	}
	return &internalv1.UserLookupReply{UserId: acct.UserID, Username: acct.Username}, nil
}
