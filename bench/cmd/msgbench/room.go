package main

import (
	"github.com/parleychat/parley/bench/internal/child"

	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
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
	// Member i uses transport i%nt. With as many gateways as transports
	// (or a multiple), each transport has gateways of its own: the same
	// messages, at the same time, fanned out over each transport by its
	// own processes, so their CPU per delivery compares directly.
	r.separate = nt == 1 || g%nt == 0
	r.gateways = make([][]string, nt)
	memberGateway := func(i int) int {
		if !r.separate {
			return i % g
		}
		return i%nt + nt*((i/nt)%(g/nt))
	}
	for gi := range g {
		for t := range nt {
			if !r.separate || gi%nt == t {
				r.gateways[t] = append(r.gateways[t], c.gateways[gi].Name)
			}
		}
	}
	if !r.separate {
		logf("msg-room: %d gateways cannot be split between %d transports: CPU per delivery is not per transport", g, nt)
	}
	maccts, err := register(ctx, gw, "m", o.members, o.regParallel, false)
	if err != nil {
		r.err = err
		return r
	}
	saccts, err := register(ctx, gw, "s", o.roomSenders, o.regParallel, true)
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
				m, rd, err := dialMember(ctx, c.gateways[memberGateway(i)], o.roomTransports[t] == "ws", maccts[i].session.Token)
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
	go func() {
		t := time.NewTicker(20 * time.Second)
		defer t.Stop()
		for nonce := uint64(1); ; nonce++ {
			select {
			case <-pingDone:
				return
			case <-t.C:
				for _, m := range members {
					m.ping(nonce)
				}
			}
		}
	}()
	senders := make([]*sender, len(saccts))
	for i, a := range saccts {
		senders[i] = &sender{client: a.client, conv: roomID}
		wg.Add(1)
		go func() { defer wg.Done(); drainEvents(a.client, &discons) }()
	}

	// Warm-up: one message, so every member knows the room's seq.
	warm := newLevel(0, "warm-up", 1)
	_ = ls.set(warm)
	closedLoopN(ctx, senders[:1], warm, o.textBytes)
	if res := finishRoom(ctx, c, warm, members, nil, 30*time.Second, 0); res.lost > 0 || res.errs > 0 {
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
		res := finishRoom(ctx, c, l, members, m, o.drain, o.roomDuration)
		res.targetRate = rate
		r.levels = append(r.levels, res)
		logf("msg-room: %s", res.roomSummary())
		if res.saturated() {
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
// member), latency is per delivery.
func finishRoom(ctx context.Context, c *cluster, l *level, members []*member, m *cpuMeter, drain, elapsed time.Duration) levelResult {
	figures := func() levelResult {
		res := directFigures(l) // sends, replies, acks; "received" is redone below
		res.received, res.lost, res.dups, res.reordered = 0, 0, int(l.dups.Load()), int(l.reordered.Load())
		for _, mb := range members {
			if !mb.closed.Load() {
				res.members++
			}
		}
		for id := range res.sent {
			if l.replied[id].Load() > 0 {
				res.received += int(l.recv[id].Load())
			}
		}
		res.lost = max(0, res.ok*res.members-res.received)
		return res
	}
	deadline := time.Now().Add(drain)
	res := figures()
	for res.lost > 0 && time.Now().Before(deadline) && child.Sleep(ctx, 100*time.Millisecond) == nil {
		res = figures()
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
	if r.firstErr != "" {
		s += "; first error: " + r.firstErr
	}
	for _, c := range r.cpu {
		s += fmt.Sprintf("; %s %.2f", c.name, c.cores)
	}
	return s
}
