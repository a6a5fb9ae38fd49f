package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// The floor: bench/cmd/relayfloor -jetstream, run by msgbench right after
// msg-direct (same machine, same moment, same pairs and text size), so
// that msg-direct's figures come with their ratios to what the machine can
// do at all for this traffic with storage (issue 14 §3): the stored rate
// at p99 < 20 ms against the floor's, and CPU per message of all Parley's
// server processes against the relay's and its nats-server's.

// floorLevel is one row of relayfloor's table.
type floorLevel struct {
	rate, received float64
	p99            time.Duration
	server, nats   float64 // cores, over the level and relayfloor's 1 s drain
}

// floorResult is the relayfloor run.
type floorResult struct {
	// hops: relayfloor -hops, Parley's topology without its logic (two
	// edges and a store over NATS), rather than -jetstream's one relay.
	hops     bool
	duration time.Duration
	levels   []floorLevel
	err      error
}

// floorDrain is relayfloor's wait after each level, inside its CPU window.
const floorDrain = time.Second

// ok: the level kept up without loss and with p99 under the target.
func (l floorLevel) ok() bool {
	return l.p99 < directTargetP99 && l.received >= 0.99*l.rate
}

// cpuPerMsg is the relay's and nats-server's CPU per message, in µs.
func (l floorLevel) cpuPerMsg(d time.Duration) float64 {
	if l.received == 0 {
		return 0
	}
	return (l.server + l.nats) * (d + floorDrain).Seconds() / (l.received * d.Seconds()) * 1e6
}

// floorRates is the rates relayfloor measures: msg-direct's open-loop
// rates, so CPU per message compares at equal rates and neither side's knee
// is looked for on a finer grid than the other's (the floor used to get
// extra steps, 7,500 and 12,500, that Parley did not: a Parley that held
// 7,500/s was reported at 5,000), then 1.25, 1.5 and 2 times the highest,
// where a floor that held every rate finds its knee (on 2 cores, in
// December 2026, it held 20,000/s).
func floorRates(direct []float64) []float64 {
	rs := slices.Clone(direct)
	slices.Sort(rs)
	rs = slices.Compact(rs)
	if len(rs) > 0 {
		top := rs[len(rs)-1]
		rs = append(rs, math.Round(1.25*top), math.Round(1.5*top), 2*top)
	}
	return rs
}

// messagingDedupWindow is messaging's -msg-dedup-window default
// (services/messaging): how long it keeps a client key, which nats-server
// does as the stream's duplicate window, in memory.
const messagingDedupWindow = 10 * time.Minute

// floorDedupWindow is the duplicate window the floors' streams get: the
// one Parley's messaging runs with (its default, or PARLEY_MSG_DEDUP_WINDOW
// from -server-env), so the floors remember message ids as long as Parley
// does. (Measured 2026-12-07: the floor's knee is the same with 2m and 10m.)
func floorDedupWindow(serverEnv []string) time.Duration {
	w := messagingDedupWindow
	for _, kv := range serverEnv {
		if v, ok := strings.CutPrefix(kv, "PARLEY_MSG_DEDUP_WINDOW="); ok {
			if d, err := time.ParseDuration(v); err == nil && d > 0 {
				w = d
			}
		}
	}
	return w
}

// runFloor runs relayfloor -jetstream (with hops: -hops) from bin and
// parses its table.
func runFloor(ctx context.Context, o options, hops bool, logf func(string, ...any)) *floorResult {
	r := &floorResult{hops: hops, duration: o.floorDuration}
	mode := "-jetstream"
	if hops {
		mode = "-hops"
	}
	bin, err := filepath.Abs(o.bin)
	if err != nil {
		r.err = err
		return r
	}
	exe := filepath.Join(bin, "relayfloor")
	if _, err := os.Stat(exe); err != nil {
		r.err = fmt.Errorf("no relayfloor in %s (scripts/bench.sh builds it)", o.bin)
		return r
	}
	var rates []string
	for _, v := range floorRates(o.directRates) {
		rates = append(rates, strconv.FormatFloat(v, 'f', -1, 64))
	}
	logf("msg-direct floor: relayfloor %s at %s/s", mode, strings.Join(rates, ", "))
	cmd := exec.CommandContext(ctx, exe, mode, "-bin", bin, "-pairs", strconv.Itoa(o.pairs),
		"-text-bytes", strconv.Itoa(o.textBytes), "-duration", o.floorDuration.String(), "-rates", strings.Join(rates, ","),
		"-dedup-window", floorDedupWindow(o.serverEnv).String())
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = io.Discard // its first few publish errors of overloaded levels
	if err := cmd.Run(); err != nil {
		r.err = fmt.Errorf("relayfloor: %w", err)
		return r
	}
	r.levels = parseFloor(out.Bytes())
	if len(r.levels) == 0 {
		r.err = fmt.Errorf("relayfloor printed no levels: %q", out.String())
	}
	return r
}

// parseFloor reads relayfloor's rows: rate, received/s, p50, p99, max,
// server, nats, loadgen, machine.
func parseFloor(b []byte) []floorLevel {
	var out []floorLevel
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 9 {
			continue
		}
		var l floorLevel
		var err [5]error
		l.rate, err[0] = strconv.ParseFloat(f[0], 64)
		l.received, err[1] = strconv.ParseFloat(f[1], 64)
		l.p99, err[2] = time.ParseDuration(f[3])
		l.server, err[3] = strconv.ParseFloat(f[5], 64)
		l.nats, err[4] = strconv.ParseFloat(f[6], 64)
		if err == [5]error{} {
			out = append(out, l)
		}
	}
	return out
}

// serverCPUPerMsg is the CPU of all Parley's server processes (everything
// but the load generator) per stored message of level l, in µs.
func serverCPUPerMsg(l levelResult) float64 {
	if l.ok == 0 {
		return 0
	}
	var cores float64
	for _, c := range l.cpu {
		if c.name != "machine" && c.name != "msgbench" {
			cores += c.cores
		}
	}
	return cores * l.cpuWall.Seconds() / float64(l.ok) * 1e6
}

// bestDirect is msg-direct's best open-loop level by the target's rule
// (p99 under the target, nothing lost, no errors, rate sustained); nil if
// none.
func bestDirect(ls []levelResult) *levelResult {
	var best *levelResult
	for i, l := range ls {
		if l.targetRate > 0 && l.e2e.p99 < directTargetP99 && l.lost == 0 && l.errs == 0 && !l.saturated() &&
			(best == nil || l.rate() > best.rate()) {
			best = &ls[i]
		}
	}
	return best
}

func (r *report) writeFloor(w io.Writer, f *floorResult) {
	name, server := "floor", "relay"
	if f.hops {
		name, server = "topology", "edges + store"
		fmt.Fprintf(w, "msg-direct against Parley's topology with none of its logic: relayfloor -hops in the same run (two edge\n")
		fmt.Fprintf(w, "processes and a store process over NATS, as the gateways and messaging: request, JetStream publish (async,\n")
		fmt.Fprintf(w, "file store, Nats-Msg-Id kept %s as Parley's), reply, an event to each user's subject; %d pairs, %d-byte texts,\n",
			floorDedupWindow(r.opts.serverEnv), r.opts.pairs, r.opts.textBytes)
		fmt.Fprintf(w, "%s per level).\n", f.duration)
	} else {
		fmt.Fprintf(w, "msg-direct against the floor: relayfloor -jetstream in the same run (a relay storing each message in JetStream,\n")
		fmt.Fprintf(w, "file store, Nats-Msg-Id kept %s as Parley's, async publishes, then answering and forwarding; %d pairs,\n",
			floorDedupWindow(r.opts.serverEnv), r.opts.pairs)
		fmt.Fprintf(w, "%d-byte texts, %s per level).\n", r.opts.textBytes, f.duration)
	}
	if f.err != nil {
		fmt.Fprintf(w, "  ERROR: %v\n\n", f.err)
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "rate\t%[1]s received/s\t%[1]s p99\t%[1]s CPU/msg\tParley stored/s\tParley p99\tParley CPU/msg\tCPU ratio\t\n", name)
	byRate := map[float64]levelResult{}
	for _, l := range r.direct.levels {
		if l.targetRate > 0 {
			byRate[l.targetRate] = l
		}
	}
	for _, fl := range f.levels {
		line := fmt.Sprintf("%.0f\t%.0f\t%s\t%.1f µs\t", fl.rate, fl.received, ms(fl.p99), fl.cpuPerMsg(f.duration))
		if pl, ok := byRate[fl.rate]; ok {
			pc, fc := serverCPUPerMsg(pl), fl.cpuPerMsg(f.duration)
			line += fmt.Sprintf("%.0f\t%s\t%.1f µs\t%.2f\t", pl.rate(), ms(pl.e2e.p99), pc, pc/fc)
		} else {
			line += "\t\t\t\t"
		}
		fmt.Fprintln(tw, line)
	}
	tw.Flush()
	fmt.Fprintf(w, "  (CPU/msg: %s = %s + nats-server; Parley = every server process: nats-server, redis, auth, presence,\n", name, server)
	fmt.Fprintln(w, "  messaging, gateways; neither counts its load generator.)")
	var fbest *floorLevel
	for i, l := range f.levels {
		if l.ok() && (fbest == nil || l.received > fbest.received) {
			fbest = &f.levels[i]
		}
	}
	pbest := bestDirect(r.direct.levels)
	// The targets are against the floor; against the topology
	// the ratios say how much Parley's own code costs.
	rateTarget, cpuTarget := " (target >= 0.5: %s)", " (target <= 2: %s)"
	if f.hops {
		rateTarget, cpuTarget = "%.0s", "%.0s"
	}
	switch {
	case fbest == nil:
		fmt.Fprintf(w, "%s: no level had p99 < %s without loss; no ratio.\n\n", name, directTargetP99)
		return
	case pbest == nil:
		fmt.Fprintf(w, "Stored rate at p99 < %s: Parley none, %s %.0f/s: ratio 0"+rateTarget+"\n\n", directTargetP99, name, fbest.received, verdict(false))
		return
	}
	ratio := pbest.rate() / fbest.received
	fmt.Fprintf(w, "Stored rate at p99 < %s: Parley %.0f/s, %s %.0f/s: ratio %.2f"+rateTarget+"\n",
		directTargetP99, pbest.rate(), name, fbest.received, ratio, verdict(ratio >= 0.5))
	if top := f.levels[len(f.levels)-1]; &f.levels[len(f.levels)-1] == fbest {
		// Its knee is above the grid: the ratio overstates Parley.
		fmt.Fprintf(w, "  (the %s held p99 < %s up to the highest rate measured, %.0f/s: its knee is higher and the ratio\n"+
			"  an upper bound; add rates to -direct-rates)\n", name, directTargetP99, top.rate)
	}
	for _, fl := range f.levels {
		if fl.rate == pbest.targetRate {
			c := serverCPUPerMsg(*pbest) / fl.cpuPerMsg(f.duration)
			fmt.Fprintf(w, "CPU per message at %.0f/s (Parley's best): Parley %.1f µs, %s %.1f µs: ratio %.2f"+cpuTarget+"\n",
				fl.rate, serverCPUPerMsg(*pbest), name, fl.cpuPerMsg(f.duration), c, verdict(c <= 2))
		}
	}
	fmt.Fprintf(w, "CPU per message at each best rate: Parley %.1f µs at %.0f/s, %s %.1f µs at %.0f/s: ratio %.2f\n\n",
		serverCPUPerMsg(*pbest), pbest.rate(), name, fbest.cpuPerMsg(f.duration), fbest.received,
		serverCPUPerMsg(*pbest)/fbest.cpuPerMsg(f.duration))
}

func verdict(met bool) string {
	if met {
		return "MET"
	}
	return "NOT MET"
}
