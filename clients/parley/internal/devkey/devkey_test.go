package devkey

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
)

func TestCreateLoad(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "cfg", "parley")
	path := filepath.Join(dir, FileName)
	priv, created, err := LoadOrCreate(path)
	if err != nil || !created {
		t.Fatalf("LoadOrCreate = %v, %v", created, err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, want 0600", st.Mode().Perm())
	}
	dst, _ := os.Stat(dir)
	if dst.Mode().Perm() != 0o700 {
		t.Errorf("directory mode %v, want 0700", dst.Mode().Perm())
	}
	again, created, err := LoadOrCreate(path)
	if err != nil || created {
		t.Fatalf("second LoadOrCreate = %v, %v", created, err)
	}
	if !priv.Equal(again) {
		t.Fatal("the loaded key differs from the created one")
	}
	if _, err := Create(path); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("Create over an existing key: %v, want fs.ErrExist", err)
	}
	// The key still signs: it is a working Ed25519 key.
	sig := ed25519.Sign(again, []byte("x"))
	if !ed25519.Verify(priv.Public().(ed25519.PublicKey), []byte("x"), sig) {
		t.Fatal("signature does not verify")
	}
	// No temporary files left behind.
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Errorf("directory holds %d entries, want just the key", len(ents))
	}
}

func TestCreateRace(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	keys := make([]ed25519.PrivateKey, 8)
	var wg sync.WaitGroup
	for i := range keys {
		wg.Go(func() {
			k, _, err := LoadOrCreate(path)
			if err != nil {
				t.Error(err)
			}
			keys[i] = k
		})
	}
	wg.Wait()
	for _, k := range keys[1:] {
		if !k.Equal(keys[0]) {
			t.Fatal("concurrent LoadOrCreate made different keys")
		}
	}
}

func TestLoadBad(t *testing.T) {
	dir := t.TempDir()
	for name, content := range map[string]string{
		"garbage":        "not a key",
		"wrong pem type": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
		"bad der":        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
	} {
		p := filepath.Join(dir, strings.ReplaceAll(name, " ", "_"))
		os.WriteFile(p, []byte(content), 0o600)
		if _, err := Load(p); !errors.Is(err, ErrBadKeyFile) {
			t.Errorf("%s: Load = %v, want ErrBadKeyFile", name, err)
		}
	}
	if _, err := Load(filepath.Join(dir, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing: %v", err)
	}
}

func seqKey(start, step int) ed25519.PublicKey {
	k := make([]byte, 32)
	for i := range k {
		k[i] = byte(start + step*i)
	}
	return k
}

func TestDeviceID(t *testing.T) {
	// Vectors from Python: hashlib.sha256(bytes(range(32))).hexdigest()[:16].
	for _, tc := range []struct {
		key  ed25519.PublicKey
		want string
	}{
		{seqKey(0, 1), "630dcd2966c43366"},
		{seqKey(255, -1), "1865c00831e73f7e"},
	} {
		if got := DeviceID(tc.key); got != tc.want {
			t.Errorf("DeviceID(%x) = %s, want %s", tc.key, got, tc.want)
		}
	}
}

// safetyTranscription is §20.1 written out again independently (big
// integers, explicit sort) to check SafetyNumber against.
func safetyTranscription(a, b []byte) string {
	keys := [][]byte{a, b}
	sort.Slice(keys, func(i, j int) bool { return hex.EncodeToString(keys[i]) < hex.EncodeToString(keys[j]) })
	sum := sha512.Sum512(append(append([]byte("parley safety number v1"), keys[0]...), keys[1]...))
	var out []string
	for i := 0; i < 60; i += 5 {
		n := new(big.Int).SetBytes(sum[i : i+5])
		out = append(out, fmt.Sprintf("%05d", new(big.Int).Mod(n, big.NewInt(100000)).Int64()))
	}
	return strings.Join(out, " ")
}

func TestSafetyNumber(t *testing.T) {
	a, b := seqKey(0, 1), seqKey(255, -1)
	// Computed with Python's hashlib, independently of this package.
	const want = "93728 09215 45697 87620 41460 69609 82084 46830 65799 62177 18889 95051"
	for _, pair := range [][2]ed25519.PublicKey{{a, b}, {b, a}} {
		got, err := SafetyNumber(pair[0], pair[1])
		if err != nil || got != want {
			t.Fatalf("SafetyNumber = %q, %v; want %q", got, err, want)
		}
	}
	if got := safetyTranscription(a, b); got != want {
		t.Fatalf("transcription disagrees with the vector: %q", got)
	}
	for range 50 {
		x, y := randKey(t), randKey(t)
		s1, _ := SafetyNumber(x, y)
		s2, _ := SafetyNumber(y, x)
		if s1 != s2 {
			t.Fatalf("not symmetric: %q vs %q", s1, s2)
		}
		if s1 != safetyTranscription(x, y) {
			t.Fatalf("SafetyNumber %q differs from the transcription %q", s1, safetyTranscription(x, y))
		}
		if len(s1) != 71 || strings.Count(s1, " ") != 11 {
			t.Fatalf("format: %q", s1)
		}
	}
	if _, err := SafetyNumber(a[:31], b); !errors.Is(err, ErrBadPublicKey) {
		t.Fatalf("short key: %v", err)
	}
	c, _ := SafetyNumber(a, seqKey(1, 1))
	if c == want {
		t.Fatal("a different key gave the same number")
	}
}

func randKey(t *testing.T) ed25519.PublicKey {
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return pub
}

func TestPins(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cfg", PinsFileName)
	p := OpenPins(path)
	k1, k2, k3 := randKey(t), randKey(t), randKey(t)

	steps := []struct {
		do   func() error
		user string
		key  ed25519.PublicKey
		want Status
	}{
		{nil, "u1", k1, FirstContact},
		{func() error { return p.Trust("u1", k1, false) }, "u1", k1, Known},
		{nil, "u1", k2, Changed},
		{nil, "u2", k1, FirstContact}, // pins are per user
		{func() error { return p.Trust("u1", k2, true) }, "u1", k2, Known},
		{nil, "u1", k1, Known}, // the first device stays pinned
		{nil, "u1", k3, Changed},
	}
	for i, s := range steps {
		if s.do != nil {
			if err := s.do(); err != nil {
				t.Fatalf("step %d: %v", i, err)
			}
		}
		got, err := p.Check(s.user, s.key)
		if err != nil || got != s.want {
			t.Fatalf("step %d: Check(%s) = %v, %v; want %v", i, s.user, got, err, s.want)
		}
	}

	// A second instance (another process) sees the same pins.
	q := OpenPins(path)
	if st, _ := q.Check("u1", k2); st != Known {
		t.Fatalf("reopened: %v", st)
	}
	list, err := q.List("u1")
	if err != nil || len(list) != 2 {
		t.Fatalf("List = %v, %v", list, err)
	}
	if !bytes.Equal(list[0].PublicKey, k1) || list[0].Verified || list[0].UserID != "u1" || list[0].DeviceID != DeviceID(k1) {
		t.Errorf("first pin %+v", list[0])
	}
	if !bytes.Equal(list[1].PublicKey, k2) || !list[1].Verified {
		t.Errorf("second pin %+v", list[1])
	}
	// Verifying later flips the flag without adding a key.
	if err := q.Trust("u1", k1, true); err != nil {
		t.Fatal(err)
	}
	list, _ = p.List("")
	if len(list) != 2 || !list[0].Verified {
		t.Fatalf("after verify: %+v", list)
	}
	st, _ := os.Stat(path)
	if st.Mode().Perm() != 0o600 {
		t.Errorf("pins mode %v", st.Mode().Perm())
	}

	if _, err := p.Check("", k1); !errors.Is(err, ErrNoUser) {
		t.Errorf("empty user: %v", err)
	}
	if err := p.Trust("u1", k1[:5], false); !errors.Is(err, ErrBadPublicKey) {
		t.Errorf("short key: %v", err)
	}
}

func TestPinsDamaged(t *testing.T) {
	path := filepath.Join(t.TempDir(), PinsFileName)
	os.WriteFile(path, []byte("{"), 0o600)
	p := OpenPins(path)
	if _, err := p.Check("u1", randKey(t)); err == nil {
		t.Fatal("a damaged pins file must not read as empty (that would accept any key)")
	}
	if err := p.Trust("u1", randKey(t), false); err == nil {
		t.Fatal("Trust over a damaged file must fail")
	}
}

func TestPinsConcurrent(t *testing.T) {
	path := filepath.Join(t.TempDir(), PinsFileName)
	var wg sync.WaitGroup
	keys := make([]ed25519.PublicKey, 10)
	for i := range keys {
		keys[i] = randKey(t)
		wg.Go(func() {
			// A fresh Pins each: separate instances only share the file lock.
			if err := OpenPins(path).Trust("u", keys[i], false); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	list, err := OpenPins(path).List("u")
	if err != nil || len(list) != len(keys) {
		t.Fatalf("%d pins, want %d (%v): an update was lost", len(list), len(keys), err)
	}
}
