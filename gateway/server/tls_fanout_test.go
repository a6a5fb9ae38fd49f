package server_test

import (
	"crypto/tls"
	"fmt"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/parleychat/parley/gateway/server"
	"github.com/parleychat/parley/libs/testenv"
)

// TestTLSRoomFanOut: a flood of room messages over TLS 1.3, whose records
// the gateway protects itself and can write without waiting (TryWrite,
// keeping a cut record's rest for the next write): a client that reads
// steadily and one with a tiny receive buffer that reads slowly (the
// socket full, writes cut anywhere) get whole messages in order up to the
// last, some shed (docs/protocol.md §11), and stay connected.
func TestTLSRoomFanOut(t *testing.T) {
	certFile, keyFile, pool := testenv.SelfSigned(t)
	e := startGateway(t, func(c *server.Config) {
		c.TLSCert, c.TLSKey = certFile, keyFile
		c.SendQueueFrames = 64
		c.SendQueueBytes = 64 << 10
		c.WriteTimeout = 5 * time.Second
	})
	msgs := startStandInMessaging(t, e.nc)
	conf := &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS13}
	fast := dialTLS(t, e, conf)
	fast.login("fast", noFeed)
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
	}}
	raw, err := d.Dial("tcp", e.srv.TCPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	slow := newStreamClient(t, tls.Client(raw, conf))
	slow.login("slow", noFeed)

	const n = 2000
	text := strings.Repeat("r", 8000) // more than the kernel buffers for the slow reader
	go func() {
		for i := range n {
			post(t, e.nc, msgs, "room.public", "u-poster", fmt.Sprint(i+1, " ", text))
			if i%10 == 9 {
				time.Sleep(time.Millisecond) // no faster than the gateway's NATS subscription takes them
			}
		}
		if err := e.nc.Flush(); err != nil {
			t.Error(err)
		}
	}()

	read := func(name string, c *client, pause time.Duration) (got int) {
		var last uint64
		deadline := time.Now().Add(60 * time.Second)
		for last < n {
			if time.Now().After(deadline) {
				t.Errorf("%s: after 60s, last room seq %d", name, last)
				return got
			}
			f := c.recv()
			m := f.GetMessage().GetMessage()
			if m == nil {
				continue
			}
			if m.GetSeq() <= last || m.GetText() != fmt.Sprint(m.GetSeq(), " ", text) {
				t.Fatalf("%s: seq %d after %d, text intact %v", name, m.GetSeq(), last, m.GetText() == fmt.Sprint(m.GetSeq(), " ", text))
			}
			last = m.GetSeq()
			got++
			time.Sleep(pause)
		}
		return got
	}
	var wg sync.WaitGroup
	var fastGot, slowGot int
	wg.Go(func() { fastGot = read("fast", fast, 0) })
	wg.Go(func() { slowGot = read("slow", slow, 2*time.Millisecond) })
	wg.Wait()
	// Not every message comes live: the gateway's room subscription and
	// the slow reader's queue shed under a flood (TestRoomFloodSlowReader
	// checks the repair from history); what comes is whole and in order.
	t.Logf("live: the steady reader %d, the slow one %d of %d", fastGot, slowGot, n)
	slow.ping(1)
	fast.ping(2)
}
