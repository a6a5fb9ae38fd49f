package password

import (
	"context"
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"
)

// fast are low parameters that keep tests quick; production uses DefaultParams.
var fast = Params{Memory: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}

func newHasher(t *testing.T, p Params) *Hasher {
	t.Helper()
	h, err := NewHasher(p, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestHashVerifyDefaults(t *testing.T) {
	var ops []string
	h, err := NewHasher(DefaultParams(), 1, func(op string, _ time.Duration) { ops = append(ops, op) })
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	enc, err := h.Hash(ctx, "correct horse battery staple")
	if err != nil {
		t.Fatal(err)
	}
	// The OWASP parameters appear verbatim in the PHC string.
	re := regexp.MustCompile(`^\$argon2id\$v=19\$m=19456,t=2,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$`)
	if !re.MatchString(enc) {
		t.Fatalf("hash %q does not match PHC format %s", enc, re)
	}
	if ok, err := h.Verify(ctx, enc, "correct horse battery staple"); err != nil || !ok {
		t.Fatalf("Verify(right password) = %v, %v; want true", ok, err)
	}
	if ok, err := h.Verify(ctx, enc, "correct horse battery stapler"); err != nil || ok {
		t.Fatalf("Verify(wrong password) = %v, %v; want false", ok, err)
	}
	if strings.Join(ops, ",") != "hash,verify,verify" {
		t.Fatalf("observed ops %v", ops)
	}
}

func TestSaltsDiffer(t *testing.T) {
	h := newHasher(t, fast)
	a, _ := h.Hash(context.Background(), "same password")
	b, _ := h.Hash(context.Background(), "same password")
	if a == b {
		t.Fatal("two hashes of one password are equal: salt not random")
	}
}

func TestVerifyReadsParamsFromHash(t *testing.T) {
	ctx := context.Background()
	old := newHasher(t, Params{Memory: 32, Time: 3, Threads: 2, SaltLen: 8, KeyLen: 16})
	enc, err := old.Hash(ctx, "hunter2hunter2")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(enc, "$argon2id$v=19$m=32,t=3,p=2$") {
		t.Fatalf("hash %q", enc)
	}
	// A hasher configured differently still verifies the old hash.
	cur := newHasher(t, fast)
	if ok, err := cur.Verify(ctx, enc, "hunter2hunter2"); err != nil || !ok {
		t.Fatalf("Verify with other configured params = %v, %v; want true", ok, err)
	}
	if ok, _ := cur.Verify(ctx, enc, "hunter2hunter3"); ok {
		t.Fatal("wrong password accepted")
	}
	if !cur.NeedsRehash(enc) {
		t.Fatal("NeedsRehash(old params) = false")
	}
	fresh, _ := cur.Hash(ctx, "x")
	if cur.NeedsRehash(fresh) {
		t.Fatal("NeedsRehash(current params) = true")
	}
}

func TestDecodeRejectsMalformed(t *testing.T) {
	good := "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHRzYWx0c2FsdA$a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2U"
	if _, _, _, err := Decode(good); err != nil {
		t.Fatalf("Decode(good) = %v", err)
	}
	for name, enc := range map[string]string{
		"empty":           "",
		"argon2i":         strings.Replace(good, "argon2id", "argon2i", 1),
		"old version":     strings.Replace(good, "v=19", "v=16", 1),
		"param order":     strings.Replace(good, "m=64,t=1,p=1", "t=1,m=64,p=1", 1),
		"trailing params": strings.Replace(good, "p=1", "p=1,x=2", 1),
		"huge memory":     strings.Replace(good, "m=64", "m=99999999", 1),
		"zero time":       strings.Replace(good, "t=1", "t=0", 1),
		"bad salt b64":    strings.Replace(good, "c2FsdHNh", "c2F!dHNh", 1),
		"padded key":      good + "==",
		"missing key":     good[:strings.LastIndex(good, "$")],
	} {
		if _, _, _, err := Decode(enc); !errors.Is(err, ErrMalformedHash) {
			t.Errorf("%s: Decode(%q) err = %v, want ErrMalformedHash", name, enc, err)
		}
		h := newHasher(t, fast)
		if ok, err := h.Verify(context.Background(), enc, "x"); ok || err == nil {
			t.Errorf("%s: Verify = %v, %v; want error", name, ok, err)
		}
	}
}

func TestParamsValidate(t *testing.T) {
	if err := DefaultParams().Validate(); err != nil {
		t.Fatal(err)
	}
	for _, p := range []Params{
		{Memory: 4, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32},  // below 8*p
		{Memory: 64, Time: 0, Threads: 1, SaltLen: 16, KeyLen: 32}, // no passes
		{Memory: 64, Time: 1, Threads: 0, SaltLen: 16, KeyLen: 32}, // no lanes
		{Memory: 64, Time: 1, Threads: 1, SaltLen: 4, KeyLen: 32},  // short salt
		{Memory: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 8},  // short key
	} {
		if err := p.Validate(); !errors.Is(err, ErrInvalidParams) {
			t.Errorf("Validate(%+v) = %v", p, err)
		}
	}
}

func TestHashWaitsForSlotUntilContextEnds(t *testing.T) {
	h, _ := NewHasher(fast, 1, nil)
	h.sem <- struct{}{} // the only slot is busy
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := h.Hash(ctx, "password"); !errors.Is(err, context.Canceled) {
		t.Fatalf("Hash with busy semaphore and cancelled ctx = %v", err)
	}
}
