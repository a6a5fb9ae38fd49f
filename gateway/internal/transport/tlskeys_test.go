package transport

import (
	"bytes"
	"crypto/tls"
	"encoding/hex"
	"strings"
	"testing"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestTrafficKeysRFC8448 checks the key and IV derivation against RFC
// 8448 §3 ("Simple 1-RTT Handshake", TLS_AES_128_GCM_SHA256): the client
// and server application traffic secrets and the keys and IVs derived
// from them.
func TestTrafficKeysRFC8448(t *testing.T) {
	suite := suiteByID(tls.TLS_AES_128_GCM_SHA256)
	for _, v := range []struct{ name, secret, key, iv string }{
		{"client", "9e 40 64 6c e7 9a 7f 9d c0 5a f8 88 9b ce 65 52 87 5a fa 0b 06 df 00 87 f7 92 eb b7 c1 75 04 a5",
			"17 42 2d da 59 6e d5 d9 ac d8 90 e3 c6 3f 50 51", "5b 78 92 3d ee 08 57 90 33 e5 23 d9"},
		{"server", "a1 1a f9 f0 55 31 f8 56 ad 47 11 6b 45 a9 50 32 82 04 b4 f4 4b fb 6b 3a 4b 4f 1f 3f cb 63 16 43",
			"9f 02 28 3b 6c 9c 07 ef c2 6b b9 f2 ac 92 e3 56", "cf 78 2b 88 dd 83 54 9a ad f1 e9 84"},
	} {
		var k trafficKeys
		if err := k.setSecret(suite, unhex(t, v.secret)); err != nil {
			t.Fatal(err)
		}
		key, err := k.key(suite)
		if err != nil {
			t.Fatal(err)
		}
		if got := key; !bytes.Equal(got, unhex(t, v.key)) {
			t.Errorf("%s key = %x, want %s", v.name, got, v.key)
		}
		if got := k.iv[:]; !bytes.Equal(got, unhex(t, v.iv)) {
			t.Errorf("%s iv = %x, want %s", v.name, got, v.iv)
		}
	}
}

// TestKeyUpdateChangesKeys: a KeyUpdate gives every suite a new secret,
// key and IV. (Whether they are the ones a peer moves to is checked by
// talking on after KeyUpdates both ways with openssl, tlsopenssl_test.go:
// key logs do not show updated secrets.)
func TestKeyUpdateChangesKeys(t *testing.T) {
	for i := range suites13 {
		s := &suites13[i]
		var k trafficKeys
		secret := bytes.Repeat([]byte{7}, s.hashLen)
		if err := k.setSecret(s, secret); err != nil {
			t.Fatal(err)
		}
		before := k
		if err := k.update(s); err != nil {
			t.Fatal(err)
		}
		k0, _ := before.key(s)
		k1, _ := k.key(s)
		if bytes.Equal(before.secret[:s.hashLen], k.secret[:s.hashLen]) || bytes.Equal(k0, k1) || before.iv == k.iv {
			t.Errorf("suite %x: KeyUpdate left the keys as they were", s.id)
		}
	}
}

func TestKeyLogParsesTrafficSecrets(t *testing.T) {
	var l keyLog
	for _, line := range []string{
		"CLIENT_HANDSHAKE_TRAFFIC_SECRET 00 11\n",
		"CLIENT_TRAFFIC_SECRET_0 abcd 0102\n",
		"SERVER_TRAFFIC_SECRET_0 abcd 0304\n",
		"EXPORTER_SECRET abcd 0506\n",
	} {
		if _, err := l.Write([]byte(line)); err != nil {
			t.Fatalf("%q: %v", line, err)
		}
	}
	if !bytes.Equal(l.client, []byte{1, 2}) || !bytes.Equal(l.server, []byte{3, 4}) {
		t.Errorf("client %x server %x", l.client, l.server)
	}
	if _, err := l.Write([]byte("SERVER_TRAFFIC_SECRET_0 abcd zz\n")); err == nil {
		t.Error("a malformed secret was accepted")
	}
	l.zero()
	if l.client != nil || l.server != nil {
		t.Error("zero kept the secrets")
	}
}
