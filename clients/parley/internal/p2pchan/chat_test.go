package p2pchan

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// inbox is a History that also records what OnChat delivered.
type inbox struct {
	mu        sync.Mutex
	stored    map[string]bool
	delivered []ChatMessage
	puts      int
}

func newInbox() *inbox { return &inbox{stored: map[string]bool{}} }

func (h *inbox) Has(id string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.stored[id]
}

func (h *inbox) Put(m ChatMessage) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.stored[m.ID] = true
	h.puts++
	return nil
}

func (h *inbox) onChat(m ChatMessage) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.delivered = append(h.delivered, m)
}

func (h *inbox) list() []ChatMessage {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]ChatMessage(nil), h.delivered...)
}

func (h *inbox) count(id string) int {
	n := 0
	for _, m := range h.list() {
		if m.ID == id {
			n++
		}
	}
	return n
}

func withInbox(s *side) *inbox {
	in := newInbox()
	s.cfg.History = in
	s.cfg.OnChat = in.onChat
	return in
}

func TestHandshake(t *testing.T) {
	a, b := newSide(t), newSide(t)
	a.cfg.Client = "parley-go/test-a"
	ca, cb := connect(t, a, b, nil)
	if !ca.Connected() || !cb.Connected() {
		t.Fatal("not connected")
	}
	if !ca.Controlling() || cb.Controlling() {
		t.Fatal("sides mixed up")
	}
	if cb.PeerClient() != "parley-go/test-a" || ca.PeerClient() != "parley-go" {
		t.Errorf("hello clients: %q, %q", cb.PeerClient(), ca.PeerClient())
	}
	if ca.PeerDevice() != deviceIDOf(b.key.priv) {
		t.Errorf("peer device %s", ca.PeerDevice())
	}
	// The certificate carries the device key and nothing else matters.
	cs := ca.cur.conn.ConnectionState()
	if cs.TLS.NegotiatedProtocol != ALPN || !cs.SupportsDatagrams.Remote {
		t.Errorf("ALPN %q, datagrams %v", cs.TLS.NegotiatedProtocol, cs.SupportsDatagrams.Remote)
	}
}

func TestWrongKey(t *testing.T) {
	t.Run("dialer expects another key", func(t *testing.T) {
		a, b := newSide(t), newSide(t)
		a.cfg.PeerKey = newKey(t).pub
		b.cfg.PeerKey = a.key.pub
		ctx := testCtx(t)
		bctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		var berr error
		var wg sync.WaitGroup
		wg.Go(func() {
			var cb *Channel
			cb, berr = Accept(bctx, b.pc, b.cfg)
			if cb != nil {
				cb.Close()
			}
		})
		_, err := Dial(ctx, a.pc, b.pc.LocalAddr(), a.cfg)
		if !errors.Is(err, ErrPeerKey) {
			t.Errorf("Dial = %v, want ErrPeerKey", err)
		}
		wg.Wait()
		// The client refused before sending its certificate: b never
		// gets a channel.
		if berr == nil {
			t.Error("Accept succeeded with a dialer that refused it")
		}
	})
	t.Run("acceptor expects another key", func(t *testing.T) {
		a, b := newSide(t), newSide(t)
		a.cfg.PeerKey = b.key.pub
		b.cfg.PeerKey = newKey(t).pub
		ctx := testCtx(t)
		var berr error
		var wg sync.WaitGroup
		wg.Go(func() { _, berr = Accept(ctx, b.pc, b.cfg) })
		_, err := Dial(ctx, a.pc, b.pc.LocalAddr(), a.cfg)
		wg.Wait()
		if !errors.Is(berr, ErrPeerKey) {
			t.Errorf("Accept = %v, want ErrPeerKey", berr)
		}
		if !errors.Is(err, ErrRefused) {
			t.Errorf("Dial = %v, want ErrRefused", err)
		}
	})
}

func TestChatRoundTrip(t *testing.T) {
	a, b := newSide(t), newSide(t)
	ina, inb := withInbox(a), withInbox(b)
	var ackMu sync.Mutex
	var acks []string
	a.cfg.OnChatAck = func(id string) { ackMu.Lock(); acks = append(acks, id); ackMu.Unlock() }
	ca, cb := connect(t, a, b, nil)
	ctx := testCtx(t)

	m, err := ca.Send(ctx, "hello bob ☺")
	if err != nil {
		t.Fatal(err)
	}
	// Send returned after the ack, so b has stored it.
	got := inb.list()
	if len(got) != 1 || got[0].ID != m.ID || got[0].Text != "hello bob ☺" || got[0].SentAt.UnixMilli() != m.SentAt.UnixMilli() {
		t.Fatalf("b got %+v, sent %+v", got, m)
	}
	ackMu.Lock()
	if len(acks) != 1 || acks[0] != m.ID {
		t.Errorf("OnChatAck calls %v", acks)
	}
	ackMu.Unlock()
	if len(ca.Pending()) != 0 {
		t.Errorf("pending after ack: %v", ca.Pending())
	}

	// Both ways at once, many messages, without waiting for each ack: a
	// Send whose context has ended leaves its message queued, and every
	// message arrives once, in the order sent.
	const n = 200
	gaveUp, cancel := context.WithCancel(ctx)
	cancel()
	var wg sync.WaitGroup
	for _, dir := range []struct {
		from *Channel
		tag  string
	}{{ca, "a"}, {cb, "b"}} {
		wg.Go(func() {
			for i := range n {
				m := ChatMessage{ID: fmt.Sprintf("%s-%03d", dir.tag, i), Text: fmt.Sprintf("message %d ", i) + strings.Repeat("x", i*50)}
				if _, err := dir.from.SendMessage(gaveUp, m); err != nil && !errors.Is(err, context.Canceled) {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	waitFor(t, "all messages acknowledged", func() bool { return len(ca.Pending())+len(cb.Pending()) == 0 })
	for name, in := range map[string]*inbox{"a": ina, "b": inb} {
		tag := map[string]string{"a": "b", "b": "a"}[name]
		var ids []string
		for _, m := range in.list() {
			if strings.HasPrefix(m.ID, tag+"-") {
				ids = append(ids, m.ID)
			}
		}
		if len(ids) != n {
			t.Fatalf("%s got %d messages, want %d", name, len(ids), n)
		}
		for i, id := range ids {
			if want := fmt.Sprintf("%s-%03d", tag, i); id != want {
				t.Fatalf("%s: message %d is %s, want %s (order)", name, i, id, want)
			}
		}
	}

	// Refused arguments.
	for _, text := range []string{"", strings.Repeat("y", MaxTextBytes+1), "bad \xff utf8"} {
		if _, err := ca.Send(ctx, text); !errors.Is(err, ErrInvalid) {
			t.Errorf("Send(%.20q) = %v, want ErrInvalid", text, err)
		}
	}
	for _, id := range []string{" lead", "tab\there", strings.Repeat("z", 65)} {
		if _, err := ca.SendMessage(ctx, ChatMessage{ID: id, Text: "x"}); !errors.Is(err, ErrInvalid) {
			t.Errorf("SendMessage id %q = %v, want ErrInvalid", id, err)
		}
	}
	if _, err := ca.Send(ctx, strings.Repeat("é", MaxTextBytes/2)); err != nil {
		t.Errorf("16 KiB of text: %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	k := newKey(t)
	tests := []struct {
		name string
		cfg  Config
	}{
		{"no key", Config{PeerKey: k.pub}},
		{"no peer key", Config{Key: k.priv}},
		{"short peer key", Config{Key: k.priv, PeerKey: k.pub[:10]}},
		{"client with a newline", Config{Key: k.priv, PeerKey: k.pub, Client: "a\nb"}},
	}
	for _, tc := range tests {
		if _, err := Dial(testCtx(t), udp(t), udp(t).LocalAddr(), tc.cfg); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: Dial = %v, want ErrInvalid", tc.name, err)
		}
	}
	if _, err := Dial(testCtx(t), udp(t), nil, Config{Key: k.priv, PeerKey: k.pub}); !errors.Is(err, ErrInvalid) {
		t.Errorf("no peer address: %v", err)
	}
	cfg := Config{Key: k.priv, PeerKey: k.pub, IdleTimeout: 10 * time.Second}
	if err := cfg.validate(); err != nil || cfg.KeepAlivePeriod != 5*time.Second || cfg.HandshakeTimeout != DefaultHandshakeTimeout || cfg.Client != "parley-go" {
		t.Errorf("defaults: %+v, %v", cfg, err)
	}
}
