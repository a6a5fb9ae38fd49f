package main

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Every message's text names the level it belongs to and its id within
// the level: "msgbench <level> <id> xxxx…" (padded to -text-bytes). The
// receiving side finds the send's start time from it. Sender and receivers
// are in this process, so latencies use one monotonic clock (since epoch).
var epoch = time.Now()

func now() int64 { return int64(time.Since(epoch)) }

func messageText(lvl, id, size int) string {
	s := "msgbench " + strconv.Itoa(lvl) + " " + strconv.Itoa(id) + " "
	if pad := size - len(s); pad > 0 {
		s += strings.Repeat("x", pad)
	}
	return s
}

// parseText returns the level and id a benchmark message's text names.
func parseText(s string) (lvl, id int, ok bool) {
	rest, found := strings.CutPrefix(s, "msgbench ")
	if !found {
		return 0, 0, false
	}
	a, rest, _ := strings.Cut(rest, " ")
	b, _, _ := strings.Cut(rest, " ")
	lvl, err1 := strconv.Atoi(a)
	id, err2 := strconv.Atoi(b)
	return lvl, id, err1 == nil && err2 == nil
}

// level is one measured load step. Messages get ids 0,1,2… in the order
// their sends start; the arrays below are indexed by id and written with
// atomics (senders, receivers and the reporter run concurrently).
type level struct {
	num  int
	name string

	next    atomic.Int64 // next id
	starts  []atomic.Int64
	replied []atomic.Int64 // reply time; failedSend if the send failed
	first   []atomic.Int64 // direct: latency of the first receipt (0: none yet)
	recv    []atomic.Int32 // receipts (direct: by the receiver; room: by all members)
	// repaired: room members that read the message from history instead
	// (-room-repair).
	repaired []atomic.Int32

	errs      atomic.Int64
	firstErr  atomic.Value // string
	skipped   atomic.Int64 // open loop: sends not started (sender too far behind)
	gaps      atomic.Int64 // receivers: seqs skipped when a later one arrived first
	reordered atomic.Int64 // room members: skipped seqs that arrived later
	dups      atomic.Int64 // receivers: seqs seen twice
	overflows atomic.Int64 // ids beyond the arrays (not sent)
}

const failedSend = -1

func newLevel(num int, name string, capacity int) *level {
	return &level{
		num: num, name: name,
		starts:  make([]atomic.Int64, capacity),
		replied: make([]atomic.Int64, capacity),
		first:   make([]atomic.Int64, capacity),
		recv:    make([]atomic.Int32, capacity),

		repaired: make([]atomic.Int32, capacity),
	}
}

// alloc reserves the next id, or returns false when the level is full.
func (l *level) alloc() (int, bool) {
	id := int(l.next.Add(1) - 1)
	if id >= len(l.starts) {
		l.overflows.Add(1)
		return 0, false
	}
	return id, true
}

func (l *level) sent() int { return min(int(l.next.Load()), len(l.starts)) }

func (l *level) fail(err error) {
	l.errs.Add(1)
	l.firstErr.CompareAndSwap(nil, err.Error())
}

// levels maps a level number to its level for receivers; numbers are
// small and assigned in order.
type levels struct {
	all [64]atomic.Pointer[level]
}

func (ls *levels) get(n int) *level {
	if n < 0 || n >= len(ls.all) {
		return nil
	}
	return ls.all[n].Load()
}

func (ls *levels) set(l *level) error {
	if l.num >= len(ls.all) {
		return fmt.Errorf("too many levels")
	}
	ls.all[l.num].Store(l)
	return nil
}

// dist summarises durations (nanoseconds).
type dist struct {
	n             int
	p50, p99, max time.Duration
}

func summarize(v []int64) dist {
	if len(v) == 0 {
		return dist{}
	}
	slices.Sort(v)
	q := func(p float64) time.Duration {
		i := int(p*float64(len(v))+0.5) - 1
		return time.Duration(v[min(max(i, 0), len(v)-1)])
	}
	return dist{n: len(v), p50: q(0.50), p99: q(0.99), max: time.Duration(v[len(v)-1])}
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/1e6) }
