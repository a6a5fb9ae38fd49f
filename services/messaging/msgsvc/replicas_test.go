package msgsvc_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/parleychat/parley/libs/rpc"
	"github.com/parleychat/parley/libs/subject"
	"github.com/parleychat/parley/protocol/convid"
	"github.com/parleychat/parley/protocol/parleyv1"
)

// Two replicas appending to one conversation at once still number its
// messages 1..n with no gap and no repeat, in the order they are stored.
func TestSeqGapFreeAcrossReplicas(t *testing.T) {
	e := newEnv(t)
	r1, r2 := e.start(t, testConfig()), e.start(t, testConfig())
	const senders, each = 4, 50
	var wg sync.WaitGroup
	got := make([][]*parleyv1.Message, senders)
	for g := range senders {
		wg.Go(func() {
			for i := range each {
				r, err := e.sendReq(alice, &parleyv1.SendRequest{Conversation: convid.PublicRoom,
					Text: fmt.Sprintf("%d/%d", g, i), ClientKey: fmt.Sprintf("g%d-%d", g, i)})
				if err != nil {
					t.Errorf("sender %d message %d: %v", g, i, err)
					return
				}
				got[g] = append(got[g], r.Message)
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	// Each sender's messages got increasing seqs (it waited for each reply).
	for g, ms := range got {
		for i := 1; i < len(ms); i++ {
			if ms[i].Seq <= ms[i-1].Seq {
				t.Errorf("sender %d: seq %d after %d", g, ms[i].Seq, ms[i-1].Seq)
			}
		}
	}
	h := e.allHistory(t, bob, convid.PublicRoom)
	wantSeqs(t, "history", h, 1, senders*each)
	seen := map[string]bool{}
	for _, m := range h {
		if seen[m.ClientKey] {
			t.Errorf("message %s stored twice", m.ClientKey)
		}
		seen[m.ClientKey] = true
	}
	if len(seen) != senders*each {
		t.Errorf("%d distinct messages stored, want %d", len(seen), senders*each)
	}
	t.Logf("appends retried after losing to the other replica: %v",
		metricValue(t, r1, "parley_messaging_seq_conflicts_total")+metricValue(t, r2, "parley_messaging_seq_conflicts_total"))
	// Both replicas took part (the queue group spreads the requests).
	for i, r := range []*replica{r1, r2} {
		if n := metricValue(t, r, "parley_messaging_messages_stored_total"); n == 0 {
			t.Errorf("replica %d stored nothing", i+1)
		}
	}
}

// A replica dying in the middle of a burst loses nothing acknowledged; a
// client re-sending what failed (same client_key, as the SDK does) gets
// every message stored exactly once.
func TestReplicaDiesMidBurst(t *testing.T) {
	e := newEnv(t)
	doomed := e.start(t, testConfig())
	e.start(t, testConfig())
	const senders, each = 4, 40
	type result struct {
		key string
		ok  bool
	}
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex // guards results
		results []result
		started = make(chan struct{})
		once    sync.Once
	)
	for g := range senders {
		wg.Go(func() {
			for i := range each {
				key := fmt.Sprintf("g%d-%d", g, i)
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				var reply parleyv1.SendReply
				err := rpc.Request(ctx, e.nc, subject.MsgSend, header(alice),
					&parleyv1.SendRequest{Conversation: "dm.ualice.ubob", Text: key, ClientKey: key}, &reply)
				cancel()
				mu.Lock()
				results = append(results, result{key, err == nil})
				mu.Unlock()
				if i == each/4 {
					once.Do(func() { close(started) })
				}
			}
		})
	}
	<-started
	doomed.nc.Close() // the process is gone: its connection drops mid-request
	wg.Wait()
	doomed.stop()

	stored := map[string]int{}
	for _, m := range e.allHistory(t, bob, "dm.ualice.ubob") {
		stored[m.ClientKey]++
	}
	failed := 0
	for _, r := range results {
		if r.ok && stored[r.key] != 1 {
			t.Errorf("acknowledged message %s stored %d times", r.key, stored[r.key])
		}
		if !r.ok {
			failed++
		}
	}
	t.Logf("%d of %d sends failed with the replica", failed, len(results))
	// Re-send the failed ones with their keys, as the SDK does.
	for _, r := range results {
		if r.ok {
			continue
		}
		if _, err := e.sendReq(alice, &parleyv1.SendRequest{Conversation: "dm.ualice.ubob", Text: r.key, ClientKey: r.key}); err != nil {
			t.Fatalf("re-send %s: %v", r.key, err)
		}
	}
	h := e.allHistory(t, bob, "dm.ualice.ubob")
	wantSeqs(t, "history", h, 1, senders*each)
	stored = map[string]int{}
	for _, m := range h {
		stored[m.ClientKey]++
	}
	for _, r := range results {
		if stored[r.key] != 1 {
			t.Errorf("message %s stored %d times", r.key, stored[r.key])
		}
	}
}

// metricValue sums a counter over its series on a replica's registry.
func metricValue(t testing.TB, r *replica, name string) float64 {
	t.Helper()
	mfs, err := r.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}
