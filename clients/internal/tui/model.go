package tui

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	tea "github.com/charmbracelet/bubbletea"

	"github.com/parleychat/parley/clients/parley"
)

type screen int

const (
	screenLogin screen = iota
	screenChat
)

// model is the TUI's state. Network work happens in commands (cmds.go);
// their results come back as messages.
type model struct {
	ctx    context.Context
	cfg    Config
	client *parley.Client // nil until the first connection
	// clientUser: whom client was dialed for (the login of another user
	// dials afresh: a device key is per account).
	clientUser string
	// sessionID: the session on the chat screen (kept for forgetting it
	// after a logout, when the client no longer has it).
	sessionID string
	screen    screen
	login     loginScreen
	chat      chatScreen
	width     int
	height    int

	// convsBusy: a conversation listing is being read; convsAgain: read
	// another when it returns (refreshConvs).
	convsBusy  bool
	convsAgain bool

	// downloadDir is where downloads go (/dir changes it); ticking: a
	// transfers redraw is scheduled.
	downloadDir string
	ticking     bool
	filesReq    uint64    // file lists asked for (numbers them)
	linesShown  time.Time // when a tick last re-rendered the file lines
	// uploadRetries: failed requests in a row an upload resumes by
	// itself before it is shown as interrupted (0: the SDK's default,
	// which rides out a gateway restart).
	uploadRetries int

	// callTicking: a call bar redraw is scheduled.
	callTicking bool

	now func() time.Time // the clock (tests set it)
	// typingConv, typingSent: the private chat last told that the user
	// types, and when (typed).
	typingConv string
	typingSent time.Time
}

func newModel(ctx context.Context, cfg Config) *model {
	var saved []string
	if !cfg.Resume {
		saved = savedUsers(cfg)
	}
	m := &model{ctx: ctx, cfg: cfg, login: newLoginScreen(cfg.User, saved), chat: newChatScreen(), now: time.Now,
		downloadDir: cfg.DownloadDir}
	if m.downloadDir == "" {
		m.downloadDir = "."
	}
	if abs, err := filepath.Abs(m.downloadDir); err == nil {
		m.downloadDir = abs
	}
	if cfg.Resume {
		m.login.busy = true
		m.login.status = "resuming the session of " + cfg.User + "…"
	}
	return m
}

// savedUsers lists the sessions the login screen offers to continue.
func savedUsers(cfg Config) []string {
	if cfg.SavedUsers == nil {
		return nil
	}
	return cfg.SavedUsers()
}

func (m *model) Init() tea.Cmd {
	if m.cfg.Resume {
		return authCmd(m.ctx, m.cfg, nil, authResume, m.cfg.User, "")
	}
	return nil
}

func (m *model) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case tea.WindowSizeMsg:
		m.width, m.height = msg.Width, msg.Height
		m.chat.resize(msg.Width, msg.Height)
		return m, nil
	case tea.KeyMsg:
		switch msg.String() {
		case "ctrl+c":
			return m, tea.Quit
		case "esc":
			if m.screen == screenLogin {
				return m, tea.Quit
			}
		}
	case authMsg:
		return m, m.onAuth(msg)
	case eventMsg:
		if msg.client != m.client {
			return m, nil // an earlier client's straggler
		}
		return m, tea.Batch(m.onEvent(msg.ev), waitEvent(msg.client))
	case eventsDoneMsg:
		if msg.client == m.client {
			m.onClientEnded(msg.err)
		}
		return m, nil
	case sentMsg:
		if msg.err != nil {
			m.noticeIn(msg.conv, lineError, "not sent: "+describe(msg.err))
		}
		return m, nil
	case historyMsg:
		return m, m.onHistory(msg)
	case openedMsg:
		return m, m.onOpened(msg)
	case convsMsg:
		return m, m.onConvs(msg)
	case groupMsg:
		return m, m.onGroup(msg)
	case friendMsg:
		m.onFriend(msg)
		return m, nil
	case typingExpiredMsg:
		return m, nil // re-rendered: View drops the hint
	case preparedMsg:
		return m, m.onPrepared(msg)
	case transferDoneMsg:
		return m, m.onTransferDone(msg)
	case transferTickMsg:
		return m, m.onTransferTick()
	case answeredMsg:
		return m, m.onAnswered(msg)
	case filesMsg:
		return m, m.onFiles(msg)
	case callStartedMsg:
		return m, m.onCallStarted(msg)
	case callDoneMsg:
		m.onCallDone(msg)
		return m, nil
	case callOpMsg:
		m.onCallOp(msg)
		return m, nil
	case callTickMsg:
		m.callTicking = false
		return m, m.ensureCallTick()
	case fileRetryMsg:
		return m, m.fileDetails(msg.conv)
	case directOpenMsg:
		return m, m.onDirectOpen(msg)
	case directRejectMsg:
		m.onDirectReject(msg)
		return m, nil
	case directSentMsg:
		m.onDirectSent(msg)
		return m, nil
	case directHistoryMsg:
		m.onDirectHistory(msg)
		return m, nil
	case natMsg:
		m.onNAT(msg)
		return m, nil
	case whoMsg:
		if msg.err != nil {
			m.chat.add(lineError, "who: "+describe(msg.err))
			return m, nil
		}
		m.chat.setOnline(msg.users)
		names := make([]string, len(msg.users))
		for i, u := range msg.users {
			names[i] = u.Username
		}
		m.chat.system("online now (%d): %s", len(names), strings.Join(names, ", "))
		return m, nil
	case logoutMsg:
		if msg.err != nil && !errors.Is(msg.err, parley.ErrUnauthenticated) {
			m.chat.add(lineError, "logout: "+describe(msg.err))
			return m, nil
		}
		if m.cfg.ForgetSession != nil {
			_ = m.cfg.ForgetSession(m.chat.me, m.sessionID, "")
		}
		m.toLogin("logged out")
		return m, nil
	}

	if m.screen == screenLogin {
		sub, cmd := m.login.update(msg)
		if sub == nil {
			return m, cmd
		}
		m.login.busy = true
		kind := authLogin
		m.login.status = "logging in…"
		switch {
		case sub.register:
			kind = authRegister
			m.login.status = "creating the account…"
		case sub.resume:
			kind = authResume
			m.login.status = "resuming the session of " + sub.user + "…"
		}
		client := m.client
		if !strings.EqualFold(m.clientUser, sub.user) {
			client = nil // dialed for another user: a new client, with this user's device key
		}
		return m, authCmd(m.ctx, m.cfg, client, kind, sub.user, sub.password)
	}
	return m, m.updateChat(msg)
}

func (m *model) onAuth(msg authMsg) tea.Cmd {
	var cmd tea.Cmd
	if msg.client != nil && msg.client != m.client {
		if m.client != nil {
			m.client.Close()
		}
		m.client, m.clientUser = msg.client, msg.user
		cmd = waitEvent(m.client)
	}
	if msg.err != nil {
		if msg.kind != authResume {
			m.login.reset(describe(msg.err))
			return cmd
		}
		if t := msg.tried; t != nil && sessionGone(msg.err) {
			if m.cfg.ForgetSession != nil {
				_ = m.cfg.ForgetSession(t.Username, t.SessionID, t.Token)
			}
			m.login.inputs[fieldUser].SetValue(t.Username)
			m.login.setSaved(savedUsers(m.cfg))
			m.login.setField(fieldPass)
		} else if m.cfg.Resume {
			m.login.setSaved(savedUsers(m.cfg)) // offer it again
		}
		m.login.reset("saved session not resumed: " + describe(msg.err))
		return cmd
	}
	s := msg.session
	if m.cfg.SaveSession != nil {
		if err := m.cfg.SaveSession(s, msg.kind != authResume); err != nil {
			m.chat.add(lineError, "could not store the session token: "+err.Error())
		}
	}
	m.sessionID = s.SessionID
	m.screen = screenChat
	m.login.busy, m.login.status, m.login.err = false, "", ""
	m.chat.me, m.chat.myID = s.Username, s.UserID
	m.chat.ensureConv(parley.PublicRoom, parley.ConversationRoom, "public")
	m.chat.selectConv(0)
	m.chat.status = ""
	m.chat.online = nil
	if m.client != nil {
		m.chat.gateway = m.client.Welcome().GatewayID
	}
	switch msg.kind {
	case authRegister:
		m.chat.system("welcome, %s: your account is ready", s.Username)
	case authResume:
		m.chat.system("welcome back, %s", s.Username)
	default:
		m.chat.system("logged in as %s", s.Username)
	}
	m.chat.system("enter sends to the selected chat · tab switches chats · /msg USER opens a private one · /help")
	return tea.Batch(cmd, m.chat.input.Focus())
}

func sessionGone(err error) bool {
	return errors.Is(err, parley.ErrTokenExpired) || errors.Is(err, parley.ErrTokenInvalid) ||
		errors.Is(err, parley.ErrSessionRevoked)
}

// onEvent turns an SDK event into what the user sees.
func (m *model) onEvent(ev parley.Event) tea.Cmd {
	switch ev := ev.(type) {
	case parley.PresenceSnapshotEvent:
		m.chat.setOnline(ev.Users)
	case parley.UserOnlineEvent:
		m.chat.userOnline(ev.User)
		if ev.User.Username != m.chat.me {
			m.chat.system("%s came online", ev.User.Username)
		}
	case parley.UserOfflineEvent:
		m.chat.userOffline(ev.User)
		if ev.User.Username != m.chat.me {
			m.chat.system("%s went offline", ev.User.Username)
		}
	case parley.MessageEvent:
		return m.onMessage(ev.Message)
	case parley.SyncedEvent:
		if m.screen != screenChat {
			return nil
		}
		return tea.Batch(m.applyConversations(ev.Conversations, true), m.pendingOffers(), m.rewatch())
	case parley.FileEvent:
		return m.onFileEvent(ev)
	case parley.FriendEvent:
		if m.screen == screenChat {
			m.onFriendEvent(ev)
		}
	case parley.CallRingingEvent, parley.CallUpdatedEvent, parley.CallEndedEvent:
		if m.screen == screenChat {
			return m.onCallEvent(ev)
		}
	case parley.DirectOfferEvent, parley.DirectOpenedEvent, parley.DirectPathEvent, parley.DirectMessageEvent,
		parley.DirectFileEvent, parley.DirectClosedEvent:
		if m.screen == screenChat {
			return m.onDirectEvent(ev)
		}
	case parley.TypingEvent:
		return m.onTyping(ev)
	case parley.ReceiptEvent:
		m.onReceipt(ev)
	case parley.DisconnectedEvent:
		if m.screen == screenChat {
			m.chat.status = "reconnecting…"
			m.chat.add(lineError, "connection lost ("+describe(ev.Err)+"); reconnecting…")
		}
	case parley.ReconnectedEvent:
		m.chat.status = ""
		if m.client != nil {
			m.chat.gateway = m.client.Welcome().GatewayID
		}
		if ev.Session != nil && m.cfg.SaveSession != nil {
			_ = m.cfg.SaveSession(ev.Session, false)
		}
		m.chat.system("reconnected")
	case parley.SessionEndedEvent:
		m.forgetEnded(ev)
		m.toLogin("session ended: " + describe(ev.Err()))
	}
	return nil
}

// forgetEnded drops the saved session the server ended. A session resumed
// on another connection under the takeover policy (LOGGED_IN_ELSEWHERE)
// lives on there and stays saved; a refused token is forgotten only while
// no newer one of the session was saved.
func (m *model) forgetEnded(ev parley.SessionEndedEvent) {
	if m.cfg.ForgetSession == nil {
		return
	}
	err := ev.Err()
	switch {
	case errors.Is(err, parley.ErrSessionRevoked):
		_ = m.cfg.ForgetSession(m.chat.me, m.sessionID, "")
	case sessionGone(err) && m.client != nil && m.client.Session() != nil:
		_ = m.cfg.ForgetSession(m.chat.me, m.sessionID, m.client.Session().Token)
	}
}

// onClientEnded: the client will not reconnect (after logout, or the
// session ended); a new login dials afresh.
func (m *model) onClientEnded(err error) {
	if m.screen == screenChat {
		msg := "disconnected"
		if err != nil {
			msg += ": " + describe(err)
		}
		m.toLogin(msg)
	}
}

func (m *model) toLogin(msg string) {
	if s := m.chat.call.sess; s != nil {
		go func() { // leave the call; the devices close with the session
			ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
			defer cancel()
			_ = s.Hangup(ctx)
		}()
	}
	for _, tr := range m.chat.transfers {
		tr.stop()
	}
	m.screen = screenLogin
	m.chat = newChatScreen()
	m.convsBusy, m.convsAgain = false, false
	m.chat.resize(m.width, m.height)
	m.sessionID = ""
	m.login.setSaved(savedUsers(m.cfg))
	m.login.reset(msg)
}

func (m *model) updateChat(msg tea.Msg) tea.Cmd {
	if k, ok := msg.(tea.KeyMsg); ok {
		switch k.String() {
		case "enter":
			text := strings.TrimSpace(m.chat.input.Value())
			m.chat.input.Reset()
			if text == "" {
				return nil
			}
			return m.submit(text)
		case "tab", "ctrl+down":
			return m.selectConv(m.chat.sel + 1)
		case "shift+tab", "ctrl+up":
			return m.selectConv(m.chat.sel - 1)
		case "pgup":
			var load tea.Cmd
			if m.chat.messages.AtTop() {
				load = m.loadOlder()
			}
			var cmd tea.Cmd
			m.chat.messages, cmd = m.chat.messages.Update(msg)
			return tea.Batch(load, cmd)
		case "pgdown":
			var cmd tea.Cmd
			m.chat.messages, cmd = m.chat.messages.Update(msg)
			return cmd
		}
	}
	before := m.chat.input.Value()
	var cmd tea.Cmd
	m.chat.input, cmd = m.chat.input.Update(msg)
	if m.chat.input.Value() != before {
		return tea.Batch(cmd, m.typed())
	}
	return cmd
}

// submit handles one entered text: a /command or a message.
func (m *model) submit(text string) tea.Cmd {
	if strings.HasPrefix(text, "/") {
		cmd, args, _ := strings.Cut(text, " ")
		if c, ok := m.groupCommand(groupOp(cmd), args); ok {
			return c
		}
		if c, ok := m.friendCommand(cmd, args); ok {
			return c
		}
		if c, ok := m.callCommand(cmd, args); ok {
			return c
		}
		if c, ok := m.fileCommand(cmd, args); ok {
			return c
		}
		if c, ok := m.directCommand(cmd, args); ok {
			return c
		}
		switch cmd {
		case "/who":
			if m.client == nil {
				return nil
			}
			return whoCmd(m.ctx, m.client)
		case "/logout":
			if m.client == nil {
				return nil
			}
			m.chat.system("logging out…")
			return logoutCmd(m.ctx, m.client)
		case "/msg":
			user, rest, _ := strings.Cut(strings.TrimSpace(strings.TrimPrefix(text, "/msg")), " ")
			user = strings.TrimPrefix(user, "@")
			if user == "" {
				m.chat.add(lineError, "usage: /msg USER [text]")
				return nil
			}
			if m.client == nil {
				return nil
			}
			return openDirectCmd(m.ctx, m.client, user, strings.TrimSpace(rest))
		case "/quit", "/exit":
			return tea.Quit
		case "/help":
			m.chat.system("enter: send to the selected chat · tab / shift+tab: switch chats · pgup at the top: older messages · " +
				"/msg USER [text]: private chat · /who: refresh the online list · /logout: end the session · /quit: leave (the session stays for next time)")
			m.chat.system("groups: /group NAME [USER...]: create (a name with spaces in \"quotes\") · in the selected group: " +
				"/invite USER... · /join (an invitation) · /leave · /members · /rename NAME · /kick USER (owner)")
			m.chat.system("friends: /friends: the list · /friend add|accept|decline|remove USER · /block USER · /unblock USER")
			m.chat.system("files, in a private chat or group: /send PATH: offer and upload · /accept [N] · /reject [N]: answer offer #N (and download) · " +
				"/get N: download · /shelf: the chat's files · /resume [N]: continue interrupted transfers · /cancel N · /dir [PATH]: download folder")
			m.chat.system("calls: /call [@USER]: call a user, or the selected private chat or group (joins its running call) · " +
				"/answer · /reject: a ringing call · /mute: mute or unmute · /hangup")
			m.chat.system("direct sessions (peer to peer, end-to-end encrypted; the server never sees them), in a private chat: " +
				"/direct: offer one · /accept-direct · /reject-direct [USER]: answer an offer · /direct off: end it · " +
				"/sendfile PATH: a file over it · /safety: its safety number · /trust NUMBER: accept a changed key · /nat: your NAT")
			return nil
		default:
			m.chat.add(lineError, fmt.Sprintf("unknown command %s (try /help)", cmd))
			return nil
		}
	}
	cv := m.chat.selected()
	if cv == nil {
		return nil
	}
	if s := m.session(cv.id); s != nil && m.client != nil {
		return m.sendDirect(cv, s, text)
	}
	return m.send(cv.id, text)
}

func (m *model) View() string {
	if m.screen == screenLogin {
		return m.login.view(m.width, m.height, m.cfg.Server)
	}
	return m.chat.view(m.cfg.Server, m.typingHint(), m.directBadge(), m.callBar())
}

// describe renders an error for a human: the server's message when there
// is one.
func describe(err error) string {
	var pe *parley.Error
	if errors.As(err, &pe) && pe.Message != "" && !errors.Is(err, parley.ErrConnectionLost) {
		return pe.Message
	}
	return strings.TrimPrefix(strings.ReplaceAll(err.Error(), "parley: ", ""), "parley: ")
}
