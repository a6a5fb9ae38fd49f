package token

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

func signer(t *testing.T, key byte, now func() time.Time) *Signer {
	t.Helper()
	s, err := NewSigner(bytes.Repeat([]byte{key}, 32), now)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestTokens(t *testing.T) {
	now := time.UnixMilli(1_700_000_000_000)
	clock := func() time.Time { return now }
	s := signer(t, 1, clock)
	c := Claims{SessionID: "sabc", UserID: "uabc", Username: "Alice", IssuedAt: now, ExpiresAt: now.Add(time.Hour)}
	tok, err := s.Sign(c)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(tok, "v1.") || strings.Count(tok, ".") != 2 {
		t.Fatalf("token %q is not v1.<payload>.<mac>", tok)
	}
	got, err := s.Verify(tok)
	if err != nil || got.SessionID != "sabc" || got.UserID != "uabc" || got.Username != "Alice" ||
		!got.ExpiresAt.Equal(c.ExpiresAt) || !got.IssuedAt.Equal(now) {
		t.Fatalf("Verify = %+v, %v", got, err)
	}

	// The generation travels in the token.
	c5 := c
	c5.Gen = 5
	tok5, err := s.Sign(c5)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := s.Verify(tok5); err != nil || got.Gen != 5 {
		t.Fatalf("Verify(generation 5) = %+v, %v", got, err)
	}

	payload := tok[3:strings.LastIndexByte(tok, '.')]
	mac := tok[strings.LastIndexByte(tok, '.')+1:]
	forgedPayload, _ := s.Sign(Claims{SessionID: "sabc", UserID: "uevil", ExpiresAt: now.Add(time.Hour)})
	evilPayload := forgedPayload[3:strings.LastIndexByte(forgedPayload, '.')]
	otherKey, _ := signer(t, 2, clock).Sign(c)

	for name, bad := range map[string]string{
		"empty":            "",
		"garbage":          "hello",
		"no mac":           "v1." + payload,
		"empty mac":        "v1." + payload + ".",
		"wrong version":    "v2." + payload + "." + mac,
		"swapped payload":  "v1." + evilPayload + "." + mac,
		"flipped mac":      "v1." + payload + "." + flip(mac),
		"other key":        otherKey,
		"mac not base64":   "v1." + payload + ".!!!!",
		"padded mac":       tok + "=",
		"too long":         "v1." + strings.Repeat("A", 5000) + "." + mac,
		"payload not json": resign(s, "v1."+b64.EncodeToString([]byte("not json"))),
		"payload no ids":   resign(s, "v1."+b64.EncodeToString([]byte(`{"exp":99999999999999}`))),
		"payload not b64":  resign(s, "v1.*"),
	} {
		if _, err := s.Verify(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: Verify(%q) = %v, want ErrInvalid", name, bad, err)
		}
	}

	now = now.Add(time.Hour) // expiry is exclusive
	if _, err := s.Verify(tok); !errors.Is(err, ErrExpired) {
		t.Fatalf("Verify(expired) = %v, want ErrExpired", err)
	}
	// A forged token is reported invalid, never expired.
	if _, err := s.Verify("v1." + payload + "." + flip(mac)); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Verify(forged expired) = %v", err)
	}
}

func TestShortKeyRejected(t *testing.T) {
	if _, err := NewSigner(make([]byte, 31), nil); err == nil {
		t.Fatal("31-byte key accepted")
	}
}

func flip(s string) string {
	b := []byte(s)
	if b[0] == 'A' {
		b[0] = 'B'
	} else {
		b[0] = 'A'
	}
	return string(b)
}

func resign(s *Signer, signed string) string {
	return signed + "." + b64.EncodeToString(s.mac(signed))
}
