package msgsvc

import (
	"context"

	"github.com/parleychat/parley/libs/proto/internalv1"
	"github.com/parleychat/parley/libs/rpc"
	"github.com/parleychat/parley/libs/subject"
)

// lookup resolves a username at the auth service (subject.AuthLookup),
// case-insensitively as at login. Its errors pass through: NOT_FOUND for an
// unknown user, UNAVAILABLE or TIMEOUT when auth does not answer.
func (s *Service) lookup(ctx context.Context, username string) (*internalv1.UserLookupReply, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.LookupTimeout)
	defer cancel()
	var reply internalv1.UserLookupReply
	if err := rpc.Request(ctx, s.nc, subject.AuthLookup, nil, &internalv1.UserLookupRequest{Username: username}, &reply); err != nil {
		return nil, err
	}
	if !validUserID(reply.UserId) {
		return nil, errNoConversation
	}
	return &reply, nil
}
