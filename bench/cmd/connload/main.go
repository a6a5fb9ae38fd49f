// Command connload opens many authenticated, idle Parley connections to one
// gateway and holds them until it is told to stop (SIGTERM or stdin closed).
// It speaks the wire protocol directly (docs/protocol.md) so a load
// generator process costs little per connection; one process must stay under
// the machine's open-file limit, so the bench orchestrator (scripts/bench.sh,
// bench/cmd/connbench) runs several.
//
// Every connection: TCP (or TLS, or WebSocket) from one of the given source
// addresses, Hello, ResumeRequest with one of the given tokens and
// skip_presence_feed, then it only answers pings. It prints one line
// "connected N failed M" when all attempts are done, then "closed" at exit.
//
// With -reconnect, a connection that breaks is redialled the way the Go SDK
// does it (parley.Backoff: exponential backoff with full jitter, a refusal's
// retry_after_ms as a floor; docs/protocol.md §12), each attempt to the
// next of the -addr list in turn, and resumed with the token the last
// Session reply carried. It then prints a line per event, for the
// reconnect-storm benchmark:
//
//	lost <unix ns> <code>              the connection broke (code: the fatal Error's, or "-")
//	reconnected <unix ns> <attempts>   resumed again
//	refused <code>                     an attempt was answered with an Error
//	failed                             an attempt failed otherwise (dial, TLS, timeout, closed)
package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coder/websocket"

	"github.com/parleychat/parley/clients/parley"
	"github.com/parleychat/parley/protocol/parleyv1"
	"github.com/parleychat/parley/protocol/wire"
)

func main() {
	var (
		target   = flag.String("addr", "127.0.0.1:7420", "gateway address (host:port, or ws://host:port/v1/ws); with -reconnect a comma-separated list: connections start on the first, reconnects go to the next in turn")
		reconn   = flag.Bool("reconnect", false, "redial broken connections with the SDK's backoff and resume them")
		boBase   = flag.Duration("backoff-base", parley.DefaultBackoffMin, "with -reconnect: the first attempt's backoff ceiling")
		boMax    = flag.Duration("backoff-max", parley.DefaultBackoffMax, "with -reconnect: the largest backoff ceiling")
		useTLS   = flag.Bool("tls", false, "dial TLS (certificate not verified: benchmark only)")
		n        = flag.Int("n", 1000, "connections to open")
		sources  = flag.String("sources", "127.0.0.1", "comma-separated local source IPs to spread connections over")
		tokens   = flag.String("tokens", "", "file with one session token per line")
		tokOut   = flag.String("tokens-out", "", "once every connection is set up, write here the newest token of each (line i for connection i; the given one where it failed): a resume rotates the token, so a later run resumes with these")
		parallel = flag.Int("parallel", 64, "connections being set up at once")
	)
	flag.Parse()
	toks, err := readLines(*tokens)
	if err != nil || len(toks) == 0 {
		fmt.Fprintln(os.Stderr, "connload: need -tokens file with at least one token:", err)
		os.Exit(2)
	}
	srcs := strings.Split(*sources, ",")
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	go func() { // stdin closing (the orchestrator exiting) also stops us
		_, _ = bufio.NewReader(os.Stdin).ReadString(0)
		stop()
	}()

	var (
		ok, failed atomic.Int64
		conns      sync.Map
		wg         sync.WaitGroup
		sem        = make(chan struct{}, *parallel)
		firstErr   atomic.Value
	)
	addrs := strings.Split(*target, ",")
	for i := 0; i < *n; i++ {
		sem <- struct{}{}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			m := &member{addrs: addrs, tls: *useTLS, source: srcs[i%len(srcs)], token: toks[i%len(toks)]}
			c, err := m.open(ctx, addrs[0])
			<-sem
			if err != nil {
				failed.Add(1)
				firstErr.CompareAndSwap(nil, err.Error())
				return
			}
			ok.Add(1)
			conns.Store(i, c)
			if !*reconn {
				go c.serve()
				return
			}
			go m.keep(ctx, c, parley.Backoff{Base: *boBase, Max: *boMax}, func(c *client) { conns.Store(i, c) })
		}(i)
	}
	wg.Wait()
	if *tokOut != "" {
		newest := make([]string, *n)
		for i := range newest {
			newest[i] = toks[i%len(toks)]
			if v, ok := conns.Load(i); ok && v.(*client).token != "" {
				newest[i] = v.(*client).token
			}
		}
		if err := os.WriteFile(*tokOut, []byte(strings.Join(newest, "\n")+"\n"), 0o600); err != nil {
			fmt.Fprintln(os.Stderr, "connload: -tokens-out:", err)
		}
	}
	fmt.Printf("connected %d failed %d\n", ok.Load(), failed.Load())
	if e := firstErr.Load(); e != nil {
		fmt.Fprintln(os.Stderr, "first error:", e)
	}
	<-ctx.Done()
	conns.Range(func(_, v any) bool { v.(*client).close(); return true })
	fmt.Println("closed")
}

type client struct {
	stream net.Conn        // TCP or TLS
	ws     *websocket.Conn // or WebSocket
	mu     sync.Mutex      // guards writes
	token  string          // the Session reply's
}

// member is one simulated client: where it connects from and to, and the
// token it resumes with.
type member struct {
	addrs  []string
	next   int // index in addrs of the last attempt
	tls    bool
	source string
	token  string // the newest the server gave
}

// refusal is an attempt answered with an Error frame.
type refusal struct {
	code       parleyv1.ErrorCode
	retryAfter time.Duration
	msg        string
}

func (r *refusal) Error() string { return fmt.Sprintf("%s: %s", r.code, r.msg) }

// emit prints one event line; a pipe write this short is atomic.
func emit(format string, args ...any) { fmt.Printf(format+"\n", args...) }

// keep serves c and, each time it breaks, reconnects with backoff (as the
// SDK's Client.reconnect does) until ctx ends. set records the live client.
func (m *member) keep(ctx context.Context, c *client, bo parley.Backoff, set func(*client)) {
	for {
		code := c.serve()
		c.close()
		if ctx.Err() != nil {
			return
		}
		emit("lost %d %s", time.Now().UnixNano(), code)
		var retryAfter time.Duration
		for attempt := 1; ; attempt++ {
			t := time.NewTimer(bo.Delay(attempt, retryAfter))
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			m.next = (m.next + 1) % len(m.addrs)
			nc, err := m.open(ctx, m.addrs[m.next])
			if err == nil {
				emit("reconnected %d %d", time.Now().UnixNano(), attempt)
				c = nc
				set(c)
				break
			}
			if ctx.Err() != nil {
				return
			}
			retryAfter = 0
			var r *refusal
			if errors.As(err, &r) {
				retryAfter = r.retryAfter
				emit("refused %s", r.code)
			} else {
				emit("failed")
			}
		}
	}
}

// open connects to target, says Hello and resumes the member's session.
func (m *member) open(ctx context.Context, target string) (*client, error) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second) // the SDK's handshake bound
	defer cancel()
	c, err := open(ctx, target, m.tls, m.source, m.token)
	if err != nil {
		return nil, err
	}
	if c.token != "" {
		m.token = c.token
	}
	return c, nil
}

func open(ctx context.Context, target string, useTLS bool, source, token string) (*client, error) {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(source)}, Timeout: 10 * time.Second}
	c := &client{}
	if strings.HasPrefix(target, "ws://") || strings.HasPrefix(target, "wss://") {
		tr := &http.Transport{DialContext: d.DialContext, TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
		ws, _, err := websocket.Dial(ctx, target, &websocket.DialOptions{HTTPClient: &http.Client{Transport: tr}})
		if err != nil {
			return nil, err
		}
		ws.SetReadLimit(wire.DefaultMaxFrameSize)
		c.ws = ws
	} else {
		nc, err := d.DialContext(ctx, "tcp", target)
		if err != nil {
			return nil, err
		}
		if useTLS {
			tc := tls.Client(nc, &tls.Config{InsecureSkipVerify: true})
			if err := tc.HandshakeContext(ctx); err != nil {
				nc.Close()
				return nil, err
			}
			nc = tc
		}
		c.stream = nc
	}
	if err := c.send(&parleyv1.Frame{RequestId: 1, Body: &parleyv1.Frame_Hello{Hello: &parleyv1.Hello{Versions: []uint32{wire.Version}, Client: "connload"}}}); err != nil {
		c.close()
		return nil, err
	}
	if dl, ok := ctx.Deadline(); ok && c.stream != nil {
		_ = c.stream.SetDeadline(dl)
	}
	if f, err := c.recv(); err != nil || f.GetWelcome() == nil {
		c.close()
		if e := f.GetError(); e != nil {
			return nil, &refusal{code: e.GetCode(), retryAfter: time.Duration(e.GetRetryAfterMs()) * time.Millisecond, msg: e.GetMessage()}
		}
		return nil, fmt.Errorf("handshake: %v %v", f, err)
	}
	if err := c.send(&parleyv1.Frame{RequestId: 2, Body: &parleyv1.Frame_Resume{Resume: &parleyv1.ResumeRequest{
		Token: token, Options: &parleyv1.ClientOptions{Device: "connload", SkipPresenceFeed: true}}}}); err != nil {
		c.close()
		return nil, err
	}
	for {
		f, err := c.recv()
		if err != nil {
			c.close()
			return nil, err
		}
		if f.GetRequestId() != 2 {
			continue
		}
		if e := f.GetError(); e != nil {
			c.close()
			return nil, &refusal{code: e.GetCode(), retryAfter: time.Duration(e.GetRetryAfterMs()) * time.Millisecond, msg: "resume: " + e.GetMessage()}
		}
		c.token = f.GetSession().GetToken()
		if c.stream != nil {
			_ = c.stream.SetDeadline(time.Time{})
		}
		return c, nil
	}
}

func (c *client) send(f *parleyv1.Frame) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ws != nil {
		b, err := wire.Marshal(f)
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return c.ws.Write(ctx, websocket.MessageBinary, b)
	}
	return wire.WriteFrame(c.stream, f)
}

func (c *client) recv() (*parleyv1.Frame, error) {
	if c.ws != nil {
		_, b, err := c.ws.Read(context.Background())
		if err != nil {
			return nil, err
		}
		return wire.Decode(b)
	}
	return wire.NewReader(c.stream, wire.DefaultMaxFrameSize).ReadFrame()
}

// serve answers pings and keeps the connection alive with its own ping
// every 25s (below the gateway's default 30s heartbeat interval), until the
// connection breaks; it returns the fatal Error's code that ended it, if
// any ("-" otherwise).
func (c *client) serve() string {
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(25 * time.Second)
		defer t.Stop()
		var nonce uint64
		for {
			select {
			case <-done:
				return
			case <-t.C:
				nonce++
				if c.send(&parleyv1.Frame{RequestId: uint32(nonce%1000 + 10), Body: &parleyv1.Frame_Ping{Ping: &parleyv1.Ping{Nonce: nonce}}}) != nil {
					return
				}
			}
		}
	}()
	defer close(done)
	code := "-"
	for {
		f, err := c.recv()
		if err != nil {
			return code
		}
		if e := f.GetError(); e != nil && e.GetFatal() {
			code = e.GetCode().String()
		}
		if p := f.GetPing(); p != nil {
			_ = c.send(&parleyv1.Frame{RequestId: f.GetRequestId(), Body: &parleyv1.Frame_Pong{Pong: &parleyv1.Pong{Nonce: p.GetNonce()}}})
		}
	}
}

func (c *client) close() {
	if c.ws != nil {
		_ = c.ws.CloseNow()
		return
	}
	_ = c.stream.Close()
}

func readLines(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out, nil
}
