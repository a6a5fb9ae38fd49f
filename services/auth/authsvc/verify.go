package authsvc

import (
	"context"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"

	"github.com/parleychat/parley/libs/proto/internalv1"
	"github.com/parleychat/parley/protocol/parleyv1"
)

// verify answers subject.AuthVerify: is this session token good right now?
// The gateway asks it for every HTTP file request, so it is cheap: the
// signature and expiry are checked locally, then one KV read confirms the
// session still exists (as for resume: not logged out, not taken over).
//
// It only reads. It never issues or refreshes a token and never extends
// the session, and it does not apply the reject policy (the session is
// already live; verifying it starts nothing). The reply is an AuthReply
// whose Session has the user id, username and session id, an EMPTY token,
// and expires_at_unix_ms of the token verified (not of the session, which
// a resume may have extended since).
//
// It accepts exactly the tokens resume accepts: the session's newest
// token, or the one before it within the grace after a rotation (see
// refreshSession). Errors are those of resume: INVALID_ARGUMENT for an
// empty token or a malformed body, TOKEN_EXPIRED, TOKEN_INVALID (bad
// signature, not a token, or replaced by a newer token), SESSION_REVOKED
// (logged out or taken over).
func (s *Service) verify(ctx context.Context, m *nats.Msg) (_ proto.Message, err error) {
	defer func() { s.metrics.verifies.WithLabelValues(result(err)).Inc() }()
	var req internalv1.TokenVerifyRequest
	if err := proto.Unmarshal(m.Data, &req); err != nil {
		return nil, errMalformed
	}
	claims, err := s.claims(req.Token)
	if err != nil {
		return nil, err
	}
	rec, _, err := s.liveSession(ctx, claims)
	if err != nil {
		return nil, err
	}
	return &internalv1.AuthReply{Session: &parleyv1.Session{
		UserId:          rec.UserID,
		Username:        rec.Username,
		SessionId:       rec.SessionID,
		ExpiresAtUnixMs: claims.ExpiresAt.UnixMilli(),
	}}, nil
}
