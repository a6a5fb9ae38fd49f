package filesvc

import (
	"time"

	"github.com/parleychat/parley/protocol/errcode"
	"github.com/parleychat/parley/protocol/parleyv1"
)

// Wire errors the service answers with. Messages are shown to end users.
var (
	errMalformed    = errcode.New(parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "malformed request")
	errNoIdentity   = errcode.New(parleyv1.ErrorCode_ERROR_CODE_UNAUTHENTICATED, "log in first")
	errTarget       = errcode.New(parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "give either a conversation or a username")
	errEmptyFile    = errcode.New(parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "empty files cannot be sent")
	errChecksumArg  = errcode.New(parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "sha256 must be the file's SHA-256 as 64 lower-case hex digits")
	errNoFile       = errcode.New(parleyv1.ErrorCode_ERROR_CODE_NOT_FOUND, "no such file")
	errExpired      = errcode.New(parleyv1.ErrorCode_ERROR_CODE_NOT_FOUND, "the file has expired or was removed")
	errFailed       = errcode.New(parleyv1.ErrorCode_ERROR_CODE_CHECKSUM_MISMATCH, "the upload failed: its bytes did not match the declared SHA-256")
	errNotYours     = errcode.New(parleyv1.ErrorCode_ERROR_CODE_PERMISSION_DENIED, "only the sender can upload or cancel this file")
	errNoAccess     = errcode.New(parleyv1.ErrorCode_ERROR_CODE_PERMISSION_DENIED, "this file was not sent to you")
	errNotRecipient = errcode.New(parleyv1.ErrorCode_ERROR_CODE_PERMISSION_DENIED, "only the recipient of a file in a private chat answers it")
	errRejected     = errcode.New(parleyv1.ErrorCode_ERROR_CODE_PERMISSION_DENIED, "you rejected this file")
	errLease        = errcode.New(parleyv1.ErrorCode_ERROR_CODE_CONFLICT, "another upload of this file took over; ask for the offset and continue")
	errOffset       = errcode.New(parleyv1.ErrorCode_ERROR_CODE_CONFLICT, "the upload's offset changed; ask for the offset and continue")
	errBadParts     = errcode.New(parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "commit does not add up: parts, tail and offset disagree")
	errTooManyParts = errcode.New(parleyv1.ErrorCode_ERROR_CODE_FILE_TOO_LARGE, "the upload was interrupted too many times; send the file again")
	errBusy         = errcode.New(parleyv1.ErrorCode_ERROR_CODE_UNAVAILABLE, "the file record is busy; try again")
	// errStorage: the object store failed or is down (objstore.Gate: it
	// is probed every few seconds while down).
	errStorage = &errcode.Error{Code: parleyv1.ErrorCode_ERROR_CODE_UNAVAILABLE,
		Message: "file storage is unavailable; try again in a few seconds", RetryAfter: 5000}
	errBadToken    = errcode.New(parleyv1.ErrorCode_ERROR_CODE_TOKEN_INVALID, "invalid download token")
	errOldToken    = errcode.New(parleyv1.ErrorCode_ERROR_CODE_TOKEN_EXPIRED, "the download link has expired; ask for a new one")
	errClientKey   = errcode.New(parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "client_key must be at most 64 characters")
	errKeyReused   = errcode.New(parleyv1.ErrorCode_ERROR_CODE_CONFLICT, "this client_key was used for another file; use a new key per offer")
	errBadConv     = errcode.New(parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "conversation: not a conversation id")
	errRoomNoFiles = errcode.New(parleyv1.ErrorCode_ERROR_CODE_NOT_FOUND, "rooms have no files: files go to a private chat or a group")
	// As messaging answers for a conversation id (docs/protocol.md §15.1).
	errNoConversation = errcode.New(parleyv1.ErrorCode_ERROR_CODE_NOT_FOUND, "no such conversation")
	errNotMember      = errcode.New(parleyv1.ErrorCode_ERROR_CODE_PERMISSION_DENIED, "you are not in this conversation")
	errSelf           = errcode.New(parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "you cannot start a private conversation with yourself")
	errSessionGone    = errcode.New(parleyv1.ErrorCode_ERROR_CODE_SESSION_REVOKED, "the session this download link was made for has ended; log in and ask for a new one")
	// errSessionUnknown: auth could not say whether the session lives.
	errSessionUnknown = errcode.New(parleyv1.ErrorCode_ERROR_CODE_UNAVAILABLE, "cannot check the download link's session now; try again")
)

func errQuota(used, quota int64) error {
	return errcode.Newf(parleyv1.ErrorCode_ERROR_CODE_QUOTA_EXCEEDED,
		"your files take %d of your %d bytes; this one does not fit: remove files or wait for them to expire", used, quota)
}

func errOfferRate(wait time.Duration) error {
	return &errcode.Error{Code: parleyv1.ErrorCode_ERROR_CODE_RATE_LIMITED, Message: "too many files offered; wait a moment",
		RetryAfter: uint32(wait.Milliseconds())}
}

func errTooLarge(max int64) error {
	return errcode.Newf(parleyv1.ErrorCode_ERROR_CODE_FILE_TOO_LARGE, "the file is too large (at most %d bytes)", max)
}
