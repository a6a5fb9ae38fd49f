package msgsvc

import (
	"context"

	"github.com/parleychat/parley/libs/proto/internalv1"
	"github.com/parleychat/parley/libs/rpc"
	"github.com/parleychat/parley/libs/subject"
	"github.com/parleychat/parley/protocol/convid"
)

// lookup resolves a username for user me at the auth service
// (subject.AuthLookup), case-insensitively as at login. Every name resolved
// costs one unit of me's lookup budget (Config.LookupLimit): an answer says
// whether an account exists, so unlimited lookups would list the users.
// Past the budget it is RATE_LIMITED and auth is not asked. Other errors
// pass through: NOT_FOUND for an unknown user, UNAVAILABLE or TIMEOUT when
// auth does not answer.
func (s *Service) lookup(ctx context.Context, me user, username string) (*internalv1.UserLookupReply, error) {
	if err := s.take(limitLookup, me.id, 1); err != nil {
		return nil, err
	}
	return s.resolveName(ctx, username)
}

// resolveName asks auth for username; the caller has charged the lookup.
func (s *Service) resolveName(ctx context.Context, username string) (*internalv1.UserLookupReply, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.LookupTimeout)
	defer cancel()
	var reply internalv1.UserLookupReply
	if err := rpc.Request(ctx, s.nc, subject.AuthLookup, nil, &internalv1.UserLookupRequest{Username: username}, &reply); err != nil {
		return nil, err
	}
	if !convid.ValidToken(reply.UserId) { // it becomes part of a private chat's id
		return nil, errNoConversation
	}
	return &reply, nil
}
