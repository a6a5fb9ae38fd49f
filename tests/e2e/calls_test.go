package e2e

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/parleychat/parley/clients/parley"
	"github.com/parleychat/parley/libs/testenv"
)

// callPair is alice on one gateway calling bob on another, both talking.
type callPair struct {
	alice, bob           *parley.Client
	aliceName, bobName   string
	aSess, bSess         *parley.CallSession
	aMouth, bMouth       *mouth
	aEar, bEar           *ear
	callID, conversation string
}

// connectCall registers alice at aAddr and bob at bAddr, has alice call bob
// and bob answer, and waits until both send over transport.
func connectCall(t *testing.T, aAddr, bAddr string, sig testenv.Bursts, transport string) *callPair {
	t.Helper()
	p := &callPair{aMouth: newMouth(sig), bMouth: newMouth(sig), aEar: &ear{}, bEar: &ear{}}
	var as, bs *parley.Session
	p.alice, as = registered(t, "tcp://"+aAddr, "alice")
	p.bob, bs = registered(t, "tcp://"+bAddr, "bob")
	p.aliceName, p.bobName = as.Username, bs.Username
	var err error
	p.aSess, err = p.alice.PlaceCallTo(ctxS(t), p.bobName, parley.CallOptions{Input: p.aMouth, Output: p.aEar})
	if err != nil {
		t.Fatalf("alice calls bob: %v", err)
	}
	t.Cleanup(func() { _ = p.aSess.Hangup(ctxS(t)) })
	call := ringing(t, p.bob)
	if call.ID != p.aSess.ID() || call.CallerName != p.aliceName {
		t.Fatalf("bob's phone rings for %s from %q, want %s from %q", call.ID, call.CallerName, p.aSess.ID(), p.aliceName)
	}
	p.callID, p.conversation = call.ID, call.Conversation
	p.bSess, err = p.bob.JoinCall(ctxS(t), call.ID, parley.CallOptions{Input: p.bMouth, Output: p.bEar})
	if err != nil {
		t.Fatalf("bob answers: %v", err)
	}
	t.Cleanup(func() { _ = p.bSess.Hangup(ctxS(t)) })
	if err := p.aSess.WaitActive(ctxS(t)); err != nil {
		t.Fatalf("alice waits for the answer: %v", err)
	}
	onTransport(t, p.aSess, transport)
	onTransport(t, p.bSess, transport)
	return p
}

// TestCallAcrossGateways: alice on one gateway calls bob on another; both
// talk at once; every burst each one says is heard by the other, and the
// hang-up ends the call for both and leaves "Call ended" in their chat.
func TestCallAcrossGateways(t *testing.T) {
	c := newCluster(t, 2, clusterOpts{relays: 2})
	p := connectCall(t, c.gateways[0].tcp, c.gateways[1].tcp, standardBursts(8), parley.TransportUDP)

	playAll(t, p.aMouth, p.bMouth)
	requireHeard(t, "alice -> bob (udp, 2 gateways)", listen(p.aMouth, p.bEar, time.Second), 0.6)
	requireHeard(t, "bob -> alice (udp, 2 gateways)", listen(p.bMouth, p.aEar, time.Second), 0.6)
	t.Logf("alice's stats: %+v", p.aSess.Stats())
	t.Logf("bob's stats: %+v", p.bSess.Stats())

	if err := p.aSess.Hangup(ctxS(t)); err != nil {
		t.Fatalf("alice hangs up: %v", err)
	}
	ended := callEnded(t, p.bob, p.callID, 10*time.Second)
	if ended.EndReason != parley.CallEndCompleted {
		t.Errorf("bob's call ended %v, want completed", ended.EndReason)
	}
	select {
	case <-p.bSess.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("bob's call session still runs after alice hung up")
	}
	// The chat says so, with the call's length.
	testenv.Eventually(t, 10*time.Second, "a 'Call ended' message in bob's chat", func() bool {
		msgs, _, err := p.bob.History(ctxS(t), p.conversation, 0, 20)
		if err != nil {
			return false
		}
		for _, m := range msgs {
			if m.System && m.Call != nil && m.Call.CallID == p.callID && m.Call.Outcome == parley.CallEndCompleted &&
				m.Call.Duration >= 5*time.Second && strings.HasPrefix(m.Text, "Call ended") {
				return true
			}
		}
		return false
	})
	// A new call can be placed once this one ended.
	again, err := p.bob.PlaceCallTo(ctxS(t), p.aliceName, parley.CallOptions{})
	if err != nil {
		t.Fatalf("bob calls alice after the call ended: %v", err)
	}
	if err := again.Hangup(ctxS(t)); err != nil && !errors.Is(err, parley.ErrCallEnded) {
		t.Fatalf("bob cancels: %v", err)
	}
}
