// Package rpc is Parley's request/reply convention on NATS: protobuf bodies,
// metadata in headers (libs/subject Header*), and errors as a numeric wire
// code plus message in the Parley-Error-Code / Parley-Error-Message headers
// of an otherwise empty reply.
package rpc

import (
	"context"
	"errors"
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

// Request sends req on subj with the given headers and decodes the reply into
// resp (which may be nil when the reply body is ignored). An error reply is
// returned as *errcode.Error; no responder becomes UNAVAILABLE and a timeout
// becomes TIMEOUT.
func Request(ctx context.Context, nc *nats.Conn, subj string, hdr nats.Header, req, resp proto.Message) error {
	var data []byte
	if req != nil {
		var err error
		if data, err = proto.Marshal(req); err != nil {
			return err
		}
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultTimeout)
		defer cancel()
	}
	msg := &nats.Msg{Subject: subj, Data: data, Header: hdr}
	reply, err := nc.RequestMsgWithContext(ctx, msg)
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return errcode.New(parleyv1.ErrorCode_ERROR_CODE_UNAVAILABLE, "service unavailable, try again")
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout):
		return errcode.New(parleyv1.ErrorCode_ERROR_CODE_TIMEOUT, "service did not answer in time")
	case err != nil:
		return errcode.New(parleyv1.ErrorCode_ERROR_CODE_UNAVAILABLE, "message bus unavailable")
	}
	if e := ErrorOf(reply); e != nil {
		return e
	}
	if resp != nil {
		if err := proto.Unmarshal(reply.Data, resp); err != nil {
			return errcode.New(parleyv1.ErrorCode_ERROR_CODE_INTERNAL, "malformed service reply")
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
