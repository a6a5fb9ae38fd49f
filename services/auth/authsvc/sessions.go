package authsvc

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/parleychat/parley/libs/identity"
	"github.com/parleychat/parley/libs/proto/internalv1"
	"github.com/parleychat/parley/libs/rpc"
	"github.com/parleychat/parley/libs/subject"
	"github.com/parleychat/parley/protocol/parleyv1"
	"github.com/parleychat/parley/services/auth/internal/store"
	"github.com/parleychat/parley/services/auth/internal/token"
)

// startSession creates a session for acct and returns it with a token and
// its takeover order.
func (s *Service) startSession(ctx context.Context, acct store.Account, device string) (*parleyv1.Session, uint64, error) {
	now := s.now()
	rec := store.Session{
		SessionID: store.NewSessionID(),
		UserID:    acct.UserID,
		Username:  acct.Username,
		Device:    truncate(device, 64),
		Created:   now,
		Active:    now,
		Expires:   now.Add(s.cfg.TokenTTL),
		Gen:       1,
	}
	rev, err := s.store.CreateSession(ctx, rec)
	if err != nil {
		return nil, 0, err
	}
	sess, err := s.issue(rec, false)
	return sess, rev, err
}

// refreshSession checks that the token's session still exists and that
// the token is its current one (or the previous one, within the grace),
// applies the reject policy, and extends the session with a fresh expiry.
// It returns the new token and the session's new takeover order.
//
// Rotation: resuming with the current token (generation n) issues
// generation n+1 and keeps accepting n for cfg.TokenGrace, so a client
// whose reply was lost can resume again with the token it still holds.
// Resuming with that previous token within the grace issues generation
// n+1 again and does not extend the grace: whoever holds n gets the
// current generation, and after the grace only tokens of n+1 or later
// resume. A retired token is refused (errReplaced) and ends nothing; the
// session's holder of the newest token carries on.
func (s *Service) refreshSession(ctx context.Context, c token.Claims) (*parleyv1.Session, uint64, error) {
	// A conflict means another resume of the same session wrote first
	// (the same token used twice at once); re-read and try again.
	for range 3 {
		rec, rev, err := s.liveSession(ctx, c)
		if err != nil {
			return nil, 0, err
		}
		if s.cfg.SessionPolicy == PolicyReject {
			// The same session coming back (reconnect) is allowed; other
			// live sessions are not.
			if err := s.checkNotOnline(ctx, rec.UserID, rec.SessionID); err != nil {
				return nil, 0, err
			}
		}
		now := s.now()
		rec.Active, rec.Expires = now, now.Add(s.cfg.TokenTTL)
		if c.Gen == rec.Gen { // the current token: rotate
			rec.Gen++
			rec.PrevUntil = now.Add(s.cfg.TokenGrace)
		}
		newRev, err := s.store.RefreshSession(ctx, rec, rev)
		switch {
		case err == nil:
			sess, err := s.issue(rec, true)
			return sess, newRev, err
		case errors.Is(err, store.ErrNotFound):
			return nil, 0, errRevoked // logged out or taken over meanwhile
		case !errors.Is(err, store.ErrConflict):
			return nil, 0, err
		}
	}
	return nil, 0, errors.New("session refresh kept conflicting")
}

// liveSession reads the session a token names and checks that it still
// belongs to the token's user, SESSION_REVOKED once it was deleted (logged
// out, taken over, or aged out of the bucket), and that the token has not
// been replaced (current reports which). One KV read; it changes nothing.
func (s *Service) liveSession(ctx context.Context, c token.Claims) (store.Session, uint64, error) {
	rec, rev, err := s.store.Session(ctx, c.SessionID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return store.Session{}, 0, errRevoked
	case err != nil:
		return store.Session{}, 0, fmt.Errorf("read session %s: %w", c.SessionID, err)
	case rec.UserID != c.UserID:
		return store.Session{}, 0, errTokenInvalid // cannot happen without the signing key
	}
	if !current(rec, c.Gen, s.now()) {
		// A stale copy (another client of the session resumed since) or a
		// stolen token: worth a line for the operator either way.
		s.log.Info("replaced token refused", "user_id", rec.UserID, "session_id", rec.SessionID,
			"token_gen", c.Gen, "session_gen", rec.Gen)
		return store.Session{}, 0, errReplaced
	}
	return rec, rev, nil
}

// current reports whether a token of generation gen may still be presented
// for rec at now: the newest generation, or the one before it until
// rec.PrevUntil.
func current(rec store.Session, gen uint64, now time.Time) bool {
	return gen == rec.Gen || gen+1 == rec.Gen && now.Before(rec.PrevUntil)
}

func (s *Service) issue(rec store.Session, resumed bool) (*parleyv1.Session, error) {
	tok, err := s.signer.Sign(token.Claims{
		SessionID: rec.SessionID, UserID: rec.UserID, Username: rec.Username, Gen: rec.Gen,
		IssuedAt: rec.Active, ExpiresAt: rec.Expires,
	})
	if err != nil {
		return nil, err
	}
	return &parleyv1.Session{
		UserId: rec.UserID, Username: rec.Username, SessionId: rec.SessionID,
		Token: tok, ExpiresAtUnixMs: rec.Expires.UnixMilli(), Resumed: resumed,
	}, nil
}

// takeOver ends the user's sessions that were started or resumed before
// the session keepSID (whose index entry has revision keepOrder), and tells
// gateways to close their connections.
//
// "Before" is the KV revision order of the index entries (see
// store.SessionRef), not replica clocks: of two devices logging in at the
// same moment, the later one is sure to see and end the earlier one, and
// the earlier one never ends the later one, so they cannot both survive.
// Failures are logged and do not fail the login that triggered them: the
// new session is valid, and a leftover old session is only what policy
// multi would allow anyway.
func (s *Service) takeOver(ctx context.Context, userID, keepSID string, keepOrder uint64) {
	refs, err := s.store.UserSessions(ctx, userID)
	if err != nil {
		s.log.Error("takeover: cannot list sessions", "user_id", userID, "err", err)
		return
	}
	// A newer login may already have ended this session (a resume racing
	// a login); then it has no business ending others.
	if _, _, err := s.store.Session(ctx, keepSID); err != nil {
		return
	}
	for _, ref := range refs {
		if ref.SessionID == keepSID || ref.Order > keepOrder {
			continue // ourselves, or a newer login that will end us
		}
		if err := s.store.DeleteSession(ctx, userID, ref.SessionID); err != nil {
			s.log.Error("takeover: cannot delete session", "session_id", ref.SessionID, "err", err)
			continue
		}
		// Kick even if the record was already gone: a gateway may still
		// hold a connection authenticated with it.
		if err := s.kick(userID, ref.SessionID, parleyv1.ErrorCode_ERROR_CODE_LOGGED_IN_ELSEWHERE, kickTakenOver, identity.Origin{}); err != nil {
			s.log.Error("takeover: cannot publish kick", "session_id", ref.SessionID, "err", err)
			continue
		}
		s.log.Info("session taken over", "user_id", userID, "old_session_id", ref.SessionID, "new_session_id", keepSID)
	}
}

// checkNotOnline asks presence whether the user has live sessions other
// than ownSID (empty for a login). It fails closed: if presence does not
// answer, the login is refused with UNAVAILABLE rather than let a second
// session in against the policy.
func (s *Service) checkNotOnline(ctx context.Context, userID, ownSID string) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.PresenceTimeout)
	defer cancel()
	var reply internalv1.UserPresenceReply
	if err := rpc.Request(ctx, s.nc, subject.PresenceUser, nil, &internalv1.UserPresenceRequest{UserId: userID}, &reply); err != nil {
		// The client sees errPresenceDown; the log (the Runner's, at
		// warn) sees presence's failure.
		return fmt.Errorf("session policy reject: %w: %w", errPresenceDown, err)
	}
	for _, sid := range reply.SessionIds {
		if sid != ownSID {
			return errAlreadyIn
		}
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	// Back off to a rune boundary.
	for n > 0 && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n]
}
