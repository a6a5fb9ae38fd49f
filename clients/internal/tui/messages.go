package tui

import (
	"errors"
	"slices"
	"time"

	tea "github.com/charmbracelet/bubbletea"

	"github.com/parleychat/parley/clients/parley"
)

// How the chat screen follows conversations: the SDK emits every message
// once, in order (MessageEvent), and lists the conversations after each
// sync (SyncedEvent). The selected conversation is acknowledged as it is
// shown; the others count unread messages.

var errNotConnected = errors.New("not connected")

// send posts text to conv; the message shows up when its event arrives.
func (m *model) send(conv, text string) tea.Cmd {
	if m.client == nil {
		return func() tea.Msg { return sentMsg{conv: conv, err: errNotConnected} }
	}
	return sendCmd(m.ctx, m.client, conv, text)
}

// onMessage shows a delivered message. A private chat appears in the pane
// by itself when its first message arrives.
func (m *model) onMessage(msg parley.Message) tea.Cmd {
	if m.screen != screenChat {
		return nil
	}
	c := &m.chat
	title := ""
	if kindOf(msg.Conversation) == parley.ConversationDirect && msg.SenderName != c.me {
		title = msg.SenderName
	}
	if kindOf(msg.Conversation) == parley.ConversationRoom && msg.Conversation == parley.PublicRoom {
		title = "public"
	}
	cv, added := c.ensureConv(msg.Conversation, kindOf(msg.Conversation), title)
	l := c.messageLine(msg)
	if !cv.addMessage(l) {
		return nil
	}
	if msg.SenderName == cv.typingUser {
		cv.typingAt = time.Time{} // they sent what they typed
	}
	var cmds []tea.Cmd
	if added {
		if cv.kind == parley.ConversationDirect && title != "" {
			c.system("private chat with %s opened (tab to switch)", title)
		}
		if cv.kind == parley.ConversationGroup && msg.System && !c.isOwn(msg) {
			// The first message of a group one did not create is the
			// invitation; the listing asked for below tells its name.
			cv.invitedBy = msg.SenderName
		}
		if cv.title == "" {
			cmds = append(cmds, m.refreshConvs()) // learn its title
		}
	} else if msg.System && cv.kind == parley.ConversationGroup {
		// A rename, or a change of membership: the listing has the
		// group's new state.
		cmds = append(cmds, m.refreshConvs())
	}
	if cv == c.selected() {
		c.refresh()
		cmds = append(cmds, m.ack(cv))
	} else if !c.isOwn(msg) && msg.Seq > cv.acked {
		cv.unread++
	}
	if l.file > 0 {
		cmds = append(cmds, m.fileDetails(cv.id))
	}
	return tea.Batch(cmds...)
}

// refreshConvs asks for the conversation list, one request at a time: one
// asked for while another is out is sent when that one returns, so a
// change made meanwhile is not missed.
func (m *model) refreshConvs() tea.Cmd {
	if m.client == nil {
		return nil
	}
	if m.convsBusy {
		m.convsAgain = true
		return nil
	}
	m.convsBusy = true
	return convsCmd(m.ctx, m.client)
}

// onConvs takes the reply of refreshConvs.
func (m *model) onConvs(msg convsMsg) tea.Cmd {
	m.convsBusy = false
	var cmds []tea.Cmd
	if msg.err == nil {
		cmds = append(cmds, m.applyConversations(msg.convs, false))
	}
	if m.convsAgain {
		m.convsAgain = false
		cmds = append(cmds, m.refreshConvs())
	}
	return tea.Batch(cmds...)
}

// ack acknowledges what the selected conversation shows.
func (m *model) ack(cv *convView) tea.Cmd {
	seq := cv.markRead()
	if seq == 0 || m.client == nil {
		return nil
	}
	return ackCmd(m.ctx, m.client, cv.id, seq)
}

// applyConversations takes a conversation list: titles, what the server
// has, unread counts. After a sync (synced) every message up to LastSeq
// has been delivered, so the server's count is exact.
func (m *model) applyConversations(convs []parley.Conversation, synced bool) tea.Cmd {
	if m.screen != screenChat {
		return nil
	}
	var cmds []tea.Cmd
	for _, sc := range convs {
		cv, _ := m.chat.ensureConv(sc.ID, sc.Kind, sc.Title)
		cv.kind = sc.Kind
		if sc.Title != "" {
			cv.title = sc.Title // a group may have been renamed
		}
		m.updateGroup(cv, sc)
		cv.lastSeq = max(cv.lastSeq, sc.LastSeq)
		cv.acked = max(cv.acked, sc.AckedSeq)
		cv.peerAcked = max(cv.peerAcked, sc.PeerAckedSeq)
		if cv == m.chat.selected() {
			cmds = append(cmds, m.ack(cv))
			continue
		}
		if synced || cv.unread == 0 {
			cv.unread = 0
			if cv.lastSeq > cv.acked {
				cv.unread = cv.lastSeq - cv.acked
			}
		}
	}
	if cv := m.chat.selected(); cv != nil && len(cv.seen) == 0 {
		cmds = append(cmds, m.loadOlder()) // show something of it
	}
	m.chat.sortConvs()
	m.chat.refresh()
	return tea.Batch(cmds...)
}

// selectConv switches the message area to another conversation, marks it
// read, and loads its latest page if nothing of it is shown.
func (m *model) selectConv(i int) tea.Cmd {
	cv := m.chat.selectConv(i)
	if cv == nil {
		return nil
	}
	cmds := []tea.Cmd{m.ack(cv), m.loadDirectHistory(cv)}
	if len(cv.seen) == 0 {
		cmds = append(cmds, m.loadOlder())
	}
	return tea.Batch(cmds...)
}

// loadOlder asks for the page before the oldest message shown of the
// selected conversation (PgUp at the top).
func (m *model) loadOlder() tea.Cmd {
	cv := m.chat.selected()
	if cv == nil || !cv.canLoadOlder() {
		return nil
	}
	cv.loading = true
	before := cv.oldest()
	if m.client == nil {
		return func() tea.Msg { return historyMsg{conv: cv.id, err: errNotConnected} }
	}
	return historyCmd(m.ctx, m.client, cv.id, before)
}

// onHistory inserts an older page, keeping the view where it was.
func (m *model) onHistory(msg historyMsg) tea.Cmd {
	cv := m.chat.conv(msg.conv)
	if cv == nil {
		return nil
	}
	cv.loading = false
	if msg.err != nil {
		m.noticeIn(msg.conv, lineError, "loading older messages: "+describe(msg.err))
		return nil
	}
	cv.noOlder = !msg.more
	before := m.chat.messages.TotalLineCount()
	offers := false
	for _, pm := range msg.msgs {
		l := m.chat.messageLine(pm)
		offers = offers || l.file > 0
		cv.addMessage(l)
	}
	var details tea.Cmd
	if offers {
		details = m.fileDetails(cv.id)
	}
	if cv != m.chat.selected() {
		return details
	}
	atBottom := m.chat.messages.AtBottom()
	m.chat.refresh()
	if !atBottom {
		m.chat.messages.SetYOffset(m.chat.messages.YOffset + m.chat.messages.TotalLineCount() - before)
	}
	return tea.Batch(details, m.ack(cv))
}

// onOpened selects the private chat /msg asked for and sends its text.
func (m *model) onOpened(msg openedMsg) tea.Cmd {
	if msg.err != nil {
		m.chat.add(lineError, "/msg: "+describe(msg.err))
		return nil
	}
	cv, _ := m.chat.ensureConv(msg.conv.ID, msg.conv.Kind, msg.conv.Title)
	cv.lastSeq = max(cv.lastSeq, msg.conv.LastSeq)
	cv.acked = max(cv.acked, msg.conv.AckedSeq)
	cv.peerAcked = max(cv.peerAcked, msg.conv.PeerAckedSeq)
	cmd := m.selectConv(slices.Index(m.chat.convs, cv))
	if msg.text != "" {
		cmd = tea.Batch(cmd, m.send(cv.id, msg.text))
	}
	return cmd
}

// noticeIn shows a notice in conversation id (the selected one if gone).
func (m *model) noticeIn(id string, kind lineKind, text string) {
	if cv := m.chat.conv(id); cv != nil {
		cv.addNotice(kind, text)
		m.chat.refresh()
		return
	}
	m.chat.add(kind, text)
}
