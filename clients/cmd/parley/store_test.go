package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parleychat/parley/clients/parley"
)

// The rules by which processes sharing the token store keep each
// session's newest token (the server retires a replaced token a minute
// after each resume, protocol §8.3).
func TestStoreKeepsNewestToken(t *testing.T) {
	const srv = "tcp://127.0.0.1:7420"
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	alice := func(sid, tok string, exp time.Duration) *parley.Session {
		return &parley.Session{UserID: "u1", Username: "alice", SessionID: sid, Token: tok, ExpiresAt: t0.Add(exp)}
	}
	tests := []struct {
		name      string
		saved     *parley.Session // alice's saved session before (logged in), nil: none
		save      *parley.Session
		fresh     bool
		wantToken string // alice's saved token after; "": none
	}{
		{"resume gives a newer token", alice("s1", "t1", 0), alice("s1", "t2", time.Minute), savedResumed, "t2"},
		{"a slower process saves an older token", alice("s1", "t2", time.Minute), alice("s1", "t1", 0), savedResumed, "t2"},
		{"the same token again", alice("s1", "t1", 0), alice("s1", "t1", 0), savedResumed, "t1"},
		{"a resume of a session the user replaced by logging in", alice("s2", "n1", 0), alice("s1", "t9", time.Hour), savedResumed, "n1"},
		{"a resume with nothing saved", nil, alice("s1", "t1", 0), savedResumed, "t1"},
		{"a login replaces a newer token of another session", alice("s1", "t9", time.Hour), alice("s2", "n1", 0), savedLogin, "n1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := store{dir: t.TempDir()}
			must(t, s.save(srv, &parley.Session{UserID: "u2", Username: "bob", SessionID: "b1", Token: "tb"}, savedLogin))
			if tt.saved != nil {
				must(t, s.save(srv, tt.saved, savedLogin))
			}
			must(t, s.save(srv, tt.save, tt.fresh))
			got, err := s.load(srv, "alice")
			must(t, err)
			if got == nil || got.Token != tt.wantToken {
				t.Errorf("alice's saved session = %+v, want token %q", got, tt.wantToken)
			}
			wantCurrent := "bob"
			if tt.saved != nil || tt.fresh {
				wantCurrent = "alice" // the last login; a resume does not change it
			}
			if cur, _ := s.load(srv, ""); cur == nil || cur.Username != wantCurrent {
				t.Errorf("current user = %+v, want %s", cur, wantCurrent)
			}
		})
	}
}

func TestStoreForgetsOnlyWhatIsNamed(t *testing.T) {
	const srv = "tcp://127.0.0.1:7420"
	tests := []struct {
		name           string
		sessionID, tok string
		wantKept       bool
	}{
		{"the refused token is the saved one", "s1", "t2", false},
		{"a newer token was saved since the refused one", "s1", "t1", true},
		{"the session ended (logout), whatever its token", "s1", "", false},
		{"another session of the user ended", "s0", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := store{dir: t.TempDir()}
			must(t, s.save(srv, &parley.Session{Username: "alice", SessionID: "s1", Token: "t2"}, savedLogin))
			must(t, s.forget(srv, "alice", tt.sessionID, tt.tok))
			got, err := s.load(srv, "alice")
			must(t, err)
			if (got != nil) != tt.wantKept {
				t.Errorf("after forget: %+v, want kept %v", got, tt.wantKept)
			}
		})
	}
}

// storeHelperEnv makes the test binary act as one more parley process
// saving sessions (TestStoreHelperProcess).
const storeHelperEnv = "PARLEY_TEST_STORE_HELPER"

// Processes (TUIs, CLI commands) update the store at the same moments:
// none may lose another's session. Each helper process saves its own
// users; all of them must be there at the end.
func TestStoreConcurrentProcesses(t *testing.T) {
	dir := t.TempDir()
	const procs, each = 6, 15
	var wg sync.WaitGroup
	errs := make(chan error, procs)
	for p := range procs {
		wg.Go(func() {
			cmd := exec.Command(os.Args[0], "-test.run=^TestStoreHelperProcess$")
			cmd.Env = append(os.Environ(), storeHelperEnv+"="+dir+","+strconv.Itoa(p)+","+strconv.Itoa(each))
			if out, err := cmd.CombinedOutput(); err != nil {
				errs <- fmt.Errorf("helper %d: %v\n%s", p, err, out)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	users, err := store{dir: dir}.users("tcp://127.0.0.1:7420")
	must(t, err)
	if len(users) != procs*each {
		t.Errorf("%d sessions saved, want %d: concurrent updates lost some", len(users), procs*each)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, sessionFile+".*")); len(left) > 0 {
		t.Errorf("temporary files left: %q", left)
	}
}

func TestStoreHelperProcess(t *testing.T) {
	arg := os.Getenv(storeHelperEnv)
	if arg == "" {
		return // only run as a helper
	}
	var dir string
	var p, each int
	if _, err := fmt.Sscanf(strings.ReplaceAll(arg, ",", " "), "%s %d %d", &dir, &p, &each); err != nil {
		t.Fatal(err)
	}
	s := store{dir: dir}
	for i := range each {
		name := fmt.Sprintf("user%d-%d", p, i)
		must(t, s.save("tcp://127.0.0.1:7420", &parley.Session{Username: name, SessionID: name, Token: "tok-" + name}, savedLogin))
	}
}
