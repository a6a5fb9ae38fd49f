package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/parleychat/parley/clients/parley"
)

// sessionFile is the name of the token store inside the config directory;
// lockFile serializes its updates between processes.
const (
	sessionFile = "sessions.json"
	lockFile    = "sessions.lock"
)

// store keeps session tokens between runs, so `parley who` and `parley
// logout` work without the password. Tokens are bearer credentials: the file
// is written with mode 0600 in a 0700 directory, atomically (temp file and
// rename) so a crash never leaves half a file and a reader never sees one.
//
// Several processes share the file (TUIs in several terminals, CLI
// commands next to them), and several of them may use one session. The
// server rotates a session's token on every resume and refuses the
// replaced one a minute later (protocol §8.3), so every process saves each
// token it receives, reads the newest saved token just before it presents
// one, and an update never loses another process's: each is a
// read-modify-write under an exclusive lock on sessions.lock, and a token
// only replaces one of the same session that expires earlier.
type store struct {
	dir string
}

// storeData is the file's layout: per server (canonical address), the
// last user who logged in and each user's session.
type storeData struct {
	Servers map[string]*serverEntry `json:"servers"`
}

type serverEntry struct {
	// Current is the last user who logged in or registered (resumes do not
	// change it): the session commands use without --user.
	Current string                   `json:"current"`
	Users   map[string]*savedSession `json:"users"`
}

type savedSession struct {
	UserID    string    `json:"user_id"`
	Username  string    `json:"username"`
	SessionID string    `json:"session_id"`
	Token     string    `json:"token"`
	ExpiresAt time.Time `json:"expires_at,omitzero"`
}

func (s *savedSession) session() *parley.Session {
	return &parley.Session{UserID: s.UserID, Username: s.Username, SessionID: s.SessionID, Token: s.Token, ExpiresAt: s.ExpiresAt}
}

func (s store) path() string { return filepath.Join(s.dir, sessionFile) }

func (s store) read() (*storeData, error) {
	d := &storeData{Servers: map[string]*serverEntry{}}
	b, err := os.ReadFile(s.path())
	if errors.Is(err, fs.ErrNotExist) {
		return d, nil
	}
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, d); err != nil {
		return nil, fmt.Errorf("%s is damaged (%v); delete it and log in again", s.path(), err)
	}
	if d.Servers == nil {
		d.Servers = map[string]*serverEntry{}
	}
	return d, nil
}

func (s store) write(d *storeData) error {
	b, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(s.dir, sessionFile+".*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) // no-op after the rename
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), s.path())
}

// update applies fn to the file's contents under the lock and writes the
// result when fn reports a change.
func (s store) update(fn func(d *storeData) (changed bool)) error {
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return err
	}
	unlock, err := lockPath(filepath.Join(s.dir, lockFile))
	if err != nil {
		return fmt.Errorf("locking the session store: %w", err)
	}
	defer unlock()
	d, err := s.read()
	if err != nil {
		return err
	}
	if !fn(d) {
		return nil
	}
	return s.write(d)
}

// load returns the saved session for user on server; with user empty, the
// last one who logged in there. It returns nil when there is none.
func (s store) load(server, user string) (*savedSession, error) {
	d, err := s.read()
	if err != nil {
		return nil, err
	}
	e := d.Servers[server]
	if e == nil {
		return nil, nil
	}
	if user == "" {
		user = e.Current
	}
	return e.Users[user], nil
}

// users lists the users with a saved session on server: the last one who
// logged in first, then the others by name.
func (s store) users(server string) ([]string, error) {
	d, err := s.read()
	if err != nil {
		return nil, err
	}
	e := d.Servers[server]
	if e == nil {
		return nil, nil
	}
	var out []string
	for u := range e.Users {
		if u != e.Current {
			out = append(out, u)
		}
	}
	slices.Sort(out)
	if e.Users[e.Current] != nil {
		out = slices.Insert(out, 0, e.Current)
	}
	return out, nil
}

// newest returns the newest saved token of the session with id on server
// ("" when none is saved): what a process sharing the session presents.
func (s store) newest(server, id string) (string, time.Time) {
	d, err := s.read()
	if err != nil || d.Servers[server] == nil {
		return "", time.Time{}
	}
	for _, u := range d.Servers[server].Users {
		if u.SessionID == id {
			return u.Token, u.ExpiresAt
		}
	}
	return "", time.Time{}
}

// How a session came to the process that saves it.
const (
	savedLogin   = true  // login or register: a new session
	savedResumed = false // a resume (at start or after a reconnect): a fresh token
)

// save records sess as user's session on server. A login (fresh) replaces
// whatever was saved for the user and makes them the current user. A
// resume's token replaces only an older token of the same session: a token
// another process saved meanwhile stays when it is newer, and a session
// the user has since replaced by logging in again is not brought back.
func (s store) save(server string, sess *parley.Session, fresh bool) error {
	return s.update(func(d *storeData) bool {
		e := d.Servers[server]
		if e == nil {
			e = &serverEntry{}
			d.Servers[server] = e
		}
		if e.Users == nil {
			e.Users = map[string]*savedSession{}
		}
		if !fresh && !newer(sess, e.Users[sess.Username]) {
			return false
		}
		e.Users[sess.Username] = &savedSession{
			UserID: sess.UserID, Username: sess.Username, SessionID: sess.SessionID,
			Token: sess.Token, ExpiresAt: sess.ExpiresAt,
		}
		if fresh {
			e.Current = sess.Username
		}
		return true
	})
}

// newer reports whether a resumed session's token should replace saved:
// nothing saved, or the same session and a token issued later (each resume
// sets the expiry anew, so a later expiry means a later token).
func newer(sess *parley.Session, saved *savedSession) bool {
	if saved == nil {
		return true
	}
	return saved.SessionID == sess.SessionID && sess.Token != saved.Token && !sess.ExpiresAt.Before(saved.ExpiresAt)
}

// forget removes user's saved session on server if it is still the one
// named: session sessionID and, unless token is empty, that token. A
// refused token is forgotten only while no newer one was saved; an ended
// session (logout) is forgotten whatever its token.
func (s store) forget(server, user, sessionID, token string) error {
	return s.update(func(d *storeData) bool {
		e := d.Servers[server]
		if e == nil || e.Users[user] == nil {
			return false
		}
		u := e.Users[user]
		if u.SessionID != sessionID || token != "" && u.Token != token {
			return false
		}
		delete(e.Users, user)
		if e.Current == user {
			e.Current = ""
		}
		if len(e.Users) == 0 {
			delete(d.Servers, server)
		}
		return true
	})
}
