package p2pchan

import (
	"errors"
	"fmt"

	"github.com/quic-go/quic-go"
)

// Errors. Match them with errors.Is.
var (
	// ErrClosed: the channel was closed (Close), by this side or the peer.
	ErrClosed = errors.New("p2pchan: channel closed")
	// ErrPeerClosed: the peer closed the channel.
	ErrPeerClosed = errors.New("p2pchan: the peer closed the channel")
	// ErrPeerKey: the peer presented a certificate whose key is not the
	// expected device key (§20.5): the connection was refused.
	ErrPeerKey = errors.New("p2pchan: the peer's key is not the expected device key")
	// ErrRefused: the peer refused this device's key in the handshake.
	ErrRefused = errors.New("p2pchan: the peer refused this device's key")
	// ErrProtocol: the peer broke the protocol (§20.6); the channel is
	// closed. The wrapping error says how.
	ErrProtocol = errors.New("p2pchan: protocol violation")
	// ErrFrameTooLarge: a frame's length prefix is above MaxFrameSize.
	ErrFrameTooLarge = errors.New("p2pchan: frame larger than 1 MiB")
	// ErrNotConnected: no connection right now (datagrams are not queued).
	ErrNotConnected = errors.New("p2pchan: not connected")
	// ErrInvalid: an argument the protocol does not allow (text too long,
	// bad id, ...).
	ErrInvalid = errors.New("p2pchan: invalid argument")
	// ErrFileCorrupt: the receiver's SHA-256 of the file did not match the
	// offer (DirectFileDone ok=false); it discarded the bytes.
	ErrFileCorrupt = errors.New("p2pchan: the file's SHA-256 did not match at the receiver")
	// ErrFileAborted: the other side abandoned the transfer (a stream reset
	// with a reason code, not a broken connection). What was received is
	// kept for a resume.
	ErrFileAborted = errors.New("p2pchan: file transfer aborted")
	// ErrInterrupted: a received file stopped mid-way (stream or
	// connection broke); the partial is kept and a re-offer of the same
	// transfer_id resumes it.
	ErrInterrupted = errors.New("p2pchan: file transfer interrupted")
)

// RejectedError: the receiver declined a file (DirectFileAnswer accept=false).
type RejectedError struct{ Reason string }

func (e *RejectedError) Error() string {
	if e.Reason == "" {
		return "p2pchan: file rejected"
	}
	return "p2pchan: file rejected: " + e.Reason
}

// Application error codes on the QUIC connection (CONNECTION_CLOSE) and
// on streams (RESET_STREAM, STOP_SENDING). They are this implementation's:
// §20 does not number them, and a peer that does not know one treats it as
// a plain close.
const (
	codeClosed   quic.ApplicationErrorCode = 0 // Close: the channel ends
	codeProtocol quic.ApplicationErrorCode = 1 // a protocol violation: the channel ends
	codeReplaced quic.ApplicationErrorCode = 2 // a newer connection took over

	streamCanceled quic.StreamErrorCode = 1 // the sender or receiver gave up (context)
	streamFailed   quic.StreamErrorCode = 2 // the receiver could not store the file
	streamRejected quic.StreamErrorCode = 3 // rejected: nothing more to say
)

func violation(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrProtocol}, args...)...)
}
