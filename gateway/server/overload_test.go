package server_test

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"

	"github.com/parleychat/parley/gateway/server"
	"github.com/parleychat/parley/libs/subject"
	"github.com/parleychat/parley/protocol/convid"
	"github.com/parleychat/parley/protocol/parleyv1"
)

// post stores a message in m as the messaging service does (the next seq
// of conv) and publishes its MessageEvent on nc where the service would:
// the room's subject, or each member's for a private chat.
func post(t testing.TB, nc *nats.Conn, m *standInMessaging, conv, sender, text string) *parleyv1.Message {
	t.Helper()
	m.mu.Lock()
	m.ids++
	msg := &parleyv1.Message{Conversation: conv, Seq: uint64(len(m.convs[conv]) + 1), Id: m.ids,
		SenderId: sender, SenderName: strings.TrimPrefix(sender, "u-"), SentAtUnixMs: 1_700_000_000_000, Text: text}
	m.convs[conv] = append(m.convs[conv], msg)
	m.mu.Unlock()
	b, err := proto.Marshal(&parleyv1.MessageEvent{Message: msg})
	if err != nil {
		t.Fatal(err)
	}
	subjects := []string{subject.RoomMessages("public")}
	if id, _ := convid.Parse(conv); id.Kind() == convid.KindDirect {
		a, b := id.Users()
		subjects = []string{subject.UserMessages(a), subject.UserMessages(b)}
	}
	for _, s := range subjects {
		if err := nc.Publish(s, b); err != nil {
			t.Error(err)
		}
	}
	return msg
}

// dialTinyBuffer connects with a 4 KiB receive buffer, so the kernel holds
// little for a client that reads slowly or not at all.
func dialTinyBuffer(t *testing.T, e *env) *client {
	t.Helper()
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
	}}
	raw, err := d.Dial("tcp", e.srv.TCPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	return newStreamClient(t, raw)
}

// TestRoomFloodSlowReader: a flood of room messages to a client that reads
// slowly but steadily. The gateway sheds room events for it instead of
// disconnecting it (docs/protocol.md §11); its own reply and a private
// message sent in the middle of the flood overtake the room events
// published after them; the room events it did not get live are exactly
// those it reads back with HistoryRequest (§15.3): every stored message is
// delivered live or read from history, each once and in order.
func TestRoomFloodSlowReader(t *testing.T) {
	e := startGateway(t, func(c *server.Config) {
		c.SendQueueFrames = 64
		c.SendQueueBytes = 64 << 10
		c.WriteTimeout = 5 * time.Second
	})
	msgs := startStandInMessaging(t, e.nc)
	slow := dialTinyBuffer(t, e)
	sess := slow.login("slow", noFeed)
	me := sess.GetUserId()

	const n = 3000
	text := strings.Repeat("r", 1000)
	dm := dmID(me, "u-friend")
	var published sync.WaitGroup
	published.Go(func() {
		for i := range n {
			post(t, e.nc, msgs, "room.public", "u-poster", fmt.Sprint(i+1, " ", text))
			if i+1 == n/2 {
				// In the middle of the flood: a private message to the
				// slow reader, and a request of its own.
				post(t, e.nc, msgs, dm, "u-friend", "private, in the middle")
				if err := e.nc.Flush(); err != nil {
					t.Error(err)
				}
				slow.send(&parleyv1.Frame{RequestId: 77, Body: &parleyv1.Frame_Ping{Ping: &parleyv1.Ping{Nonce: 77}}})
			}
		}
		if err := e.nc.Flush(); err != nil {
			t.Error(err)
		}
	})

	// Read slowly (a millisecond a frame) until the last room message, the
	// private message and the Pong have all arrived.
	var (
		live         []uint64 // room seqs received live, in order
		dmAt, pongAt = -1, -1 // index in live when each arrived
		dmAfterSeq   uint64   // the room seq read just before the private message
		deadline              = time.Now().Add(60 * time.Second)
		lastSeq      uint64   = 0
	)
	for lastSeq < n || dmAt < 0 || pongAt < 0 {
		if time.Now().After(deadline) {
			t.Fatalf("after 60s: last room seq %d, private message at %d, pong at %d", lastSeq, dmAt, pongAt)
		}
		f := slow.recv()
		time.Sleep(time.Millisecond)
		switch {
		case f.GetMessage() != nil && f.GetMessage().GetMessage().GetConversation() == "room.public":
			seq := f.GetMessage().GetMessage().GetSeq()
			if seq <= lastSeq {
				t.Fatalf("room seq %d after %d: live events out of order or repeated", seq, lastSeq)
			}
			if want := fmt.Sprint(seq, " ", text); f.GetMessage().GetMessage().GetText() != want {
				t.Fatalf("room seq %d carries the wrong text", seq)
			}
			lastSeq = seq
			live = append(live, seq)
		case f.GetMessage() != nil && f.GetMessage().GetMessage().GetConversation() == dm:
			dmAt, dmAfterSeq = len(live), lastSeq
			if lastSeq == n {
				t.Errorf("the private message came after the last room message")
			}
		case f.GetPong() != nil:
			if f.GetRequestId() != 77 || f.GetPong().GetNonce() != 77 {
				t.Fatalf("pong %v", f)
			}
			pongAt = len(live)
			if lastSeq == n {
				t.Errorf("the reply came after the last room message")
			}
		case f.GetError() != nil:
			t.Fatalf("error during the flood: %v", f.GetError())
		default:
			t.Fatalf("unexpected frame %v", f)
		}
	}
	published.Wait()
	shed := e.metric("parley_gateway_events_shed_total", nil)
	t.Logf("%d of %d room messages live (%v shed); the private message (published after room seq %d) came after %d room events (the last seq %d), the pong after %d",
		len(live), n, shed, n/2, dmAt, dmAfterSeq, pongAt)
	if shed == 0 || len(live) == n {
		t.Fatalf("nothing was shed (%d of %d live): the flood did not outrun the reader, the test shows nothing", len(live), n)
	}
	if v := e.metric("parley_gateway_slow_consumer_disconnects_total", nil); v != 0 {
		t.Fatalf("slow consumer disconnects = %v: a client that reads must not be cut", v)
	}

	// The repair, as §15.3 says: each run of missing seqs from history.
	got := make(map[uint64]bool, n)
	for _, s := range live {
		got[s] = true
	}
	repaired := 0
	for seq := uint64(1); seq <= n; seq++ {
		if got[seq] {
			continue
		}
		after := seq - 1
		r := slow.request(&parleyv1.Frame{Body: &parleyv1.Frame_History{History: &parleyv1.HistoryRequest{
			Conversation: "room.public", AfterSeq: &after, Limit: 200}}})
		h := r.GetHistoryReply()
		if h == nil || len(h.GetMessages()) == 0 {
			t.Fatalf("history after %d: %v", after, r)
		}
		for _, m := range h.GetMessages() {
			s := m.GetSeq()
			if got[s] {
				break // the run ended
			}
			if want := fmt.Sprint(s, " ", text); m.GetText() != want {
				t.Fatalf("history seq %d carries the wrong text", s)
			}
			got[s] = true
			repaired++
			seq = s
		}
	}
	if len(got) != n || len(live)+repaired != n {
		t.Fatalf("live %d + repaired %d, %d distinct: want every one of %d seqs once", len(live), repaired, len(got), n)
	}
	slow.ping(5) // still connected
}

// TestRoomSlowConsumer: under a flood of room messages a client that never
// reads is disconnected as a slow consumer once a write to it has made no
// progress for -write-timeout, alone: the clients that read get every
// message, in order.
func TestRoomSlowConsumer(t *testing.T) {
	e := startGateway(t, func(c *server.Config) {
		// The readers' backlog (at most 100 messages, below) stays under
		// the queue's high-water mark (128 frames): nothing is shed for them.
		c.SendQueueFrames = 256
		c.SendQueueBytes = 1 << 20
		c.WriteTimeout = 2 * time.Second
	})
	stuck := dialTinyBuffer(t, e)
	ss := stuck.login("stuck", noFeed)
	stuckConn := e.presence.connOf(ss.GetSessionId()).GetConnId()

	// Three readers read every frame in goroutines and report each
	// message's seq.
	type reader struct {
		seqs    chan uint64
		readErr chan error
		got     uint64
	}
	var readers []*reader
	for i := range 3 {
		c := dialTCP(t, e)
		c.login(fmt.Sprint("reader", i), noFeed)
		r := &reader{seqs: make(chan uint64, 1<<16), readErr: make(chan error, 1)}
		readers = append(readers, r)
		go func() {
			for {
				b, err := c.read(readTimeout)
				if err != nil {
					r.readErr <- err
					close(r.seqs)
					return
				}
				f := new(parleyv1.Frame)
				if err := proto.Unmarshal(b, f); err == nil && f.GetMessage() != nil {
					r.seqs <- f.GetMessage().GetMessage().GetSeq()
				}
			}
		}()
	}

	// Publish as messaging would, 1 KiB texts, until the stuck client is
	// gone, in bursts of 25, keeping every reader at most 100 messages
	// behind.
	text := strings.Repeat("m", 1024)
	var published uint64
	catchUp := func(r *reader, upTo uint64) {
		for r.got < upTo {
			seq, ok := <-r.seqs
			if !ok {
				t.Fatalf("reader after %d of %d messages: %v", r.got, published, <-r.readErr)
			}
			r.got++
			if seq != r.got {
				t.Fatalf("reader got seq %d, want %d", seq, r.got)
			}
		}
	}
	deadline := time.Now().Add(60 * time.Second)
	for !e.presence.Disconnected(stuckConn) {
		if time.Now().After(deadline) {
			t.Fatalf("stuck client still connected after %d messages", published)
		}
		for range 25 {
			published++
			b, _ := proto.Marshal(&parleyv1.MessageEvent{Message: &parleyv1.Message{
				Conversation: "room.public", Seq: published, Id: published, SenderId: "u-x", SenderName: "x", Text: text,
			}})
			if err := e.nc.Publish(subject.RoomMessages("public"), b); err != nil {
				t.Fatal(err)
			}
		}
		if err := e.nc.Flush(); err != nil {
			t.Fatal(err)
		}
		for _, r := range readers {
			if published > 100 {
				catchUp(r, published-100)
			}
		}
		time.Sleep(5 * time.Millisecond) // about 5,000 messages a second at most
	}
	for _, r := range readers {
		catchUp(r, published)
	}
	if n := e.metric("parley_gateway_slow_consumer_disconnects_total", nil); n != 1 {
		t.Errorf("slow consumer metric = %v, want 1", n)
	}
	if n := e.metric("parley_gateway_errors_sent_total", map[string]string{"code": "SLOW_CONSUMER"}); n != 1 {
		t.Errorf("SLOW_CONSUMER errors metric = %v, want 1", n)
	}
	if n := e.metric("parley_gateway_authenticated_connections", nil); n != 3 {
		t.Errorf("authenticated connections = %v, want the 3 readers", n)
	}
	// What the stuck client finally reads ends with the close (its last
	// write failed: no error frame can follow a piece cut short).
	for {
		b, err := stuck.read(readTimeout)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatal("stuck client's connection still open")
			}
			break
		}
		_ = b
	}
	t.Logf("stuck client disconnected after %d messages", published)
}
