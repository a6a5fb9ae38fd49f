// Command msgbench is Parley's messaging benchmark (make bench,
// scripts/bench.sh, after connbench). It starts the real binaries from bin/
// as separate processes — nats-server with JetStream, redis-server, auth,
// presence, messaging (1 replica, or more with -messaging) and gateways
// (-gateways) — and measures:
//
//   - msg-direct: persisted one-to-one messages per second. -pairs pairs
//     of Go SDK clients (presence feed off), each pair in its own private
//     conversation, the sender on one gateway and the receiver on the
//     next. First open loop at fixed total rates (-direct-rates), to find
//     the highest rate with p99 under the target, then closed loop (each
//     sender sends its next message when the previous one's SendReply
//     arrived; last, so that what it stores does not weigh on the open
//     loop's levels: see runDirect). Latency is end to end: from the
//     start of the sender's Send (open loop: the time it was due) to the
//     receiver's MessageEvent, on this process's monotonic clock.
//     Receivers check seq continuity per conversation; every message id
//     is counted on arrival, so lost and duplicated messages are exact.
//     Then (-floor) bin/relayfloor -jetstream at the same open-loop rates
//     and the floor's own knee: the report gives the stored rate at p99
//     under 20 ms and the CPU per message of all server processes as
//     ratios to that floor, measured in the same run (issue 14 §3); and
//     the same against relayfloor -hops, Parley's topology (two edges and
//     a store over NATS) with none of its logic, which splits the gap to
//     the floor into what the topology costs and what Parley's code does.
//   - msg-room: -members members of the public room connected over the
//     wire protocol (spread over the gateways, presence feed off) receive
//     what -room-senders SDK clients post at rising rates (-room-rates);
//     deliveries per second = messages × members received, latency per
//     delivery, losses. -room-transports tcp,ws puts half the members on
//     WebSocket (each transport on its own gateways), and the report
//     compares the gateways' CPU per delivery over each. With
//     -room-repair members then repair gaps from
//     history as clients do (§15.3), and the report says how many
//     deliveries came live, how many were repaired, how many were lost and
//     how many members were still connected: the overload check (run a
//     level at twice the rate the gateways sustain).
//
// For every level: the CPU of each server process and of this load
// generator (from /proc/<pid>/stat), and of the whole machine (/proc/stat).
// Users are registered with cheap hashing (argon2id m=1024 KiB, t=1).
// The report goes to stdout (and -out); progress to stderr.
package main

import (
	"slices"

	"github.com/parleychat/parley/bench/internal/child"

	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

type options struct {
	bin, out, only string
	quick, keep    bool
	parleyd        bool
	serverEnv      []string
	redisServer    string
	messaging      int
	gateways       int
	regParallel    int
	textBytes      int
	maxInflight    int
	drain          time.Duration

	pairs          int
	directClients  string // "wire" or "sdk"
	directDuration time.Duration
	directRates    []float64
	maxClosedRate  int
	floor          bool
	floorDuration  time.Duration

	members      int
	roomSenders  int
	roomDuration time.Duration
	roomRates    []float64
	// roomTransports: the members' transports ("tcp", "ws", "tls"), member i on
	// roomTransports[i%len].
	roomTransports []string
	roomRepair     bool
	sendersApart   bool
	// memberGatewayCPU: cores the room members' gateways get together
	// (a CPU cgroup), 0 for no limit.
	memberGatewayCPU float64
}

func main() {
	var (
		o                      options
		directRates, roomRates string
		roomTransports         string
	)
	flag.StringVar(&o.bin, "bin", "bin", "directory with nats-server, auth, presence, messaging and gateway")
	flag.StringVar(&o.out, "out", "", "also write the report to this file")
	flag.StringVar(&o.only, "only", "", "comma-separated scenarios: msg-direct, msg-room (default both)")
	flag.BoolVar(&o.quick, "quick", false, "small sizes and short levels, a smoke test")
	flag.BoolVar(&o.keep, "keep", false, "keep the work directory (logs, NATS store)")
	flag.StringVar(&o.redisServer, "redis-server", "redis-server", "redis-server binary")
	flag.BoolVar(&o.parleyd, "parleyd", false, "measure parleyd (everything in one process, embedded NATS) instead of separate processes")
	flag.Func("server-env", "KEY=VALUE added to every server's environment (repeatable), e.g. GOGC=200 or GOMAXPROCS=1", func(v string) error {
		if !strings.Contains(v, "=") {
			return fmt.Errorf("want KEY=VALUE")
		}
		o.serverEnv = append(o.serverEnv, v)
		return nil
	})
	flag.IntVar(&o.messaging, "messaging", 1, "messaging service replicas")
	flag.IntVar(&o.gateways, "gateways", 2, "gateway replicas (direct pairs and room members are spread over them)")
	flag.IntVar(&o.regParallel, "register-parallel", 16, "registrations in flight at once")
	flag.IntVar(&o.textBytes, "text-bytes", 64, "size of each message's text")
	flag.IntVar(&o.maxInflight, "max-inflight", 20, "open loop: sends one sender may have waiting for their reply; beyond, due sends are skipped (and counted)")
	flag.DurationVar(&o.drain, "drain", 15*time.Second, "after a level, how long to wait for the last messages to arrive")
	flag.IntVar(&o.pairs, "pairs", 200, "msg-direct: sender/receiver pairs")
	flag.StringVar(&o.directClients, "direct-clients", "wire", "msg-direct: the load generator's clients: wire (the wire protocol spoken directly, as lean as relayfloor's clients) or sdk (the Go SDK)")
	flag.DurationVar(&o.directDuration, "direct-duration", 20*time.Second, "msg-direct: duration of each level")
	flag.StringVar(&directRates, "direct-rates", "1000,2000,3000,4000,5000,6000,7500,10000,12500,15000,20000", "msg-direct: open-loop total rates (messages/s); with -floor the floors run the same rates")
	flag.IntVar(&o.maxClosedRate, "max-closed-rate", 60000, "msg-direct: closed loop stops at this rate × duration messages (array sizes)")
	flag.BoolVar(&o.floor, "floor", true, "msg-direct: also run bin/relayfloor -jetstream (the machine's floor for this traffic) and -hops (Parley's topology without its logic) right after, and report the ratios to them")
	flag.DurationVar(&o.floorDuration, "floor-duration", 10*time.Second, "msg-direct: duration of each floor level")
	flag.IntVar(&o.members, "members", 1000, "msg-room: members connected")
	flag.IntVar(&o.roomSenders, "room-senders", 4, "msg-room: SDK clients posting into the room")
	flag.DurationVar(&o.roomDuration, "room-duration", 15*time.Second, "msg-room: duration of each level")
	flag.StringVar(&roomRates, "room-rates", "20,50,100,200", "msg-room: messages/s posted into the room, total")
	flag.StringVar(&roomTransports, "room-transports", "tcp", "msg-room: the members' transports, tcp, ws and/or tls (TLS 1.3 on the TCP port) (e.g. tcp,ws: half the members over each, each transport on its own gateways when -gateways is a multiple of their number, CPU per delivery compared; tls needs that split and -only msg-room)")
	flag.BoolVar(&o.sendersApart, "senders-apart", false, "msg-room: with several gateways, the senders use the last one and the members the others (so members' gateways falling behind do not slow the sends)")
	flag.BoolVar(&o.roomRepair, "room-repair", false, "msg-room: after each level's drain, members read what they missed live from history (docs/protocol.md §15.3: runs of missing seqs, then after the highest), and levels go on past saturation: the overload check (every member connected, every stored message delivered live or repaired)")
	flag.Float64Var(&o.memberGatewayCPU, "member-gateway-cpu", 0, "msg-room: limit the gateways the room's members use (all but the senders' with -senders-apart) to this many cores together, through a CPU cgroup (root): the gateway, not the store, falls behind, for the overload check with -room-repair (e.g. 0.05)")
	flag.Parse()
	var err error
	if o.quick {
		o.pairs = min(o.pairs, 20)
		o.members = min(o.members, 100)
		o.roomSenders = min(o.roomSenders, 2)
		o.directDuration = min(o.directDuration, 5*time.Second)
		o.floorDuration = min(o.floorDuration, 3*time.Second)
		o.roomDuration = min(o.roomDuration, 5*time.Second)
		o.drain = min(o.drain, 5*time.Second)
		if !flagSet("direct-rates") {
			directRates = "500,1000,2000"
		}
		if !flagSet("room-rates") {
			roomRates = "20,50"
		}
	}
	for _, t := range strings.Split(roomTransports, ",") {
		switch t = strings.TrimSpace(t); t {
		case "tcp", "ws", "tls":
			o.roomTransports = append(o.roomTransports, t)
		case "":
		default:
			err = fmt.Errorf("-room-transports: unknown transport %q (tcp, ws, tls)", t)
		}
	}
	if err == nil && slices.Contains(o.roomTransports, "tls") {
		// A gateway with a certificate speaks only TLS on its TCP port:
		// the members' TLS gateways are theirs alone, which needs each
		// transport on gateways of its own, and msg-direct's clients
		// (plain TCP, on every gateway) cannot run beside them.
		mg := o.gateways
		if o.sendersApart && mg > 1 {
			mg--
		}
		switch {
		case mg%len(o.roomTransports) != 0:
			err = fmt.Errorf("-room-transports with tls: the members' gateways (%d) must be a multiple of the transports (%d)", mg, len(o.roomTransports))
		case o.only != "msg-room":
			err = fmt.Errorf("-room-transports with tls: run msg-room alone (-only msg-room)")
		case o.parleyd:
			err = fmt.Errorf("-room-transports with tls: not with -parleyd (one gateway)")
		case len(o.roomTransports) == 1 && !o.sendersApart:
			err = fmt.Errorf("-room-transports tls alone: the senders need a gateway without TLS (-senders-apart, or tcp,tls)")
		}
	}
	if err == nil && len(o.roomTransports) == 0 {
		err = fmt.Errorf("-room-transports: none given")
	}
	if err == nil {
		o.directRates, err = parseRates(directRates)
	}
	if err == nil {
		o.roomRates, err = parseRates(roomRates)
	}
	if err == nil && (o.messaging < 1 || o.gateways < 1 || o.pairs < 1 || o.members < 1 || o.roomSenders < 1) {
		err = fmt.Errorf("-messaging, -gateways, -pairs, -members and -room-senders must be at least 1")
	}
	if err == nil && o.directClients != "wire" && o.directClients != "sdk" {
		err = fmt.Errorf("-direct-clients %q: want wire or sdk", o.directClients)
	}
	if err == nil {
		err = run(o)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "msgbench:", err)
		os.Exit(1)
	}
}

func flagSet(name string) bool {
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

func parseRates(s string) ([]float64, error) {
	var out []float64
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		v, err := strconv.ParseFloat(f, 64)
		if err != nil || v <= 0 {
			return nil, fmt.Errorf("bad rate %q", f)
		}
		out = append(out, v)
	}
	return out, nil
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
	for _, b := range []string{"gateway", "auth", "presence", "messaging", "nats-server"} {
		if _, err := os.Stat(filepath.Join(bin, b)); err != nil {
			return fmt.Errorf("missing %s in %s (run scripts/bench.sh, or make build first): %w", b, bin, err)
		}
	}
	want := map[string]bool{}
	for _, k := range strings.Split(o.only, ",") {
		if k = strings.TrimSpace(k); k != "" {
			if k != "msg-direct" && k != "msg-room" {
				return fmt.Errorf("unknown scenario %q (msg-direct, msg-room)", k)
			}
			want[k] = true
		}
	}
	var limit *cpuLimit
	if o.memberGatewayCPU > 0 {
		if limit, err = newCPULimit(o.memberGatewayCPU); err != nil {
			return fmt.Errorf("-member-gateway-cpu: %w", err)
		}
		defer func() { _ = limit.remove() }() // after done: its processes are gone
	}
	ps, dir, done, err := child.NewWorkSet("parley-msgbench-", bin, o.keep, logf)
	if err != nil {
		return err
	}
	defer done()
	ps.Env = o.serverEnv
	c := &cluster{ps: ps, dir: dir, opts: o, limit: limit}
	rep := &report{opts: o, env: machine(), started: time.Now()}
	logf("starting nats-server, redis-server, auth, presence, %d messaging, %d gateway(s)", o.messaging, o.gateways)
	if err := c.start(ctx); err != nil {
		return err
	}
	if len(want) == 0 || want["msg-direct"] {
		rep.direct = runDirect(ctx, c, o, logf)
		if rep.direct.err != nil {
			logf("msg-direct failed: %v", rep.direct.err)
		} else if o.floor {
			for _, hops := range []bool{false, true} {
				if ctx.Err() != nil {
					break
				}
				f := runFloor(ctx, o, hops, logf)
				if f.err != nil {
					logf("msg-direct floor failed: %v", f.err)
				}
				rep.floors = append(rep.floors, f)
			}
		}
	}
	if ctx.Err() == nil && (len(want) == 0 || want["msg-room"]) {
		rep.room = runRoom(ctx, c, o, logf)
		if rep.room.err != nil {
			logf("msg-room failed: %v", rep.room.err)
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	rep.finished = time.Now()
	return child.WriteReport(o.out, rep.write)
}
