package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/parleychat/parley/bench/internal/child"
)

// stormScenario is a reconnect storm (issue 14 §2): idle authenticated
// clients on two gateways, one gateway is stopped (SIGKILL: its sockets
// just close; SIGTERM: it sends SERVER_SHUTDOWN spread over its
// -drain-period), and its clients reconnect to the other with the SDK's
// backoff (connload -reconnect) and resume their sessions. Measured: how
// long until they are all resumed there, what was refused on the way, and
// what the surviving gateway and auth spent.
type stormScenario struct {
	name       string
	perGateway [2]int // clients on the gateway that is stopped, and on the one that stays
	signal     syscall.Signal
}

type stormResult struct {
	sc           stormScenario
	connected    [2]int
	setupFailed  int
	lost         int             // victim clients whose connection broke
	lostCodes    map[string]int  // by the fatal Error that ended it ("-": none)
	lostAt       []time.Duration // from the signal to each break, sorted
	firstErrs    []string
	times        []time.Duration // from the signal to each resume, sorted
	attempts     []int           // attempts per resume, sorted
	refused      map[string]int  // attempts answered with an Error, by code
	failed       int             // attempts that failed otherwise
	survivor     stormSamples
	others       map[string]float64 // CPU seconds of the other processes (presence, nats-server, connload), signal to last resume
	machineBusy  float64            // CPU seconds all cores were busy, signal to last resume (other work on the machine included)
	window       time.Duration      // signal to last resume (or to giving up)
	authCPU      float64            // seconds, from the signal to the last resume
	authPeak     float64            // cores, highest over a sampling window
	survivorAuth float64            // the survivor's authenticated-connections gauge afterwards
	dropped      int64              // event lines lost (the channel was full)
	timedOut     bool
	err          error
}

// stormSamples is the surviving gateway during the storm.
type stormSamples struct {
	cpu                float64 // seconds, from the signal to the last resume
	peakCPU            float64 // cores, highest over a sampling window
	rssBefore, peakRSS int64
}

// stormWindow is the sampling window for peak CPU.
const stormWindow = 250 * time.Millisecond

// stormLimit bounds how long a storm may take to settle.
const stormLimit = 5 * time.Minute

func stormPlan(o options) ([]stormScenario, error) {
	n := [2]int{10000, 1000} // the 10,000 clients move to a gateway that already holds some
	if o.quick {
		n = [2]int{500, 500}
	}
	if o.stormClients != "" {
		parts := strings.Split(o.stormClients, ",")
		if len(parts) != 2 {
			return nil, fmt.Errorf("-storm-clients %q: want VICTIM,SURVIVOR", o.stormClients)
		}
		for i, p := range parts {
			v, err := strconv.Atoi(strings.TrimSpace(p))
			if err != nil || v < 1 {
				return nil, fmt.Errorf("-storm-clients %q: want two positive counts", o.stormClients)
			}
			n[i] = v
		}
	}
	return []stormScenario{
		{name: "storm-kill", perGateway: n, signal: syscall.SIGKILL},
		{name: "storm-term", perGateway: n, signal: syscall.SIGTERM},
	}, nil
}

// runStorm runs sc with the tokens from the from-th on (each storm needs
// fresh sessions: a resume replaces a session's token).
func runStorm(ctx context.Context, c *cluster, sc stormScenario, tokens []string, from int, logf func(string, ...any)) *stormResult {
	r := &stormResult{sc: sc, lostCodes: map[string]int{}, refused: map[string]int{}}
	var gws [2]*gateway
	defer func() {
		for _, g := range gws {
			if g != nil && !g.Exited() {
				g.Stop(15 * time.Second)
			}
		}
	}()
	for i, role := range []string{"victim", "survivor"} {
		g, err := c.startGateway(ctx, fmt.Sprintf("%s-%s", sc.name, role), false)
		if err != nil {
			r.err = err
			return r
		}
		gws[i] = g
	}
	if err := child.Sleep(ctx, 3*time.Second); err != nil {
		r.err = err
		return r
	}

	events := make(chan string, 1<<18)
	var loaders []*loader
	defer func() {
		for _, l := range loaders {
			l.stdin.Close()
			l.Stop(30 * time.Second)
		}
	}()
	srcs := sources(2)
	k := from
	for i, g := range gws {
		other := gws[1-i]
		n := sc.perGateway[i]
		name := g.id + "-load"
		file := filepath.Join(c.dir, name+".tokens")
		if err := writeTokens(file, tokens, k, n); err != nil {
			r.err = err
			return r
		}
		k += n
		args := []string{"-addr", g.tcp + "," + other.tcp, "-reconnect", "-n", strconv.Itoa(n), "-tokens", file,
			"-sources", strings.Join(srcs[i], ","), "-parallel", strconv.Itoa(c.opts.connParallel)}
		l, err := startLoaderEvents(c.ps, name, args, events)
		if err != nil {
			r.err = err
			return r
		}
		loaders = append(loaders, l)
	}
	logf("%s: connecting %d + %d clients", sc.name, sc.perGateway[0], sc.perGateway[1])
	for i, l := range loaders {
		var line string
		select {
		case line = <-l.report:
		case <-time.After(c.opts.connectTimeout):
			r.err = fmt.Errorf("%s: not connected within %s", l.Name, c.opts.connectTimeout)
			return r
		case <-ctx.Done():
			r.err = ctx.Err()
			return r
		}
		var ok, failed int
		if _, err := fmt.Sscanf(line, "connected %d failed %d", &ok, &failed); err != nil {
			r.err = fmt.Errorf("%s: unexpected report %q:\n%s", l.Name, line, l.Tail(10))
			return r
		}
		r.connected[i], r.setupFailed = ok, r.setupFailed+failed
		if e := firstError(l.Log); e != "" {
			r.firstErrs = append(r.firstErrs, l.Name+": "+e)
		}
	}
	logf("%s: %d + %d connected (%d failed); settling 5s", sc.name, r.connected[0], r.connected[1], r.setupFailed)
	if err := child.Sleep(ctx, 5*time.Second); err != nil {
		r.err = err
		return r
	}

	victim, survivor := gws[0], gws[1]
	sampler := startStormSampler(survivor.PID(), c.auth.PID())
	others := map[string]int{"presence": c.presence.PID(), "nats-server": c.nats.PID()}
	for _, l := range loaders {
		others[l.Name] = l.PID()
	}
	othersBefore := map[string]float64{}
	for name, pid := range others {
		othersBefore[name] = child.CPUSeconds(strconv.Itoa(pid))
	}
	busyBefore := child.MachineBusySeconds()
	t0 := time.Now()
	logf("%s: sending %s to %s", sc.name, sc.signal, victim.id)
	if err := victim.Cmd.Process.Signal(sc.signal); err != nil {
		r.err = err
		return r
	}
	limit := time.NewTimer(stormLimit)
	defer limit.Stop()
	var attemptSum int
collect:
	for r.lost < r.connected[0] || len(r.times) < r.lost {
		select {
		case line := <-events:
			f := strings.Fields(line)
			switch {
			case len(f) == 3 && f[0] == "lost":
				ns, _ := strconv.ParseInt(f[1], 10, 64)
				r.lost++
				r.lostCodes[f[2]]++
				r.lostAt = append(r.lostAt, time.Unix(0, ns).Sub(t0))
			case len(f) == 3 && f[0] == "reconnected":
				ns, _ := strconv.ParseInt(f[1], 10, 64)
				a, _ := strconv.Atoi(f[2])
				r.times = append(r.times, time.Unix(0, ns).Sub(t0))
				r.attempts = append(r.attempts, a)
				attemptSum += a
			case len(f) == 2 && f[0] == "refused":
				r.refused[f[1]]++
			case len(f) == 1 && f[0] == "failed":
				r.failed++
			}
		case <-limit.C:
			r.timedOut = true
			break collect
		case <-ctx.Done():
			r.err = ctx.Err()
			break collect
		}
	}
	r.survivor, r.authCPU, r.authPeak = sampler.stop()
	r.window = time.Since(t0)
	r.machineBusy = child.MachineBusySeconds() - busyBefore
	r.others = map[string]float64{}
	for name, pid := range others {
		r.others[name] = child.CPUSeconds(strconv.Itoa(pid)) - othersBefore[name]
	}
	slices.Sort(r.times)
	slices.Sort(r.lostAt)
	slices.Sort(r.attempts)
	for _, l := range loaders {
		r.dropped += l.dropped.Load()
	}
	if len(r.times) > 0 {
		logf("%s: %d of %d clients resumed on %s, the last %s after the signal", sc.name, len(r.times), r.connected[0], survivor.id,
			r.times[len(r.times)-1].Round(time.Millisecond))
	}
	if m, err := scrape(survivor.admin); err == nil {
		r.survivorAuth = m["parley_gateway_authenticated_connections"]
	}

	for _, l := range loaders {
		l.stdin.Close()
		l.Stop(30 * time.Second)
	}
	loaders = nil
	if err := waitGatewaysEmpty(ctx, []*gateway{survivor}, 90*time.Second); err != nil {
		logf("%s: %v", sc.name, err)
	}
	victim.Stop(15 * time.Second) // SIGTERM: it is draining or gone
	survivor.Stop(15 * time.Second)
	// A killed gateway never said its connections ended: presence drops
	// them when the gateway's heartbeat lapses.
	if err := c.waitPresenceEmpty(ctx, 90*time.Second); err != nil {
		logf("%s: %v", sc.name, err)
	}
	return r
}

// stormSampler follows the surviving gateway's CPU and RSS and auth's CPU.
type stormSampler struct {
	stopc chan struct{}
	done  chan struct{}

	mu       sync.Mutex // guards the fields below
	gw       stormSamples
	authCPU  float64
	authPeak float64
}

func startStormSampler(gwPID, authPID int) *stormSampler {
	s := &stormSampler{stopc: make(chan struct{}), done: make(chan struct{})}
	gp, ap := strconv.Itoa(gwPID), strconv.Itoa(authPID)
	s.gw.rssBefore = child.RSSBytes(gwPID)
	s.gw.peakRSS = s.gw.rssBefore
	go func() {
		defer close(s.done)
		t := time.NewTicker(stormWindow)
		defer t.Stop()
		gw0, auth0, last := child.CPUSeconds(gp), child.CPUSeconds(ap), time.Now()
		gwPrev, authPrev := gw0, auth0
		sample := func() {
			now := time.Now()
			gwNow, authNow := child.CPUSeconds(gp), child.CPUSeconds(ap)
			dt := now.Sub(last).Seconds()
			s.mu.Lock()
			defer s.mu.Unlock()
			if dt > 0 {
				s.gw.peakCPU = math.Max(s.gw.peakCPU, (gwNow-gwPrev)/dt)
				s.authPeak = math.Max(s.authPeak, (authNow-authPrev)/dt)
			}
			s.gw.cpu, s.authCPU = gwNow-gw0, authNow-auth0
			s.gw.peakRSS = max(s.gw.peakRSS, child.RSSBytes(gwPID))
			gwPrev, authPrev, last = gwNow, authNow, now
		}
		for {
			select {
			case <-s.stopc:
				sample()
				return
			case <-t.C:
				sample()
			}
		}
	}()
	return s
}

func (s *stormSampler) stop() (gw stormSamples, authCPU, authPeak float64) {
	close(s.stopc)
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gw, s.authCPU, s.authPeak
}

// pct is the p-th percentile (0 < p <= 1) of sorted ds.
func pct[T any](sorted []T, p float64) T {
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func (r *report) writeStorms(w io.Writer) {
	fmt.Fprintln(w, "Reconnect storm: idle authenticated TCP clients (connload -reconnect: the Go SDK's backoff, parley.Backoff,")
	fmt.Fprintln(w, "base 200 ms doubling to 10 s with full jitter; resume with the session token, no password logins) on two")
	fmt.Fprintln(w, "gateways; one gateway is sent the signal and its clients reconnect to the other (each attempt to the")
	fmt.Fprintln(w, "next address in turn, so every other attempt tries the stopped gateway, as a client without a load")
	fmt.Fprintln(w, "balancer would). Times from the signal to each client's resumed session; SIGTERM drains over the")
	fmt.Fprintln(w, "gateway's -drain-period (5 s default). CPU in cores over 250 ms windows (peak) and seconds (total, signal")
	fmt.Fprintln(w, "to last resume); everything shares the machine's cores with the connload processes.")
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tsignal\tmoved\tresumed\tp50\tp90\tp99\t100%\tattempts p50/p99/max\trefused\tfailed attempts\tgw peak CPU\tgw CPU s\tgw RSS before -> peak\tauth CPU s\tauth peak\t")
	for _, s := range r.storms {
		if len(s.times) == 0 {
			fmt.Fprintf(tw, "%s\t%s\t%d\t0\t-\t-\t-\t-\t-\t-\t%d\t-\t-\t-\t-\t-\t\n", s.sc.name, s.sc.signal, s.connected[0], s.failed)
			continue
		}
		refused := 0
		for _, n := range s.refused {
			refused += n
		}
		ms := func(d time.Duration) string { return d.Round(time.Millisecond).String() }
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%s\t%s\t%s\t%d/%d/%d\t%d\t%d\t%.2f\t%.1f\t%s -> %s\t%.1f\t%.2f\t\n",
			s.sc.name, s.sc.signal, s.connected[0], len(s.times),
			ms(pct(s.times, 0.5)), ms(pct(s.times, 0.9)), ms(pct(s.times, 0.99)), ms(s.times[len(s.times)-1]),
			pct(s.attempts, 0.5), pct(s.attempts, 0.99), s.attempts[len(s.attempts)-1],
			refused, s.failed, s.survivor.peakCPU, s.survivor.cpu,
			mib(float64(s.survivor.rssBefore)), mib(float64(s.survivor.peakRSS)), s.authCPU, s.authPeak)
	}
	tw.Flush()
	for _, s := range r.storms {
		fmt.Fprintf(w, "%s: %d + %d clients connected (%d failed at setup); %d connections broke (by fatal error: %s); refusals: %s;",
			s.sc.name, s.connected[0], s.connected[1], s.setupFailed, s.lost, codes(s.lostCodes), codes(s.refused))
		fmt.Fprintf(w, " survivor's authenticated gauge afterwards %.0f (expected %d)\n", s.survivorAuth, s.connected[0]+s.connected[1])
		if s.window > 0 {
			var parts []string
			for name, cpu := range s.others {
				parts = append(parts, fmt.Sprintf("%s %.1f", name, cpu))
			}
			slices.Sort(parts)
			fmt.Fprintf(w, "  over the %s from the signal to the last resume: machine busy %.1f CPU-s (%.2f cores of %d); CPU-s of %s\n",
				s.window.Round(time.Millisecond), s.machineBusy, s.machineBusy/s.window.Seconds(), runtime.NumCPU(), strings.Join(parts, ", "))
		}
		if len(s.lostAt) > 0 {
			fmt.Fprintf(w, "  connections seen broken by their clients %s to %s after the signal\n",
				s.lostAt[0].Round(time.Millisecond), s.lostAt[len(s.lostAt)-1].Round(time.Millisecond))
		}
		for _, e := range s.firstErrs {
			fmt.Fprintf(w, "  first error from %s\n", e)
		}
		if s.timedOut {
			fmt.Fprintf(w, "  NOT SETTLED within %s\n", stormLimit)
		}
		if s.err != nil {
			fmt.Fprintf(w, "  ERROR: %v\n", s.err)
		}
		if s.dropped > 0 {
			fmt.Fprintf(w, "  %d event lines dropped: counts are low\n", s.dropped)
		}
	}
	fmt.Fprintln(w)
}

func codes(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	var parts []string
	for k, n := range m {
		parts = append(parts, fmt.Sprintf("%s %d", strings.TrimPrefix(k, "ERROR_CODE_"), n))
	}
	slices.Sort(parts)
	return strings.Join(parts, ", ")
}
