// Package policy holds the account rules: which usernames are acceptable,
// how they are compared, and which passwords are accepted.
//
// Passwords follow NIST SP 800-63B §3.1.1.2 (rev. 4 §5.1.1.2): a minimum
// length (counted in Unicode code points), a generous maximum so
// passphrases fit, no composition rules (no "one digit and one symbol"), and
// a check against commonly used and context-specific values (here: the
// username and a short built-in list of the most common passwords).
package policy

import (
	"golang.org/x/text/unicode/norm"

	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Sentinel errors; every rejection is a *Violation wrapping one of them.
var (
	ErrInvalidUsername = errors.New("invalid username")
	ErrWeakPassword    = errors.New("weak password")
	ErrInvalidPolicy   = errors.New("invalid policy")
)

// Violation is a rule a username or password breaks. Msg is written for the
// end user and states the rule, so it is safe to send to clients.
type Violation struct {
	Err error // ErrInvalidUsername or ErrWeakPassword
	Msg string
}

func (v *Violation) Error() string { return v.Msg }
func (v *Violation) Unwrap() error { return v.Err }

// Policy is the set of length limits; the character rules are fixed.
type Policy struct {
	UsernameMin, UsernameMax int // bytes (usernames are ASCII)
	PasswordMin, PasswordMax int // Unicode code points
}

// Default is the policy Parley ships with.
func Default() Policy {
	return Policy{UsernameMin: 3, UsernameMax: 32, PasswordMin: 8, PasswordMax: 256}
}

// Validate checks that the limits make sense. NIST requires at least 8
// characters and recommends allowing at least 64.
func (p Policy) Validate() error {
	switch {
	case p.UsernameMin < 1 || p.UsernameMax < p.UsernameMin || p.UsernameMax > 64:
		return fmt.Errorf("username length must satisfy 1 <= min <= max <= 64: %w", ErrInvalidPolicy)
	case p.PasswordMin < 8:
		return fmt.Errorf("minimum password length must be at least 8 (NIST SP 800-63B): %w", ErrInvalidPolicy)
	case p.PasswordMax < 64 || p.PasswordMax < p.PasswordMin || p.PasswordMax > 4096:
		return fmt.Errorf("maximum password length must be between max(64, min) and 4096: %w", ErrInvalidPolicy)
	}
	return nil
}

// Canonical is the form usernames are compared and stored under: ASCII
// lowercase, so "Alice" and "alice" are one account. The display form the
// user chose is kept separately.
func Canonical(username string) string { return strings.ToLower(username) }

// UsernameRule describes the username rule for messages.
func (p Policy) UsernameRule() string {
	return fmt.Sprintf("usernames are %d-%d characters: ASCII letters, digits, '_', '.' or '-', starting with a letter or digit",
		p.UsernameMin, p.UsernameMax)
}

// CheckUsername returns a *Violation unless name is acceptable.
func (p Policy) CheckUsername(name string) error {
	bad := func() error { return &Violation{Err: ErrInvalidUsername, Msg: p.UsernameRule()} }
	if len(name) < p.UsernameMin || len(name) > p.UsernameMax {
		return bad()
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		alnum := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
		if !alnum && (i == 0 || c != '_' && c != '.' && c != '-') {
			return bad()
		}
	}
	return nil
}

// CheckPassword returns a *Violation unless password is acceptable for an
// account named username.
func (p Policy) CheckPassword(username, password string) error {
	n := utf8.RuneCountInString(password)
	weak := func(format string, args ...any) error {
		return &Violation{Err: ErrWeakPassword, Msg: fmt.Sprintf(format, args...)}
	}
	switch {
	case n < p.PasswordMin:
		return weak("passwords must be at least %d characters; a passphrase of several words is easiest to remember", p.PasswordMin)
	case n > p.PasswordMax:
		return weak("passwords must be at most %d characters", p.PasswordMax)
	case strings.EqualFold(password, username):
		return weak("the password must not be the username")
	case isCommon(password):
		return weak("this password is among the most commonly used ones; choose another (at least %d characters, any characters allowed)", p.PasswordMin)
	}
	return nil
}

// common lists passwords from the top of public breach-frequency lists that
// satisfy the minimum length. A short list catches the worst choices without
// shipping a corpus; a fuller blocklist (e.g. a k-anonymity breach lookup)
// would be the next step.
var common = map[string]bool{
	"password": true, "password1": true, "password12": true, "password123": true, "passw0rd": true,
	"12345678": true, "123456789": true, "1234567890": true, "87654321": true, "11111111": true,
	"00000000": true, "12341234": true, "qwertyuiop": true, "qwerty123": true, "qwertyui": true,
	"1q2w3e4r": true, "1qaz2wsx": true, "abcd1234": true, "abc12345": true, "iloveyou": true,
	"sunshine": true, "princess": true, "football": true, "baseball": true, "welcome1": true,
	"letmein1": true, "trustno1": true, "admin123": true, "superman": true, "asdfghjkl": true,
}

func isCommon(pw string) bool { return common[strings.ToLower(pw)] }

// NormalizePassword applies Unicode NFKC normalization, as NIST SP 800-63B
// §5.1.1.2 recommends, so the same passphrase typed on keyboards that
// produce composed or decomposed characters (é as one code point or as e +
// combining accent) verifies the same. Registration and login both hash the
// normalized form.
func NormalizePassword(pw string) string { return norm.NFKC.String(pw) }
