package punch

import (
	"net/netip"
	"slices"
	"testing"
	"time"
)

func TestOrderCandidates(t *testing.T) {
	parse := func(ss ...string) []netip.Addr {
		var out []netip.Addr
		for _, s := range ss {
			out = append(out, netip.MustParseAddr(s))
		}
		return out
	}
	tests := []struct {
		in   []netip.Addr
		want []string
	}{
		{parse("127.0.0.1", "::1", "2001:db8::1", "192.168.1.20"),
			[]string{"192.168.1.20:9", "[2001:db8::1]:9", "127.0.0.1:9", "[::1]:9"}},
		{parse("10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6", "10.0.0.7", "10.0.0.8", "127.0.0.1", "10.0.0.9"),
			[]string{"10.0.0.1:9", "10.0.0.2:9", "10.0.0.3:9", "10.0.0.4:9", "10.0.0.5:9", "10.0.0.6:9", "10.0.0.7:9", "10.0.0.8:9"}},
		{nil, []string{}},
	}
	for _, tt := range tests {
		var got []string
		for _, ap := range orderCandidates(tt.in, 9) {
			got = append(got, ap.String())
		}
		if !slices.Equal(got, tt.want) && !(len(got) == 0 && len(tt.want) == 0) {
			t.Errorf("%v: got %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestUsableHost(t *testing.T) {
	for s, want := range map[string]bool{
		"192.168.1.2": true, "127.0.0.1": true, "::1": true, "2001:db8::1": true, "fd00::2": true,
		"169.254.1.1": false, "fe80::1": false, "0.0.0.0": false, "::": false, "224.0.0.1": false, "ff02::1": false,
	} {
		if got := usableHost(netip.MustParseAddr(s)); got != want {
			t.Errorf("%s: %v, want %v", s, got, want)
		}
	}
}

// TestCheckOffsets: the schedule of §20.4.
func TestCheckOffsets(t *testing.T) {
	count := func(step time.Duration) int {
		n := 0
		for i, o := range checkOffsets {
			if i > 0 && o-checkOffsets[i-1] == step {
				n++
			}
		}
		return n
	}
	if checkOffsets[0] != 0 || checkOffsets[50] != time.Second || checkOffsets[90] != 5*time.Second ||
		checkOffsets[len(checkOffsets)-1] != 29*time.Second || len(checkOffsets) != 115 {
		t.Errorf("offsets %v", checkOffsets)
	}
	// 50 steps of 20 ms up to 1 s, 40 of 100 ms up to 5 s, 24 of 1 s up to
	// 29 s.
	if count(20*time.Millisecond) != 50 || count(100*time.Millisecond) != 40 || count(time.Second) != 24 {
		t.Errorf("steps: %d of 20 ms, %d of 100 ms, %d of 1 s", count(20*time.Millisecond), count(100*time.Millisecond), count(time.Second))
	}
}
