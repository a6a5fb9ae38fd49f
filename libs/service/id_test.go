package service

import (
	"strings"
	"testing"
)

func TestIDs(t *testing.T) {
	for _, c := range []struct {
		id   string
		want bool
	}{
		{"gw-1", true}, {"relay_2", true}, {"", false}, {"a.b", false}, {"a b", false}, {"é", false},
		{strings.Repeat("x", 64), true}, {strings.Repeat("x", 65), false}, {"a>", false}, {"a*", false},
	} {
		if got := ValidID(c.id); got != c.want {
			t.Errorf("ValidID(%q) = %v, want %v", c.id, got, c.want)
		}
	}
	a, b := DefaultID("relay"), DefaultID("relay")
	if a == b || !ValidID(a) || !ValidID(b) {
		t.Errorf("DefaultID gave %q and %q: want two different valid ids", a, b)
	}
}
