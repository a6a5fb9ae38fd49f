package registry

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/parleychat/parley/gateway/internal/metrics"
	"github.com/parleychat/parley/libs/proto/internalv1"
	"github.com/parleychat/parley/libs/subject"
	"github.com/parleychat/parley/libs/testenv"
	"github.com/parleychat/parley/protocol/parleyv1"
	"github.com/parleychat/parley/protocol/wire"
)

// recorder is a Conn that keeps what it is given.
type recorder struct {
	mu  sync.Mutex
	got [][]byte
}

func (r *recorder) Deliver(ev *Events) {
	r.mu.Lock()
	r.got = append(r.got, bytes.Clone(ev.Frames))
	r.mu.Unlock()
}
func (r *recorder) EndSession(parleyv1.ErrorCode, string) {}
func (r *recorder) Shutdown()                             {}
func (r *recorder) P2PClosed(string)                      {}

// Every connection gets every batch, whole and in order, however many
// goroutines share the writing (a few, one, more connections than chunks).
func TestFanOutReachesAll(t *testing.T) {
	for _, n := range []int{1, fanOutChunk - 1, fanOutChunk + 1, 5 * fanOutChunk} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			rs := make([]*recorder, n)
			conns := make([]Conn, n)
			for i := range rs {
				rs[i] = &recorder{}
				conns[i] = rs[i]
			}
			for b := range 3 {
				fanOut(conns, &Events{Frames: fmt.Appendf(nil, "batch %d", b), N: 1})
			}
			for i, r := range rs {
				if len(r.got) != 3 {
					t.Fatalf("connection %d got %d batches, want 3", i, len(r.got))
				}
				for b, g := range r.got {
					if want := fmt.Sprintf("batch %d", b); string(g) != want {
						t.Fatalf("connection %d batch %d = %q, want %q", i, b, g, want)
					}
				}
			}
		})
	}
}

// blocked is a Conn whose deliveries wait until release is closed: a
// fan-out that cannot keep up.
type blocked struct {
	recorder
	entered chan struct{} // gets a value when a delivery begins
	release chan struct{}
}

func (b *blocked) Deliver(ev *Events) {
	select {
	case b.entered <- struct{}{}:
	default:
	}
	<-b.release
	b.recorder.Deliver(ev)
}

// A room fan-out that falls behind does not hold up the room
// subscription: the events that arrive meanwhile wait for the next batch,
// and past maxFrames the oldest of them are shed (counted per connection as
// gateway_behind) while the newest always goes out, in order.
func TestRoomFanOutBehind(t *testing.T) {
	ns := testenv.NATS(t)
	nc := testenv.Connect(t, ns)
	m := metrics.New(prometheus.NewRegistry())
	r := New(nc, slog.New(slog.NewTextHandler(io.Discard, nil)), m, time.Millisecond, 10, 1<<20)
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Stop)
	c := &blocked{entered: make(chan struct{}, 1), release: make(chan struct{})}
	var once sync.Once
	release := func() { once.Do(func() { close(c.release) }) }
	t.Cleanup(release) // before Stop, which waits for the fan-out
	if !r.Add(c) {
		t.Fatal("Add refused")
	}
	r.Authenticate(c, &internalv1.Conn{GatewayId: "gw", ConnId: "c1", UserId: "u1", SessionId: "s1"})
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	publish := func(seq uint64) {
		b, _ := proto.Marshal(&parleyv1.MessageEvent{Message: &parleyv1.Message{Conversation: "room.public", Seq: seq, Text: "x"}})
		if err := nc.Publish(subject.RoomMessages("public"), b); err != nil {
			t.Fatal(err)
		}
	}
	publish(1)
	// Seq 1 is being written (blocked); 100 more arrive meanwhile.
	select {
	case <-c.entered:
	case <-time.After(5 * time.Second):
		t.Fatal("seq 1 was not fanned out")
	}
	for seq := uint64(2); seq <= 101; seq++ {
		publish(seq)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 5*time.Second, "the subscription took every event", func() bool {
		r.room.mu.Lock()
		defer r.room.mu.Unlock()
		return len(r.room.offs)+r.room.trimmed == 100
	})
	release()
	var seqs []uint64
	testenv.Eventually(t, 5*time.Second, "seq 101 delivered", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		seqs = seqs[:0]
		for _, b := range c.got {
			for len(b) > 0 {
				n := wire.HeaderSize + int(binary.BigEndian.Uint32(b))
				f, err := wire.Decode(b[wire.HeaderSize:n])
				if err != nil {
					t.Fatal(err)
				}
				seqs = append(seqs, f.GetMessage().GetMessage().GetSeq())
				b = b[n:]
			}
		}
		return len(seqs) > 0 && seqs[len(seqs)-1] == 101
	})
	want := []uint64{1}
	for seq := uint64(92); seq <= 101; seq++ {
		want = append(want, seq)
	}
	if fmt.Sprint(seqs) != fmt.Sprint(want) {
		t.Errorf("delivered %v, want %v (the first, then the newest 10)", seqs, want)
	}
	if v := testutil.ToFloat64(m.EventsShed.WithLabelValues("gateway_behind")); v != 90 {
		t.Errorf("shed gateway_behind = %v, want 90 (one connection)", v)
	}
}

// messageFrame frames a published MessageEvent as clients decode it: the
// same event, its length prefix right, and a malformed event refused.
func TestMessageFrame(t *testing.T) {
	ev := &parleyv1.MessageEvent{Message: &parleyv1.Message{
		Id: 9, Conversation: "room.lobby", Seq: 3, SenderId: "u1", SenderName: "ann", Text: "héllo", ClientKey: "k1", SentAtUnixMs: 1700000000000,
	}}
	data, err := proto.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	frame, m, err := messageFrame(data)
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(m, ev.GetMessage()) {
		t.Errorf("message %v, want %v", m, ev.GetMessage())
	}
	if n := binary.BigEndian.Uint32(frame); int(n) != len(frame)-wire.HeaderSize {
		t.Fatalf("length prefix %d, frame body %d bytes", n, len(frame)-wire.HeaderSize)
	}
	f, err := wire.Decode(frame[wire.HeaderSize:])
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(f.GetMessage(), ev) {
		t.Fatalf("client decodes %v, want %v", f.GetMessage(), ev)
	}
	want, err := wire.AppendFrame(nil, &parleyv1.Frame{Body: &parleyv1.Frame_Message{Message: ev}})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(frame, want) {
		t.Errorf("frame %x, encoded whole %x", frame, want)
	}

	for name, bad := range map[string][]byte{
		"not protobuf": {0xff, 0xff, 0xff},
		"no message":   {},
		"bad utf-8":    badUTF8Event(),
	} {
		if _, _, err := messageFrame(bad); err == nil {
			t.Errorf("%s: framed, want refused", name)
		}
	}
}

// badUTF8Event is a MessageEvent whose message's text is not UTF-8 (which
// proto.Marshal would refuse to write).
func badUTF8Event() []byte {
	msg := protowire.AppendTag(nil, 7, protowire.BytesType) // Message.text
	msg = protowire.AppendBytes(msg, []byte{0xc3, 0x28})
	ev := protowire.AppendTag(nil, 1, protowire.BytesType) // MessageEvent.message
	return protowire.AppendBytes(ev, msg)
}
