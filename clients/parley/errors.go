package parley

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/parleychat/parley/protocol/parleyv1"
)

// Error is an error reported by the server: a stable wire code
// (docs/protocol.md §7) and a message that is safe to show to a user.
//
// Compare with errors.Is against the exported sentinels:
//
//	if errors.Is(err, parley.ErrBadCredentials) { ... }
//
// Codes this SDK does not know (added by a newer server) match ErrInternal,
// as the protocol asks clients to treat them.
type Error struct {
	Code    parleyv1.ErrorCode
	Message string
	// RetryAfter is how long to wait before retrying; set with RATE_LIMITED.
	RetryAfter time.Duration
}

func (e *Error) Error() string {
	if e.Message == "" {
		return "parley: " + CodeName(e.Code)
	}
	return fmt.Sprintf("parley: %s: %s", CodeName(e.Code), e.Message)
}

// Is reports whether target is an *Error with the same code. An unknown code
// also matches ErrInternal.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	if !ok {
		return false
	}
	if t.Code == e.Code {
		return true
	}
	return t.Code == parleyv1.ErrorCode_ERROR_CODE_INTERNAL && !knownCode(e.Code)
}

// CodeName is a code's name without the ERROR_CODE_ prefix ("USERNAME_TAKEN").
func CodeName(c parleyv1.ErrorCode) string {
	return strings.TrimPrefix(c.String(), "ERROR_CODE_")
}

func knownCode(c parleyv1.ErrorCode) bool {
	_, ok := parleyv1.ErrorCode_name[int32(c)]
	return ok && c != parleyv1.ErrorCode_ERROR_CODE_UNSPECIFIED
}

func sentinel(c parleyv1.ErrorCode) *Error { return &Error{Code: c} }

// Sentinels, one per wire error code, for use with errors.Is. Only the code
// is compared; the message and RetryAfter of the error returned by a call
// carry the details.
var (
	ErrBadFrame             = sentinel(parleyv1.ErrorCode_ERROR_CODE_BAD_FRAME)
	ErrFrameTooLarge        = sentinel(parleyv1.ErrorCode_ERROR_CODE_FRAME_TOO_LARGE)
	ErrInvalidUTF8          = sentinel(parleyv1.ErrorCode_ERROR_CODE_INVALID_UTF8)
	ErrUnsupportedVersion   = sentinel(parleyv1.ErrorCode_ERROR_CODE_UNSUPPORTED_VERSION)
	ErrHandshakeRequired    = sentinel(parleyv1.ErrorCode_ERROR_CODE_HANDSHAKE_REQUIRED)
	ErrUnknownRequest       = sentinel(parleyv1.ErrorCode_ERROR_CODE_UNKNOWN_REQUEST)
	ErrInvalidArgument      = sentinel(parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT)
	ErrDuplicateRequestID   = sentinel(parleyv1.ErrorCode_ERROR_CODE_DUPLICATE_REQUEST_ID)
	ErrUnauthenticated      = sentinel(parleyv1.ErrorCode_ERROR_CODE_UNAUTHENTICATED)
	ErrUsernameTaken        = sentinel(parleyv1.ErrorCode_ERROR_CODE_USERNAME_TAKEN)
	ErrInvalidUsername      = sentinel(parleyv1.ErrorCode_ERROR_CODE_INVALID_USERNAME)
	ErrWeakPassword         = sentinel(parleyv1.ErrorCode_ERROR_CODE_WEAK_PASSWORD)
	ErrBadCredentials       = sentinel(parleyv1.ErrorCode_ERROR_CODE_BAD_CREDENTIALS)
	ErrRateLimited          = sentinel(parleyv1.ErrorCode_ERROR_CODE_RATE_LIMITED)
	ErrTokenExpired         = sentinel(parleyv1.ErrorCode_ERROR_CODE_TOKEN_EXPIRED)
	ErrTokenInvalid         = sentinel(parleyv1.ErrorCode_ERROR_CODE_TOKEN_INVALID)
	ErrSessionRevoked       = sentinel(parleyv1.ErrorCode_ERROR_CODE_SESSION_REVOKED)
	ErrAlreadyLoggedIn      = sentinel(parleyv1.ErrorCode_ERROR_CODE_ALREADY_LOGGED_IN)
	ErrAlreadyAuthenticated = sentinel(parleyv1.ErrorCode_ERROR_CODE_ALREADY_AUTHENTICATED)
	ErrLoggedInElsewhere    = sentinel(parleyv1.ErrorCode_ERROR_CODE_LOGGED_IN_ELSEWHERE)
	ErrPermissionDenied     = sentinel(parleyv1.ErrorCode_ERROR_CODE_PERMISSION_DENIED)
	ErrNotFound             = sentinel(parleyv1.ErrorCode_ERROR_CODE_NOT_FOUND)
	ErrMessageTooLarge      = sentinel(parleyv1.ErrorCode_ERROR_CODE_MESSAGE_TOO_LARGE)
	ErrEmptyMessage         = sentinel(parleyv1.ErrorCode_ERROR_CODE_EMPTY_MESSAGE)
	ErrAlreadyMember        = sentinel(parleyv1.ErrorCode_ERROR_CODE_ALREADY_MEMBER)
	ErrInvalidName          = sentinel(parleyv1.ErrorCode_ERROR_CODE_INVALID_NAME)
	ErrAlreadyFriends       = sentinel(parleyv1.ErrorCode_ERROR_CODE_ALREADY_FRIENDS)
	ErrBlocked              = sentinel(parleyv1.ErrorCode_ERROR_CODE_BLOCKED)
	ErrFileTooLarge         = sentinel(parleyv1.ErrorCode_ERROR_CODE_FILE_TOO_LARGE)
	ErrChecksumMismatch     = sentinel(parleyv1.ErrorCode_ERROR_CODE_CHECKSUM_MISMATCH)
	ErrConflict             = sentinel(parleyv1.ErrorCode_ERROR_CODE_CONFLICT)
	ErrQuotaExceeded        = sentinel(parleyv1.ErrorCode_ERROR_CODE_QUOTA_EXCEEDED)
	ErrIdleTimeout          = sentinel(parleyv1.ErrorCode_ERROR_CODE_IDLE_TIMEOUT)
	ErrSlowConsumer         = sentinel(parleyv1.ErrorCode_ERROR_CODE_SLOW_CONSUMER)
	ErrServerShutdown       = sentinel(parleyv1.ErrorCode_ERROR_CODE_SERVER_SHUTDOWN)
	ErrUnavailable          = sentinel(parleyv1.ErrorCode_ERROR_CODE_UNAVAILABLE)
	ErrInternal             = sentinel(parleyv1.ErrorCode_ERROR_CODE_INTERNAL)
	ErrTimeout              = sentinel(parleyv1.ErrorCode_ERROR_CODE_TIMEOUT)
)

// Errors raised by the SDK itself rather than the server.
var (
	// ErrClosed: the client was closed, or ended for good (the session
	// ended, or the connection broke and reconnecting is off or pointless).
	// Errors that end a client wrap ErrClosed together with their cause.
	ErrClosed = errors.New("parley: client closed")
	// ErrConnectionLost: the connection broke while the request was in
	// flight; whether the server acted on it is unknown. Retryable.
	ErrConnectionLost = errors.New("parley: connection lost")
	// ErrProtocol: the server sent something this client cannot make sense
	// of (a wrong reply type, a malformed frame).
	ErrProtocol = errors.New("parley: protocol violation")
)

// Retryable reports whether the operation that returned err may succeed if
// tried again later: the connection broke, the server was busy, shutting
// down or rate limiting. Use errors.As for RetryAfter.
func Retryable(err error) bool {
	switch {
	case errors.Is(err, ErrConnectionLost),
		errors.Is(err, ErrUnavailable),
		errors.Is(err, ErrTimeout),
		errors.Is(err, ErrRateLimited),
		errors.Is(err, ErrServerShutdown),
		errors.Is(err, ErrIdleTimeout),
		errors.Is(err, ErrSlowConsumer):
		return true
	}
	return false
}

// errorFromWire converts an Error frame body.
func errorFromWire(e *parleyv1.Error) *Error {
	if e == nil {
		return &Error{Code: parleyv1.ErrorCode_ERROR_CODE_INTERNAL, Message: "empty error"}
	}
	return &Error{
		Code:       e.GetCode(),
		Message:    e.GetMessage(),
		RetryAfter: time.Duration(e.GetRetryAfterMs()) * time.Millisecond,
	}
}

// sessionFatal reports whether a Resume failure means the session is gone
// for good, so reconnecting cannot bring it back. ALREADY_LOGGED_IN is not
// among them: under the "reject" policy the server may still count the
// broken connection for a moment, and a later attempt succeeds.
func sessionFatal(err error) bool {
	return errors.Is(err, ErrTokenExpired) ||
		errors.Is(err, ErrTokenInvalid) ||
		errors.Is(err, ErrSessionRevoked) ||
		errors.Is(err, ErrLoggedInElsewhere)
}
