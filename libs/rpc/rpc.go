// Package rpc is Parley's request/reply convention on NATS: protobuf bodies,
// metadata in headers (libs/subject Header*), and errors as a numeric wire
// code plus message in the Parley-Error-Code / Parley-Error-Message headers
// of an otherwise empty reply.
package rpc

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"

	"github.com/parleychat/parley/libs/subject"
	"github.com/parleychat/parley/protocol/errcode"
	"github.com/parleychat/parley/protocol/parleyv1"
)

// DefaultTimeout bounds a request when the context has no deadline.
const DefaultTimeout = 5 * time.Second

// Sentinels for errors.Is on a failed request: a *errcode.Error matches any
// error carrying the same code, whatever its message.
var (
	ErrUnavailable = errcode.New(parleyv1.ErrorCode_ERROR_CODE_UNAVAILABLE, "service unavailable")
	ErrTimeout     = errcode.New(parleyv1.ErrorCode_ERROR_CODE_TIMEOUT, "service did not answer in time")
	ErrNotFound    = errcode.New(parleyv1.ErrorCode_ERROR_CODE_NOT_FOUND, "not found")
)

// Error is a request that failed: the error the service answered, or the
// one standing for its silence (UNAVAILABLE: no responders or no bus;
// TIMEOUT: no answer in time). It unwraps to Wire, so errcode.From and
// errors.As(err, **errcode.Error) find the code and message to pass on, and
// errors.Is matches a sentinel of the same code (ErrUnavailable,
// ErrTimeout, ErrNotFound); and to Cause, so errors.Is(err,
// nats.ErrNoResponders) or errors.Is(err, context.DeadlineExceeded) tell
// why there was no answer.
type Error struct {
	Subject string         // the subject asked
	Wire    *errcode.Error // code and message, as the service answered or as stands for its silence
	Cause   error          // why there was no usable answer; nil when the service answered this error
}

func (e *Error) Error() string {
	if e.Cause != nil {
		return fmt.Sprintf("%s: %v: %v", e.Subject, e.Wire, e.Cause)
	}
	return fmt.Sprintf("%s: %v", e.Subject, e.Wire)
}

// Unwrap returns Wire and, when there is one, Cause.
func (e *Error) Unwrap() []error {
	if e.Cause == nil {
		return []error{e.Wire}
	}
	return []error{e.Wire, e.Cause}
}

// Failed returns the first request in err's chain whose service failed
// rather than refused: it did not answer (UNAVAILABLE, TIMEOUT) or answered
// UNAVAILABLE, TIMEOUT or INTERNAL. Nil when there is none, as for an
// answered refusal (NOT_FOUND, PERMISSION_DENIED...). A caller logs such
// failures at warn with Subject: an operator has a service to look at.
func Failed(err error) *Error {
	var e *Error
	if !errors.As(err, &e) {
		return nil
	}
	switch e.Wire.Code {
	case parleyv1.ErrorCode_ERROR_CODE_UNAVAILABLE, parleyv1.ErrorCode_ERROR_CODE_TIMEOUT, parleyv1.ErrorCode_ERROR_CODE_INTERNAL:
		return e
	}
	return nil
}

// Request sends req on subj with the given headers and decodes the reply into
// resp (which may be nil when the reply body is ignored). A failure is an
// *Error: the service's error reply, or UNAVAILABLE for no responders or a
// bus that is down, TIMEOUT for no answer before ctx's deadline (or
// DefaultTimeout), INTERNAL for a reply that does not decode.
func Request(ctx context.Context, nc Requester, subj string, hdr nats.Header, req, resp proto.Message) error {
	var data []byte
	if req != nil {
		var err error
		if data, err = proto.Marshal(req); err != nil {
			return fmt.Errorf("%s: encode request: %w", subj, err)
		}
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultTimeout)
		defer cancel()
	}
	msg := &nats.Msg{Subject: subj, Data: data, Header: hdr}
	reply, err := nc.RequestMsgWithContext(ctx, msg)
	fail := func(code parleyv1.ErrorCode, text string, cause error) error {
		return &Error{Subject: subj, Wire: errcode.New(code, text), Cause: cause}
	}
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return fail(parleyv1.ErrorCode_ERROR_CODE_UNAVAILABLE, "service unavailable, try again", err)
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout):
		return fail(parleyv1.ErrorCode_ERROR_CODE_TIMEOUT, "service did not answer in time", err)
	case err != nil:
		return fail(parleyv1.ErrorCode_ERROR_CODE_UNAVAILABLE, "message bus unavailable", err)
	}
	if e := ErrorOf(reply); e != nil {
		return &Error{Subject: subj, Wire: e}
	}
	if resp != nil {
		if err := proto.Unmarshal(reply.Data, resp); err != nil {
			return fail(parleyv1.ErrorCode_ERROR_CODE_INTERNAL, "malformed service reply", err)
		}
	}
	return nil
}

// ErrorOf returns the error carried by a reply's headers, or nil.
func ErrorOf(m *nats.Msg) *errcode.Error {
	if m.Header == nil {
		return nil
	}
	c := m.Header.Get(subject.HeaderErrorCode)
	if c == "" {
		return nil
	}
	n, err := strconv.Atoi(c)
	if err != nil {
		n = int(parleyv1.ErrorCode_ERROR_CODE_INTERNAL)
	}
	e := &errcode.Error{Code: parleyv1.ErrorCode(n), Message: m.Header.Get(subject.HeaderErrorMessage)}
	if ra := m.Header.Get(subject.HeaderRetryAfter); ra != "" {
		if v, err := strconv.ParseUint(ra, 10, 32); err == nil {
			e.RetryAfter = uint32(v)
		}
	}
	return e
}

// Respond replies to m with resp (nil for an empty body).
func Respond(m *nats.Msg, resp proto.Message) error {
	var data []byte
	if resp != nil {
		var err error
		if data, err = proto.Marshal(resp); err != nil {
			return err
		}
	}
	return m.Respond(data)
}

// RespondError replies to m with err's wire code and message. Errors without
// a code are sent as INTERNAL with a generic message; the caller logs them.
func RespondError(m *nats.Msg, err error) error {
	e := errcode.From(err)
	reply := nats.NewMsg(m.Reply)
	reply.Header.Set(subject.HeaderErrorCode, strconv.Itoa(int(e.Code)))
	reply.Header.Set(subject.HeaderErrorMessage, e.Message)
	if e.RetryAfter > 0 {
		reply.Header.Set(subject.HeaderRetryAfter, strconv.FormatUint(uint64(e.RetryAfter), 10))
	}
	return m.RespondMsg(reply)
}

// Handler answers one request: it returns the reply body or an error.
type Handler func(ctx context.Context, m *nats.Msg) (proto.Message, error)
