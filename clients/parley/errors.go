package parley

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/parleychat/parley/protocol/parleyv1"
)

// Code is a server error code: a stable number of the protocol
// (docs/protocol.md §7, ErrorCode in the schema). Numbers never change
// meaning; a newer server may send codes this SDK does not know, which the
// protocol asks clients to treat like CodeInternal.
type Code int32

// Error codes, as the protocol numbers them. Each has a sentinel below
// (CodeNotFound: ErrNotFound).
const (
	// Framing and handshake.
	CodeBadFrame           Code = 1
	CodeFrameTooLarge      Code = 2
	CodeInvalidUTF8        Code = 3
	CodeUnsupportedVersion Code = 4
	CodeHandshakeRequired  Code = 5
	CodeUnknownRequest     Code = 6
	CodeInvalidArgument    Code = 7
	CodeDuplicateRequestID Code = 8

	// Accounts and sessions.
	CodeUnauthenticated      Code = 10
	CodeUsernameTaken        Code = 11
	CodeInvalidUsername      Code = 12
	CodeWeakPassword         Code = 13
	CodeBadCredentials       Code = 14
	CodeRateLimited          Code = 15
	CodeTokenExpired         Code = 16
	CodeTokenInvalid         Code = 17
	CodeSessionRevoked       Code = 18
	CodeAlreadyLoggedIn      Code = 19
	CodeAlreadyAuthenticated Code = 20
	CodeLoggedInElsewhere    Code = 21

	// Authorization and limits.
	CodePermissionDenied Code = 30
	CodeNotFound         Code = 31
	CodeMessageTooLarge  Code = 32
	CodeEmptyMessage     Code = 33
	CodeAlreadyMember    Code = 34
	CodeInvalidName      Code = 35
	CodeAlreadyFriends   Code = 36
	CodeBlocked          Code = 37
	CodeFileTooLarge     Code = 38
	CodeChecksumMismatch Code = 39

	// Connection and server state.
	CodeIdleTimeout    Code = 40
	CodeSlowConsumer   Code = 41
	CodeServerShutdown Code = 42
	CodeUnavailable    Code = 43
	CodeInternal       Code = 44
	CodeTimeout        Code = 45
	CodeConflict       Code = 46
	CodeQuotaExceeded  Code = 47
	CodeBusy           Code = 48
)

// String is the code's protocol name without the ERROR_CODE_ prefix
// ("USERNAME_TAKEN"), or its number when this SDK does not know it.
func (c Code) String() string {
	return strings.TrimPrefix(parleyv1.ErrorCode(c).String(), "ERROR_CODE_")
}

func (c Code) known() bool {
	_, ok := parleyv1.ErrorCode_name[int32(c)]
	return ok && c != 0
}

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
	Code    Code
	Message string
	// RetryAfter is how long to wait before retrying; set with RATE_LIMITED.
	RetryAfter time.Duration
}

func (e *Error) Error() string {
	if e.Message == "" {
		return "parley: " + e.Code.String()
	}
	return fmt.Sprintf("parley: %s: %s", e.Code, e.Message)
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
	return t.Code == CodeInternal && !e.Code.known()
}

func sentinel(c Code) *Error { return &Error{Code: c} }

// Sentinels, one per wire error code, for use with errors.Is. Only the code
// is compared; the message and RetryAfter of the error returned by a call
// carry the details.
var (
	ErrBadFrame           = sentinel(CodeBadFrame)
	ErrFrameTooLarge      = sentinel(CodeFrameTooLarge)
	ErrInvalidUTF8        = sentinel(CodeInvalidUTF8)
	ErrUnsupportedVersion = sentinel(CodeUnsupportedVersion)
	ErrHandshakeRequired  = sentinel(CodeHandshakeRequired)
	ErrUnknownRequest     = sentinel(CodeUnknownRequest)
	ErrInvalidArgument    = sentinel(CodeInvalidArgument)
	ErrDuplicateRequestID = sentinel(CodeDuplicateRequestID)

	ErrUnauthenticated      = sentinel(CodeUnauthenticated)
	ErrUsernameTaken        = sentinel(CodeUsernameTaken)
	ErrInvalidUsername      = sentinel(CodeInvalidUsername)
	ErrWeakPassword         = sentinel(CodeWeakPassword)
	ErrBadCredentials       = sentinel(CodeBadCredentials)
	ErrRateLimited          = sentinel(CodeRateLimited)
	ErrTokenExpired         = sentinel(CodeTokenExpired)
	ErrTokenInvalid         = sentinel(CodeTokenInvalid)
	ErrSessionRevoked       = sentinel(CodeSessionRevoked)
	ErrAlreadyLoggedIn      = sentinel(CodeAlreadyLoggedIn)
	ErrAlreadyAuthenticated = sentinel(CodeAlreadyAuthenticated)
	ErrLoggedInElsewhere    = sentinel(CodeLoggedInElsewhere)

	ErrPermissionDenied = sentinel(CodePermissionDenied)
	ErrNotFound         = sentinel(CodeNotFound)
	ErrMessageTooLarge  = sentinel(CodeMessageTooLarge)
	ErrEmptyMessage     = sentinel(CodeEmptyMessage)
	ErrAlreadyMember    = sentinel(CodeAlreadyMember)
	ErrInvalidName      = sentinel(CodeInvalidName)
	ErrAlreadyFriends   = sentinel(CodeAlreadyFriends)
	ErrBlocked          = sentinel(CodeBlocked)
	ErrFileTooLarge     = sentinel(CodeFileTooLarge)
	ErrChecksumMismatch = sentinel(CodeChecksumMismatch)

	ErrIdleTimeout    = sentinel(CodeIdleTimeout)
	ErrSlowConsumer   = sentinel(CodeSlowConsumer)
	ErrServerShutdown = sentinel(CodeServerShutdown)
	ErrUnavailable    = sentinel(CodeUnavailable)
	ErrInternal       = sentinel(CodeInternal)
	ErrTimeout        = sentinel(CodeTimeout)
	ErrConflict       = sentinel(CodeConflict)
	ErrQuotaExceeded  = sentinel(CodeQuotaExceeded)
	ErrBusy           = sentinel(CodeBusy)
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
		return &Error{Code: CodeInternal, Message: "empty error"}
	}
	return &Error{
		Code:       Code(e.GetCode()),
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
