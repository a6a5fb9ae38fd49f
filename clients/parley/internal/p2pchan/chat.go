package p2pchan

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"sync"
	"time"

	"github.com/parleychat/parley/clients/parley/internal/devkey"
	"github.com/parleychat/parley/protocol/parleyv1"
)

// ChatMessage is a direct chat message (§20.6).
type ChatMessage struct {
	ID     string // 1-64 printable characters, unique per sender
	Text   string // UTF-8, at most MaxTextBytes
	SentAt time.Time
}

// History is where the receiver keeps direct messages: the consumer's
// store (Parley's clients mark them direct). Has tells an id already
// stored, so a message resent after a reconnect is acknowledged again but
// delivered once. Put stores; if it fails the message is not
// acknowledged, and the peer sends it again on its next connection.
// Calls are serialised. Ids are the peer's: keep one History per peer.
type History interface {
	Has(id string) bool
	Put(m ChatMessage) error
}

// MemoryHistory is a History in memory: duplicates are recognised for
// the life of the process only.
type MemoryHistory struct {
	mu  sync.Mutex
	ids map[string]bool
}

// NewMemoryHistory returns an empty MemoryHistory.
func NewMemoryHistory() *MemoryHistory { return &MemoryHistory{ids: map[string]bool{}} }

// Has reports whether id was stored.
func (h *MemoryHistory) Has(id string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.ids[id]
}

// Put stores m's id.
func (h *MemoryHistory) Put(m ChatMessage) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ids[m.ID] = true
	return nil
}

var _ History = (*MemoryHistory)(nil)

// outMsg is an unacknowledged outgoing message.
type outMsg struct {
	msg   ChatMessage
	seq   uint64        // order of sending; a session writes each seq once
	acked chan struct{} // closed on the peer's ack
}

func (m *outMsg) frame() *parleyv1.DirectFrame {
	return &parleyv1.DirectFrame{Body: &parleyv1.DirectFrame_Chat{Chat: &parleyv1.DirectChat{
		Id: m.msg.ID, Text: m.msg.Text, SentAtUnixMs: m.msg.SentAt.UnixMilli(),
	}}}
}

// NewID returns a random id for a message or a transfer: 22 base64url
// characters (128 bits from crypto/rand).
func NewID() string {
	var b [16]byte
	rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func deviceIDOf(key ed25519.PrivateKey) string {
	return devkey.DeviceID(key.Public().(ed25519.PublicKey))
}

// Send sends text as a new message and returns once the peer acknowledged
// it (§20.6). The message is queued at once and stays queued, across lost
// connections, until acknowledged: when ctx ends first Send returns ctx's
// error with the message, which is still delivered later (OnChatAck tells
// when) unless the channel ends first.
func (c *Channel) Send(ctx context.Context, text string) (ChatMessage, error) {
	return c.SendMessage(ctx, ChatMessage{Text: text})
}

// SendMessage is Send with the message's id and time chosen by the
// caller (say, a message saved before a restart and sent again: the peer
// stores an id only once). An empty ID gets NewID, a zero SentAt now.
func (c *Channel) SendMessage(ctx context.Context, m ChatMessage) (ChatMessage, error) {
	if m.ID == "" {
		m.ID = NewID()
	}
	if m.SentAt.IsZero() {
		m.SentAt = time.Now()
	}
	if err := checkID("message id", m.ID); err != nil {
		return m, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if err := checkText(m.Text); err != nil {
		return m, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if m.Text == "" {
		return m, fmt.Errorf("%w: empty message", ErrInvalid)
	}
	om := &outMsg{msg: m, acked: make(chan struct{})}
	c.mu.Lock()
	if c.closed {
		err := c.err
		c.mu.Unlock()
		return m, err
	}
	c.seq++
	om.seq = c.seq
	c.outbox = append(c.outbox, om)
	s := c.cur
	c.mu.Unlock()
	if s != nil {
		s.poke()
	}
	select {
	case <-om.acked:
		return m, nil
	case <-ctx.Done():
		return m, ctx.Err()
	case <-c.ctx.Done():
		return m, c.Err()
	}
}

// Pending lists the messages not acknowledged yet, in order.
func (c *Channel) Pending() []ChatMessage {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]ChatMessage, len(c.outbox))
	for i, m := range c.outbox {
		out[i] = m.msg
	}
	return out
}

// receiveChat stores a received message once; it reports whether to
// acknowledge it (stored now or before).
func (c *Channel) receiveChat(m *parleyv1.DirectChat) bool {
	msg := ChatMessage{ID: m.GetId(), Text: m.GetText(), SentAt: time.UnixMilli(m.GetSentAtUnixMs())}
	c.histMu.Lock()
	defer c.histMu.Unlock()
	if c.cfg.History.Has(msg.ID) {
		return true
	}
	if err := c.cfg.History.Put(msg); err != nil {
		c.log.Error("p2p chat not stored (the peer sends it again)", "id", msg.ID, "err", err)
		return false
	}
	if c.cfg.OnChat != nil {
		c.cfg.OnChat(msg)
	}
	return true
}

// acked removes an acknowledged message from the outbox. An id not there
// is the ack of a message resent after its first ack was lost: ignored.
func (c *Channel) acked(id string) {
	c.mu.Lock()
	var found *outMsg
	for i, m := range c.outbox {
		if m.msg.ID == id {
			found = m
			c.outbox = append(c.outbox[:i:i], c.outbox[i+1:]...)
			break
		}
	}
	c.mu.Unlock()
	if found == nil {
		return
	}
	// OnChatAck before waking Send: when Send returns, OnChatAck has been
	// called for its message.
	if c.cfg.OnChatAck != nil {
		c.cfg.OnChatAck(id)
	}
	close(found.acked)
}

// Call is a DirectCall (§20.7): the call's audio goes direct, or not.
type Call struct {
	ID     string
	Direct bool
}

// SendCall tells the peer that this side sends call callID's audio
// directly (direct true, then SendAudio) or goes back to the media relay
// (false). The latest state is repeated on every new connection.
func (c *Channel) SendCall(callID string, direct bool) error {
	if err := checkID("call id", callID); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	dc := &parleyv1.DirectCall{CallId: callID, Direct: direct}
	c.mu.Lock()
	if c.closed {
		err := c.err
		c.mu.Unlock()
		return err
	}
	c.call = dc
	s := c.cur
	c.mu.Unlock()
	if s != nil {
		s.enqueue(&parleyv1.DirectFrame{Body: &parleyv1.DirectFrame_Call{Call: dc}})
	}
	return nil
}

// SendAudio sends one audio frame as a QUIC datagram (§20.7). Datagrams
// are not queued: without a connection it fails with ErrNotConnected, and
// a datagram may be lost on the way like any UDP packet.
func (c *Channel) SendAudio(flags, level uint8, seq, ts uint32, opus []byte) error {
	if len(opus) > MaxOpusBytes {
		return fmt.Errorf("%w: an Opus frame of %d bytes (at most %d)", ErrInvalid, len(opus), MaxOpusBytes)
	}
	c.mu.Lock()
	s, closed, err := c.cur, c.closed, c.err
	c.mu.Unlock()
	if closed {
		return err
	}
	if s == nil {
		return ErrNotConnected
	}
	b := AppendAudio(make([]byte, 0, audioHeader+len(opus)), Audio{Flags: flags, Level: level, Seq: seq, Timestamp: ts, Opus: opus})
	return s.conn.SendDatagram(b)
}

// Poke sends one empty datagram (§20.7: the peer drops it), ack-eliciting.
// Call it when the path under the connection changed (a new direct pair,
// or the relay after one died): its acknowledgement tells QUIC at once
// which earlier packets were lost on the old path (RFC 9002 §6.1.2, the
// time threshold), which it then sends again, instead of after its probe
// timeout, which grows exponentially while a path is down (to seconds).
// Without a connection it does nothing.
func (c *Channel) Poke() {
	c.mu.Lock()
	s, closed := c.cur, c.closed
	c.mu.Unlock()
	if closed || s == nil {
		return
	}
	_ = s.conn.SendDatagram(nil)
}
