// Package devkey is a device's identity for direct sessions
// (docs/protocol.md §20.1): its Ed25519 key pair kept in a file readable
// only by the user, the device_id the protocol names it by, the safety
// number two users compare out of band, and the pins (trust on first use)
// that decide whether a peer's key may be used at all.
//
// Files follow the terminal client's session-token store (clients/cmd/parley,
// store.go): mode 0600 in a directory created 0700, written to a
// temporary file and renamed (or linked) into place, so a crash never leaves
// half a file and a reader never sees one.
package devkey

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Errors.
var (
	// ErrBadKeyFile: the key file exists but does not hold an Ed25519
	// private key in PEM (PKCS #8).
	ErrBadKeyFile = errors.New("devkey: not an Ed25519 private key file")
	// ErrBadPublicKey: a public key that is not 32 bytes.
	ErrBadPublicKey = errors.New("devkey: an Ed25519 public key is 32 bytes")
)

// FileName is the conventional name of the key file inside the client's
// config directory (next to sessions.json).
const FileName = "device.key"

const pemType = "PRIVATE KEY" // PKCS #8, as `openssl genpkey -algorithm ed25519` writes

// Load reads the private key at path.
func Load(path string) (ed25519.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != pemType {
		return nil, fmt.Errorf("%s: %w", path, ErrBadKeyFile)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, ErrBadKeyFile)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%s: %w", path, ErrBadKeyFile)
	}
	return priv, nil
}

// Create makes a new key pair and stores it at path (mode 0600; missing
// directories are made 0700). It never replaces a file: when path exists
// it fails with an error matching fs.ErrExist, so two processes creating
// at once end up with one key (the loser loads the winner's).
func Create(path string) (ed25519.PrivateKey, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	f, err := os.CreateTemp(dir, filepath.Base(path)+".*")
	if err != nil {
		return nil, err
	}
	defer os.Remove(f.Name())
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return nil, err
	}
	if err := pem.Encode(f, &pem.Block{Type: pemType, Bytes: der}); err != nil {
		f.Close()
		return nil, err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return nil, err
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	// A hard link, unlike a rename, fails when the name is taken: the
	// complete file appears at path or nothing changes.
	if err := os.Link(f.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil, err
		}
		return nil, fmt.Errorf("storing the device key: %w", err)
	}
	return priv, nil
}

// LoadOrCreate loads the key at path, creating it first when there is
// none; created tells which happened (a new key must be registered with
// the server, RegisterDeviceRequest).
func LoadOrCreate(path string) (priv ed25519.PrivateKey, created bool, err error) {
	priv, err = Load(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return priv, false, err
	}
	priv, err = Create(path)
	if errors.Is(err, fs.ErrExist) { // another process was faster
		priv, err = Load(path)
		return priv, false, err
	}
	return priv, err == nil, err
}

// DeviceID is the protocol's name of a device (§20.1): the lowercase hex
// of the first 8 bytes of the SHA-256 of its public key.
func DeviceID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:8])
}

// SafetyNumber is the 60-digit number two users compare to make sure each
// holds the other's real key (§20.1): the two keys sorted bytewise, the
// SHA-512 of "parley safety number v1" followed by the lower and then the
// higher, the first 60 bytes of it in 12 chunks of 5, each read as a
// big-endian integer modulo 100000 and written as 5 digits, the groups
// separated by spaces. It is symmetric: both sides compute the same.
func SafetyNumber(a, b ed25519.PublicKey) (string, error) {
	if len(a) != ed25519.PublicKeySize || len(b) != ed25519.PublicKeySize {
		return "", ErrBadPublicKey
	}
	if bytes.Compare(a, b) > 0 {
		a, b = b, a
	}
	h := sha512.New()
	h.Write([]byte("parley safety number v1"))
	h.Write(a)
	h.Write(b)
	sum := h.Sum(nil)
	groups := make([]string, 12)
	for i := range groups {
		var chunk [8]byte
		copy(chunk[3:], sum[5*i:5*i+5])
		groups[i] = fmt.Sprintf("%05d", binary.BigEndian.Uint64(chunk[:])%100000)
	}
	return strings.Join(groups, " "), nil
}
