package rpc_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/parleychat/parley/libs/rpc"
	"github.com/parleychat/parley/libs/testenv"
	"github.com/parleychat/parley/protocol/errcode"
	"github.com/parleychat/parley/protocol/parleyv1"
)

// A failed request keeps, through any %w wrapping, the subject asked, the
// wire code and message the caller passes on, and the cause of a silence:
// errors.Is finds the code's sentinel and the NATS or context error,
// errors.As the *rpc.Error and the *errcode.Error. The same through
// rpc.Replies as through nats.go's own requests.
func TestRequestErrorsKeepTheirCause(t *testing.T) {
	ns := testenv.NATS(t)
	srvConn, cliConn := testenv.Connect(t, ns), testenv.Connect(t, ns)
	answer := func(subj string, reply func(*nats.Msg)) {
		sub, err := srvConn.Subscribe(subj, reply)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = sub.Unsubscribe() })
	}
	answer("test.notfound", func(m *nats.Msg) {
		_ = rpc.RespondError(m, errcode.New(parleyv1.ErrorCode_ERROR_CODE_NOT_FOUND, "no such user"))
	})
	answer("test.silent", func(*nats.Msg) {})
	answer("test.garbage", func(m *nats.Msg) { _ = m.Respond([]byte{0xff, 0xff, 0xff}) })
	flush(t, srvConn)

	for _, tc := range []struct {
		subject  string
		timeout  time.Duration
		code     parleyv1.ErrorCode
		message  string
		is       []error // errors.Is holds for each
		isNot    []error
		answered bool // the service answered (no Cause)
		failed   bool // rpc.Failed reports it
	}{
		{"test.nobody", 5 * time.Second, parleyv1.ErrorCode_ERROR_CODE_UNAVAILABLE, "service unavailable, try again",
			[]error{rpc.ErrUnavailable, nats.ErrNoResponders}, []error{rpc.ErrTimeout, rpc.ErrNotFound}, false, true},
		{"test.silent", 100 * time.Millisecond, parleyv1.ErrorCode_ERROR_CODE_TIMEOUT, "service did not answer in time",
			[]error{rpc.ErrTimeout, context.DeadlineExceeded}, []error{rpc.ErrUnavailable}, false, true},
		{"test.notfound", 5 * time.Second, parleyv1.ErrorCode_ERROR_CODE_NOT_FOUND, "no such user",
			[]error{rpc.ErrNotFound}, []error{rpc.ErrUnavailable, rpc.ErrTimeout, nats.ErrNoResponders}, true, false},
		{"test.garbage", 5 * time.Second, parleyv1.ErrorCode_ERROR_CODE_INTERNAL, "malformed service reply",
			nil, []error{rpc.ErrUnavailable}, false, true},
	} {
		for _, via := range []struct {
			name string
			r    rpc.Requester
		}{{"conn", cliConn}, {"replies", rpc.NewReplies(cliConn)}} {
			t.Run(tc.subject+"/"+via.name, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), tc.timeout)
				defer cancel()
				err := rpc.Request(ctx, via.r, tc.subject, nil, &parleyv1.Ping{}, &parleyv1.Pong{})
				err = fmt.Errorf("handling a request: %w", err) // as a service wraps it
				var re *rpc.Error
				if !errors.As(err, &re) {
					t.Fatalf("%v: not an *rpc.Error", err)
				}
				if re.Subject != tc.subject {
					t.Errorf("Subject %q, want %q", re.Subject, tc.subject)
				}
				if (re.Cause == nil) != tc.answered {
					t.Errorf("Cause %v; answered by the service: %v", re.Cause, tc.answered)
				}
				if e := errcode.From(err); e.Code != tc.code || e.Message != tc.message {
					t.Errorf("wire error %v %q, want %v %q", e.Code, e.Message, tc.code, tc.message)
				}
				for _, target := range tc.is {
					if !errors.Is(err, target) {
						t.Errorf("errors.Is(%v, %v) = false", err, target)
					}
				}
				for _, target := range tc.isNot {
					if errors.Is(err, target) {
						t.Errorf("errors.Is(%v, %v) = true", err, target)
					}
				}
				if got := rpc.Failed(err) != nil; got != tc.failed {
					t.Errorf("Failed: %v, want %v", got, tc.failed)
				}
			})
		}
	}
}
