package main

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// The targets.
const (
	directTargetRate = 20000
	directTargetP99  = 20 * time.Millisecond
	roomTargetRate   = 200000
	roomTargetP99    = 50 * time.Millisecond
)

type report struct {
	opts              options
	env               []string
	started, finished time.Time
	direct            *directResult
	floors            []*floorResult // with direct, when -floor: relayfloor -jetstream, then -hops
	room              *roomResult
}

// machine describes where the benchmark runs.
func machine() []string {
	load, _ := os.ReadFile("/proc/loadavg")
	return []string{
		fmt.Sprintf("cpus: %d (GOMAXPROCS %d), Go %s", runtime.NumCPU(), runtime.GOMAXPROCS(0), runtime.Version()),
		fmt.Sprintf("load average at start: %s", strings.Join(strings.Fields(string(load))[:3], " ")),
	}
}

func (r *report) write(w io.Writer) {
	fmt.Fprintf(w, "Parley messaging benchmark (%s, %s)\n", r.started.Format("2006-01-02 15:04 MST"),
		r.finished.Sub(r.started).Round(time.Second))
	for _, l := range r.env {
		fmt.Fprintln(w, "  "+l)
	}
	if r.opts.parleyd {
		fmt.Fprintln(w, "  processes: parleyd (every service in one process, embedded NATS with JetStream file store, in-process Redis protocol server); load generator: this process")
	} else {
		fmt.Fprintf(w, "  processes: nats-server -js (file store), redis-server, auth, presence, %d messaging, %d gateway(s); load generator: this process\n",
			r.opts.messaging, r.opts.gateways)
	}
	if len(r.opts.serverEnv) > 0 {
		fmt.Fprintf(w, "  servers' environment: %s\n", strings.Join(r.opts.serverEnv, " "))
	}
	if r.opts.quick {
		fmt.Fprintln(w, "  QUICK MODE: small sizes, for smoke-testing only")
	}
	fmt.Fprintln(w)
	if r.direct != nil {
		r.writeDirect(w)
		for _, f := range r.floors {
			r.writeFloor(w, f)
		}
	}
	if r.room != nil {
		r.writeRoom(w)
	}
}

func (r *report) writeDirect(w io.Writer) {
	d := r.direct
	clients := "clients speaking the wire protocol directly"
	if r.opts.directClients == "sdk" {
		clients = "Go SDK clients"
	}
	fmt.Fprintf(w, "msg-direct: %d pairs of %s, one private conversation each, sender and receiver on different gateways (when several);\n", d.pairs, clients)
	fmt.Fprintf(w, "%d-byte texts; %s per level. Latency: sender's Send start (open loop: when due) -> receiver's MessageEvent.\n",
		r.opts.textBytes, r.opts.directDuration)
	if d.err != nil {
		fmt.Fprintf(w, "  ERROR: %v\n\n", d.err)
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "level\tsent\tstored/s\terrors\tskipped\tlost\tdup\tgaps\te2e p50\te2e p99\te2e max\treply p50\treply p99\t")
	for _, l := range d.levels {
		fmt.Fprintf(tw, "%s\t%d\t%.0f\t%d\t%d\t%d\t%d\t%d\t%s\t%s\t%s\t%s\t%s\t\n", l.name, l.sent, l.rate(), l.errs, l.skipped,
			l.lost, l.dups, l.gaps, ms(l.e2e.p50), ms(l.e2e.p99), ms(l.e2e.max), ms(l.ack.p50), ms(l.ack.p99))
	}
	tw.Flush()
	writeErrors(w, d.levels)
	if d.disconnects > 0 {
		fmt.Fprintf(w, "  %d client disconnects during the run\n", d.disconnects)
	}
	fmt.Fprintln(w)
	writeCPU(w, d.levels, "stored message", func(l levelResult) float64 { return float64(l.ok) })
	if len(d.levels) > 0 && d.levels[0].nats.InMsgs > 0 {
		fmt.Fprintln(w, "NATS messages per stored message (nats-server /varz over the level and its drain: received from clients,")
		fmt.Fprintln(w, "delivered to them; JetStream's PubAcks count as delivered):")
		for _, l := range d.levels {
			if l.ok > 0 {
				fmt.Fprintf(w, "  %s: %.2f in, %.2f out\n", l.name, float64(l.nats.InMsgs)/float64(l.ok), float64(l.nats.OutMsgs)/float64(l.ok))
			}
		}
		fmt.Fprintln(w)
	}
	best := -1.0
	for _, l := range d.levels {
		if l.e2e.p99 < directTargetP99 && l.lost == 0 && l.errs == 0 && !l.saturated() && l.rate() > best {
			best = l.rate()
		}
	}
	verdict := "NOT MET"
	if best >= 0.98*directTargetRate {
		verdict = "MET"
	}
	if best < 0 {
		fmt.Fprintf(w, "Target >= %d msg/s with p99 < %s: NOT MET (no level had p99 < %s without losses)\n\n",
			directTargetRate, directTargetP99, directTargetP99)
		return
	}
	fmt.Fprintf(w, "Target >= %d msg/s with p99 < %s: %s (best level with p99 < %s and no loss: %.0f msg/s)\n\n",
		directTargetRate, directTargetP99, verdict, directTargetP99, best)
}

func (r *report) writeRoom(w io.Writer) {
	m := r.room
	fmt.Fprintf(w, "msg-room: %d members in the public room over the wire protocol (presence feed off), %d SDK senders (open loop);\n",
		m.members, m.senders)
	fmt.Fprintf(w, "%s per level. Deliveries = messages x members received; latency per delivery: Send start (when due) -> member read it.\n",
		r.opts.roomDuration)
	if r.opts.memberGatewayCPU > 0 && !r.opts.parleyd {
		fmt.Fprintf(w, "  the members' gateways limited to %.2f cores together (a CPU cgroup): the overload check\n", r.opts.memberGatewayCPU)
	}
	if r.opts.sendersApart && r.opts.gateways > 1 {
		fmt.Fprintf(w, "  senders on the last gateway, members on the other %d\n", r.opts.gateways-1)
	}
	if m.err != nil {
		fmt.Fprintf(w, "  ERROR: %v\n\n", m.err)
		return
	}
	fmt.Fprintf(w, "  members connected: %d, failed: %d", m.connected, m.connectFailed)
	if m.firstConnErr != "" {
		fmt.Fprintf(w, " (first error: %s)", m.firstConnErr)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "level\tsent\tstored/s\terrors\tskipped\tmembers\tdeliveries/s\tlost\tdup\tout of order\tp50\tp99\tmax\treply p99\t")
	for _, l := range m.levels {
		fmt.Fprintf(tw, "%s\t%d\t%.1f\t%d\t%d\t%d\t%.0f\t%d\t%d\t%d\t%s\t%s\t%s\t%s\t\n", l.name, l.sent, l.rate(), l.errs, l.skipped,
			l.members, l.deliveryRate(), l.lost, l.dups, l.reordered, ms(l.e2e.p50), ms(l.e2e.p99), ms(l.e2e.max), ms(l.ack.p99))
	}
	tw.Flush()
	if r.opts.roomRepair {
		fmt.Fprintln(w, "Overload check (-room-repair): after each level's drain every member read what it missed live from history")
		fmt.Fprintln(w, "(docs/protocol.md §15.3). Deliveries owed = stored messages x members connected at the end.")
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "level\tstored\tmembers connected\tSLOW_CONSUMER\towed\tlive\trepaired\tlost\thistory requests\t")
		for _, l := range m.levels {
			live := fmt.Sprint(l.received)
			if owed := l.ok * l.members; owed > 0 {
				live += fmt.Sprintf(" (%.1f%%)", 100*float64(l.received)/float64(owed))
			}
			fmt.Fprintf(tw, "%s\t%d\t%d of %d\t%d\t%d\t%s\t%d\t%d\t%d\t\n", l.name, l.ok, l.connectedAfter, m.connected, l.slowConsumers,
				l.ok*l.members, live, l.repaired, l.lost, l.historyReads)
		}
		tw.Flush()
		for _, l := range m.levels {
			if l.repairErr != "" {
				fmt.Fprintf(w, "  %s: first repair error: %s\n", l.name, l.repairErr)
			}
		}
	}
	writeErrors(w, m.levels)
	fmt.Fprintln(w)
	writeCPU(w, m.levels, "delivery", func(l levelResult) float64 { return float64(l.received) })
	writeTransports(w, m)
	best := -1.0
	for _, l := range m.levels {
		if l.e2e.p99 < roomTargetP99 && l.lost == 0 && l.errs == 0 && !l.saturated() && l.deliveryRate() > best {
			best = l.deliveryRate()
		}
	}
	verdict := "NOT MET"
	if best >= 0.98*roomTargetRate {
		verdict = "MET"
	}
	if best < 0 {
		fmt.Fprintf(w, "Target >= %d deliveries/s with p99 < %s: NOT MET (no level had p99 < %s without losses)\n\n",
			roomTargetRate, roomTargetP99, roomTargetP99)
		return
	}
	fmt.Fprintf(w, "Target >= %d deliveries/s with p99 < %s: %s (best level with p99 < %s and no loss: %.0f deliveries/s)\n\n",
		roomTargetRate, roomTargetP99, verdict, roomTargetP99, best)
}

// writeTransports prints, per level and transport, the deliveries to that
// transport's members, their latency and the CPU per delivery of the
// gateways serving them, and each transport's ratio to the first.
func writeTransports(w io.Writer, m *roomResult) {
	if len(m.transports) < 2 {
		return
	}
	fmt.Fprintf(w, "Per transport (member i over transport i%%%d", len(m.transports))
	for t, name := range m.transports {
		fmt.Fprintf(w, "; %s on %s", name, strings.Join(m.gateways[t], ","))
	}
	fmt.Fprintln(w, "):")
	if !m.separate {
		fmt.Fprintln(w, "  (the transports share gateways: gateway CPU per delivery is for all of them together)")
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "level\ttransport\tmembers\tdeliveries/s\tp50\tp99\tmax\tgateway CPU µs/delivery\tvs %s\t\n", m.transports[0])
	for _, l := range m.levels {
		var base float64
		for t, name := range m.transports {
			if t >= len(l.byTransport) {
				continue
			}
			f := l.byTransport[t]
			var cores float64
			for _, c := range l.cpu {
				if slices.Contains(m.gateways[t], c.name) {
					cores += c.cores
				}
			}
			us := 0.0
			if f.deliveries > 0 {
				us = cores * l.cpuWall.Seconds() / float64(f.deliveries) * 1e6
			}
			if t == 0 {
				base = us
			}
			ratio := "-"
			if t > 0 && base > 0 {
				ratio = fmt.Sprintf("%.2fx", us/base)
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%.0f\t%s\t%s\t%s\t%.2f\t%s\t\n", l.name, name, f.members,
				float64(f.deliveries)/l.elapsed.Seconds(), ms(f.e2e.p50), ms(f.e2e.p99), ms(f.e2e.max), us, ratio)
		}
	}
	tw.Flush()
	fmt.Fprintln(w)
}

func writeErrors(w io.Writer, ls []levelResult) {
	for _, l := range ls {
		if l.firstErr != "" {
			fmt.Fprintf(w, "  %s: first error: %s\n", l.name, l.firstErr)
		}
		if l.storedAnyway > 0 {
			fmt.Fprintf(w, "  %s: %d failed sends were stored and delivered anyway\n", l.name, l.storedAnyway)
		}
		if !l.drained {
			fmt.Fprintf(w, "  %s: not everything arrived within the drain time\n", l.name)
		}
	}
}

// writeCPU prints, per level, each process's CPU in cores (1.00 = one
// core busy for the whole level), the load generator's and the machine's.
func writeCPU(w io.Writer, ls []levelResult, unit string, units func(levelResult) float64) {
	if len(ls) == 0 || len(ls[0].cpu) == 0 {
		return
	}
	fmt.Fprintln(w, "CPU (cores, averaged over the level including its drain; \"machine\" is every process on the host, \"other\" what")
	fmt.Fprintln(w, "is not ours):")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	hdr := "level\t"
	for _, c := range ls[0].cpu {
		hdr += c.name + "\t"
	}
	fmt.Fprintln(tw, hdr+"other\t")
	for _, l := range ls {
		line := l.name + "\t"
		var ours, machine float64
		for _, c := range l.cpu {
			line += fmt.Sprintf("%.2f\t", c.cores)
			switch c.name {
			case "machine":
				machine = c.cores
			default:
				ours += c.cores
			}
		}
		fmt.Fprintln(tw, line+fmt.Sprintf("%.2f\t", max(0, machine-ours)))
	}
	tw.Flush()
	fmt.Fprintf(w, "CPU time per %s (microseconds: the level's CPU seconds / its %s count):\n", unit, unit)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	hdr = "level\t"
	for _, c := range ls[0].cpu {
		if c.name != "machine" && !idle(ls, c.name) {
			hdr += c.name + "\t"
		}
	}
	fmt.Fprintln(tw, hdr+"all ours\t")
	for _, l := range ls {
		n := units(l)
		if n == 0 {
			continue
		}
		secs := l.cpuWall.Seconds()
		line := l.name + "\t"
		var ours float64
		for _, c := range l.cpu {
			if c.name == "machine" {
				continue
			}
			us := c.cores * secs / n * 1e6
			ours += us
			if !idle(ls, c.name) {
				line += fmt.Sprintf("%.1f\t", us)
			}
		}
		fmt.Fprintln(tw, line+fmt.Sprintf("%.1f\t", ours))
	}
	tw.Flush()
	fmt.Fprintln(w)
}

// idle: the process used (almost) no CPU in any level (auth, presence,
// redis during messaging).
func idle(ls []levelResult, name string) bool {
	for _, l := range ls {
		for _, c := range l.cpu {
			if c.name == name && c.cores >= 0.01 {
				return false
			}
		}
	}
	return true
}
