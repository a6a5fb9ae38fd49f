package parley

import (
	"context"
	"errors"
	"net"
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
	c, d := p2pClient(t)
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
	kept := len(d.early["p1"].evs)
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

// The peer's decline can be handled before GoDirect's goroutine has made
// the session from its open reply (the reader hands the reply over and
// reads on): the CLOSED must wait for the session and end it as rejected,
// not be dropped and leave GoDirect waiting for its deadline
// (TestDirectRejected failed 5 of 40 runs so). Early events for a session
// never made are dropped after earlyTTL.
func TestEarlyDeclineEndsTheSession(t *testing.T) {
	c, d := p2pClient(t)
	closed := &parleyv1.P2PEvent{Kind: parleyv1.P2PEvent_KIND_CLOSED, Session: &parleyv1.P2PSession{SessionId: "p1",
		PeerName: "bob", CloseReason: parleyv1.P2PSession_CLOSE_REASON_REJECTED}}
	c.mu.Lock()
	c.handleP2PEventLocked(closed)
	c.mu.Unlock()

	sock, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	s := c.newDirect(d, &parleyv1.P2PSession{SessionId: "p1", PeerName: "bob", Controlling: true}, sock)
	select {
	case <-s.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the session the peer declined before its reply was handled is still open")
	}
	if !errors.Is(s.Err(), ErrDirectRejected) {
		t.Fatalf("Err = %v, want ErrDirectRejected", s.Err())
	}

	// An event for a session that is never made (closed here already)
	// does not stay: the next early event after earlyTTL drops it.
	d.mu.Lock()
	d.keepEarlyLocked("gone", closed, time.Now().Add(-2*earlyTTL))
	d.keepEarlyLocked("p2", closed, time.Now())
	_, stale := d.early["gone"]
	d.mu.Unlock()
	if stale {
		t.Error("an early event older than earlyTTL was kept")
	}
}

// p2pClient is a Client with no connection and its direct-session state,
// for feeding P2P events to by hand; it is stopped at the test's end.
func p2pClient(t *testing.T) (*Client, *directState) {
	t.Helper()
	c := &Client{cfg: defaultConfig(), log: defaultConfig().logger}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	t.Cleanup(c.cancel)
	c.events = newEventQueue(16, nil)
	t.Cleanup(c.events.stop)
	d, err := c.p2p()
	if err != nil {
		t.Fatal(err)
	}
	return c, d
}
