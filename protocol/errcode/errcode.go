// Package errcode carries Parley's stable wire error codes through Go errors,
// so a service can return an error that the gateway maps to the exact code
// and message the client sees (docs/protocol.md §7).
package errcode

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/parleychat/parley/protocol/parleyv1"
)

// Error is an error with a wire code. Message is safe to show to clients.
type Error struct {
	Code       parleyv1.ErrorCode
	Message    string
	RetryAfter uint32 // milliseconds, with RATE_LIMITED
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s: %s", ShortName(e.Code), e.Message)
}

// Is matches another *Error with the same code, so sentinel errors work with
// errors.Is.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}

// New returns an *Error.
func New(code parleyv1.ErrorCode, msg string) *Error { return &Error{Code: code, Message: msg} }

// RateLimited is the RATE_LIMITED answer to too many of what (a plural
// noun): wait, rounded up to whole milliseconds (at least 1), in
// retry_after_ms, and to whole seconds in the message.
func RateLimited(what string, wait time.Duration) *Error {
	ms := int64(math.Ceil(float64(wait) / float64(time.Millisecond)))
	ms = min(max(ms, 1), math.MaxUint32)
	return &Error{
		Code:       parleyv1.ErrorCode_ERROR_CODE_RATE_LIMITED,
		Message:    "too many " + what + "; try again in " + (wait + time.Second - 1).Truncate(time.Second).String(),
		RetryAfter: uint32(ms),
	}
}

// Newf returns an *Error with a formatted message.
func Newf(code parleyv1.ErrorCode, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// From extracts the wire error from err. Errors without a code become
// INTERNAL with a generic message, so internals never reach clients.
func From(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return &Error{Code: parleyv1.ErrorCode_ERROR_CODE_INTERNAL, Message: "internal server error"}
}

// Code returns err's wire code, INTERNAL when it has none.
func Code(err error) parleyv1.ErrorCode { return From(err).Code }

// ShortName is the code's name without the ERROR_CODE_ prefix
// ("USERNAME_TAKEN").
func ShortName(c parleyv1.ErrorCode) string {
	n := c.String()
	const p = "ERROR_CODE_"
	if len(n) > len(p) && n[:len(p)] == p {
		return n[len(p):]
	}
	return n
}
