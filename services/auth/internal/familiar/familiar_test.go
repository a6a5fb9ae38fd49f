package familiar

import (
	"fmt"
	"net/netip"
	"testing"
	"time"
)

func TestPrefix(t *testing.T) {
	for _, tc := range []struct{ addr, want string }{
		{"192.0.2.10", "192.0.2.0/24"},
		{"192.0.2.250", "192.0.2.0/24"},
		{"198.51.100.7", "198.51.100.0/24"},
		{"::ffff:192.0.2.10", "192.0.2.0/24"}, // mapped IPv4 is IPv4
		{"2001:db8:1:2::1", "2001:db8:1::/48"},
		{"2001:db8:1:ffff:1:2:3:4", "2001:db8:1::/48"},
		{"2001:db8:2::1", "2001:db8:2::/48"},
		{"fe80::1%eth0", "fe80::/48"},
	} {
		if got := Prefix(netip.MustParseAddr(tc.addr)); got != tc.want {
			t.Errorf("Prefix(%s) = %q, want %q", tc.addr, got, tc.want)
		}
	}
	if got := Prefix(netip.Addr{}); got != "" {
		t.Errorf("Prefix(invalid) = %q, want empty", got)
	}
}

func TestContains(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	l := List{
		{Prefix: "192.0.2.0/24", Seen: now.Add(-time.Hour)},
		{Prefix: "2001:db8:1::/48", Seen: now.Add(-TTL + time.Second)},
		{Prefix: "198.51.100.0/24", Seen: now.Add(-TTL)},
	}
	for _, tc := range []struct {
		prefix string
		want   bool
	}{
		{"192.0.2.0/24", true},
		{"2001:db8:1::/48", true},  // a second before it expires
		{"198.51.100.0/24", false}, // exactly TTL old: expired
		{"203.0.113.0/24", false},  // never seen
		{"", false},                // no address
	} {
		if got := l.Contains(tc.prefix, now); got != tc.want {
			t.Errorf("Contains(%q) = %v, want %v", tc.prefix, got, tc.want)
		}
	}
}

func TestRecord(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	ago := func(d time.Duration) time.Time { return now.Add(-d) }
	full := func() List {
		var l List
		for i := range MaxLocations {
			l = append(l, Location{Prefix: fmt.Sprintf("10.0.%d.0/24", i), Seen: ago(time.Duration(i+1) * time.Hour)})
		}
		return l
	}
	for _, tc := range []struct {
		name        string
		list        List
		prefix      string
		wantChanged bool
		want        []string // prefixes, in order, when changed
	}{
		{"first location", nil, "192.0.2.0/24", true, []string{"192.0.2.0/24"}},
		{"seen today: no write", List{{"192.0.2.0/24", ago(time.Hour)}}, "192.0.2.0/24", false, nil},
		{"seen a day ago: refreshed", List{{"192.0.2.0/24", ago(Refresh)}}, "192.0.2.0/24", true, []string{"192.0.2.0/24"}},
		{"new one goes first", List{{"192.0.2.0/24", ago(time.Hour)}}, "198.51.100.0/24", true,
			[]string{"198.51.100.0/24", "192.0.2.0/24"}},
		{"refreshed one moves first", List{{"192.0.2.0/24", ago(2 * Refresh)}, {"198.51.100.0/24", ago(3 * Refresh)}},
			"198.51.100.0/24", true, []string{"198.51.100.0/24", "192.0.2.0/24"}},
		{"expired ones dropped on write", List{{"192.0.2.0/24", ago(TTL)}, {"198.51.100.0/24", ago(time.Hour)}},
			"203.0.113.0/24", true, []string{"203.0.113.0/24", "198.51.100.0/24"}},
		{"full: least recently seen replaced", full(), "203.0.113.0/24", true,
			[]string{"203.0.113.0/24", "10.0.0.0/24", "10.0.1.0/24", "10.0.2.0/24", "10.0.3.0/24", "10.0.4.0/24", "10.0.5.0/24", "10.0.6.0/24"}},
		{"no address", List{{"192.0.2.0/24", ago(time.Hour)}}, "", false, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, changed := tc.list.Record(tc.prefix, now)
			if changed != tc.wantChanged {
				t.Fatalf("changed = %v, want %v (list %v)", changed, tc.wantChanged, got)
			}
			if !changed {
				return
			}
			var prefixes []string
			for _, loc := range got {
				prefixes = append(prefixes, loc.Prefix)
			}
			if fmt.Sprint(prefixes) != fmt.Sprint(tc.want) {
				t.Errorf("list = %v, want %v", prefixes, tc.want)
			}
			if got[0].Seen != now || !got.Contains(tc.prefix, now) {
				t.Errorf("the recorded location %v is not first and current", got[0])
			}
		})
	}
}
