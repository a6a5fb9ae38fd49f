package main

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"time"
)

type report struct {
	opts              options
	env               []string
	turnVersion       string
	started, finished time.Time
	levels            []levelResult
	m2e               *m2eResult
	groups            []groupResult
}

func machine() []string {
	load, _ := os.ReadFile("/proc/loadavg")
	kernel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	model := ""
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "model name"); ok {
				model = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	return []string{
		fmt.Sprintf("cpus: %d (%s), Linux %s, Go %s", runtime.NumCPU(), model, strings.TrimSpace(string(kernel)), runtime.Version()),
		fmt.Sprintf("load average at start: %s", strings.Join(strings.Fields(string(load))[:3], " ")),
	}
}

func ms(d time.Duration) string {
	if d >= histBuckets*histRes {
		return ">=2000 ms" // the histogram's last bucket
	}
	return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
}

func (r *report) write(w io.Writer) {
	o := r.opts
	fmt.Fprintf(w, "Parley voice-call benchmark (%s, %s)\n", r.started.Format("2006-01-02 15:04 MST"), r.finished.Sub(r.started).Round(time.Second))
	for _, l := range r.env {
		fmt.Fprintln(w, "  "+l)
	}
	fmt.Fprintf(w, "  processes: nats-server -js, redis-server, auth, presence, messaging, media-relay (-relay-max-speakers %d), %d gateway(s) with UDP media ports", o.maxSpeakers, o.gateways)
	if r.turnVersion != "" {
		fmt.Fprintf(w, "; coturn %s (turnserver --no-auth, UDP, loopback)", r.turnVersion)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "  load generator: this process (callbench), on the same machine: its CPU is reported")
	if o.quick {
		fmt.Fprintln(w, "  QUICK MODE: small sizes, for smoke-testing only")
	}
	fmt.Fprintln(w)
	if len(r.levels) > 0 {
		r.writeLevels(w)
	}
	if r.m2e != nil {
		m := r.m2e
		fmt.Fprintf(w, "m2e: mouth-to-ear through the SDK (CallSession: Opus encode, UDP, gateway, relay, jitter buffer, decode), %d call(s), both sides talking\n", m.calls)
		if m.err != nil {
			fmt.Fprintf(w, "  FAILED: %v\n\n", m.err)
		} else {
			fmt.Fprintf(w, "  %d/%d bursts heard (correlation >= 0.6); mouth-to-ear p50 %s, p90 %s, max %s (target p50 < 80 ms)\n",
				m.heard, m.bursts, ms(m.p50), ms(m.p90), ms(m.max))
			var sc []string
			for _, v := range m.scores {
				sc = append(sc, fmt.Sprintf("%.2f", v))
			}
			fmt.Fprintf(w, "  scores: %s\n\n", strings.Join(sc, " "))
		}
	}
	if len(r.groups) > 0 {
		fmt.Fprintf(w, "group: every participant sends 50 packets/s (%d-byte payload, %d bytes on UDP) with voice activity at a distinct level;\n", o.payload, o.payload+32)
		fmt.Fprintf(w, "%s measured per call after %s; bandwidth per listener = UDP payload bytes received per second (+28 bytes/packet IPv4+UDP headers)\n", o.groupDuration, o.warmup)
		fmt.Fprintln(w, "  participants  speakers heard (max)  packets/s per listener  bytes/s per listener (min-max)  with headers  p50 / p99")
		for _, g := range r.groups {
			if g.err != nil {
				fmt.Fprintf(w, "  %12d  FAILED: %v\n", g.size, g.err)
				continue
			}
			fmt.Fprintf(w, "  %12d  %20d  %22.1f  %8.0f (%.0f-%.0f)  %12.0f  %s / %s\n", g.size, g.forwardedMax, g.pktsMean,
				g.bytesMean, g.bytesMin, g.bytesMax, g.bytesMean+28*g.pktsMean, ms(g.p50), ms(g.p99))
		}
		if len(r.groups) == 2 && r.groups[0].err == nil && r.groups[1].err == nil && r.groups[1].bytesMean > 0 {
			big, small := r.groups[0], r.groups[1]
			all := float64(big.size-1) * 50 * float64(o.payload+32)
			fmt.Fprintf(w, "  a listener in the call of %d receives %.2fx what one in the call of %d does; forwarding all %d others would be %.0f bytes/s (%.2fx)\n",
				big.size, big.bytesMean/small.bytesMean, small.size, big.size-1, all, all/small.bytesMean)
		}
		fmt.Fprintln(w)
	}
}

func (r *report) writeLevels(w io.Writer) {
	o := r.opts
	fmt.Fprintf(w, "load: N one-to-one calls, each leg 50 packets/s (%d-byte payload, %d bytes sealed) to its server, %s measured after %s.\n",
		o.payload, o.payload+32, o.duration, o.warmup)
	fmt.Fprintln(w, "Latency: A's send -> B's receive (same clock). CPU/packet: the server processes' CPU time over the window / packets delivered")
	fmt.Fprintln(w, "(parley: gateway(s) + media-relay + nats-server; coturn: turnserver). Cores: CPU seconds per second. sent: packets sent in the")
	fmt.Fprintln(w, "window (% of those due: under 100, the generator was short of CPU). other jobs: the machine's busy cores minus this benchmark's processes.")
	fmt.Fprintln(w, "  server  calls  setup      sent pkts (% due)  lost %    p50        p99        p99.9      max        CPU/packet  server cores  generator cores  other jobs  machine cores")
	for _, l := range r.levels {
		if l.err != nil {
			fmt.Fprintf(w, "  %-6s  %5d  FAILED: %v\n", l.peer, l.calls, l.err)
			continue
		}
		fails := ""
		if l.setupFails > 0 {
			fails = fmt.Sprintf(" (%d calls failed)", l.setupFails)
		}
		fmt.Fprintf(w, "  %-6s  %5d  %-9s  %9d (%5.1f%%)  %-7.3f  %-9s  %-9s  %-9s  %-9s  %7.2f µs  %12.2f  %15.2f  %10.2f  %13.2f%s\n",
			l.peer, l.calls, l.setup.Round(10*time.Millisecond), l.sent, l.sentPct(), l.lossPct(), ms(l.p50), ms(l.p99), ms(l.p999), ms(l.max),
			float64(l.cpuPerPacket())/float64(time.Microsecond), l.serverSecs/l.window.Seconds(), l.gen.cores, l.foreign, l.mach.cores, fails)
	}
	fmt.Fprintln(w, "  per process (cores):")
	for _, l := range r.levels {
		var parts []string
		for _, u := range l.server {
			parts = append(parts, fmt.Sprintf("%s %.2f", u.name, u.cores))
		}
		fmt.Fprintf(w, "    %-6s %5d: %s\n", l.peer, l.calls, strings.Join(parts, ", "))
	}
	// Ratios at each level both ran.
	var lines []string
	for _, p := range r.levels {
		if p.peer != "parley" || p.err != nil {
			continue
		}
		for _, t := range r.levels {
			if t.peer == "coturn" && t.calls == p.calls && t.err == nil && t.cpuPerPacket() > 0 && t.p99 > 0 {
				lines = append(lines, fmt.Sprintf("  %5d calls: CPU/packet %.2fx coturn's (%.2f vs %.2f µs), p99 %.2fx (%s vs %s), loss %.3f%% vs %.3f%%",
					p.calls, float64(p.cpuPerPacket())/float64(t.cpuPerPacket()),
					float64(p.cpuPerPacket())/1e3, float64(t.cpuPerPacket())/1e3,
					float64(p.p99)/float64(t.p99), ms(p.p99), ms(t.p99), p.lossPct(), t.lossPct()))
			}
		}
	}
	if len(lines) > 0 {
		fmt.Fprintln(w, "Parley against coturn, same run:")
		for _, l := range lines {
			fmt.Fprintln(w, l)
		}
	}
	fmt.Fprintf(w, "Target: p99 under %s at 500 calls.\n", ms(o.targetP99))
	for _, l := range r.levels {
		if l.peer != "parley" || l.err != nil {
			continue
		}
		verdict := "within target"
		switch {
		case l.p99 >= o.targetP99 && l.lossPct() >= 1:
			verdict = "BROKEN: p99 over target and over 1% lost"
		case l.p99 >= o.targetP99:
			verdict = "over the p99 target"
		case l.lossPct() >= 1:
			verdict = "over 1% lost"
		}
		fmt.Fprintf(w, "  parley %5d calls: %s\n", l.calls, verdict)
	}
	fmt.Fprintln(w)
}
