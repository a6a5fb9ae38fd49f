package rdvsvc

import (
	"testing"
	"time"

	"github.com/parleychat/parley/libs/proto/internalv1"
	"github.com/parleychat/parley/protocol/parleyv1"
)

// TestIntroBudget: the budget in the record, as introduceWithin applies
// it: the first introduction is free, then 12 at once, then one per 5 s;
// a budget written by a replica whose clock ran more than a minute ahead
// does not make the session wait out the skew.
func TestIntroBudget(t *testing.T) {
	const now = int64(1_000_000_000)
	sec := time.Second.Milliseconds()
	introducibleRec := func(tat int64, intro uint32) *internalv1.P2PRecord {
		return &internalv1.P2PRecord{State: parleyv1.P2PSession_STATE_ACCEPTED, Intro: intro, IntroTatUnixMs: tat,
			A: &internalv1.P2PSide{Srflx: "192.0.2.1:4000"}, B: &internalv1.P2PSide{Srflx: "198.51.100.1:5000"}}
	}
	// Counts the introductions allowed back to back at now.
	burst := func(rec *internalv1.P2PRecord, at int64) int {
		n := 0
		for introduceWithin(rec, at) {
			n++
		}
		return n
	}
	for _, tc := range []struct {
		name string
		tat  int64
		at   int64 // when the burst is tried
		want int
	}{
		{"a full budget", 0, now, 12},
		{"a tat long past", now - 3600*sec, now, 12},
		{"spent", now + 60*sec, now, 0},
		{"spent, 4.999 s later", now + 60*sec, now + 5*sec - 1, 0},
		{"spent, 5 s later", now + 60*sec, now + 5*sec, 1},
		{"spent, a minute later", now + 60*sec, now + 60*sec, 12},
		{"half spent", now + 30*sec, now, 6},
		{"spent to the full minute", now + 60*sec, now, 0},
		{"written an hour ahead", now + 3600*sec, now, 12},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := introducibleRec(tc.tat, 1)
			if !introducible(rec) {
				t.Fatal("the test's record is not introducible")
			}
			if got := burst(rec, tc.at); got != tc.want {
				t.Errorf("%d introductions at once, want %d", got, tc.want)
			}
			if !rec.IntroPending {
				t.Error("the one refused is not marked pending")
			}
		})
	}
	// The first costs nothing.
	rec := introducibleRec(now+60*sec, 0)
	if !introduceWithin(rec, now) || rec.IntroTatUnixMs != now+60*sec {
		t.Errorf("the first introduction waited or was charged: tat %d", rec.IntroTatUnixMs)
	}
}
