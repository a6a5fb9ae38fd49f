package natlab

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/parleychat/parley/libs/testenv/natlab"
)

// Benchmarks of direct sessions through the real NATs (make bench):
//
//	BenchmarkTimeToDirect/<pair>  one new session per op: ms-to-direct is
//	                              the SDK's time from the first introduction
//	                              to the first selected pair; first-try-% the
//	                              share of sessions direct without ever
//	                              showing relayed
//	BenchmarkBirthday             symmetric against port-restricted, the
//	                              birthday technique: success-% and
//	                              ms-to-direct over b.N sessions
//	BenchmarkDirectFile           a file over a direct session against plain
//	                              TCP between the same two namespaces
//	                              through the same NATs: MB/s both and ratio
//	BenchmarkMessageRoundTrip     a message sent until the peer's
//	                              acknowledgement, on a direct session

// benchPair is a lab with parleyd and two users behind NATs of kinds a, b
// (one NAT for both when same).
func benchPair(b *testing.B, ka, kb natlab.Kind, same bool) (*natlab.Lab, *user, *user) {
	b.Helper()
	l := natlab.New(b)
	startParleyd(b, l)
	na := l.AddNAT(ka)
	nb := na
	if !same {
		nb = l.AddNAT(kb)
	}
	return l, newUser(b, na.AddClient(), "alice"), newUser(b, nb.AddClient(), "bob")
}

// session is one direct session's outcome.
type session struct {
	direct       bool
	firstTry     bool // direct without showing relayed first
	birthday     bool
	timeToDirect time.Duration
}

// oneSession opens a session from a to bb, waits up to within for a direct
// path, and closes it.
func oneSession(b *testing.B, a, bb *user, within time.Duration) session {
	b.Helper()
	p := connect(b, a, bb)
	defer closePair(b, p)
	var s session
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		ev, found := lastPath(p.a)
		if found && ev.str("path") == "direct" {
			s.direct = true
			s.birthday, _ = ev["birthday"].(bool)
			s.timeToDirect = time.Duration(ev.num("time_to_direct_ms")) * time.Millisecond
			s.firstTry = p.a.count(isPath("relayed")) == 0
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	return s
}

// lastPath is c's latest path event.
func lastPath(c *cli) (event, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := len(c.events) - 1; i >= 0; i-- {
		if c.events[i].str("event") == "path" {
			return c.events[i], true
		}
	}
	return nil, false
}

// closePair ends both sides and waits for them to exit.
func closePair(b *testing.B, p pair) {
	p.a.send(b, "/quit")
	p.a.stdin.Close()
	p.b.stdin.Close()
	for _, c := range []*cli{p.a, p.b} {
		select {
		case <-c.done:
		case <-time.After(10 * time.Second):
			b.Fatalf("%s: parley direct did not end after /quit", c.u.name)
		}
	}
}

func BenchmarkTimeToDirect(b *testing.B) {
	cases := []struct {
		name string
		a, b natlab.Kind
		same bool
	}{
		{"full-cone/full-cone", natlab.FullCone, natlab.FullCone, false},
		{"restricted-cone/restricted-cone", natlab.RestrictedCone, natlab.RestrictedCone, false},
		{"port-restricted-cone/port-restricted-cone", natlab.PortRestrictedCone, natlab.PortRestrictedCone, false},
		{"full-cone/symmetric", natlab.FullCone, natlab.Symmetric, false},
		{"restricted-cone/symmetric", natlab.RestrictedCone, natlab.Symmetric, false},
		{"port-restricted-cone/symmetric", natlab.PortRestrictedCone, natlab.Symmetric, false},
		{"same-nat", natlab.PortRestrictedCone, natlab.PortRestrictedCone, true},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			_, a, bb := benchPair(b, tc.a, tc.b, tc.same)
			var total time.Duration
			direct, first := 0, 0
			b.ResetTimer()
			for range b.N {
				s := oneSession(b, a, bb, 15*time.Second)
				if s.direct {
					direct++
					total += s.timeToDirect
				}
				if s.firstTry {
					first++
				}
			}
			b.StopTimer()
			if direct > 0 {
				b.ReportMetric(float64(total.Milliseconds())/float64(direct), "ms-to-direct")
			}
			b.ReportMetric(100*float64(direct)/float64(b.N), "direct-%")
			b.ReportMetric(100*float64(first)/float64(b.N), "first-try-%")
		})
	}
}

func BenchmarkBirthday(b *testing.B) {
	_, a, bb := benchPair(b, natlab.PortRestrictedCone, natlab.Symmetric, false)
	var total time.Duration
	ok, bday := 0, 0
	b.ResetTimer()
	for range b.N {
		// The technique runs 5 s after the introduction; later than that
		// the session stays relayed.
		s := oneSession(b, a, bb, 8*time.Second)
		if s.direct {
			ok++
			total += s.timeToDirect
		}
		if s.birthday {
			bday++
		}
	}
	b.StopTimer()
	b.ReportMetric(100*float64(ok)/float64(b.N), "success-%")
	b.ReportMetric(100*float64(bday)/float64(b.N), "birthday-%")
	if ok > 0 {
		b.ReportMetric(float64(total.Milliseconds())/float64(ok), "ms-to-direct")
	}
}

// directSession connects a to bb and waits for the direct path.
func directSession(b *testing.B, a, bb *user, args ...string) pair {
	b.Helper()
	cb := bb.direct(b, append([]string{"--accept", "--from", a.name, "--wait", "60s"}, args...)...)
	cb.wait(b, 0, 30*time.Second, "waiting for an offer", func(e event) bool {
		return e.str("event") == "status" && strings.Contains(e.str("text"), "waiting for an offer")
	})
	ca := a.direct(b, "@"+bb.name)
	p := pair{ca, cb}
	p.a.wait(b, 0, 30*time.Second, "direct path", isPath("direct"))
	p.b.wait(b, 0, 30*time.Second, "direct path", isPath("direct"))
	return p
}

func BenchmarkDirectFile(b *testing.B) {
	const size = 32 << 20
	_, a, bb := benchPair(b, natlab.FullCone, natlab.FullCone, false)
	downloads := b.TempDir()
	p := directSession(b, a, bb, "--download-dir", downloads)
	file := filepath.Join(b.TempDir(), "payload.bin")
	data := make([]byte, size)
	rand.Read(data)
	sum := sha256.Sum256(data)
	if err := os.WriteFile(file, data, 0o644); err != nil {
		b.Fatal(err)
	}

	// Plain TCP between the same two namespaces, through the same NATs
	// (bob's forwards the port).
	const tcpBenchPort = 9000
	var ln net.Listener
	if err := bb.host.Do(func() (err error) { ln, err = net.Listen("tcp4", "0.0.0.0:"+strconv.Itoa(tcpBenchPort)); return }); err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	bb.host.NAT().ForwardTCP(b, tcpBenchPort, bb.host)
	got := make(chan int64, 1)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n, _ := io.Copy(io.Discard, c)
			c.Close()
			got <- n
		}
	}()

	var directTime, tcpTime time.Duration
	b.ResetTimer()
	for i := range b.N {
		// Direct: a new name each time (a resent file would resume).
		name := filepath.Join(filepath.Dir(file), fmt.Sprintf("payload-%d.bin", i))
		if err := os.Rename(file, name); err != nil {
			b.Fatal(err)
		}
		file = name
		m := p.b.mark()
		start := time.Now()
		p.a.send(b, "/file "+file)
		ev, _ := p.b.wait(b, m, 120*time.Second, "the file", func(e event) bool {
			return e.str("event") == "file" || e.str("event") == "file_failed"
		})
		directTime += time.Since(start)
		if ev.str("event") != "file" || int64(ev.num("size")) != size || ev.str("sha256") != hex.EncodeToString(sum[:]) {
			b.Fatalf("the file did not arrive whole: %v", ev)
		}
		os.Remove(ev.str("path"))

		// Plain TCP.
		start = time.Now()
		var conn net.Conn
		if err := a.host.Do(func() (err error) {
			conn, err = net.Dial("tcp4", netip.AddrPortFrom(bb.host.NAT().WAN, tcpBenchPort).String())
			return
		}); err != nil {
			b.Fatal(err)
		}
		if _, err := conn.Write(data); err != nil {
			b.Fatal(err)
		}
		conn.Close()
		if n := <-got; n != size {
			b.Fatalf("TCP carried %d bytes of %d", n, size)
		}
		tcpTime += time.Since(start)
	}
	b.StopTimer()
	mb := float64(size) * float64(b.N) / 1e6
	direct, tcp := mb/directTime.Seconds(), mb/tcpTime.Seconds()
	b.ReportMetric(direct, "direct-MB/s")
	b.ReportMetric(tcp, "tcp-MB/s")
	b.ReportMetric(direct/tcp, "direct/tcp")
}

func BenchmarkMessageRoundTrip(b *testing.B) {
	_, a, bb := benchPair(b, natlab.PortRestrictedCone, natlab.PortRestrictedCone, false)
	p := directSession(b, a, bb)
	exchange(b, p.a, p.b, "warm-up", 15*time.Second)
	b.ResetTimer()
	for i := range b.N {
		m := p.a.mark()
		p.a.send(b, "ping "+strconv.Itoa(i))
		sent, _ := p.a.wait(b, m, 15*time.Second, "sent", isEvent("sent"))
		if sent.str("path") != "direct" {
			b.Fatalf("a message went %s", sent.str("path"))
		}
	}
}
