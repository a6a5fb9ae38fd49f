package rdvsvc

import (
	"github.com/parleychat/parley/protocol/errcode"
	"github.com/parleychat/parley/protocol/parleyv1"
)

// Wire errors the rendezvous answers with. Messages are shown to end users.
var (
	errMalformed   = errcode.New(parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "malformed request")
	errNoIdentity  = errcode.New(parleyv1.ErrorCode_ERROR_CODE_UNAUTHENTICATED, "log in first")
	errNoPeer      = errcode.New(parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "give the name of the user to go direct with")
	errSelf        = errcode.New(parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "you cannot go direct with yourself")
	errTooMany     = errcode.Newf(parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "at most %d candidates", MaxCandidates)
	errCandidate   = errcode.New(parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "a candidate is a host address ip:port of this device")
	errNoDevice    = errcode.New(parleyv1.ErrorCode_ERROR_CODE_NOT_FOUND, "this device is not registered: register its key first")
	errQuota       = errcode.Newf(parleyv1.ErrorCode_ERROR_CODE_QUOTA_EXCEEDED, "you have %d direct sessions open: close one first", MaxSessions)
	errNoSession   = errcode.New(parleyv1.ErrorCode_ERROR_CODE_NOT_FOUND, "no such direct session, or it has ended")
	errNoOffer     = errcode.New(parleyv1.ErrorCode_ERROR_CODE_NOT_FOUND, "no such offer to you, or it expired")
	errOtherDevice = errcode.New(parleyv1.ErrorCode_ERROR_CODE_CONFLICT, "another of your devices answered this offer")
	errStore       = errcode.New(parleyv1.ErrorCode_ERROR_CODE_UNAVAILABLE, "direct sessions unavailable, try again")
	errResolvePeer = errcode.New(parleyv1.ErrorCode_ERROR_CODE_UNAVAILABLE, "could not look the user up, try again")
)
