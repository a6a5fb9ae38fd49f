package main

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parleychat/parley/bench/internal/child"
)

// What both modes share: the frames, the server process, the open-loop
// senders, the latencies and the CPU shares reported per level.

// readFrame reads one frame into buf (length prefix included) and returns
// its length. A frame shorter than a reply (8 bytes: the send time) or
// longer than buf is an error. (Until -hops, a sender's reader stopped at
// its first reply, which this rejected as shorter than a message; with
// nothing else sent to senders, their unread replies just stayed in the
// socket buffers.)
func readFrame(r *bufio.Reader, buf []byte) (int, error) {
	if _, err := io.ReadFull(r, buf[:4]); err != nil {
		return 0, err
	}
	n := int(binary.BigEndian.Uint32(buf[:4]))
	if n < 8 || n > len(buf)-4 {
		return 0, fmt.Errorf("frame of %d bytes", n)
	}
	if _, err := io.ReadFull(r, buf[4:4+n]); err != nil {
		return 0, err
	}
	return 4 + n, nil
}

// complaints counts the server's errors; only the first few are printed
// (an overloaded level can fail thousands of publishes).
var complaints atomic.Int64

func complain(what string, err error) {
	if complaints.Add(1) <= 3 {
		fmt.Fprintf(os.Stderr, "relayfloor: %s: %v (further errors not shown)\n", what, err)
	}
}

// server is the relay: this binary run again with -serve and args.
type server struct {
	addr string
	cmd  *exec.Cmd
}

func startServer(args ...string) (*server, error) {
	addr, err := child.FreeAddr()
	if err != nil {
		return nil, err
	}
	s, err := startProcess(append([]string{"-serve", addr}, args...)...)
	if err != nil {
		return nil, err
	}
	s.addr = addr
	return s, nil
}

// startProcess runs this binary again with args.
func startProcess(args ...string) (*server, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, args...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return &server{cmd: cmd}, nil
}

func (s *server) stop() { _ = s.cmd.Process.Kill(); _ = s.cmd.Wait() }

// dial connects (retrying while the server starts) and sends hello.
func (s *server) dial(hello []byte) (net.Conn, error) {
	for i := 0; ; i++ {
		c, err := net.Dial("tcp", s.addr)
		if err == nil {
			if _, err := c.Write(hello); err != nil {
				c.Close()
				return nil, err
			}
			return c, nil
		}
		if i > 100 {
			return nil, err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// latencies collects the current level's receive latencies: each frame's
// arrival minus the send time it carries (ns since start).
type latencies struct {
	start time.Time
	mu    sync.Mutex
	l     []time.Duration
	n     atomic.Int64
}

// of returns the latency of a frame read now.
func (l *latencies) of(frame []byte) time.Duration {
	return time.Since(l.start) - time.Duration(binary.BigEndian.Uint64(frame[4:12]))
}

func (l *latencies) add(ds ...time.Duration) {
	l.n.Add(int64(len(ds)))
	l.mu.Lock()
	l.l = append(l.l, ds...)
	l.mu.Unlock()
}

func (l *latencies) reset() {
	l.mu.Lock()
	l.l = l.l[:0]
	l.mu.Unlock()
	l.n.Store(0)
}

// quantile returns the p-quantile (1: the maximum) of what was added.
func (l *latencies) quantiles(ps ...float64) []time.Duration {
	l.mu.Lock()
	s := slices.Clone(l.l)
	l.mu.Unlock()
	slices.Sort(s)
	out := make([]time.Duration, len(ps))
	for i, p := range ps {
		if len(s) > 0 {
			out[i] = s[min(len(s)-1, int(p*float64(len(s))))].Round(10 * time.Microsecond)
		}
	}
	return out
}

// openLoop sends on every connection at rate/len(conns) messages/s, with
// phases spread evenly, until dur has passed: each send is stamped with its
// due time (so a late load generator counts in the latency), whether or not
// earlier ones were answered. frame(i) is connection i's frame; it returns
// when every sender is done.
func openLoop(conns []net.Conn, rate float64, dur time.Duration, start time.Time, frame func(i int) []byte) {
	n := len(conns)
	interval := time.Duration(float64(time.Second) * float64(n) / rate)
	end := time.Now().Add(dur)
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Go(func() {
			f := frame(i)
			for due := time.Now().Add(interval * time.Duration(i) / time.Duration(n)); due.Before(end); due = due.Add(interval) {
				time.Sleep(time.Until(due))
				binary.BigEndian.PutUint64(f[4:], uint64(due.Sub(start)))
				if _, err := c.Write(f); err != nil {
					return
				}
			}
		})
	}
	wg.Wait()
}

// levels parses the rates and runs level for each.
func levels(rateList string, level func(rate float64)) error {
	for _, f := range strings.Split(rateList, ",") {
		rate, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
		if err != nil || rate <= 0 {
			return fmt.Errorf("bad rate %q", f)
		}
		level(rate)
	}
	return nil
}

// cpuMeter measures the cores used by some processes (0: none, reported as
// 0), this load generator and the whole machine between begin and end.
type cpuMeter struct {
	pids []int
	t0   time.Time
	at   []float64
}

func (m *cpuMeter) sample() []float64 {
	var out []float64
	for _, pid := range m.pids {
		v := 0.0
		if pid != 0 {
			v = child.CPUSeconds(strconv.Itoa(pid))
		}
		out = append(out, v)
	}
	return append(out, child.CPUSeconds("self"), child.MachineBusySeconds())
}

func (m *cpuMeter) begin() { m.t0, m.at = time.Now(), m.sample() }

// end returns the cores of each process, then the load generator's, then
// the machine's.
func (m *cpuMeter) end() []float64 {
	now := m.sample()
	wall := time.Since(m.t0).Seconds()
	for i := range now {
		now[i] = (now[i] - m.at[i]) / wall
	}
	return now
}
