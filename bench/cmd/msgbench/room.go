package main

import (
	"github.com/parleychat/parley/bench/internal/child"

	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parleychat/parley/protocol/parleyv1"
)

// roomID is the public room's conversation id.
const roomID = "room.public"

// roomResult is the msg-room scenario.
type roomResult struct {
	members, senders int
	connected        int
	connectFailed    int
	firstConnErr     string
	levels           []levelResult
	disconnects      int64
	err              error
	// transports are -room-transports; gateways[t] names the gateways
	// whose members use transports[t]. separate: no gateway serves two
	// transports, so each one's gateway CPU per delivery is its own.
	transports []string
	gateways   [][]string
	separate   bool
}

// transportFigures are one level's deliveries to the members of one
// transport.
type transportFigures struct {
	members    int
	deliveries int
	e2e        dist
}

// runRoom measures fan-out in the public room: members connected over the
// wire protocol (spread over the gateways) receive what a few SDK senders
// post at rising rates.
func runRoom(ctx context.Context, c *cluster, o options, logf func(string, ...any)) *roomResult {
	r := &roomResult{members: o.members, senders: o.roomSenders, transports: o.roomTransports}
	g, nt := len(c.gateways), len(o.roomTransports)
	gw := func(i int) string { return c.gateways[i%g].tcp }
	sgw := gw
	mg := g // the members' gateways: the first mg
	if o.sendersApart && g > 1 {
		// Senders on the last gateway, members on the others: a gateway
		// that falls behind its members does not slow the sends.
		mg = g - 1
		gw = func(i int) string { return c.gateways[i%mg].tcp }
		sgw = func(int) string { return c.gateways[g-1].tcp }
	}
	// Member i uses transport i%nt. With as many member gateways as
	// transports (or a multiple), each transport has gateways of its own:
	// the same messages, at the same time, fanned out over each transport
	// by its own processes, so their CPU per delivery compares directly.
	r.separate = nt == 1 || mg%nt == 0
	r.gateways = make([][]string, nt)
	memberGateway := func(i int) int {
		if !r.separate {
			return i % mg
		}
		return i%nt + nt*((i/nt)%(mg/nt))
	}
	for gi := range mg {
		for t := range nt {
			if !r.separate || gi%nt == t {
				r.gateways[t] = append(r.gateways[t], c.gateways[gi].Name)
			}
		}
	}
	if !r.separate {
		logf("msg-room: %d member gateways cannot be split between %d transports: CPU per delivery is not per transport", mg, nt)
	}
	// Registration and the senders (SDK clients, plain TCP) avoid the
	// TLS gateways (-room-transports tls): a member registers through
	// any other gateway, its session resumes on its own.
	var plain []*gateway
	for _, g := range c.gateways {
		if !g.tls {
			plain = append(plain, g)
		}
	}
	regGW := func(pick func(int) string) func(int) string {
		if len(plain) == len(c.gateways) {
			return pick
		}
		return func(i int) string { return plain[i%len(plain)].tcp }
	}
	maccts, err := register(ctx, regGW(gw), "m", o.members, o.regParallel, false)
	if err != nil {
		r.err = err
		return r
	}
	saccts, err := register(ctx, regGW(sgw), "s", o.roomSenders, o.regParallel, true)
	if err != nil {
		r.err = err
		return r
	}
	logf("msg-room: %d members and %d senders registered", len(maccts), len(saccts))

	var (
		ls      levels
		wg      sync.WaitGroup
		discons atomic.Int64
		mu      sync.Mutex // guards members, r.connectFailed, r.firstConnErr
		members []*member
		next    atomic.Int64
	)
	var dials sync.WaitGroup
	for range 32 {
		dials.Add(1)
		go func() {
			defer dials.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(maccts) || ctx.Err() != nil {
					return
				}
				t := i % nt
				m, rd, err := dialMember(ctx, c.gateways[memberGateway(i)], o.roomTransports[t], maccts[i].session.Token)
				if m != nil {
					m.transport = t
				}
				mu.Lock()
				if err != nil {
					r.connectFailed++
					if r.firstConnErr == "" {
						r.firstConnErr = err.Error()
					}
				} else {
					members = append(members, m)
					wg.Add(1)
					go func() { defer wg.Done(); m.read(rd, roomID, &ls) }()
				}
				mu.Unlock()
			}
		}()
	}
	dials.Wait()
	r.connected = len(members)
	logf("msg-room: %d members connected (%d failed)", r.connected, r.connectFailed)
	pingDone := make(chan struct{})
	go pingEvery(members, pingDone)
	senders := make([]*sender, len(saccts))
	for i, a := range saccts {
		senders[i] = &sender{post: sdkPost(a.client), conv: roomID}
		wg.Add(1)
		go func() { defer wg.Done(); drainEvents(a.client, &discons) }()
	}

	// Warm-up: one message, so every member knows the room's seq.
	warm := newLevel(0, "warm-up", 1)
	_ = ls.set(warm)
	closedLoopN(ctx, senders[:1], warm, o.textBytes)
	if res := finishRoom(ctx, c, warm, members, nil, 30*time.Second, 0, false, &ls); res.lost > 0 || res.errs > 0 {
		logf("msg-room: warm-up: %d deliveries missing, %d errors (%s)", res.lost, res.errs, res.firstErr)
	}
	for i, rate := range o.roomRates {
		if ctx.Err() != nil {
			break
		}
		l := newLevel(i+1, fmt.Sprintf("%.0f msg/s", rate), int(rate*o.roomDuration.Seconds()*1.1)+10*len(senders))
		_ = ls.set(l)
		m := c.meter()
		openLoop(ctx, senders, l, rate, o.roomDuration, o.maxInflight, o.textBytes)
		res := finishRoom(ctx, c, l, members, m, o.drain, o.roomDuration, o.roomRepair, &ls)
		res.targetRate = rate
		r.levels = append(r.levels, res)
		logf("msg-room: %s", res.roomSummary())
		if res.saturated() && !o.roomRepair {
			logf("msg-room: %s did not keep up; higher rates skipped", res.name)
			break
		}
	}
	r.disconnects = discons.Load()
	close(pingDone)
	for _, m := range members {
		m.conn.Close()
	}
	for _, a := range saccts {
		a.client.Close()
	}
	wg.Wait()
	return r
}

// finishRoom waits (up to drain) until every answered message reached
// every member that is still connected, ends the CPU measurement and
// computes the figures: received and lost count deliveries (message,
// member), latency is per delivery. With repair, the wait ends early once
// nothing more arrives for two seconds; then every member reads what it
// missed from history (repaired deliveries) and lost is what neither
// brought.
func finishRoom(ctx context.Context, c *cluster, l *level, members []*member, m *cpuMeter, drain, elapsed time.Duration, repair bool, ls *levels) levelResult {
	figures := func() levelResult {
		res := directFigures(l) // sends, replies, acks; "received" is redone below
		res.received, res.lost, res.dups, res.reordered = 0, 0, int(l.dups.Load()), int(l.reordered.Load())
		res.repaired = 0
		for _, mb := range members {
			if !mb.closed.Load() {
				res.members++
			}
		}
		for id := range res.sent {
			if l.replied[id].Load() > 0 {
				res.received += int(l.recv[id].Load())
				res.repaired += int(l.repaired[id].Load())
			}
		}
		res.lost = max(0, res.ok*res.members-res.received-res.repaired)
		return res
	}
	deadline := time.Now().Add(drain)
	res := figures()
	still := time.Now()
	for res.lost > 0 && time.Now().Before(deadline) && child.Sleep(ctx, 100*time.Millisecond) == nil {
		prev := res.received
		res = figures()
		if res.received != prev {
			still = time.Now()
		} else if repair && time.Since(still) > 2*time.Second {
			break
		}
	}
	res.drained = res.lost == 0
	res.elapsed = elapsed
	if m != nil {
		res.cpu, res.cpuWall = m.end()
	}
	var lats []int64
	byTransport := map[int][]int64{}
	for _, mb := range members {
		ml := mb.takeLats(l.num)
		lats = append(lats, ml...)
		byTransport[mb.transport] = append(byTransport[mb.transport], ml...)
		if !mb.closed.Load() {
			res.transportMembers(mb.transport).members++
		}
	}
	for t, tl := range byTransport {
		f := res.transportMembers(t)
		f.deliveries = len(tl)
		f.e2e = summarize(tl)
	}
	res.e2e = summarize(lats)
	if !repair {
		return res
	}
	var (
		wg       sync.WaitGroup
		next     atomic.Int64
		reads    atomic.Int64
		errMu    sync.Mutex
		firstErr string
	)
	for range 32 {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(members) || ctx.Err() != nil {
					return
				}
				mb := members[i]
				if mb.closed.Load() {
					continue
				}
				n, err := mb.repair(ctx, roomID, ls)
				reads.Add(int64(n))
				if err != nil {
					errMu.Lock()
					if firstErr == "" {
						firstErr = err.Error()
					}
					errMu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	after := figures()
	// Live events still arriving during the repair count as live (the
	// latencies above are those before it).
	res.received, res.repaired, res.lost, res.members = after.received, after.repaired, after.lost, after.members
	res.historyReads, res.repairErr = int(reads.Load()), firstErr
	res.connectedAfter = after.members
	for _, mb := range members {
		if parleyv1.ErrorCode(mb.errCode.Load()) == parleyv1.ErrorCode_ERROR_CODE_SLOW_CONSUMER {
			res.slowConsumers++
		}
	}
	return res
}

// transportMembers is the level's figures for transport t (grown as needed).
func (r *levelResult) transportMembers(t int) *transportFigures {
	for len(r.byTransport) <= t {
		r.byTransport = append(r.byTransport, transportFigures{})
	}
	return &r.byTransport[t]
}

func (r levelResult) deliveryRate() float64 { return float64(r.received) / r.elapsed.Seconds() }

func (r levelResult) roomSummary() string {
	s := fmt.Sprintf("%s: %d sent, %d ok (%.1f/s), %d errors, %d skipped, %d members, %d deliveries (%.0f/s), lost %d, dups %d, out of order %d; latency p50 %s p99 %s max %s",
		r.name, r.sent, r.ok, r.rate(), r.errs, r.skipped, r.members, r.received, r.deliveryRate(), r.lost, r.dups, r.reordered,
		ms(r.e2e.p50), ms(r.e2e.p99), ms(r.e2e.max))
	if r.historyReads > 0 || r.connectedAfter > 0 {
		s += fmt.Sprintf("; repaired from history %d (%d requests), connected after repair %d, SLOW_CONSUMER %d",
			r.repaired, r.historyReads, r.connectedAfter, r.slowConsumers)
		if r.repairErr != "" {
			s += "; first repair error: " + r.repairErr
		}
	}
	if r.firstErr != "" {
		s += "; first error: " + r.firstErr
	}
	for _, c := range r.cpu {
		s += fmt.Sprintf("; %s %.2f", c.name, c.cores)
	}
	return s
}
