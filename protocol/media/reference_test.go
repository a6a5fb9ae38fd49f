package media_test

import (
	"crypto/aes"
	"crypto/cipher"
	"testing"
)

// referenceSeal is the packet written out from the package comment with the
// standard library directly: header, then GCM over the payload with the
// header as additional data.
func referenceSeal(t *testing.T, key, nonce, header, payload []byte) []byte {
	t.Helper()
	b, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	g, err := cipher.NewGCM(b)
	if err != nil {
		t.Fatal(err)
	}
	return g.Seal(append([]byte(nil), header...), nonce, payload, header)
}
