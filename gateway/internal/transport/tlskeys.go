package transport

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"hash"

	"golang.org/x/crypto/chacha20poly1305"
)

// The TLS 1.3 key schedule's last steps, for the record layer in
// tlsrecord.go: from an application traffic secret (which crypto/tls hands
// out through tls.Config.KeyLogWriter, its public API for key logging) to
// the record protection key and IV (RFC 8446 §7.3), and the secret's
// update on a KeyUpdate (§7.2).

// suite13 is what the record layer needs of a TLS 1.3 cipher suite.
type suite13 struct {
	id      uint16
	keyLen  int
	hashLen int
	hash    func() hash.Hash
	aead    func(key []byte) (cipher.AEAD, error)
}

func aesGCM(key []byte) (cipher.AEAD, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

// suites13 are the TLS 1.3 suites crypto/tls negotiates (RFC 8446 §B.4).
var suites13 = [...]suite13{
	{tls.TLS_AES_128_GCM_SHA256, 16, sha256.Size, sha256.New, aesGCM},
	{tls.TLS_AES_256_GCM_SHA384, 32, sha512.Size384, sha512.New384, aesGCM},
	{tls.TLS_CHACHA20_POLY1305_SHA256, chacha20poly1305.KeySize, sha256.Size, sha256.New, chacha20poly1305.New},
}

func suiteByID(id uint16) *suite13 {
	for i := range suites13 {
		if suites13[i].id == id {
			return &suites13[i]
		}
	}
	return nil
}

const (
	maxSecretLen = sha512.Size384 // the longest hash of suites13
	maxKeyLen    = 32
	ivLen        = 12 // every TLS 1.3 AEAD's nonce (RFC 8446 §5.3)
	aeadTagLen   = 16 // every TLS 1.3 AEAD's tag
)

// expandLabel is HKDF-Expand-Label(secret, label, "", length) (RFC 8446
// §7.1): HKDF-Expand with the info
//
//	struct {
//	    uint16 length = Length;
//	    opaque label<7..255> = "tls13 " + Label;
//	    opaque context<0..255> = Context;  (empty here)
//	} HkdfLabel;
func expandLabel(s *suite13, secret []byte, label string, length int) ([]byte, error) {
	info := make([]byte, 0, 2+1+6+len(label)+1)
	info = append(info, byte(length>>8), byte(length), byte(6+len(label)))
	info = append(info, "tls13 "...)
	info = append(info, label...)
	info = append(info, 0)
	return hkdf.Expand(s.hash, secret, string(info), length)
}

// trafficKeys are the keys of one direction of a TLS 1.3 connection: the
// current application traffic secret and the IV derived from it. The key
// is derived again whenever the AEAD is built (aead), not kept: an idle
// connection holds as little as it can. Arrays, so a connection holds no
// pointer for them.
type trafficKeys struct {
	secret [maxSecretLen]byte
	iv     [ivLen]byte
}

// setSecret makes secret the current traffic secret and derives the
// record IV from it (RFC 8446 §7.3):
//
//	[sender]_write_iv  = HKDF-Expand-Label(Secret, "iv", "", iv_length)
func (k *trafficKeys) setSecret(s *suite13, secret []byte) error {
	if len(secret) != s.hashLen {
		return errBadSecret
	}
	iv, err := expandLabel(s, secret, "iv", ivLen)
	if err != nil {
		return err
	}
	clear(k.secret[:])
	copy(k.secret[:], secret)
	copy(k.iv[:], iv)
	clear(iv)
	return nil
}

// key derives the record protection key (RFC 8446 §7.3):
//
//	[sender]_write_key = HKDF-Expand-Label(Secret, "key", "", key_length)
//
// The caller clears it after use.
func (k *trafficKeys) key(s *suite13) ([]byte, error) {
	return expandLabel(s, k.secret[:s.hashLen], "key", s.keyLen)
}

// aead builds the suite's AEAD under the current key.
func (k *trafficKeys) aead(s *suite13) (cipher.AEAD, error) {
	key, err := k.key(s)
	if err != nil {
		return nil, err
	}
	a, err := s.aead(key)
	clear(key)
	return a, err
}

// update moves to the next traffic secret (RFC 8446 §7.2):
//
//	application_traffic_secret_N+1 =
//	    HKDF-Expand-Label(application_traffic_secret_N, "traffic upd", "", Hash.length)
func (k *trafficKeys) update(s *suite13) error {
	next, err := expandLabel(s, k.secret[:s.hashLen], "traffic upd", s.hashLen)
	if err != nil {
		return err
	}
	err = k.setSecret(s, next)
	clear(next)
	return err
}

func (k *trafficKeys) zero() {
	clear(k.secret[:])
	clear(k.iv[:])
}

var errBadSecret = errors.New("tls: traffic secret of the wrong length")

// keyLog is the tls.Config.KeyLogWriter of one server handshake: it keeps
// the two application traffic secrets of the NSS key log lines crypto/tls
// writes (one Write per line)
//
//	CLIENT_TRAFFIC_SECRET_0 <client random, hex> <secret, hex>
//	SERVER_TRAFFIC_SECRET_0 <client random, hex> <secret, hex>
//
// and ignores the other lines (handshake secrets, TLS 1.2's CLIENT_RANDOM).
type keyLog struct {
	client, server []byte
}

var (
	labelClientTraffic = []byte("CLIENT_TRAFFIC_SECRET_0 ")
	labelServerTraffic = []byte("SERVER_TRAFFIC_SECRET_0 ")
)

func (l *keyLog) Write(line []byte) (int, error) {
	var dst *[]byte
	switch {
	case bytes.HasPrefix(line, labelClientTraffic):
		dst = &l.client
	case bytes.HasPrefix(line, labelServerTraffic):
		dst = &l.server
	default:
		return len(line), nil
	}
	fields := bytes.Fields(line)
	if len(fields) != 3 || len(fields[2]) > 2*maxSecretLen {
		return 0, errBadKeyLog
	}
	secret := make([]byte, hex.DecodedLen(len(fields[2])))
	if _, err := hex.Decode(secret, fields[2]); err != nil {
		return 0, errBadKeyLog
	}
	clear(*dst)
	*dst = secret
	return len(line), nil
}

// zero forgets the secrets.
func (l *keyLog) zero() {
	clear(l.client)
	clear(l.server)
	l.client, l.server = nil, nil
}

var errBadKeyLog = errors.New("tls: unexpected key log line")
