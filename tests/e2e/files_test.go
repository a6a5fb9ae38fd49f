package e2e

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/parleychat/parley/clients/parley"
)

// File transfers through the real binaries: the parley CLI and the Go SDK
// talk to a gateway process, which streams upload bodies into a real MinIO
// server under uploads the file service process issues (docs/protocol.md
// §18, docs/architecture.md "Files").

// partSize is the stored part size the file service announces for files up
// to 40 GiB: an interrupted upload may have to send at most this again.
const partSize = 8 << 20

// writeRandomFile writes size bytes of a deterministic pseudo-random stream
// (ChaCha8 seeded by seed) to dir/name, a buffer at a time, and returns the
// path and the hex SHA-256 of what it wrote.
func writeRandomFile(t *testing.T, dir, name string, size int64, seed uint64) (string, string) {
	t.Helper()
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], seed)
	path := filepath.Join(dir, name)
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	w := bufio.NewWriterSize(io.MultiWriter(f, h), 1<<20)
	if _, err := io.CopyN(w, rand.NewChaCha8(key), size); err != nil {
		t.Fatalf("writing %s: %v", path, err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path, hex.EncodeToString(h.Sum(nil))
}

// sha256File is the hex SHA-256 of a file's contents.
func sha256File(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sum, err := parley.FileSHA256(f)
	if err != nil {
		t.Fatalf("reading %s: %v", path, err)
	}
	return sum
}

// cliUser is one user of the `parley` binary with its own config dir (its
// stored session), talking to one gateway: frames on its TCP port, files
// on its HTTP port (--http).
type cliUser struct {
	name string
	cfg  string
	gw   *gatewayProc
	http string // --http: gw's HTTP port, or a countingProxy in front of it
}

// newCLIUser registers a fresh user with `parley register` on gw.
func newCLIUser(t *testing.T, gw *gatewayProc, stem string) *cliUser {
	t.Helper()
	u := &cliUser{name: uniq(stem), cfg: t.TempDir(), gw: gw, http: gw.httpBase()}
	if r := u.run(t, 30*time.Second, "register", "--user", u.name, "--password-stdin"); r.err != nil {
		t.Fatalf("parley register %s: %v\n%s%s", u.name, r.err, r.stdout, r.stderr)
	}
	return u
}

func (u *cliUser) args(args []string) []string {
	return append([]string{"--server", "tcp://" + u.gw.tcp, "--http", u.http, "--config-dir", u.cfg}, args...)
}

type cliRun struct {
	stdout, stderr string
	err            error
}

// run runs `parley args...` to the end (the password on stdin, for the
// commands that ask), failing the test if it takes longer than within.
func (u *cliUser) run(t *testing.T, within time.Duration, args ...string) cliRun {
	t.Helper()
	cmd := exec.Command(filepath.Join(bins, "parley"), u.args(args)...)
	cmd.Stdin = strings.NewReader(pw + "\n")
	cmd.Env = append(cmd.Environ(), "PARLEY_PASSWORD=")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return cliRun{stdout: stdout.String(), stderr: stderr.String(), err: err}
	case <-time.After(within):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("parley %v did not finish within %s\nstdout: %s\nstderr: %s", args, within, stdout.String(), stderr.String())
		return cliRun{}
	}
}

// ok runs a command that must succeed and returns its stdout.
func (u *cliUser) ok(t *testing.T, within time.Duration, args ...string) string {
	t.Helper()
	r := u.run(t, within, args...)
	if r.err != nil {
		t.Fatalf("parley %v (as %s): %v\nstdout: %s\nstderr: %s", args, u.name, r.err, r.stdout, r.stderr)
	}
	return r.stdout
}

// startBG starts `parley args...` in the background (for uploads the test
// interrupts); it is killed at the end of the test.
func (u *cliUser) startBG(t *testing.T, args ...string) *proc {
	t.Helper()
	return start(t, "parley", []string{"PARLEY_PASSWORD="}, u.args(args)...)
}

// sdk logs the user in with the Go SDK on the same gateway: another device.
func (u *cliUser) sdk(t *testing.T) *parley.Client {
	t.Helper()
	c := dial(t, "tcp://"+u.gw.tcp, parley.WithHTTPBase(u.gw.httpBase()))
	if _, err := c.Login(ctxS(t), u.name, pw); err != nil {
		t.Fatalf("login %s: %v", u.name, err)
	}
	return c
}

// exitErr waits for a background process and returns its exit error.
func (p *proc) exitErr(t *testing.T, within time.Duration) error {
	t.Helper()
	select {
	case <-p.done:
		if code := p.cmd.ProcessState.ExitCode(); code != 0 {
			return fmt.Errorf("%s exited with %d", p.name, code)
		}
		return nil
	case <-time.After(within):
		t.Fatalf("%s still running after %s; output:\n%s", p.name, within, p.out.String())
		return nil
	}
}

func (p *proc) running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// written is how many bytes the process has passed to write(2) and
// friends so far (/proc/PID/io wchar): for `parley file send`, the upload
// body plus a few KiB of frames and HTTP headers.
func (p *proc) written(t *testing.T) uint64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", p.cmd.Process.Pid))
	if err != nil {
		t.Fatalf("reading %s's I/O counters: %v", p.name, err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "wchar: "); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			if err != nil {
				t.Fatalf("wchar %q: %v", v, err)
			}
			return n
		}
	}
	t.Fatalf("no wchar in /proc/%d/io:\n%s", p.cmd.Process.Pid, b)
	return 0
}

// countingProxy is a TCP proxy in front of a gateway's HTTP port that
// counts the bytes clients send through it (HTTP requests: upload bodies
// and a few hundred bytes of headers each), to measure how much of a file
// a client sent more than once. A connection's bytes are counted when it
// ends.
type countingProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	up     int64 // client -> gateway bytes of ended connections
	active int
}

// proxyBuffer is the socket buffer size of the proxy's two sides.
const proxyBuffer = 128 << 10

func newCountingProxy(t *testing.T, target string) *countingProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &countingProxy{ln: ln, target: target}
	go p.serve()
	t.Cleanup(func() { ln.Close() })
	return p
}

func (p *countingProxy) url() string { return "http://" + p.ln.Addr().String() }

func (p *countingProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		p.active++
		p.mu.Unlock()
		go p.relay(c)
	}
}

// relay copies both ways until the client or the gateway goes away, then
// closes both (a dead gateway looks dead to the client too).
func (p *countingProxy) relay(c net.Conn) {
	var n int64
	defer func() {
		p.mu.Lock()
		p.up += n
		p.active--
		p.mu.Unlock()
	}()
	defer c.Close()
	g, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	defer g.Close()
	// Small buffers of its own, so the proxy holds next to nothing in
	// flight: what a dead gateway loses is what it would lose without it.
	_ = c.(*net.TCPConn).SetReadBuffer(proxyBuffer)
	_ = g.(*net.TCPConn).SetWriteBuffer(proxyBuffer)
	back := make(chan struct{})
	go func() {
		_, _ = io.Copy(c, g)
		c.Close()
		close(back)
	}()
	n, _ = io.Copy(g, c)
	g.Close()
	<-back
}

// sent waits until no connection is open (the client exited) and returns
// the bytes clients sent through the proxy so far.
func (p *countingProxy) sent(t *testing.T) int64 {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		p.mu.Lock()
		up, active := p.up, p.active
		p.mu.Unlock()
		if active == 0 {
			return up
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d connections through the proxy still open after 30s", active)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// uploadOffset asks the gateway for an upload's offset (tus HEAD) as the
// sender with session token tok; ok is false while the gateway or the file
// service cannot answer (a restart).
func uploadOffset(t *testing.T, gw *gatewayProc, fileID, tok string) (off uint64, ok bool) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctxS(t), http.MethodHead, gw.httpBase()+"/v1/files/"+fileID, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Tus-Resumable", "1.0.0")
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, false
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, false
	}
	off, err = strconv.ParseUint(resp.Header.Get("Upload-Offset"), 10, 64)
	if err != nil {
		t.Fatalf("HEAD Upload-Offset %q: %v", resp.Header.Get("Upload-Offset"), err)
	}
	return off, true
}

// waitOffset polls the upload's offset until cond holds for it.
func waitOffset(t *testing.T, gw *gatewayProc, fileID, tok string, within time.Duration, what string, cond func(uint64) bool) uint64 {
	t.Helper()
	deadline := time.Now().Add(within)
	var last uint64
	for {
		if off, ok := uploadOffset(t, gw, fileID, tok); ok {
			last = off
			if cond(off) {
				return off
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("upload %s: %s not reached within %s (offset %d)", fileID, what, within, last)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// settledOffset waits until the upload's offset stops moving (the same for
// 300 ms): the gateway has stored what it had of a cut-off request.
func settledOffset(t *testing.T, gw *gatewayProc, fileID, tok string) uint64 {
	t.Helper()
	var prev uint64
	same := 0
	return waitOffset(t, gw, fileID, tok, 30*time.Second, "a settled offset", func(off uint64) bool {
		if off == prev {
			same++
		} else {
			prev, same = off, 0
		}
		return same >= 15
	})
}

// pendingOffer waits until c (the recipient) lists an unanswered offer
// named name and returns it.
func pendingOffer(t *testing.T, c *parley.Client, name string) *parley.FileInfo {
	t.Helper()
	// The CLI hashes the whole file before it offers it.
	deadline := time.Now().Add(60 * time.Second)
	for {
		files, err := c.Files(ctxS(t), "")
		if err != nil {
			t.Fatalf("listing pending offers: %v", err)
		}
		for _, f := range files {
			if f.Name == name {
				return f
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no offer of %s among the pending offers %v", name, files)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestFileLargeTransfer: alice sends bob a file of 1 GiB and a few bytes
// (not a whole number of parts) with `parley file send` through a gateway
// process into MinIO; while it uploads, alice (another device, same
// gateway) and bob chat, and every message arrives, in order. bob accepts
// and downloads it with `parley file get`; it is the same file.
func TestFileLargeTransfer(t *testing.T) {
	c := newCluster(t, 1, clusterOpts{files: true})
	gw := c.gateways[0]
	alice, bob := newCLIUser(t, gw, "alice"), newCLIUser(t, gw, "bob")

	const size = 1<<30 + 12345
	src, sum := writeRandomFile(t, t.TempDir(), "big.bin", size, 1)

	aliceSDK, bobSDK := alice.sdk(t), bob.sdk(t)
	aliceMsgs, bobMsgs := chatFeed(t, aliceSDK, bob.name), chatFeed(t, bobSDK, alice.name)

	began := time.Now()
	send := alice.startBG(t, "file", "send", "--progress", "@"+bob.name, src)
	offer := pendingOffer(t, bobSDK, "big.bin")
	if offer.Size != size || offer.SHA256 != sum || offer.SenderName != alice.name {
		t.Fatalf("bob sees the offer %v; want %d bytes, sha256 %s, from %s", offer, size, sum, alice.name)
	}
	// Chat from the moment the upload's first bytes are stored until it
	// ends.
	waitOffset(t, gw, offer.ID, aliceSDK.Session().Token, 60*time.Second, "the first stored part", func(o uint64) bool { return o > 0 })
	lat := chatWhile(t, aliceSDK, bobSDK, aliceMsgs, bobMsgs, send.running)
	if err := send.exitErr(t, 5*time.Minute); err != nil {
		t.Fatalf("parley file send: %v\n%s", err, send.out.String())
	}
	upload := time.Since(began)
	if !strings.Contains(send.out.String(), offer.ID+"\n") {
		t.Fatalf("parley file send did not print the file id %s:\n%s", offer.ID, send.out.String())
	}
	if n := len(lat); n < 20 {
		t.Fatalf("only %d chat messages went both ways while 1 GiB uploaded: the upload starves chat", n)
	}
	p50, p99 := percentile(lat, 50), percentile(lat, 99)
	t.Logf("chat during the 1 GiB upload: %d messages, send to arrival p50 %s, p99 %s, max %s",
		len(lat), p50.Round(10*time.Microsecond), p99.Round(10*time.Microsecond), slices.Max(lat).Round(10*time.Microsecond))

	if out := bob.ok(t, 30*time.Second, "file", "accept", offer.ID); out != "accepted "+offer.ID+"\n" {
		t.Fatalf("parley file accept printed %q", out)
	}
	dir := t.TempDir()
	began = time.Now()
	got := strings.TrimSpace(bob.ok(t, 5*time.Minute, "file", "get", offer.ID, dir))
	download := time.Since(began)
	if got != filepath.Join(dir, "big.bin") {
		t.Fatalf("parley file get wrote %q, want %s", got, filepath.Join(dir, "big.bin"))
	}
	if st, err := os.Stat(got); err != nil || st.Size() != size {
		t.Fatalf("downloaded file: %v, %v bytes; want %d", err, st, size)
	}
	if gotSum := sha256File(t, got); gotSum != sum {
		t.Fatalf("downloaded SHA-256 %s, sent %s", gotSum, sum)
	}
	t.Run("progress shows the time left", func(t *testing.T) { checkETA(t, send.out.String()) })
	t.Logf("1 GiB + 12345 B: send (hash + offer + upload) %s (%.0f MiB/s), get %s (%.0f MiB/s)",
		upload.Round(time.Millisecond), mib(size)/upload.Seconds(), download.Round(time.Millisecond), mib(size)/download.Seconds())
}

// chatFeed forwards the texts of c's private messages from peer, in the
// order c's events deliver them, leaving out the file offers (their text
// is the file's name).
func chatFeed(t *testing.T, c *parley.Client, peer string) <-chan parley.Message {
	t.Helper()
	out := make(chan parley.Message, 1024)
	go func() {
		defer close(out)
		for ev := range c.Events() {
			if m, ok := ev.(parley.MessageEvent); ok && m.Message.SenderName == peer && strings.HasPrefix(m.Message.Text, "chat ") {
				out <- m.Message
			}
		}
	}()
	return out
}

// chatWhile has a and b take turns sending each other a message, about 20
// a second, while busy() is true, and returns every message's time from
// Send to its arrival at the other. Each side must receive exactly the
// other's messages, in the order sent, with increasing seqs.
func chatWhile(t *testing.T, a, b *parley.Client, aIn, bIn <-chan parley.Message, busy func() bool) []time.Duration {
	t.Helper()
	var lat []time.Duration
	var lastA, lastB uint64
	deliver := func(from, to *parley.Client, in <-chan parley.Message, text string, last *uint64) {
		began := time.Now()
		if _, err := from.SendTo(ctxS(t), to.Session().Username, text); err != nil {
			t.Fatalf("send %q: %v", text, err)
		}
		select {
		case m, ok := <-in:
			if !ok {
				t.Fatalf("%s's events ended waiting for %q", to.Session().Username, text)
			}
			lat = append(lat, time.Since(began))
			if m.Text != text || m.Seq <= *last {
				t.Fatalf("%s received %q (seq %d after %d), want %q next", to.Session().Username, m.Text, m.Seq, *last, text)
			}
			*last = m.Seq
		case <-time.After(30 * time.Second):
			t.Fatalf("%q did not reach %s within 30s", text, to.Session().Username)
		}
	}
	for i := 0; busy() && i < 2000; i++ {
		deliver(a, b, bIn, fmt.Sprintf("chat %d from %s", i, a.Session().Username), &lastB)
		deliver(b, a, aIn, fmt.Sprintf("chat %d from %s", i, b.Session().Username), &lastA)
		time.Sleep(50 * time.Millisecond)
	}
	// Nothing more arrives: no message was delivered twice.
	select {
	case m := <-aIn:
		t.Fatalf("%s received %q (seq %d) again", a.Session().Username, m.Text, m.Seq)
	case m := <-bIn:
		t.Fatalf("%s received %q (seq %d) again", b.Session().Username, m.Text, m.Seq)
	case <-time.After(200 * time.Millisecond):
	}
	return lat
}

// checkETA reads `--progress` lines ("upload  12.0/1024.0 MiB  40.0 MiB/s
// ETA 25s") and checks that while half the file or more is still to go the
// estimate is more than zero.
func checkETA(t *testing.T, progress string) {
	t.Helper()
	var early []string
	for line := range strings.SplitSeq(progress, "\n") {
		var done, total, rate float64
		var eta string
		if n, _ := fmt.Sscanf(strings.TrimSpace(line), "upload %f/%f MiB %f MiB/s ETA %s", &done, &total, &rate, &eta); n != 4 {
			continue
		}
		if done > 0 && done <= total/2 {
			if eta != "0s" && eta != "-" {
				return
			}
			early = append(early, strings.TrimSpace(line))
		}
	}
	if len(early) == 0 {
		t.Errorf("no progress line before the upload's half:\n%s", progress)
		return
	}
	t.Errorf("parley file send --progress estimates no time left with half the file or more to go: %q", short(early))
}

func percentile(d []time.Duration, p int) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[(len(s)-1)*p/100]
}

// TestFileResumeAfterClientKill: `parley file send` is killed (SIGKILL) in
// the middle of an upload, in the middle of a part; `parley file resume`
// finishes it. Measured through a proxy that counts what the client sent:
// the bytes sent more than once (what the killed client had sent but the
// server did not keep) are at most one part.
func TestFileResumeAfterClientKill(t *testing.T) {
	c := newCluster(t, 1, clusterOpts{files: true})
	gw := c.gateways[0]
	alice, bob := newCLIUser(t, gw, "alice"), newCLIUser(t, gw, "bob")
	proxy := newCountingProxy(t, gw.http)
	alice.http = proxy.url()
	aliceSDK, bobSDK := alice.sdk(t), bob.sdk(t)
	tok := aliceSDK.Session().Token

	const size = 96<<20 + 4321
	src, sum := writeRandomFile(t, t.TempDir(), "killed.bin", size, 2)
	send := alice.startBG(t, "file", "send", "@"+bob.name, src)
	offer := pendingOffer(t, bobSDK, "killed.bin")
	// Kill it 43 MiB and more into the body: 5 parts and some.
	deadline := time.Now().Add(60 * time.Second)
	for send.written(t) < 43<<20 {
		if !send.running() || time.Now().After(deadline) {
			t.Fatalf("the upload did not get to 43 MiB (wrote %d):\n%s", send.written(t), send.out.String())
		}
		time.Sleep(time.Millisecond)
	}
	send.kill()
	before := proxy.sent(t)

	kept := settledOffset(t, gw, offer.ID, tok)
	if kept == 0 || kept >= size {
		t.Fatalf("after the kill the server has %d of %d bytes", kept, size)
	}
	t.Logf("client killed after sending %d bytes (%.2f MiB, with its HTTP headers); the server kept %d (%.2f MiB, %d whole parts and %d bytes); lost: %d bytes",
		before, mib(before), kept, mib(int64(kept)), kept/partSize, kept%partSize, before-int64(kept))

	r := alice.run(t, 2*time.Minute, "file", "resume", offer.ID, src)
	if r.err != nil {
		t.Fatalf("parley file resume: %v\n%s%s", r.err, r.stdout, r.stderr)
	}
	total := proxy.sent(t)
	resent := total - size
	t.Logf("send + resume sent %d bytes for a file of %d: %d bytes (%.3f MiB) more, headers included; a part is %d MiB",
		total, int64(size), resent, mib(resent), partSize>>20)
	if resent > partSize {
		t.Errorf("resuming after the kill sent %d bytes again, more than one part (%d)", resent, partSize)
	}
	checkDownload(t, bobSDK, offer.ID, size, sum)
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }

// TestFileTransferSlowerThanCommandTimeout: transfers that take longer
// than the CLI's default command timeout (15 s) — a slow link, modelled by
// pausing `parley file send` and `parley file get` for 16 s in the middle
// of their transfers (SIGSTOP, SIGCONT: their connections stay open, the
// gateway waits 90 s for a silent client) — still finish, as the user ran
// them, without --timeout: a transfer may take as long as it keeps moving.
func TestFileTransferSlowerThanCommandTimeout(t *testing.T) {
	c := newCluster(t, 1, clusterOpts{files: true})
	gw := c.gateways[0]
	alice, bob := newCLIUser(t, gw, "alice"), newCLIUser(t, gw, "bob")
	aliceSDK, bobSDK := alice.sdk(t), bob.sdk(t)
	dir := t.TempDir()

	// A file for bob to download, sent beforehand.
	const getSize = 96<<20 + 3
	first, firstSum := writeRandomFile(t, dir, "first.bin", getSize, 6)
	firstID := strings.TrimSpace(alice.ok(t, time.Minute, "file", "send", "@"+bob.name, first))
	bob.ok(t, 30*time.Second, "file", "accept", firstID)

	const size = 32<<20 + 17
	src, sum := writeRandomFile(t, dir, "slow.bin", size, 7)
	send := alice.startBG(t, "file", "send", "@"+bob.name, src)
	offer := pendingOffer(t, bobSDK, "slow.bin")
	waitOffset(t, gw, offer.ID, aliceSDK.Session().Token, 60*time.Second, "the first part", func(o uint64) bool { return o > 0 })
	pause(t, send)

	getDir := t.TempDir()
	get := bob.startBG(t, "file", "get", firstID, getDir)
	// The bytes collect in the part file until the SHA-256 is checked.
	part := parley.PartFile(getDir, "first.bin", firstID)
	deadline := time.Now().Add(60 * time.Second)
	for {
		if st, err := os.Stat(part); err == nil && st.Size() > 0 {
			break
		}
		if !get.running() || time.Now().After(deadline) {
			t.Fatalf("parley file get did not start writing %s:\n%s", part, get.out.String())
		}
		time.Sleep(time.Millisecond)
	}
	pause(t, get)
	if st, err := os.Stat(part); err != nil || st.Size() >= getSize {
		t.Fatalf("the download was complete before it could be paused (%v): make first.bin larger", err)
	}

	time.Sleep(16 * time.Second)
	resume(t, send)
	resume(t, get)
	if err := send.exitErr(t, 2*time.Minute); err != nil {
		t.Errorf("parley file send of an upload that took over 15 s: %v\n%s", err, send.out.String())
	} else {
		checkDownload(t, bobSDK, offer.ID, size, sum)
	}
	if err := get.exitErr(t, 2*time.Minute); err != nil {
		t.Errorf("parley file get of a download that took over 15 s: %v\n%s", err, get.out.String())
	} else if got := sha256File(t, filepath.Join(getDir, "first.bin")); got != firstSum {
		t.Errorf("downloaded SHA-256 %s, sent %s", got, firstSum)
	}
}

// pause stops a process (SIGSTOP); resume continues it.
func pause(t *testing.T, p *proc) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatalf("SIGSTOP %s: %v", p.name, err)
	}
}

func resume(t *testing.T, p *proc) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatalf("SIGCONT %s: %v", p.name, err)
	}
}

// checkDownload accepts the file as c (its recipient) and downloads it with
// the SDK; it must have the size and SHA-256 sent.
func checkDownload(t *testing.T, c *parley.Client, fileID string, size int64, sum string) {
	t.Helper()
	ctx := ctxT(t, 2*time.Minute)
	if err := c.AnswerFile(ctx, fileID, true); err != nil {
		t.Fatalf("accept %s: %v", fileID, err)
	}
	path := filepath.Join(t.TempDir(), "got")
	info, err := c.DownloadTo(ctx, fileID, path, nil)
	if err != nil {
		t.Fatalf("download %s: %v", fileID, err)
	}
	if info.State != parley.FileStateAvailable || info.Size != uint64(size) {
		t.Fatalf("downloaded file's info: %v", info)
	}
	if st, err := os.Stat(path); err != nil || st.Size() != size {
		t.Fatalf("downloaded %v bytes (%v), want %d", st, err, size)
	}
	if got := sha256File(t, path); got != sum {
		t.Fatalf("downloaded SHA-256 %s, sent %s", got, sum)
	}
}

// TestFileResumeAfterServerRestart: the file service, then the gateway,
// is killed (SIGKILL) in the middle of an upload and started again; the
// upload resumes — by itself, or with `parley file resume` after the
// client gave up — and the file arrives intact. What the server had
// stored before the kill is not lost; how much the client sent again is
// logged (a dead gateway loses the part it was filling, and what was in
// flight to it).
func TestFileResumeAfterServerRestart(t *testing.T) {
	c := newCluster(t, 1, clusterOpts{files: true})
	gw := c.gateways[0]
	alice, bob := newCLIUser(t, gw, "alice"), newCLIUser(t, gw, "bob")
	proxy := newCountingProxy(t, gw.http)
	alice.http = proxy.url()
	bobSDK := bob.sdk(t)
	dir := t.TempDir()

	// maxResent: at most one part may be sent again after a restart of
	// the file service, or of the gateway with SIGTERM (it keeps what it
	// read; its receive buffer, -http-read-buffer, bounds what is in
	// flight). A gateway killed with SIGKILL loses the parts in its memory
	// too: logged, not bounded.
	const part = 8 << 20
	for i, tc := range []struct {
		name      string
		restart   func()
		maxResent int64
	}{
		{"file service", c.restartFile, part},
		{"gateway", func() { c.restartGateway(gw) }, 0},
		{"gateway stopped with SIGTERM", func() { c.stopStartGateway(gw) }, part},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const size = 64<<20 + 999
			name := fmt.Sprintf("restart%d.bin", i)
			src, sum := writeRandomFile(t, dir, name, size, uint64(10+i))
			// A session of alice's of its own for HEAD: a gateway restart
			// ends connections, not sessions.
			tok := alice.sdk(t).Session().Token
			sentBefore := proxy.sent(t)
			send := alice.startBG(t, "--debug", "file", "send", "--progress", "@"+bob.name, src)
			offer := pendingOffer(t, bobSDK, name)
			// Kill when three parts are stored: the gateway is filling
			// the fourth, and the client is ahead of it.
			before := waitOffset(t, gw, offer.ID, tok, 60*time.Second, "24 MiB stored", func(o uint64) bool { return o >= 24<<20 })
			wrote := send.written(t)
			tc.restart()
			after := waitOffset(t, gw, offer.ID, tok, 30*time.Second, "an answer after the restart", func(uint64) bool { return true })
			if after < before {
				t.Fatalf("the upload went back from %d to %d bytes across the %s restart", before, after, tc.name)
			}
			if err := send.exitErr(t, 2*time.Minute); err != nil {
				t.Logf("parley file send gave up (%v); resuming with parley file resume; its output:\n%s", err, send.out.String())
				if !strings.Contains(send.out.String(), "parley file resume "+offer.ID) {
					t.Errorf("parley file send failed without telling how to resume:\n%s", send.out.String())
				}
				r := alice.run(t, 2*time.Minute, "file", "resume", offer.ID, src)
				if r.err != nil {
					t.Fatalf("parley file resume after the %s restart: %v\nstdout: %s\nstderr: %s", tc.name, r.err, r.stdout, r.stderr)
				}
			} else {
				t.Logf("parley file send resumed by itself across the %s restart", tc.name)
			}
			resent := proxy.sent(t) - sentBefore - size
			t.Logf("%s killed with %d bytes stored, the client %.2f MiB ahead (%d bytes written, with a few KiB of protocol); %d stored after the restart; the client sent %d bytes (%.2f MiB) again, headers included",
				tc.name, before, mib(int64(wrote)-int64(before)), wrote, after, resent, mib(resent))
			if tc.maxResent > 0 && resent > tc.maxResent {
				t.Errorf("after the %s restart the client sent %.2f MiB again; at most one part (%.0f MiB) may be", tc.name, mib(resent), mib(tc.maxResent))
			}
			checkDownload(t, bobSDK, offer.ID, size, sum)
		})
	}
}

// TestFileOfflineAndReject: a file sent to a user who is not logged in
// waits for them: at the next login it is in the chat and among the
// offers; accepted, it downloads intact. A file the recipient rejects is
// gone for both: the recipient cannot download it, and the sender cannot
// resume its upload.
func TestFileOfflineAndReject(t *testing.T) {
	c := newCluster(t, 1, clusterOpts{files: true})
	gw := c.gateways[0]
	alice, bob := newCLIUser(t, gw, "alice"), newCLIUser(t, gw, "bob")
	dir := t.TempDir()

	// bob is registered but not connected: the CLI holds no connection
	// between commands.
	const size = 3<<20 + 7
	src, sum := writeRandomFile(t, dir, "report.pdf", size, 3)
	id := strings.TrimSpace(alice.ok(t, time.Minute, "file", "send", "@"+bob.name, src))
	if !strings.HasPrefix(id, "f") {
		t.Fatalf("parley file send printed %q, want a file id", id)
	}

	// bob logs in (a new session with his password): the offer is in the
	// chat and waits for his answer.
	bobSDK := bob.sdk(t)
	waitEvent(t, bobSDK, 20*time.Second, "the offer in the chat at login", func(ev parley.Event) bool {
		m, ok := ev.(parley.MessageEvent)
		return ok && m.Message.SenderName == alice.name && m.Message.Text == "report.pdf"
	})
	bob.ok(t, 30*time.Second, "login", "--user", bob.name, "--password-stdin")
	ls := bob.ok(t, 30*time.Second, "file", "ls")
	if !strings.HasPrefix(ls, id+"\treport.pdf\t"+strconv.Itoa(size)+"\t"+alice.name+"\t") || !strings.HasSuffix(ls, "\tavailable\n") {
		t.Fatalf("bob's parley file ls:\n%s", ls)
	}
	bob.ok(t, 30*time.Second, "file", "accept", id)
	got := strings.TrimSpace(bob.ok(t, time.Minute, "file", "get", id, t.TempDir()))
	if s := sha256File(t, got); s != sum {
		t.Fatalf("downloaded %s has SHA-256 %s, sent %s", got, s, sum)
	}
	if ls := bob.ok(t, 30*time.Second, "file", "ls"); ls != "" {
		t.Fatalf("an accepted file is still waiting for an answer:\n%s", ls)
	}

	// A finished file bob rejects: gone from his offers, not downloadable.
	src2, _ := writeRandomFile(t, dir, "spam.bin", 1<<20+1, 4)
	id2 := strings.TrimSpace(alice.ok(t, time.Minute, "file", "send", "@"+bob.name, src2))
	if out := bob.ok(t, 30*time.Second, "file", "reject", id2); out != "rejected "+id2+"\n" {
		t.Fatalf("parley file reject printed %q", out)
	}
	if ls := bob.ok(t, 30*time.Second, "file", "ls"); ls != "" {
		t.Fatalf("a rejected file is still among bob's offers:\n%s", ls)
	}
	getDir := t.TempDir()
	if r := bob.run(t, 30*time.Second, "file", "get", id2, getDir); r.err == nil || !strings.Contains(r.stderr, "PERMISSION_DENIED") {
		t.Fatalf("parley file get of a rejected file: %v\nstdout: %s\nstderr: %s", r.err, r.stdout, r.stderr)
	}
	if entries, _ := os.ReadDir(getDir); len(entries) != 0 {
		t.Fatalf("a refused download left %v", entries)
	}

	// A file bob rejects while it is still uploading: alice's resume is
	// refused (the upload is gone), and nothing can be downloaded.
	src3, sum3 := writeRandomFile(t, dir, "half.bin", 2<<20+5, 5)
	aliceSDK := alice.sdk(t)
	offer, err := aliceSDK.OfferFile(ctxS(t), parley.OfferRequest{To: bob.name, Name: "half.bin", Size: 2<<20 + 5, SHA256: sum3})
	if err != nil {
		t.Fatal(err)
	}
	id3 := offer.File.ID
	bob.ok(t, 30*time.Second, "file", "reject", id3)
	r := alice.run(t, 30*time.Second, "file", "resume", id3, src3)
	if r.err == nil || !strings.Contains(r.stderr, "404") {
		t.Fatalf("parley file resume of a rejected upload: %v\nstdout: %s\nstderr: %s", r.err, r.stdout, r.stderr)
	}
	if r := alice.run(t, 30*time.Second, "file", "get", id3, t.TempDir()); r.err == nil {
		t.Fatalf("alice downloaded a rejected upload: %s", r.stdout)
	}
}

// TestFilesWhileStorageDown: the file service and a gateway start, and
// become ready, while MinIO is down; chat works; the file endpoints answer
// 503 with Retry-After and a file offer is refused UNAVAILABLE; once
// MinIO runs, a file goes through with nothing restarted.
func TestFilesWhileStorageDown(t *testing.T) {
	c := newCluster(t, 1, clusterOpts{files: true, storageDown: true})
	gw := c.gateways[0]
	alice, bob := newCLIUser(t, gw, "alice"), newCLIUser(t, gw, "bob")
	aliceSDK, bobSDK := alice.sdk(t), bob.sdk(t)
	dm, err := aliceSDK.SendTo(ctxS(t), bob.name, "storage is down, chat is not")
	if err != nil {
		t.Fatalf("chat with storage down: %v", err)
	}
	waitEvent(t, bobSDK, 10*time.Second, "alice's message", func(ev parley.Event) bool {
		m, ok := ev.(parley.MessageEvent)
		return ok && m.Message.Conversation == dm.Conversation && m.Message.Text == "storage is down, chat is not"
	})

	req, _ := http.NewRequest(http.MethodPost, gw.httpBase()+"/v1/files", nil)
	req.Header.Set("Tus-Resumable", "1.0.0")
	req.Header.Set("Upload-Length", "5")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("tus creation with storage down: %d, Retry-After %q: %s", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	sum := sha256.Sum256([]byte("hello"))
	_, err = aliceSDK.OfferFile(ctxS(t), parley.OfferRequest{To: bob.name, Name: "a.txt", Size: 5, SHA256: hex.EncodeToString(sum[:])})
	if err == nil || !strings.Contains(err.Error(), "UNAVAILABLE") {
		t.Fatalf("file offer with storage down: %v, want UNAVAILABLE", err)
	}

	c.minio.Start(t)
	src, srcSum := writeRandomFile(t, t.TempDir(), "after.bin", 1<<20+3, 9)
	var id string
	deadline := time.Now().Add(30 * time.Second)
	for {
		r := alice.run(t, time.Minute, "file", "send", "@"+bob.name, src)
		if r.err == nil {
			id = strings.TrimSpace(r.stdout)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("file send 30s after MinIO started: %v\n%s%s", r.err, r.stdout, r.stderr)
		}
		time.Sleep(500 * time.Millisecond)
	}
	bob.ok(t, 30*time.Second, "file", "accept", id)
	got := strings.TrimSpace(bob.ok(t, time.Minute, "file", "get", id, t.TempDir()))
	if s := sha256File(t, got); s != srcSum {
		t.Fatalf("downloaded SHA-256 %s, sent %s", s, srcSum)
	}
}
