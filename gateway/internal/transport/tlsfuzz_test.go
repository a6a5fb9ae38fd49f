package transport

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"testing"
)

// fuzzSecret is the client's traffic secret of the fuzzed records.
var fuzzSecret = bytes.Repeat([]byte{0x5a}, 32)

// fuzzMessage is what the seed records carry, in order: any input that
// yields data must yield a prefix of it (records are authenticated and
// numbered, so no reordering, cutting or forging gives anything else).
const fuzzMessage = "hello world"

// fuzzSeed seals the records of fuzzMessage as a client would: data, an
// empty record, a KeyUpdate, data under the new key, close_notify.
func fuzzSeed(t testing.TB) []byte {
	suite := suiteByID(tls.TLS_AES_128_GCM_SHA256)
	c := &recordConn{suite: suite}
	if err := c.out.keys.setSecret(suite, fuzzSecret); err != nil {
		t.Fatal(err)
	}
	c.out.mu.Lock()
	defer c.out.mu.Unlock()
	var out []byte
	var err error
	for _, r := range []struct {
		typ     byte
		content string
	}{
		{recordApplicationData, "hello "},
		{recordApplicationData, ""},
		{recordHandshake, "\x18\x00\x00\x01\x00"},
		{recordApplicationData, "world"},
		{recordAlert, "\x01\x00"},
	} {
		if out, err = c.sealRecord(out, r.typ, []byte(r.content)); err != nil {
			t.Fatal(err)
		}
		if r.typ == recordHandshake {
			if err := c.out.rekey(suite); err != nil {
				t.Fatal(err)
			}
		}
	}
	return out
}

// readRecords reads data through a record layer over b until an error.
func readRecords(t testing.TB, b []byte) ([]byte, error) {
	suite := suiteByID(tls.TLS_AES_128_GCM_SHA256)
	c := &recordConn{suite: suite, rd: bytes.NewReader(b)}
	if err := c.in.keys.setSecret(suite, fuzzSecret); err != nil {
		t.Fatal(err)
	}
	defer func() {
		c.in.mu.Lock()
		c.in.aead = nil
		sweeper.remove(&c.in)
		c.in.mu.Unlock()
	}()
	var got []byte
	buf := make([]byte, 7)
	for {
		n, err := c.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil {
			return got, err
		}
	}
}

func TestRecordReaderSeed(t *testing.T) {
	seed := fuzzSeed(t)
	got, err := readRecords(t, seed)
	if string(got) != fuzzMessage || err != io.EOF {
		t.Fatalf("read %q, %v; want %q and io.EOF", got, err, fuzzMessage)
	}
	got, err = readRecords(t, seed[:len(seed)-10])
	if string(got) != fuzzMessage || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("cut short: %q, %v", got, err)
	}
}

// FuzzRecordReader: whatever the bytes, the record reader ends with an
// error (no panic, no loop) and returns only authenticated data in order.
func FuzzRecordReader(f *testing.F) {
	seed := fuzzSeed(f)
	f.Add(seed)
	f.Add(seed[:30])
	f.Add(seed[recordHeaderLen+6+1+aeadTagLen:])
	f.Add([]byte{recordApplicationData, 3, 3, 0x41, 0x01})
	f.Add([]byte{recordChangeCipherSpec, 3, 3, 0, 1, 1})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := readRecords(t, b)
		if err == nil {
			t.Fatal("reading ended without an error")
		}
		if !bytes.HasPrefix([]byte(fuzzMessage), got) {
			t.Fatalf("read %q, not a prefix of %q", got, fuzzMessage)
		}
	})
}
