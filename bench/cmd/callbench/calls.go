package main

import (
	"context"
	"crypto/rand"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parleychat/parley/bench/internal/child"
	"github.com/parleychat/parley/protocol/media"
)

// benchPassword is every benchmark user's password.
const benchPassword = "calls-benchmark-pw"

// user is a registered user with a connection kept open.
type user struct {
	name string
	wc   *wireClient
}

// registerUsers registers n users named prefix+number over wire clients,
// user i on addrs[i%len(addrs)], parallel at a time.
func registerUsers(ctx context.Context, addrs []string, prefix string, n, parallel int) ([]*user, error) {
	out := make([]*user, n)
	err := parallelDo(ctx, n, parallel, func(i int) error {
		name := fmt.Sprintf("%s%05d", prefix, i)
		var err error
		for attempt := range 3 {
			var wc *wireClient
			if wc, err = dialWire(ctx, addrs[i%len(addrs)]); err == nil {
				if _, err = wc.register(ctx, name, benchPassword); err == nil {
					out[i] = &user{name: name, wc: wc}
					return nil
				}
				wc.close()
			}
			_ = child.Sleep(ctx, time.Duration(attempt+1)*200*time.Millisecond)
		}
		return err
	})
	if err != nil {
		for _, u := range out {
			if u != nil {
				u.wc.close()
			}
		}
		return nil, err
	}
	return out, nil
}

// parallelDo runs f(0..n-1), parallel at a time, and returns the first error.
func parallelDo(ctx context.Context, n, parallel int, f func(i int) error) error {
	var (
		next     atomic.Int64
		mu       sync.Mutex
		firstErr error
		wg       sync.WaitGroup
	)
	for range min(parallel, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := f(i); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if firstErr == nil {
		firstErr = ctx.Err()
	}
	return firstErr
}

// levelResult is one load level: n calls of two legs, 50 packets a second
// each way.
type levelResult struct {
	peer       string // "parley" or "coturn"
	calls      int
	setupFails int
	setup      time.Duration
	sent, recv int64
	bad, dupes int64
	p50, p99   time.Duration
	p999, max  time.Duration
	server     []cpuUse // the media path's processes, then others
	serverSecs float64  // CPU seconds of the media path in the window
	gen, mach  cpuUse
	legs       int     // legs sending
	foreign    float64 // cores used by processes outside the benchmark (machine - ours)
	window     time.Duration
	err        error
}

func (r levelResult) lossPct() float64 {
	if r.sent == 0 {
		return 0
	}
	return 100 * float64(r.sent-r.recv) / float64(r.sent)
}

// cpuPerPacket is the media path's CPU per packet delivered.
func (r levelResult) cpuPerPacket() time.Duration {
	if r.recv == 0 {
		return 0
	}
	return time.Duration(r.serverSecs / float64(r.recv) * float64(time.Second))
}

// measure runs the packet load over legs and fills r's figures; pathProcs'
// CPU is the server's, otherProcs' is reported.
func (r *levelResult) measure(ctx context.Context, o options, legs []*leg, pathProcs, otherProcs []*child.Proc) {
	rec := newRecorder(o.warmup, o.duration)
	var (
		cpu  []cpuUse
		done = make(chan struct{})
	)
	go func() {
		defer close(done)
		if child.Sleep(ctx, time.Until(rec.base.Add(o.warmup))) != nil {
			return
		}
		m := newMeter(append(append([]*child.Proc(nil), pathProcs...), otherProcs...))
		if child.Sleep(ctx, time.Until(rec.base.Add(o.warmup+o.duration))) != nil {
			return
		}
		cpu = m.end()
	}()
	rec.run(ctx, legs, o.drain)
	<-done
	r.window = o.duration
	r.legs = len(legs)
	r.sent, r.recv, r.bad, r.dupes = rec.sent.Load(), rec.recv.Load(), rec.bad.Load(), rec.dupes.Load()
	r.p50, r.p99, r.p999, r.max = rec.quantile(0.5), rec.quantile(0.99), rec.quantile(0.999), rec.max()
	if len(cpu) < 2 {
		return
	}
	for i, u := range cpu[:len(cpu)-2] {
		if i < len(pathProcs) {
			r.serverSecs += u.secs
		}
		r.server = append(r.server, u)
	}
	r.gen, r.mach = cpu[len(cpu)-2], cpu[len(cpu)-1]
	r.foreign = r.mach.cores - r.gen.cores
	for _, u := range r.server {
		r.foreign -= u.cores
	}
}

// sentPct is the share of the packets due in the window that the load
// generator managed to send (under 100: it was starved of CPU).
func (r levelResult) sentPct() float64 {
	due := float64(r.legs) * r.window.Seconds() * 50
	if due == 0 {
		return 0
	}
	return 100 * float64(r.sent) / due
}

// runParleyLevel sets up n one-to-one calls between users a[i] and b[i]
// through the real signalling, runs the packet load through the gateways'
// UDP ports and hangs up.
func runParleyLevel(ctx context.Context, c *cluster, o options, a, b []*user, n int, logf logFunc) levelResult {
	r := levelResult{peer: "parley", calls: n}
	legs := make([]*leg, 2*n)
	callIDs := make([]string, n)
	var fails atomic.Int64
	start := time.Now()
	_ = parallelDo(ctx, n, o.setupParallel, func(i int) error {
		ja, err := a[i].wc.placeTo(ctx, b[i].name)
		if err != nil {
			fails.Add(1)
			logf("call %d: place: %v", i, err)
			return nil
		}
		callIDs[i] = ja.GetCall().GetCallId()
		jb, err := b[i].wc.join(ctx, callIDs[i])
		if err != nil {
			fails.Add(1)
			logf("call %d: join: %v", i, err)
			return nil
		}
		la, errA := parleyLeg(ja.GetUdpAddr(), ja.GetStreamId(), ja.GetMediaKey(), o.payload)
		lb, errB := parleyLeg(jb.GetUdpAddr(), jb.GetStreamId(), jb.GetMediaKey(), o.payload)
		if errA != nil || errB != nil {
			fails.Add(1)
			logf("call %d: udp: %v %v", i, errA, errB)
			return nil
		}
		legs[2*i], legs[2*i+1] = la, lb
		return nil
	})
	r.setup = time.Since(start)
	r.setupFails = int(fails.Load())
	live := compact(legs)
	logf("parley, %d calls: set up in %s (%d failed); %d legs send for %s + %s", n, r.setup.Round(time.Millisecond), r.setupFails, len(live), o.warmup, o.duration)
	if ctx.Err() == nil && len(live) > 0 {
		r.measure(ctx, o, live, c.mediaPath(), c.others())
	}
	for _, l := range live {
		_ = l.sock.Close()
	}
	// Hang up: a direct call ends when one side leaves.
	_ = parallelDo(context.WithoutCancel(ctx), n, o.setupParallel, func(i int) error {
		if callIDs[i] != "" {
			lctx, cancel := context.WithTimeout(ctx, 20*time.Second)
			defer cancel()
			if err := a[i].wc.leave(lctx, callIDs[i]); err != nil {
				logf("call %d: leave: %v", i, err)
			}
		}
		return nil
	})
	return r
}

func compact(legs []*leg) []*leg {
	var out []*leg
	for _, l := range legs {
		if l != nil {
			out = append(out, l)
		}
	}
	return out
}

// parleyLeg is a leg on a gateway's media port with the stream and key of
// its CallJoined.
func parleyLeg(udpAddr string, stream uint32, key []byte, payload int) (*leg, error) {
	k, err := media.NewKey(key)
	if err != nil {
		return nil, err
	}
	ua, err := net.ResolveUDPAddr("udp", udpAddr)
	if err != nil {
		return nil, err
	}
	sock, err := net.DialUDP("udp", nil, ua)
	if err != nil {
		return nil, err
	}
	return &leg{sock: sock, key: k, stream: stream, level: 30, openKey: k, openDir: media.Down, payload: payload}, nil
}

// runTURNLevel runs the same load through coturn: each leg allocates a
// relay, binds a channel to the other leg's relay address, and sends its
// sealed packets as ChannelData; the other leg opens them with the
// sender's key.
func runTURNLevel(ctx context.Context, turnAddr string, turn *child.Proc, o options, n int, logf logFunc) levelResult {
	r := levelResult{peer: "coturn", calls: n}
	ua, _ := net.ResolveUDPAddr("udp", turnAddr)
	legs := make([]*leg, 2*n)
	var fails atomic.Int64
	start := time.Now()
	_ = parallelDo(ctx, n, o.setupParallel, func(i int) error {
		var socks [2]*net.UDPConn
		var relays [2]netip.AddrPort
		var keys [2]*media.Key
		fail := func(err error) error {
			fails.Add(1)
			logf("turn call %d: %v", i, err)
			for _, s := range socks {
				if s != nil {
					turnRelease(s)
					s.Close()
				}
			}
			return nil
		}
		for j := range 2 {
			s, err := net.DialUDP("udp", nil, ua)
			if err != nil {
				return fail(err)
			}
			socks[j] = s
			if relays[j], err = turnAllocate(ctx, s); err != nil {
				return fail(err)
			}
			raw := make([]byte, media.KeyLen)
			_, _ = rand.Read(raw)
			keys[j], _ = media.NewKey(raw)
		}
		for j := range 2 {
			if err := turnChannelBind(ctx, socks[j], 0x4000, relays[1-j]); err != nil {
				return fail(err)
			}
		}
		for j := range 2 {
			legs[2*i+j] = &leg{sock: socks[j], key: keys[j], stream: mrand.Uint32() | 1, level: 30,
				openKey: keys[1-j], openDir: media.Up, channel: 0x4000, payload: o.payload}
		}
		return nil
	})
	r.setup = time.Since(start)
	r.setupFails = int(fails.Load())
	live := compact(legs)
	logf("coturn, %d calls: allocated in %s (%d failed); %d legs send for %s + %s", n, r.setup.Round(time.Millisecond), r.setupFails, len(live), o.warmup, o.duration)
	if ctx.Err() == nil && len(live) > 0 {
		r.measure(ctx, o, live, []*child.Proc{turn}, nil)
	}
	for _, l := range live {
		turnRelease(l.sock)
		_ = l.sock.Close()
	}
	return r
}
