package tui

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	tea "github.com/charmbracelet/bubbletea"

	"github.com/parleychat/parley/clients/parley"
	"github.com/parleychat/parley/clients/parley/natcheck"
	"github.com/parleychat/parley/protocol/convid"
)

// Direct sessions (docs/protocol.md §20) in the chat screen: a private
// chat's two users may talk peer to peer, end to end encrypted with their
// device keys. While a session with the chat's peer is open, what the user
// types there goes over it (the server never sees it) and is marked ⇄; the
// header shows how the session's packets travel (⇄ direct, ↻ relayed,
// connecting…).
//
//	/direct [USER]        offer a direct session to the selected chat's peer (or USER)
//	/direct off           end the session with the selected chat's peer
//	/accept-direct [USER] accept an offer (the selected chat's, USER's, or the only one)
//	/reject-direct [USER] decline one
//	/sendfile PATH        send a file over the open session
//	/safety               the session's safety number
//	/trust NUMBER         accept a peer's changed key whose safety number is NUMBER
//	/nat                  classify this machine's NAT
//
// A peer whose device key is not the one this client pinned for them is
// not connected: the screen warns with the safety number and waits for
// /trust with that number (compared with the peer out of band).

// directView is the chat screen's part in direct sessions.
type directView struct {
	sessions map[string]*parley.DirectSession   // open sessions, by the peer's user id
	offers   map[string]parley.DirectOfferEvent // offers to this user not answered, by the offerer's user id
	keys     map[string]*parley.PeerKeyError    // changed keys waiting for /trust, by the peer's user id
	pending  map[string]string                  // an offer or acceptance on its way, by lowercased peer name: what the badge says
	told     map[string]parley.DirectPath       // the path last told of in the chat, by session id
	sent     int                                // numbers the direct messages being sent (line.key)
}

func newDirectView() directView {
	return directView{sessions: make(map[string]*parley.DirectSession), offers: make(map[string]parley.DirectOfferEvent),
		keys: make(map[string]*parley.PeerKeyError), pending: make(map[string]string), told: make(map[string]parley.DirectPath)}
}

// Messages of direct sessions.
type (
	// directOpenMsg: /direct (offer) or /accept-direct finished.
	directOpenMsg struct {
		client *parley.Client
		peer   string // the peer's name as asked
		offer  bool   // this side offered
		s      *parley.DirectSession
		err    error
	}
	// directRejectMsg: /reject-direct finished.
	directRejectMsg struct {
		client *parley.Client
		peer   string
		err    error
	}
	// directSentMsg: a direct message was stored by the peer, or not.
	directSentMsg struct {
		client *parley.Client
		conv   string
		key    string // the line's placeholder key
		msg    parley.DirectMessage
		err    error
	}
	// directHistoryMsg carries a private chat's direct messages, from the
	// local store.
	directHistoryMsg struct {
		client *parley.Client
		conv   string
		msgs   []parley.DirectMessage
		err    error
	}
	// natMsg carries /nat's classification.
	natMsg struct {
		res    natcheck.Result
		stun   string
		err    error
		client *parley.Client
	}
)

// directConnectTimeout bounds /direct and /accept-direct: the peer has a
// minute to answer an offer, then the channel a few seconds to come up.
const directConnectTimeout = 90 * time.Second

func goDirectCmd(ctx context.Context, c *parley.Client, peer string) tea.Cmd {
	return func() tea.Msg {
		ctx, cancel := context.WithTimeout(ctx, directConnectTimeout)
		defer cancel()
		s, err := c.GoDirect(ctx, peer)
		return directOpenMsg{client: c, peer: peer, offer: true, s: s, err: err}
	}
}

func acceptDirectCmd(ctx context.Context, c *parley.Client, o parley.DirectOfferEvent) tea.Cmd {
	return func() tea.Msg {
		ctx, cancel := context.WithTimeout(ctx, directConnectTimeout)
		defer cancel()
		s, err := c.AcceptDirect(ctx, o.SessionID)
		return directOpenMsg{client: c, peer: o.From, s: s, err: err}
	}
}

func rejectDirectCmd(ctx context.Context, c *parley.Client, o parley.DirectOfferEvent) tea.Cmd {
	return func() tea.Msg {
		ctx, cancel := context.WithTimeout(ctx, requestTimeout)
		defer cancel()
		return directRejectMsg{client: c, peer: o.From, err: c.RejectDirect(ctx, o.SessionID)}
	}
}

func directSendCmd(ctx context.Context, c *parley.Client, s *parley.DirectSession, conv, key, text string) tea.Cmd {
	return func() tea.Msg {
		ctx, cancel := context.WithTimeout(ctx, requestTimeout)
		defer cancel()
		m, err := s.Send(ctx, text)
		return directSentMsg{client: c, conv: conv, key: key, msg: m, err: err}
	}
}

func directHistoryCmd(c *parley.Client, conv, peerID string) tea.Cmd {
	return func() tea.Msg {
		msgs, err := c.DirectHistory(peerID)
		return directHistoryMsg{client: c, conv: conv, msgs: msgs, err: err}
	}
}

func natCmd(ctx context.Context, c *parley.Client) tea.Cmd {
	stun := c.Welcome().STUNAddr
	return func() tea.Msg {
		ctx, cancel := context.WithTimeout(ctx, requestTimeout)
		defer cancel()
		res, err := natcheck.Discover(ctx, stun)
		return natMsg{client: c, res: res, stun: stun, err: err}
	}
}

// dmConv is the private chat with a user (added to the pane if new).
func (m *model) dmConv(peerID, peerName string) *convView {
	id, err := convid.DM(m.chat.myID, peerID)
	if err != nil {
		return nil
	}
	cv, _ := m.chat.ensureConv(id.String(), parley.ConversationDirect, peerName)
	return cv
}

// peerOf is a private chat's other user id ("" for other chats).
func (m *model) peerOf(conv string) string {
	id, err := convid.Parse(conv)
	if err != nil || id.Kind() != convid.KindDirect {
		return ""
	}
	return id.Peer(m.chat.myID)
}

// directNotice shows a notice in the private chat with peerID and, when
// another chat is selected, there too, naming the peer.
func (m *model) directNotice(peerID, peerName string, kind lineKind, text string) {
	cv := m.dmConv(peerID, peerName)
	if cv == nil {
		m.chat.add(kind, text)
		return
	}
	cv.addNotice(kind, text)
	if sel := m.chat.selected(); sel != nil && sel != cv {
		sel.addNotice(kind, "@"+peerName+": "+text)
	}
	m.chat.refresh()
}

// session is the open direct session in conv, if any.
func (m *model) session(conv string) *parley.DirectSession {
	peer := m.peerOf(conv)
	if peer == "" {
		return nil
	}
	return m.chat.direct.sessions[peer]
}

// directCommand runs the direct-session commands; it reports false for
// others.
func (m *model) directCommand(cmd, args string) (tea.Cmd, bool) {
	args = strings.TrimSpace(args)
	switch cmd {
	case "/direct":
		if args == "off" {
			m.directOff()
			return nil, true
		}
		return m.offerDirect(args), true
	case "/accept-direct":
		return m.answerDirect(args, true), true
	case "/reject-direct":
		return m.answerDirect(args, false), true
	case "/trust":
		return m.trust(args), true
	case "/safety":
		m.safety()
		return nil, true
	case "/sendfile":
		return m.sendDirectFile(args), true
	case "/nat":
		if m.client == nil {
			m.chat.add(lineError, "/nat: "+errNotConnected.Error())
			return nil, true
		}
		m.chat.system("classifying your NAT with the server's rendezvous…")
		return natCmd(m.ctx, m.client), true
	}
	return nil, false
}

// directPeer is whom a command means: USER if given, else the selected
// private chat's peer (name and, when known, id).
func (m *model) directPeer(op, args string) (name, id string, ok bool) {
	if u := strings.TrimPrefix(args, "@"); u != "" {
		if strings.ContainsAny(u, " \t") {
			m.chat.add(lineError, fmt.Sprintf("usage: %s [USER]", op))
			return "", "", false
		}
		for pid, o := range m.chat.direct.offers {
			if strings.EqualFold(o.From, u) {
				return o.From, pid, true
			}
		}
		for _, cv := range m.chat.convs {
			if cv.kind == parley.ConversationDirect && strings.EqualFold(cv.title, u) {
				return cv.title, m.peerOf(cv.id), true
			}
		}
		return u, "", true
	}
	cv := m.chat.selected()
	if cv == nil || cv.kind != parley.ConversationDirect || cv.title == "" {
		m.chat.add(lineError, op+": select a private chat (tab, /msg USER) or name the user: "+op+" USER")
		return "", "", false
	}
	return cv.title, m.peerOf(cv.id), true
}

// offerDirect is /direct [USER].
func (m *model) offerDirect(args string) tea.Cmd {
	name, id, ok := m.directPeer("/direct", args)
	if !ok {
		return nil
	}
	d := &m.chat.direct
	switch {
	case strings.EqualFold(name, m.chat.me):
		m.chat.add(lineError, "/direct: a direct session is with someone else")
		return nil
	case m.client == nil:
		m.chat.add(lineError, "/direct: "+errNotConnected.Error())
		return nil
	case id != "" && d.sessions[id] != nil:
		m.chat.system("already in a direct session with %s (%s): /direct off ends it", name, pathWords(d.sessions[id].Path()))
		return nil
	case id != "" && d.keys[id] != nil:
		m.keyWarning(d.keys[id])
		return nil
	case d.pending[strings.ToLower(name)] != "":
		m.chat.add(lineError, fmt.Sprintf("/direct: already connecting with %s", name))
		return nil
	}
	if o, offered := d.offers[id]; offered && id != "" {
		return m.acceptOffer(o) // they asked first: take their offer
	}
	d.pending[strings.ToLower(name)] = "offering"
	m.chat.system("offering %s a direct session (peer to peer, end-to-end encrypted): waiting for them to accept…", name)
	return goDirectCmd(m.ctx, m.client, name)
}

// answerDirect is /accept-direct and /reject-direct.
func (m *model) answerDirect(args string, accept bool) tea.Cmd {
	op := "/reject-direct"
	if accept {
		op = "/accept-direct"
	}
	d := &m.chat.direct
	var o parley.DirectOfferEvent
	found := false
	switch {
	case args != "":
		u := strings.TrimPrefix(args, "@")
		for _, of := range d.offers {
			if strings.EqualFold(of.From, u) {
				o, found = of, true
			}
		}
	default:
		if cv := m.chat.selected(); cv != nil {
			o, found = d.offers[m.peerOf(cv.id)]
		}
		if !found && len(d.offers) == 1 {
			for _, of := range d.offers {
				o, found = of, true
			}
		}
	}
	if !found {
		if len(d.offers) == 0 {
			m.chat.add(lineError, op+": no offer to go direct")
		} else {
			m.chat.add(lineError, fmt.Sprintf("%s: which one? %s USER (offers from %s)", op, op, strings.Join(d.offerNames(), ", ")))
		}
		return nil
	}
	if m.client == nil {
		m.chat.add(lineError, op+": "+errNotConnected.Error())
		return nil
	}
	if !accept {
		delete(d.offers, o.FromID)
		return rejectDirectCmd(m.ctx, m.client, o)
	}
	return m.acceptOffer(o)
}

func (d *directView) offerNames() []string {
	var names []string
	for _, o := range d.offers {
		names = append(names, o.From)
	}
	slices.Sort(names)
	return names
}

func (m *model) acceptOffer(o parley.DirectOfferEvent) tea.Cmd {
	d := &m.chat.direct
	delete(d.offers, o.FromID)
	d.pending[strings.ToLower(o.From)] = "accepting"
	m.directNotice(o.FromID, o.From, lineSystem, fmt.Sprintf("accepting %s's direct session: connecting…", o.From))
	return acceptDirectCmd(m.ctx, m.client, o)
}

// directOff is /direct off.
func (m *model) directOff() {
	cv := m.chat.selected()
	var s *parley.DirectSession
	if cv != nil {
		s = m.session(cv.id)
	}
	if s == nil {
		m.chat.add(lineError, "/direct off: no direct session in this chat")
		return
	}
	delete(m.chat.direct.sessions, s.PeerID())
	delete(m.chat.direct.told, s.ID())
	_ = s.Close()
	m.directNotice(s.PeerID(), s.PeerName(), lineSystem,
		fmt.Sprintf("direct session with %s closed: messages go through the server again", s.PeerName()))
}

// trust is /trust NUMBER: the changed key whose safety number is NUMBER
// (of the selected chat's peer, or the only one waiting) is accepted, and
// the session offered again.
func (m *model) trust(args string) tea.Cmd {
	d := &m.chat.direct
	if digits(args) == "" {
		m.chat.add(lineError, "usage: /trust NUMBER (the safety number shown, compared with your peer)")
		return nil
	}
	var pk *parley.PeerKeyError
	if cv := m.chat.selected(); cv != nil {
		pk = d.keys[m.peerOf(cv.id)]
	}
	if pk == nil {
		for _, k := range d.keys {
			if digits(k.SafetyNumber) == digits(args) {
				pk = k
			}
		}
	}
	switch {
	case pk == nil:
		m.chat.add(lineError, "/trust: no changed key is waiting to be trusted")
		return nil
	case digits(pk.SafetyNumber) != digits(args):
		m.directNotice(pk.PeerID, pk.PeerName, lineError, fmt.Sprintf(
			"/trust: that is not the safety number of %s's new key; nothing trusted. Compare again: %s", pk.PeerName, pk.SafetyNumber))
		return nil
	case m.client == nil:
		m.chat.add(lineError, "/trust: "+errNotConnected.Error())
		return nil
	}
	if err := m.client.TrustPeerKey(pk.PeerID, pk.Device.PublicKey); err != nil {
		m.chat.add(lineError, "/trust: "+describe(err))
		return nil
	}
	delete(d.keys, pk.PeerID)
	d.pending[strings.ToLower(pk.PeerName)] = "offering"
	m.directNotice(pk.PeerID, pk.PeerName, lineSystem, fmt.Sprintf(
		"trusted %s's new key (device %s); offering the direct session again…", pk.PeerName, pk.Device.DeviceID))
	return goDirectCmd(m.ctx, m.client, pk.PeerName)
}

// safety is /safety: the safety number of the selected chat's session
// (or of a changed key waiting for /trust).
func (m *model) safety() {
	cv := m.chat.selected()
	if cv == nil {
		return
	}
	peer := m.peerOf(cv.id)
	if pk := m.chat.direct.keys[peer]; pk != nil {
		m.keyWarning(pk)
		return
	}
	s := m.chat.direct.sessions[peer]
	if s == nil {
		m.chat.add(lineError, "/safety: no direct session in this chat (/direct opens one)")
		return
	}
	dev := s.PeerDevice()
	m.chat.system("safety number with %s (their device %s %q): %s · the same number on both screens means nobody is in the middle",
		s.PeerName(), dev.DeviceID, printable(dev.Name), s.SafetyNumber())
}

// keyWarning says that a peer's key changed and what to do about it.
func (m *model) keyWarning(pk *parley.PeerKeyError) {
	m.directNotice(pk.PeerID, pk.PeerName, lineError, fmt.Sprintf(
		"⚠ %s's device key changed (device %s %q): a new device or a reinstall, or someone in the middle. Not connected.",
		pk.PeerName, pk.Device.DeviceID, printable(pk.Device.Name)))
	m.directNotice(pk.PeerID, pk.PeerName, lineSystem, fmt.Sprintf(
		"safety number: %s · compare it with %s (in person or on a call); only if it matches, type /trust %s",
		pk.SafetyNumber, pk.PeerName, pk.SafetyNumber))
}

// onDirectOpen takes the end of /direct or /accept-direct.
func (m *model) onDirectOpen(msg directOpenMsg) tea.Cmd {
	if msg.client != m.client {
		if msg.s != nil {
			_ = msg.s.Close()
		}
		return nil
	}
	d := &m.chat.direct
	delete(d.pending, strings.ToLower(msg.peer))
	var pk *parley.PeerKeyError
	switch {
	case errors.As(msg.err, &pk):
		d.keys[pk.PeerID] = pk
		m.keyWarning(pk)
		return nil
	case errors.Is(msg.err, parley.ErrDirectRejected):
		m.chat.add(lineError, fmt.Sprintf("%s declined the direct session (or did not answer in time)", msg.peer))
		return nil
	case msg.err != nil:
		m.chat.add(lineError, fmt.Sprintf("direct session with %s: %s", msg.peer, describe(msg.err)))
		return nil
	}
	how := "accepted"
	if msg.offer {
		how = msg.s.PeerName() + " accepted"
	}
	return m.sessionOpened(msg.s, how)
}

// sessionOpened shows a new session and makes it the one of its chat.
func (m *model) sessionOpened(s *parley.DirectSession, how string) tea.Cmd {
	d := &m.chat.direct
	peer := s.PeerID()
	if old := d.sessions[peer]; old != nil && old != s {
		_ = old.Close() // one session per peer: the newest
	}
	d.sessions[peer] = s
	d.told[s.ID()] = s.Path()
	delete(d.keys, peer)
	delete(d.offers, peer)
	delete(d.pending, strings.ToLower(s.PeerName()))
	dev := s.PeerDevice()
	m.directNotice(peer, s.PeerName(), lineSystem, fmt.Sprintf(
		"⇄ direct session with %s open (%s): end-to-end encrypted with their device %s, %s · what you type here now goes peer to peer · /safety · /sendfile PATH · /direct off",
		s.PeerName(), how, dev.DeviceID, pathWords(s.Path())))
	cv := m.dmConv(peer, s.PeerName())
	if cv == nil {
		return nil
	}
	return m.loadDirectHistory(cv)
}

// onDirectReject takes the end of /reject-direct.
func (m *model) onDirectReject(msg directRejectMsg) {
	if msg.client != m.client {
		return
	}
	if msg.err != nil {
		m.chat.add(lineError, "/reject-direct: "+describe(msg.err))
		return
	}
	m.chat.system("declined %s's direct session", msg.peer)
}

// onDirectEvent turns the SDK's direct-session events into what the user
// sees.
func (m *model) onDirectEvent(ev parley.Event) tea.Cmd {
	d := &m.chat.direct
	switch ev := ev.(type) {
	case parley.DirectOfferEvent:
		d.offers[ev.FromID] = ev
		m.directNotice(ev.FromID, ev.From, lineSystem, fmt.Sprintf(
			"%s offers a direct session (peer to peer, end-to-end encrypted): /accept-direct or /reject-direct", ev.From))
	case parley.DirectOpenedEvent:
		return m.sessionOpened(ev.Session, "accepted by itself: "+ev.Session.PeerName()+" is a friend")
	case parley.DirectPathEvent:
		s := ev.Session
		if d.sessions[s.PeerID()] != s || d.told[s.ID()] == ev.Path {
			return nil
		}
		d.told[s.ID()] = ev.Path
		switch ev.Path {
		case parley.DirectDirect:
			m.directNotice(s.PeerID(), s.PeerName(), lineSystem, "⇄ "+pathWords(ev.Path))
		case parley.DirectRelayed:
			m.directNotice(s.PeerID(), s.PeerName(), lineSystem, "↻ "+pathWords(ev.Path))
		}
	case parley.DirectMessageEvent:
		return m.onDirectMessage(ev)
	case parley.DirectFileEvent:
		s := ev.Session
		if ev.Err != nil {
			m.directNotice(s.PeerID(), s.PeerName(), lineError, fmt.Sprintf("receiving %s over the direct session failed: %s",
				printable(ev.Name), describe(ev.Err)))
			return nil
		}
		m.directNotice(s.PeerID(), s.PeerName(), lineSystem, fmt.Sprintf("⇄ received %s (%s) from %s over the direct session (SHA-256 checked): saved to %s",
			printable(filepath.Base(ev.Path)), humanSize(uint64(ev.Size)), s.PeerName(), printable(ev.Path)))
	case parley.DirectClosedEvent:
		for id, o := range d.offers {
			if o.SessionID == ev.SessionID {
				delete(d.offers, id)
				reason := ev.Reason
				if reason == "answered elsewhere" {
					reason = "answered on another device"
				}
				m.directNotice(id, o.From, lineSystem, fmt.Sprintf("%s's offer to go direct ended (%s)", o.From, reason))
			}
		}
		for id, s := range d.sessions {
			if s.ID() == ev.SessionID && s.Path() == parley.DirectClosed {
				delete(d.sessions, id)
				delete(d.told, s.ID())
				m.directNotice(id, s.PeerName(), lineSystem, fmt.Sprintf(
					"direct session with %s ended (%s): messages go through the server again", s.PeerName(), ev.Reason))
			}
		}
	}
	return nil
}

// pathWords says how a session's packets travel.
func pathWords(p parley.DirectPath) string {
	switch p {
	case parley.DirectDirect:
		return "direct: packets go straight to the peer"
	case parley.DirectRelayed:
		return "relayed through the server (it cannot read them: end-to-end encrypted)"
	case parley.DirectClosed:
		return "closed"
	}
	return "connecting (through the server's relay meanwhile)"
}

// directBadge is the header's word on direct sessions: the selected
// private chat's (its path, a pending offer, a changed key) and offers
// from others.
func (m *model) directBadge() string {
	d := &m.chat.direct
	var parts []string
	peer := ""
	if cv := m.chat.selected(); cv != nil && cv.kind == parley.ConversationDirect {
		peer = m.peerOf(cv.id)
		switch s := d.sessions[peer]; {
		case d.keys[peer] != nil:
			parts = append(parts, errorStyle.Render("⚠ "+cv.title+"'s key changed: /safety · /trust NUMBER"))
		case s != nil:
			switch s.Path() {
			case parley.DirectDirect:
				parts = append(parts, ownNameStyle.Render("⇄ direct"))
			case parley.DirectRelayed:
				parts = append(parts, warnStyle.Render("↻ relayed"))
			default:
				parts = append(parts, warnStyle.Render("connecting…"))
			}
		case d.pending[strings.ToLower(cv.title)] != "":
			parts = append(parts, warnStyle.Render("connecting…"))
		}
	}
	for _, name := range d.offerNames() {
		for id, o := range d.offers {
			if o.From == name {
				text := "⇄ " + name + " offers direct: /accept-direct"
				if id != peer {
					text += " " + name
				}
				parts = append(parts, titleStyle.Render(text))
			}
		}
	}
	return strings.Join(parts, "  ")
}

// sendDirect sends text over s: shown at once, marked as being sent
// until the peer stored it.
func (m *model) sendDirect(cv *convView, s *parley.DirectSession, text string) tea.Cmd {
	d := &m.chat.direct
	d.sent++
	key := fmt.Sprintf("sending-%d", d.sent)
	cv.addDirect(line{kind: lineOwn, at: m.now(), from: m.chat.me, text: text, direct: true, key: key, note: "sending…"})
	m.chat.refresh()
	return directSendCmd(m.ctx, m.client, s, cv.id, key, text)
}

// onDirectSent marks a sent direct message delivered, or says why not.
func (m *model) onDirectSent(msg directSentMsg) {
	if msg.client != m.client {
		return
	}
	cv := m.chat.conv(msg.conv)
	if cv == nil {
		return
	}
	i := slices.IndexFunc(cv.direct, func(l line) bool { return l.key == msg.key })
	if i < 0 {
		return
	}
	l := &cv.direct[i]
	switch {
	case msg.err == nil && cv.directIDs[msg.msg.ID]:
		cv.direct = slices.Delete(cv.direct, i, i+1) // the history read meanwhile has it
	case msg.err == nil:
		l.id, l.key, l.note = msg.msg.ID, "", ""
		cv.directIDs[msg.msg.ID] = true
	case errors.Is(msg.err, context.DeadlineExceeded):
		l.note = "not confirmed yet: it is delivered once the session recovers"
	default:
		l.note = "not sent: " + describe(msg.err)
	}
	m.chat.refresh()
}

// onDirectMessage shows a message that came over a direct session.
func (m *model) onDirectMessage(ev parley.DirectMessageEvent) tea.Cmd {
	s := ev.Session
	cv := m.dmConv(s.PeerID(), s.PeerName())
	if cv == nil {
		return nil
	}
	if !cv.addDirect(directLine(ev.Message, m.chat.me)) {
		return nil
	}
	if cv == m.chat.selected() {
		m.chat.refresh()
	} else {
		cv.unread++
	}
	return m.loadDirectHistory(cv)
}

func directLine(dm parley.DirectMessage, me string) line {
	l := line{kind: lineOther, at: dm.SentAt, from: dm.PeerName, text: dm.Text, direct: true, id: dm.ID}
	if dm.Outgoing {
		l.kind, l.from = lineOwn, me
	}
	if l.at.IsZero() {
		l.at = dm.At
	}
	return l
}

// loadDirectHistory reads a private chat's direct messages from the local
// store, once per login.
func (m *model) loadDirectHistory(cv *convView) tea.Cmd {
	if cv.directLoaded || cv.kind != parley.ConversationDirect || m.client == nil {
		return nil
	}
	peer := m.peerOf(cv.id)
	if peer == "" {
		return nil
	}
	cv.directLoaded = true
	return directHistoryCmd(m.client, cv.id, peer)
}

func (m *model) onDirectHistory(msg directHistoryMsg) {
	if msg.client != m.client {
		return
	}
	cv := m.chat.conv(msg.conv)
	if cv == nil {
		return
	}
	if msg.err != nil {
		cv.addNotice(lineError, "reading the direct messages: "+describe(msg.err))
		m.chat.refresh()
		return
	}
	for _, dm := range msg.msgs {
		cv.addDirect(directLine(dm, m.chat.me))
	}
	if cv == m.chat.selected() {
		m.chat.refresh()
	}
}

// errNoDirect: a file for the direct session has no session to go over.
var errNoDirect = errors.New("no direct session (/direct opens one)")

// sendDirectFile is /sendfile PATH: the file goes over the selected
// chat's direct session, with its bar in the transfers pane like any
// upload.
func (m *model) sendDirectFile(args string) tea.Cmd {
	path := expandPath(args)
	if path == "" {
		m.chat.add(lineError, `usage: /sendfile PATH (in a private chat with a direct session; a path with spaces in "quotes")`)
		return nil
	}
	cv := m.chat.selected()
	if cv == nil || m.session(cv.id) == nil {
		m.chat.add(lineError, "/sendfile: no direct session in this chat (/direct opens one; /send PATH sends through the server)")
		return nil
	}
	st, err := os.Stat(path)
	switch {
	case err != nil:
		m.chat.add(lineError, "/sendfile: "+printable(err.Error()))
		return nil
	case !st.Mode().IsRegular():
		m.chat.add(lineError, "/sendfile: "+printable(path)+" is not a regular file")
		return nil
	}
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	e := m.chat.addFile(&fileEntry{conv: cv.id, name: safeName(filepath.Base(path)), size: uint64(st.Size()),
		sender: m.chat.me, outgoing: true, viaDirect: true})
	m.chat.system("⇄ sending %s (%s) as #%d over the direct session…", e.name, humanSize(e.size), e.num)
	return m.startTransfer(newTransfer(upload, e, path))
}

// directUploadCmd sends a file over s (the SDK resumes a file sent again
// from where the peer's copy stopped).
func directUploadCmd(ctx context.Context, s *parley.DirectSession, tr *transfer, path string) tea.Cmd {
	cnt, attempt := tr.cnt, tr.attempt
	return func() tea.Msg {
		err := s.SendFile(ctx, path, func(done, total int64) {
			cnt.done.Store(uint64(done))
			cnt.total.Store(uint64(total))
		})
		return transferDoneMsg{tr: tr, attempt: attempt, err: err}
	}
}

// onNAT shows /nat's answer.
func (m *model) onNAT(msg natMsg) {
	if msg.client != m.client {
		return
	}
	r := msg.res
	switch {
	case errors.Is(msg.err, natcheck.ErrNoRendezvous):
		m.chat.add(lineError, "/nat: the server runs no rendezvous: direct sessions stay relayed")
		return
	case errors.Is(msg.err, natcheck.ErrNoOtherAddress):
		m.chat.system("NAT: unknown (the rendezvous has one address, so only your public address is known: %s)", r.Mapped)
		m.chat.system("direct sessions: %s", r.Advice())
		return
	case msg.err != nil:
		m.chat.add(lineError, "/nat: "+describe(msg.err))
		return
	}
	text := "NAT: " + r.Name()
	if !r.UDPBlocked {
		text += fmt.Sprintf(" · public address %s · mapping %s, filtering %s", r.Mapped, r.Mapping, r.Filtering)
	}
	m.chat.system("%s", text)
	m.chat.system("direct sessions: %s", r.Advice())
}

// digits keeps the digits of a safety number as typed.
func digits(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r >= '0' && r <= '9' {
			b.WriteRune(r)
		}
	}
	return b.String()
}
