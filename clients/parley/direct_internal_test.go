package parley

import (
	"context"
	"testing"
	"time"

	"github.com/parleychat/parley/protocol/parleyv1"
)

// This device's own ACCEPTED event can arrive before the reply to its
// P2PAnswerRequest (found by the NAT lab): it must not be taken for
// another device answering the offer, which ended the session as
// "answered elsewhere" just as it connected. Another device's ACCEPTED
// still withdraws the offer.
func TestOwnAcceptedIsNotAnsweredElsewhere(t *testing.T) {
	c := &Client{cfg: defaultConfig(), log: defaultConfig().logger}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	defer c.cancel()
	c.events = newEventQueue(16, nil)
	defer c.events.stop()
	d, err := c.p2p()
	if err != nil {
		t.Fatal(err)
	}
	ev := func(kind parleyv1.P2PEvent_Kind, session, device string) *parleyv1.P2PEvent {
		return &parleyv1.P2PEvent{Kind: kind, Session: &parleyv1.P2PSession{SessionId: session, DeviceId: device,
			PeerId: "u-alice", PeerName: "alice"}}
	}
	next := func() Event {
		select {
		case e := <-c.Events():
			return e
		case <-time.After(200 * time.Millisecond):
			return nil
		}
	}

	c.mu.Lock()
	c.handleP2PEventLocked(ev(parleyv1.P2PEvent_KIND_OFFER, "p1", ""))
	c.mu.Unlock()
	if o, ok := next().(DirectOfferEvent); !ok || o.SessionID != "p1" {
		t.Fatalf("the offer was not announced: %#v", o)
	}
	c.mu.Lock()
	c.handleP2PEventLocked(ev(parleyv1.P2PEvent_KIND_ACCEPTED, "p1", d.deviceID))
	c.mu.Unlock()
	if e := next(); e != nil {
		t.Fatalf("this device's own acceptance produced %#v", e)
	}
	d.mu.Lock()
	kept := len(d.early["p1"])
	d.mu.Unlock()
	if kept != 1 {
		t.Errorf("the early ACCEPTED was not kept for the session (%d kept)", kept)
	}
	if len(c.DirectOffers()) != 1 {
		t.Errorf("the offer being accepted was dropped")
	}

	c.mu.Lock()
	c.handleP2PEventLocked(ev(parleyv1.P2PEvent_KIND_OFFER, "p2", ""))
	c.mu.Unlock()
	next()
	c.mu.Lock()
	c.handleP2PEventLocked(ev(parleyv1.P2PEvent_KIND_ACCEPTED, "p2", "another-device"))
	c.mu.Unlock()
	if e, ok := next().(DirectClosedEvent); !ok || e.SessionID != "p2" || e.Reason != "answered elsewhere" {
		t.Errorf("another device's acceptance: got %#v, want DirectClosedEvent answered elsewhere", e)
	}
}
