// Package parleytest runs a whole Parley (standalone: embedded NATS, auth,
// presence, one gateway) in the test process for the client's integration
// tests, and a TCP relay that can cut every connection through it to play a
// network break, lose or delay message events, and count requests. Only
// tests import it.
package parleytest

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/parleychat/parley/libs/testenv"
	"github.com/parleychat/parley/protocol/wire"
	"github.com/parleychat/parley/standalone/server"
)

// Parley is a running in-process Parley. Its addresses and data survive
// Restart, so clients can reconnect and resume their sessions.
type Parley struct {
	t   testing.TB
	cfg server.Config

	mu     sync.Mutex // guards cancel, done and reg
	cancel context.CancelFunc
	done   chan error
	reg    *prometheus.Registry // the running server's metrics
}

// Start runs a Parley for the test; edit adjusts the configuration (nil
// keeps the test defaults). It is stopped when the test ends.
func Start(t testing.TB, edit func(*server.Config)) *Parley {
	t.Helper()
	cfg := server.DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.Gateway.TCPAddr = fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	cfg.Gateway.HTTPAddr = fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	cfg.Gateway.UDPAddr = "127.0.0.1:0" // the media port: any free one (tests run in parallel)
	// The rendezvous's STUN ports too.
	cfg.Rendezvous.STUNAddr, cfg.Rendezvous.STUNAltAddr = "127.0.0.1:0", "127.0.0.2:0"
	cfg.Gateway.GatewayID = "gw-test"
	cfg.Gateway.PresenceHeartbeat = 500 * time.Millisecond
	// Cheap password hashing and no per-IP limits: every test client
	// comes from 127.0.0.1. Per-account limits stay as deployed.
	cfg.Auth.Argon2Memory = 64
	cfg.Auth.Argon2Time = 1
	cfg.Auth.RegisterIPLimit = 0
	cfg.Auth.LoginIPLimit = 0
	// Tests send bursts of hundreds of messages from one user, as no person
	// does: messaging's per-user send rate is lifted (its own tests cover
	// it). The other per-user limits stay as deployed.
	cfg.Messaging.SendLimit = 0
	if edit != nil {
		edit(&cfg)
	}
	p := &Parley{t: t, cfg: cfg}
	p.start()
	t.Cleanup(p.Stop)
	return p
}

func logger() *slog.Logger {
	if os.Getenv("PARLEY_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func (p *Parley) start() {
	p.t.Helper()
	reg := prometheus.NewRegistry()
	s, err := server.New(p.cfg, logger(), reg)
	if err != nil {
		p.t.Fatalf("parley: %v", err)
	}
	// A restart may find the old port still held for a moment.
	deadline := time.Now().Add(10 * time.Second)
	for {
		err = s.Start()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("parley start: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
		reg = prometheus.NewRegistry()
		if s, err = server.New(p.cfg, logger(), reg); err != nil {
			p.t.Fatalf("parley: %v", err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	testenv.Eventually(p.t, 15*time.Second, "parley ready", func() bool { return s.Ready() == nil })
	p.mu.Lock()
	p.cancel, p.done, p.reg = cancel, done, reg
	p.mu.Unlock()
}

// Counter sums the running server's counter name over all its labels
// (parley_gateway_media_packets_received_total, say): what the server's
// /metrics would say. It counts from the last (re)start. A name the
// server does not export (yet: a vector with no labels used) fails the
// test.
func (p *Parley) Counter(name string) float64 {
	p.t.Helper()
	p.mu.Lock()
	reg := p.reg
	p.mu.Unlock()
	if reg == nil {
		p.t.Fatalf("parley: %s: not running", name)
	}
	mfs, err := reg.Gather()
	if err != nil {
		p.t.Fatalf("parley: gathering metrics: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		var sum float64
		for _, m := range mf.GetMetric() {
			sum += m.GetCounter().GetValue()
		}
		return sum
	}
	// A misspelt name must not read as "nothing happened".
	p.t.Fatalf("parley: no counter %s", name)
	return 0
}

// Stop shuts Parley down (the gateway tells clients SERVER_SHUTDOWN) and
// waits for it. Idempotent.
func (p *Parley) Stop() {
	p.mu.Lock()
	cancel, done := p.cancel, p.done
	p.cancel, p.done = nil, nil
	p.mu.Unlock()
	if cancel == nil {
		return
	}
	cancel()
	select {
	case err := <-done:
		if err != nil && !errors.Is(err, context.Canceled) {
			p.t.Errorf("parley run: %v", err)
		}
	case <-time.After(30 * time.Second):
		p.t.Error("parley did not stop within 30s")
	}
}

// Restart stops Parley and starts it again on the same addresses and data
// (accounts, sessions and the token key survive).
func (p *Parley) Restart() {
	p.t.Helper()
	p.Stop()
	p.start()
}

// TCPAddr is the gateway's address as a client address ("tcp://...").
func (p *Parley) TCPAddr() string { return "tcp://" + p.cfg.Gateway.TCPAddr }

// WSAddr is the gateway's WebSocket URL.
func (p *Parley) WSAddr() string { return "ws://" + p.cfg.Gateway.HTTPAddr + "/v1/ws" }

// HostPort is the gateway's TCP host:port.
func (p *Parley) HostPort() string { return p.cfg.Gateway.TCPAddr }

// Relay is a TCP relay in front of a server. Cut closes every connection
// through it while it keeps accepting new ones: from both ends it looks
// like the network broke.
type Relay struct {
	ln     net.Listener
	target string

	mu    sync.Mutex // guards conns, stalled, drop, delay, history and resumes
	conns map[net.Conn]struct{}
	// stalled: bytes from the server are thrown away instead of relayed,
	// until the next Cut (a reply lost in a network that is about to break).
	stalled bool
	// drop: the next this many message events from the server are lost;
	// delay: the next delayN are held back for delay while later frames
	// pass (an event overtaken by what follows it).
	drop, delayN int
	delay        time.Duration
	history      int      // HistoryRequests the clients sent
	resumes      []string // the tokens of the ResumeRequests clients sent
	wg           sync.WaitGroup
}

// DropMessageEvents makes the next n message events from the server vanish
// (live delivery is at most once: a lost event).
func (r *Relay) DropMessageEvents(n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.drop = n
}

// DelayMessageEvents holds the next n message events from the server back
// for d, letting the frames after them through first.
func (r *Relay) DelayMessageEvents(n int, d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.delayN, r.delay = n, d
}

// HistoryRequests counts the history reads clients sent through the relay.
func (r *Relay) HistoryRequests() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.history
}

// ResumeTokens returns the token of every resume clients sent through the
// relay, in order.
func (r *Relay) ResumeTokens() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.resumes)
}

// NewRelay relays to target (host:port) until the test ends.
func NewRelay(t testing.TB, target string) *Relay {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &Relay{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	r.wg.Add(1)
	go r.accept()
	t.Cleanup(r.close)
	return r
}

// Addr is the relay's client address ("tcp://...").
func (r *Relay) Addr() string { return "tcp://" + r.ln.Addr().String() }

// Cut closes every relayed connection (and ends a stall).
func (r *Relay) Cut() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for c := range r.conns {
		c.Close()
	}
	clear(r.conns)
	r.stalled = false
}

// StallReplies throws away whatever the server sends from now on, while
// the client's requests still reach it: the server acts, the client never
// hears. A Cut follows to play the break.
func (r *Relay) StallReplies() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stalled = true
}

func (r *Relay) isStalled() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stalled
}

// stallWriter relays to w unless the relay is stalled.
type stallWriter struct {
	r *Relay
	w io.Writer
}

func (s stallWriter) Write(b []byte) (int, error) {
	if s.r.isStalled() {
		return len(b), nil
	}
	return s.w.Write(b)
}

func (r *Relay) close() {
	r.ln.Close()
	r.Cut()
	r.wg.Wait()
}

func (r *Relay) track(cs ...net.Conn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range cs {
		r.conns[c] = struct{}{}
	}
}

// accept ends when the listener closes; each pair's copiers end when
// either side closes.
func (r *Relay) accept() {
	defer r.wg.Done()
	for {
		in, err := r.ln.Accept()
		if err != nil {
			return
		}
		out, err := net.Dial("tcp", r.target)
		if err != nil {
			in.Close()
			continue
		}
		r.track(in, out)
		r.wg.Add(2)
		go r.frames(out, in, func(f []byte) bool {
			r.count(f)
			return true
		}, in, out)
		var wmu sync.Mutex // delayed frames are written from timers
		toClient := stallWriter{r, in}
		go r.frames(&lockedWriter{mu: &wmu, w: toClient}, out, func(f []byte) bool {
			return r.passEvent(f, &wmu, toClient)
		}, in, out)
	}
}

// frames copies length-prefixed frames from src to dst, each whole frame
// only if pass says so, until either side closes.
func (r *Relay) frames(dst io.Writer, src net.Conn, pass func(frame []byte) bool, both ...net.Conn) {
	defer r.wg.Done()
	defer func() {
		for _, c := range both {
			c.Close()
		}
	}()
	br := bufio.NewReader(src)
	for {
		var hdr [4]byte
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			return
		}
		f := make([]byte, 4+binary.BigEndian.Uint32(hdr[:]))
		copy(f, hdr[:])
		if _, err := io.ReadFull(br, f[4:]); err != nil {
			return
		}
		if pass(f) {
			if _, err := dst.Write(f); err != nil {
				return
			}
		}
	}
}

// passEvent decides a frame from the server: message events may be dropped
// or delayed (then written later, under wmu, by a timer).
func (r *Relay) passEvent(f []byte, wmu *sync.Mutex, w io.Writer) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.drop == 0 && r.delayN == 0 {
		return true
	}
	if fr, err := wire.Decode(f[4:]); err != nil || fr.GetMessage() == nil {
		return true
	}
	if r.drop > 0 {
		r.drop--
		return false
	}
	r.delayN--
	time.AfterFunc(r.delay, func() {
		wmu.Lock()
		defer wmu.Unlock()
		_, _ = w.Write(f)
	})
	return false
}

// count notes a client's history reads and resumes.
func (r *Relay) count(f []byte) {
	fr, err := wire.Decode(f[4:])
	if err != nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case fr.GetHistory() != nil:
		r.history++
	case fr.GetResume() != nil:
		r.resumes = append(r.resumes, fr.GetResume().GetToken())
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

// HTTPBase is the gateway's HTTP base URL (file transfers).
func (p *Parley) HTTPBase() string { return "http://" + p.cfg.Gateway.HTTPAddr }
