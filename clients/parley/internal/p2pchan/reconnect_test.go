package p2pchan

import (
	"bytes"
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"
)

// shortTimeouts make a lost connection noticed in about a second and a
// half instead of §20.5's 30 s: the behaviour is the same, the tests
// quicker.
func shortTimeouts(s *side, st *states) {
	s.cfg.IdleTimeout = 1500 * time.Millisecond
	s.cfg.KeepAlivePeriod = 500 * time.Millisecond
	s.cfg.HandshakeTimeout = time.Second
	s.cfg.OnState = st.on
}

type dupCountingInbox struct {
	*inbox
	dups atomic.Int32 // Has answered true: a resent message recognised
}

func (h *dupCountingInbox) Has(id string) bool {
	ok := h.inbox.Has(id)
	if ok {
		h.dups.Add(1)
	}
	return ok
}

func TestChatAcrossBrokenPath(t *testing.T) {
	a, b := newSide(t), newSide(t)
	sa, sb := &states{}, &states{}
	shortTimeouts(a, sa)
	shortTimeouts(b, sb)
	inb := &dupCountingInbox{inbox: newInbox()}
	b.cfg.History, b.cfg.OnChat = inb, inb.onChat
	fwd := newForwarder(t, b.pc.LocalAddr())
	ca, _ := connect(t, a, b, fwd.Addr())
	ctx := testCtx(t)
	if _, err := ca.Send(ctx, "before"); err != nil {
		t.Fatal(err)
	}

	// 1. The path goes dead both ways for longer than the idle timeout:
	// both connections die, a message sent meanwhile waits and arrives
	// once on the new connection.
	fwd.blockAB.Store(true)
	fwd.blockBA.Store(true)
	sent := make(chan error, 1)
	var m1 ChatMessage
	go func() {
		var err error
		m1, err = ca.Send(ctx, "through the outage")
		sent <- err
	}()
	waitFor(t, "both sides to lose the connection", func() bool {
		_, da := sa.counts()
		_, db := sb.counts()
		return da >= 1 && db >= 1
	})
	if len(inb.list()) != 1 {
		t.Fatalf("a message crossed a dead path: %v", inb.list())
	}
	fwd.blockAB.Store(false)
	fwd.blockBA.Store(false)
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	if n := inb.count(m1.ID); n != 1 {
		t.Fatalf("delivered %d times, want once", n)
	}
	if ua, _ := sa.counts(); ua < 2 {
		t.Fatalf("a saw %d connections, want a new one", ua)
	}

	// 2. Only the way back breaks: b stores the message but a never hears
	// the ack, and sends it again on the next connection. b recognises
	// it, acknowledges it, and delivers it once.
	_, downsBefore := sa.counts()
	fwd.blockBA.Store(true)
	go func() {
		var err error
		m1, err = ca.Send(ctx, "ack lost")
		sent <- err
	}()
	waitFor(t, "b to get the message", func() bool { return len(inb.list()) == 3 })
	waitFor(t, "a to lose the connection", func() bool { _, d := sa.counts(); return d > downsBefore })
	fwd.blockBA.Store(false)
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	if n := inb.count(m1.ID); n != 1 {
		t.Fatalf("delivered %d times, want once", n)
	}
	if inb.dups.Load() < 1 {
		t.Fatal("the resent message was not recognised as a duplicate")
	}
	if got := inb.list(); got[0].Text != "before" || got[1].Text != "through the outage" || got[2].Text != "ack lost" {
		t.Fatalf("order: %v", got)
	}
}

func TestLossyPath(t *testing.T) {
	a, b := newSide(t), newSide(t)
	inb := withInbox(b)
	k := newSink(t, b)
	fwd := newForwarder(t, b.pc.LocalAddr())
	fwd.lossPerMille.Store(50)
	fwd.dupPerMille.Store(50)
	ca, _ := connect(t, a, b, fwd.Addr())
	ctx := testCtx(t)

	gaveUp, cancel := context.WithCancel(ctx)
	cancel()
	const n = 100
	for i := range n {
		ca.SendMessage(gaveUp, ChatMessage{ID: fmt.Sprintf("m%03d", i), Text: fmt.Sprint("text ", i)})
	}
	data := randomBytes(t, 2<<20)
	if err := ca.SendFile(ctx, bytes.NewReader(data), int64(len(data)), FileOptions{TransferID: NewID(), Name: "lossy"}); err != nil {
		t.Fatal(err)
	}
	checkReceived(t, k.next(t), data)
	waitFor(t, "all messages acknowledged", func() bool { return len(ca.Pending()) == 0 })
	got := inb.list()
	if len(got) != n {
		t.Fatalf("%d messages delivered, want %d", len(got), n)
	}
	for i, m := range got {
		if m.ID != fmt.Sprintf("m%03d", i) {
			t.Fatalf("message %d is %s", i, m.ID)
		}
	}
	// §20.5: no UDP payload above 1452 bytes (the relay's limit less its
	// framing); this implementation keeps them at 1252.
	if max := fwd.maxPayload.Load(); max > packetSize || max < 1200 {
		t.Fatalf("largest UDP payload %d bytes, want 1200..%d", max, packetSize)
	}
}

func TestFileResumeAcrossBrokenPath(t *testing.T) {
	a, b := newSide(t), newSide(t)
	sa, sb := &states{}, &states{}
	shortTimeouts(a, sa)
	shortTimeouts(b, sb)
	k := newSink(t, b)
	fwd := newForwarder(t, b.pc.LocalAddr())
	ca, _ := connect(t, a, b, fwd.Addr())

	data := randomBytes(t, 8<<20)
	cr := &countingReader{r: bytes.NewReader(data)}
	at := &attempts{cr: cr}
	var broke atomic.Bool
	at.onCall = func(done int64) {
		if done >= 2<<20 && !broke.Swap(true) {
			fwd.blockAB.Store(true)
			fwd.blockBA.Store(true)
		}
	}
	res := make(chan error, 1)
	go func() {
		res <- ca.SendFile(testCtx(t), cr, int64(len(data)), FileOptions{TransferID: NewID(), Name: "big.bin", SHA256: sha(data), Progress: at.progress})
	}()
	// The receiver notices the cut when its connection dies.
	cut := k.next(t)
	if cut.err == nil || cut.held <= 0 {
		t.Fatalf("first attempt ended with %v, %d bytes held", cut.err, cut.held)
	}
	waitFor(t, "a to lose the connection", func() bool { _, d := sa.counts(); return d >= 1 })
	fwd.blockAB.Store(false)
	fwd.blockBA.Store(false)
	if err := <-res; err != nil {
		t.Fatal(err)
	}
	checkReceived(t, k.next(t), data)
	last := at.last()
	if at.count() != 2 || last.offset != cut.held {
		t.Fatalf("attempts %+v; the receiver held %d", at.starts, cut.held)
	}
	if got, want := cr.n.Load()-last.read, int64(len(data))-cut.held; got != want {
		t.Fatalf("the resumed attempt read %d bytes, want %d", got, want)
	}
	t.Logf("cut at %d of %d bytes; resumed from there", cut.held, len(data))
}

// The controlling device restarts (its socket and channel gone without a
// word) and dials again: the controlled side takes the new connection at
// once, though the old one has not timed out, and sends what waited.
func TestPeerRestart(t *testing.T) {
	a, b := newSide(t), newSide(t)
	sb := &states{}
	b.cfg.OnState = sb.on
	ca, cb := connect(t, a, b, nil)
	a.pc.Close()
	waitEnded(t, ca)

	ctx := testCtx(t)
	sent := make(chan error, 1)
	go func() {
		_, err := cb.Send(ctx, "while you were away")
		sent <- err
	}()
	a2 := &side{pc: udp(t), key: a.key, cfg: Config{Key: a.key.priv, PeerKey: b.key.pub}}
	in := withInbox(a2)
	ca2, err := Dial(ctx, a2.pc, b.pc.LocalAddr(), a2.cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer ca2.Close()
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	if got := in.list(); len(got) != 1 || got[0].Text != "while you were away" {
		t.Fatalf("the restarted side got %v", got)
	}
	if ups, _ := sb.counts(); ups != 2 {
		t.Fatalf("b saw %d connections come up, want 2", ups)
	}
}

// After a path outage, Poke makes QUIC send what the outage lost at once
// (its acknowledgement shows the loss), not at its next probe timeout,
// which has grown to seconds: after 4 s of loss at loopback round trips
// quic-go's probe timeouts double from ~30 ms and the next falls ~3.5 s
// after the path came back.
func TestPokeResendsAtOnce(t *testing.T) {
	a, b := newSide(t), newSide(t)
	inb := newInbox()
	b.cfg.History, b.cfg.OnChat = inb, inb.onChat
	fwd := newForwarder(t, b.pc.LocalAddr())
	ca, _ := connect(t, a, b, fwd.Addr())
	ctx := testCtx(t)
	if _, err := ca.Send(ctx, "before"); err != nil {
		t.Fatal(err)
	}
	fwd.blockAB.Store(true)
	sent := make(chan error, 1)
	go func() {
		_, err := ca.Send(ctx, "through the outage")
		sent <- err
	}()
	time.Sleep(4 * time.Second) // the outage
	if len(inb.list()) != 1 {
		t.Fatalf("a message crossed a dead path: %v", inb.list())
	}
	fwd.blockAB.Store(false)
	back := time.Now()
	ca.Poke()
	select {
	case err := <-sent:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(1500 * time.Millisecond):
		t.Fatalf("the message lost in the outage was not sent again within 1.5 s of Poke")
	}
	t.Logf("delivered %v after the path came back", time.Since(back).Round(time.Millisecond))
	if got := inb.list(); len(got) != 2 || got[1].Text != "through the outage" {
		t.Fatalf("received %v", got)
	}
}
