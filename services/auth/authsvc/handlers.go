package authsvc

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"

	"github.com/parleychat/parley/libs/identity"
	"github.com/parleychat/parley/libs/proto/internalv1"
	"github.com/parleychat/parley/protocol/errcode"
	"github.com/parleychat/parley/protocol/parleyv1"
	"github.com/parleychat/parley/services/auth/internal/familiar"
	"github.com/parleychat/parley/services/auth/internal/policy"
	"github.com/parleychat/parley/services/auth/internal/store"
	"github.com/parleychat/parley/services/auth/internal/token"
)

// register creates an account and starts its first session.
//
// Registration necessarily tells the caller whether a username is taken
// (USERNAME_TAKEN); that is the deliberate choice, since a user must be able
// to pick a free name. Enumeration through it is slowed by the per-IP
// registration limit, and login never reveals existence.
func (s *Service) register(ctx context.Context, m *nats.Msg) (_ proto.Message, err error) {
	defer func() { s.metrics.registrations.WithLabelValues(result(err)).Inc() }()
	var req parleyv1.RegisterRequest
	if err := proto.Unmarshal(m.Data, &req); err != nil {
		return nil, errMalformed
	}
	if req.Username == "" || req.Password == "" {
		return nil, errcode.New(parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "username and password are required")
	}
	req.Password = policy.NormalizePassword(req.Password)
	from := sourceAddr(m)
	if ok, wait := s.registerIP.Take(addressKey(from)); !ok {
		return nil, errcode.RateLimited("registration attempts", wait)
	}
	if err := s.v.policy.CheckUsername(req.Username); err != nil {
		return nil, policyError(err)
	}
	if err := s.v.policy.CheckPassword(req.Username, req.Password); err != nil {
		return nil, policyError(err)
	}
	canonical := policy.Canonical(req.Username)
	// Cheap early answer for a taken name, before spending a hash. The
	// Create below is still what decides a race.
	if _, _, err := s.store.Account(ctx, canonical); err == nil {
		return nil, errTaken
	} else if !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	hash, err := s.hasher.Hash(ctx, req.Password)
	if err != nil {
		return nil, err
	}
	acct := store.Account{UserID: store.NewUserID(), Username: req.Username, PasswordHash: hash, Created: s.now()}
	// The owner is where the account was made: a familiar location.
	acct.Familiar, _ = acct.Familiar.Record(familiar.Prefix(from), acct.Created)
	if err := s.store.CreateAccount(ctx, canonical, acct); errors.Is(err, store.ErrExists) {
		return nil, errTaken
	} else if err != nil {
		return nil, err
	}
	s.log.Info("account registered", "user_id", acct.UserID, "username", acct.Username)
	// A brand-new user has no other sessions, so neither takeover nor
	// reject has anything to do.
	sess, _, err := s.startSession(ctx, acct, req.GetOptions().GetDevice())
	if err != nil {
		return nil, err
	}
	return &internalv1.AuthReply{Session: sess}, nil
}

// login checks a password and starts a session.
func (s *Service) login(ctx context.Context, m *nats.Msg) (_ proto.Message, err error) {
	defer func() { s.metrics.logins.WithLabelValues(result(err)).Inc() }()
	var req parleyv1.LoginRequest
	if err := proto.Unmarshal(m.Data, &req); err != nil {
		return nil, errMalformed
	}
	if req.Username == "" || req.Password == "" {
		return nil, errcode.New(parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "username and password are required")
	}
	req.Password = policy.NormalizePassword(req.Password)
	canonical := policy.Canonical(req.Username)

	// The limiters count failures (protocol §8.2): take a token before
	// trying, give it back on success. Taking first (rather than counting
	// after) also caps concurrent guesses. The per-address limit comes
	// first and needs no read; the per-account one depends on whether the
	// address is a familiar location of the account (see limits.go).
	// Unknown usernames are limited exactly like real accounts from
	// unfamiliar addresses, so the limiter does not reveal existence;
	// absurdly long names are not keyed (they cannot exist) to bound
	// limiter memory.
	from := sourceAddr(m)
	addrKey := addressKey(from)
	if ok, wait := s.loginIP.Take(addrKey); !ok {
		return nil, errcode.RateLimited("failed logins from your address", wait)
	}
	acct, rev, err := s.store.Account(ctx, canonical)
	exists := err == nil
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		s.loginIP.Refund(addrKey) // our failure, not theirs
		return nil, err
	}
	loc := familiar.Prefix(from)
	acctKey := ""
	if len(canonical) <= 64 {
		acctKey = accountKey(canonical, acct.Familiar, loc, s.now())
		if ok, wait := s.loginAccount.Take(acctKey); !ok {
			s.loginIP.Refund(addrKey)
			return nil, errcode.RateLimited("failed logins for this account", wait)
		}
	}
	refund := func() {
		s.loginIP.Refund(addrKey)
		if acctKey != "" {
			s.loginAccount.Refund(acctKey)
		}
	}

	if !exists {
		// Spend the same work as a real verification so response time does
		// not reveal whether the account exists.
		if _, err := s.hasher.Verify(ctx, s.dummyHash, req.Password); err != nil {
			return nil, err
		}
		return nil, errBadCredentials
	}
	ok, err := s.hasher.Verify(ctx, acct.PasswordHash, req.Password)
	if err != nil {
		refund()
		return nil, err
	}
	if !ok {
		s.log.Info("login failed", "user_id", acct.UserID, "source", addrKey, "familiar", acctKey != canonical)
		return nil, errBadCredentials
	}
	refund()
	s.rememberLogin(ctx, canonical, acct, rev, req.Password, loc)
	if s.cfg.SessionPolicy == PolicyReject {
		if err := s.checkNotOnline(ctx, acct.UserID, ""); err != nil {
			return nil, err
		}
	}
	sess, rev, err := s.startSession(ctx, acct, req.GetOptions().GetDevice())
	if err != nil {
		return nil, err
	}
	if s.cfg.SessionPolicy == PolicyTakeover {
		s.takeOver(ctx, acct.UserID, sess.SessionId, rev)
	}
	return &internalv1.AuthReply{Session: sess}, nil
}

// rememberLogin updates the account after a successful login: the
// location joins (or refreshes) its familiar list, and the password is
// re-hashed with the configured parameters when the stored hash was made
// with others (the parameters were changed). Nothing is written when
// neither applies, so most logins cost no account write. It is best
// effort: a failure leaves the account as it was (a still valid hash, the
// location unfamiliar until the next login) and is logged. A concurrent
// update (another login) is re-read and applied on top, a few times.
func (s *Service) rememberLogin(ctx context.Context, canonical string, acct store.Account, rev uint64, pw, loc string) {
	uid, verified := acct.UserID, acct.PasswordHash
	var rehash string
	if s.hasher.NeedsRehash(verified) {
		h, err := s.hasher.Hash(ctx, pw)
		if err != nil {
			s.log.Warn("password rehash failed", "user_id", uid, "err", err)
		}
		rehash = h
	}
	for range 3 {
		list, changed := acct.Familiar.Record(loc, s.now())
		acct.Familiar = list
		// Only over the hash that was verified: never undo a newer one.
		upgrade := rehash != "" && acct.PasswordHash == verified
		if upgrade {
			acct.PasswordHash = rehash
		}
		if !changed && !upgrade {
			return
		}
		err := s.store.UpdateAccount(ctx, canonical, acct, rev)
		if err == nil {
			if upgrade {
				s.log.Info("password hash upgraded to current parameters", "user_id", uid)
			}
			return
		}
		if !errors.Is(err, store.ErrConflict) {
			s.log.Warn("account update after login failed", "user_id", uid, "err", err)
			return
		}
		if acct, rev, err = s.store.Account(ctx, canonical); err != nil {
			s.log.Warn("account update after login failed", "user_id", uid, "err", err)
			return
		}
	}
	s.log.Warn("account update after login kept conflicting", "user_id", uid)
}

// resume continues a session from its token with a fresh token.
//
// Under the takeover and reject policies a session lives on one connection:
// the resume also ends the session's other connections (LOGGED_IN_ELSEWHERE,
// sparing the resuming one), and under takeover the user's other sessions.
// Under multi several connections may share a session (the CLI's one-shot
// commands resume the session the TUI saved, alongside it) and nothing is
// ended.
func (s *Service) resume(ctx context.Context, m *nats.Msg) (_ proto.Message, err error) {
	defer func() { s.metrics.resumes.WithLabelValues(result(err)).Inc() }()
	var req parleyv1.ResumeRequest
	if err := proto.Unmarshal(m.Data, &req); err != nil {
		return nil, errMalformed
	}
	claims, err := s.claims(req.Token)
	if err != nil {
		return nil, err
	}
	sess, rev, err := s.refreshSession(ctx, claims)
	if err != nil {
		return nil, err
	}
	if s.cfg.SessionPolicy != PolicyMulti {
		s.endOtherConnections(sess, identity.ReadOrigin(m.Header))
	}
	if s.cfg.SessionPolicy == PolicyTakeover {
		s.takeOver(ctx, sess.UserId, sess.SessionId, rev)
	}
	return &internalv1.AuthReply{Session: sess}, nil
}

// endOtherConnections kicks the connections of sess other than the one
// resuming it. Without the connection's name (a gateway that predates
// subject.HeaderConnID) it kicks nothing: the kick could end the resuming
// connection itself, should it be registered by the time the kick arrives.
// A failure is logged, not returned: the resume itself succeeded.
func (s *Service) endOtherConnections(sess *parleyv1.Session, from identity.Origin) {
	if !from.NamesConn() {
		s.log.Warn("resume without the gateway's connection id: the session's other connections are not ended",
			"user_id", sess.UserId, "session_id", sess.SessionId)
		return
	}
	if err := s.kick(sess.UserId, sess.SessionId, parleyv1.ErrorCode_ERROR_CODE_LOGGED_IN_ELSEWHERE, kickResumed, from); err != nil {
		s.log.Error("resume: cannot publish kick", "session_id", sess.SessionId, "err", err)
	}
}

// claims checks a session token's signature and expiry (no I/O) and
// returns what it says: INVALID_ARGUMENT when empty, TOKEN_EXPIRED past its
// expiry, TOKEN_INVALID for anything else (bad signature, malformed).
func (s *Service) claims(tok string) (token.Claims, error) {
	if tok == "" {
		return token.Claims{}, errcode.New(parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "token is required")
	}
	c, err := s.signer.Verify(tok)
	switch {
	case errors.Is(err, token.ErrExpired):
		return token.Claims{}, errTokenExpired
	case err != nil:
		return token.Claims{}, errTokenInvalid
	}
	return c, nil
}

// logout ends the session the gateway authenticated this connection with,
// everywhere: the record is deleted (its tokens stop working on every
// replica), then every other connection of the session, on any gateway, is
// ended with SessionEnded{SESSION_REVOKED}. The connection that logged out
// is spared (the gateway names it in subject.HeaderGatewayID and
// subject.HeaderConnID): it stays open, unauthenticated (protocol §8.5).
// Logging out an already ended session succeeds and still kicks, so
// retries are harmless and no connection outlives a lost kick for long.
func (s *Service) logout(ctx context.Context, m *nats.Msg) (proto.Message, error) {
	who, err := identity.ReadSession(m.Header)
	if err != nil {
		return nil, errcode.New(parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "logout needs the user and session headers")
	}
	uid, sid := who.UserID, who.SessionID
	sess, _, err := s.store.Session(ctx, sid)
	switch {
	case errors.Is(err, store.ErrNotFound):
		// Already ended (or aged out); a connection may still hold it.
	case err != nil:
		return nil, err
	case sess.UserID != uid:
		return nil, errNotMine
	default:
		if err := s.store.DeleteSession(ctx, uid, sid); err != nil {
			return nil, err
		}
		s.log.Info("logged out", "user_id", uid, "session_id", sid)
	}
	// The kick goes to uid's subject and names sid: it can only end that
	// user's connections of that session.
	if err := s.kick(uid, sid, parleyv1.ErrorCode_ERROR_CODE_SESSION_REVOKED, kickLoggedOut, identity.ReadOrigin(m.Header)); err != nil {
		return nil, fmt.Errorf("logout: publish kick: %w", err)
	}
	return nil, nil
}

// policyError turns a policy violation into its wire error; the message
// states the rule.
func policyError(err error) error {
	var v *policy.Violation
	if !errors.As(err, &v) {
		return err
	}
	code := parleyv1.ErrorCode_ERROR_CODE_WEAK_PASSWORD
	if errors.Is(err, policy.ErrInvalidUsername) {
		code = parleyv1.ErrorCode_ERROR_CODE_INVALID_USERNAME
	}
	return errcode.New(code, v.Msg)
}
