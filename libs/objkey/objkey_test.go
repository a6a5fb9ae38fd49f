package objkey_test

import (
	"testing"

	"github.com/parleychat/parley/libs/objkey"
	"github.com/parleychat/parley/libs/objstore"
)

// TestLayout: the keys every stored object gets, valid for both stores,
// and the record field that owns each.
func TestLayout(t *testing.T) {
	const id = "f0123456789abcdef01234567"
	live := objkey.LivePrefix(id)
	for _, tc := range []struct{ key, want, owner string }{
		{objkey.File(id), "files/" + id, "files/" + id},
		{objkey.Tail(id, 8<<20+5), "tails/" + id + "/8388613", "tails/" + id + "/8388613"},
		{live, "live/" + id + "/", "live/" + id + "/"},
		{objkey.LivePart(live, 1), "live/" + id + "/1", "live/" + id + "/"},
		{objkey.LivePart(live, 10000), "live/" + id + "/10000", "live/" + id + "/"},
	} {
		if tc.key != tc.want {
			t.Errorf("key %q, want %q", tc.key, tc.want)
		}
		if got := objkey.Owner(tc.key); got != tc.owner {
			t.Errorf("Owner(%q) = %q, want %q", tc.key, got, tc.owner)
		}
		if tc.key != live {
			if err := objstore.ValidateKey(tc.key); err != nil {
				t.Errorf("%q: %v", tc.key, err)
			}
		}
	}
	if got := objkey.Owner("live/odd"); got != "live/odd" {
		t.Errorf("Owner of a key without a part: %q", got)
	}
	for _, p := range objkey.Prefixes() {
		if err := objstore.ValidateKey(p + "x"); err != nil {
			t.Errorf("prefix %q: %v", p, err)
		}
	}
}
