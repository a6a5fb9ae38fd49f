package parley

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"testing"

	"github.com/parleychat/parley/protocol/parleyv1"
)

func msg(conv string, seq uint64) Message {
	return Message{Conversation: conv, Seq: seq, Text: fmt.Sprintf("%s#%d", conv, seq)}
}

func seqs(ms []Message) []uint64 {
	out := []uint64{}
	for _, m := range ms {
		out = append(out, m.Seq)
	}
	return out
}

func page(conv string, from, to uint64) []Message {
	var out []Message
	for s := from; s <= to; s++ {
		out = append(out, msg(conv, s))
	}
	return out
}

const dm = "dm.u1.u2"

// known returns a tracker where conv was listed with nothing unread.
func knownAt(conv string, kind ConversationKind, at uint64) *tracker {
	t := newTracker()
	t.start(Conversation{ID: conv, Kind: kind, LastSeq: at, AckedSeq: at})
	return t
}

// TestTrackerLive: live messages are emitted in order, once; a gap holds
// the later ones and asks for a catch-up, whose page releases everything
// in order.
func TestTrackerLive(t *testing.T) {
	tr := knownAt(PublicRoom, ConversationRoom, 0)
	var got []uint64
	offer := func(seq uint64) need {
		emit, n := tr.offer(msg(PublicRoom, seq))
		got = append(got, seqs(emit)...)
		return n
	}
	for _, s := range []uint64{1, 2, 2, 1, 3} {
		if n := offer(s); n != needNothing {
			t.Fatalf("offer %d: need %v", s, n)
		}
	}
	if want := []uint64{1, 2, 3}; !reflect.DeepEqual(got, want) {
		t.Fatalf("emitted %v, want %v (duplicates dropped)", got, want)
	}
	// 4 and 5 were missed; 6 and 7 arrive.
	if n := offer(6); n != needCatchUp {
		t.Fatalf("a gap: need %v, want a catch-up", n)
	}
	offer(7)
	if from, _ := tr.delivered(PublicRoom); from != 3 || len(got) != 3 {
		t.Fatalf("after the gap: delivered %d, emitted %v; want 3 and nothing new", from, got)
	}
	// The catch-up reads after 3: the page overlaps what waits.
	got = append(got, seqs(tr.history(PublicRoom, page(PublicRoom, 4, 6)))...)
	if want := []uint64{1, 2, 3, 4, 5, 6, 7}; !reflect.DeepEqual(got, want) {
		t.Fatalf("after the catch-up: %v, want %v", got, want)
	}
	if tr.pendingCount(PublicRoom) != 0 {
		t.Errorf("%d messages still wait", tr.pendingCount(PublicRoom))
	}
	// Late live copies of what history brought are duplicates.
	if n := offer(5); n != needNothing || len(got) != 7 {
		t.Errorf("late duplicate: need %v, emitted %v", n, got)
	}
}

// TestTrackerCatchUpRanges: a catch-up may take several pages; the range to
// read always starts at delivered, and pages overlapping live messages or
// each other emit nothing twice.
func TestTrackerCatchUpRanges(t *testing.T) {
	tr := knownAt(dm, ConversationDirect, 10)
	tr.offer(msg(dm, 500)) // arrives live after a long break
	var got []uint64
	for round := 0; ; round++ {
		from, _ := tr.delivered(dm)
		if from >= 500 {
			break
		}
		if round > 10 {
			t.Fatal("catch-up does not converge")
		}
		to := min(from+200, 499) // the server's reply: (from, from+200] up to the last stored
		got = append(got, seqs(tr.history(dm, page(dm, from+1, to)))...)
	}
	if len(got) != 490 || got[0] != 11 || got[len(got)-1] != 500 || !slices.IsSorted(got) {
		t.Fatalf("emitted %d messages %d..%d, want 11..500 in order", len(got), got[0], got[len(got)-1])
	}
}

// TestTrackerHistoryHoles: history is authoritative; a hole in a page
// (messages removed by retention) is skipped instead of waited for.
func TestTrackerHistoryHoles(t *testing.T) {
	tr := knownAt(dm, ConversationDirect, 0)
	page := []Message{msg(dm, 11), msg(dm, 12), msg(dm, 14)}
	if got := seqs(tr.history(dm, page)); !reflect.DeepEqual(got, []uint64{11, 12, 14}) {
		t.Fatalf("emitted %v", got)
	}
	if emit, n := tr.offer(msg(dm, 15)); n != needNothing || len(emit) != 1 {
		t.Errorf("next live message: %v, %v", seqs(emit), n)
	}
}

// TestTrackerStartPoints: where a Client that has not seen a conversation
// begins (§15.3 and the SDK catch-up addendum).
func TestTrackerStartPoints(t *testing.T) {
	tests := []struct {
		name        string
		conv        Conversation
		wantFrom    uint64
		wantCatchUp bool
	}{
		{"empty room", Conversation{ID: PublicRoom, Kind: ConversationRoom}, 0, false},
		{"small room", Conversation{ID: PublicRoom, Kind: ConversationRoom, LastSeq: 30}, 0, true},
		{"big room: last 50", Conversation{ID: PublicRoom, Kind: ConversationRoom, LastSeq: 120}, 70, true},
		{"big room read beyond 50", Conversation{ID: PublicRoom, Kind: ConversationRoom, LastSeq: 120, AckedSeq: 100}, 100, true},
		{"room all read", Conversation{ID: PublicRoom, Kind: ConversationRoom, LastSeq: 120, AckedSeq: 120}, 120, false},
		{"direct: from the ack", Conversation{ID: dm, Kind: ConversationDirect, LastSeq: 500, AckedSeq: 3}, 3, true},
		{"direct never read", Conversation{ID: dm, Kind: ConversationDirect, LastSeq: 500}, 0, true},
		{"direct all read", Conversation{ID: dm, Kind: ConversationDirect, LastSeq: 7, AckedSeq: 7}, 7, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := newTracker()
			_, lags := tr.start(tt.conv)
			from, known := tr.delivered(tt.conv.ID)
			if !known || from != tt.wantFrom || lags != tt.wantCatchUp {
				t.Errorf("start: from %d (known %v), catch-up %v; want from %d, catch-up %v", from, known, lags, tt.wantFrom, tt.wantCatchUp)
			}
		})
	}

	// A later listing does not move a known conversation back or forth.
	tr := knownAt(dm, ConversationDirect, 5)
	tr.offer(msg(dm, 6))
	if _, lags := tr.start(Conversation{ID: dm, Kind: ConversationDirect, LastSeq: 6, AckedSeq: 0}); lags {
		t.Error("a second listing asks to re-read what was delivered")
	}
	if from, _ := tr.delivered(dm); from != 6 {
		t.Errorf("delivered %d after a second listing, want 6", from)
	}
}

// TestTrackerUnknownConversation: a message in a conversation not listed
// yet waits for the listing; a listing that does not include it (created
// after the list was read) falls back: a private chat from its start, the
// room from the message.
func TestTrackerUnknownConversation(t *testing.T) {
	tr := newTracker()
	if emit, n := tr.offer(msg(dm, 1)); n != needListing || len(emit) != 0 {
		t.Fatalf("unknown conversation: emitted %v, need %v; want a listing first", seqs(emit), n)
	}
	tr.offer(msg(PublicRoom, 41))
	// The listing's room is at 40 with 38 read: start at 38 (unread), 41 waits.
	emit, lags := tr.start(Conversation{ID: PublicRoom, Kind: ConversationRoom, LastSeq: 40, AckedSeq: 38})
	if len(emit) != 0 || !lags {
		t.Fatalf("room listed: emitted %v, catch-up %v", seqs(emit), lags)
	}
	if got := seqs(tr.history(PublicRoom, page(PublicRoom, 39, 40))); !reflect.DeepEqual(got, []uint64{39, 40, 41}) {
		t.Errorf("room catch-up emitted %v, want 39 40 41", got)
	}
	if got := tr.unlisted(); !reflect.DeepEqual(got, []string{dm}) {
		t.Fatalf("unlisted = %v, want the dm", got)
	}
	if got := seqs(tr.fallback(dm)); !reflect.DeepEqual(got, []uint64{1}) {
		t.Errorf("new private chat emitted %v, want its first message", got)
	}

	tr = newTracker()
	tr.offer(msg("room.other", 9))
	if got := seqs(tr.fallback("room.other")); !reflect.DeepEqual(got, []uint64{9}) {
		t.Errorf("unlisted room emitted %v, want the message it saw", got)
	}
}

func TestTrackerReset(t *testing.T) {
	tr := knownAt(dm, ConversationDirect, 5)
	epoch := tr.epoch
	tr.reset()
	if _, known := tr.delivered(dm); known || tr.epoch == epoch {
		t.Error("reset kept the old user's state")
	}
	if got := tr.history(dm, page(dm, 6, 7)); len(got) != 0 {
		t.Errorf("history for a conversation the new user has not listed emitted %v", seqs(got))
	}
}

// TestSendRetryKeepsKey: a Send whose connection breaks before the reply
// is re-sent with the same client_key (the server stores a key once); an
// error that settles the request is not retried.
func TestSendRetryKeepsKey(t *testing.T) {
	old := sendRetryPause
	sendRetryPause = 0
	defer func() { sendRetryPause = old }()

	var keys []string
	fails := []error{
		fmt.Errorf("%w: %w", ErrConnectionLost, errors.New("EOF")),
		&Error{Code: CodeUnavailable},
		fmt.Errorf("%w: %w", ErrConnectionLost, errors.New("reset")),
	}
	do := func(_ context.Context, f *parleyv1.Frame) (*parleyv1.Frame, error) {
		req := f.GetSend()
		keys = append(keys, req.GetClientKey())
		if len(keys) <= len(fails) {
			return nil, fails[len(keys)-1]
		}
		return &parleyv1.Frame{Body: &parleyv1.Frame_SendReply{SendReply: &parleyv1.SendReply{
			Message: &parleyv1.Message{Conversation: PublicRoom, Seq: 1, Text: req.GetText(), ClientKey: req.GetClientKey()},
		}}}, nil
	}
	key := newClientKey()
	m, err := sendWithRetry(context.Background(), do, &parleyv1.SendRequest{Conversation: PublicRoom, Text: "hi", ClientKey: key}, discard{})
	if err != nil || m.Text != "hi" || m.ClientKey != key {
		t.Fatalf("send = %+v, %v", m, err)
	}
	if len(keys) != 4 || slices.ContainsFunc(keys, func(k string) bool { return k != key }) {
		t.Errorf("keys sent %q: want the same key on all 4 attempts", keys)
	}

	for _, final := range []error{ErrEmptyMessage, ErrMessageTooLarge, ErrPermissionDenied, ErrRateLimited, ErrClosed} {
		n := 0
		_, err := sendWithRetry(context.Background(), func(context.Context, *parleyv1.Frame) (*parleyv1.Frame, error) {
			n++
			return nil, final
		}, &parleyv1.SendRequest{ClientKey: "k"}, discard{})
		if !errors.Is(err, final) || n != 1 {
			t.Errorf("%v: sent %d times, err %v; want once, the error", final, n, err)
		}
	}

	// A break that never heals ends after a bounded number of attempts.
	n := 0
	_, err = sendWithRetry(context.Background(), func(context.Context, *parleyv1.Frame) (*parleyv1.Frame, error) {
		n++
		return nil, ErrConnectionLost
	}, &parleyv1.SendRequest{ClientKey: "k"}, discard{})
	if !errors.Is(err, ErrConnectionLost) || n != maxSendAttempts {
		t.Errorf("endless break: %d attempts, %v", n, err)
	}
}

type discard struct{}

func (discard) Warn(string, ...any) {}

func TestClientKeys(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		k := newClientKey()
		if len(k) < 1 || len(k) > 64 || seen[k] {
			t.Fatalf("key %q: length %d or repeated", k, len(k))
		}
		seen[k] = true
	}
}
