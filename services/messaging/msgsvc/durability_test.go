package msgsvc_test

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"

	"github.com/parleychat/parley/libs/testenv"
	"github.com/parleychat/parley/protocol/convid"
	"github.com/parleychat/parley/protocol/parleyv1"
)

// Messages, acks and memberships survive a nats-server restart on the same
// store; the running replica carries on where it was.
func TestSurvivesNATSRestart(t *testing.T) {
	dir, port := t.TempDir(), testenv.FreePort(t)
	ns := testenv.NATSAt(t, port, dir)
	e := &env{t: t, ns: ns}
	var err error
	if e.nc, err = nats.Connect(ns.ClientURL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.nc.Close)
	e.lookups = serveLookup(t, ns.ClientURL(), alice, bob, carol)
	r := e.start(t, testConfig())

	const ab = "dm.ualice.ubob"
	for range 40 {
		e.send(t, alice, ab, "before")
	}
	e.send(t, carol, convid.PublicRoom, "room")
	if err := e.ack(bob, ab, 33); err != nil {
		t.Fatal(err)
	}

	ns.Shutdown()
	ns.WaitForShutdown()
	e.ns = testenv.NATSAt(t, port, dir)
	testenv.Eventually(t, 10*time.Second, "reconnected", func() bool {
		return e.nc.IsConnected() && r.nc.IsConnected() && r.svc.Ready() == nil
	})
	// The lookup stand-in's connection reconnects too; wait until it
	// answers again before relying on it.
	testenv.Eventually(t, 10*time.Second, "lookup answers", func() bool {
		_, err := e.openDirect(alice, "bob")
		return err == nil
	})

	wantSeqs(t, "dm after restart", e.allHistory(t, bob, ab), 1, 40)
	bc := e.conversations(t, bob)
	if d := bc[ab]; d.GetLastSeq() != 40 || d.GetAckedSeq() != 33 || d.GetTitle() != "Alice" {
		t.Errorf("bob's dm after restart: %v", d)
	}
	if bc[convid.PublicRoom].GetLastSeq() != 1 {
		t.Errorf("room after restart: %v", bc[convid.PublicRoom])
	}
	// Numbering continues.
	if m := e.send(t, bob, ab, "after"); m.Seq != 41 {
		t.Errorf("first message after restart has seq %d, want 41", m.Seq)
	}
	// A fresh replica (empty cache) continues it too.
	r.stop()
	e.start(t, testConfig())
	if m := e.send(t, alice, ab, "fresh replica"); m.Seq != 42 {
		t.Errorf("seq %d from a fresh replica, want 42", m.Seq)
	}
	h, err := e.history(alice, &parleyv1.HistoryRequest{Conversation: ab, AfterSeq: proto.Uint64(30), Limit: 20})
	if err != nil {
		t.Fatal(err)
	}
	wantSeqs(t, "forward page across the restart", h.Messages, 31, 42)
}
