package pathconn_test

import (
	"bytes"
	"errors"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/parleychat/parley/clients/parley/internal/pathconn"
)

var errNoPath = errors.New("no path")

// sink records what a path was asked to send.
type sink struct {
	mu   sync.Mutex
	pkts [][]byte
	fail bool
}

func (s *sink) send(p []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail {
		return errNoPath
	}
	s.pkts = append(s.pkts, bytes.Clone(p))
	return nil
}

func (s *sink) setFail(f bool) {
	s.mu.Lock()
	s.fail = f
	s.mu.Unlock()
}

func (s *sink) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.pkts)
}

func newConn(t *testing.T, direct, relay *sink, mod ...func(*pathconn.Config)) *pathconn.Conn {
	t.Helper()
	cfg := pathconn.Config{Direct: direct.send, Relay: relay.send}
	for _, m := range mod {
		m(&cfg)
	}
	c, err := pathconn.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestWritePicksOnePath(t *testing.T) {
	direct, relay := &sink{fail: true}, &sink{}
	c := newConn(t, direct, relay)
	peer := c.RemoteAddr()
	write := func(b byte) {
		t.Helper()
		if n, err := c.WriteTo([]byte{0x40, b}, peer); err != nil || n != 2 {
			t.Fatalf("write: %d, %v", n, err)
		}
	}
	write(1) // no pair: the relay
	direct.setFail(false)
	write(2) // a pair: direct
	write(3)
	direct.setFail(true)
	write(4) // the pair died: the relay again
	relay.setFail(true)
	write(5) // neither: dropped, no error (QUIC would give up on an error)
	if direct.count() != 2 || relay.count() != 2 {
		t.Errorf("direct %d, relay %d packets; want 2 and 2 (each packet once)", direct.count(), relay.count())
	}
	st := c.Stats()
	if st.DirectSent != 2 || st.RelaySent != 2 || st.SendDropped != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestReadFromBothPaths(t *testing.T) {
	c := newConn(t, &sink{}, &sink{})
	pkt := []byte{0x40, 1}
	c.DeliverDirect(pkt)
	pkt[1] = 2 // the Conn copied it
	c.DeliverRelay([]byte{0x40, 3})
	c.DeliverDirect([]byte{0x40, 4})
	buf := make([]byte, 1500)
	for _, want := range []byte{1, 3, 4} {
		n, addr, err := c.ReadFrom(buf)
		if err != nil {
			t.Fatal(err)
		}
		if n != 2 || buf[1] != want {
			t.Errorf("got % x, want packet %d", buf[:n], want)
		}
		if addr.String() != pathconn.PeerAddr.String() {
			t.Errorf("from %v, want the fixed peer address %v", addr, pathconn.PeerAddr)
		}
	}
	if st := c.Stats(); st.DirectReceived != 2 || st.RelayReceived != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestQueueFull(t *testing.T) {
	c := newConn(t, &sink{}, &sink{}, func(cfg *pathconn.Config) { cfg.Queue = 2 })
	for i := range 3 {
		c.DeliverRelay([]byte{0x40, byte(i)})
	}
	if st := c.Stats(); st.RelayReceived != 2 || st.ReceiveDropped != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestDeadlines(t *testing.T) {
	c := newConn(t, &sink{}, &sink{})
	buf := make([]byte, 10)

	c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	_, _, err := c.ReadFrom(buf)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read past the deadline: %v", err)
	}
	// A deadline in the past wakes a blocked reader.
	c.SetReadDeadline(time.Time{})
	done := make(chan error, 1)
	go func() {
		_, _, err := c.ReadFrom(buf)
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	c.SetReadDeadline(time.Now().Add(-time.Second))
	if err := <-done; !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("woken reader: %v", err)
	}
	// Cleared, a packet is read again.
	c.SetReadDeadline(time.Time{})
	c.DeliverDirect([]byte{0x40})
	if _, _, err := c.ReadFrom(buf); err != nil {
		t.Fatal(err)
	}

	c.SetWriteDeadline(time.Now().Add(-time.Second))
	if _, err := c.WriteTo([]byte{0x40}, nil); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("write past the deadline: %v", err)
	}
	c.SetDeadline(time.Time{})
	if _, err := c.WriteTo([]byte{0x40}, nil); err != nil {
		t.Errorf("write: %v", err)
	}
}

func TestCloseUnblocks(t *testing.T) {
	c := newConn(t, &sink{}, &sink{})
	done := make(chan error, 1)
	go func() {
		_, _, err := c.ReadFrom(make([]byte, 10))
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	c.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("read: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not unblock ReadFrom")
	}
	if _, err := c.WriteTo([]byte{0x40}, nil); !errors.Is(err, net.ErrClosed) {
		t.Errorf("write after close: %v", err)
	}
	c.Close()
}

func TestStates(t *testing.T) {
	states := make(chan pathconn.State, 10)
	c := newConn(t, &sink{}, &sink{}, func(cfg *pathconn.Config) {
		cfg.RelayAfter = 100 * time.Millisecond
		cfg.OnState = func(s pathconn.State) { states <- s }
	})
	if c.State() != pathconn.Connecting {
		t.Fatalf("state %v", c.State())
	}
	expect := func(want pathconn.State) {
		t.Helper()
		select {
		case s := <-states:
			if s != want {
				t.Fatalf("state %v, want %v", s, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no change to %v", want)
		}
	}
	c.SetDirect(false) // a dead path before any: nothing changes
	c.Accepted()
	expect(pathconn.Relayed) // no pair after RelayAfter
	c.SetDirect(true)
	expect(pathconn.Direct)
	c.Accepted() // called again: starts nothing
	c.SetDirect(false)
	expect(pathconn.Relayed)
	c.SetDirect(true)
	expect(pathconn.Direct)
	if c.State() != pathconn.Direct {
		t.Errorf("state %v", c.State())
	}

	// Direct before the time is up: never Relayed.
	c2 := newConn(t, &sink{}, &sink{}, func(cfg *pathconn.Config) {
		cfg.RelayAfter = 50 * time.Millisecond
		cfg.OnState = func(s pathconn.State) { states <- s }
	})
	c2.Accepted()
	c2.SetDirect(true)
	expect(pathconn.Direct)
	time.Sleep(100 * time.Millisecond)
	if c2.State() != pathconn.Direct || len(states) != 0 {
		t.Errorf("state %v, %d more changes", c2.State(), len(states))
	}
}

func TestNewValidates(t *testing.T) {
	if _, err := pathconn.New(pathconn.Config{Relay: (&sink{}).send}); !errors.Is(err, pathconn.ErrBadConfig) {
		t.Errorf("no Direct: %v", err)
	}
}
