package parley

import (
	"maps"
	"slices"

	"github.com/parleychat/parley/protocol/convid"
)

// tracker keeps, per conversation, how far the application has been given
// messages (delivered: the highest seq emitted), so that each message is
// emitted once, in seq order, with no gaps, whatever the network does
// (docs/protocol.md §15.3). It does no I/O: it says which messages to emit
// now and which conversations must be read from history; the sync worker
// (sync.go) does the reading. Not safe for concurrent use: Client.mu
// guards it, and events are pushed under the same lock so their order is
// the order decided here.
//
// Two kinds of input:
//   - live messages (MessageEvent, Send replies) are hints: one that leaves
//     a gap waits in pending until history fills the gap;
//   - history pages are authoritative: the server says these are the
//     messages after a point, so a hole in a page (messages removed by
//     retention) is skipped rather than waited for.
type tracker struct {
	convs map[string]*convTrack
	// epoch changes with every reset (logout, another user): a history
	// page read under an older epoch belongs to the previous user's state
	// and is discarded.
	epoch uint64
}

type convTrack struct {
	delivered uint64
	// known: the start point is set (from a conversation listing or a
	// fallback). Before that, live messages only wait in pending.
	known   bool
	pending map[uint64]Message // live messages above delivered+1
}

const (
	// maxPending bounds the live messages kept per conversation while a
	// gap is read. Dropping more is safe: a catch-up reads up to the
	// conversation's last seq, which includes them.
	maxPending = 10000
	// roomBacklog is how much of the room a Client's first sync emits:
	// a user who joins sees recent history; the rest is paged on demand.
	roomBacklog = 50
)

// need is what a conversation needs from the sync worker after an offer.
type need int

const (
	needNothing need = iota
	needCatchUp      // a gap: read history after delivered
	needListing      // not known yet: list conversations for its start point
)

func newTracker() *tracker { return &tracker{convs: make(map[string]*convTrack)} }

// reset forgets everything (logout, or a session of another user).
func (t *tracker) reset() {
	t.convs = make(map[string]*convTrack)
	t.epoch++
}

func (t *tracker) get(conv string) *convTrack {
	ct := t.convs[conv]
	if ct == nil {
		ct = &convTrack{pending: make(map[uint64]Message)}
		t.convs[conv] = ct
	}
	return ct
}

// delivered reports how far conv has been emitted and whether its start
// point is set.
func (t *tracker) delivered(conv string) (seq uint64, known bool) {
	ct := t.convs[conv]
	if ct == nil {
		return 0, false
	}
	return ct.delivered, ct.known
}

func (t *tracker) pendingCount(conv string) int {
	if ct := t.convs[conv]; ct != nil {
		return len(ct.pending)
	}
	return 0
}

// offer takes a live message and returns what to emit now, in order, and
// what the conversation needs.
func (t *tracker) offer(m Message) ([]Message, need) {
	ct := t.get(m.Conversation)
	if !ct.known {
		ct.hold(m)
		return nil, needListing
	}
	switch {
	case m.Seq <= ct.delivered:
		return nil, needNothing // a duplicate
	case m.Seq == ct.delivered+1:
		ct.delivered = m.Seq
		return ct.flush([]Message{m}), needNothing
	default:
		ct.hold(m)
		return nil, needCatchUp
	}
}

// start sets the start point of a listed conversation the first time it is
// seen (later listings change nothing: the client knows better). It
// returns what can be emitted at once and whether history must be read up
// to the conversation's last seq.
func (t *tracker) start(c Conversation) ([]Message, bool) {
	ct := t.get(c.ID)
	if !ct.known {
		ct.known = true
		ct.delivered = startPoint(c)
		if c.Invited && len(ct.pending) > 0 {
			// An invitee may read nothing of the group but the
			// invitation delivered live: start there (after joining,
			// catch-ups continue from it).
			ct.delivered = slices.Min(slices.Collect(maps.Keys(ct.pending))) - 1
		}
	}
	out := ct.flush(nil)
	if c.Invited {
		return out, false // history is closed to invitees
	}
	return out, c.LastSeq > ct.delivered || len(ct.pending) > 0
}

// startPoint is where a Client that has not seen the conversation begins:
// a private conversation at the user's ack (every message missed while
// offline is delivered), the room at most roomBacklog messages back.
func startPoint(c Conversation) uint64 {
	if c.Kind != ConversationRoom {
		return c.AckedSeq
	}
	from := uint64(0)
	if c.LastSeq > roomBacklog {
		from = c.LastSeq - roomBacklog
	}
	return max(from, c.AckedSeq)
}

// unlisted returns the unknown conversations with waiting messages: a
// listing did not include them (a conversation created after the list was
// read). Sorted, for a stable order.
func (t *tracker) unlisted() []string {
	var out []string
	for id, ct := range t.convs {
		if !ct.known && len(ct.pending) > 0 {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

// fallback gives an unlisted conversation a start point: a private one is
// new, so from its beginning; anything else from its first waiting message.
func (t *tracker) fallback(conv string) []Message {
	ct := t.get(conv)
	if ct.known {
		return nil
	}
	ct.known = true
	if convid.KindOf(conv) != convid.KindDirect && len(ct.pending) > 0 {
		ct.delivered = slices.Min(slices.Collect(maps.Keys(ct.pending))) - 1
	}
	return ct.flush(nil)
}

// history takes a page read after the conversation's delivered seq
// (ascending) and returns what to emit, in order.
func (t *tracker) history(conv string, page []Message) []Message {
	ct := t.convs[conv]
	if ct == nil || !ct.known {
		return nil
	}
	var out []Message
	for _, m := range page {
		if m.Seq <= ct.delivered {
			continue
		}
		ct.delivered = m.Seq
		out = append(out, m)
	}
	return ct.flush(out)
}

// hold keeps a live message until its turn.
func (ct *convTrack) hold(m Message) {
	if len(ct.pending) < maxPending {
		ct.pending[m.Seq] = m
	}
}

// flush appends to out the waiting messages that follow delivered without
// a gap, and drops the ones already delivered.
func (ct *convTrack) flush(out []Message) []Message {
	for {
		m, ok := ct.pending[ct.delivered+1]
		if !ok {
			break
		}
		delete(ct.pending, m.Seq)
		ct.delivered = m.Seq
		out = append(out, m)
	}
	for seq := range ct.pending {
		if seq <= ct.delivered {
			delete(ct.pending, seq)
		}
	}
	return out
}
