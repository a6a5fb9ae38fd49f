package relaysvc

import (
	"github.com/parleychat/parley/protocol/errcode"
	"github.com/parleychat/parley/protocol/parleyv1"
)

// Wire errors the relay answers with. Messages are shown to end users.
var (
	errMalformed  = errcode.New(parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "malformed request")
	errNoIdentity = errcode.New(parleyv1.ErrorCode_ERROR_CODE_UNAUTHENTICATED, "log in first")
	errTarget     = errcode.New(parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "give either a conversation or a username")
	errSelf       = errcode.New(parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "you cannot call yourself")
	errNoCall     = errcode.New(parleyv1.ErrorCode_ERROR_CODE_NOT_FOUND, "no such call, or it has ended")
	errNotRinging = errcode.New(parleyv1.ErrorCode_ERROR_CODE_NOT_FOUND, "this call is not ringing for you")
	errNotIn      = errcode.New(parleyv1.ErrorCode_ERROR_CODE_NOT_FOUND, "you are not in this call")
	errNotMember  = errcode.New(parleyv1.ErrorCode_ERROR_CODE_PERMISSION_DENIED, "you are not in this conversation")
	errInAnother  = errcode.New(parleyv1.ErrorCode_ERROR_CODE_CONFLICT, "you are in another call: leave it first")
	errBusy       = errcode.New(parleyv1.ErrorCode_ERROR_CODE_BUSY, "the other side is in another call")
	errStore      = errcode.New(parleyv1.ErrorCode_ERROR_CODE_UNAVAILABLE, "call state unavailable, try again")
)
