package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Process handling, as in connbench (a main package cannot be imported;
// the two commands share the approach, not the code).

// proc is one child process. Its stdout and stderr go to
// <workdir>/logs/<name>.log.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string        // path of the log file
	done chan struct{} // closed when the process has exited
}

// procs tracks every child so that teardown (normal or on a signal) stops
// them all, newest first.
type procs struct {
	bin, logs string

	mu  sync.Mutex // guards all
	all []*proc
}

// start runs bin/<binary> (or an absolute path) as name with extra
// environment variables.
func (ps *procs) start(name, binary string, env []string, args ...string) (*proc, error) {
	path := binary
	if !filepath.IsAbs(path) {
		path = filepath.Join(ps.bin, binary)
	}
	lf, err := os.Create(filepath.Join(ps.logs, name+".log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(path, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = lf, lf
	p := &proc{name: name, cmd: cmd, log: lf.Name(), done: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		_ = cmd.Wait()
		lf.Close()
		close(p.done)
	}()
	ps.mu.Lock()
	ps.all = append(ps.all, p)
	ps.mu.Unlock()
	return p, nil
}

// stopAll stops every process still running, newest first.
func (ps *procs) stopAll() {
	ps.mu.Lock()
	all := append([]*proc(nil), ps.all...)
	ps.mu.Unlock()
	for i := len(all) - 1; i >= 0; i-- {
		all[i].stop(15 * time.Second)
	}
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM, then SIGKILL if the process is still there after
// grace.
func (p *proc) stop(grace time.Duration) {
	if p.exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return
	case <-time.After(grace):
	}
	_ = p.cmd.Process.Kill()
	<-p.done
}

// tail returns the last n lines of the process's log, for error messages.
func (p *proc) tail(n int) string {
	b, err := os.ReadFile(p.log)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// freeAddr returns 127.0.0.1:<a port free right now>.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func portOf(addr string) string {
	_, port, _ := net.SplitHostPort(addr)
	return port
}

// waitTCP waits until addr accepts connections.
func waitTCP(ctx context.Context, p *proc, addr string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if p.exited() {
			return fmt.Errorf("%s exited:\n%s", p.name, p.tail(20))
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if err := sleep(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
	return fmt.Errorf("%s: %s not accepting within %s:\n%s", p.name, addr, within, p.tail(20))
}

// waitReady polls an admin port's /readyz until it answers 200.
func waitReady(ctx context.Context, p *proc, adminAddr string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if p.exited() {
			return fmt.Errorf("%s exited before ready:\n%s", p.name, p.tail(20))
		}
		resp, err := http.Get("http://" + adminAddr + "/readyz")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
	return fmt.Errorf("%s not ready at %s within %s:\n%s", p.name, adminAddr, within, p.tail(20))
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// cpuSeconds is a process's user+system CPU time so far, from
// /proc/<pid>/stat ("self" for this process).
func cpuSeconds(pid string) float64 {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return 0
	}
	// Fields after the command name (which may contain spaces) start
	// after the last ')'; utime and stime are fields 14 and 15 overall.
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fields) < 13 {
		return 0
	}
	ut, _ := strconv.ParseFloat(fields[11], 64)
	st, _ := strconv.ParseFloat(fields[12], 64)
	const ticks = 100 // USER_HZ on Linux
	return (ut + st) / ticks
}

// machineBusySeconds is the CPU time all cores spent not idle (the "cpu"
// line of /proc/stat, minus idle and iowait): compared with the processes
// of the benchmark it shows how much other work shared the machine.
func machineBusySeconds() float64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	fields := strings.Fields(line)
	if len(fields) < 8 || fields[0] != "cpu" {
		return 0
	}
	var busy float64
	for i, f := range fields[1:8] { // user nice system idle iowait irq softirq
		if i == 3 || i == 4 {
			continue
		}
		v, _ := strconv.ParseFloat(f, 64)
		busy += v
	}
	return busy / 100
}
