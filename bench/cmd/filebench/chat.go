package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parleychat/parley/bench/internal/child"
	"github.com/parleychat/parley/clients/parley"
)

// The chat scenario (file-chat): user A sends private messages to B, both
// on the gateway, at a steady rate, first with nothing else going on, then
// while A uploads files through the same gateway as fast as it can, then
// while A downloads one. Latency is from the time a message was due (open
// loop: a late sender counts) to B's MessageEvent, on this process's
// monotonic clock; the text "filebench <level> <id> …" names the message.

var epoch = time.Now()

func now() int64 { return int64(time.Since(epoch)) }

// Level kinds: what the transfer does while the chat is measured.
const (
	bgNone     = "no transfer"
	bgUpload   = "during upload"
	bgDownload = "during download"
)

// chatLevel is one measured chat level.
type chatLevel struct {
	name           string
	rate           float64
	duration       time.Duration
	sent, ok, errs int
	lost           int // answered but never received
	firstErr       string
	e2e, reply     dist
	transferMBps   float64 // the background transfer's rate during the level
	transferErr    string
	cpu            []cpuShare
}

// chatResult is the file-chat scenario.
type chatResult struct {
	transferSize int64
	levels       []chatLevel
	err          error
}

// chatState records one level's messages as they go; arrays are indexed
// by message id and written with atomics.
type chatState struct {
	due     []int64 // set before the send starts
	replied []atomic.Int64
	arrived []atomic.Int64
	next    atomic.Int64
	errs    atomic.Int64

	mu       sync.Mutex // guards firstErr
	firstErr string
}

func newChatState(n int) *chatState {
	return &chatState{due: make([]int64, n), replied: make([]atomic.Int64, n), arrived: make([]atomic.Int64, n)}
}

func (s *chatState) fail(err error) {
	s.errs.Add(1)
	s.mu.Lock()
	if s.firstErr == "" {
		s.firstErr = err.Error()
	}
	s.mu.Unlock()
}

func chatText(lvl, id int) string {
	s := "filebench " + strconv.Itoa(lvl) + " " + strconv.Itoa(id) + " "
	return s + strings.Repeat("x", max(0, 64-len(s)))
}

func parseChat(s string) (lvl, id int, ok bool) {
	rest, found := strings.CutPrefix(s, "filebench ")
	if !found {
		return 0, 0, false
	}
	a, rest, _ := strings.Cut(rest, " ")
	b, _, _ := strings.Cut(rest, " ")
	lvl, err1 := strconv.Atoi(a)
	id, err2 := strconv.Atoi(b)
	return lvl, id, err1 == nil && err2 == nil
}

// runChat measures chat latency between a (sender, who also transfers)
// and b with no transfer, during uploads and during downloads; to is the
// (offline) user the uploads are offered to.
func runChat(ctx context.Context, c *cluster, o options, a, b, to *user, src *source, logf func(string, ...any)) *chatResult {
	r := &chatResult{transferSize: src.size}
	kinds := []string{bgNone, bgUpload, bgDownload}
	n := int(o.chatRate*o.chatDuration.Seconds()) + 16
	states := make([]*chatState, len(kinds))
	for i := range states {
		states[i] = newChatState(n)
	}
	warm := make(chan struct{}, 1)
	go receiveChat(b.client, states, warm)

	// A first message opens the private chat; B must have it before
	// anything is timed.
	m, err := a.client.SendTo(ctx, b.name, "filebench warm-up")
	if err != nil {
		r.err = fmt.Errorf("warm-up message: %w", err)
		return r
	}
	select {
	case <-warm:
	case <-time.After(15 * time.Second):
		r.err = errors.New("warm-up message did not reach the peer within 15s")
		return r
	case <-ctx.Done():
		r.err = ctx.Err()
		return r
	}
	conv := m.Conversation

	// The download level reads one file uploaded beforehand.
	var dlFile *gatewayFile
	for i, kind := range kinds {
		if ctx.Err() != nil {
			break
		}
		if kind == bgDownload && dlFile == nil {
			logf("file-chat: uploading a %s file for the download level", humanBytes(src.size))
			if dlFile, err = uploadViaGateway(ctx, a, to.name, src, nil, nil); err != nil {
				r.err = err
				break
			}
		}
		settle(ctx, c.minio, 20*time.Second)
		lv := chatLevel{name: kind, rate: o.chatRate, duration: o.chatDuration}
		tctx, stopTransfer := context.WithCancel(ctx)
		moved := &countingWriter{}
		var terr error
		tdone := make(chan struct{})
		go func() {
			defer close(tdone)
			switch kind {
			case bgUpload:
				terr = uploadLoop(tctx, a, to, src, moved)
			case bgDownload:
				terr = downloadLoop(tctx, a, dlFile.id, src, moved)
			}
		}()
		if kind != bgNone {
			_ = child.Sleep(ctx, time.Second) // let the transfer reach its speed
		}
		meter := newCPUMeter(c.servers())
		m0, t0 := moved.n.Load(), time.Now()
		sendChat(ctx, a.client, conv, states[i], i, o.chatRate, o.chatDuration)
		lv.transferMBps = float64(moved.n.Load()-m0) / time.Since(t0).Seconds() / 1e6
		lv.cpu = meter.end()
		stopTransfer()
		<-tdone
		if terr != nil && !errors.Is(terr, context.Canceled) {
			lv.transferErr = terr.Error()
		}
		waitArrivals(ctx, states[i], 10*time.Second)
		lv.fill(states[i])
		logf("file-chat %s: %d sent, p50 %s, p99 %s, max %s, lost %d, transfer %.1f MB/s %s",
			kind, lv.sent, ms(lv.e2e.p50), ms(lv.e2e.p99), ms(lv.e2e.max), lv.lost, lv.transferMBps, lv.transferErr)
		r.levels = append(r.levels, lv)
	}
	if dlFile != nil {
		if err := deleteViaGateway(context.WithoutCancel(ctx), a, dlFile.id); err != nil {
			logf("delete %s: %v", dlFile.id, err)
		}
	}
	return r
}

// sendChat sends at rate for d, each message when it is due (whether or
// not earlier ones were answered), and returns when every send finished.
func sendChat(ctx context.Context, c *parley.Client, conv string, s *chatState, lvl int, rate float64, d time.Duration) {
	interval := time.Duration(float64(time.Second) / rate)
	begin := now() + int64(10*time.Millisecond)
	end := begin + int64(d)
	var wg sync.WaitGroup
	for due := begin; due < end && ctx.Err() == nil; due += int64(interval) {
		if wait := time.Duration(due - now()); wait > 0 {
			time.Sleep(wait)
		}
		id := int(s.next.Add(1) - 1)
		if id >= len(s.due) {
			break
		}
		s.due[id] = due
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := c.Send(ctx, conv, chatText(lvl, id)); err != nil {
				s.fail(err)
				return
			}
			s.replied[id].Store(now())
		}()
	}
	wg.Wait()
}

// receiveChat records when B receives each benchmark message; the first
// other message (the warm-up) is signalled on warm.
func receiveChat(c *parley.Client, states []*chatState, warm chan<- struct{}) {
	for ev := range c.Events() {
		me, ok := ev.(parley.MessageEvent)
		if !ok {
			continue
		}
		lvl, id, ok := parseChat(me.Message.Text)
		if !ok {
			select {
			case warm <- struct{}{}:
			default:
			}
			continue
		}
		if lvl >= 0 && lvl < len(states) && id >= 0 && id < len(states[lvl].arrived) {
			states[lvl].arrived[id].CompareAndSwap(0, now())
		}
	}
}

// drain reads and discards a client's events.
func drain(c *parley.Client) {
	for range c.Events() {
	}
}

// waitArrivals waits until every answered message has arrived, or within.
func waitArrivals(ctx context.Context, s *chatState, within time.Duration) {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		missing := false
		for id := range min(int(s.next.Load()), len(s.due)) {
			if s.replied[id].Load() != 0 && s.arrived[id].Load() == 0 {
				missing = true
				break
			}
		}
		if !missing {
			return
		}
		_ = child.Sleep(ctx, 50*time.Millisecond)
	}
}

func (l *chatLevel) fill(s *chatState) {
	l.sent = min(int(s.next.Load()), len(s.due))
	l.errs = int(s.errs.Load())
	l.firstErr = s.firstErr
	var e2e, reply []int64
	for id := range l.sent {
		rep, arr := s.replied[id].Load(), s.arrived[id].Load()
		if rep != 0 {
			l.ok++
			reply = append(reply, rep-s.due[id])
		}
		switch {
		case arr != 0:
			e2e = append(e2e, arr-s.due[id])
		case rep != 0:
			l.lost++
		}
	}
	l.e2e, l.reply = summarize(e2e), summarize(reply)
}

// uploadLoop uploads src again and again (each file deleted once done)
// until ctx ends; the file cut off by the end is deleted too.
func uploadLoop(ctx context.Context, a, to *user, src *source, moved *countingWriter) error {
	for ctx.Err() == nil {
		// Progress is called from the SDK's goroutine and from the HTTP
		// transport's body writer.
		var (
			mu   sync.Mutex // guards last
			last uint64
		)
		f, err := uploadViaGateway(ctx, a, to.name, src, func(sent, _ uint64) {
			mu.Lock()
			defer mu.Unlock()
			if sent > last {
				moved.n.Add(int64(sent - last))
				last = sent
			}
		}, nil)
		if f != nil {
			_ = deleteViaGateway(context.WithoutCancel(ctx), a, f.id)
		}
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return err
		}
	}
	return ctx.Err()
}

// downloadLoop downloads a file through the gateway again and again
// until ctx ends.
func downloadLoop(ctx context.Context, u *user, fileID string, src *source, moved *countingWriter) error {
	for ctx.Err() == nil {
		if err := downloadViaGateway(ctx, u, fileID, src, moved); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return err
		}
	}
	return ctx.Err()
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

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/1e6) }
