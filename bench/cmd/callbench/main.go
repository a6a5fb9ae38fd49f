// Command callbench is Parley's voice-call benchmark (scripts/bench.sh,
// BENCH_ONLY=calls; the report goes to bench/results/calls.txt). It starts
// the real binaries from bin/ as separate processes on 127.0.0.1 —
// nats-server with JetStream, redis-server, auth, presence, messaging,
// media-relay and gateways with their UDP media ports — and measures:
//
//   - load: N concurrent one-to-one calls (-calls, e.g. 100,500,1000) set
//     up through the real signalling (place_call / join_call frames; the
//     CallJoined replies give each leg its stream id and key). No Opus
//     encoder runs: each leg seals a pre-made -payload-byte payload
//     carrying its send time with protocol/media and sends 50 packets a
//     second to its gateway's UDP port; the other leg opens what arrives.
//     Latency is A's send to B's receive on this process's clock (p50,
//     p99), losses are exact (packets sent in the window and never
//     received), and the server's CPU per packet is the CPU time of the
//     gateways, media-relay and nats-server over the window
//     (/proc/<pid>/stat) divided by the packets delivered.
//   - turn: the same packet load through coturn (turnserver, started by
//     the benchmark as an anonymous TURN relay on 127.0.0.1): each leg
//     allocates a relay and binds a channel to the other leg's relay
//     address; the same sealed packets go as ChannelData. Parley's CPU per
//     packet and p99 are reported as ratios to coturn's at the same level.
//   - m2e: mouth-to-ear with the real SDK path (CallSession: Opus encoder,
//     UDP, gateway and relay, jitter buffer, decoder) on a few calls with a
//     known signal found again by cross-correlation.
//   - group: a group call of -group-size participants all talking (relay
//     -relay-max-speakers: only the loudest are forwarded) against one of
//     -small-group (all forwarded): bytes per second per listener.
//
// The load generator is this process and shares the machine with the
// servers: its CPU is reported next to theirs.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/parleychat/parley/bench/internal/child"
)

type options struct {
	bin, out, only string
	quick, keep    bool
	redisServer    string
	turnserver     string
	gateways       int
	calls          []int
	warmup         time.Duration
	duration       time.Duration
	drain          time.Duration
	payload        int
	setupParallel  int
	m2eCalls       int
	m2eBursts      int
	groupSize      int
	smallGroup     int
	maxSpeakers    int
	groupDuration  time.Duration
	targetP99      time.Duration
}

type logFunc func(format string, args ...any)

var scenarios = []string{"load", "turn", "m2e", "group"}

func main() {
	var (
		o     options
		calls string
	)
	flag.StringVar(&o.bin, "bin", "bin", "directory with nats-server, auth, presence, messaging, media-relay and gateway")
	flag.StringVar(&o.out, "out", "", "also write the report to this file")
	flag.StringVar(&o.only, "only", "", "comma-separated scenarios: load, turn, m2e, group (default all)")
	flag.BoolVar(&o.quick, "quick", false, "small sizes and short levels, a smoke test")
	flag.BoolVar(&o.keep, "keep", false, "keep the work directory (logs, NATS store)")
	flag.StringVar(&o.redisServer, "redis-server", "redis-server", "redis-server binary")
	flag.StringVar(&o.turnserver, "turnserver", "turnserver", "coturn's turnserver binary (turn scenario)")
	flag.IntVar(&o.gateways, "gateways", 1, "gateway replicas; a call's two legs are on consecutive gateways")
	flag.StringVar(&calls, "calls", "100,200,300,500,1000", "load/turn: concurrent one-to-one calls per level")
	flag.DurationVar(&o.warmup, "warmup", 3*time.Second, "load/turn/group: sending before the measured window")
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "load/turn: measured window per level")
	flag.DurationVar(&o.drain, "drain", time.Second, "after the window, how long the last packets may take")
	flag.IntVar(&o.payload, "payload", 60, "bytes of each packet's payload (a stand-in for an Opus frame)")
	flag.IntVar(&o.setupParallel, "setup-parallel", 32, "registrations and call setups in flight at once")
	flag.IntVar(&o.m2eCalls, "m2e-calls", 3, "m2e: calls measured at once")
	flag.IntVar(&o.m2eBursts, "m2e-bursts", 8, "m2e: bursts each side says")
	flag.IntVar(&o.groupSize, "group-size", 8, "group: participants of the big group call")
	flag.IntVar(&o.smallGroup, "small-group", 4, "group: participants of the call where every stream is forwarded")
	flag.IntVar(&o.maxSpeakers, "max-speakers", 3, "media-relay's -relay-max-speakers")
	flag.DurationVar(&o.groupDuration, "group-duration", 5*time.Second, "group: measured window per call")
	flag.DurationVar(&o.targetP99, "target-p99", 5*time.Millisecond, "load: the p99 a level must stay under")
	flag.Parse()
	var err error
	if o.quick && !flagSet("calls") {
		calls = "20,100"
	}
	if o.quick {
		o.duration = min(o.duration, 3*time.Second)
		o.warmup = min(o.warmup, 2*time.Second)
		o.m2eCalls = min(o.m2eCalls, 1)
		o.m2eBursts = min(o.m2eBursts, 4)
		o.groupDuration = min(o.groupDuration, 3*time.Second)
	}
	for _, f := range strings.Split(calls, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, e := strconv.Atoi(f)
		if e != nil || n < 1 {
			err = fmt.Errorf("bad -calls entry %q", f)
			break
		}
		o.calls = append(o.calls, n)
	}
	if err == nil && (o.gateways < 1 || o.payload < 8 || o.payload > 1200 || o.m2eCalls < 1 || o.smallGroup < 2 || o.groupSize <= o.smallGroup) {
		err = fmt.Errorf("need -gateways >= 1, 8 <= -payload <= 1200, -m2e-calls >= 1, 2 <= -small-group < -group-size")
	}
	if err == nil {
		err = run(o)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "callbench:", err)
		os.Exit(1)
	}
}

func flagSet(name string) bool {
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

func run(o options) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	logf := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "%s %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
	}
	want := map[string]bool{}
	for _, k := range strings.Split(o.only, ",") {
		if k = strings.TrimSpace(k); k != "" {
			if !strings.Contains(","+strings.Join(scenarios, ",")+",", ","+k+",") {
				return fmt.Errorf("unknown scenario %q (%s)", k, strings.Join(scenarios, ", "))
			}
			want[k] = true
		}
	}
	wants := func(k string) bool { return len(want) == 0 || want[k] }
	bin, err := filepath.Abs(o.bin)
	if err != nil {
		return err
	}
	for _, b := range []string{"gateway", "auth", "presence", "messaging", "media-relay", "nats-server"} {
		if _, err := os.Stat(filepath.Join(bin, b)); err != nil {
			return fmt.Errorf("missing %s in %s (run scripts/bench.sh, or make build first): %w", b, bin, err)
		}
	}
	turnPath := ""
	if wants("turn") {
		if turnPath, err = exec.LookPath(o.turnserver); err != nil {
			return fmt.Errorf("turn scenario needs coturn's turnserver (apt-get install coturn; scripts/bench.sh installs it): %w", err)
		}
	}
	ps, dir, done, err := child.NewWorkSet("parley-callbench-", bin, o.keep, logf)
	if err != nil {
		return err
	}
	defer done()
	rep := &report{opts: o, started: time.Now(), env: machine()}
	c := &cluster{ps: ps, dir: dir, opts: o}
	logf("starting nats-server, redis-server, auth, presence, messaging, media-relay, %d gateway(s)", o.gateways)
	if err := c.start(ctx); err != nil {
		return err
	}
	var turn *child.Proc
	var turnAddr string
	if wants("turn") {
		if turn, turnAddr, err = startCoturn(ctx, ps, turnPath, dir); err != nil {
			return err
		}
		rep.turnVersion = turnVersion(turnPath)
		logf("coturn at %s", turnAddr)
	}
	if wants("load") || wants("turn") {
		maxN := 0
		for _, n := range o.calls {
			maxN = max(maxN, n)
		}
		var a, b []*user
		if wants("load") {
			var addrs []string
			for _, g := range c.gateways {
				addrs = append(addrs, g.tcp)
			}
			logf("registering %d users", 2*maxN)
			t0 := time.Now()
			// User i is on gateway i%G: a's on 0, b's on 1 (mod G).
			us, err := registerUsers(ctx, addrs, "u", 2*maxN, o.setupParallel)
			if err != nil {
				return err
			}
			defer func() {
				for _, u := range us {
					u.wc.close()
				}
			}()
			for i := range maxN {
				a, b = append(a, us[2*i]), append(b, us[2*i+1])
			}
			logf("registered in %s", time.Since(t0).Round(time.Millisecond))
		}
		for _, n := range o.calls {
			if wants("load") && ctx.Err() == nil {
				r := runParleyLevel(ctx, c, o, a, b, n, logf)
				logf("parley %d calls: p50 %s p99 %s lost %.3f%%, %s CPU/packet", n, r.p50, r.p99, r.lossPct(), r.cpuPerPacket())
				rep.levels = append(rep.levels, r)
				_ = child.Sleep(ctx, 2*time.Second) // calls ended, sockets gone
			}
			if wants("turn") && ctx.Err() == nil {
				r := runTURNLevel(ctx, turnAddr, turn, o, n, logf)
				logf("coturn %d calls: p50 %s p99 %s lost %.3f%%, %s CPU/packet", n, r.p50, r.p99, r.lossPct(), r.cpuPerPacket())
				rep.levels = append(rep.levels, r)
				_ = child.Sleep(ctx, 2*time.Second)
			}
		}
	}
	if wants("m2e") && ctx.Err() == nil {
		r := runMouthToEar(ctx, c, o, logf)
		if r.err != nil {
			logf("m2e failed: %v", r.err)
		} else {
			logf("mouth-to-ear p50 %s (%d/%d bursts heard)", r.p50, r.heard, r.bursts)
		}
		rep.m2e = &r
	}
	if wants("group") && ctx.Err() == nil {
		rep.groups = runGroups(ctx, c, o, logf)
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	rep.finished = time.Now()
	return child.WriteReport(o.out, rep.write)
}

func turnVersion(path string) string {
	out, _ := exec.Command(path, "--version").CombinedOutput()
	return strings.TrimSpace(string(out))
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
