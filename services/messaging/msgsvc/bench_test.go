package msgsvc_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parleychat/parley/libs/rpc"
	"github.com/parleychat/parley/libs/subject"
	"github.com/parleychat/parley/protocol/parleyv1"
	"github.com/parleychat/parley/services/messaging/internal/store"
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

// BenchmarkConversationsInvitedEverywhere measures reading the whole
// conversation list of the user of issue 9: invited into 17,500 groups by
// throwaway accounts (one reply of that list exceeded NATS's 1 MiB
// max_payload). The invitations are written straight into the store (as
// 17,500 real creations would leave them; creating them through requests
// would take minutes); each op reads every page with limit 500, as the SDK
// does.
//
//	go test -run '^$' -bench InvitedEverywhere -benchtime 5x ./msgsvc
func BenchmarkConversationsInvitedEverywhere(b *testing.B) {
	const groups = 17_500
	e := newEnv(b)
	e.start(b, testConfig())
	st, err := store.Open(context.Background(), e.nc, store.Options{Replicas: 1, DedupWindow: time.Minute, MaxMsgBytes: 1 << 20})
	if err != nil {
		b.Fatal(err)
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for i := next.Add(1); i <= groups; i = next.Add(1) {
				gid := "g" + strings.Map(func(r rune) rune { return 'a' + r - '0' }, fmt.Sprintf("%020d", i)) // group ids are base32
				g := store.Group{Name: fmt.Sprintf("spam %d", i), Owner: fmt.Sprintf("uthrow%d", i),
					Members: []store.GroupUser{{ID: fmt.Sprintf("uthrow%d", i), Name: "throwaway"}},
					Invited: []store.GroupUser{{ID: alice.id, Name: alice.name}}}
				if _, err := st.CreateGroup(context.Background(), gid, g); err != nil {
					b.Error(err)
					return
				}
				if err := st.PutGroupMembership(context.Background(), alice.id, "group."+gid, true); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.ResetTimer()
	pages := 0
	for range b.N {
		after, n := "", 0
		for {
			r, err := e.page(alice, after, 500)
			if err != nil {
				b.Fatal(err)
			}
			pages++
			n += len(r.Conversations)
			if !r.More {
				break
			}
			after = r.Conversations[len(r.Conversations)-1].Id
		}
		if n != groups+1 {
			b.Fatalf("listed %d, want %d", n, groups+1)
		}
	}
	b.ReportMetric(float64(pages)/float64(b.N), "pages/op")
}
