package main

import (
	"context"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/parleychat/parley/bench/internal/child"
)

// cpuShare is CPU used per wall-clock second (1.0 = one core busy).
type cpuShare struct {
	name  string
	cores float64
}

// cpuMeter measures, between its start and end, the CPU of each server
// process, of this process (client side of every transfer) and of the
// whole machine (/proc/stat: what other jobs on the host used shows).
type cpuMeter struct {
	procs []*child.Proc
	t0    time.Time
	start []float64 // per proc, then self, then machine
}

func newCPUMeter(procs []*child.Proc) *cpuMeter {
	m := &cpuMeter{procs: procs, t0: time.Now()}
	for _, p := range procs {
		m.start = append(m.start, child.CPUSeconds(strconv.Itoa(p.PID())))
	}
	m.start = append(m.start, child.CPUSeconds("self"), child.MachineBusySeconds())
	return m
}

// end returns each process's share, then "filebench", then "machine".
func (m *cpuMeter) end() []cpuShare {
	wall := time.Since(m.t0).Seconds()
	var out []cpuShare
	for i, p := range m.procs {
		out = append(out, cpuShare{p.Name, (child.CPUSeconds(strconv.Itoa(p.PID())) - m.start[i]) / wall})
	}
	n := len(m.procs)
	return append(out, cpuShare{"filebench", (child.CPUSeconds("self") - m.start[n]) / wall},
		cpuShare{"machine", (child.MachineBusySeconds() - m.start[n+1]) / wall})
}

// memUse is one process's memory during a transfer.
type memUse struct {
	name           string
	before         int64 // VmRSS when sampling began
	peak           int64 // highest VmRSS sampled
	hwmBefore, hwm int64 // VmHWM (the kernel's peak RSS since the process started) at start and end
	samples        int
}

// memSampler reads VmRSS of some processes every interval until stop.
type memSampler struct {
	procs []*child.Proc
	stopc chan struct{}
	wg    sync.WaitGroup

	mu  sync.Mutex // guards use
	use []memUse
}

func sampleMemory(procs []*child.Proc, every time.Duration) *memSampler {
	s := &memSampler{procs: procs, stopc: make(chan struct{})}
	for _, p := range procs {
		rss := child.RSSBytes(p.PID())
		s.use = append(s.use, memUse{name: p.Name, before: rss, peak: rss,
			hwmBefore: child.StatusField(p.PID(), "VmHWM:")})
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-s.stopc:
				return
			case <-t.C:
				s.sample()
			}
		}
	}()
	return s
}

func (s *memSampler) sample() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, p := range s.procs {
		if rss := child.RSSBytes(p.PID()); rss > 0 {
			s.use[i].peak = max(s.use[i].peak, rss)
			s.use[i].samples++
		}
	}
}

// stop ends sampling and returns what was seen.
func (s *memSampler) stop() []memUse {
	close(s.stopc)
	s.wg.Wait()
	s.sample()
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, p := range s.procs {
		s.use[i].hwm = child.StatusField(p.PID(), "VmHWM:")
	}
	return append([]memUse(nil), s.use...)
}

// settle waits (at most within) until MinIO is idle and the kernel has
// written back the dirty page cache, so that one transfer does not pay for
// the last one's leftovers: MinIO removes deleted objects in the
// background, and 5 GiB of written data takes a while to reach the disk.
// It returns how long it waited.
func settle(ctx context.Context, minio *child.Proc, within time.Duration) time.Duration {
	const (
		idleCores = 0.05
		maxDirty  = 256 << 20
		step      = 500 * time.Millisecond
	)
	t0 := time.Now()
	pid := strconv.Itoa(minio.PID())
	for time.Since(t0) < within {
		c0 := child.CPUSeconds(pid)
		if child.Sleep(ctx, step) != nil {
			break
		}
		if (child.CPUSeconds(pid)-c0)/step.Seconds() < idleCores && dirtyBytes() < maxDirty {
			break
		}
	}
	return time.Since(t0)
}

// dirtyBytes is the machine's page cache waiting to be written (Dirty +
// Writeback in /proc/meminfo).
func dirtyBytes() int64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	var n int64
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && (f[0] == "Dirty:" || f[0] == "Writeback:") {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			n += kb << 10
		}
	}
	return n
}
