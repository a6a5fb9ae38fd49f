package msgsvc_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/parleychat/parley/libs/rpc"
	"github.com/parleychat/parley/libs/subject"
	"github.com/parleychat/parley/protocol/convid"
	"github.com/parleychat/parley/protocol/parleyv1"
)

// typingEvents watches u's typing subject, rendered "conversation:Name".
func typingEvents(t testing.TB, e *env, u user) func() []string {
	r := record(t, e, subject.UserTyping(u.id), func() *parleyv1.TypingEvent { return new(parleyv1.TypingEvent) })
	return func() []string {
		var out []string
		for _, ev := range r.all() {
			out = append(out, ev.Conversation+":"+ev.Username)
		}
		return out
	}
}

// Typing indicators are for the caller's private conversations only
// (docs/protocol.md §17); a refused one goes nowhere.
func TestTypingRules(t *testing.T) {
	e := newEnv(t)
	e.start(t, testConfig())
	toBob, toCarol := typingEvents(t, e, bob), typingEvents(t, e, carol)
	for _, tc := range []struct {
		name, conv string
		code       parleyv1.ErrorCode
	}{
		{"the room", convid.PublicRoom, invalidArg},
		{"a group", "group.g" + strings.Repeat("a", 20), invalidArg},
		{"no conversation", "", invalidArg},
		{"yourself", "dm.ualice.ualice", invalidArg},
		{"others' private chat", "dm.ubob.ucarol", denied},
		{"malformed, not yours", "dm.ubob", denied},
		{"malformed, yours", "dm.ualice.ubob.ucarol", notFound},
	} {
		t.Run(tc.name, func(t *testing.T) { wantCode(t, e.typing(alice, tc.conv), tc.code) })
	}
	err := rpc.Request(context.Background(), e.nc, subject.MsgTyping, nil, &parleyv1.TypingRequest{Conversation: "dm.ualice.ubob"}, nil)
	wantCode(t, err, parleyv1.ErrorCode_ERROR_CODE_UNAUTHENTICATED)

	// A marker: carol's indicator reaches bob after anything published before.
	if err := e.typing(carol, "dm.ubob.ucarol"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the marker", toBob, "dm.ubob.ucarol:Carol")
	if got := toCarol(); len(got) != 0 {
		t.Errorf("carol got %v", got)
	}
}

// One indicator per user and conversation every 2 seconds, however many
// connections the user types on; a recipient who blocked the typist gets
// none, and the typist is told Ok as usual.
func TestTypingPerUserAndBlocks(t *testing.T) {
	e := newEnv(t)
	clock := newFakeClock()
	e.startClock(t, testConfig(), clock.now)
	toBob, toAlice := typingEvents(t, e, bob), typingEvents(t, e, alice)
	const ab = "dm.ualice.ubob"
	if err := e.typing(alice, ab); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "alice's indicator", toBob, ab+":Alice")
	// Three more connections of alice's (other sessions, other gateways),
	// within the interval: answered Ok, not forwarded.
	for i, gw := range []string{"gw-a", "gw-b", "gw-c"} {
		h := header(alice)
		h.Set(subject.HeaderSessionID, "s-other")
		h.Set(subject.HeaderGatewayID, gw)
		h.Set(subject.HeaderConnID, "c"+gw)
		if err := rpc.Request(context.Background(), e.nc, subject.MsgTyping, h, &parleyv1.TypingRequest{Conversation: ab}, nil); err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
	}
	clock.advance(2 * time.Second)
	if err := e.typing(alice, ab); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "after 2 seconds", toBob, ab+":Alice", ab+":Alice")

	// Bob blocks alice: her indicators stop; bob's to her still go.
	if err := e.block(bob, "alice"); err != nil {
		t.Fatal(err)
	}
	clock.advance(2 * time.Second)
	if err := e.typing(alice, ab); err != nil {
		t.Errorf("typing to a user who blocked you: %v, want Ok", err)
	}
	if err := e.typing(carol, "dm.ubob.ucarol"); err != nil { // marker
		t.Fatal(err)
	}
	waitFor(t, "the marker", toBob, ab+":Alice", ab+":Alice", "dm.ubob.ucarol:Carol")
	if err := e.typing(bob, ab); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "bob's indicator", toAlice, ab+":Bob")
}
