package ratelimit

import (
	"fmt"
	"net/netip"
	"testing"
	"time"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func TestBurstThenRefill(t *testing.T) {
	c := &clock{t: time.Unix(1000, 0)}
	l := New(5, time.Minute, 5, c.now) // one token per 12s
	for i := 0; i < 5; i++ {
		if ok, _ := l.Take("alice"); !ok {
			t.Fatalf("attempt %d refused within burst", i+1)
		}
	}
	ok, wait := l.Take("alice")
	if ok || wait != 12*time.Second {
		t.Fatalf("6th attempt: ok=%v wait=%v; want refused, 12s", ok, wait)
	}
	// Another key is independent.
	if ok, _ := l.Take("bob"); !ok {
		t.Fatal("bob limited by alice's failures")
	}
	c.t = c.t.Add(5 * time.Second)
	if ok, wait := l.Take("alice"); ok || wait != 7*time.Second {
		t.Fatalf("after 5s: ok=%v wait=%v; want refused, 7s", ok, wait)
	}
	c.t = c.t.Add(7 * time.Second)
	if ok, _ := l.Take("alice"); !ok {
		t.Fatal("refused after the retry-after passed")
	}
	if ok, _ := l.Take("alice"); ok {
		t.Fatal("second token appeared from nowhere")
	}
}

func TestRefund(t *testing.T) {
	c := &clock{t: time.Unix(1000, 0)}
	l := New(2, time.Minute, 2, c.now)
	for i := 0; i < 10; i++ { // successes are refunded and never exhaust the bucket
		if ok, _ := l.Take("k"); !ok {
			t.Fatalf("attempt %d refused although all were refunded", i)
		}
		l.Refund("k")
	}
	l.Refund("k") // never above burst
	l.Take("k")
	l.Take("k")
	if ok, _ := l.Take("k"); ok {
		t.Fatal("refund raised the bucket above its burst")
	}
}

func TestIdleKeysEvicted(t *testing.T) {
	c := &clock{t: time.Unix(1000, 0)}
	l := New(10, time.Minute, 10, c.now) // refills in 60s
	for i := 0; i < 1000; i++ {
		l.Take(fmt.Sprint("ip", i))
	}
	if l.Len() != 1000 {
		t.Fatalf("Len = %d", l.Len())
	}
	c.t = c.t.Add(61 * time.Second)
	l.Take("new")
	if l.Len() != 1 {
		t.Fatalf("after a refill period Len = %d, want 1 (idle keys dropped)", l.Len())
	}
}

// TestFloodOfSourcesForgotten: keys that each took a token or two (a flood
// of spoofed source addresses) are dropped once refilled, an eighth of a
// refill period later, not a whole period; a key that emptied its bucket
// is kept, limited, until it has refilled.
func TestFloodOfSourcesForgotten(t *testing.T) {
	c := &clock{t: time.Unix(1000, 0)}
	l := New(50, time.Second, 100, c.now) // refills in 2s, a token every 20ms
	for range 100 {
		l.Take("heavy")
	}
	for i := range 10000 {
		l.Take(fmt.Sprint("spoofed", i))
	}
	if l.Len() != 10001 {
		t.Fatalf("Len = %d", l.Len())
	}
	c.t = c.t.Add(300 * time.Millisecond) // more than 2s/8
	l.Take("new")
	if l.Len() != 2 {
		t.Fatalf("300ms later Len = %d, want 2 (heavy and new: the one-token keys dropped)", l.Len())
	}
	// heavy has 15 tokens back, not a full bucket: it is still limited.
	for i := range 15 {
		if ok, _ := l.Take("heavy"); !ok {
			t.Fatalf("heavy refused at %d, with 15 tokens back", i)
		}
	}
	if ok, _ := l.Take("heavy"); ok {
		t.Fatal("heavy's emptied bucket was forgotten before it refilled")
	}
}

// TestSource: the source an address is limited under.
func TestSource(t *testing.T) {
	cases := []struct{ in, want string }{
		{"192.0.2.7", "192.0.2.7/32"},
		{"::ffff:192.0.2.7", "192.0.2.7/32"}, // IPv4 on a dual-stack socket
		{"2001:db8:1:2:aaaa:bbbb:cccc:dddd", "2001:db8:1:2::/64"},
		{"2001:db8:1:2::1", "2001:db8:1:2::/64"},
		{"fe80::1%eth0", "fe80::/64"},
	}
	for _, tc := range cases {
		if got := Source(netip.MustParseAddr(tc.in)); got.String() != tc.want {
			t.Errorf("Source(%s) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

func TestDisabled(t *testing.T) {
	l := New(0, time.Minute, 0, nil)
	for i := 0; i < 100; i++ {
		if ok, _ := l.Take("x"); !ok {
			t.Fatal("disabled limiter refused")
		}
	}
}

func TestTakeN(t *testing.T) {
	c := &clock{t: time.Unix(1000, 0)}
	l := New(60, time.Minute, 10, c.now) // one token per second, 10 at most
	for _, tc := range []struct {
		name    string
		advance time.Duration
		n       int
		ok      bool
		wait    time.Duration
	}{
		{"seven of ten", 0, 7, true, 0},
		{"four of three: nothing taken", 0, 4, false, time.Second},
		{"three of three", 0, 3, true, 0},
		{"one of none", 0, 1, false, time.Second},
		{"five after 2s: wait 3s more", 2 * time.Second, 5, false, 3 * time.Second},
		{"five after 3s more", 3 * time.Second, 5, true, 0},
		{"above the burst: never", 20 * time.Second, 11, false, 10 * time.Second},
		{"the burst itself", 0, 10, true, 0},
		{"zero is free", 0, 0, true, 0},
	} {
		c.t = c.t.Add(tc.advance)
		ok, wait := l.TakeN("k", tc.n)
		if ok != tc.ok || wait != tc.wait {
			t.Fatalf("%s: TakeN(%d) = %v, %v; want %v, %v", tc.name, tc.n, ok, wait, tc.ok, tc.wait)
		}
	}
	if l.Burst() != 10 || New(0, time.Minute, 5, nil).Burst() != 0 {
		t.Errorf("Burst = %d, disabled %d", l.Burst(), New(0, time.Minute, 5, nil).Burst())
	}
}
