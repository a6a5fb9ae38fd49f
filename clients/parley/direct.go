package parley

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/parleychat/parley/clients/parley/internal/devkey"
	"github.com/parleychat/parley/clients/parley/internal/p2pchan"
	"github.com/parleychat/parley/clients/parley/internal/pathconn"
	"github.com/parleychat/parley/clients/parley/internal/punch"
	"github.com/parleychat/parley/protocol/parleyv1"
)

// Direct sessions (docs/protocol.md §20): two devices talk peer to peer,
// through their NATs, end to end encrypted with their device keys. GoDirect
// offers one to a user; the user's devices see a DirectOfferEvent and
// accept with AcceptDirect (or automatically, WithDirectPolicy). While no
// direct path works the session's packets go through the server's relay,
// still end to end encrypted; DirectSession.Path says which.

// DirectPolicy says what the client does with an offer to go direct.
type DirectPolicy int

const (
	// DirectAsk: offers arrive as DirectOfferEvent; the application
	// answers with AcceptDirect or RejectDirect (default).
	DirectAsk DirectPolicy = iota
	// DirectFriends: offers from friends are accepted at once (the session
	// arrives as DirectOpenedEvent); others as DirectAsk.
	DirectFriends
	// DirectNever: every offer is rejected at once.
	DirectNever
)

// DirectPath is the way a direct session's packets travel.
type DirectPath int

const (
	// DirectConnecting: looking for a direct path (up to 5 s after the
	// acceptance); packets go through the relay meanwhile.
	DirectConnecting DirectPath = iota
	// DirectRelayed: no direct path works; packets go through the
	// server's relay, end to end encrypted.
	DirectRelayed
	// DirectDirect: packets go straight to the peer.
	DirectDirect
	// DirectClosed: the session is over.
	DirectClosed
)

func (p DirectPath) String() string {
	switch p {
	case DirectConnecting:
		return "connecting"
	case DirectRelayed:
		return "relayed"
	case DirectDirect:
		return "direct"
	case DirectClosed:
		return "closed"
	}
	return "unknown"
}

// How long AcceptDirect and GoDirect wait for the end-to-end channel once
// both sides agreed, when the caller's context has no deadline.
const directConnectTimeout = 30 * time.Second

// Errors of direct sessions.
var (
	// ErrPeerKeyChanged: the peer's device key is not one this client
	// knows for that user, who had others before (a new device, a
	// reinstall, or someone in the middle). The session is not
	// connected; compare the safety number (PeerKeyError) with the peer,
	// then TrustPeerKey and try again.
	ErrPeerKeyChanged = errors.New("parley: the peer's device key changed")
	// ErrDirectRejected: the peer declined the offer (or it expired).
	ErrDirectRejected = errors.New("parley: the direct session was declined")
	// ErrDirectClosed: the session is closed.
	ErrDirectClosed = errors.New("parley: the direct session is closed")
	// ErrDirectFileRejected: the peer declined a file sent over the
	// session (the wrapping error says why); sending it again will not
	// help.
	ErrDirectFileRejected = errors.New("parley: the peer declined the file")
)

// errRelayDown: no connection to relay a packet on now (QUIC sends it
// again).
var errRelayDown = errors.New("parley: no connection for the relay")

// PeerKeyError says which key was refused; it matches ErrPeerKeyChanged.
type PeerKeyError struct {
	PeerID, PeerName string
	Device           DeviceKey
	SafetyNumber     string // of this device's key and Device's (§20.1)
}

func (e *PeerKeyError) Error() string {
	return fmt.Sprintf("parley: %s's device key changed (device %s %q); compare the safety number with them: %s",
		e.PeerName, e.Device.DeviceID, e.Device.Name, e.SafetyNumber)
}

// Is makes errors.Is(err, ErrPeerKeyChanged) true.
func (e *PeerKeyError) Is(target error) bool { return target == ErrPeerKeyChanged }

// DirectOfferEvent: a user asks to go direct with this user (on every
// device). Answer with AcceptDirect or RejectDirect before ExpiresAt.
type DirectOfferEvent struct {
	SessionID string
	FromID    string
	From      string
	Friend    bool // the offerer is a friend
	ExpiresAt time.Time
}

// DirectOpenedEvent: a session this client accepted on its own
// (DirectFriends) is connected.
type DirectOpenedEvent struct{ Session *DirectSession }

// DirectPathEvent: a session's path changed (connecting, relayed, direct).
type DirectPathEvent struct {
	Session *DirectSession
	Path    DirectPath
}

// DirectMessageEvent: a chat message arrived on a direct session (stored
// in the local history, DirectHistory).
type DirectMessageEvent struct {
	Session *DirectSession
	Message DirectMessage
}

// DirectFileEvent: a file sent over a direct session arrived (Path) or
// failed (Err).
type DirectFileEvent struct {
	Session *DirectSession
	Name    string
	Size    int64
	Path    string
	Err     error
}

// DirectClosedEvent: a session ended (the peer closed it, declined it, or
// it expired), or an offer to this user was taken by another device or
// withdrawn.
type DirectClosedEvent struct {
	SessionID string
	PeerName  string
	Reason    string // "closed", "rejected", "expired", "answered elsewhere"
}

func (DirectOfferEvent) isEvent()   {}
func (DirectOpenedEvent) isEvent()  {}
func (DirectPathEvent) isEvent()    {}
func (DirectMessageEvent) isEvent() {}
func (DirectFileEvent) isEvent()    {}
func (DirectClosedEvent) isEvent()  {}

// WithStateDir keeps this device's key (device.key), the pinned keys of
// peers (pins.json) and the history of direct messages (direct/) in dir.
// Use one directory per account: a device key shared by two accounts links
// them. Without it the client makes a new device key in memory and pins
// and history last as long as the Client.
func WithStateDir(dir string) Option { return func(o *config) { o.stateDir = dir } }

// WithDirectPolicy sets what the client does with offers to go direct
// (default DirectAsk).
func WithDirectPolicy(p DirectPolicy) Option { return func(o *config) { o.directPolicy = p } }

// WithDirectRelayOnly(true) keeps every direct session on the server's
// relay: the client never tells the peer or the rendezvous its addresses
// (no host candidates, no registration), so the peer never learns its IP
// address. The channel is end to end encrypted either way.
func WithDirectRelayOnly(on bool) Option { return func(o *config) { o.directRelayOnly = on } }

// WithDirectDownloads accepts files sent over direct sessions into dir
// (default: they are declined).
func WithDirectDownloads(dir string) Option { return func(o *config) { o.directDownloads = dir } }

// directState is the client's part in direct sessions.
type directState struct {
	mu         sync.Mutex
	key        ed25519.PrivateKey
	deviceID   string
	registered bool
	pins       pinStore
	log        *directLog
	sessions   map[string]*DirectSession
	early      map[string]*earlyEvents // events for sessions not known yet
	offers     map[string]DirectOfferEvent
}

// pinStore is what a session needs of the pinned keys.
type pinStore interface {
	Check(userID string, pub ed25519.PublicKey) (devkey.Status, error)
	Trust(userID string, pub ed25519.PublicKey, verified bool) error
}

// memPins are pins for the Client's life (no state directory).
type memPins struct {
	mu   sync.Mutex
	keys map[string]map[string]bool // user -> hex key
}

func (m *memPins) Check(user string, pub ed25519.PublicKey) (devkey.Status, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := m.keys[user]
	switch {
	case len(k) == 0:
		return devkey.FirstContact, nil
	case k[hex.EncodeToString(pub)]:
		return devkey.Known, nil
	}
	return devkey.Changed, nil
}

func (m *memPins) Trust(user string, pub ed25519.PublicKey, _ bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.keys[user] == nil {
		m.keys[user] = make(map[string]bool)
	}
	m.keys[user][hex.EncodeToString(pub)] = true
	return nil
}

// p2p returns the client's direct state, loading the device key on first
// use.
func (c *Client) p2p() (*directState, error) {
	c.p2pOnce.Do(func() {
		d := &directState{sessions: make(map[string]*DirectSession), early: make(map[string]*earlyEvents),
			offers: make(map[string]DirectOfferEvent)}
		if dir := c.cfg.stateDir; dir != "" {
			key, _, err := devkey.LoadOrCreate(filepath.Join(dir, devkey.FileName))
			if err != nil {
				c.p2pErr = fmt.Errorf("parley: device key: %w", err)
				return
			}
			d.key = key
			d.pins = devkey.OpenPins(filepath.Join(dir, devkey.PinsFileName))
			d.log = newDirectLog(filepath.Join(dir, "direct"))
		} else {
			_, key, err := ed25519.GenerateKey(rand.Reader)
			if err != nil {
				c.p2pErr = err
				return
			}
			d.key = key
			d.pins = &memPins{keys: make(map[string]map[string]bool)}
			d.log = newDirectLog("")
		}
		d.deviceID = devkey.DeviceID(d.key.Public().(ed25519.PublicKey))
		c.p2pState.Store(d)
	})
	return c.p2pState.Load(), c.p2pErr
}

// DeviceID is this device's id (the hex of its key's hash, §20.1).
func (c *Client) DeviceID() (string, error) {
	d, err := c.p2p()
	if err != nil {
		return "", err
	}
	return d.deviceID, nil
}

// TrustPeerKey accepts key as one of user peerID's device keys after the
// user compared the safety number (PeerKeyError).
func (c *Client) TrustPeerKey(peerID string, key ed25519.PublicKey) error {
	d, err := c.p2p()
	if err != nil {
		return err
	}
	return d.pins.Trust(peerID, key, true)
}

// DirectHistory returns the direct messages exchanged with a user (by user
// id), oldest first, from this client's own store.
func (c *Client) DirectHistory(peerID string) ([]DirectMessage, error) {
	d, err := c.p2p()
	if err != nil {
		return nil, err
	}
	return d.log.list(peerID)
}

// ensureDevice registers the device key with the account once per client.
func (c *Client) ensureDevice(ctx context.Context, d *directState) error {
	d.mu.Lock()
	done := d.registered
	d.mu.Unlock()
	if done {
		return nil
	}
	name := c.cfg.device
	if name == "" {
		name, _ = os.Hostname()
	}
	if len([]rune(name)) > 64 {
		name = string([]rune(name)[:64])
	}
	if _, err := c.RegisterDevice(ctx, d.key.Public().(ed25519.PublicKey), name); err != nil {
		return err
	}
	d.mu.Lock()
	d.registered = true
	d.mu.Unlock()
	return nil
}

// rtt measures the round trip to the server now, for a synchronised start
// (§20.3); 0 when it cannot.
func (c *Client) rtt(ctx context.Context) uint32 {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	start := time.Now()
	if _, err := c.do(ctx, &parleyv1.Frame{Body: &parleyv1.Frame_Ping{Ping: &parleyv1.Ping{}}}); err != nil {
		return 0
	}
	return uint32(time.Since(start).Milliseconds())
}

// openSocket opens a session's UDP socket and lists its host candidates.
func (c *Client) openSocket() (*net.UDPConn, []*parleyv1.P2PCandidate, error) {
	sock, err := net.ListenUDP("udp4", &net.UDPAddr{})
	if err != nil {
		return nil, nil, fmt.Errorf("parley: opening a UDP socket: %w", err)
	}
	if c.cfg.directRelayOnly {
		return sock, nil, nil
	}
	port := uint16(sock.LocalAddr().(*net.UDPAddr).Port)
	hosts, err := punch.HostCandidates(port)
	if err != nil {
		sock.Close()
		return nil, nil, err
	}
	out := make([]*parleyv1.P2PCandidate, 0, len(hosts))
	for _, h := range hosts {
		if !h.Addr().Is4() {
			continue
		}
		out = append(out, &parleyv1.P2PCandidate{Kind: parleyv1.P2PCandidate_KIND_HOST, Addr: h.String()})
		if len(out) == punch.MaxCandidates {
			break
		}
	}
	return sock, out, nil
}

// GoDirect offers a direct session to username and waits until one of
// their devices accepted it and the end-to-end channel is up (relayed or
// direct). It fails with ErrDirectRejected if they decline or do not
// answer within a minute, with a PeerKeyError if the device that accepted
// has a key this client does not trust.
func (c *Client) GoDirect(ctx context.Context, username string) (*DirectSession, error) {
	d, err := c.p2p()
	if err != nil {
		return nil, err
	}
	if err := c.ensureDevice(ctx, d); err != nil {
		return nil, err
	}
	sock, hosts, err := c.openSocket()
	if err != nil {
		return nil, err
	}
	reply, err := c.do(ctx, &parleyv1.Frame{Body: &parleyv1.Frame_P2POpen{P2POpen: &parleyv1.P2POpenRequest{
		ToUsername: username, DeviceId: d.deviceID, Candidates: hosts, RttMs: c.rtt(ctx),
	}}})
	if err != nil {
		sock.Close()
		return nil, err
	}
	ps := reply.GetP2PSession()
	if ps == nil {
		sock.Close()
		return nil, fmt.Errorf("%w: expected P2PSession, got %T", ErrProtocol, reply.GetBody())
	}
	s := c.newDirect(d, ps, sock)
	if err := s.waitAccepted(ctx); err != nil {
		s.close(true)
		return nil, err
	}
	if err := s.waitChannel(ctx); err != nil {
		s.close(true)
		return nil, err
	}
	return s, nil
}

// AcceptDirect accepts an offered session (DirectOfferEvent) and waits
// until the end-to-end channel is up.
func (c *Client) AcceptDirect(ctx context.Context, sessionID string) (*DirectSession, error) {
	d, err := c.p2p()
	if err != nil {
		return nil, err
	}
	if err := c.ensureDevice(ctx, d); err != nil {
		return nil, err
	}
	sock, hosts, err := c.openSocket()
	if err != nil {
		return nil, err
	}
	reply, err := c.do(ctx, &parleyv1.Frame{Body: &parleyv1.Frame_P2PAnswer{P2PAnswer: &parleyv1.P2PAnswerRequest{
		SessionId: sessionID, Accept: true, DeviceId: d.deviceID, Candidates: hosts, RttMs: c.rtt(ctx),
	}}})
	if err != nil {
		sock.Close()
		return nil, err
	}
	ps := reply.GetP2PSession()
	if ps == nil || ps.GetState() != parleyv1.P2PSession_STATE_ACCEPTED {
		sock.Close()
		return nil, fmt.Errorf("%w: expected an accepted P2PSession, got %v", ErrProtocol, reply.GetBody())
	}
	d.mu.Lock()
	delete(d.offers, sessionID)
	d.mu.Unlock()
	s := c.newDirect(d, ps, sock)
	if err := s.onAccepted(ps); err != nil {
		s.close(true)
		return nil, err
	}
	if err := s.waitChannel(ctx); err != nil {
		s.close(true)
		return nil, err
	}
	return s, nil
}

// RejectDirect declines an offered session.
func (c *Client) RejectDirect(ctx context.Context, sessionID string) error {
	d, err := c.p2p()
	if err != nil {
		return err
	}
	reply, err := c.do(ctx, &parleyv1.Frame{Body: &parleyv1.Frame_P2PAnswer{P2PAnswer: &parleyv1.P2PAnswerRequest{
		SessionId: sessionID, Accept: false, DeviceId: d.deviceID,
	}}})
	if err != nil {
		return err
	}
	if reply.GetP2PSession() == nil {
		return fmt.Errorf("%w: expected P2PSession, got %T", ErrProtocol, reply.GetBody())
	}
	d.mu.Lock()
	delete(d.offers, sessionID)
	d.mu.Unlock()
	return nil
}

// DirectSessions returns the sessions of this client that are not closed.
func (c *Client) DirectSessions() []*DirectSession {
	d, err := c.p2p()
	if err != nil {
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]*DirectSession, 0, len(d.sessions))
	for _, s := range d.sessions {
		out = append(out, s)
	}
	return out
}

// DirectOffers returns the offers to this user not answered yet.
func (c *Client) DirectOffers() []DirectOfferEvent {
	d, err := c.p2p()
	if err != nil {
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]DirectOfferEvent, 0, len(d.offers))
	now := time.Now()
	for id, o := range d.offers {
		if !o.ExpiresAt.IsZero() && now.After(o.ExpiresAt) {
			delete(d.offers, id)
			continue
		}
		out = append(out, o)
	}
	return out
}

// DirectSession is one direct session of this device.
type DirectSession struct {
	c           *Client
	d           *directState
	id          string
	side        string
	controlling bool
	peerID      string
	peerName    string
	sock        *net.UDPConn
	ctx         context.Context // ends when the session does
	cancel      context.CancelFunc

	acceptedCh chan struct{} // closed when the peer accepted (or the session failed)
	chReady    chan struct{} // closed when the channel is up (or failed)

	mu        sync.Mutex
	sess      *parleyv1.P2PSession // the latest view
	peerKey   DeviceKey
	safety    string
	agent     *punch.Agent
	pc        *pathconn.Conn
	ch        *p2pchan.Channel
	err       error // why it failed or closed
	path      DirectPath
	closed    bool
	accepted  bool
	opened    time.Time
	updating  bool
	transfers map[string]string // path -> transfer id (resume)
	// The peer's last DirectCall (§20.7): the call it carries here, if
	// direct.
	peerCall       string
	peerCallDirect bool
	audioQ         chan p2pchan.Audio // call audio for the sender (calldirect.go); made on first use
}

// newDirect makes a session from the server's first view of it and
// registers it, then applies events that raced ahead of the reply.
func (c *Client) newDirect(d *directState, ps *parleyv1.P2PSession, sock *net.UDPConn) *DirectSession {
	ctx, cancel := context.WithCancel(c.ctx)
	s := &DirectSession{c: c, d: d, id: ps.GetSessionId(), side: ps.GetSide(), controlling: ps.GetControlling(),
		peerID: ps.GetPeerId(), peerName: ps.GetPeerName(), sock: sock, ctx: ctx, cancel: cancel,
		acceptedCh: make(chan struct{}), chReady: make(chan struct{}), sess: ps, opened: time.Now(),
		transfers: make(map[string]string)}
	d.mu.Lock()
	d.sessions[s.id] = s
	var early []*parleyv1.P2PEvent
	if e := d.early[s.id]; e != nil {
		early = e.evs
	}
	delete(d.early, s.id)
	d.mu.Unlock()
	for _, ev := range early {
		s.event(ev)
	}
	return s
}

// earlyEvents are the events of a session this client does not know yet:
// its open or answer reply is still on its way (the reader hands the reply
// to the waiting request and reads on, so the peer's answer can be handled
// first), or it was closed here already.
type earlyEvents struct {
	at  time.Time // the first one's arrival
	evs []*parleyv1.P2PEvent
}

// earlyTTL is how long early events wait for their session: a reply comes
// within a request's timeout, so older ones are for a session closed here
// already, or one whose open failed.
const earlyTTL = 30 * time.Second

// keepEarlyLocked keeps ev for a session not known yet (d.mu held), up to
// 64 sessions of 8 events, after dropping those older than earlyTTL.
func (d *directState) keepEarlyLocked(id string, ev *parleyv1.P2PEvent, now time.Time) {
	for k, e := range d.early {
		if now.Sub(e.at) > earlyTTL {
			delete(d.early, k)
		}
	}
	e := d.early[id]
	if e == nil {
		if len(d.early) >= 64 {
			return
		}
		e = &earlyEvents{at: now}
		d.early[id] = e
	}
	if len(e.evs) < 8 {
		e.evs = append(e.evs, ev)
	}
}

// ID is the session's id.
func (s *DirectSession) ID() string { return s.id }

// PeerID and PeerName name the other user.
func (s *DirectSession) PeerID() string   { return s.peerID }
func (s *DirectSession) PeerName() string { return s.peerName }

// PeerDevice is the peer's device and key.
func (s *DirectSession) PeerDevice() DeviceKey {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peerKey
}

// SafetyNumber is the 60-digit number of this device's key and the peer's
// (§20.1): the same on both sides; compare it out of band.
func (s *DirectSession) SafetyNumber() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.safety
}

// Controlling reports whether this side opened the session.
func (s *DirectSession) Controlling() bool { return s.controlling }

// Path is how the session's packets travel now.
func (s *DirectSession) Path() DirectPath {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.path
}

// Done is closed when the session ends; Err then says why.
func (s *DirectSession) Done() <-chan struct{} { return s.ctx.Done() }

// Err is why the session ended (ErrDirectClosed after Close).
func (s *DirectSession) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// DirectStats describe a session's path.
type DirectStats struct {
	Path DirectPath
	// Pair is the direct pair, "local -> remote (kind)", when Path is
	// DirectDirect.
	Pair     string
	PairKind string // "host", "srflx", "prflx"
	Birthday bool   // the pair was found by the birthday technique
	// TimeToDirect is from the first introduction to the first direct
	// pair; 0 before.
	TimeToDirect time.Duration
	// Srflx is this side's address as the rendezvous saw it.
	Srflx string
	// Packets sent and received on each path.
	DirectSent, RelaySent, DirectReceived, RelayReceived uint64
	ChecksSent                                           uint64
}

// Stats returns the session's path statistics.
func (s *DirectSession) Stats() DirectStats {
	s.mu.Lock()
	agent, pc, path := s.agent, s.pc, s.path
	s.mu.Unlock()
	st := DirectStats{Path: path}
	if agent != nil {
		a := agent.Stats()
		if a.Direct {
			st.Pair = a.Pair.Local.String() + " -> " + a.Pair.Remote.String()
			st.PairKind = a.Pair.Kind.String()
			st.Birthday = a.Pair.Birthday
		}
		st.TimeToDirect = a.TimeToDirect
		if a.Srflx.IsValid() {
			st.Srflx = a.Srflx.String()
		}
		st.ChecksSent = a.ChecksSent
	}
	if pc != nil {
		p := pc.Stats()
		st.DirectSent, st.RelaySent, st.DirectReceived, st.RelayReceived = p.DirectSent, p.RelaySent, p.DirectReceived, p.RelayReceived
	}
	return st
}

// WaitPath waits until the session's path is want (or the session ends).
func (s *DirectSession) WaitPath(ctx context.Context, want DirectPath) error {
	for {
		s.mu.Lock()
		path, err := s.path, s.err
		s.mu.Unlock()
		if path == want {
			return nil
		}
		if path == DirectClosed {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for a %s path (now %s): %w", want, path, ctx.Err())
		case <-s.ctx.Done():
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Send sends a chat message and returns once the peer stored it. If ctx
// ends first the message stays queued and is delivered (once) when the
// channel works again, for as long as the session lives.
func (s *DirectSession) Send(ctx context.Context, text string) (DirectMessage, error) {
	ch, err := s.channel()
	if err != nil {
		return DirectMessage{}, err
	}
	m := p2pchan.ChatMessage{ID: p2pchan.NewID(), Text: text, SentAt: time.Now()}
	dm := DirectMessage{ID: m.ID, PeerID: s.peerID, PeerName: s.peerName, Outgoing: true, Text: text, SentAt: m.SentAt, At: m.SentAt}
	if _, err := ch.SendMessage(ctx, m); err != nil {
		return dm, err
	}
	dm.At = time.Now()
	if _, err := s.d.log.put(dm); err != nil {
		s.c.log.Warn("parley: storing a sent direct message", "err", err)
	}
	return dm, nil
}

// SendFile sends a file over the session, reliably and resumably: sending
// the same file again after a failure continues where the peer's copy
// stopped. progress, if set, is told the bytes the peer holds. A file the
// peer declines fails with ErrDirectFileRejected.
func (s *DirectSession) SendFile(ctx context.Context, path string, progress func(done, total int64)) error {
	ch, err := s.channel()
	if err != nil {
		return err
	}
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	// The transfer id names this file at this size and time, so a retry
	// of the same file resumes and a changed file starts over.
	abs, _ := filepath.Abs(path)
	h := sha256.Sum256([]byte(abs + "\x00" + strconv.FormatInt(fi.Size(), 10) + "\x00" + fi.ModTime().UTC().String()))
	id := hex.EncodeToString(h[:12])
	err = ch.SendFilePath(ctx, path, p2pchan.FileOptions{TransferID: id, Name: filepath.Base(path), Progress: progress})
	if re := (*p2pchan.RejectedError)(nil); errors.As(err, &re) {
		return fmt.Errorf("%w: %s", ErrDirectFileRejected, re.Reason)
	}
	return err
}

// Close ends the session for both sides.
func (s *DirectSession) Close() error {
	s.close(true)
	return nil
}

// channel waits for the end-to-end channel.
func (s *DirectSession) channel() (*p2pchan.Channel, error) {
	select {
	case <-s.chReady:
	case <-s.ctx.Done():
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ch == nil || s.closed {
		if s.err != nil {
			return nil, s.err
		}
		return nil, ErrDirectClosed
	}
	return s.ch, nil
}

func (s *DirectSession) waitAccepted(ctx context.Context) error {
	select {
	case <-s.acceptedCh:
	case <-ctx.Done():
		return ctx.Err()
	case <-s.ctx.Done():
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	if !s.accepted {
		return ErrDirectClosed
	}
	return nil
}

func (s *DirectSession) waitChannel(ctx context.Context) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, directConnectTimeout)
		defer cancel()
	}
	select {
	case <-s.chReady:
	case <-ctx.Done():
		return fmt.Errorf("parley: connecting the direct channel: %w", ctx.Err())
	case <-s.ctx.Done():
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ch == nil {
		if s.err != nil {
			return s.err
		}
		return ErrDirectClosed
	}
	return nil
}

// fail ends the session with err and tells the application
// (DirectClosedEvent) if it had the session.
func (s *DirectSession) fail(err error, reason string) {
	s.mu.Lock()
	if s.err == nil {
		s.err = err
	}
	announced := s.ch != nil
	s.mu.Unlock()
	if s.close(true) && announced {
		s.c.events.push(DirectClosedEvent{SessionID: s.id, PeerName: s.peerName, Reason: reason})
	}
}

// close ends the session locally and, if tell, for the peer too. It
// reports whether this call closed it.
func (s *DirectSession) close(tell bool) bool {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return false
	}
	s.closed = true
	if s.err == nil {
		s.err = ErrDirectClosed
	}
	s.path = DirectClosed
	ch, pc, agent := s.ch, s.pc, s.agent
	s.mu.Unlock()
	s.cancel()
	s.d.mu.Lock()
	delete(s.d.sessions, s.id)
	s.d.mu.Unlock()
	if ch != nil {
		ch.Close()
	}
	if pc != nil {
		pc.Close()
	}
	if agent != nil {
		agent.Close() // closes the socket
	} else {
		s.sock.Close()
	}
	if tell {
		go func() {
			ctx, cancel := context.WithTimeout(s.c.ctx, 5*time.Second)
			defer cancel()
			_ = s.c.okRequest(ctx, &parleyv1.Frame{Body: &parleyv1.Frame_P2PClose{P2PClose: &parleyv1.P2PCloseRequest{SessionId: s.id}}})
		}()
	}
	return true
}

// accepted checks the peer's key and starts the transport, once.
func (s *DirectSession) onAccepted(ps *parleyv1.P2PSession) error {
	s.mu.Lock()
	if s.accepted || s.closed {
		s.mu.Unlock()
		return nil
	}
	s.accepted = true
	s.sess = ps
	s.mu.Unlock()
	defer close(s.acceptedCh)
	pd := ps.GetPeerDevice()
	if len(pd.GetPublicKey()) != ed25519.PublicKeySize {
		err := fmt.Errorf("%w: the accepted session names no peer key", ErrProtocol)
		s.setErr(err)
		return err
	}
	peer := deviceKeyFromWire(pd)
	if devkey.DeviceID(peer.PublicKey) != peer.DeviceID {
		err := fmt.Errorf("%w: the peer's device id does not match its key", ErrProtocol)
		s.setErr(err)
		return err
	}
	own := s.d.key.Public().(ed25519.PublicKey)
	safety, err := devkey.SafetyNumber(own, peer.PublicKey)
	if err != nil {
		s.setErr(err)
		return err
	}
	s.mu.Lock()
	s.peerKey, s.safety = peer, safety
	s.mu.Unlock()
	status, err := s.d.pins.Check(s.peerID, peer.PublicKey)
	if err != nil {
		s.setErr(err)
		return err
	}
	switch status {
	case devkey.Changed:
		err := &PeerKeyError{PeerID: s.peerID, PeerName: s.peerName, Device: peer, SafetyNumber: safety}
		s.setErr(err)
		return err
	case devkey.FirstContact:
		if err := s.d.pins.Trust(s.peerID, peer.PublicKey, false); err != nil {
			s.setErr(err)
			return err
		}
	}
	return s.start(ps, peer.PublicKey)
}

func (s *DirectSession) setErr(err error) {
	s.mu.Lock()
	if s.err == nil {
		s.err = err
	}
	s.mu.Unlock()
}

// start builds the path (punch agent, path conn) and the channel.
func (s *DirectSession) start(ps *parleyv1.P2PSession, peerKey ed25519.PublicKey) error {
	log := s.c.log.With("direct", s.id)
	var agent *punch.Agent
	pc, err := pathconn.New(pathconn.Config{
		Direct: func(pkt []byte) error {
			if agent == nil {
				return punch.ErrNoPath
			}
			return agent.Send(pkt)
		},
		Relay:   s.relay,
		OnState: s.pathState,
		Log:     log,
	})
	if err != nil {
		s.setErr(err)
		return err
	}
	if ps.GetStunAddr() != "" && !s.c.cfg.directRelayOnly {
		agent, err = punch.New(punch.Config{
			Conn: s.sock, SessionID: s.id, Side: s.side, PeerSide: otherSide(s.side), CheckKey: ps.GetCheckKey(),
			Controlling: s.controlling, RegisterUsername: ps.GetRegisterUsername(), RegisterKey: ps.GetRegisterKey(),
			STUNAddr: ps.GetStunAddr(), STUNAltAddr: ps.GetStunAltAddr(),
			OnPacket: pc.DeliverDirect, OnEvent: s.agentEvent, Log: log,
		})
		if err != nil {
			pc.Close()
			s.setErr(err)
			return err
		}
	}
	s.mu.Lock()
	s.pc, s.agent = pc, agent
	s.mu.Unlock()
	// Relayed 5 s from now unless a pair works by then (§20.4).
	pc.Accepted()
	if agent != nil {
		go func() {
			if _, err := agent.Register(s.ctx); err != nil && s.ctx.Err() == nil {
				log.Info("parley: no direct path possible (registering with the rendezvous failed): relayed", "err", err)
			}
		}()
		go s.watchAddrs(agent)
	}
	cfg := p2pchan.Config{
		Key: s.d.key, PeerKey: peerKey, Client: s.c.cfg.clientName, History: historyAdapter{s}, Logger: log,
		OnChat:  s.gotChat,
		OnFile:  s.gotFile,
		OnCall:  s.gotCall,
		OnAudio: s.gotAudio,
	}
	go func() {
		var ch *p2pchan.Channel
		var err error
		if s.controlling {
			ch, err = p2pchan.Dial(s.ctx, pc, net.UDPAddrFromAddrPort(pathconn.PeerAddr), cfg)
		} else {
			ch, err = p2pchan.Accept(s.ctx, pc, cfg)
		}
		s.mu.Lock()
		if err == nil && s.closed {
			ch.Close()
			ch, err = nil, ErrDirectClosed
		}
		s.ch = ch
		if err != nil && s.err == nil {
			s.err = fmt.Errorf("parley: direct channel with %s: %w", s.peerName, err)
		}
		s.mu.Unlock()
		close(s.chReady)
		if err != nil {
			s.close(true)
			return
		}
		go func() {
			<-ch.Done()
			if s.ctx.Err() != nil {
				return
			}
			if errors.Is(ch.Err(), p2pchan.ErrPeerClosed) {
				s.fail(fmt.Errorf("%w: closed by %s", ErrDirectClosed, s.peerName), "closed")
				return
			}
			s.fail(fmt.Errorf("parley: direct channel with %s ended: %w", s.peerName, ch.Err()), "failed")
		}()
	}()
	return nil
}

func otherSide(side string) string {
	if side == "a" {
		return "b"
	}
	return "a"
}

// relay sends a packet through the server (§20.4).
func (s *DirectSession) relay(pkt []byte) error {
	s.c.mu.Lock()
	cn := s.c.conn
	s.c.mu.Unlock()
	if cn == nil {
		return errRelayDown
	}
	if !cn.sendDroppable(&parleyv1.Frame{Body: &parleyv1.Frame_P2PRelay{P2PRelay: &parleyv1.P2PRelay{SessionId: s.id, Packet: append([]byte(nil), pkt...)}}}) {
		return errRelayDown
	}
	return nil
}

// pathState follows the path conn's state.
func (s *DirectSession) pathState(st pathconn.State) {
	var p DirectPath
	switch st {
	case pathconn.Direct:
		p = DirectDirect
	case pathconn.Relayed:
		p = DirectRelayed
	default:
		p = DirectConnecting
	}
	s.mu.Lock()
	if s.closed || s.path == p {
		s.mu.Unlock()
		return
	}
	s.path = p
	s.mu.Unlock()
	s.c.events.push(DirectPathEvent{Session: s, Path: p})
}

// agentEvent follows the punch agent: a working pair makes the path
// direct; a dead one sends the packets through the relay and asks the
// rendezvous to introduce the two sides again.
//
// Either way the channel is poked: QUIC learns at once what the old path
// lost and sends it again on the new one.
func (s *DirectSession) agentEvent(ev punch.Event) {
	s.mu.Lock()
	pc, ch := s.pc, s.ch
	s.mu.Unlock()
	if pc == nil {
		return
	}
	switch ev.Kind {
	case punch.EventDirect:
		pc.SetDirect(true)
	case punch.EventDead:
		pc.SetDirect(false)
		go s.update()
	}
	if ch != nil {
		ch.Poke()
	}
}

// update re-attaches the relay to the current connection and asks for a
// new introduction (after a reconnect, or when the direct pair died).
func (s *DirectSession) update() {
	s.mu.Lock()
	if s.updating || s.closed {
		s.mu.Unlock()
		return
	}
	s.updating = true
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.updating = false
		s.mu.Unlock()
	}()
	port := uint16(s.sock.LocalAddr().(*net.UDPAddr).Port)
	var cands []*parleyv1.P2PCandidate
	if hosts, err := punch.HostCandidates(port); err == nil && !s.c.cfg.directRelayOnly {
		for _, h := range hosts {
			if h.Addr().Is4() && len(cands) < punch.MaxCandidates {
				cands = append(cands, &parleyv1.P2PCandidate{Kind: parleyv1.P2PCandidate_KIND_HOST, Addr: h.String()})
			}
		}
	}
	for attempt := 0; attempt < 5 && s.ctx.Err() == nil; attempt++ {
		ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
		reply, err := s.c.do(ctx, &parleyv1.Frame{Body: &parleyv1.Frame_P2PUpdate{P2PUpdate: &parleyv1.P2PUpdateRequest{
			SessionId: s.id, DeviceId: s.d.deviceID, Candidates: cands, RttMs: s.c.rtt(ctx),
		}}})
		cancel()
		switch {
		case err == nil && reply.GetP2PSession() != nil:
			return
		case errors.Is(err, ErrNotFound):
			s.fail(fmt.Errorf("parley: the server no longer knows direct session with %s: %w", s.peerName, err), "closed")
			return
		}
		// A session's introductions are bounded (§20.2): RATE_LIMITED says
		// when the next one is allowed.
		wait := max(time.Duration(attempt+1)*time.Second, retryAfter(err))
		select {
		case <-s.ctx.Done():
		case <-time.After(wait):
		}
	}
}

// addrWatchInterval is how often a session looks at this device's
// addresses (§20.4 Moving).
const addrWatchInterval = time.Second

// watchAddrs follows this device's own addresses until the session ends
// (§20.4 Moving): when they change (another network, another address),
// the agent checks the pair from the new address at once and registers
// again, and the session sends P2PUpdateRequest with the new host
// candidates, which brings a new introduction.
func (s *DirectSession) watchAddrs(agent *punch.Agent) {
	port := uint16(s.sock.LocalAddr().(*net.UDPAddr).Port)
	last, _ := hostAddrs(port)
	t := time.NewTicker(addrWatchInterval)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		now, err := hostAddrs(port)
		if err != nil || now == last {
			continue
		}
		s.c.log.Info("parley: this device's addresses changed", "direct", s.id, "was", last, "now", now)
		last = now
		agent.Moved()
		go s.update()
	}
}

// hostAddrs is the session socket's IPv4 host candidates, as one string.
func hostAddrs(port uint16) (string, error) {
	hosts, err := punch.HostCandidates(port)
	if err != nil {
		return "", err
	}
	var b []byte
	for _, h := range hosts {
		if h.Addr().Is4() {
			b = h.AppendTo(append(b, ' '))
		}
	}
	return string(b), nil
}

// event applies a P2PEvent about this session.
func (s *DirectSession) event(ev *parleyv1.P2PEvent) {
	ps := ev.GetSession()
	switch ev.GetKind() {
	case parleyv1.P2PEvent_KIND_ACCEPTED:
		if ps.GetDeviceId() != s.d.deviceID {
			return
		}
		if err := s.onAccepted(ps); err != nil {
			s.close(true)
		}
	case parleyv1.P2PEvent_KIND_INTRO:
		if ps.GetDeviceId() != s.d.deviceID {
			return
		}
		s.mu.Lock()
		agent, pc := s.agent, s.pc
		s.mu.Unlock()
		if agent == nil || pc == nil {
			return
		}
		in := punch.Intro{Number: ps.GetIntro(), Mapping: punch.Mapping(ps.GetMapping()), PeerMapping: punch.Mapping(ps.GetPeerMapping()),
			StartDelay: time.Duration(ps.GetStartDelayMs()) * time.Millisecond}
		for _, cand := range ps.GetPeerCandidates() {
			ap, err := netip.ParseAddrPort(cand.GetAddr())
			if err != nil {
				continue
			}
			kind := punch.Host
			if cand.GetKind() == parleyv1.P2PCandidate_KIND_SERVER_REFLEXIVE {
				kind = punch.ServerReflexive
			}
			in.Candidates = append(in.Candidates, punch.Candidate{Kind: kind, Addr: ap})
		}
		if err := agent.Introduce(in); err != nil {
			s.c.log.Debug("parley: introduction refused", "direct", s.id, "err", err)
		}
	case parleyv1.P2PEvent_KIND_CLOSED:
		reason := closeReason(ps.GetCloseReason())
		s.mu.Lock()
		wasAccepted := s.accepted
		if s.err == nil {
			if ps.GetCloseReason() == parleyv1.P2PSession_CLOSE_REASON_REJECTED || ps.GetCloseReason() == parleyv1.P2PSession_CLOSE_REASON_EXPIRED && !wasAccepted {
				s.err = fmt.Errorf("%w (%s)", ErrDirectRejected, reason)
			} else {
				s.err = fmt.Errorf("%w: %s by %s", ErrDirectClosed, reason, s.peerName)
			}
		}
		s.mu.Unlock()
		if s.close(false) {
			s.c.events.push(DirectClosedEvent{SessionID: s.id, PeerName: s.peerName, Reason: reason})
		}
	}
}

func closeReason(r parleyv1.P2PSession_CloseReason) string {
	switch r {
	case parleyv1.P2PSession_CLOSE_REASON_REJECTED:
		return "rejected"
	case parleyv1.P2PSession_CLOSE_REASON_EXPIRED:
		return "expired"
	}
	return "closed"
}

// gotChat stores (done by the channel through historyAdapter) and
// announces a received message.
func (s *DirectSession) gotChat(m p2pchan.ChatMessage) {
	s.c.events.push(DirectMessageEvent{Session: s, Message: DirectMessage{ID: m.ID, PeerID: s.peerID, PeerName: s.peerName,
		Text: m.Text, SentAt: m.SentAt, At: time.Now()}})
}

// gotFile accepts an incoming file into the downloads folder, if any.
func (s *DirectSession) gotFile(_ context.Context, offer p2pchan.FileOffer) p2pchan.FileDecision {
	dir := s.c.cfg.directDownloads
	if dir == "" {
		return p2pchan.FileDecision{Reason: "this client does not accept files over direct sessions"}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		s.c.log.Warn("parley: the downloads folder for direct files", "dir", dir, "err", err)
		return p2pchan.FileDecision{Reason: "the receiver cannot store files now"}
	}
	return p2pchan.FileDecision{Accept: true, Dir: dir, Done: func(path string, err error) {
		if errors.Is(err, p2pchan.ErrInterrupted) {
			return // kept for a resume
		}
		s.c.events.push(DirectFileEvent{Session: s, Name: offer.Name, Size: int64(offer.Size), Path: path, Err: err})
	}}
}

// historyAdapter stores a session's received messages in the local
// history (p2pchan.History).
type historyAdapter struct{ s *DirectSession }

func (h historyAdapter) Has(id string) bool { return h.s.d.log.has(h.s.peerID, id) }

func (h historyAdapter) Put(m p2pchan.ChatMessage) error {
	_, err := h.s.d.log.put(DirectMessage{ID: m.ID, PeerID: h.s.peerID, PeerName: h.s.peerName, Text: m.Text,
		SentAt: m.SentAt, At: time.Now()})
	return err
}

// handleP2PEventLocked routes a P2PEvent (c.mu held: nothing here blocks
// on the connection).
func (c *Client) handleP2PEventLocked(ev *parleyv1.P2PEvent) {
	d, err := c.p2p()
	if err != nil {
		return
	}
	ps := ev.GetSession()
	id := ps.GetSessionId()
	d.mu.Lock()
	s := d.sessions[id]
	if s == nil {
		switch ev.GetKind() {
		case parleyv1.P2PEvent_KIND_OFFER:
			o := DirectOfferEvent{SessionID: id, FromID: ps.GetPeerId(), From: ps.GetPeerName(), Friend: ps.GetPeerIsFriend()}
			if ms := ps.GetExpiresAtUnixMs(); ms > 0 {
				o.ExpiresAt = time.UnixMilli(ms)
			}
			d.offers[id] = o
			d.mu.Unlock()
			c.offerDirect(o)
			return
		case parleyv1.P2PEvent_KIND_ACCEPTED, parleyv1.P2PEvent_KIND_CLOSED:
			// An ACCEPTED naming this device is this device's own answer
			// racing ahead of AcceptDirect's reply (kept below for the
			// session it makes); only another device's takes the offer.
			own := ev.GetKind() == parleyv1.P2PEvent_KIND_ACCEPTED && ps.GetDeviceId() == d.deviceID
			if _, offered := d.offers[id]; offered && !own {
				delete(d.offers, id)
				d.mu.Unlock()
				reason := "answered elsewhere"
				if ev.GetKind() == parleyv1.P2PEvent_KIND_CLOSED {
					reason = closeReason(ps.GetCloseReason())
				}
				c.events.push(DirectClosedEvent{SessionID: id, PeerName: ps.GetPeerName(), Reason: reason})
				return
			}
		}
		// A session whose open or answer reply is still on its way, its
		// CLOSED included: a peer's quick decline must end the GoDirect
		// waiting for it, not be lost to the race.
		d.keepEarlyLocked(id, ev, time.Now())
		d.mu.Unlock()
		return
	}
	d.mu.Unlock()
	go s.event(ev) // may send requests: never on the reader
}

// offerDirect applies the policy to an offer.
func (c *Client) offerDirect(o DirectOfferEvent) {
	policy := c.cfg.directPolicy
	switch {
	case policy == DirectNever:
		go func() {
			ctx, cancel := context.WithTimeout(c.ctx, 10*time.Second)
			defer cancel()
			_ = c.RejectDirect(ctx, o.SessionID)
		}()
	case policy == DirectFriends && o.Friend:
		go func() {
			ctx, cancel := context.WithTimeout(c.ctx, directConnectTimeout)
			defer cancel()
			s, err := c.AcceptDirect(ctx, o.SessionID)
			if err != nil {
				c.log.Info("parley: accepting a direct session from a friend failed", "from", o.From, "err", err)
				return
			}
			c.events.push(DirectOpenedEvent{Session: s})
		}()
	default:
		c.events.push(o)
	}
}

// routeRelay hands a relayed packet to its session.
func (c *Client) routeRelay(r *parleyv1.P2PRelay) {
	d, err := c.p2p()
	if err != nil {
		return
	}
	d.mu.Lock()
	s := d.sessions[r.GetSessionId()]
	d.mu.Unlock()
	if s == nil {
		return
	}
	s.mu.Lock()
	pc := s.pc
	s.mu.Unlock()
	if pc != nil {
		pc.DeliverRelay(r.GetPacket())
	}
}

// reattachDirect re-attaches every session's relay after a reconnect.
func (c *Client) reattachDirect() {
	d, err := c.p2p()
	if err != nil {
		return
	}
	d.mu.Lock()
	var ss []*DirectSession
	for _, s := range d.sessions {
		ss = append(ss, s)
	}
	d.mu.Unlock()
	for _, s := range ss {
		s.mu.Lock()
		ok := s.accepted && !s.closed
		s.mu.Unlock()
		if ok {
			go s.update()
		}
	}
}

// closeDirect ends every session as the client closes, telling the server
// (briefly) so the peers learn at once.
func (c *Client) closeDirect() {
	d := c.p2pState.Load()
	if d == nil {
		return
	}
	d.mu.Lock()
	var ss []*DirectSession
	for _, s := range d.sessions {
		ss = append(ss, s)
	}
	d.mu.Unlock()
	var wg sync.WaitGroup
	for _, s := range ss {
		s.close(false)
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(c.ctx, time.Second)
			defer cancel()
			_ = c.okRequest(ctx, &parleyv1.Frame{Body: &parleyv1.Frame_P2PClose{P2PClose: &parleyv1.P2PCloseRequest{SessionId: s.id}}})
		}()
	}
	wg.Wait()
}
