package parley

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// DirectMessage is a chat message of a direct session (docs/protocol.md
// §20.6). The server never sees it: it is kept in this client's own history
// (DirectHistory), marked as direct.
type DirectMessage struct {
	ID       string    `json:"id"`
	PeerID   string    `json:"peer_id"`
	PeerName string    `json:"peer_name"`
	Outgoing bool      `json:"outgoing"` // sent by this user
	Text     string    `json:"text"`
	SentAt   time.Time `json:"sent_at"` // the sender's clock
	At       time.Time `json:"at"`      // stored here (received or acknowledged)
}

// directLog is the local history of direct messages: one JSON line per
// message in <dir>/<peer user id>.jsonl, written once per message id. With
// no directory it keeps them in memory only.
type directLog struct {
	dir string

	mu    sync.Mutex
	peers map[string]*peerLog // by peer user id
}

type peerLog struct {
	ids  map[string]bool // ids stored (both directions)
	msgs []DirectMessage // memory-only logs; nil with a directory
}

func newDirectLog(dir string) *directLog {
	return &directLog{dir: dir, peers: make(map[string]*peerLog)}
}

// load reads (once) what is stored for peer; c.mu held.
func (l *directLog) loadLocked(peer string) (*peerLog, error) {
	if p := l.peers[peer]; p != nil {
		return p, nil
	}
	p := &peerLog{ids: make(map[string]bool)}
	if l.dir != "" {
		msgs, err := l.read(peer)
		if err != nil {
			return nil, err
		}
		for _, m := range msgs {
			p.ids[m.ID] = true
		}
	}
	l.peers[peer] = p
	return p, nil
}

func (l *directLog) file(peer string) string { return filepath.Join(l.dir, peer+".jsonl") }

func (l *directLog) read(peer string) ([]DirectMessage, error) {
	f, err := os.Open(l.file(peer))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []DirectMessage
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var m DirectMessage
		if json.Unmarshal(sc.Bytes(), &m) != nil || m.ID == "" {
			continue // a line cut short by a crash: skip it
		}
		out = append(out, m)
	}
	return out, sc.Err()
}

// put stores m unless a message with its id is already stored for its
// peer; it reports whether it stored it.
func (l *directLog) put(m DirectMessage) (bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	p, err := l.loadLocked(m.PeerID)
	if err != nil {
		return false, err
	}
	if p.ids[m.ID] {
		return false, nil
	}
	if l.dir == "" {
		p.msgs = append(p.msgs, m)
	} else {
		b, err := json.Marshal(m)
		if err != nil {
			return false, err
		}
		if err := os.MkdirAll(l.dir, 0o700); err != nil {
			return false, err
		}
		f, err := os.OpenFile(l.file(m.PeerID), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
		if err != nil {
			return false, err
		}
		_, werr := f.Write(append(b, '\n'))
		cerr := f.Close()
		if err := errors.Join(werr, cerr); err != nil {
			return false, fmt.Errorf("storing a direct message: %w", err)
		}
	}
	p.ids[m.ID] = true
	return true, nil
}

// has reports whether a message id is stored for peer.
func (l *directLog) has(peer, id string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	p, err := l.loadLocked(peer)
	return err == nil && p.ids[id]
}

// list returns what is stored for peer, oldest first.
func (l *directLog) list(peer string) ([]DirectMessage, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.dir == "" {
		p, _ := l.loadLocked(peer)
		return append([]DirectMessage(nil), p.msgs...), nil
	}
	return l.read(peer)
}
