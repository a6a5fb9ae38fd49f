package server_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"

	"github.com/parleychat/parley/libs/rpc"
	"github.com/parleychat/parley/libs/subject"
	"github.com/parleychat/parley/protocol/errcode"
	"github.com/parleychat/parley/protocol/parleyv1"
	"github.com/parleychat/parley/protocol/wire"
)

// arrival is a frame and when the client's reader got it.
type arrival struct {
	f  *parleyv1.Frame
	at time.Time
}

// readAll reads c's frames on a goroutine of its own, stamping each.
func readAll(c *client) <-chan arrival {
	out := make(chan arrival, 16)
	go func() {
		defer close(out)
		for {
			b, err := c.read(readTimeout)
			if err != nil {
				return
			}
			f, err := wire.Decode(b)
			if err != nil {
				return
			}
			out <- arrival{f, time.Now()}
		}
	}()
	return out
}

func next(t *testing.T, who string, ch <-chan arrival) arrival {
	t.Helper()
	select {
	case a, ok := <-ch:
		if !ok {
			t.Fatalf("%s: connection ended", who)
		}
		return a
	case <-time.After(readTimeout):
		t.Fatalf("%s: nothing within %s", who, readTimeout)
	}
	return arrival{}
}

// TestOwnEventWithReply: the event of the message a connection sends waits
// for the SendReply and arrives with it, first (one write, one wake-up for
// the client), while the sender's other connections and the peer get it at
// once; an error reply releases it the same way, and a group's (sheddable)
// event is held as a private chat's is.
func TestOwnEventWithReply(t *testing.T) {
	e := startGateway(t, nil)
	alice1 := loggedIn(t, e, "alice", noFeed)
	a1, a2, b := readAll(alice1), readAll(loggedIn(t, e, "alice", noFeed)), readAll(loggedIn(t, e, "bob", noFeed))

	// A messaging stand-in that publishes the events, then answers only
	// once alice's other connection and bob have the event: a held event
	// cannot reach alice1 before the answer, one not held would.
	others := make(chan struct{})
	replied := make(chan time.Time, 1)
	var seq uint64
	sub, err := e.nc.Subscribe(subject.MsgSend, func(m *nats.Msg) {
		req := new(parleyv1.SendRequest)
		if err := proto.Unmarshal(m.Data, req); err != nil {
			t.Error(err)
			return
		}
		seq++
		msg := &parleyv1.Message{Conversation: req.GetConversation(), Seq: seq, Id: seq, SenderId: "u-alice", SenderName: "alice",
			Text: req.GetText(), ClientKey: req.GetClientKey(), SentAtUnixMs: 1}
		ev, _ := proto.Marshal(&parleyv1.MessageEvent{Message: msg})
		_ = e.nc.Publish(subject.UserMessages("u-alice"), ev)
		_ = e.nc.Publish(subject.UserMessages("u-bob"), ev)
		_ = e.nc.Flush()
		select {
		case <-others:
		case <-time.After(readTimeout):
		}
		replied <- time.Now()
		if req.GetText() == "refuse" {
			_ = rpc.RespondError(m, errcode.New(parleyv1.ErrorCode_ERROR_CODE_RATE_LIMITED, "slow down"))
			return
		}
		_ = rpc.Respond(m, &parleyv1.SendReply{Message: msg})
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := e.nc.Flush(); err != nil {
		t.Fatal(err)
	}

	for i, tc := range []struct {
		conv, text string
		want       func(*parleyv1.Frame) bool
	}{
		{"dm.u-alice.u-bob", "hello", func(f *parleyv1.Frame) bool { return f.GetSendReply().GetMessage().GetClientKey() == "k0" }},
		{"dm.u-alice.u-bob", "refuse", func(f *parleyv1.Frame) bool {
			return f.GetError().GetCode() == parleyv1.ErrorCode_ERROR_CODE_RATE_LIMITED
		}},
		// A group's events are sheddable; the sender's own rides with the reply too.
		{"group.gabcdefghijklmnopqrst", "to the group", func(f *parleyv1.Frame) bool {
			return f.GetSendReply().GetMessage().GetClientKey() == "k2"
		}},
	} {
		key := fmt.Sprintf("k%d", i)
		rid := uint32(100 + i)
		alice1.send(&parleyv1.Frame{RequestId: rid, Body: &parleyv1.Frame_Send{Send: &parleyv1.SendRequest{Conversation: tc.conv, Text: tc.text, ClientKey: key}}})
		for _, o := range []struct {
			who string
			ch  <-chan arrival
		}{{"alice2", a2}, {"bob", b}} {
			if got := next(t, o.who, o.ch).f.GetMessage().GetMessage(); got.GetClientKey() != key {
				t.Fatalf("%s: got %v, want the event of %s at once", o.who, got, key)
			}
		}
		others <- struct{}{}
		at := <-replied
		ev, reply := next(t, "alice1", a1), next(t, "alice1", a1)
		if ev.f.GetMessage().GetMessage().GetClientKey() != key || ev.f.GetRequestId() != 0 {
			t.Fatalf("%q: alice1's first frame %v, want its own event", tc.text, ev.f)
		}
		if ev.at.Before(at) {
			t.Errorf("%q: alice1 had its own event %v before the answer was sent: not held for the reply", tc.text, at.Sub(ev.at))
		}
		if reply.f.GetRequestId() != rid || !tc.want(reply.f) {
			t.Fatalf("%q: alice1's second frame %v, want the answer to %d", tc.text, reply.f, rid)
		}
	}
}
