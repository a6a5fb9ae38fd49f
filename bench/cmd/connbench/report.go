package main

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
)

// targetPerConn is the target for an idle plain-TCP connection.
const targetPerConn = 8 << 10

type report struct {
	opts              options
	env               []string
	started, finished time.Time
	reg               *regResult
	conns             []*connResult
	storms            []*stormResult
	logins            *loginResult
}

// machine describes where the benchmark runs.
func machine() []string {
	var uts syscall.Utsname
	_ = syscall.Uname(&uts)
	var rl syscall.Rlimit
	_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl)
	load, _ := os.ReadFile("/proc/loadavg")
	return []string{
		fmt.Sprintf("cpus: %d (GOMAXPROCS %d), memory: %s", runtime.NumCPU(), runtime.GOMAXPROCS(0), memTotal()),
		fmt.Sprintf("kernel: %s, Go: %s", cstr(uts.Release[:]), runtime.Version()),
		fmt.Sprintf("open files: soft %d, hard %d", rl.Cur, rl.Max),
		fmt.Sprintf("load average at start: %s", strings.Join(strings.Fields(string(load))[:3], " ")),
	}
}

func cstr(b []int8) string {
	var s []byte
	for _, c := range b {
		if c == 0 {
			break
		}
		s = append(s, byte(c))
	}
	return string(s)
}

func memTotal() string {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return "?"
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "MemTotal:"); ok {
			var kb int64
			fmt.Sscanf(strings.TrimSpace(v), "%d", &kb)
			return fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
		}
	}
	return "?"
}

func kib(b float64) string { return fmt.Sprintf("%.2f KiB", b/1024) }
func mib(b float64) string { return fmt.Sprintf("%.1f MiB", b/(1<<20)) }

func (r *report) write(w io.Writer) {
	fmt.Fprintf(w, "Parley connection and login benchmark (%s, %s)\n", r.started.Format("2006-01-02 15:04 MST"),
		r.finished.Sub(r.started).Round(time.Second))
	for _, l := range r.env {
		fmt.Fprintln(w, "  "+l)
	}
	if r.opts.quick {
		fmt.Fprintln(w, "  QUICK MODE: small sizes, for smoke-testing only")
	}
	fmt.Fprintln(w)

	if r.reg != nil {
		rate := float64(r.reg.ok) / r.reg.elapsed.Seconds()
		fmt.Fprintf(w, "Registration (SDK, %d in flight, auth with cheap argon2id m=1024 KiB t=1 p=1):\n", r.opts.regParallel)
		fmt.Fprintf(w, "  %d users registered, %d failed, in %s: %.0f registrations/s\n", r.reg.ok, r.reg.fail,
			r.reg.elapsed.Round(time.Millisecond), rate)
		if r.reg.firstErr != nil {
			fmt.Fprintf(w, "  first error: %v\n", r.reg.firstErr)
		}
		fmt.Fprintln(w)
	}

	if len(r.conns) > 0 {
		r.writeConns(w)
	}
	if len(r.storms) > 0 {
		r.writeStorms(w)
	}
	if r.logins != nil {
		r.writeLogins(w)
	}
}

func (r *report) writeConns(w io.Writer) {
	fmt.Fprintln(w, "Idle authenticated connections (Hello + Resume with skip_presence_feed, then only pings every 25 s).")
	fmt.Fprintln(w, "Per connection = (after - before) / connections, summed over the scenario's gateways; \"after\" is")
	fmt.Fprintf(w, "%s after the last connection. RSS is VmRSS; heap is go_memstats_heap_inuse_bytes; stack is\n", r.opts.settle)
	fmt.Fprintln(w, "go_memstats_stack_inuse_bytes (goroutine stacks); all from the gateway processes.")
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tgateways\tconnected\tfailed\tsetup\tconns/s\tRSS/conn\theap/conn\tstack/conn\tgoroutines/conn\tnats RSS/conn\tredis/conn\t")
	for _, c := range r.conns {
		if c.connected == 0 {
			fmt.Fprintf(tw, "%s\t%d\t0\t%d\t-\t-\t-\t-\t-\t-\t-\t-\t\n", c.sc.name, len(c.sc.perGateway), c.failed)
			continue
		}
		n := float64(c.connected)
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\t%.0f\t%s\t%s\t%s\t%.2f\t%s\t%s\t\n",
			c.sc.name, len(c.sc.perGateway), c.connected, c.failed, c.setup.Round(100*time.Millisecond),
			n/c.setup.Seconds(),
			kib(c.perConn(func(s sample) float64 { return float64(s.rss) })),
			kib(c.perConn(func(s sample) float64 { return s.heapInuse })),
			kib(c.perConn(func(s sample) float64 { return s.stackInuse })),
			c.perConn(func(s sample) float64 { return s.goroutines }),
			kib(float64(c.natsAfter-c.natsBefore)/n),
			kib(float64(c.redisAfter-c.redisBefore)/n))
	}
	tw.Flush()
	fmt.Fprintln(w)

	for _, c := range r.conns {
		fmt.Fprintf(w, "%s (%s, %d gateway(s), %d connload process(es) per gateway):\n", c.sc.name, c.sc.transport,
			len(c.sc.perGateway), c.sc.loaders)
		if c.err != nil {
			fmt.Fprintf(w, "  ERROR: %v\n", c.err)
		}
		for _, g := range c.gws {
			line := fmt.Sprintf("  %s: %d connected; RSS %s -> %s", g.id, g.connected, mib(float64(g.before.rss)), mib(float64(g.after.rss)))
			if g.connected > 0 {
				line += fmt.Sprintf(" (%s/conn)", kib(float64(g.after.rss-g.before.rss)/float64(g.connected)))
			}
			line += fmt.Sprintf("; heap %s -> %s; stacks %s -> %s; goroutines %.0f -> %.0f; gauge: %.0f open, %.0f authenticated",
				mib(g.before.heapInuse), mib(g.after.heapInuse), mib(g.before.stackInuse), mib(g.after.stackInuse),
				g.before.goroutines, g.after.goroutines, g.after.conns, g.after.authed)
			fmt.Fprintln(w, line)
		}
		fmt.Fprintf(w, "  nats-server RSS %s -> %s; redis used_memory %s -> %s\n", mib(float64(c.natsBefore)), mib(float64(c.natsAfter)),
			mib(float64(c.redisBefore)), mib(float64(c.redisAfter)))
		if c.presenceErr != nil {
			fmt.Fprintf(w, "  presence list: ERROR %v\n", c.presenceErr)
		} else if c.connected > 0 {
			verdict := "OK"
			if c.presenceUsers != c.wantUsers || c.presenceSessions != c.connected {
				verdict = "MISMATCH"
			}
			fmt.Fprintf(w, "  presence list: %d users online (expected %d), %d connections (expected %d), largest reply %s: %s",
				c.presenceUsers, c.wantUsers, c.presenceSessions, c.connected, kib(float64(c.presenceReplyBytes)), verdict)
			if c.presenceLag >= time.Second {
				fmt.Fprintf(w, " (%s after the measurement)", c.presenceLag.Round(time.Second))
			}
			fmt.Fprintln(w)
		}
		if c.connected > c.wantUsers && c.wantUsers > 0 {
			fmt.Fprintf(w, "  %.1f connections per user\n", float64(c.connected)/float64(c.wantUsers))
		}
		for _, e := range c.firstErrs {
			fmt.Fprintf(w, "  first error from %s\n", e)
		}
		if c.err == nil && !c.cleanStop {
			fmt.Fprintln(w, "  a gateway needed SIGKILL at teardown")
		}
	}
	fmt.Fprintln(w)
	for _, c := range r.conns {
		if c.sc.transport != "tcp" || c.connected == 0 {
			continue
		}
		per := c.perConn(func(s sample) float64 { return float64(s.rss) })
		verdict := "MET"
		if per > targetPerConn {
			verdict = "NOT MET"
		}
		fmt.Fprintf(w, "Target <= 8 KiB RSS per idle TCP connection, %s: %s (%s)\n", c.sc.name, verdict, kib(per))
	}
	fmt.Fprintln(w)
}

func (r *report) writeLogins(w io.Writer) {
	l := r.logins
	fmt.Fprintln(w, "Password logins through a gateway with the SDK (auth with its default argon2id parameters,")
	fmt.Fprintf(w, "m=19456 KiB t=2 p=1; %d users; each worker loops Login then Logout on one connection; %s per level).\n",
		l.users, r.opts.loginDuration)
	if l.err != nil {
		fmt.Fprintf(w, "  ERROR: %v\n", l.err)
	}
	if l.regRate > 0 {
		fmt.Fprintf(w, "  registration with these parameters: %.1f/s (2 in flight), %d failed\n", l.regRate, l.regFail)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "concurrency\tlogins\tlogins/s\tp50\tp99\terrors\tauth CPU (cores)\tgateway CPU (cores)\t")
	for _, run := range l.runs {
		fmt.Fprintf(tw, "%d\t%d\t%.1f\t%s\t%s\t%d\t%.2f\t%.2f\t\n", run.concurrency, run.logins,
			float64(run.logins)/run.elapsed.Seconds(), run.p50, run.p99, run.errors, run.authCPU, run.gatewayCPU)
	}
	tw.Flush()
	for _, run := range l.runs {
		if run.firstErr != nil {
			fmt.Fprintf(w, "  concurrency %d, first error: %v\n", run.concurrency, run.firstErr)
		}
	}
	fmt.Fprintln(w)
}
