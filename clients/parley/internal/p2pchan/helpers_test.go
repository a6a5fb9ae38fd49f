package p2pchan

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	mrand "math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// testTimeout bounds every wait in these tests: generous, the machine is
// small and busy.
const testTimeout = 60 * time.Second

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

type keyPair struct {
	pub  ed25519.PublicKey
	priv ed25519.PrivateKey
}

func newKey(t testing.TB) keyPair {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return keyPair{pub, priv}
}

func udp(t testing.TB) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// side is one end of a test: its socket, key and config.
type side struct {
	pc  *net.UDPConn
	key keyPair
	cfg Config
}

func newSide(t testing.TB) *side {
	k := newKey(t)
	return &side{pc: udp(t), key: k, cfg: Config{Key: k.priv}}
}

// connect runs Dial (a) and Accept (b) at once; a dials dialAddr (b's
// socket, or a forwarder in front of it). The channels are closed at
// cleanup.
func connect(t testing.TB, a, b *side, dialAddr net.Addr) (*Channel, *Channel) {
	t.Helper()
	if a.cfg.PeerKey == nil {
		a.cfg.PeerKey = b.key.pub
	}
	if b.cfg.PeerKey == nil {
		b.cfg.PeerKey = a.key.pub
	}
	if dialAddr == nil {
		dialAddr = b.pc.LocalAddr()
	}
	ctx := testCtx(t)
	var (
		cb   *Channel
		berr error
		wg   sync.WaitGroup
	)
	wg.Go(func() { cb, berr = Accept(ctx, b.pc, b.cfg) })
	ca, aerr := Dial(ctx, a.pc, dialAddr, a.cfg)
	wg.Wait()
	if aerr != nil || berr != nil {
		t.Fatalf("Dial: %v; Accept: %v", aerr, berr)
	}
	t.Cleanup(func() { ca.Close(); cb.Close() })
	return ca, cb
}

// forwarder is a UDP relay between a dialer (facing side) and an acceptor,
// which can drop, duplicate or blackhole each direction: a path that
// breaks and comes back.
type forwarder struct {
	toA, toB *net.UDPConn // toA faces the dialer, toB the acceptor
	bAddr    net.Addr
	aAddr    atomic.Pointer[net.UDPAddr]

	blockAB, blockBA atomic.Bool  // drop everything in a direction
	lossPerMille     atomic.Int32 // random loss, both directions
	dupPerMille      atomic.Int32 // random duplication, both directions
	maxPayload       atomic.Int64 // the largest UDP payload seen
	bytesAB          atomic.Int64 // bytes forwarded a→b
	packets          atomic.Int64 // packets seen
}

func newForwarder(t testing.TB, b net.Addr) *forwarder {
	f := &forwarder{toA: udp(t), toB: udp(t), bAddr: b}
	go f.pump(f.toA, true)
	go f.pump(f.toB, false)
	return f
}

// Addr is where the dialer sends.
func (f *forwarder) Addr() net.Addr { return f.toA.LocalAddr() }

func (f *forwarder) pump(in *net.UDPConn, ab bool) {
	buf := make([]byte, 65536)
	for {
		n, from, err := in.ReadFromUDP(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		f.packets.Add(1)
		for {
			old := f.maxPayload.Load()
			if int64(n) <= old || f.maxPayload.CompareAndSwap(old, int64(n)) {
				break
			}
		}
		var out *net.UDPConn
		var to net.Addr
		if ab {
			f.aAddr.Store(from)
			if f.blockAB.Load() {
				continue
			}
			out, to = f.toB, f.bAddr
			f.bytesAB.Add(int64(n))
		} else {
			a := f.aAddr.Load()
			if a == nil || f.blockBA.Load() {
				continue
			}
			out, to = f.toA, a
		}
		if mrand.Int32N(1000) < f.lossPerMille.Load() {
			continue
		}
		out.WriteTo(buf[:n], to)
		if mrand.Int32N(1000) < f.dupPerMille.Load() {
			out.WriteTo(buf[:n], to)
		}
	}
}

// states records a channel's OnState calls.
type states struct {
	mu    sync.Mutex
	ups   int
	downs int
}

func (s *states) on(connected bool, _ error) {
	s.mu.Lock()
	if connected {
		s.ups++
	} else {
		s.downs++
	}
	s.mu.Unlock()
}

func (s *states) counts() (ups, downs int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ups, s.downs
}

// waitFor polls cond until it holds (a condition over what the channels
// report, not a guess at how long something takes).
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
