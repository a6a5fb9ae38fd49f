// Package child starts and stops the benchmarks' child processes (Parley's
// binaries, nats-server, redis-server, load generators) and reads their
// resource use from /proc. connbench and msgbench share it.
package child

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
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

// Proc is one child process (a Parley binary, nats-server, redis-server or
// connload). Its stdout and stderr go to <workdir>/logs/<name>.log unless
// the caller takes stdout.
type Proc struct {
	Name string
	Cmd  *exec.Cmd
	Log  string        // path of the log file
	done chan struct{} // closed when the process has exited
}

// Set tracks every child so that teardown (normal or on a signal) stops
// them all, newest first.
type Set struct {
	Bin, Logs string   // where binaries are found, where logs go
	Env       []string // added to every child's environment (before its own)

	mu  sync.Mutex // guards all
	all []*Proc
}

// start runs bin/<binary> (or an absolute path) as name with extra
// environment variables.
func (ps *Set) Start(name, binary string, env []string, args ...string) (*Proc, error) {
	p, err := ps.Prepare(name, binary, env, args...)
	if err != nil {
		return nil, err
	}
	return p, ps.Launch(p)
}

// prepare builds the command without starting it, so the caller can attach
// pipes; launch starts it.
func (ps *Set) Prepare(name, binary string, env []string, args ...string) (*Proc, error) {
	path := binary
	if !filepath.IsAbs(path) {
		path = filepath.Join(ps.Bin, binary)
	}
	lf, err := os.Create(filepath.Join(ps.Logs, name+".log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(path, args...)
	cmd.Env = append(append(os.Environ(), ps.Env...), env...)
	cmd.Stdout, cmd.Stderr = lf, lf
	return &Proc{Name: name, Cmd: cmd, Log: lf.Name(), done: make(chan struct{})}, nil
}

func (ps *Set) Launch(p *Proc) error {
	if err := p.Cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", p.Name, err)
	}
	go func() {
		_ = p.Cmd.Wait()
		if f, ok := p.Cmd.Stderr.(*os.File); ok {
			f.Close()
		}
		close(p.done)
	}()
	ps.mu.Lock()
	ps.all = append(ps.all, p)
	ps.mu.Unlock()
	return nil
}

// stopAll stops every process still running, newest first.
func (ps *Set) StopAll() {
	ps.mu.Lock()
	all := append([]*Proc(nil), ps.all...)
	ps.mu.Unlock()
	for i := len(all) - 1; i >= 0; i-- {
		all[i].Stop(15 * time.Second)
	}
}

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

func (p *Proc) PID() int { return p.Cmd.Process.Pid }

func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM, then SIGKILL if the process is still there after
// grace. It reports whether the process exited on SIGTERM.
func (p *Proc) Stop(grace time.Duration) bool {
	if p.Exited() {
		return true
	}
	_ = p.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return true
	case <-time.After(grace):
	}
	_ = p.Cmd.Process.Kill()
	<-p.done
	return false
}

// tail returns the last n lines of the process's log, for error messages.
func (p *Proc) Tail(n int) string {
	b, err := os.ReadFile(p.Log)
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
func FreeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func PortOf(addr string) string {
	_, port, _ := net.SplitHostPort(addr)
	return port
}

// waitTCP waits until addr accepts connections.
func WaitTCP(ctx context.Context, p *Proc, addr string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if p.Exited() {
			return fmt.Errorf("%s exited:\n%s", p.Name, p.Tail(20))
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if err := Sleep(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
	return fmt.Errorf("%s: %s not accepting within %s:\n%s", p.Name, addr, within, p.Tail(20))
}

// waitReady polls an admin port's /readyz until it answers 200.
func WaitReady(ctx context.Context, p *Proc, adminAddr string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if p.Exited() {
			return fmt.Errorf("%s exited before ready:\n%s", p.Name, p.Tail(20))
		}
		resp, err := http.Get("http://" + adminAddr + "/readyz")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if err := Sleep(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
	return fmt.Errorf("%s not ready at %s within %s:\n%s", p.Name, adminAddr, within, p.Tail(20))
}

func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// rssBytes is the process's resident set size (VmRSS).
func RSSBytes(pid int) int64 {
	return StatusField(pid, "VmRSS:")
}

func StatusField(pid int, field string) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), field); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10
		}
	}
	return -1
}

// CPUSeconds is the user+system CPU time so far of process pid (a number, or "self").
func CPUSeconds(pid string) float64 {
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

// MachineBusySeconds is the CPU time all cores spent not idle (the "cpu"
// line of /proc/stat, minus idle and iowait): compared with the processes
// of the benchmark it shows how much other work shared the machine.
func MachineBusySeconds() float64 {
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

// StartNATS starts nats-server with JetStream (data under dir) on a free
// port of 127.0.0.1, with extra arguments (e.g. "-c", conf), and waits
// until it accepts connections. It returns the process and its URL.
func (ps *Set) StartNATS(ctx context.Context, dir string, extra ...string) (*Proc, string, error) {
	addr, err := FreeAddr()
	if err != nil {
		return nil, "", err
	}
	args := append([]string{"-a", "127.0.0.1", "-p", PortOf(addr), "-js", "-sd", dir}, extra...)
	p, err := ps.Start("nats-server", "nats-server", nil, args...)
	if err != nil {
		return nil, "", err
	}
	if err := WaitTCP(ctx, p, addr, 20*time.Second); err != nil {
		return nil, "", err
	}
	return p, "nats://" + addr, nil
}

// StartRedis starts redis-server (bin: a path, or a name looked up in
// PATH) without persistence on a free port of 127.0.0.1 and waits until
// it accepts connections. It returns the process and its address.
func (ps *Set) StartRedis(ctx context.Context, bin string) (*Proc, string, error) {
	addr, err := FreeAddr()
	if err != nil {
		return nil, "", err
	}
	path, err := exec.LookPath(bin)
	if err != nil {
		return nil, "", err
	}
	if path, err = filepath.Abs(path); err != nil {
		return nil, "", err
	}
	p, err := ps.Start("redis-server", path, nil,
		"--port", PortOf(addr), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--daemonize", "no")
	if err != nil {
		return nil, "", err
	}
	if err := WaitTCP(ctx, p, addr, 20*time.Second); err != nil {
		return nil, "", err
	}
	return p, addr, nil
}

// NewWorkSet makes a temporary work directory (prefix, as os.MkdirTemp)
// with a logs folder, and a Set whose processes log there. done stops
// every process and, unless keep, removes the directory.
func NewWorkSet(prefix, bin string, keep bool, logf func(string, ...any)) (ps *Set, dir string, done func(), err error) {
	dir, err = os.MkdirTemp("", prefix)
	if err != nil {
		return nil, "", nil, err
	}
	if keep {
		logf("work directory (kept): %s", dir)
	}
	logs := filepath.Join(dir, "logs")
	if err := os.MkdirAll(logs, 0o755); err != nil {
		os.RemoveAll(dir)
		return nil, "", nil, err
	}
	ps = &Set{Bin: bin, Logs: logs}
	return ps, dir, func() {
		logf("stopping all processes")
		ps.StopAll()
		if !keep {
			os.RemoveAll(dir)
		}
	}, nil
}

// WriteReport writes a report with write to stdout and, when path is not
// empty, to that file too (its directory made as needed).
func WriteReport(path string, write func(io.Writer)) error {
	var w io.Writer = os.Stdout
	if path != "" {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		f, err := os.Create(path)
		if err != nil {
			return err
		}
		defer f.Close()
		w = io.MultiWriter(os.Stdout, f)
	}
	write(w)
	return nil
}

// SelfSignedCert writes a self-signed ECDSA P-256 certificate for
// 127.0.0.1 and localhost, and its key, into dir (cert.pem, key.pem), for
// gateways serving TLS to the benchmarks' own clients.
func SelfSignedCert(dir string) (certFile, keyFile string, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "parley-bench"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return "", "", err
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return "", "", err
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		return "", "", err
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		return "", "", err
	}
	return certFile, keyFile, nil
}
