// Command connbench is Parley's connection and login benchmark (make bench,
// scripts/bench.sh). It starts the real binaries from bin/ as separate
// processes — nats-server, redis-server, auth, presence and gateways — and
// measures:
//
//   - gateway memory per idle authenticated connection (TCP, TLS,
//     WebSocket): RSS and Go heap/stack before any client and after all
//     connected and settled, divided by the connections; connections are
//     opened by bin/connload processes (several, because one process may
//     hold at most 20,000 open files), each over its own 127.0.0.x source
//     addresses, with one registered user per connection;
//   - reconnect storms (reconnect-storm): idle authenticated clients on two
//     gateways, one gateway is killed (SIGKILL) or stopped (SIGTERM, draining
//     over its -drain-period), and its clients reconnect to the other with
//     the SDK's backoff (connload -reconnect) and resume their sessions: time
//     until 50/90/99/100% are resumed, refusals, the surviving gateway's and
//     auth's CPU, the survivor's RSS (storm.go);
//   - password logins per second through a gateway with auth's default
//     argon2id parameters.
//
// Users for the connection scenarios are registered with cheap hashing
// (argon2id m=1024 KiB, t=1): hashing cost plays no part in idle memory.
// The report goes to stdout (and -out); progress to stderr.
package main

import (
	"github.com/parleychat/parley/bench/internal/child"

	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

type options struct {
	bin            string
	quick          bool
	only           string
	out            string
	users          int
	regParallel    int
	connParallel   int
	settle         time.Duration
	connectTimeout time.Duration
	loginUsers     int
	loginDuration  time.Duration
	keep           bool
	natsMaxPayload int
	redisServer    string
	gatewayBin     string
	profileDir     string
	stormClients   string
}

func main() {
	var o options
	flag.StringVar(&o.bin, "bin", "bin", "directory with gateway, auth, presence, nats-server and connload")
	flag.BoolVar(&o.quick, "quick", false, "small sizes for a smoke test (about 2,000 connections per scenario)")
	flag.StringVar(&o.only, "only", "", "comma-separated scenario kinds to run: tcp, tls, ws, tcp-multi, reconnect-storm, logins (default all)")
	flag.StringVar(&o.stormClients, "storm-clients", "", "reconnect-storm: clients on the stopped gateway and on the surviving one (default 10000,1000; -quick 500,500)")
	flag.StringVar(&o.out, "out", "", "also write the report to this file")
	flag.IntVar(&o.users, "users", 0, "users to register for the connection scenarios (default: one per connection of the largest scenario)")
	flag.IntVar(&o.regParallel, "register-parallel", 16, "registrations in flight at once")
	flag.IntVar(&o.connParallel, "conn-parallel", 32, "connections each connload process sets up at once")
	flag.DurationVar(&o.settle, "settle", 10*time.Second, "wait after the last connection before measuring")
	flag.DurationVar(&o.connectTimeout, "connect-timeout", 15*time.Minute, "longest time a scenario may take to connect")
	flag.IntVar(&o.loginUsers, "login-users", 50, "users for the logins scenario")
	flag.DurationVar(&o.loginDuration, "login-duration", 20*time.Second, "duration of each logins concurrency level")
	flag.BoolVar(&o.keep, "keep", false, "keep the work directory (logs, NATS store)")
	flag.IntVar(&o.natsMaxPayload, "nats-max-payload", 1<<20, "nats-server max_payload (1 MB is nats-server's default)")
	flag.StringVar(&o.redisServer, "redis-server", "redis-server", "redis-server binary")
	flag.StringVar(&o.gatewayBin, "gateway-bin", "gateway", "gateway binary in -bin (gatewayprof for -profile)")
	flag.StringVar(&o.profileDir, "profile", "", "with -gateway-bin gatewayprof: save each gateway's heap and goroutine profiles here after settling")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "connbench:", err)
		os.Exit(1)
	}
}

// plan is the list of scenarios for full or quick mode.
func plan(o options) ([]connScenario, []int) {
	if o.quick {
		return []connScenario{
			{name: "tcp-2k", transport: "tcp", perGateway: []int{2000}, loaders: 2},
			{name: "tls-1k", transport: "tls", perGateway: []int{1000}, loaders: 1},
			{name: "ws-1k", transport: "ws", perGateway: []int{1000}, loaders: 1},
			{name: "tcp-3k", transport: "tcp", perGateway: []int{1000, 1000, 1000}, loaders: 1},
		}, []int{1, 2}
	}
	return []connScenario{
		{name: "tcp-19k", transport: "tcp", perGateway: []int{19000}, loaders: 2},
		{name: "tls-10k", transport: "tls", perGateway: []int{10000}, loaders: 1},
		{name: "ws-10k", transport: "ws", perGateway: []int{10000}, loaders: 1},
		{name: "tcp-100k", transport: "tcp", perGateway: []int{16667, 16667, 16667, 16667, 16666, 16666}, loaders: 1},
	}, []int{1, 2, 4}
}

func kind(s connScenario) string {
	if len(s.perGateway) > 1 {
		return s.transport + "-multi"
	}
	return s.transport
}

func run(o options) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	logf := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "%s %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
	}
	bin, err := filepath.Abs(o.bin)
	if err != nil {
		return err
	}
	if o.profileDir != "" {
		if o.profileDir, err = filepath.Abs(o.profileDir); err != nil {
			return err
		}
	}
	for _, b := range []string{o.gatewayBin, "auth", "presence", "nats-server", "connload"} {
		if _, err := os.Stat(filepath.Join(bin, b)); err != nil {
			return fmt.Errorf("missing %s in %s (run scripts/bench.sh, or make build first): %w", b, bin, err)
		}
	}
	want := map[string]bool{}
	for _, k := range strings.Split(o.only, ",") {
		if k = strings.TrimSpace(k); k != "" {
			want[k] = true
		}
	}
	all, levels := plan(o)
	var scenarios []connScenario
	maxConns := 0
	for _, s := range all {
		if len(want) == 0 || want[kind(s)] {
			scenarios = append(scenarios, s)
			maxConns = max(maxConns, s.total())
		}
	}
	var storms []stormScenario
	if len(want) == 0 || want["reconnect-storm"] {
		if storms, err = stormPlan(o); err != nil {
			return err
		}
		stormUsers := 0
		for _, s := range storms {
			stormUsers += s.perGateway[0] + s.perGateway[1]
		}
		maxConns = max(maxConns, stormUsers)
	}
	doLogins := len(want) == 0 || want["logins"]
	if o.users <= 0 {
		o.users = maxConns
	}
	if o.quick {
		o.loginUsers = min(o.loginUsers, 10)
		o.loginDuration = min(o.loginDuration, 5*time.Second)
	}

	ps, dir, done, err := child.NewWorkSet("parley-connbench-", bin, o.keep, logf)
	if err != nil {
		return err
	}
	defer done()
	c := &cluster{ps: ps, dir: dir, opts: o}
	defer func() {
		if c.nc != nil {
			c.nc.Close()
		}
	}()

	rep := &report{opts: o, env: machine(), started: time.Now()}
	if err := c.startInfra(ctx); err != nil {
		return err
	}
	if err := c.startPresence(ctx); err != nil {
		return err
	}

	if len(scenarios)+len(storms) > 0 {
		if err := c.startAuth(ctx, "auth-cheap", true); err != nil {
			return err
		}
		g, err := c.startGateway(ctx, "register-gw", false)
		if err != nil {
			return err
		}
		logf("registering %d users through the SDK, %d at once (cheap argon2id)", o.users, o.regParallel)
		reg := registerUsers(ctx, g.tcp, "u", o.users, o.regParallel, func(d int) { logf("registered %d", d) })
		g.Stop(15 * time.Second)
		rep.reg = &reg
		logf("registered %d users (%d failed) in %s", reg.ok, reg.fail, reg.elapsed.Round(time.Millisecond))
		if reg.firstErr != nil {
			logf("first registration error: %v", reg.firstErr)
		}
		var tokens []string
		for _, t := range reg.tokens {
			if t != "" {
				tokens = append(tokens, t)
			}
		}
		if len(tokens) == 0 {
			return fmt.Errorf("no user registered: %v", reg.firstErr)
		}
		if err := c.waitPresenceEmpty(ctx, 60*time.Second); err != nil {
			logf("after registration: %v", err)
		}
		for _, s := range scenarios {
			r := runConnScenario(ctx, c, s, tokens, logf)
			if r.err != nil {
				logf("%s failed: %v", s.name, r.err)
			}
			rep.conns = append(rep.conns, r)
			if ctx.Err() != nil {
				return ctx.Err()
			}
		}
		from := 0
		for _, s := range storms {
			r := runStorm(ctx, c, s, tokens, from, logf)
			from += s.perGateway[0] + s.perGateway[1]
			if r.err != nil {
				logf("%s failed: %v", s.name, r.err)
			}
			rep.storms = append(rep.storms, r)
			if ctx.Err() != nil {
				return ctx.Err()
			}
		}
		c.auth.Stop(15 * time.Second)
	}

	if doLogins {
		if err := c.startAuth(ctx, "auth-default", false); err != nil {
			return err
		}
		rep.logins = runLogins(ctx, c, o.loginUsers, levels, o.loginDuration, logf)
		if rep.logins.err != nil {
			logf("logins failed: %v", rep.logins.err)
		}
	}
	rep.finished = time.Now()

	return child.WriteReport(o.out, rep.write)
}
