package parley

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/parleychat/parley/protocol/parleyv1"
)

// TestErrorSentinels pins the SDK's codes to the protocol's: every code
// the schema defines has exactly one Code constant and sentinel, with the
// schema's number and name.
func TestErrorSentinels(t *testing.T) {
	tests := []struct {
		sentinel *Error
		code     Code
		wire     parleyv1.ErrorCode
	}{
		{ErrBadFrame, CodeBadFrame, parleyv1.ErrorCode_ERROR_CODE_BAD_FRAME},
		{ErrFrameTooLarge, CodeFrameTooLarge, parleyv1.ErrorCode_ERROR_CODE_FRAME_TOO_LARGE},
		{ErrInvalidUTF8, CodeInvalidUTF8, parleyv1.ErrorCode_ERROR_CODE_INVALID_UTF8},
		{ErrUnsupportedVersion, CodeUnsupportedVersion, parleyv1.ErrorCode_ERROR_CODE_UNSUPPORTED_VERSION},
		{ErrHandshakeRequired, CodeHandshakeRequired, parleyv1.ErrorCode_ERROR_CODE_HANDSHAKE_REQUIRED},
		{ErrUnknownRequest, CodeUnknownRequest, parleyv1.ErrorCode_ERROR_CODE_UNKNOWN_REQUEST},
		{ErrInvalidArgument, CodeInvalidArgument, parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT},
		{ErrDuplicateRequestID, CodeDuplicateRequestID, parleyv1.ErrorCode_ERROR_CODE_DUPLICATE_REQUEST_ID},
		{ErrUnauthenticated, CodeUnauthenticated, parleyv1.ErrorCode_ERROR_CODE_UNAUTHENTICATED},
		{ErrUsernameTaken, CodeUsernameTaken, parleyv1.ErrorCode_ERROR_CODE_USERNAME_TAKEN},
		{ErrInvalidUsername, CodeInvalidUsername, parleyv1.ErrorCode_ERROR_CODE_INVALID_USERNAME},
		{ErrWeakPassword, CodeWeakPassword, parleyv1.ErrorCode_ERROR_CODE_WEAK_PASSWORD},
		{ErrBadCredentials, CodeBadCredentials, parleyv1.ErrorCode_ERROR_CODE_BAD_CREDENTIALS},
		{ErrRateLimited, CodeRateLimited, parleyv1.ErrorCode_ERROR_CODE_RATE_LIMITED},
		{ErrTokenExpired, CodeTokenExpired, parleyv1.ErrorCode_ERROR_CODE_TOKEN_EXPIRED},
		{ErrTokenInvalid, CodeTokenInvalid, parleyv1.ErrorCode_ERROR_CODE_TOKEN_INVALID},
		{ErrSessionRevoked, CodeSessionRevoked, parleyv1.ErrorCode_ERROR_CODE_SESSION_REVOKED},
		{ErrAlreadyLoggedIn, CodeAlreadyLoggedIn, parleyv1.ErrorCode_ERROR_CODE_ALREADY_LOGGED_IN},
		{ErrAlreadyAuthenticated, CodeAlreadyAuthenticated, parleyv1.ErrorCode_ERROR_CODE_ALREADY_AUTHENTICATED},
		{ErrLoggedInElsewhere, CodeLoggedInElsewhere, parleyv1.ErrorCode_ERROR_CODE_LOGGED_IN_ELSEWHERE},
		{ErrPermissionDenied, CodePermissionDenied, parleyv1.ErrorCode_ERROR_CODE_PERMISSION_DENIED},
		{ErrNotFound, CodeNotFound, parleyv1.ErrorCode_ERROR_CODE_NOT_FOUND},
		{ErrMessageTooLarge, CodeMessageTooLarge, parleyv1.ErrorCode_ERROR_CODE_MESSAGE_TOO_LARGE},
		{ErrEmptyMessage, CodeEmptyMessage, parleyv1.ErrorCode_ERROR_CODE_EMPTY_MESSAGE},
		{ErrAlreadyMember, CodeAlreadyMember, parleyv1.ErrorCode_ERROR_CODE_ALREADY_MEMBER},
		{ErrInvalidName, CodeInvalidName, parleyv1.ErrorCode_ERROR_CODE_INVALID_NAME},
		{ErrAlreadyFriends, CodeAlreadyFriends, parleyv1.ErrorCode_ERROR_CODE_ALREADY_FRIENDS},
		{ErrBlocked, CodeBlocked, parleyv1.ErrorCode_ERROR_CODE_BLOCKED},
		{ErrFileTooLarge, CodeFileTooLarge, parleyv1.ErrorCode_ERROR_CODE_FILE_TOO_LARGE},
		{ErrChecksumMismatch, CodeChecksumMismatch, parleyv1.ErrorCode_ERROR_CODE_CHECKSUM_MISMATCH},
		{ErrIdleTimeout, CodeIdleTimeout, parleyv1.ErrorCode_ERROR_CODE_IDLE_TIMEOUT},
		{ErrSlowConsumer, CodeSlowConsumer, parleyv1.ErrorCode_ERROR_CODE_SLOW_CONSUMER},
		{ErrServerShutdown, CodeServerShutdown, parleyv1.ErrorCode_ERROR_CODE_SERVER_SHUTDOWN},
		{ErrUnavailable, CodeUnavailable, parleyv1.ErrorCode_ERROR_CODE_UNAVAILABLE},
		{ErrInternal, CodeInternal, parleyv1.ErrorCode_ERROR_CODE_INTERNAL},
		{ErrTimeout, CodeTimeout, parleyv1.ErrorCode_ERROR_CODE_TIMEOUT},
		{ErrConflict, CodeConflict, parleyv1.ErrorCode_ERROR_CODE_CONFLICT},
		{ErrQuotaExceeded, CodeQuotaExceeded, parleyv1.ErrorCode_ERROR_CODE_QUOTA_EXCEEDED},
		{ErrBusy, CodeBusy, parleyv1.ErrorCode_ERROR_CODE_BUSY},
	}
	seen := map[parleyv1.ErrorCode]bool{}
	for _, tt := range tests {
		name := strings.TrimPrefix(tt.wire.String(), "ERROR_CODE_")
		if tt.sentinel.Code != tt.code || int32(tt.code) != int32(tt.wire) || tt.code.String() != name {
			t.Errorf("%s: sentinel code %d, constant %d (%s), want %d (%s)", name, tt.sentinel.Code, tt.code, tt.code, tt.wire, name)
		}
		if seen[tt.wire] {
			t.Errorf("two sentinels for %s", name)
		}
		seen[tt.wire] = true
	}
	for n, name := range parleyv1.ErrorCode_name {
		if c := parleyv1.ErrorCode(n); c != parleyv1.ErrorCode_ERROR_CODE_UNSPECIFIED && !seen[c] {
			t.Errorf("no Code constant and sentinel for %s", name)
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
	shutdown := &Error{Code: CodeServerShutdown, Message: "bye"}
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
