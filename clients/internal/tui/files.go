package tui

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"time"

	tea "github.com/charmbracelet/bubbletea"

	"github.com/parleychat/parley/clients/parley"
)

// Files in the chat screen (docs/protocol.md §18). Every file the screen
// learns of gets a number, #1, #2, ..., that the commands take:
//
//	/send PATH        offer a file in the selected private chat or group and upload it
//	/accept [N]       accept an offer in a private chat and download it
//	/reject [N]       reject an offer in a private chat
//	/get [N]          download a file (a group's, or one on the shelf)
//	/shelf            list the selected conversation's files
//	/resume [N [PATH]] continue interrupted transfers (PATH: an upload begun elsewhere)
//	/cancel [N]       stop a transfer (it can be resumed), or clear a failed one
//	/dir [PATH]       show or change the download folder
//
// An offer is a message in its conversation (Message.File); the screen
// shows it as a file line whose state follows what happens to the file:
// FileEvents (answered, available, failed, expired) and, for what the
// events cannot tell (an offer seen in history, events missed while
// reconnecting), the conversation's file list.

// detailTries bounds how often a conversation's file list is read for an
// offer that is not in it yet (the offer's message is posted a moment
// before the file is listed).
const detailTries = 5

// fileEntry is a file the chat screen knows: offered in one of the user's
// conversations (by them or to them), found on a shelf, or being sent.
type fileEntry struct {
	num      int    // #num in the UI; from 1, per login
	id       string // "" until the offer is made
	conv     string
	name     string // safe to show and to create (safeName)
	size     uint64
	ctype    string
	sender   string
	outgoing bool // this user offered it
	// viaDirect: sent over a direct session (/sendfile), not through the
	// server: it has no id, no offer and no answer.
	viaDirect bool
	// info is the file as last listed by the server (nil: not yet).
	// listed: the server lists it (it was in a list, or we offered it);
	// a list asked for after request number listedAt that lacks it means
	// the file is gone.
	info     *parley.FileInfo
	listed   bool
	listedAt uint64
	seq      uint64 // the offer message's seq (0: none shown)
	tries    int    // file lists read while its details were missing
	// answer: a private chat's answer (ours to an offer to us, the
	// recipient's to ours); removed: rejected, expired or removed;
	// saved: where a download was put.
	answer  parley.FileAnswer
	removed bool
	saved   string
	tr      *transfer // the latest transfer (nil: none)
	// preview draws a picture's thumbnail under its line (once the
	// server has made one); previewOf is the thumbnail it was drawn from.
	preview   string
	previewOf []byte
}

// picture returns the preview of e's thumbnail, drawing it once.
func (e *fileEntry) picture() string {
	if e.info == nil {
		return ""
	}
	t := e.info.Thumbnail
	if len(t) == 0 {
		return ""
	}
	if !bytes.Equal(t, e.previewOf) {
		e.preview, e.previewOf = thumbPreview(t, previewCols), t
	}
	return e.preview
}

func (e *fileEntry) direct() bool { return kindOf(e.conv) == parley.ConversationDirect }

// awaiting: an offer of ours in a private chat without an answer yet.
func (e *fileEntry) awaiting() bool {
	return e.outgoing && e.direct() && e.id != "" && e.answer == parley.FileAnswerNone && !e.removed
}

// uploadingElsewhere: the file is being uploaded, not by this screen (an
// offer to us, or ours from another device or run).
func (e *fileEntry) uploadingElsewhere() bool {
	return e.id != "" && !e.removed && e.info != nil && e.info.State == parley.FileStateUploading &&
		(e.tr == nil || e.tr.kind != upload)
}

// watched: the screen follows the file's state by reading its
// conversation's file list now and then.
func (e *fileEntry) watched() bool { return e.awaiting() || e.uploadingElsewhere() }

// pending: an offer to us in a private chat we have not answered.
func (e *fileEntry) pending() bool {
	return !e.outgoing && e.direct() && e.answer == parley.FileAnswerNone && !e.removed
}

type filesPurpose int

const (
	filesShelf   filesPurpose = iota // /shelf: show the list
	filesRefresh                     // details of offers shown
	filesWatch                       // after a reconnect: what events were missed
	filesPending                     // after a sync: offers waiting for our answer
)

type (
	// filesMsg carries a conversation's file list ("" for the offers
	// waiting for our answer).
	filesMsg struct {
		client  *parley.Client
		req     uint64 // the request's number (model.filesReq)
		conv    string
		purpose filesPurpose
		files   []*parley.FileInfo
		err     error
	}
	// answeredMsg reports /accept or /reject.
	answeredMsg struct {
		client *parley.Client
		file   *fileEntry
		accept bool
		err    error
	}
	fileRetryMsg struct{ conv string }
)

// listFiles reads conv's file list. Requests are numbered in the order
// they are made, so a reply can be told from one asked for before a file
// was offered.
func (m *model) listFiles(conv string, purpose filesPurpose) tea.Cmd {
	m.filesReq++
	if conv != "" {
		m.chat.filesBusy[conv] = true
	}
	ctx, c, req := m.ctx, m.client, m.filesReq
	return func() tea.Msg {
		ctx, cancel := context.WithTimeout(ctx, requestTimeout)
		defer cancel()
		files, err := c.Files(ctx, conv)
		return filesMsg{client: c, req: req, conv: conv, purpose: purpose, files: files, err: err}
	}
}

func answerCmd(ctx context.Context, c *parley.Client, e *fileEntry, accept bool) tea.Cmd {
	id := e.id
	return func() tea.Msg {
		ctx, cancel := context.WithTimeout(ctx, requestTimeout)
		defer cancel()
		return answeredMsg{client: c, file: e, accept: accept, err: c.AnswerFile(ctx, id, accept)}
	}
}

// The chat screen's file registry.

// addFile numbers e and registers it.
func (c *chatScreen) addFile(e *fileEntry) *fileEntry {
	c.files = append(c.files, e)
	e.num = len(c.files)
	if e.id != "" {
		c.fileIDs[e.id] = e
	}
	return e
}

// fileByNum is file #n (nil: none).
func (c *chatScreen) fileByNum(n int) *fileEntry {
	if n < 1 || n > len(c.files) {
		return nil
	}
	return c.files[n-1]
}

// eachFile calls fn for every file once (numbers merged into another
// entry are skipped).
func (c *chatScreen) eachFile(fn func(e *fileEntry)) {
	for i, e := range c.files {
		if e.num == i+1 {
			fn(e)
		}
	}
}

// offerID is the file a message offers ("", false: a plain message).
func offerID(m parley.Message) (string, bool) {
	if m.File == nil {
		return "", false
	}
	id := m.File.ID
	if m.System || id == "" || parley.SafeID(id) != id {
		return "", false
	}
	return id, true
}

// trackOffer registers the file an offer message names.
func (c *chatScreen) trackOffer(m parley.Message, id string) *fileEntry {
	e := c.fileIDs[id]
	if e == nil {
		// The file as offered; its state now comes from the file list.
		f := m.File
		e = c.addFile(&fileEntry{id: id, conv: m.Conversation, name: safeName(f.Name), size: f.Size,
			ctype: displayType(f.ContentType), sender: m.SenderName, outgoing: c.isOwn(m)})
	}
	if e.seq == 0 {
		e.seq = m.Seq
	}
	return e
}

// peer is the other user of a private chat, for "bob accepted".
func (c *chatScreen) peer(conv string) string {
	if cv := c.conv(conv); cv != nil && cv.title != "" && cv.kind == parley.ConversationDirect {
		return cv.title
	}
	return "the recipient"
}

// fileText is a file's line: "[#3] report.pdf · 2.3 MiB · application/pdf — /accept 3 · /reject 3".
func (c *chatScreen) fileText(e *fileEntry) string {
	var b strings.Builder
	fmt.Fprintf(&b, "[#%d] %s", e.num, e.name)
	if e.size > 0 {
		b.WriteString(" · " + humanSize(e.size))
	}
	if e.ctype != "" {
		b.WriteString(" · " + e.ctype)
	}
	if st := c.fileStatus(e); st != "" {
		b.WriteString(" — " + st)
	}
	return b.String()
}

// fileStatus is where a file stands, as this user can act on it.
func (c *chatScreen) fileStatus(e *fileEntry) string {
	if e.tr != nil && (e.tr.active() || e.tr.phase == phaseFailed || e.tr.phase == phaseCancelled) {
		return e.tr.status()
	}
	uploading := e.info != nil && e.info.State == parley.FileStateUploading
	if e.outgoing {
		switch {
		case e.answer == parley.FileAnswerRejected:
			return c.peer(e.conv) + " rejected it"
		case e.removed:
			return "expired or removed"
		case uploading && e.tr == nil:
			return fmt.Sprintf("upload unfinished (%s stored): /resume %d PATH continues it", pctOf(e.info.Uploaded, e.size), e.num)
		case e.answer == parley.FileAnswerAccepted:
			return c.peer(e.conv) + " accepted it"
		case e.direct() && e.id != "":
			return "sent · waiting for " + c.peer(e.conv) + "'s answer"
		case e.id != "":
			return "sent"
		}
		return ""
	}
	switch {
	case e.saved != "":
		return "saved to " + e.saved
	case e.answer == parley.FileAnswerRejected:
		return "rejected"
	case e.removed:
		return "expired or removed"
	}
	var st string
	if e.pending() {
		st = fmt.Sprintf("/accept %d · /reject %d", e.num, e.num)
	} else {
		st = fmt.Sprintf("/get %d", e.num)
	}
	if uploading {
		st += fmt.Sprintf(" (being uploaded: %s)", pctOf(e.info.Uploaded, e.size))
	}
	return st
}

// fileDetails reads conv's file list when an offer shown in it lacks its
// details (size, type, state).
func (m *model) fileDetails(conv string) tea.Cmd {
	c := &m.chat
	if m.client == nil || c.filesBusy[conv] {
		return nil
	}
	need := false
	c.eachFile(func(e *fileEntry) {
		if e.conv == conv && e.id != "" && !e.listed && e.tries < detailTries {
			e.tries++
			need = true
		}
	})
	if !need {
		return nil
	}
	return m.listFiles(conv, filesRefresh)
}

// pendingOffers asks, after a sync, for the offers waiting for an answer
// (made while this user was away, maybe older than the history shown).
func (m *model) pendingOffers() tea.Cmd {
	if m.client == nil {
		return nil
	}
	return m.listFiles("", filesPending)
}

// rewatch reads, after a sync, the file lists of the conversations with
// files whose state may have changed unseen: events are not replayed
// after a reconnect.
func (m *model) rewatch() tea.Cmd {
	if m.client == nil {
		return nil
	}
	convs := map[string]bool{}
	m.chat.eachFile(func(e *fileEntry) {
		if e.watched() {
			convs[e.conv] = true
		}
	})
	var cmds []tea.Cmd
	for conv := range convs {
		if !m.chat.filesBusy[conv] {
			cmds = append(cmds, m.listFiles(conv, filesWatch))
		}
	}
	return tea.Batch(cmds...)
}

// onFileEvent takes what happened to a file this screen shows.
func (m *model) onFileEvent(ev parley.FileEvent) tea.Cmd {
	c := &m.chat
	id := ev.File.ID
	if m.screen != screenChat || id == "" || parley.SafeID(id) != id {
		return nil
	}
	e := c.fileIDs[id]
	if e == nil {
		if ev.Kind != parley.FileEventOffered {
			return nil // a file this screen does not show
		}
		// The offer's message follows (or came before, with the same id).
		e = c.addFile(&fileEntry{id: id})
	}
	switch ev.Kind {
	case parley.FileEventOffered, parley.FileEventAccepted, parley.FileEventRejected, parley.FileEventAvailable:
		// Lists asked for before now may have been read before the file
		// was listed.
		m.updateFile(e, ev.File, m.filesReq)
	case parley.FileEventFailed:
		if !e.removed {
			e.removed = true
			if !e.outgoing || e.tr == nil { // an upload of ours says so itself
				m.fileNotice(e, lineError, e.name+" failed: its bytes did not match its SHA-256 (it has to be sent again)")
			}
		}
	case parley.FileEventExpired:
		if !e.removed {
			e.removed = true
			if e.saved == "" {
				m.fileNotice(e, lineSystem, e.name+" expired or was removed")
			}
			m.stopUpload(e)
		}
	}
	c.refresh()
	return nil
}

// stopUpload ends an upload of e that has nowhere to go any more.
func (m *model) stopUpload(e *fileEntry) {
	if e.tr != nil && e.tr.kind == upload && e.tr.offer != nil {
		e.tr.stop()
		m.dropTransfer(e.tr)
		e.tr = nil
	}
}

// onFiles takes a file list: details and answers for the files shown,
// the shelf, or the offers waiting for an answer.
func (m *model) onFiles(msg filesMsg) tea.Cmd {
	c := &m.chat
	if msg.client != m.client || m.screen != screenChat {
		return nil
	}
	delete(c.filesBusy, msg.conv)
	if msg.err != nil {
		if msg.purpose == filesShelf {
			m.noticeIn(msg.conv, lineError, "/shelf: "+describe(msg.err))
		}
		return nil
	}
	listed := map[string]bool{}
	var fresh []*fileEntry
	for _, info := range msg.files {
		id := info.ID
		if id == "" || parley.SafeID(id) != id {
			continue
		}
		listed[id] = true
		e := c.fileIDs[id]
		if e == nil {
			if msg.purpose != filesShelf && msg.purpose != filesPending {
				continue
			}
			e = c.addFile(&fileEntry{id: id})
			fresh = append(fresh, e)
		}
		m.updateFile(e, info, msg.req)
	}
	var cmds []tea.Cmd
	if msg.conv != "" {
		// A file that dropped out of the list is gone: an offer of ours
		// in a private chat that was not answered was rejected; others
		// expired or were removed (cancelled, rejected on another
		// device).
		now := m.now()
		c.eachFile(func(e *fileEntry) {
			if e.conv != msg.conv || e.id == "" || !e.listed || msg.req <= e.listedAt || listed[e.id] || e.removed {
				return
			}
			if e.tr != nil && e.tr.active() && e.tr.kind == upload && e.tr.offer == nil {
				return
			}
			e.removed = true
			expired := e.info != nil && !e.info.ExpiresAt.IsZero() && !now.Before(e.info.ExpiresAt)
			switch {
			case e.outgoing && e.direct() && e.answer == parley.FileAnswerNone && !expired:
				e.answer = parley.FileAnswerRejected
				m.fileNotice(e, lineError, fmt.Sprintf("%s rejected %s", c.peer(e.conv), e.name))
			case e.saved == "":
				m.fileNotice(e, lineSystem, e.name+" expired or was removed")
			}
			m.stopUpload(e)
		})
		// Offers whose details are still missing: read again shortly.
		retry := false
		c.eachFile(func(e *fileEntry) {
			retry = retry || (e.conv == msg.conv && e.id != "" && !e.listed && e.tries < detailTries)
		})
		if retry {
			conv := msg.conv
			cmds = append(cmds, tea.Tick(300*time.Millisecond, func(time.Time) tea.Msg { return fileRetryMsg{conv: conv} }))
		}
	}
	switch msg.purpose {
	case filesShelf:
		m.showShelf(msg.conv, msg.files)
	case filesPending:
		for _, e := range fresh {
			if e.seq == 0 && e.pending() {
				c.ensureConv(e.conv, parley.ConversationDirect, e.sender)
				m.fileNotice(e, lineSystem, fmt.Sprintf("%s offered you %s", e.sender, c.fileText(e)))
			}
		}
	}
	c.refresh()
	return tea.Batch(cmds...)
}

// updateFile takes what the server says of a file; an answer to an
// offer of ours is announced. listedAt: file lists asked for up to this
// number may have been read before the file was listed.
func (m *model) updateFile(e *fileEntry, info *parley.FileInfo, listedAt uint64) {
	c := &m.chat
	e.info, e.listed, e.listedAt = info, true, max(e.listedAt, listedAt)
	e.name, e.size, e.ctype = safeName(info.Name), info.Size, displayType(info.ContentType)
	e.sender = info.SenderName
	if info.Conversation != "" {
		e.conv = info.Conversation
	}
	e.outgoing = info.SenderID == c.myID
	a := info.Answer
	if a == parley.FileAnswerNone || a == e.answer || !e.direct() {
		return
	}
	e.answer = a
	if a == parley.FileAnswerRejected {
		e.removed = true
		m.stopUpload(e)
	}
	if !e.outgoing {
		return // answered here, or on another device
	}
	if a == parley.FileAnswerAccepted {
		m.fileNotice(e, lineSystem, fmt.Sprintf("%s accepted %s", c.peer(e.conv), e.name))
	} else {
		m.fileNotice(e, lineError, fmt.Sprintf("%s rejected %s", c.peer(e.conv), e.name))
	}
}

// showShelf lists a conversation's files as notices, newest first.
func (m *model) showShelf(conv string, files []*parley.FileInfo) {
	name := conv
	if cv := m.chat.conv(conv); cv != nil {
		name = cv.name()
	}
	if len(files) == 0 {
		m.noticeIn(conv, lineSystem, "no files in "+name)
		return
	}
	m.noticeIn(conv, lineSystem, fmt.Sprintf("files in %s (%d):", name, len(files)))
	for _, info := range files {
		e := m.chat.fileIDs[info.ID]
		if e == nil {
			continue
		}
		at := info.CreatedAt.Format("Jan 2 15:04")
		m.noticeIn(conv, lineSystem, fmt.Sprintf("  %s · from %s · %s", m.chat.fileText(e), e.sender, at))
	}
}
