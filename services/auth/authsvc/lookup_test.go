package authsvc_test

import (
	"context"
	"testing"

	"github.com/parleychat/parley/libs/proto/internalv1"
	"github.com/parleychat/parley/libs/rpc"
	"github.com/parleychat/parley/libs/subject"
	"github.com/parleychat/parley/libs/testenv"
	"github.com/parleychat/parley/protocol/parleyv1"
)

func TestLookup(t *testing.T) {
	ns := testenv.NATS(t)
	startAuth(t, ns.ClientURL(), fastConfig())
	nc := testenv.Connect(t, ns)
	alice := mustRegister(t, nc, "Alice.W", "correct horse battery")

	lookup := func(name string) (*internalv1.UserLookupReply, error) {
		var reply internalv1.UserLookupReply
		err := rpc.Request(context.Background(), nc, subject.AuthLookup, nil,
			&internalv1.UserLookupRequest{Username: name}, &reply)
		return &reply, err
	}
	// Any capitalisation finds the account, as at login; the reply has the
	// display form.
	for _, name := range []string{"Alice.W", "alice.w", "ALICE.W"} {
		got, err := lookup(name)
		if err != nil {
			t.Fatalf("lookup %q: %v", name, err)
		}
		if got.UserId != alice.UserId || got.Username != "Alice.W" {
			t.Errorf("lookup %q = %+v, want %s Alice.W", name, got, alice.UserId)
		}
	}
	for _, tc := range []struct {
		name string
		code parleyv1.ErrorCode
	}{
		{"bob", parleyv1.ErrorCode_ERROR_CODE_NOT_FOUND},
		{"alice", parleyv1.ErrorCode_ERROR_CODE_NOT_FOUND},
		{"no spaces allowed", parleyv1.ErrorCode_ERROR_CODE_NOT_FOUND},
		{"", parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT},
	} {
		_, err := lookup(tc.name)
		wantCode(t, err, tc.code)
	}
}
