package main

import (
	"github.com/parleychat/parley/bench/internal/child"

	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parleychat/parley/clients/parley"
)

// levelResult is one measured load step of either scenario.
type levelResult struct {
	name       string
	targetRate float64       // open loop: messages/s asked for; 0: closed loop
	elapsed    time.Duration // sending time
	sent       int           // sends started
	ok         int           // sends answered with the stored message
	errs       int
	firstErr   string
	skipped    int // open loop: due sends not started (too many waiting)
	// Direct: messages received (first receipt) and those with a reply
	// but never received. Room: deliveries = (message, member) receipts.
	received, lost int
	dups, gaps     int
	reordered      int // room: deliveries that came after a later seq
	// storedAnyway: a send that failed (timeout) but whose message arrived.
	storedAnyway int
	members      int // room: members connected at the start of the level
	// Room, -room-repair: deliveries read from history by members that
	// missed them live (§15.3), the history requests that took, and the
	// members still connected after the repair (and how many of those
	// left the connection with SLOW_CONSUMER).
	repaired, historyReads int
	connectedAfter         int
	slowConsumers          int
	repairErr              string
	e2e, ack               dist
	cpu                    []cpuShare
	cpuWall                time.Duration      // time over which cpu was measured (level + drain)
	nats                   natsCount          // nats-server's messages in and out over the same time (direct)
	drained                bool               // every answered message arrived before the drain timeout
	byTransport            []transportFigures // room: per -room-transports entry
}

func (r levelResult) rate() float64 { return float64(r.ok) / r.elapsed.Seconds() }

// directResult is the msg-direct scenario.
type directResult struct {
	pairs       int
	regElapsed  time.Duration
	levels      []levelResult
	disconnects int64
	err         error
}

// runDirect measures persisted one-to-one messages: pairs of clients
// (wire or SDK, -direct-clients), the sender of pair i on gateway i mod G
// and its receiver on the next gateway (so, with two gateways, every
// message crosses from one gateway to the other), each pair in its own
// private conversation.
func runDirect(ctx context.Context, c *cluster, o options, logf func(string, ...any)) *directResult {
	r := &directResult{pairs: o.pairs}
	g := len(c.gateways)
	gw := func(i int) *gateway { return c.gateways[(i/2+i%2)%g] }
	t0 := time.Now()
	sdk := o.directClients == "sdk"
	accts, err := register(ctx, func(i int) string { return gw(i).tcp }, "d", 2*o.pairs, o.regParallel, sdk)
	if err != nil {
		r.err = err
		return r
	}
	var (
		ls      levels
		wg      sync.WaitGroup
		discons atomic.Int64
		closers []func()
	)
	senders := make([]*sender, o.pairs)
	if sdk {
		for i := range o.pairs {
			s, rc := accts[2*i], accts[2*i+1]
			conv := directID(s.session.UserID, rc.session.UserID)
			senders[i] = &sender{post: sdkPost(s.client), conv: conv}
			wg.Add(2)
			go func() { defer wg.Done(); drainEvents(s.client, &discons) }()
			go func() { defer wg.Done(); receiveDirect(rc.client, conv, &ls, &discons) }()
		}
		for _, a := range accts {
			closers = append(closers, func() { a.client.Close() }) // ends the receivers and drainers
		}
	} else {
		clients := make([]*wireClient, len(accts))
		for i, a := range accts {
			w, err := dialWire(ctx, gw(i), a.session.Token)
			if err != nil {
				for _, w := range clients[:i] {
					w.close()
				}
				r.err = fmt.Errorf("connect %s: %w", a.name, err)
				return r
			}
			clients[i] = w
			closers = append(closers, w.close)
		}
		// The gateway closes a connection it hears nothing from for its
		// idle timeout (90 s); a receiver only reads, so every client pings
		// as the SDK does.
		pingDone := make(chan struct{})
		closers = append(closers, func() { close(pingDone) })
		ms := make([]*member, len(clients))
		for i, w := range clients {
			ms[i] = w.m
		}
		go pingEvery(ms, pingDone)
		for i := range o.pairs {
			s, rc := clients[2*i], clients[2*i+1]
			conv := directID(accts[2*i].session.UserID, accts[2*i+1].session.UserID)
			senders[i] = &sender{post: s.post, start: s.start, conv: conv}
			wg.Add(2)
			go func() { defer wg.Done(); s.read("", &ls, &discons) }()
			go func() { defer wg.Done(); rc.read(conv, &ls, &discons) }()
		}
	}
	r.regElapsed = time.Since(t0)
	logf("msg-direct: %d users registered and connected (%s clients) in %s", len(accts), o.directClients, r.regElapsed.Round(time.Millisecond))

	// Warm-up (not reported): one message per pair, so that each receiver
	// has listed its conversation and the messaging replicas have cached it.
	warm := newLevel(0, "warm-up", o.pairs*2)
	_ = ls.set(warm)
	closedLoopN(ctx, senders, warm, o.textBytes)
	if res := finishLevel(ctx, c, warm, nil, 30*time.Second, 0); res.lost > 0 || res.errs > 0 {
		logf("msg-direct: warm-up: %d of %d not received, %d errors (%s)", res.lost, res.ok, res.errs, res.firstErr)
	}

	capacity := func(rate float64) int { return int(rate*o.directDuration.Seconds()*1.1) + 10*o.pairs }
	// The open-loop levels first, then the closed loop: nats-server keeps
	// every message id for the stream's duplicate window (10 minutes by
	// default), in memory, so what earlier levels stored weighs on later
	// ones (a bigger heap, longer garbage collections). The floors
	// (relayfloor) run only open-loop levels, with the same window, so
	// Parley's open-loop levels start from the same history as theirs. The
	// closed loop used to come first and store 200,000-600,000 messages
	// before them: at 7,500/s after a minute of it p99 was 110 ms, against
	// 14-60 ms without it (2026-12-07).
	num := 0
	for _, rate := range o.directRates {
		if ctx.Err() != nil {
			break
		}
		num++
		l := newLevel(num, fmt.Sprintf("open %.0f/s", rate), capacity(rate))
		_ = ls.set(l)
		m := c.meter()
		openLoop(ctx, senders, l, rate, o.directDuration, o.maxInflight, o.textBytes)
		res := finishLevel(ctx, c, l, m, o.drain, o.directDuration)
		res.targetRate = rate
		r.levels = append(r.levels, res)
		logf("msg-direct: %s", res.summary())
		if res.saturated() {
			logf("msg-direct: %s did not keep up; higher rates skipped", res.name)
			break
		}
	}

	// Closed loop: as fast as the replies come, one in flight per sender.
	if ctx.Err() == nil {
		num++
		l := newLevel(num, "closed loop", capacity(float64(o.maxClosedRate)))
		_ = ls.set(l)
		m := c.meter()
		start := time.Now()
		closedLoop(ctx, senders, l, start.Add(o.directDuration), o.textBytes)
		res := finishLevel(ctx, c, l, m, o.drain, time.Since(start))
		r.levels = append(r.levels, res)
		logf("msg-direct: %s", res.summary())
	}
	r.disconnects = discons.Load() // before Close, which ends with a DisconnectedEvent
	for _, c := range closers {
		c()
	}
	wg.Wait()
	return r
}

// closedLoopN sends exactly one message per sender.
func closedLoopN(ctx context.Context, ss []*sender, l *level, textBytes int) {
	var wg sync.WaitGroup
	for _, s := range ss {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if id, ok := l.alloc(); ok {
				s.sendOne(ctx, l, id, now(), textBytes)
			}
		}()
	}
	wg.Wait()
}

// receiveDirect is a receiver: it checks that its conversation's messages
// come with seq 1, 2, 3… (the SDK promises that) and records when each
// benchmark message first arrived. It ends when the client is closed.
func receiveDirect(c *parley.Client, conv string, ls *levels, discons *atomic.Int64) {
	var last uint64
	for ev := range c.Events() {
		switch ev := ev.(type) {
		case parley.MessageEvent:
			if m := ev.Message; m.Conversation == conv {
				recordDirect(ls, &last, m.Seq, m.Text)
			}
		case parley.DisconnectedEvent:
			discons.Add(1)
		}
	}
}

// finishLevel waits (up to drain) until every answered message of a
// direct level has arrived, ends the CPU measurement and computes the
// figures.
func finishLevel(ctx context.Context, c *cluster, l *level, m *cpuMeter, drain, elapsed time.Duration) levelResult {
	deadline := time.Now().Add(drain)
	res := directFigures(l)
	for res.lost > 0 && time.Now().Before(deadline) && child.Sleep(ctx, 100*time.Millisecond) == nil {
		res = directFigures(l)
	}
	res.drained = res.lost == 0
	res.elapsed = elapsed
	if m != nil {
		res.cpu, res.cpuWall = m.end()
		res.nats = m.nats
	}
	return res
}

func directFigures(l *level) levelResult {
	res := levelResult{name: l.name, sent: l.sent(), errs: int(l.errs.Load()), skipped: int(l.skipped.Load()),
		dups: int(l.dups.Load()), gaps: int(l.gaps.Load())}
	if e, ok := l.firstErr.Load().(string); ok {
		res.firstErr = e
	}
	var e2e, ack []int64
	for id := range res.sent {
		st, rp, n := l.starts[id].Load(), l.replied[id].Load(), l.recv[id].Load()
		if n > 1 {
			res.dups += int(n - 1)
		}
		switch {
		case rp == failedSend:
			if n > 0 {
				res.storedAnyway++
			}
		case rp > 0:
			res.ok++
			ack = append(ack, rp-st)
			if n == 0 {
				res.lost++
			} else {
				res.received++
				e2e = append(e2e, l.first[id].Load())
			}
		}
	}
	res.e2e, res.ack = summarize(e2e), summarize(ack)
	return res
}

// saturated: the open-loop level did not sustain its rate.
func (r levelResult) saturated() bool {
	return r.targetRate > 0 && (float64(r.skipped) > 0.01*float64(r.sent+r.skipped) || r.rate() < 0.9*r.targetRate)
}

func (r levelResult) summary() string {
	s := fmt.Sprintf("%s: %d sent, %d ok (%.0f/s), %d errors, %d skipped, received %d, lost %d, dups %d, gaps %d; e2e p50 %s p99 %s max %s",
		r.name, r.sent, r.ok, r.rate(), r.errs, r.skipped, r.received, r.lost, r.dups, r.gaps, ms(r.e2e.p50), ms(r.e2e.p99), ms(r.e2e.max))
	if r.firstErr != "" {
		s += "; first error: " + r.firstErr
	}
	for _, c := range r.cpu {
		s += fmt.Sprintf("; %s %.2f", c.name, c.cores)
	}
	return s
}
