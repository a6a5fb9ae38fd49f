package tui

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	tea "github.com/charmbracelet/bubbletea"

	"github.com/parleychat/parley/clients/parley"
	"github.com/parleychat/parley/protocol/fileurl"
)

// The file commands (listed in files.go) and the life of a transfer:
// started by a command, ended by its transferDoneMsg, resumed by /resume.

// fileCommand runs the file commands; it reports false for others.
func (m *model) fileCommand(cmd, args string) (tea.Cmd, bool) {
	switch cmd {
	case "/send", "/file":
		return m.sendFile(args), true
	case "/accept":
		return m.answerFile(args, true), true
	case "/reject":
		return m.answerFile(args, false), true
	case "/get":
		return m.getFile(args), true
	case "/shelf", "/files":
		return m.shelf(), true
	case "/resume":
		return m.resume(args), true
	case "/cancel":
		return m.cancelTransfer(args), true
	case "/dir":
		m.setDir(args)
		return nil, true
	}
	return nil, false
}

// fileConv is the selected conversation if files can be shared in it.
func (m *model) fileConv(op string) *convView {
	cv := m.chat.selected()
	switch {
	case cv == nil:
		return nil
	case cv.kind == parley.ConversationRoom:
		m.chat.add(lineError, op+": files go to a private chat or a group, not the public room (tab to switch, /msg USER)")
		return nil
	case cv.kind == parley.ConversationGroup && cv.invited:
		m.chat.add(lineError, op+": join the group first (/join)")
		return nil
	}
	return cv
}

// sendFile offers the file at args in the selected conversation: the
// path is checked here, so a mistake is an error line at once; hashing,
// the offer and the upload run as commands.
func (m *model) sendFile(args string) tea.Cmd {
	path := expandPath(args)
	if path == "" {
		m.chat.add(lineError, `usage: /send PATH (a path with spaces in "quotes", ~ for your home folder)`)
		return nil
	}
	cv := m.fileConv("/send")
	if cv == nil {
		return nil
	}
	st, err := os.Stat(path)
	switch {
	case err != nil:
		m.chat.add(lineError, "/send: "+printable(err.Error()))
		return nil
	case !st.Mode().IsRegular():
		m.chat.add(lineError, "/send: "+printable(path)+" is not a regular file")
		return nil
	case st.Size() == 0:
		m.chat.add(lineError, "/send: "+printable(path)+" is empty; empty files cannot be sent")
		return nil
	}
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	e := m.chat.addFile(&fileEntry{conv: cv.id, name: safeName(filepath.Base(path)), size: uint64(st.Size()),
		sender: m.chat.me, outgoing: true})
	tr := newTransfer(upload, e, path)
	m.chat.system("sending %s (%s) as #%d…", e.name, humanSize(e.size), e.num)
	return m.startTransfer(tr)
}

// startTransfer puts tr in the pane (if new) and starts its next attempt.
func (m *model) startTransfer(tr *transfer) tea.Cmd {
	c := &m.chat
	tr.file.tr = tr
	if !slices.Contains(c.transfers, tr) {
		c.transfers = append(c.transfers, tr)
		c.relayout()
	}
	if m.client == nil {
		tr.phase, tr.err, tr.resumable = phaseFailed, errNotConnected, true
		m.fileNotice(tr.file, lineError, m.transferFailure(tr))
		return nil
	}
	var s *parley.DirectSession
	if tr.file.viaDirect {
		if s = m.session(tr.file.conv); s == nil {
			tr.phase, tr.err, tr.resumable = phaseFailed, errNoDirect, true
			m.fileNotice(tr.file, lineError, m.transferFailure(tr))
			return nil
		}
	}
	ctx := tr.start(m.ctx, m.now())
	var cmd tea.Cmd
	switch {
	case s != nil:
		tr.phase = phaseRunning
		cmd = directUploadCmd(ctx, s, tr, tr.path)
	case tr.kind == download:
		tr.phase = phaseRunning
		cmd = downloadCmd(ctx, m.client, tr, tr.file.id, tr.file.name, tr.path)
	case tr.offer == nil:
		tr.phase = phaseHashing
		cmd = prepareCmd(ctx, m.client, tr, tr.file.conv, tr.path)
	default:
		tr.phase = phaseRunning
		cmd = uploadCmd(ctx, m.client, tr, tr.offer, tr.path, m.uploadRetries)
	}
	c.refresh()
	return tea.Batch(cmd, m.ensureTick())
}

// linesEvery bounds how often a tick re-renders the message area.
const linesEvery = time.Second

// ensureTick keeps the bars moving while a transfer is active.
func (m *model) ensureTick() tea.Cmd {
	if m.ticking || !slices.ContainsFunc(m.chat.transfers, (*transfer).active) {
		return nil
	}
	m.ticking = true
	return tickCmd()
}

func (m *model) onTransferTick() tea.Cmd {
	m.ticking = false
	now := m.now()
	showing := false
	for _, tr := range m.chat.transfers {
		if tr.active() {
			tr.observe(now)
			showing = showing || tr.file.conv == m.chat.selectedID()
		}
	}
	// The file lines show the percentage too; re-rendering the message
	// area takes tens of milliseconds with a full scrollback, so at most once a
	// second (the pane, drawn by View, moves every tick).
	if showing && now.Sub(m.linesShown) >= linesEvery {
		m.chat.refresh()
		m.linesShown = now
	}
	return m.ensureTick()
}

// onPrepared takes an upload's offer and starts sending the bytes.
func (m *model) onPrepared(msg preparedMsg) tea.Cmd {
	tr, c := msg.tr, &m.chat
	if msg.attempt != tr.attempt || !slices.Contains(c.transfers, tr) || tr.phase == phaseCancelled {
		return nil
	}
	e := tr.file
	if msg.err != nil {
		tr.stop()
		return m.transferFailed(tr, msg.err)
	}
	f := msg.offer.File
	tr.offer = msg.offer
	e.id, e.info, e.listed, e.listedAt = f.ID, f, true, m.filesReq
	e.name, e.ctype, e.size = safeName(f.Name), displayType(f.ContentType), f.Size
	if f.Conversation != "" {
		e.conv = f.Conversation
	}
	if other := c.fileIDs[e.id]; other != nil && other != e {
		// The offer's message came first: one entry, both numbers.
		if e.seq == 0 {
			e.seq = other.seq
		}
		c.files[other.num-1] = e
	}
	c.fileIDs[e.id] = e
	tr.phase, tr.total = phaseRunning, f.Size
	tr.cnt.total.Store(tr.total)
	c.refresh()
	return uploadCmd(tr.ctx, m.client, tr, tr.offer, tr.path, m.uploadRetries)
}

// onTransferDone ends an attempt: the file is sent or saved, or the
// failure is shown with what can be done about it.
func (m *model) onTransferDone(msg transferDoneMsg) tea.Cmd {
	tr, c := msg.tr, &m.chat
	if msg.attempt != tr.attempt || !slices.Contains(c.transfers, tr) {
		return nil
	}
	tr.observe(m.now())
	tr.stop() // the attempt is over
	if tr.phase == phaseCancelled {
		return nil // /cancel said so already
	}
	if msg.err != nil {
		return m.transferFailed(tr, msg.err)
	}
	tr.phase = phaseDone
	tr.done = tr.total
	m.dropTransfer(tr)
	e := tr.file
	if tr.kind == download {
		e.saved = msg.path
		if e.size == 0 {
			e.size = tr.total // saved before the file's details came
		}
		m.fileNotice(e, lineSystem, fmt.Sprintf("saved %s (%s, SHA-256 checked) to %s", e.name, humanSize(tr.total), printable(msg.path)))
		return nil
	}
	switch {
	case e.viaDirect:
		m.fileNotice(e, lineSystem, fmt.Sprintf("⇄ %s sent over the direct session (%s): %s has it (SHA-256 checked)",
			e.name, humanSize(e.size), c.peer(e.conv)))
		return nil
	case e.direct() && e.answer == parley.FileAnswerAccepted:
		m.fileNotice(e, lineSystem, fmt.Sprintf("%s sent (%s): %s accepted it", e.name, humanSize(e.size), c.peer(e.conv)))
		return nil
	case e.direct():
		m.fileNotice(e, lineSystem, fmt.Sprintf("%s sent (%s): waiting for %s's answer", e.name, humanSize(e.size), c.peer(e.conv)))
		return nil
	}
	m.fileNotice(e, lineSystem, fmt.Sprintf("%s sent (%s): it is on the group's shelf", e.name, humanSize(e.size)))
	return nil
}

// transferFailed shows why tr stopped; resumable ones stay in the pane.
func (m *model) transferFailed(tr *transfer, err error) tea.Cmd {
	e := tr.file
	tr.phase, tr.err, tr.resumable = phaseFailed, err, resumable(tr.kind, err)
	if tr.kind == upload && errors.Is(err, parley.ErrChecksum) {
		e.removed = true // the server failed the file; it is not listed any more
	}
	var he *parley.HTTPError
	if tr.kind == upload && errors.As(err, &he) && he.Status == 404 {
		e.removed = true
		if e.direct() && e.answer == parley.FileAnswerNone {
			m.fileNotice(e, lineError, fmt.Sprintf("%s: %s rejected it or it was removed; the upload stopped", e.name, m.chat.peer(e.conv)))
			m.dropTransfer(tr)
			return nil
		}
	}
	m.fileNotice(e, lineError, m.transferFailure(tr))
	if !tr.resumable {
		m.dropTransfer(tr)
		tr.file.tr = tr // the line still says why
	}
	m.chat.refresh()
	return nil
}

func (m *model) transferFailure(tr *transfer) string {
	what := tr.kind.String() + " of "
	if tr.kind == upload && tr.offer == nil {
		what = "cannot send "
	}
	msg := what + tr.file.name + ": " + transferError(tr.kind, tr.err)
	if tr.resumable {
		msg += fmt.Sprintf(" (/resume %d to continue)", tr.file.num)
	}
	return msg
}

// dropTransfer takes tr out of the pane.
func (m *model) dropTransfer(tr *transfer) {
	c := &m.chat
	if i := slices.Index(c.transfers, tr); i >= 0 {
		c.transfers = slices.Delete(c.transfers, i, i+1)
		c.relayout()
	}
	c.refresh()
}

// fileNotice tells of something that happened to a file: in the file's
// conversation and, when another is selected, there too, naming the
// file's conversation (the user started it and wants to know).
func (m *model) fileNotice(e *fileEntry, kind lineKind, text string) {
	c := &m.chat
	cv := c.conv(e.conv)
	if cv == nil {
		c.add(kind, text)
		return
	}
	cv.addNotice(kind, text)
	if sel := c.selected(); sel != nil && sel != cv {
		sel.addNotice(kind, cv.name()+": "+text)
	}
	c.refresh()
}

// pickFile finds the file a command names: #N, or without one the newest
// in the selected conversation that ok accepts.
func (m *model) pickFile(op, args string, ok func(*fileEntry) bool) *fileEntry {
	args = strings.TrimPrefix(strings.TrimSpace(args), "#")
	if args != "" {
		n, err := strconv.Atoi(args)
		if err != nil {
			m.chat.add(lineError, fmt.Sprintf("usage: %s [N] (N: the file's number, as in [#N])", op))
			return nil
		}
		e := m.chat.fileByNum(n)
		if e == nil {
			m.chat.add(lineError, fmt.Sprintf("%s: there is no file #%d (/shelf lists this chat's files)", op, n))
		}
		return e
	}
	id := m.chat.selectedID()
	var found *fileEntry
	m.chat.eachFile(func(e *fileEntry) {
		if e.conv == id && (ok == nil || ok(e)) {
			found = e
		}
	})
	if found == nil {
		m.chat.add(lineError, op+": no such file in this chat; give its number (/shelf lists them)")
	}
	return found
}

// answerFile accepts (and downloads) or rejects an offer.
func (m *model) answerFile(args string, accept bool) tea.Cmd {
	op := "/reject"
	if accept {
		op = "/accept"
	}
	e := m.pickFile(op, args, (*fileEntry).pending)
	if e == nil {
		return nil
	}
	switch {
	case e.outgoing:
		m.chat.add(lineError, fmt.Sprintf("%s: #%d is your own file", op, e.num))
		return nil
	case !e.direct():
		if accept { // group files need no answer
			return m.startDownload(e)
		}
		m.chat.add(lineError, op+": files in a group are not answered; just leave it on the shelf")
		return nil
	case e.removed || e.answer == parley.FileAnswerRejected:
		m.chat.add(lineError, fmt.Sprintf("%s: %s was rejected or removed", op, e.name))
		return nil
	case e.answer == parley.FileAnswerAccepted:
		if accept {
			return m.startDownload(e)
		}
		m.chat.add(lineError, fmt.Sprintf("%s: you accepted %s already", op, e.name))
		return nil
	case m.client == nil:
		m.chat.add(lineError, op+": "+errNotConnected.Error())
		return nil
	}
	return answerCmd(m.ctx, m.client, e, accept)
}

func (m *model) onAnswered(msg answeredMsg) tea.Cmd {
	if msg.client != m.client {
		return nil
	}
	e := msg.file
	if msg.err != nil {
		op := "/reject"
		if msg.accept {
			op = "/accept"
		}
		m.fileNotice(e, lineError, fmt.Sprintf("%s %s: %s", op, e.name, describe(msg.err)))
		return nil
	}
	if !msg.accept {
		e.answer, e.removed = parley.FileAnswerRejected, true
		if e.tr != nil {
			e.tr.stop()
			m.dropTransfer(e.tr)
			e.tr = nil
		}
		m.fileNotice(e, lineSystem, fmt.Sprintf("you rejected %s from %s", e.name, e.sender))
		return nil
	}
	e.answer = parley.FileAnswerAccepted
	m.fileNotice(e, lineSystem, fmt.Sprintf("you accepted %s: downloading to %s", e.name, printable(m.downloadDir)))
	return m.startDownload(e)
}

// getFile downloads a file; an offer not answered yet is accepted first.
func (m *model) getFile(args string) tea.Cmd {
	e := m.pickFile("/get", args, func(e *fileEntry) bool { return !e.outgoing && !e.removed })
	if e == nil {
		return nil
	}
	if e.pending() {
		return m.answerFile(strconv.Itoa(e.num), true)
	}
	if e.removed {
		m.chat.add(lineError, fmt.Sprintf("/get: %s was rejected or removed", e.name))
		return nil
	}
	return m.startDownload(e)
}

func (m *model) startDownload(e *fileEntry) tea.Cmd {
	if e.id == "" {
		m.chat.add(lineError, fmt.Sprintf("#%d is not offered yet", e.num))
		return nil
	}
	if e.tr != nil && e.tr.active() {
		m.chat.add(lineError, fmt.Sprintf("#%d is being transferred already", e.num))
		return nil
	}
	return m.startTransfer(newTransfer(download, e, m.downloadDir))
}

// shelf lists the selected conversation's files.
func (m *model) shelf() tea.Cmd {
	cv := m.fileConv("/shelf")
	if cv == nil {
		return nil
	}
	if m.client == nil {
		m.chat.add(lineError, "/shelf: "+errNotConnected.Error())
		return nil
	}
	return m.listFiles(cv.id, filesShelf)
}

// resume continues interrupted transfers: all of them, or #N; "/resume N
// PATH" continues an upload of #N begun elsewhere (another run of the
// client) from the file at PATH.
func (m *model) resume(args string) tea.Cmd {
	num, path, _ := strings.Cut(strings.TrimSpace(args), " ")
	if num == "" {
		var cmds []tea.Cmd
		for _, tr := range slices.Clone(m.chat.transfers) {
			if tr.phase == phaseCancelled || tr.phase == phaseFailed && tr.resumable {
				cmds = append(cmds, m.startTransfer(tr))
			}
		}
		if len(cmds) == 0 {
			m.chat.add(lineError, "/resume: no interrupted transfer")
		}
		return tea.Batch(cmds...)
	}
	e := m.pickFile("/resume", num, nil)
	if e == nil {
		return nil
	}
	if tr := e.tr; tr != nil && (tr.phase == phaseCancelled || tr.phase == phaseFailed && tr.resumable) && path == "" {
		return m.startTransfer(tr)
	}
	if tr := e.tr; tr != nil && tr.active() {
		m.chat.add(lineError, fmt.Sprintf("/resume: #%d is running", e.num))
		return nil
	}
	if e.outgoing && e.id != "" && e.info != nil && e.info.State == parley.FileStateUploading {
		if path = expandPath(path); path == "" {
			m.chat.add(lineError, fmt.Sprintf("usage: /resume %d PATH (the file on this computer)", e.num))
			return nil
		}
		if abs, err := filepath.Abs(path); err == nil {
			path = abs
		}
		tr := newTransfer(upload, e, path)
		tr.offer = &parley.FileOffer{File: e.info, UploadPath: fileurl.Upload(e.id)}
		return m.startTransfer(tr)
	}
	m.chat.add(lineError, fmt.Sprintf("/resume: nothing to resume for #%d", e.num))
	return nil
}

// cancelTransfer stops a transfer (resumable with /resume) or clears an
// interrupted one from the pane.
func (m *model) cancelTransfer(args string) tea.Cmd {
	var tr *transfer
	if strings.TrimSpace(args) == "" {
		if len(m.chat.transfers) != 1 {
			m.chat.add(lineError, "usage: /cancel N (the file's number)")
			return nil
		}
		tr = m.chat.transfers[0]
	} else {
		e := m.pickFile("/cancel", args, nil)
		if e == nil {
			return nil
		}
		if tr = e.tr; tr == nil || !slices.Contains(m.chat.transfers, tr) {
			m.chat.add(lineError, fmt.Sprintf("/cancel: #%d is not being transferred", e.num))
			return nil
		}
	}
	if !tr.active() {
		m.dropTransfer(tr)
		tr.file.tr = nil
		return nil
	}
	tr.stop()
	tr.phase, tr.err, tr.resumable = phaseCancelled, context.Canceled, true
	m.fileNotice(tr.file, lineSystem, fmt.Sprintf("%s of %s cancelled: /resume %d continues it", tr.kind, tr.file.name, tr.file.num))
	return nil
}

// setDir shows or changes the download folder.
func (m *model) setDir(args string) {
	dir := expandPath(args)
	if dir == "" {
		m.chat.system("downloads go to %s (/dir PATH changes it)", printable(m.downloadDir))
		return
	}
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs
	}
	st, err := os.Stat(dir)
	switch {
	case err != nil:
		m.chat.add(lineError, "/dir: "+printable(err.Error()))
		return
	case !st.IsDir():
		m.chat.add(lineError, "/dir: "+printable(dir)+" is not a folder")
		return
	}
	m.downloadDir = dir
	m.chat.system("downloads go to %s", printable(dir))
}
