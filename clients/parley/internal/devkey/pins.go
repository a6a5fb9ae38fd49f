package devkey

import (
	"bytes"
	"cmp"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"
)

// PinsFileName is the conventional name of the pins file inside the
// client's config directory.
const PinsFileName = "pins.json"

// ErrNoUser: a pin needs a user id.
var ErrNoUser = errors.New("devkey: empty user id")

// Status is what the pins say about a user's key (§20.1).
type Status int

const (
	// FirstContact: no key of this user is pinned yet. Trust on first
	// use: pin it (Trust) and go ahead.
	FirstContact Status = iota + 1
	// Known: this key is pinned for this user.
	Known
	// Changed: the user has pinned keys and this is not one of them. Do
	// not connect until the user accepts it, after comparing the safety
	// number ("bob's key changed").
	Changed
)

func (s Status) String() string {
	switch s {
	case FirstContact:
		return "first contact"
	case Known:
		return "known"
	case Changed:
		return "changed"
	}
	return fmt.Sprintf("Status(%d)", int(s))
}

// Pin is one pinned key of a user.
type Pin struct {
	UserID    string            `json:"-"`
	DeviceID  string            `json:"device_id"`
	PublicKey ed25519.PublicKey `json:"public_key"` // base64 in the file
	// Verified: the user compared the safety number (rather than the key
	// being pinned on first use or accepted unchecked).
	Verified bool      `json:"verified"`
	PinnedAt time.Time `json:"pinned_at"`
}

// pinsData is the file's layout: per user id, the pinned keys in the
// order they were pinned.
type pinsData struct {
	Users map[string][]*Pin `json:"users"`
}

// Pins is the pins file. It is safe for concurrent use, also by several
// processes sharing the file: every change is a read-modify-write under an
// exclusive lock on <file>.lock, written atomically (temporary file and
// rename) with mode 0600 in a directory made 0700.
type Pins struct {
	path string
	mu   sync.Mutex // serialises this process's updates (the file lock does across processes)
}

// OpenPins returns the pins kept at path; the file is made at the first
// Trust.
func OpenPins(path string) *Pins { return &Pins{path: path} }

// Path is the file's path.
func (p *Pins) Path() string { return p.path }

// Check says whether pub is a pinned key of the user. It changes nothing.
func (p *Pins) Check(userID string, pub ed25519.PublicKey) (Status, error) {
	if userID == "" {
		return 0, ErrNoUser
	}
	if len(pub) != ed25519.PublicKeySize {
		return 0, ErrBadPublicKey
	}
	d, err := p.read()
	if err != nil {
		return 0, err
	}
	keys := d.Users[userID]
	switch {
	case len(keys) == 0:
		return FirstContact, nil
	case slices.ContainsFunc(keys, func(k *Pin) bool { return bytes.Equal(k.PublicKey, pub) }):
		return Known, nil
	}
	return Changed, nil
}

// Trust pins pub for the user (after a first contact, or when the user
// accepted a changed key) and sets its verified flag to verified (true once
// the users compared the safety number). The user's other keys stay
// pinned: a user has a key per device.
func (p *Pins) Trust(userID string, pub ed25519.PublicKey, verified bool) error {
	if userID == "" {
		return ErrNoUser
	}
	if len(pub) != ed25519.PublicKeySize {
		return ErrBadPublicKey
	}
	return p.update(func(d *pinsData) bool {
		for _, k := range d.Users[userID] {
			if bytes.Equal(k.PublicKey, pub) {
				if k.Verified == verified {
					return false
				}
				k.Verified = verified
				return true
			}
		}
		d.Users[userID] = append(d.Users[userID], &Pin{
			DeviceID:  DeviceID(pub),
			PublicKey: slices.Clone(pub),
			Verified:  verified,
			PinnedAt:  time.Now().UTC().Truncate(time.Second),
		})
		return true
	})
}

// List returns the pinned keys, by user id and then in the order they were
// pinned; with userID set, only that user's.
func (p *Pins) List(userID string) ([]Pin, error) {
	d, err := p.read()
	if err != nil {
		return nil, err
	}
	var out []Pin
	for u, keys := range d.Users {
		if userID != "" && u != userID {
			continue
		}
		for _, k := range keys {
			c := *k
			c.UserID = u
			out = append(out, c)
		}
	}
	slices.SortStableFunc(out, func(a, b Pin) int {
		return cmp.Or(cmp.Compare(a.UserID, b.UserID), a.PinnedAt.Compare(b.PinnedAt))
	})
	return out, nil
}

func (p *Pins) read() (*pinsData, error) {
	d := &pinsData{Users: map[string][]*Pin{}}
	b, err := os.ReadFile(p.path)
	if errors.Is(err, fs.ErrNotExist) {
		return d, nil
	}
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, d); err != nil {
		// Never start over silently: an empty pin set would accept any
		// key as a first contact.
		return nil, fmt.Errorf("%s is damaged (%v); fix or remove it", p.path, err)
	}
	if d.Users == nil {
		d.Users = map[string][]*Pin{}
	}
	for u, keys := range d.Users {
		for _, k := range keys {
			if len(k.PublicKey) != ed25519.PublicKeySize {
				return nil, fmt.Errorf("%s is damaged (a key of %q is %d bytes); fix or remove it", p.path, u, len(k.PublicKey))
			}
		}
	}
	return d, nil
}

func (p *Pins) write(d *pinsData) error {
	b, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return err
	}
	dir := filepath.Dir(p.path)
	f, err := os.CreateTemp(dir, filepath.Base(p.path)+".*")
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
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), p.path)
}

// update applies fn to the file's contents under the locks and writes the
// result when fn reports a change.
func (p *Pins) update(fn func(d *pinsData) (changed bool)) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := os.MkdirAll(filepath.Dir(p.path), 0o700); err != nil {
		return err
	}
	unlock, err := lockPath(p.path + ".lock")
	if err != nil {
		return fmt.Errorf("locking %s: %w", p.path, err)
	}
	defer unlock()
	d, err := p.read()
	if err != nil {
		return err
	}
	if !fn(d) {
		return nil
	}
	return p.write(d)
}
