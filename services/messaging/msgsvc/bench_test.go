package msgsvc_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parleychat/parley/libs/proto/parleyv1"
	"github.com/parleychat/parley/libs/rpc"
	"github.com/parleychat/parley/libs/subject"
)

// BenchmarkSendDirect measures persisted private messages per second
// through NATS request/reply (as the gateway sends them) with many pairs
// of users chatting in parallel: each parallel sender has its own
// conversation, so the figure is the service's and JetStream's throughput,
// not contention on one conversation. Run with -cpu to vary the senders
// (8 per GOMAXPROCS).
//
//	go test -run '^$' -bench SendDirect -benchtime 5000x ./msgsvc
func BenchmarkSendDirect(b *testing.B) {
	e := newEnv(b)
	e.start(b, testConfig())
	e.start(b, testConfig())
	var pairs, keys atomic.Int64
	b.SetParallelism(8)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		n := pairs.Add(1)
		from := user{fmt.Sprintf("ua%04d", n), "A"}
		conv := fmt.Sprintf("dm.ua%04d.ub%04d", n, n)
		for pb.Next() {
			var reply parleyv1.SendReply
			err := rpc.Request(context.Background(), e.nc, subject.MsgSend, header(from),
				&parleyv1.SendRequest{Conversation: conv, Text: "benchmark message", ClientKey: fmt.Sprint(keys.Add(1))}, &reply)
			if err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
}
