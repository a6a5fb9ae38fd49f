package sdktest

import (
	"errors"
	"testing"
	"time"

	"github.com/parleychat/parley/clients/internal/parleytest"
	"github.com/parleychat/parley/clients/parley"
	"github.com/parleychat/parley/libs/testenv"
	"github.com/parleychat/parley/standalone/server"
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

	// Chat goes on during the call, on the same connections.
	if _, err := alice.SendTo(ctx, "bob", "can you hear me?"); err != nil {
		t.Fatalf("alice writes during the call: %v", err)
	}
	next(t, bob, func(ev parley.MessageEvent) bool { return ev.Message.Text == "can you hear me?" })

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

// TestCallRefusals: a blocked user cannot call; a callee in another call is
// busy (and learns of the missed call); a call nobody answers rings out;
// a cancelled call is a missed call for the callee. Each leaves its system
// message in the private chat, which the callee reads later.
func TestCallRefusals(t *testing.T) {
	p := parleytest.Start(t, func(c *server.Config) { c.Relay.RingTimeout = 2 * time.Second })
	ctx := ctxT(t)
	alice := dial(t, p.TCPAddr(), parley.WithPresenceFeed(false))
	bob := dial(t, p.TCPAddr(), parley.WithPresenceFeed(false))
	carol := dial(t, p.TCPAddr(), parley.WithPresenceFeed(false))
	mallory := dial(t, p.TCPAddr(), parley.WithPresenceFeed(false))
	for c, name := range map[*parley.Client]string{alice: "alice", bob: "bob", carol: "carol", mallory: "mallory"} {
		register(t, c, name)
	}

	// Blocked: refused, nothing rings.
	if err := bob.Block(ctx, "mallory"); err != nil {
		t.Fatal(err)
	}
	if _, err := mallory.PlaceCallTo(ctx, "bob", parley.CallOptions{}); !errors.Is(err, parley.ErrBlocked) {
		t.Fatalf("mallory calls bob, who blocked her: %v, want BLOCKED", err)
	}

	// Busy: bob talks with alice; carol's call is refused and bob learns
	// of it.
	aSess, err := alice.PlaceCallTo(ctx, "bob", parley.CallOptions{})
	if err != nil {
		t.Fatal(err)
	}
	next(t, bob, func(ev parley.CallRingingEvent) bool { return ev.Call.ID == aSess.ID() })
	bSess, err := bob.JoinCall(ctx, aSess.ID(), parley.CallOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := carol.PlaceCallTo(ctx, "bob", parley.CallOptions{}); !errors.Is(err, parley.ErrBusy) {
		t.Fatalf("carol calls bob during his call: %v, want BUSY", err)
	}
	busy := next(t, bob, func(ev parley.CallEndedEvent) bool { return ev.Call.CallerName == "carol" })
	if busy.Call.EndReason != parley.CallEndBusy {
		t.Errorf("bob is told of carol's call as %v, want busy", busy.Call.EndReason)
	}
	if err := bSess.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	<-aSess.Done()

	// Nobody answers: it rings out (2 s here) as missed.
	cSess, err := carol.PlaceCallTo(ctx, "bob", parley.CallOptions{})
	if err != nil {
		t.Fatal(err)
	}
	next(t, bob, func(ev parley.CallRingingEvent) bool { return ev.Call.ID == cSess.ID() })
	if err := cSess.WaitActive(ctx); !errors.Is(err, parley.ErrCallEnded) {
		t.Fatalf("carol's unanswered call: %v, want it ended", err)
	}
	missed := next(t, bob, func(ev parley.CallEndedEvent) bool { return ev.Call.ID == cSess.ID() })
	if missed.Call.EndReason != parley.CallEndMissed {
		t.Errorf("carol's unanswered call ended %v, want missed", missed.Call.EndReason)
	}

	// Cancelled: alice hangs up before bob answers.
	a2, err := alice.PlaceCallTo(ctx, "bob", parley.CallOptions{})
	if err != nil {
		t.Fatal(err)
	}
	next(t, bob, func(ev parley.CallRingingEvent) bool { return ev.Call.ID == a2.ID() })
	if err := a2.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	cancelled := next(t, bob, func(ev parley.CallEndedEvent) bool { return ev.Call.ID == a2.ID() })
	if cancelled.Call.EndReason != parley.CallEndCancelled {
		t.Errorf("alice's cancelled call ended %v, want cancelled", cancelled.Call.EndReason)
	}

	// What bob reads in his chats afterwards.
	outcomes := func(peer string) []parley.CallEndReason {
		conv, err := bob.OpenDirect(ctx, peer)
		if err != nil {
			t.Fatal(err)
		}
		msgs, _, err := bob.History(ctx, conv.ID, 0, 50)
		if err != nil {
			t.Fatal(err)
		}
		var out []parley.CallEndReason
		for _, m := range msgs {
			if m.System && m.Call != nil {
				out = append(out, m.Call.Outcome)
			}
		}
		return out
	}
	testenv.Eventually(t, wait, "bob's chats tell of every call", func() bool {
		c, a := outcomes("carol"), outcomes("alice")
		return len(c) == 2 && c[0] == parley.CallEndBusy && c[1] == parley.CallEndMissed &&
			len(a) == 2 && a[0] == parley.CallEndCompleted && a[1] == parley.CallEndCancelled
	})
	if m := outcomes("mallory"); len(m) != 0 {
		t.Errorf("a blocked call left messages %v", m)
	}
}

// TestCallWhereUDPIsBlocked: the media port the gateway announces cannot be
// reached (a firewall dropping UDP); both clients give up probing after
// 2 s, carry their media as frames on their connections, and hear each
// other.
func TestCallWhereUDPIsBlocked(t *testing.T) {
	blackhole := testenv.StartUDPProxy(t, "127.0.0.1:9", testenv.Impairment{Loss: 1})
	p := parleytest.Start(t, func(c *server.Config) { c.Gateway.PublicUDPAddr = blackhole.Addr() })
	ctx := ctxT(t)
	alice := dial(t, p.TCPAddr(), parley.WithPresenceFeed(false))
	bob := dial(t, p.TCPAddr(), parley.WithPresenceFeed(false))
	register(t, alice, "alice")
	register(t, bob, "bob")
	aMouth, bEar := testenv.NewMouth(testenv.StandardBursts(3)), &testenv.Ear{}
	aSess, err := alice.PlaceCallTo(ctx, "bob", parley.CallOptions{Input: aMouth})
	if err != nil {
		t.Fatal(err)
	}
	next(t, bob, func(ev parley.CallRingingEvent) bool { return ev.Call.ID == aSess.ID() })
	bSess, err := bob.JoinCall(ctx, aSess.ID(), parley.CallOptions{Output: bEar})
	if err != nil {
		t.Fatal(err)
	}
	answered := time.Now()
	testenv.Eventually(t, wait, "both on frames", func() bool {
		return aSess.Stats().Transport == parley.TransportFrames && bSess.Stats().Transport == parley.TransportFrames
	})
	t.Logf("both fell back to frames %s after the answer; the black hole swallowed %d probes", time.Since(answered).Round(10*time.Millisecond), blackhole.Dropped.Load())
	if blackhole.Dropped.Load() == 0 {
		t.Error("no probe reached the blocked UDP address: the fallback was not tested")
	}
	testenv.PlayAll(t, aMouth)
	testenv.RequireHeard(t, "alice -> bob (UDP blocked: frames)", testenv.Listen(aMouth, bEar, time.Second), 0.6)
}
