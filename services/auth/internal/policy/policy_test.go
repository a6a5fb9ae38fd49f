package policy

import (
	"errors"
	"strings"
	"testing"
)

func TestCheckUsername(t *testing.T) {
	p := Default()
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"bob", true},
		{"Alice", true},
		{"a1", false}, // too short
		{"abc", true},
		{strings.Repeat("a", 32), true},
		{strings.Repeat("a", 33), false},
		{"john.doe", true},
		{"john_doe-2", true},
		{"9lives", true},
		{"_bob", false}, // must start with letter or digit
		{".bob", false},
		{"-bob", false},
		{"bob.", true},
		{"bo b", false},
		{"bob!", false},
		{"bób", false}, // ASCII only
		{"bob\x00", false},
		{"", false},
		{"bob/x", false},
		{"bob*", false},
		{"bob>", false},
	} {
		err := p.CheckUsername(tc.name)
		if (err == nil) != tc.ok {
			t.Errorf("CheckUsername(%q) = %v, want ok=%v", tc.name, err, tc.ok)
		}
		if err != nil {
			var v *Violation
			if !errors.As(err, &v) || !errors.Is(err, ErrInvalidUsername) {
				t.Errorf("CheckUsername(%q) = %T %v, want *Violation of ErrInvalidUsername", tc.name, err, err)
			}
			if !strings.Contains(v.Msg, "3-32 characters") {
				t.Errorf("message %q does not state the rule", v.Msg)
			}
		}
	}
}

func TestCheckPassword(t *testing.T) {
	p := Default()
	for _, tc := range []struct {
		user, pw string
		ok       bool
		msg      string // substring of the message when rejected
	}{
		{"bob", "correct horse", true, ""},
		{"bob", "1234567", false, "at least 8"},
		{"bob", "abcdefgh", true, ""},               // no composition rules
		{"bob", "日本語のパスワ", false, "at least 8"},     // 7 code points, 21 bytes
		{"bob", "日本語のパスワード", true, ""},              // 9 code points
		{"bob", strings.Repeat("x", 256), true, ""}, // long passphrases welcome
		{"bob", strings.Repeat("x", 257), false, "at most 256"},
		{"bob", strings.Repeat("é", 256), true, ""}, // 512 bytes, 256 code points
		{"longusername", "LongUserName", false, "username"},
		{"bob", "password", false, "commonly used"},
		{"bob", "PassWord1", false, "commonly used"},
		{"bob", "12345678", false, "commonly used"},
		{"bob", "qwertyuiop", false, "commonly used"},
		{"bob", "password-for-bob", true, ""},
	} {
		err := p.CheckPassword(tc.user, tc.pw)
		if (err == nil) != tc.ok {
			t.Errorf("CheckPassword(%q, %q) = %v, want ok=%v", tc.user, tc.pw, err, tc.ok)
			continue
		}
		if err != nil {
			if !errors.Is(err, ErrWeakPassword) {
				t.Errorf("CheckPassword(%q) = %v, want ErrWeakPassword", tc.pw, err)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("CheckPassword(%q) message %q, want it to mention %q", tc.pw, err, tc.msg)
			}
		}
	}
}

func TestCustomPolicy(t *testing.T) {
	p := Policy{UsernameMin: 5, UsernameMax: 8, PasswordMin: 12, PasswordMax: 64}
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	if err := p.CheckUsername("abcd"); err == nil || !strings.Contains(err.Error(), "5-8 characters") {
		t.Errorf("CheckUsername(short) = %v", err)
	}
	if err := p.CheckPassword("abcde", "elevenchars"); err == nil || !strings.Contains(err.Error(), "at least 12") {
		t.Errorf("CheckPassword(short) = %v", err)
	}
}

func TestValidate(t *testing.T) {
	for _, p := range []Policy{
		{UsernameMin: 0, UsernameMax: 32, PasswordMin: 8, PasswordMax: 256},
		{UsernameMin: 5, UsernameMax: 4, PasswordMin: 8, PasswordMax: 256},
		{UsernameMin: 3, UsernameMax: 32, PasswordMin: 6, PasswordMax: 256},
		{UsernameMin: 3, UsernameMax: 32, PasswordMin: 8, PasswordMax: 32},
	} {
		if err := p.Validate(); !errors.Is(err, ErrInvalidPolicy) {
			t.Errorf("Validate(%+v) = %v", p, err)
		}
	}
}

func TestCanonical(t *testing.T) {
	if Canonical("Alice.Smith") != "alice.smith" {
		t.Fatal(Canonical("Alice.Smith"))
	}
}

func TestNormalizePassword(t *testing.T) {
	composed := "caf\u00e9 au lait"    // é as one code point
	decomposed := "cafe\u0301 au lait" // e + combining acute accent
	if NormalizePassword(composed) != NormalizePassword(decomposed) {
		t.Fatal("composed and decomposed forms differ after normalization")
	}
	if got := NormalizePassword("ｐａｓｓ"); got != "pass" { // fullwidth letters
		t.Fatalf("fullwidth normalized to %q", got)
	}
}
