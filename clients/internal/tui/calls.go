package tui

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/lipgloss"

	"github.com/parleychat/parley/clients/internal/audiodev"
	"github.com/parleychat/parley/clients/parley"
)

// Voice calls (issue 11): /call, /answer, /reject, /hangup and /mute, the
// call bar under the header (a ringing banner; the running call's state,
// participants, duration and media figures), and the calls' system
// messages in the chats. One call runs on this device at a time (the
// server allows one per user); another may ring meanwhile (a group's).

// AudioDevices opens a call's microphone and speaker: audiodev.System for
// the real ones, an in-memory pair in tests.
type AudioDevices interface {
	OpenMicrophone() (audiodev.Microphone, error)
	OpenSpeaker() (audiodev.Speaker, error)
}

// callState is the call bar's state.
type callState struct {
	ring      *parley.Call // a call ringing for the user (on all their devices); nil: none
	answering string       // the call /answer is joining (its events do not stop the ring)
	sess      *parley.CallSession
	pending   string // a /call or /answer on its way: what the bar says meanwhile
	cancel    bool   // /hangup came while pending: hang up once it is in
	target    string // whom /call @USER called: the bar's title until the chat is known
	notes     []string
	muted     bool
	muting    bool // a /mute is on its way
}

// active: the bar shows something.
func (c *callState) active() bool { return c.ring != nil || c.sess != nil || c.pending != "" }

// rows is the bar's height: the ring banner, and two rows for a call.
func (c *callState) rows() int {
	n := 0
	if c.ring != nil {
		n++
	}
	switch {
	case c.sess != nil:
		n += 2
	case c.pending != "":
		n++
	}
	return n
}

// callAudio is a call's open devices and what is missing.
type callAudio struct {
	mic   audiodev.Microphone
	spk   audiodev.Speaker
	notes []string // told to the user: "no microphone found: ..."
}

// openCallAudio opens the devices. A missing one does not stop the call:
// the user can still hear (or speak), see who is in it and hang up, and
// is told plainly what the others will not hear. (Refusing the call would
// leave a caller ringing with no way to answer from this terminal.)
func openCallAudio(d AudioDevices) callAudio {
	if d == nil {
		return callAudio{notes: []string{"no audio devices: the call continues without sound"}}
	}
	var a callAudio
	mic, merr := d.OpenMicrophone()
	spk, serr := d.OpenSpeaker()
	if merr == nil {
		a.mic = mic
	}
	if serr == nil {
		a.spk = spk
	}
	switch {
	case merr != nil && serr != nil && errors.Is(merr, audiodev.ErrUnsupported):
		a.notes = append(a.notes, merr.Error()+": the call continues without sound")
	default:
		if merr != nil {
			a.notes = append(a.notes, merr.Error()+": the call continues without sending audio")
		}
		if serr != nil {
			a.notes = append(a.notes, serr.Error()+": the call continues without playing what the others say")
		}
	}
	return a
}

func (a callAudio) options() parley.CallOptions {
	var o parley.CallOptions
	if a.mic != nil {
		o.Input = a.mic
	}
	if a.spk != nil {
		o.Output = a.spk
	}
	return o
}

func (a callAudio) close() {
	if a.mic != nil {
		_ = a.mic.Close()
	}
	if a.spk != nil {
		_ = a.spk.Close()
	}
}

// callStartedMsg reports /call or /answer: the running session, or why
// not.
type callStartedMsg struct {
	op    string
	sess  *parley.CallSession
	notes []string
	err   error
}

// callDoneMsg: sess is over (its devices are closed).
type callDoneMsg struct{ sess *parley.CallSession }

// callOpMsg reports /hangup, /reject or /mute.
type callOpMsg struct {
	op    string
	muted bool // /mute: what was asked
	err   error
}

type callTickMsg struct{}

// startCallCmd opens the devices and places (user or conv) or joins
// (callID) a call.
func startCallCmd(ctx context.Context, c *parley.Client, devs AudioDevices, op, user, conv, callID string) tea.Cmd {
	return func() tea.Msg {
		a := openCallAudio(devs)
		ctx, cancel := context.WithTimeout(ctx, requestTimeout)
		defer cancel()
		var s *parley.CallSession
		var err error
		switch {
		case callID != "":
			s, err = c.JoinCall(ctx, callID, a.options())
		case user != "":
			s, err = c.PlaceCallTo(ctx, user, a.options())
		default:
			s, err = c.PlaceCall(ctx, conv, a.options())
		}
		if err != nil {
			a.close()
			return callStartedMsg{op: op, err: err}
		}
		go func() { // the devices live as long as the session
			<-s.Done()
			a.close()
		}()
		return callStartedMsg{op: op, sess: s, notes: a.notes}
	}
}

// waitCallDone reports the end of sess.
func waitCallDone(s *parley.CallSession) tea.Cmd {
	return func() tea.Msg {
		<-s.Done()
		return callDoneMsg{sess: s}
	}
}

func callOpCmd(ctx context.Context, op string, muted bool, f func(context.Context) error) tea.Cmd {
	return func() tea.Msg {
		ctx, cancel := context.WithTimeout(ctx, requestTimeout)
		defer cancel()
		return callOpMsg{op: op, muted: muted, err: f(ctx)}
	}
}

// callCommand runs the call commands; it reports false for others. A bare
// /reject declines a ringing call; with a number, or with nothing
// ringing, it is the file command.
func (m *model) callCommand(cmd, args string) (tea.Cmd, bool) {
	c := &m.chat.call
	args = strings.TrimSpace(args)
	switch cmd {
	case "/call":
		return m.placeCall(args), true
	case "/answer":
		switch {
		case c.ring == nil:
			m.chat.add(lineError, "/answer: no call is ringing")
		case c.sess != nil:
			m.chat.add(lineError, "/answer: you are in a call: /hangup first")
		case m.client != nil && c.pending == "":
			c.pending, c.answering = "answering "+m.callTitle(*c.ring)+"…", c.ring.ID
			m.callLayout()
			return startCallCmd(m.ctx, m.client, m.cfg.Audio, "/answer", "", "", c.ring.ID), true
		}
		return nil, true
	case "/reject":
		if c.ring == nil || args != "" {
			return nil, false
		}
		return m.rejectCall(), true
	case "/hangup":
		switch {
		case c.sess != nil && m.client != nil:
			s := c.sess
			return callOpCmd(m.ctx, "/hangup", false, s.Hangup), true
		case c.pending != "":
			c.cancel, c.pending = true, "hanging up…"
			return nil, true
		case c.ring != nil:
			return m.rejectCall(), true
		}
		m.chat.add(lineError, "/hangup: you are not in a call")
		return nil, true
	case "/mute":
		if c.sess == nil {
			m.chat.add(lineError, "/mute: you are not in a call")
			return nil, true
		}
		if c.muting {
			return nil, true
		}
		c.muting = true
		s, want := c.sess, !c.muted
		return callOpCmd(m.ctx, "/mute", want, func(ctx context.Context) error { return s.Mute(ctx, want) }), true
	}
	return nil, false
}

// placeCall runs /call [@USER]: the user, or the selected chat.
func (m *model) placeCall(args string) tea.Cmd {
	c := &m.chat.call
	user := strings.TrimPrefix(args, "@")
	if strings.ContainsAny(user, " \t") {
		m.chat.add(lineError, "usage: /call [@USER] (without a user: the selected private chat or group)")
		return nil
	}
	switch {
	case c.sess != nil:
		m.chat.add(lineError, "/call: you are in a call: /hangup first")
		return nil
	case c.pending != "":
		return nil
	}
	conv := ""
	if user == "" {
		cv := m.chat.selected()
		switch {
		case cv == nil:
			return nil
		case cv.kind == parley.ConversationRoom:
			m.chat.add(lineError, "/call: calls are in a private chat or a group, not the public room (/call @USER, or tab to one)")
			return nil
		case cv.kind == parley.ConversationGroup && cv.invited:
			m.chat.add(lineError, "/call: join the group first (/join)")
			return nil
		}
		conv = cv.id
		c.target = cv.name()
	} else {
		c.target = "@" + user
	}
	if m.client == nil {
		return nil
	}
	c.pending = "calling " + c.target + "…"
	m.callLayout()
	return startCallCmd(m.ctx, m.client, m.cfg.Audio, "/call", user, conv, "")
}

func (m *model) rejectCall() tea.Cmd {
	c := &m.chat.call
	if m.client == nil {
		return nil
	}
	id, cl := c.ring.ID, m.client
	m.chat.system("declined %s", m.ringText(*c.ring, false))
	c.ring = nil
	m.callLayout()
	return callOpCmd(m.ctx, "/reject", false, func(ctx context.Context) error { return cl.RejectCall(ctx, id) })
}

// onCallStarted takes the reply of /call or /answer.
func (m *model) onCallStarted(msg callStartedMsg) tea.Cmd {
	c := &m.chat.call
	cancel := c.cancel
	c.pending, c.answering, c.cancel = "", "", false
	defer m.callLayout()
	if msg.err != nil {
		m.chat.add(lineError, msg.op+": "+describe(msg.err))
		return nil
	}
	if cancel { // /hangup while it was on its way
		c.sess = msg.sess
		return tea.Batch(waitCallDone(msg.sess), callOpCmd(m.ctx, "/hangup", false, msg.sess.Hangup))
	}
	if c.sess != nil && c.sess != msg.sess { // cannot happen: one request at a time
		return callOpCmd(m.ctx, "/hangup", false, msg.sess.Hangup)
	}
	c.sess, c.muted, c.notes = msg.sess, false, msg.notes
	if c.ring != nil && c.ring.ID == msg.sess.ID() {
		c.ring = nil
	}
	for _, n := range msg.notes {
		m.chat.add(lineError, n)
	}
	call := msg.sess.Call()
	if call.State == parley.CallActive {
		m.chat.system("in the call with %s: /mute · /hangup", m.callTitle(call))
	} else {
		m.chat.system("calling %s… (/hangup cancels)", m.callTitle(call))
	}
	return tea.Batch(waitCallDone(msg.sess), m.ensureCallTick())
}

// onCallDone: the session ended (hung up here or there, lost, replaced).
func (m *model) onCallDone(msg callDoneMsg) {
	c := &m.chat.call
	if c.sess != msg.sess {
		return
	}
	call := msg.sess.Call()
	err := msg.sess.Err()
	c.sess, c.muted, c.muting, c.notes, c.target = nil, false, false, nil, ""
	m.callLayout()
	switch {
	case errors.Is(err, parley.ErrCallReplaced):
		m.chat.system("the call went on on your other device")
	case err != nil:
		m.chat.add(lineError, "call lost: "+describe(err))
	case call.State == parley.CallEnded:
		m.chat.system("call ended: %s", endWords(call.EndReason))
	case call.Kind == parley.ConversationGroup:
		m.chat.system("you left the call")
	default:
		m.chat.system("call ended")
	}
}

// endWords says how a call ended.
func endWords(r parley.CallEndReason) string {
	switch r {
	case parley.CallEndCompleted:
		return "hung up"
	case parley.CallEndCancelled:
		return "cancelled"
	case parley.CallEndRejected:
		return "declined"
	case parley.CallEndMissed:
		return "no answer"
	case parley.CallEndBusy:
		return "busy (in another call)"
	case parley.CallEndLost:
		return "connection lost"
	}
	return "ended"
}

func (m *model) onCallOp(msg callOpMsg) {
	c := &m.chat.call
	if msg.op == "/mute" {
		c.muting = false
		if msg.err == nil && c.sess != nil {
			c.muted = msg.muted
			if c.muted {
				m.chat.system("muted: the others do not hear you (/mute again to unmute)")
			} else {
				m.chat.system("unmuted")
			}
		}
	}
	if msg.err != nil && !(msg.op == "/reject" && errors.Is(msg.err, parley.ErrNotFound)) {
		m.chat.add(lineError, msg.op+": "+describe(msg.err))
	}
}

// onCallEvent follows the calls the server tells of: a call rings; it
// stops ringing (answered here or on another device, declined, rung out,
// ended). The running session follows its own call.
func (m *model) onCallEvent(ev parley.Event) tea.Cmd {
	c := &m.chat.call
	defer m.callLayout()
	switch ev := ev.(type) {
	case parley.CallRingingEvent:
		call := ev.Call
		if c.sess != nil && c.sess.ID() == call.ID {
			return nil
		}
		c.ring = &call
		m.chat.system("%s: /answer · /reject", m.ringText(call, true))
	case parley.CallUpdatedEvent:
		call := ev.Call
		if c.ring == nil || c.ring.ID != call.ID {
			return nil
		}
		_, in := call.Participant(m.chat.myID)
		switch {
		case c.answering == call.ID:
			c.ring = &call
		case in:
			c.ring = nil
			m.chat.system("%s was answered on another device", m.ringText(call, false))
		case !slices.Contains(call.RingingIDs, m.chat.myID):
			c.ring = nil
			m.chat.system("%s stopped ringing", m.ringText(call, false))
		default:
			c.ring = &call
		}
	case parley.CallEndedEvent:
		if c.ring != nil && c.ring.ID == ev.Call.ID && c.answering != ev.Call.ID {
			c.ring = nil // the chat's call message says how it ended
		}
	}
	return m.ensureCallTick()
}

// callLayout fits the message area around the call bar.
func (m *model) callLayout() {
	if m.chat.barRows != m.chat.call.rows() {
		m.chat.barRows = m.chat.call.rows()
		m.chat.relayout()
	}
}

// ensureCallTick redraws the bar every second (duration, figures) while
// it shows something.
func (m *model) ensureCallTick() tea.Cmd {
	if m.callTicking || !m.chat.call.active() {
		return nil
	}
	m.callTicking = true
	return tea.Tick(time.Second, func(time.Time) tea.Msg { return callTickMsg{} })
}

// callTitle names a call: the private chat's peer (@bob) or the group
// (+Team).
func (m *model) callTitle(call parley.Call) string {
	if cv := m.chat.conv(call.Conversation); cv != nil && cv.title != "" {
		return cv.name()
	}
	if call.CallerID != "" && call.CallerID != m.chat.myID && call.Kind == parley.ConversationDirect {
		return "@" + call.CallerName
	}
	if t := m.chat.call.target; t != "" {
		return t
	}
	return "the call"
}

// ringText describes a ringing call: "incoming call from alice", or
// "alice is calling in +Team".
func (m *model) ringText(call parley.Call, incoming bool) string {
	if call.Kind == parley.ConversationGroup {
		if incoming {
			return call.CallerName + " is calling in " + m.callTitle(call)
		}
		return call.CallerName + "'s call in " + m.callTitle(call)
	}
	if incoming {
		return "incoming call from " + call.CallerName
	}
	return "the call from " + call.CallerName
}

// callBar renders the bar (the chat screen shows it under the header).
func (m *model) callBar() string {
	c := &m.chat.call
	w := max(m.chat.width, 20)
	var rows []string
	if c.ring != nil {
		rows = append(rows, ringStyle.MaxWidth(w).Render(" "+capitalize(m.ringText(*c.ring, true))+" · /answer · /reject "))
	}
	switch {
	case c.sess != nil:
		call := c.sess.Call()
		rows = append(rows, renderCallBar(callSnapshot{call: call, title: m.callTitle(call), me: m.chat.myID,
			stats: c.sess.Stats(), muted: c.muted, devicesMissing: c.notes != nil}, m.now(), w)...)
	case c.pending != "":
		rows = append(rows, callStyle.MaxWidth(w).Render(" "+c.pending))
	}
	return strings.Join(rows, "\n")
}

// callSnapshot is what the bar shows of a running call.
type callSnapshot struct {
	call           parley.Call
	title          string // @bob, +Team
	me             string // the user's id
	stats          parley.CallStats
	muted          bool // this device muted
	devicesMissing bool // told when the call started
}

// renderCallBar renders a running call in two rows of at most width
// columns: its state, duration and participants (muted and speaking
// marked); the media figures and the commands.
func renderCallBar(s callSnapshot, now time.Time, width int) []string {
	call := s.call
	var head string
	switch call.State {
	case parley.CallActive:
		head = fmt.Sprintf(" IN CALL %s · %s ", s.title, minSec(now.Sub(call.AnsweredAt)))
	default:
		head = fmt.Sprintf(" CALLING %s · ringing %s ", s.title, minSec(now.Sub(call.StartedAt)))
	}
	parts := []string{callStyle.Render(head)}
	for _, p := range call.Participants {
		name := p.Username
		var marks []string
		if p.UserID == s.me {
			marks = append(marks, "you")
		}
		if p.Muted || p.UserID == s.me && s.muted {
			marks = append(marks, "muted")
		}
		if p.Speaking {
			marks = append(marks, "speaking")
		}
		if len(marks) > 0 {
			name += " (" + strings.Join(marks, ", ") + ")"
		}
		if p.Speaking {
			name = ownNameStyle.Render(name)
		}
		parts = append(parts, name)
	}
	st := s.stats
	loss := 0.0
	if total := st.PacketsReceived + st.Lost; total > 0 {
		loss = 100 * float64(st.Lost) / float64(total)
	}
	// Where the audio goes: straight to the peer over a direct session
	// (§20.7), or through the server's media relay (by UDP or frames).
	route := "relayed (" + st.Transport + ")"
	if st.Path == parley.CallDirect {
		route = "direct"
	}
	figures := fmt.Sprintf(" loss %.1f%% · jitter %d ms · rtt %d ms · %s", loss, st.Jitter.Milliseconds(), st.RTT.Milliseconds(), route)
	if s.devicesMissing {
		figures += " · " + warnStyle.Render("sound devices missing")
	}
	hint := "/mute · /hangup"
	if s.muted {
		hint = "/mute: unmute · /hangup"
	}
	clip := lipgloss.NewStyle().MaxWidth(width)
	return []string{
		clip.Render(strings.Join(parts, "  ")),
		clip.Render(dimStyle.Render(figures) + "   " + dimStyle.Render(hint)),
	}
}

// capitalize upper-cases s's first letter.
func capitalize(s string) string {
	r, n := utf8.DecodeRuneInString(s)
	return string(unicode.ToUpper(r)) + s[n:]
}

// minSec renders a duration as m:ss.
func minSec(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	s := int(d / time.Second)
	return fmt.Sprintf("%d:%02d", s/60, s%60)
}

// callText is how a call's system message reads in the chat, from the
// user's side. Its sender is the caller for a missed, cancelled or busy
// call and a group call's start, whoever declined, or whoever ended it.
func (c *chatScreen) callText(m parley.Message) string {
	s := m.Call
	own := c.isOwn(m)
	peer := "the other side"
	if cv := c.conv(m.Conversation); cv != nil && cv.kind == parley.ConversationDirect && cv.title != "" {
		peer = cv.title
	}
	switch s.Outcome {
	case parley.CallEndUnknown:
		if own {
			return "you started a call"
		}
		return m.SenderName + " started a call (/call joins it while it runs)"
	case parley.CallEndCompleted:
		return "call ended · " + minSec(s.Duration)
	case parley.CallEndMissed:
		if own {
			return "no answer from " + peer
		}
		return "missed call from " + m.SenderName
	case parley.CallEndCancelled:
		if own {
			return "call cancelled"
		}
		return "missed call from " + m.SenderName
	case parley.CallEndBusy:
		if own {
			return peer + " was busy (in another call)"
		}
		return "missed call from " + m.SenderName + " (you were in another call)"
	case parley.CallEndRejected:
		if own {
			return "you declined the call"
		}
		return m.SenderName + " declined the call"
	}
	return m.Text
}
