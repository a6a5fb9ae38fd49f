package msgsvc

import (
	"github.com/parleychat/parley/protocol/errcode"
	"github.com/parleychat/parley/protocol/parleyv1"
)

// Wire errors the service answers with. Messages are shown to end users.
var (
	errMalformed       = errcode.New(parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "malformed request")
	errNoIdentity      = errcode.New(parleyv1.ErrorCode_ERROR_CODE_UNAUTHENTICATED, "log in first")
	errNoConversation  = errcode.New(parleyv1.ErrorCode_ERROR_CODE_NOT_FOUND, "no such conversation")
	errNotMember       = errcode.New(parleyv1.ErrorCode_ERROR_CODE_PERMISSION_DENIED, "you are not in this conversation")
	errSelf            = errcode.New(parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "you cannot start a private conversation with yourself")
	errEmpty           = errcode.New(parleyv1.ErrorCode_ERROR_CODE_EMPTY_MESSAGE, "the message is empty")
	errTarget          = errcode.New(parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "give either a conversation or a username")
	errClientKey       = errcode.New(parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "client_key must be 1 to 64 printable characters, not starting or ending with a space")
	errKeyReused       = errcode.New(parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "client_key was already used for a different message (another conversation, text or file)")
	errAckBeyondLast   = errcode.New(parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "cannot acknowledge a message that does not exist yet")
	errBusy            = errcode.New(parleyv1.ErrorCode_ERROR_CODE_UNAVAILABLE, "the conversation is busy; try again")
	errNotStored       = errcode.New(parleyv1.ErrorCode_ERROR_CODE_UNAVAILABLE, "the message store did not confirm; send again with the same client_key")
	errNoUsername      = errcode.New(parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "username is required")
	errBothHistoryDirs = errcode.New(parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "give before_seq or after_seq, not both")
)

func errTooLarge(maxChars int) error {
	return errcode.Newf(parleyv1.ErrorCode_ERROR_CODE_MESSAGE_TOO_LARGE,
		"the message is too long (at most %d characters and %d KiB)", maxChars, MaxMessageBytes>>10)
}
