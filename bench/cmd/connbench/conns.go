package main

import (
	"github.com/parleychat/parley/bench/internal/child"

	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// connScenario is one idle-connection measurement: gateways fresh
// gateways of one transport, each fed by its own connload processes.
type connScenario struct {
	name       string
	transport  string // tcp, tls or ws
	perGateway []int  // connections per gateway; len = number of gateways
	loaders    int    // connload processes per gateway
}

func (s connScenario) total() int {
	n := 0
	for _, k := range s.perGateway {
		n += k
	}
	return n
}

// gwResult is one gateway's figures in a scenario.
type gwResult struct {
	id            string
	before, after sample
	connected     int
}

// connResult is what a scenario measured.
type connResult struct {
	sc                 connScenario
	connected, failed  int
	firstErrs          []string
	setup              time.Duration
	gws                []gwResult
	natsBefore         int64 // nats-server VmRSS
	natsAfter          int64
	redisBefore        int64 // redis used_memory
	redisAfter         int64
	wantUsers          int // distinct users among the connected tokens
	presenceUsers      int
	presenceSessions   int
	presenceReplyBytes int
	presenceErr        error
	presenceLag        time.Duration // from the measurement until the list was right
	cleanStop          bool          // every gateway exited on SIGTERM
	err                error
}

// sum adds f over the gateways, before and after.
func (r *connResult) sum(f func(sample) float64) (before, after float64) {
	for _, g := range r.gws {
		before += f(g.before)
		after += f(g.after)
	}
	return
}

// perConn is (after-before)/connected for f summed over the gateways.
func (r *connResult) perConn(f func(sample) float64) float64 {
	if r.connected == 0 {
		return 0
	}
	b, a := r.sum(f)
	return (a - b) / float64(r.connected)
}

// loader is one running connload process.
type loader struct {
	*child.Proc
	stdin  *os.File
	report chan string // the "connected N failed M" line, or "" if it exited first
	// events receives the lines after it (connload -reconnect's), if not
	// nil; lines that find it full are dropped and counted in dropped.
	events  chan string
	dropped atomic.Int64
}

// runConnScenario starts the scenario's gateways, connects, measures and
// tears the gateways down again (auth, presence, NATS and Redis stay).
func runConnScenario(ctx context.Context, c *cluster, sc connScenario, tokens []string, logf func(string, ...any)) *connResult {
	r := &connResult{sc: sc}
	gws := make([]*gateway, len(sc.perGateway))
	defer func() {
		// Gateways still running after an error are stopped here.
		for _, g := range gws {
			if g != nil && !g.Exited() {
				g.Stop(15 * time.Second)
			}
		}
	}()
	for i := range gws {
		g, err := c.startGateway(ctx, fmt.Sprintf("%s-gw%d", sc.name, i+1), sc.transport == "tls")
		if err != nil {
			r.err = err
			return r
		}
		gws[i] = g
	}
	// Let the fresh gateways finish starting (first presence heartbeat,
	// lazily built pools) before the baseline.
	if err := child.Sleep(ctx, 3*time.Second); err != nil {
		r.err = err
		return r
	}
	r.gws = make([]gwResult, len(gws))
	for i, g := range gws {
		s, err := sampleGateway(g)
		if err != nil {
			r.err = err
			return r
		}
		r.gws[i] = gwResult{id: g.id, before: s}
	}
	r.natsBefore = child.RSSBytes(c.nats.PID())
	r.redisBefore = c.redisUsedMemory()

	// Connection k of the scenario (over all gateways) uses token k modulo
	// the users available; the token files hold exactly each loader's
	// tokens in order.
	total := sc.total()
	r.wantUsers = min(total, len(tokens))
	srcs := sources(len(gws) * sc.loaders)
	var loaders []*loader
	gwOf := map[*loader]int{}
	// Where each loader's tokens start in tokens, and the file it writes
	// the newest ones to: a resume rotates a session's token (the one
	// before stays valid only for a grace period), so the next scenario
	// resumes with these.
	fromOf, newOf := map[*loader]int{}, map[*loader]string{}
	k := 0
	start := time.Now()
	for gi, g := range gws {
		for li := 0; li < sc.loaders; li++ {
			n := sc.perGateway[gi] / sc.loaders
			if li < sc.perGateway[gi]%sc.loaders {
				n++
			}
			name := fmt.Sprintf("%s-load%d", g.id, li+1)
			file := filepath.Join(c.dir, name+".tokens")
			if err := writeTokens(file, tokens, k, n); err != nil {
				r.err = err
				return r
			}
			k += n
			target := g.tcp
			if sc.transport == "ws" {
				target = g.wsURL()
			}
			args := []string{"-addr", target, "-n", strconv.Itoa(n), "-tokens", file, "-tokens-out", file + ".newest",
				"-sources", strings.Join(srcs[len(loaders)], ","), "-parallel", strconv.Itoa(c.opts.connParallel)}
			if sc.transport == "tls" {
				args = append(args, "-tls")
			}
			l, err := startLoader(c.ps, name, args)
			if err != nil {
				r.err = err
				return r
			}
			loaders = append(loaders, l)
			gwOf[l] = gi
			fromOf[l], newOf[l] = k-n, file+".newest"
		}
	}
	defer func() {
		for _, l := range loaders {
			l.stdin.Close()
			l.Stop(30 * time.Second)
		}
	}()
	logf("%s: %d connload processes opening %d connections to %d gateway(s)", sc.name, len(loaders), total, len(gws))

	timeout := time.NewTimer(c.opts.connectTimeout)
	defer timeout.Stop()
	for _, l := range loaders {
		var line string
		select {
		case line = <-l.report:
		case <-timeout.C:
			r.err = fmt.Errorf("connload processes not done within %s", c.opts.connectTimeout)
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
		r.connected += ok
		r.failed += failed
		if newest, err := os.ReadFile(newOf[l]); err == nil {
			for i, t := range strings.Split(strings.TrimSpace(string(newest)), "\n") {
				if t != "" {
					tokens[(fromOf[l]+i)%len(tokens)] = t
				}
			}
		}
		r.gws[gwOf[l]].connected += ok
	}
	r.setup = time.Since(start)
	for _, l := range loaders {
		if e := firstError(l.Log); e != "" {
			r.firstErrs = append(r.firstErrs, l.Name+": "+e)
		}
	}
	logf("%s: %d connected, %d failed in %s; settling %s", sc.name, r.connected, r.failed, r.setup.Round(time.Millisecond), c.opts.settle)
	if err := child.Sleep(ctx, c.opts.settle); err != nil {
		r.err = err
		return r
	}
	for i, g := range gws {
		s, err := sampleGateway(g)
		if err != nil {
			r.err = err
			return r
		}
		r.gws[i].after = s
	}
	r.natsAfter = child.RSSBytes(c.nats.PID())
	r.redisAfter = c.redisUsedMemory()
	if c.opts.profileDir != "" {
		for _, g := range gws {
			if err := profileGateway(ctx, g, filepath.Join(c.opts.profileDir, g.id)); err != nil {
				logf("%s: profile: %v", g.id, err)
			}
		}
	}
	// Presence learns of a connection right after its session starts;
	// allow it time to catch up before calling the list wrong.
	checked := time.Now()
	for {
		r.presenceUsers, r.presenceSessions, r.presenceReplyBytes, r.presenceErr = c.presenceOnline(ctx)
		r.presenceLag = time.Since(checked)
		if r.presenceErr == nil && r.presenceUsers == r.wantUsers && r.presenceSessions == r.connected ||
			r.presenceLag > 30*time.Second || ctx.Err() != nil {
			break
		}
		_ = child.Sleep(ctx, time.Second)
	}

	// Tear down: clients first, so the gateways see ordinary disconnects
	// and presence ends at zero; then the gateways.
	for _, l := range loaders {
		l.stdin.Close()
		l.Stop(30 * time.Second)
	}
	if err := waitGatewaysEmpty(ctx, gws, 90*time.Second); err != nil {
		logf("%s: %v", sc.name, err)
	}
	if err := c.waitPresenceEmpty(ctx, 60*time.Second); err != nil {
		logf("%s: %v", sc.name, err)
	}
	r.cleanStop = true
	for _, g := range gws {
		if !g.Stop(15 * time.Second) {
			r.cleanStop = false
		}
	}
	return r
}

// sources spreads the source addresses 127.0.0.2 .. 127.0.0.20 over n
// loaders, round robin; with more loaders than addresses they share.
func sources(n int) [][]string {
	var pool []string
	for a := 2; a <= 20; a++ {
		pool = append(pool, fmt.Sprintf("127.0.0.%d", a))
	}
	out := make([][]string, n)
	for i := 0; i < max(n, len(pool)); i++ {
		out[i%n] = append(out[i%n], pool[i%len(pool)])
	}
	return out
}

// writeTokens writes tokens[(from+i) % len] for i < n, one a line.
func writeTokens(path string, tokens []string, from, n int) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	for i := 0; i < n; i++ {
		w.WriteString(tokens[(from+i)%len(tokens)])
		w.WriteByte('\n')
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// startLoader runs connload with its stdout on a pipe (for the report line)
// and its stdin on another (closing it stops connload even if we die).
func startLoader(ps *child.Set, name string, args []string) (*loader, error) {
	return startLoaderEvents(ps, name, args, nil)
}

// startLoaderEvents is startLoader with connload's event lines (after the
// report line) sent to events.
func startLoaderEvents(ps *child.Set, name string, args []string, events chan string) (*loader, error) {
	p, err := ps.Prepare(name, "connload", nil, args...)
	if err != nil {
		return nil, err
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	p.Cmd.Stdout, p.Cmd.Stdin = outW, inR
	if err := ps.Launch(p); err != nil {
		return nil, err
	}
	outW.Close()
	inR.Close()
	l := &loader{Proc: p, stdin: inW, report: make(chan string, 1), events: events}
	go func() {
		defer outR.Close()
		sc := bufio.NewScanner(outR)
		sent := false
		for sc.Scan() {
			line := sc.Text()
			switch {
			case !sent && strings.HasPrefix(line, "connected "):
				l.report <- line
				sent = true
			case sent && l.events != nil:
				select {
				case l.events <- line:
				default:
					l.dropped.Add(1)
				}
			}
		}
		if !sent {
			l.report <- ""
		}
	}()
	return l, nil
}

// firstError returns connload's "first error:" line from its log.
func firstError(log string) string {
	b, err := os.ReadFile(log)
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(b), "\n") {
		if e, ok := strings.CutPrefix(line, "first error: "); ok {
			return e
		}
	}
	return ""
}

// waitGatewaysEmpty waits until no gateway reports an open connection.
func waitGatewaysEmpty(ctx context.Context, gws []*gateway, within time.Duration) error {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		open := 0.0
		for _, g := range gws {
			if m, err := scrape(g.admin); err == nil {
				open += m["parley_gateway_connections"]
			}
		}
		if open == 0 {
			return nil
		}
		if err := child.Sleep(ctx, 500*time.Millisecond); err != nil {
			return err
		}
	}
	return fmt.Errorf("gateways still hold connections after %s", within)
}
