package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/term"
)

// Passwords never come from a command-line flag (visible in ps and shell
// history). In order of precedence they come from:
//
//  1. stdin, one line, with --password-stdin (for scripts and pipes);
//  2. the PARLEY_PASSWORD environment variable;
//  3. an interactive prompt without echo, when stdin is a terminal
//     (asked twice for register).

// terminal reads secrets from an interactive terminal.
type terminal interface {
	isTerminal() bool
	readSecret(prompt string) (string, error)
	readLine(prompt string) (string, error)
}

// passwordSource gathers what decides where the password comes from.
type passwordSource struct {
	fromStdin bool
	stdin     *bufio.Reader
	env       string // PARLEY_PASSWORD, "" when unset
	term      terminal
}

var (
	errNoPassword       = errors.New("no password: set PARLEY_PASSWORD, use --password-stdin, or run in a terminal")
	errEmptyPassword    = errors.New("empty password")
	errPasswordMismatch = errors.New("passwords do not match")
)

// password returns the password; confirm asks twice at the prompt.
func (s passwordSource) password(confirm bool) (string, error) {
	switch {
	case s.fromStdin:
		line, err := s.stdin.ReadString('\n')
		if err != nil && !(errors.Is(err, io.EOF) && line != "") {
			if errors.Is(err, io.EOF) {
				return "", fmt.Errorf("--password-stdin: no password on stdin")
			}
			return "", fmt.Errorf("--password-stdin: %w", err)
		}
		pw := strings.TrimRight(line, "\r\n")
		if pw == "" {
			return "", errEmptyPassword
		}
		return pw, nil
	case s.env != "":
		return s.env, nil
	case s.term != nil && s.term.isTerminal():
		pw, err := s.term.readSecret("Password: ")
		if err != nil {
			return "", err
		}
		if pw == "" {
			return "", errEmptyPassword
		}
		if confirm {
			again, err := s.term.readSecret("Repeat password: ")
			if err != nil {
				return "", err
			}
			if again != pw {
				return "", errPasswordMismatch
			}
		}
		return pw, nil
	default:
		return "", errNoPassword
	}
}

// ttyTerminal is the process's controlling terminal on stdin/stderr.
type ttyTerminal struct {
	in  *os.File
	out io.Writer
	buf *bufio.Reader // shared with the stdin reader so no input is lost
}

func (t ttyTerminal) isTerminal() bool { return term.IsTerminal(int(t.in.Fd())) }

func (t ttyTerminal) readSecret(prompt string) (string, error) {
	fmt.Fprint(t.out, prompt)
	b, err := term.ReadPassword(int(t.in.Fd()))
	fmt.Fprintln(t.out)
	if err != nil {
		return "", fmt.Errorf("reading password: %w", err)
	}
	return string(b), nil
}

func (t ttyTerminal) readLine(prompt string) (string, error) {
	fmt.Fprint(t.out, prompt)
	line, err := t.buf.ReadString('\n')
	if err != nil && line == "" {
		return "", err
	}
	return strings.TrimSpace(line), nil
}
