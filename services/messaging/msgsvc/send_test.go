package msgsvc_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/parleychat/parley/libs/rpc"
	"github.com/parleychat/parley/libs/subject"
	"github.com/parleychat/parley/libs/testenv"
	"github.com/parleychat/parley/protocol/convid"
	"github.com/parleychat/parley/protocol/parleyv1"
)

// A room message reaches the room subject only; a private message reaches
// both members' subjects and nobody else's.
func TestSendStoresAndDelivers(t *testing.T) {
	e := newEnv(t)
	e.start(t, testConfig())
	room := e.watch(t, subject.RoomMessagesAll)
	toAlice, toBob, toCarol := e.watch(t, subject.UserMessages(alice.id)), e.watch(t, subject.UserMessages(bob.id)), e.watch(t, subject.UserMessages(carol.id))

	text := "hello 世界 👋\nsecond line"
	before := time.Now().UnixMilli()
	rm := e.send(t, alice, convid.PublicRoom, text)
	if rm.Seq != 1 || rm.Id == 0 || rm.SenderId != alice.id || rm.SenderName != "Alice" || rm.Text != text ||
		rm.Conversation != convid.PublicRoom || rm.SentAtUnixMs < before || rm.ClientKey == "" {
		t.Fatalf("room message = %v", rm)
	}
	r, err := e.sendReq(alice, &parleyv1.SendRequest{ToUsername: "BOB", Text: "psst", ClientKey: e.key()})
	if err != nil {
		t.Fatal(err)
	}
	dm := r.Message
	if dm.Conversation != "dm.ualice.ubob" || dm.Seq != 1 || dm.Id <= rm.Id || r.Duplicate {
		t.Fatalf("dm = %v", r)
	}
	// The same conversation by id, from the other side.
	reply := e.send(t, bob, "dm.ualice.ubob", "hi")
	if reply.Seq != 2 || reply.SenderName != "Bob" {
		t.Fatalf("reply = %v", reply)
	}
	// A marker for carol: events from one replica arrive in order, so once
	// it is there, anything else for carol would have arrived before it.
	marker := e.send(t, alice, "dm.ualice.ucarol", "marker")

	testenv.Eventually(t, 5*time.Second, "events delivered", func() bool {
		return len(room.get()) == 1 && len(toAlice.get()) == 3 && len(toBob.get()) == 2 && len(toCarol.get()) == 1
	})
	if got := room.get(); !proto.Equal(got[0], rm) {
		t.Errorf("room event %v, want %v", got[0], rm)
	}
	if got := toBob.get(); !proto.Equal(got[0], dm) || !proto.Equal(got[1], reply) {
		t.Errorf("bob's events %v", got)
	}
	if got := toAlice.get(); !proto.Equal(got[0], dm) || !proto.Equal(got[1], reply) || !proto.Equal(got[2], marker) {
		t.Errorf("alice's events %v", got)
	}
	if got := toCarol.get(); !proto.Equal(got[0], marker) {
		t.Errorf("carol got %v, want only the marker", got)
	}
	if len(room.get()) != 1 {
		t.Errorf("room subject got %d events, want 1", len(room.get()))
	}
	// What was delivered is what is stored.
	h, err := e.history(bob, &parleyv1.HistoryRequest{Conversation: "dm.ualice.ubob"})
	if err != nil || len(h.Messages) != 2 || !proto.Equal(h.Messages[0], dm) || !proto.Equal(h.Messages[1], reply) || h.LastSeq != 2 || h.More {
		t.Fatalf("history = %v, %v", h, err)
	}
}

// The sender is who the gateway's headers say, whatever the body holds.
func TestSenderComesFromHeadersOnly(t *testing.T) {
	e := newEnv(t)
	e.start(t, testConfig())
	body, err := proto.Marshal(&parleyv1.SendRequest{Conversation: convid.PublicRoom, Text: "it is me", ClientKey: "k1"})
	if err != nil {
		t.Fatal(err)
	}
	// Fields a forged request might try: the Message's sender_id (4) and
	// sender_name (5) numbers, unknown in a SendRequest.
	body = protowire.AppendTag(body, 5, protowire.BytesType)
	body = protowire.AppendString(body, "Mallory")
	body = protowire.AppendTag(body, 6, protowire.BytesType)
	body = protowire.AppendString(body, "umallory")
	m, err := e.nc.RequestMsg(&nats.Msg{Subject: subject.MsgSend, Data: body, Header: header(alice)}, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if e := rpc.ErrorOf(m); e != nil {
		t.Fatal(e)
	}
	var r parleyv1.SendReply
	if err := proto.Unmarshal(m.Data, &r); err != nil {
		t.Fatal(err)
	}
	h, err := e.history(bob, &parleyv1.HistoryRequest{Conversation: convid.PublicRoom})
	if err != nil || len(h.Messages) != 1 {
		t.Fatalf("history %v %v", h, err)
	}
	if got := h.Messages[0]; got.SenderId != alice.id || got.SenderName != alice.name || r.Message.SenderId != alice.id {
		t.Errorf("stored sender %q %q, want the header identity %q %q", got.SenderId, got.SenderName, alice.id, alice.name)
	}

	// No identity: refused, nothing stored.
	err = rpc.Request(t.Context(), e.nc, subject.MsgSend, nil,
		&parleyv1.SendRequest{Conversation: convid.PublicRoom, Text: "anonymous", ClientKey: "k2"}, nil)
	wantCode(t, err, parleyv1.ErrorCode_ERROR_CODE_UNAUTHENTICATED)
	if n := e.storedCount(t); n != 1 {
		t.Errorf("stream holds %d messages, want 1", n)
	}
}

func TestSendRejections(t *testing.T) {
	e := newEnv(t)
	e.start(t, testConfig())
	ok := func(text string) *parleyv1.SendRequest {
		return &parleyv1.SendRequest{Conversation: convid.PublicRoom, Text: text, ClientKey: e.key()}
	}
	for _, tc := range []struct {
		name string
		from user
		req  *parleyv1.SendRequest
		code parleyv1.ErrorCode
	}{
		{"empty", alice, ok(""), parleyv1.ErrorCode_ERROR_CODE_EMPTY_MESSAGE},
		{"white space", alice, ok(" \t\n\u3000 \r\n"), parleyv1.ErrorCode_ERROR_CODE_EMPTY_MESSAGE},
		{"invisible characters only", alice, ok("\u200b \u200d\ufeff\u3164"), parleyv1.ErrorCode_ERROR_CODE_EMPTY_MESSAGE},
		{"client_key ending in a space", alice, &parleyv1.SendRequest{Conversation: convid.PublicRoom, Text: "x", ClientKey: "a "}, parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT},
		{"client_key with a zero-width space", alice, &parleyv1.SendRequest{Conversation: convid.PublicRoom, Text: "x", ClientKey: "a\u200bb"}, parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT},
		{"4001 characters", alice, ok(strings.Repeat("a", 4001)), parleyv1.ErrorCode_ERROR_CODE_MESSAGE_TOO_LARGE},
		{"4001 emoji", alice, ok(strings.Repeat("😀", 4001)), parleyv1.ErrorCode_ERROR_CODE_MESSAGE_TOO_LARGE},
		{"unknown conversation", alice, &parleyv1.SendRequest{Conversation: "room.secret", Text: "x", ClientKey: "a"}, parleyv1.ErrorCode_ERROR_CODE_NOT_FOUND},
		{"malformed group id", alice, &parleyv1.SendRequest{Conversation: "group.g1", Text: "x", ClientKey: "a"}, parleyv1.ErrorCode_ERROR_CODE_NOT_FOUND},
		{"unsorted dm id", alice, &parleyv1.SendRequest{Conversation: "dm.ubob.ualice", Text: "x", ClientKey: "a"}, parleyv1.ErrorCode_ERROR_CODE_NOT_FOUND},
		{"dm with a wildcard", alice, &parleyv1.SendRequest{Conversation: "dm.ualice.*", Text: "x", ClientKey: "a"}, parleyv1.ErrorCode_ERROR_CODE_NOT_FOUND},
		{"dm of others", alice, &parleyv1.SendRequest{Conversation: "dm.ubob.ucarol", Text: "x", ClientKey: "a"}, parleyv1.ErrorCode_ERROR_CODE_PERMISSION_DENIED},
		{"malformed dm of others", alice, &parleyv1.SendRequest{Conversation: "dm.ubob", Text: "x", ClientKey: "a"}, parleyv1.ErrorCode_ERROR_CODE_PERMISSION_DENIED},
		{"dm with self by id", alice, &parleyv1.SendRequest{Conversation: "dm.ualice.ualice", Text: "x", ClientKey: "a"}, parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT},
		{"dm with self by name", alice, &parleyv1.SendRequest{ToUsername: "alice", Text: "x", ClientKey: "a"}, parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT},
		{"unknown user", alice, &parleyv1.SendRequest{ToUsername: "nobody", Text: "x", ClientKey: "a"}, parleyv1.ErrorCode_ERROR_CODE_NOT_FOUND},
		{"no target", alice, &parleyv1.SendRequest{Text: "x", ClientKey: "a"}, parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT},
		{"two targets", alice, &parleyv1.SendRequest{Conversation: convid.PublicRoom, ToUsername: "bob", Text: "x", ClientKey: "a"}, parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT},
		{"missing client_key", alice, &parleyv1.SendRequest{Conversation: convid.PublicRoom, Text: "x"}, parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT},
		{"client_key too long", alice, &parleyv1.SendRequest{Conversation: convid.PublicRoom, Text: "x", ClientKey: strings.Repeat("k", 65)}, parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT},
		{"client_key with a newline", alice, &parleyv1.SendRequest{Conversation: convid.PublicRoom, Text: "x", ClientKey: "a\r\nNats-Msg-Id: x"}, parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.sendReq(tc.from, tc.req)
			wantCode(t, err, tc.code)
		})
	}
	if n := e.storedCount(t); n != 0 {
		t.Fatalf("stream holds %d messages after refused sends, want 0", n)
	}

	// The limits themselves are allowed: 4000 characters, also as 4000
	// emoji (16,000 bytes); a 64-character key.
	for _, text := range []string{strings.Repeat("a", 4000), strings.Repeat("😀", 4000)} {
		if _, err := e.sendReq(alice, &parleyv1.SendRequest{Conversation: convid.PublicRoom, Text: text, ClientKey: e.key()}); err != nil {
			t.Errorf("send %d bytes: %v", len(text), err)
		}
	}
	if _, err := e.sendReq(alice, &parleyv1.SendRequest{Conversation: convid.PublicRoom, Text: "x", ClientKey: strings.Repeat("語", 64)}); err != nil {
		t.Errorf("64-character key: %v", err)
	}
}

// -max-message-chars raises the character limit; 16 KiB stays the byte limit.
func TestMessageByteLimit(t *testing.T) {
	e := newEnv(t)
	cfg := testConfig()
	cfg.MaxMessageChars = 10000
	e.start(t, cfg)
	if _, err := e.sendReq(alice, &parleyv1.SendRequest{Conversation: convid.PublicRoom, Text: strings.Repeat("é", 8000), ClientKey: e.key()}); err != nil {
		t.Fatalf("16,000 bytes: %v", err)
	}
	_, err := e.sendReq(alice, &parleyv1.SendRequest{Conversation: convid.PublicRoom, Text: strings.Repeat("😀", 4200), ClientKey: e.key()})
	wantCode(t, err, parleyv1.ErrorCode_ERROR_CODE_MESSAGE_TOO_LARGE)
	if n := e.storedCount(t); n != 1 {
		t.Fatalf("stream holds %d messages, want 1", n)
	}
}

// A re-send with the same client_key, to any replica, even after newer
// messages, is stored once and answered with the original.
func TestIdempotentResend(t *testing.T) {
	e := newEnv(t)
	e.start(t, testConfig())
	e.start(t, testConfig())
	req := &parleyv1.SendRequest{Conversation: "dm.ualice.ubob", Text: "once", ClientKey: "same-key"}
	first, err := e.sendReq(alice, req)
	if err != nil || first.Duplicate {
		t.Fatalf("first send: %v %v", first, err)
	}
	for i := range 6 {
		e.send(t, bob, "dm.ualice.ubob", "interleaved")
		again, err := e.sendReq(alice, req)
		if err != nil {
			t.Fatalf("re-send %d: %v", i, err)
		}
		if !again.Duplicate || !proto.Equal(again.Message, first.Message) {
			t.Fatalf("re-send %d = %v, want duplicate of %v", i, again, first.Message)
		}
	}
	h := e.allHistory(t, bob, "dm.ualice.ubob")
	wantSeqs(t, "history", h, 1, 7)
	if n := e.storedCount(t); n != 7 {
		t.Fatalf("stream holds %d messages, want 7 (1 + 6 interleaved)", n)
	}
	// Keys are per sender: bob's "same-key" is a message of its own.
	if r, err := e.sendReq(bob, req); err != nil || r.Duplicate || r.Message.Seq != 8 || r.Message.SenderId != bob.id {
		t.Fatalf("bob's send with alice's key: %v %v", r, err)
	}
	// One key names one message: reusing it elsewhere is an error.
	_, err = e.sendReq(alice, &parleyv1.SendRequest{Conversation: convid.PublicRoom, Text: "once", ClientKey: "same-key"})
	wantCode(t, err, parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT)
}

func TestHistoryPaging(t *testing.T) {
	e := newEnv(t)
	e.start(t, testConfig())
	for i := range 150 {
		e.send(t, alice, convid.PublicRoom, "m"+string(rune('a'+i%26)))
	}
	// Backwards from the newest, limit 40: pages concatenate to 1..150.
	var got []*parleyv1.Message
	before, pages := uint64(0), 0
	for {
		r, err := e.history(bob, &parleyv1.HistoryRequest{Conversation: convid.PublicRoom, BeforeSeq: before, Limit: 40})
		if err != nil {
			t.Fatal(err)
		}
		pages++
		if r.LastSeq != 150 || len(r.Messages) > 40 {
			t.Fatalf("page %d: last_seq %d, %d messages", pages, r.LastSeq, len(r.Messages))
		}
		got = append(append([]*parleyv1.Message(nil), r.Messages...), got...)
		if !r.More {
			break
		}
		before = r.Messages[0].Seq
	}
	if pages != 4 {
		t.Errorf("%d backward pages, want 4", pages)
	}
	wantSeqs(t, "backward pages", got, 1, 150)

	// Forwards from after_seq 10.
	got, after, pages := nil, uint64(10), 0
	for {
		r, err := e.history(bob, &parleyv1.HistoryRequest{Conversation: convid.PublicRoom, AfterSeq: proto.Uint64(after), Limit: 40})
		if err != nil {
			t.Fatal(err)
		}
		pages++
		got = append(got, r.Messages...)
		if !r.More {
			break
		}
		after = r.Messages[len(r.Messages)-1].Seq
	}
	if pages != 4 {
		t.Errorf("%d forward pages, want 4", pages)
	}
	wantSeqs(t, "forward pages", got, 11, 150)

	for _, tc := range []struct {
		name     string
		req      *parleyv1.HistoryRequest
		from, to uint64
		more     bool
	}{
		{"default limit 50", &parleyv1.HistoryRequest{}, 101, 150, true},
		{"limit capped at 200", &parleyv1.HistoryRequest{Limit: 1000}, 1, 150, false},
		{"before the first", &parleyv1.HistoryRequest{BeforeSeq: 1}, 1, 0, false},
		{"before beyond the last", &parleyv1.HistoryRequest{BeforeSeq: 999, Limit: 5}, 146, 150, true},
		{"after the last", &parleyv1.HistoryRequest{AfterSeq: proto.Uint64(150)}, 1, 0, false},
		{"across index entries", &parleyv1.HistoryRequest{AfterSeq: proto.Uint64(30), Limit: 40}, 31, 70, true},
		// after_seq has explicit presence: 0 is a forward read from the
		// first message, not the newest page (issue 9, item 2).
		{"after zero reads from the first", &parleyv1.HistoryRequest{AfterSeq: proto.Uint64(0)}, 1, 50, true},
		{"after zero with a limit", &parleyv1.HistoryRequest{AfterSeq: proto.Uint64(0), Limit: 7}, 1, 7, true},
		{"one in the middle", &parleyv1.HistoryRequest{BeforeSeq: 65, Limit: 1}, 64, 64, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.req.Conversation = convid.PublicRoom
			r, err := e.history(carol, tc.req)
			if err != nil {
				t.Fatal(err)
			}
			if tc.to < tc.from {
				if len(r.Messages) != 0 || r.More != tc.more {
					t.Fatalf("got %v more=%v, want none more=%v", seqs(r.Messages), r.More, tc.more)
				}
				return
			}
			wantSeqs(t, tc.name, r.Messages, tc.from, tc.to)
			if r.More != tc.more {
				t.Errorf("more = %v, want %v", r.More, tc.more)
			}
		})
	}

	// A missing index entry (a replica died before writing it) only makes
	// the read longer.
	js, _ := jetstream.New(e.nc)
	kv, err := js.KeyValue(t.Context(), subject.BucketMsgIndex)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"room.public.2", "room.public.3"} {
		if err := kv.Delete(t.Context(), k); err != nil {
			t.Fatal(err)
		}
	}
	r, err := e.history(carol, &parleyv1.HistoryRequest{Conversation: convid.PublicRoom, AfterSeq: proto.Uint64(100), Limit: 20})
	if err != nil {
		t.Fatal(err)
	}
	wantSeqs(t, "after a lost index entry", r.Messages, 101, 120)

	// Both directions at once is a mistake, also with after_seq 0.
	for _, after := range []uint64{0, 1} {
		_, err = e.history(carol, &parleyv1.HistoryRequest{Conversation: convid.PublicRoom, AfterSeq: proto.Uint64(after), BeforeSeq: 5})
		wantCode(t, err, parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT)
	}
}

// A user who got more private messages than a page while offline, and
// follows §15.3 from acked_seq 0, reads every one of them: after_seq 0
// starts at the first message and each page continues after the last.
func TestCatchUpFromZeroReadsEveryMessage(t *testing.T) {
	e := newEnv(t)
	e.start(t, testConfig())
	const n = 120
	for i := 1; i <= n; i++ {
		e.send(t, alice, "dm.ualice.ubob", fmt.Sprintf("offline %d", i))
	}
	var got []uint64
	after := uint64(0)
	for pages := 0; ; pages++ {
		if pages > n {
			t.Fatal("paging does not end")
		}
		r, err := e.history(bob, &parleyv1.HistoryRequest{Conversation: "dm.ualice.ubob", AfterSeq: proto.Uint64(after)})
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range r.Messages {
			got = append(got, m.Seq)
			if want := fmt.Sprintf("offline %d", m.Seq); m.Text != want {
				t.Fatalf("seq %d text %q, want %q", m.Seq, m.Text, want)
			}
		}
		if len(r.Messages) > 0 {
			after = r.Messages[len(r.Messages)-1].Seq
		}
		if !r.More {
			break
		}
	}
	if len(got) != n {
		t.Fatalf("read %d messages, want %d: %v", len(got), n, got)
	}
	for i, seq := range got {
		if seq != uint64(i+1) {
			t.Fatalf("message %d has seq %d: %v", i, seq, got)
		}
	}
}

func TestHistoryPermissions(t *testing.T) {
	e := newEnv(t)
	e.start(t, testConfig())
	e.send(t, alice, "dm.ualice.ubob", "private")
	_, err := e.history(carol, &parleyv1.HistoryRequest{Conversation: "dm.ualice.ubob"})
	wantCode(t, err, parleyv1.ErrorCode_ERROR_CODE_PERMISSION_DENIED)
	_, err = e.history(carol, &parleyv1.HistoryRequest{Conversation: "room.other"})
	wantCode(t, err, parleyv1.ErrorCode_ERROR_CODE_NOT_FOUND)
	if r, err := e.history(bob, &parleyv1.HistoryRequest{Conversation: "dm.ualice.ubob"}); err != nil || len(r.Messages) != 1 {
		t.Fatalf("member's history: %v %v", r, err)
	}
}

// Pages of large messages hold fewer than the limit, so that a reply fits
// in one NATS message and one client frame; paging still covers every
// message exactly once, in both directions.
func TestHistoryLargeMessages(t *testing.T) {
	e := newEnv(t)
	e.start(t, testConfig())
	big := strings.Repeat("😀", 4000) // 16,000 bytes
	for range 130 {
		e.send(t, alice, convid.PublicRoom, big)
	}
	var back []*parleyv1.Message
	before := uint64(0)
	for {
		r, err := e.history(bob, &parleyv1.HistoryRequest{Conversation: convid.PublicRoom, BeforeSeq: before, Limit: 200})
		if err != nil {
			t.Fatal(err)
		}
		if size := proto.Size(r); size > 1<<20 {
			t.Fatalf("reply of %d bytes does not fit a frame", size)
		}
		back = append(append([]*parleyv1.Message(nil), r.Messages...), back...)
		if !r.More {
			break
		}
		before = r.Messages[0].Seq
	}
	wantSeqs(t, "backward", back, 1, 130)
	var fwd []*parleyv1.Message
	for after := uint64(1); ; {
		r, err := e.history(bob, &parleyv1.HistoryRequest{Conversation: convid.PublicRoom, AfterSeq: proto.Uint64(after), Limit: 200})
		if err != nil {
			t.Fatal(err)
		}
		fwd = append(fwd, r.Messages...)
		if !r.More {
			break
		}
		after = r.Messages[len(r.Messages)-1].Seq
	}
	wantSeqs(t, "forward", fwd, 2, 130)
	for _, m := range fwd {
		if m.Text != big {
			t.Fatalf("message %d came back altered (%d bytes)", m.Seq, len(m.Text))
		}
	}
}

// TestLiveEventsInSeqOrder: concurrent senders into one conversation on one
// replica: the live events go out in seq order, so receivers never see a
// later message before an earlier one (and never have to fetch history to
// repair it).
func TestLiveEventsInSeqOrder(t *testing.T) {
	e := newEnv(t)
	e.start(t, testConfig())
	room := e.watch(t, subject.RoomMessagesAll)
	const senders, each = 8, 25
	done := make(chan struct{})
	for i := range senders {
		go func() {
			defer func() { done <- struct{}{} }()
			u := []user{alice, bob, carol}[i%3]
			for j := range each {
				if _, err := e.sendReq(u, &parleyv1.SendRequest{Conversation: convid.PublicRoom, Text: "x", ClientKey: e.key()}); err != nil {
					t.Errorf("send %d/%d: %v", i, j, err)
				}
			}
		}()
	}
	for range senders {
		<-done
	}
	testenv.Eventually(t, 10*time.Second, "all room events", func() bool { return len(room.get()) == senders*each })
	wantSeqs(t, "live room events", room.get(), 1, senders*each)
}

// The client_key rules of docs/protocol.md §15.2, through the service.
func TestClientKeyRules(t *testing.T) {
	e := newEnv(t)
	e.start(t, testConfig())
	room := e.watch(t, subject.RoomMessagesAll)
	send := func(u user, conv, text, key string) (*parleyv1.SendReply, error) {
		return e.sendReq(u, &parleyv1.SendRequest{Conversation: conv, Text: text, ClientKey: key})
	}
	first, err := send(alice, convid.PublicRoom, "first", "k")
	if err != nil {
		t.Fatal(err)
	}
	// "k " was stored under "k" (the header lost the space) and answered
	// with the first message: the second text was lost without an error.
	_, err = send(alice, convid.PublicRoom, "second", "k ")
	wantCode(t, err, invalidArg)
	for _, tc := range []struct {
		name, conv, text string
	}{
		{"same key, other text", convid.PublicRoom, "first, edited"},
		{"same key, other conversation", "dm.ualice.ubob", "first"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := send(alice, tc.conv, tc.text, "k")
			wantCode(t, err, invalidArg)
		})
	}
	// The same request again is answered with the stored message, and its
	// event is published again (clients drop a seq they have).
	again, err := send(alice, convid.PublicRoom, "first", "k")
	if err != nil || !again.Duplicate || !proto.Equal(again.Message, first.Message) {
		t.Fatalf("re-send: %v %v", again, err)
	}
	testenv.Eventually(t, 5*time.Second, "the event twice", func() bool { return len(room.get()) == 2 })
	if ev := room.get(); !proto.Equal(ev[0], first.Message) || !proto.Equal(ev[1], first.Message) {
		t.Errorf("events %v, want the first message twice", ev)
	}
	// Keys are per user.
	if r, err := send(bob, convid.PublicRoom, "bob's", "k"); err != nil || r.Duplicate {
		t.Errorf("bob's key k: %v %v", r, err)
	}
	wantSeqs(t, "history", e.allHistory(t, carol, convid.PublicRoom), 1, 2)
}

// Keys are remembered for -msg-dedup-window; after it, the same request
// is a new message.
func TestClientKeyForgottenAfterWindow(t *testing.T) {
	e := newEnv(t)
	cfg := testConfig()
	cfg.DedupWindow = 300 * time.Millisecond
	e.start(t, cfg)
	req := &parleyv1.SendRequest{Conversation: convid.PublicRoom, Text: "again", ClientKey: "k"}
	if _, err := e.sendReq(alice, req); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, "a new message after the window", func() bool {
		r, err := e.sendReq(alice, req)
		if err != nil {
			t.Fatal(err)
		}
		return !r.Duplicate && r.Message.Seq > 1
	})
}
