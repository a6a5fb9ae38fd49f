package main

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"
)

// targetRatio: gateway throughput at least this share of direct MinIO.
const targetRatio = 0.8

type report struct {
	opts              options
	want              map[string]bool
	env               []string
	disk              string
	started, finished time.Time
	transfers         *transferResult
	chat              *chatResult
	leftover          string // what MinIO still holds after every file was deleted
}

// machine describes where the benchmark runs.
func machine() []string {
	load, _ := os.ReadFile("/proc/loadavg")
	return []string{
		fmt.Sprintf("cpus: %d (GOMAXPROCS %d), Go %s", runtime.NumCPU(), runtime.GOMAXPROCS(0), runtime.Version()),
		fmt.Sprintf("load average at start: %s", strings.Join(strings.Fields(string(load))[:3], " ")),
	}
}

// failed reports whether a transfer or the chat failed.
func (r *report) failed() bool {
	if r.transfers != nil {
		if r.transfers.err != nil {
			return true
		}
		for _, rr := range r.transfers.rounds {
			for _, t := range append(append([]transfer(nil), rr.up...), rr.down...) {
				if t.err != nil {
					return true
				}
			}
		}
	}
	return r.chat != nil && r.chat.err != nil
}

func (r *report) write(w io.Writer) {
	fmt.Fprintf(w, "Parley file-transfer benchmark (%s, %s)\n", r.started.Format("2006-01-02 15:04 MST"),
		r.finished.Sub(r.started).Round(time.Second))
	for _, l := range r.env {
		fmt.Fprintln(w, "  "+l)
	}
	fmt.Fprintf(w, "  processes: nats-server -js, redis-server, minio (single drive), auth, presence, messaging, file, %s; clients: this process\n", r.opts.gatewayBin)
	fmt.Fprintln(w, "  "+r.disk)
	if r.opts.quick {
		fmt.Fprintln(w, "  QUICK MODE: small files and short levels, for smoke-testing only")
	}
	fmt.Fprintln(w)
	if t := r.transfers; t != nil {
		r.writeTransfers(w, t)
	}
	if r.chat != nil {
		r.writeChat(w, r.chat)
	}
	if r.leftover != "" {
		fmt.Fprintln(w, "After the run (every file deleted by its sender): MinIO holds "+r.leftover)
	}
}

func (r *report) writeTransfers(w io.Writer, t *transferResult) {
	fmt.Fprintf(w, "Files: %s (%d bytes) generated on the fly, every byte checked on the way back; part size %s.\n",
		humanBytes(t.size), t.size, humanBytes(t.partSize))
	fmt.Fprintln(w, "MB/s = 10^6 bytes per second; CPU in cores (1.00 = one core busy) averaged over the transfer;")
	fmt.Fprintln(w, "\"filebench\" is the client side, \"other\" what the machine ran besides the processes listed.")
	if t.err != nil {
		fmt.Fprintf(w, "  ERROR: %v\n", t.err)
	}
	if r.want["file-up"] || r.want["file-mem"] {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "Upload: gateway = SDK OfferFile + Upload (tus PATCH, one request) to a user who is offline; \"gateway, live\" = the")
		fmt.Fprintln(w, "same to a user who is online, for whom the file service makes the file live (every part also stored as a readable")
		fmt.Fprintln(w, "object, so the download can start before the upload ends); direct = minio-go PutObject to the same MinIO,")
		fmt.Fprintf(w, "streamed (one %s part after another) or parallel (io.ReaderAt: minio-go defaults, 4 x 16 MiB parts).\n", humanBytes(t.partSize))
		writeTransferTable(w, t.rounds, func(rr roundResult) []transfer { return rr.up })
		for i, rr := range t.rounds {
			for _, u := range rr.up {
				if u.commits.count == 0 || u.err != nil {
					continue
				}
				live := ""
				if u.liveParts >= 0 {
					live = fmt.Sprintf("; readable part copies in MinIO half-way: %d", u.liveParts)
				}
				fmt.Fprintf(w, "  round %d %s: %d part commits, %.1f ms each at the file service (%.0f%% of the upload's time)%s\n",
					i+1, u.name, u.commits.count, u.commits.seconds/float64(u.commits.count)*1e3, 100*u.commits.seconds/u.elapsed.Seconds(), live)
			}
		}
		if r.want["file-up"] {
			for _, g := range []string{viaGateway, viaGatewayLive} {
				gw := best(t.rounds, true, g)
				for _, d := range []string{directStream, directParallel} {
					if v := best(t.rounds, true, d); v > 0 && gw > 0 {
						fmt.Fprintf(w, "  upload %s / %s: %.0f / %.0f MB/s = %.2f  (target >= %.1f: %s)\n", g, d, gw, v, gw/v, targetRatio, verdict(gw/v))
					}
				}
			}
		}
	}
	if r.want["file-down"] {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "Download: gateway = GET of the URL from DownloadURL; direct = minio-go GetObject of the same stored object,")
		fmt.Fprintln(w, "whole, or with \"Range: bytes=0-<last>\" as the gateway asks MinIO for it.")
		writeTransferTable(w, t.rounds, func(rr roundResult) []transfer { return rr.down })
		gw := best(t.rounds, false, viaGateway)
		for _, d := range []string{directWhole, directRange} {
			if v := best(t.rounds, false, d); v > 0 && gw > 0 {
				fmt.Fprintf(w, "  download gateway / %s: %.0f / %.0f MB/s = %.2f  (target >= %.1f: %s)\n", d, gw, v, gw/v, targetRatio, verdict(gw/v))
			}
		}
	}
	if r.want["file-mem"] {
		fmt.Fprintln(w)
		fmt.Fprintf(w, "Memory during the gateway upload of %s (VmRSS sampled every 50 ms; VmHWM = the kernel's peak RSS since start):\n", humanBytes(t.size))
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "round\tupload\tprocess\tRSS before\tpeak RSS\tpeak - before\tVmHWM before\tVmHWM after\tsamples\t")
		for i, rr := range t.rounds {
			for _, u := range rr.up {
				for _, m := range u.mem {
					fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t\n", i+1, u.name, m.name, humanBytes(m.before), humanBytes(m.peak),
						humanBytes(m.peak-m.before), humanBytes(m.hwmBefore), humanBytes(m.hwm), m.samples)
				}
			}
		}
		tw.Flush()
	}
	if len(t.profiles) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "CPU profiles (go tool pprof -top <binary> <file>):")
		for _, p := range t.profiles {
			fmt.Fprintln(w, "  "+p)
		}
	}
	fmt.Fprintln(w)
}

func writeTransferTable(w io.Writer, rounds []roundResult, pick func(roundResult) []transfer) {
	if len(rounds) == 0 || len(pick(rounds[0])) == 0 {
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	hdr := "round\tpath\ttime\tMB/s\t"
	for _, c := range pick(rounds[0])[0].cpu {
		hdr += c.name + "\t"
	}
	fmt.Fprintln(tw, hdr+"other\t")
	for i, rr := range rounds {
		for _, t := range pick(rr) {
			line := fmt.Sprintf("%d\t%s\t", i+1, t.name)
			if t.err != nil {
				fmt.Fprintln(tw, line+"ERROR: "+t.err.Error()+"\t")
				continue
			}
			line += fmt.Sprintf("%.2f s\t%.0f\t", t.elapsed.Seconds(), t.mbps())
			var ours, machine float64
			for _, c := range t.cpu {
				line += fmt.Sprintf("%.2f\t", c.cores)
				if c.name == "machine" {
					machine = c.cores
				} else {
					ours += c.cores
				}
			}
			fmt.Fprintln(tw, line+fmt.Sprintf("%.2f\t", max(0, machine-ours)))
		}
	}
	tw.Flush()
}

// best is the highest MB/s of the named transfer over the rounds: other
// jobs on the machine only ever slow a transfer down.
func best(rounds []roundResult, up bool, name string) float64 {
	var v float64
	for _, rr := range rounds {
		ts := rr.down
		if up {
			ts = rr.up
		}
		for _, t := range ts {
			if t.name == name && t.err == nil {
				v = max(v, t.mbps())
			}
		}
	}
	return v
}

func verdict(ratio float64) string {
	if ratio >= targetRatio {
		return "MET"
	}
	return "NOT MET"
}

func (r *report) writeChat(w io.Writer, c *chatResult) {
	fmt.Fprintf(w, "Chat: alice -> bob private messages on the same gateway, %.0f msg/s open loop, %s per level; latency from when a\n",
		r.opts.chatRate, r.opts.chatDuration)
	fmt.Fprintf(w, "message was due to bob's MessageEvent. Transfers by alice through the same gateway, %s files, back to back.\n", humanBytes(c.transferSize))
	if c.err != nil {
		fmt.Fprintf(w, "  ERROR: %v\n", c.err)
	}
	if len(c.levels) == 0 {
		fmt.Fprintln(w)
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	hdr := "level\tsent\terrors\tlost\tp50\tp99\tmax\treply p99\ttransfer MB/s\t"
	for _, s := range c.levels[0].cpu {
		hdr += s.name + "\t"
	}
	fmt.Fprintln(tw, hdr)
	for _, l := range c.levels {
		line := fmt.Sprintf("%s\t%d\t%d\t%d\t%s\t%s\t%s\t%s\t", l.name, l.sent, l.errs, l.lost,
			ms(l.e2e.p50), ms(l.e2e.p99), ms(l.e2e.max), ms(l.reply.p99))
		if l.name == bgNone {
			line += "-\t"
		} else {
			line += fmt.Sprintf("%.0f\t", l.transferMBps)
		}
		for _, s := range l.cpu {
			line += fmt.Sprintf("%.2f\t", s.cores)
		}
		fmt.Fprintln(tw, line)
	}
	tw.Flush()
	for _, l := range c.levels {
		if l.firstErr != "" {
			fmt.Fprintf(w, "  %s: first send error: %s\n", l.name, l.firstErr)
		}
		if l.transferErr != "" {
			fmt.Fprintf(w, "  %s: transfer error: %s\n", l.name, l.transferErr)
		}
	}
	if base := c.levels[0]; base.name == bgNone && base.e2e.p99 > 0 {
		for _, l := range c.levels[1:] {
			if l.e2e.p99 > 0 {
				fmt.Fprintf(w, "  p99 %s / %s: %s / %s = %.1fx\n", l.name, base.name, ms(l.e2e.p99), ms(base.e2e.p99),
					float64(l.e2e.p99)/float64(base.e2e.p99))
			}
		}
	}
	fmt.Fprintln(w)
}
