package parley

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/parleychat/parley/protocol/parleyv1"
)

func TestErrorSentinels(t *testing.T) {
	// Every code the protocol defines has exactly one sentinel.
	sentinels := []*Error{
		ErrBadFrame, ErrFrameTooLarge, ErrInvalidUTF8, ErrUnsupportedVersion, ErrHandshakeRequired,
		ErrUnknownRequest, ErrInvalidArgument, ErrDuplicateRequestID, ErrUnauthenticated,
		ErrUsernameTaken, ErrInvalidUsername, ErrWeakPassword, ErrBadCredentials, ErrRateLimited,
		ErrTokenExpired, ErrTokenInvalid, ErrSessionRevoked, ErrAlreadyLoggedIn,
		ErrAlreadyAuthenticated, ErrLoggedInElsewhere, ErrPermissionDenied, ErrNotFound,
		ErrMessageTooLarge, ErrEmptyMessage, ErrAlreadyMember, ErrInvalidName, ErrAlreadyFriends, ErrBlocked,
		ErrFileTooLarge, ErrChecksumMismatch, ErrConflict, ErrQuotaExceeded,
		ErrIdleTimeout, ErrSlowConsumer, ErrServerShutdown, ErrUnavailable, ErrInternal, ErrTimeout,
	}
	seen := map[parleyv1.ErrorCode]bool{}
	for _, s := range sentinels {
		if seen[s.Code] {
			t.Errorf("two sentinels for %s", CodeName(s.Code))
		}
		seen[s.Code] = true
	}
	for n := range parleyv1.ErrorCode_name {
		c := parleyv1.ErrorCode(n)
		if c != parleyv1.ErrorCode_ERROR_CODE_UNSPECIFIED && !seen[c] {
			t.Errorf("no sentinel for %s", CodeName(c))
		}
	}
}

func TestErrorFromWire(t *testing.T) {
	tests := []struct {
		name     string
		wire     *parleyv1.Error
		is       error
		isNot    error
		retry    time.Duration
		text     string
		canRetry bool
	}{
		{
			name:  "bad credentials",
			wire:  &parleyv1.Error{Code: parleyv1.ErrorCode_ERROR_CODE_BAD_CREDENTIALS, Message: "wrong username or password"},
			is:    ErrBadCredentials,
			isNot: ErrUsernameTaken,
			text:  "parley: BAD_CREDENTIALS: wrong username or password",
		},
		{
			name:     "rate limited carries retry after",
			wire:     &parleyv1.Error{Code: parleyv1.ErrorCode_ERROR_CODE_RATE_LIMITED, Message: "slow down", RetryAfterMs: 1500},
			is:       ErrRateLimited,
			isNot:    ErrInternal,
			retry:    1500 * time.Millisecond,
			text:     "parley: RATE_LIMITED: slow down",
			canRetry: true,
		},
		{
			name:  "unknown code is treated as internal",
			wire:  &parleyv1.Error{Code: parleyv1.ErrorCode(999), Message: "new thing"},
			is:    ErrInternal,
			isNot: ErrBadCredentials,
			text:  "parley: 999: new thing",
		},
		{
			name:     "unavailable is retryable",
			wire:     &parleyv1.Error{Code: parleyv1.ErrorCode_ERROR_CODE_UNAVAILABLE},
			is:       ErrUnavailable,
			isNot:    ErrInternal,
			text:     "parley: UNAVAILABLE",
			canRetry: true,
		},
		{
			name:  "nil body",
			wire:  nil,
			is:    ErrInternal,
			isNot: ErrUnavailable,
			text:  "parley: INTERNAL: empty error",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := error(errorFromWire(tt.wire))
			wrapped := fmt.Errorf("login: %w", err)
			if !errors.Is(wrapped, tt.is) {
				t.Errorf("errors.Is(%v, %v) = false", wrapped, tt.is)
			}
			if errors.Is(wrapped, tt.isNot) {
				t.Errorf("errors.Is(%v, %v) = true", wrapped, tt.isNot)
			}
			var e *Error
			if !errors.As(wrapped, &e) || e.RetryAfter != tt.retry {
				t.Errorf("RetryAfter = %v, want %v", e.RetryAfter, tt.retry)
			}
			if err.Error() != tt.text {
				t.Errorf("Error() = %q, want %q", err.Error(), tt.text)
			}
			if Retryable(wrapped) != tt.canRetry {
				t.Errorf("Retryable = %v, want %v", Retryable(wrapped), tt.canRetry)
			}
		})
	}
}

func TestConnectionLostIsRetryable(t *testing.T) {
	shutdown := &Error{Code: parleyv1.ErrorCode_ERROR_CODE_SERVER_SHUTDOWN, Message: "bye"}
	err := fmt.Errorf("%w: %w", ErrConnectionLost, shutdown)
	if !Retryable(err) || !errors.Is(err, ErrConnectionLost) || !errors.Is(err, ErrServerShutdown) {
		t.Errorf("lost connection error %v: want retryable, ErrConnectionLost and ErrServerShutdown", err)
	}
	if Retryable(ErrClosed) || Retryable(ErrBadCredentials) {
		t.Error("ErrClosed and ErrBadCredentials must not be retryable")
	}
}

func TestSessionFatal(t *testing.T) {
	for _, tt := range []struct {
		err   error
		fatal bool
	}{
		{ErrTokenExpired, true},
		{ErrTokenInvalid, true},
		{ErrSessionRevoked, true},
		{ErrLoggedInElsewhere, true},
		{ErrAlreadyLoggedIn, false},
		{ErrUnavailable, false},
		{fmt.Errorf("%w: eof", ErrConnectionLost), false},
	} {
		if got := sessionFatal(tt.err); got != tt.fatal {
			t.Errorf("sessionFatal(%v) = %v, want %v", tt.err, got, tt.fatal)
		}
	}
}
