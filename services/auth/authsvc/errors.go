package authsvc

import (
	"github.com/parleychat/parley/protocol/errcode"
	"github.com/parleychat/parley/protocol/parleyv1"
)

// Wire errors the service answers with. Messages are shown to end users.
var (
	errMalformed = errcode.New(parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "malformed request")
	errTaken     = errcode.New(parleyv1.ErrorCode_ERROR_CODE_USERNAME_TAKEN, "that username is taken")
	// One error for unknown user and wrong password, so a login attempt
	// does not tell whether an account exists.
	errBadCredentials = errcode.New(parleyv1.ErrorCode_ERROR_CODE_BAD_CREDENTIALS, "wrong username or password")
	errTokenInvalid   = errcode.New(parleyv1.ErrorCode_ERROR_CODE_TOKEN_INVALID, "the session token is not valid; log in again")
	errTokenExpired   = errcode.New(parleyv1.ErrorCode_ERROR_CODE_TOKEN_EXPIRED, "the session token has expired; log in again")
	// A token of the session that a resume has since replaced (after the
	// grace, see refreshSession).
	errReplaced     = errcode.New(parleyv1.ErrorCode_ERROR_CODE_TOKEN_INVALID, "the session token was replaced by a newer one; log in again")
	errRevoked      = errcode.New(parleyv1.ErrorCode_ERROR_CODE_SESSION_REVOKED, "the session has ended (logged out or replaced); log in again")
	errAlreadyIn    = errcode.New(parleyv1.ErrorCode_ERROR_CODE_ALREADY_LOGGED_IN, "this account is already logged in on another device")
	errPresenceDown = errcode.New(parleyv1.ErrorCode_ERROR_CODE_UNAVAILABLE, "cannot check for other sessions right now; try again")
	errNotMine      = errcode.New(parleyv1.ErrorCode_ERROR_CODE_PERMISSION_DENIED, "session belongs to another user")
)
