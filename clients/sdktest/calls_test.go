package sdktest

import (
	"testing"
	"time"

	"github.com/parleychat/parley/clients/internal/parleytest"
	"github.com/parleychat/parley/clients/parley"
	"github.com/parleychat/parley/libs/testenv"
)

// TestCallThroughParleyd: the one-binary server carries calls. Alice is on
// WebSocket and carries her media as frames on it (as a browser does); bob
// is on TCP with UDP. Each hears every burst the other says; both hang up
// cleanly and the chat says how long they talked.
func TestCallThroughParleyd(t *testing.T) {
	p := parleytest.Start(t, nil)
	ctx := ctxT(t)
	alice := dial(t, p.WSAddr(), parley.WithPresenceFeed(false))
	bob := dial(t, p.TCPAddr(), parley.WithPresenceFeed(false))
	register(t, alice, "alice")
	register(t, bob, "bob")

	aMouth, aEar := testenv.NewMouth(testenv.StandardBursts(5)), &testenv.Ear{}
	bMouth, bEar := testenv.NewMouth(testenv.StandardBursts(5)), &testenv.Ear{}
	aSess, err := alice.PlaceCallTo(ctx, "bob", parley.CallOptions{Input: aMouth, Output: aEar, ForceFrames: true})
	if err != nil {
		t.Fatalf("alice calls bob: %v", err)
	}
	ring := next(t, bob, func(ev parley.CallRingingEvent) bool { return ev.Call.ID == aSess.ID() })
	if ring.Call.CallerName != "alice" || ring.Call.Kind != parley.ConversationDirect {
		t.Fatalf("bob's phone rings with %+v", ring.Call)
	}
	bSess, err := bob.JoinCall(ctx, aSess.ID(), parley.CallOptions{Input: bMouth, Output: bEar})
	if err != nil {
		t.Fatalf("bob answers: %v", err)
	}
	if err := aSess.WaitActive(ctx); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, wait, "alice on frames, bob on UDP", func() bool {
		return aSess.Stats().Transport == parley.TransportFrames && bSess.Stats().Transport == parley.TransportUDP
	})
	testenv.PlayAll(t, aMouth, bMouth)
	testenv.RequireHeard(t, "alice (WebSocket frames) -> bob (UDP)", testenv.Listen(aMouth, bEar, time.Second), 0.6)
	testenv.RequireHeard(t, "bob (UDP) -> alice (WebSocket frames)", testenv.Listen(bMouth, aEar, time.Second), 0.6)

	if err := bSess.Hangup(ctx); err != nil {
		t.Fatalf("bob hangs up: %v", err)
	}
	ended := next(t, alice, func(ev parley.CallEndedEvent) bool { return ev.Call.ID == aSess.ID() })
	if ended.Call.EndReason != parley.CallEndCompleted {
		t.Errorf("the call ended %v, want completed", ended.Call.EndReason)
	}
	select {
	case <-aSess.Done():
	case <-time.After(wait):
		t.Fatal("alice's session still runs after bob hung up")
	}
	if err := aSess.Err(); err != nil {
		t.Errorf("alice's session ended with %v, want a normal end", err)
	}
}
