package conn

import (
	"testing"
	"time"
)

// The typing limiter: once per conversation per typingInterval, and no
// state left once the user stopped typing (idle connections carry none).
func TestTypingLimiter(t *testing.T) {
	c := &Conn{}
	t0 := time.Unix(1000, 0)
	steps := []struct {
		conv string
		at   time.Duration
		want bool
	}{
		{"dm.a.b", 0, true},
		{"dm.a.b", time.Second, false},
		{"dm.a.c", time.Second, true},
		{"dm.a.b", typingInterval - time.Millisecond, false},
		{"dm.a.b", typingInterval, true},
		{"dm.a.c", typingInterval + time.Second, true},
	}
	for i, s := range steps {
		if got := c.typingAllowed(s.conv, t0.Add(s.at)); got != s.want {
			t.Fatalf("step %d (%s at %s): allowed %v, want %v", i, s.conv, s.at, got, s.want)
		}
	}
	c.expireTyping(t0.Add(10 * time.Second))
	if c.typing != nil {
		t.Fatalf("typing state kept after the user stopped: %v", c.typing)
	}
	for i := range maxTypingConvs + 1 {
		ok := c.typingAllowed("dm.a.x"+string(rune('a'+i)), t0)
		if ok != (i < maxTypingConvs) {
			t.Fatalf("conversation %d: allowed %v", i, ok)
		}
	}
}
