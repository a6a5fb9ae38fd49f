package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/parleychat/parley/clients/parley"
)

// sessionFile is the name of the token store inside the config directory.
const sessionFile = "sessions.json"

// store keeps session tokens between runs, so `parley who` and `parley
// logout` work without the password. Tokens are bearer credentials: the file
// is written with mode 0600 in a 0700 directory, atomically (temp file and
// rename) so a crash never leaves half a file.
type store struct {
	dir string
}

// storeData is the file's layout: per server (canonical address), the
// last user who logged in and each user's session.
type storeData struct {
	Servers map[string]*serverEntry `json:"servers"`
}

type serverEntry struct {
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
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return err
	}
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

// save records sess as user's session on server and makes it the current
// one.
func (s store) save(server string, sess *parley.Session) error {
	d, err := s.read()
	if err != nil {
		return err
	}
	e := d.Servers[server]
	if e == nil {
		e = &serverEntry{Users: map[string]*savedSession{}}
		d.Servers[server] = e
	}
	if e.Users == nil {
		e.Users = map[string]*savedSession{}
	}
	e.Users[sess.Username] = &savedSession{
		UserID: sess.UserID, Username: sess.Username, SessionID: sess.SessionID,
		Token: sess.Token, ExpiresAt: sess.ExpiresAt,
	}
	e.Current = sess.Username
	return s.write(d)
}

// forget removes user's session on server.
func (s store) forget(server, user string) error {
	d, err := s.read()
	if err != nil {
		return err
	}
	e := d.Servers[server]
	if e == nil || e.Users[user] == nil {
		return nil
	}
	delete(e.Users, user)
	if e.Current == user {
		e.Current = ""
	}
	if len(e.Users) == 0 {
		delete(d.Servers, server)
	}
	return s.write(d)
}
