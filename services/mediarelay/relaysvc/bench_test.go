package relaysvc

import (
	"fmt"
	"testing"

	"github.com/parleychat/parley/libs/mediabus"
	"github.com/parleychat/parley/libs/proto/internalv1"
	"github.com/parleychat/parley/libs/service"
	"github.com/parleychat/parley/libs/testenv"
	"github.com/parleychat/parley/protocol/media"
	"github.com/parleychat/parley/protocol/parleyv1"
)

// BenchmarkForward is the owner's per-packet path: one Audio message from
// MediaUp parsed, checked against the participants, its level tracked and
// (when chosen) published on MediaDown of a real NATS server, for a
// 2-person call (everything forwarded), a 6-person call (the loudest 3
// chosen, every 100 ms) and a muted speaker (dropped).
func BenchmarkForward(b *testing.B) {
	ns := testenv.NATS(b)
	nc := testenv.Connect(b, ns)
	for _, bc := range []struct {
		name    string
		n       int
		muted   bool
		forward bool
	}{{"2 participants", 2, false, true}, {"6 participants", 6, false, false}, {"muted", 2, true, false}} {
		b.Run(bc.name, func(b *testing.B) {
			s, err := New(DefaultConfig(), service.Deps{NC: nc})
			if err != nil {
				b.Fatal(err)
			}
			id := newCallID()
			rec := &internalv1.CallRecord{Call: &parleyv1.Call{CallId: id}}
			for i := range bc.n {
				rec.Call.Participants = append(rec.Call.Participants, &parleyv1.CallParticipant{
					UserId: fmt.Sprintf("u%d", i), StreamId: uint32(i + 1), Muted: bc.muted})
			}
			f, err := newForwarder(s, id)
			if err != nil {
				b.Fatal(err)
			}
			defer f.stop(false, 1)
			f.update(rec, 1)
			payload := make([]byte, 80) // a 20 ms Opus frame at ~32 kbit/s
			msgs := make([][]byte, bc.n)
			for i := range msgs {
				msgs[i] = mediabus.AppendAudio(nil, media.Header{Type: media.TypeAudio, Flags: media.FlagVoice,
					Level: uint8(10 * (i + 1)), StreamID: uint32(i + 1), Seq: 1}, payload)
			}
			b.SetBytes(int64(len(msgs[0])))
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				f.handle(msgs[i%len(msgs)])
				i++
			}
			b.StopTimer()
			if err := nc.Flush(); err != nil {
				b.Fatal(err)
			}
		})
	}
}
