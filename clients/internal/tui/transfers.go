package tui

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/charmbracelet/bubbles/progress"
	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/lipgloss"

	"github.com/parleychat/parley/clients/parley"
)

// Transfers: each upload or download runs in a command of its own. The
// command's goroutine only writes its progress counters (atomics); the
// model reads them on a tick (every transferTick while anything runs),
// works out rate and ETA and renders the bars. A transfer ends with a
// transferDoneMsg; one interrupted (network, cancelled) stays in the pane
// until /resume continues it from where the server (upload) or the part
// file (download) got to.

// transferTick is how often the bars are redrawn while transfers run.
const transferTick = 250 * time.Millisecond

// rateWindow is how far back the rate looks.
const rateWindow = 5 * time.Second

// stallShown: a running transfer that moved no byte for this long says
// so (the SDK is retrying, or the network hangs).
const stallShown = 3 * time.Second

// maxTransferRows bounds the transfers pane.
const maxTransferRows = 4

// waitUploadEvery is how often a download of a file still being uploaded
// asks whether it has finished.
const waitUploadEvery = time.Second

// downloadRetries is how many broken downloads in a row are resumed by
// themselves (uploads: the SDK's own retries).
const downloadRetries = 3

type transferKind int

const (
	upload transferKind = iota
	download
)

func (k transferKind) String() string {
	if k == download {
		return "download"
	}
	return "upload"
}

type phase int

const (
	phaseHashing phase = iota // upload: computing the SHA-256, then offering
	phaseRunning              // bytes moving (or a download waiting for the upload)
	phaseDone
	phaseFailed // err says why; resumable tells whether /resume can help
	phaseCancelled
)

// counters are what a transfer's goroutine reports; one set per attempt so
// a late write of a cancelled attempt cannot move a new one's bar.
type counters struct {
	done, total atomic.Uint64
	// remote: a download waits for the sender's upload, which is at
	// remote-1 bytes (0: not waiting).
	remote atomic.Uint64
}

type sample struct {
	at   time.Time
	done uint64
}

// transfer is one upload or download of a file entry.
type transfer struct {
	kind transferKind
	file *fileEntry
	// path: the source of an upload; the download folder of a download.
	path      string
	phase     phase
	err       error
	resumable bool
	attempt   int // numbers the attempts; messages of older ones are stale
	cnt       *counters
	// ctx is the running attempt's (an upload's offer and its bytes are
	// two commands); cancel ends it.
	ctx    context.Context
	cancel context.CancelFunc
	offer  *parley.FileOffer // upload: once offered
	// Shown: the counters as of the last tick, and the rate over the
	// last rateWindow.
	done, total uint64
	remote      uint64
	samples     []sample
	rate        float64
	// seen: the last tick; moved: when done last changed.
	seen, moved time.Time
	bar         progress.Model
}

func newTransfer(kind transferKind, e *fileEntry, path string) *transfer {
	return &transfer{kind: kind, file: e, path: path, total: e.size,
		bar: progress.New(progress.WithDefaultGradient(), progress.WithoutPercentage(), progress.WithWidth(20))}
}

// active: bytes are (or are about to be) moving.
func (t *transfer) active() bool { return t.phase < phaseDone }

// start begins a new attempt: fresh counters and context.
func (t *transfer) start(parent context.Context, now time.Time) context.Context {
	t.attempt++
	t.cnt = &counters{}
	t.cnt.total.Store(t.total)
	t.cnt.done.Store(t.done)
	t.err, t.resumable = nil, false
	t.samples, t.rate, t.remote = nil, 0, 0
	t.moved = time.Time{}
	t.observe(now)
	t.ctx, t.cancel = context.WithCancel(parent)
	return t.ctx
}

// stop ends the running attempt, if any.
func (t *transfer) stop() {
	if t.cancel != nil {
		t.cancel()
	}
}

// observe takes the counters and updates the rate.
func (t *transfer) observe(now time.Time) {
	if t.cnt == nil {
		return
	}
	done := t.cnt.done.Load()
	if done != t.done || t.moved.IsZero() {
		t.moved = now
	}
	t.seen = now
	t.done, t.total, t.remote = done, t.cnt.total.Load(), t.cnt.remote.Load()
	if len(t.samples) > 0 && t.done < t.samples[len(t.samples)-1].done {
		t.samples = t.samples[:0] // went back (a download started afresh)
	}
	t.samples = append(t.samples, sample{at: now, done: t.done})
	i := 0
	for i < len(t.samples)-2 && now.Sub(t.samples[i+1].at) >= rateWindow {
		i++
	}
	t.samples = t.samples[i:]
	first := t.samples[0]
	if dt := now.Sub(first.at).Seconds(); dt > 0 {
		t.rate = float64(t.done-first.done) / dt
	}
}

func (t *transfer) percent() float64 {
	if t.total == 0 {
		return 0
	}
	return min(float64(t.done)/float64(t.total), 1)
}

// eta is the time left at the current rate (false: unknown).
func (t *transfer) eta() (time.Duration, bool) {
	if t.rate <= 0 || t.done >= t.total {
		return 0, false
	}
	return time.Duration(float64(t.total-t.done) / t.rate * float64(time.Second)), true
}

// waiting: a download waits for the sender's upload to finish.
func (t *transfer) waiting() bool { return t.kind == download && t.remote > 0 }

// status is the transfer's state in a few words, for the file's line.
func (t *transfer) status() string {
	pct := fmt.Sprintf("%.0f%%", t.percent()*100)
	switch t.phase {
	case phaseHashing:
		return "checking (SHA-256) " + pct
	case phaseRunning:
		if t.waiting() {
			return fmt.Sprintf("waiting for the upload (%s)", pctOf(t.remote-1, t.total))
		}
		if t.kind == upload && t.file.viaDirect {
			return "sending directly " + pct
		}
		if t.kind == upload {
			return "uploading " + pct
		}
		return "downloading " + pct
	case phaseCancelled:
		return fmt.Sprintf("cancelled at %s: /resume %d", pct, t.file.num)
	case phaseFailed:
		if t.resumable {
			return fmt.Sprintf("interrupted at %s (%s): /resume %d", pct, transferError(t.kind, t.err), t.file.num)
		}
		return "failed: " + transferError(t.kind, t.err)
	}
	return ""
}

func pctOf(n, total uint64) string {
	if total == 0 {
		return "0%"
	}
	return fmt.Sprintf("%.0f%%", min(float64(n)/float64(total), 1)*100)
}

// row renders the transfer in the pane, within width cells:
// "↑ #1 report.pdf ▕bar▏ 45% 1.1 MiB/2.3 MiB 3.2 MiB/s ETA 4s".
func (t *transfer) row(width int) string {
	arrow := "↑"
	if t.kind == download {
		arrow = "↓"
	}
	if t.file.viaDirect {
		arrow = "⇄" + arrow
	}
	name := fitWidth(t.file.name, 24)
	head := fmt.Sprintf("%s #%d %s ", arrow, t.file.num, name)
	switch {
	case t.phase == phaseFailed:
		return clip(head+errorStyle.Render(t.status()), width)
	case t.phase == phaseCancelled:
		return clip(head+warnStyle.Render(t.status()), width)
	case t.waiting():
		return clip(head+t.status(), width)
	}
	line := head + t.bar.ViewAs(t.percent()) + fmt.Sprintf(" %3.0f%% %s/%s", t.percent()*100, humanSize(t.done), humanSize(t.total))
	switch stalled := t.seen.Sub(t.moved); {
	case t.phase == phaseHashing:
		line += " checking"
	case stalled >= stallShown:
		return clip(line+"  "+warnStyle.Render("no progress for "+humanETA(stalled)+": retrying…"), width)
	case t.rate > 0:
		line += "  " + humanRate(t.rate)
	}
	if eta, ok := t.eta(); ok {
		line += "  ETA " + humanETA(eta)
	}
	return clip(line, width)
}

// fitWidth shortens plain text to at most w cells, marking the cut with "…".
func fitWidth(s string, w int) string {
	if lipgloss.Width(s) <= w {
		return s
	}
	r := []rune(s)
	for len(r) > 0 && lipgloss.Width(string(r))+1 > w {
		r = r[:len(r)-1]
	}
	return string(r) + "…"
}

// clip cuts a rendered (styled) line to w cells.
func clip(s string, w int) string {
	return lipgloss.NewStyle().MaxWidth(max(w, 1)).Render(s)
}

// Messages of transfers.
type (
	// preparedMsg: an upload's file was hashed and offered (or not).
	preparedMsg struct {
		tr      *transfer
		attempt int
		offer   *parley.FileOffer
		err     error
	}
	// transferDoneMsg: an attempt ended; path is where a download was
	// saved.
	transferDoneMsg struct {
		tr      *transfer
		attempt int
		path    string
		err     error
	}
	// transferTickMsg redraws the bars.
	transferTickMsg struct{}
)

// errFileChanged: the file to upload is not the one that was offered.
var errFileChanged = errors.New("the file changed since it was offered: send it again")

// prepareCmd hashes the file at path and offers it in conv.
func prepareCmd(ctx context.Context, c *parley.Client, tr *transfer, conv, path string) tea.Cmd {
	cnt, attempt := tr.cnt, tr.attempt
	return func() tea.Msg {
		f, err := os.Open(path)
		if err != nil {
			return preparedMsg{tr: tr, attempt: attempt, err: err}
		}
		defer f.Close()
		st, err := f.Stat()
		if err != nil {
			return preparedMsg{tr: tr, attempt: attempt, err: err}
		}
		cnt.total.Store(uint64(st.Size()))
		h := sha256.New()
		if _, err := io.Copy(io.MultiWriter(h, countWriter{&cnt.done}), readerCtx{ctx, f}); err != nil {
			return preparedMsg{tr: tr, attempt: attempt, err: err}
		}
		rctx, cancel := context.WithTimeout(ctx, requestTimeout)
		defer cancel()
		offer, err := c.OfferFile(rctx, parley.OfferRequest{Conversation: conv, Name: filepath.Base(path),
			Size: uint64(st.Size()), SHA256: hex.EncodeToString(h.Sum(nil)), ContentType: mime.TypeByExtension(filepath.Ext(path))})
		cnt.done.Store(0)
		return preparedMsg{tr: tr, attempt: attempt, offer: offer, err: err}
	}
}

// uploadCmd sends the offered file's bytes, from wherever the server
// is (the SDK asks for the offset first), resuming by itself after up to
// retries failures in a row (0: the SDK's default).
func uploadCmd(ctx context.Context, c *parley.Client, tr *transfer, offer *parley.FileOffer, path string, retries int) tea.Cmd {
	cnt, attempt := tr.cnt, tr.attempt
	return func() tea.Msg {
		err := func() error {
			f, err := os.Open(path)
			if err != nil {
				return err
			}
			defer f.Close()
			st, err := f.Stat()
			if err != nil {
				return err
			}
			if uint64(st.Size()) != offer.File.Size {
				return errFileChanged
			}
			return c.Upload(ctx, offer, f, parley.UploadOptions{Retries: retries, Progress: func(sent, total uint64) {
				cnt.done.Store(sent)
				cnt.total.Store(total)
			}})
		}()
		return transferDoneMsg{tr: tr, attempt: attempt, err: err}
	}
}

// downloadCmd downloads file id into dir (parley.DownloadToDir: a part
// file resumed across attempts, the SHA-256 checked, then a free name),
// following a live upload or waiting for one that is not.
func downloadCmd(ctx context.Context, c *parley.Client, tr *transfer, id, name, dir string) tea.Cmd {
	cnt, attempt := tr.cnt, tr.attempt
	return func() tea.Msg {
		done := func(path string, err error) tea.Msg {
			return transferDoneMsg{tr: tr, attempt: attempt, path: path, err: err}
		}
		// While nothing arrives, show how far the sender's upload is: a
		// live upload streams at once, otherwise the SDK waits for its end.
		watch, stopWatch := context.WithCancel(ctx)
		defer stopWatch()
		go func() {
			for {
				rctx, cancel := context.WithTimeout(watch, requestTimeout)
				dl, err := c.DownloadURL(rctx, id)
				cancel()
				if err != nil || dl.File.State != parley.FileStateUploading || cnt.done.Load() > 0 {
					cnt.remote.Store(0)
					return
				}
				cnt.total.Store(dl.File.Size)
				cnt.remote.Store(dl.File.Uploaded + 1)
				select {
				case <-watch.Done():
					cnt.remote.Store(0)
					return
				case <-time.After(waitUploadEvery):
				}
			}
		}()
		progress := func(d, total uint64) { cnt.done.Store(d); cnt.total.Store(total) }
		var path string
		var err error
		for try := 0; ; try++ {
			path, _, err = c.DownloadToDir(ctx, id, dir, progress)
			if err == nil || try >= downloadRetries || ctx.Err() != nil || !resumable(download, err) || errors.Is(err, parley.ErrChecksum) {
				break
			}
			select {
			case <-ctx.Done():
			case <-time.After(time.Duration(try+1) * 300 * time.Millisecond):
			}
		}
		return done(path, err)
	}
}

// tickCmd asks for the next redraw of the bars.
func tickCmd() tea.Cmd {
	return tea.Tick(transferTick, func(time.Time) tea.Msg { return transferTickMsg{} })
}

type countWriter struct{ n *atomic.Uint64 }

func (w countWriter) Write(b []byte) (int, error) { w.n.Add(uint64(len(b))); return len(b), nil }

// readerCtx stops reading once ctx ends (hashing a big file, cancelled).
type readerCtx struct {
	ctx context.Context
	r   io.Reader
}

func (r readerCtx) Read(b []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.r.Read(b)
}

// resumable reports whether trying the transfer again may succeed: the
// network broke, the server was busy, the transfer was cancelled; not
// when the server refused it (too large, rejected, gone) or an upload's
// bytes did not match.
func resumable(kind transferKind, err error) bool {
	var he *parley.HTTPError
	var pe *parley.Error
	switch {
	case err == nil:
		return false
	case errors.Is(err, context.Canceled):
		return true
	case errors.Is(err, parley.ErrDirectFileRejected):
		return false
	case errors.Is(err, parley.ErrChecksum):
		// An upload's bytes did not match: the file is FAILED. A
		// download's were discarded: trying again fetches them afresh.
		return kind == download
	case errors.Is(err, errFileChanged), errors.Is(err, os.ErrNotExist), errors.Is(err, os.ErrPermission):
		return false
	case errors.As(err, &he):
		return he.Status >= 500 || he.Status == http.StatusConflict || he.Status == http.StatusUnauthorized
	case errors.As(err, &pe):
		return parley.Retryable(err)
	}
	return true // the network, a timeout
}

// transferError says what went wrong with a transfer, for a person.
func transferError(kind transferKind, err error) string {
	var he *parley.HTTPError
	var ne net.Error
	switch {
	case err == nil:
		return ""
	case errors.Is(err, context.Canceled):
		return "cancelled"
	case errors.Is(err, parley.ErrDirectFileRejected):
		return describe(err)
	case errors.Is(err, parley.ErrDirectClosed), errors.Is(err, errNoDirect):
		return "the direct session ended (/direct opens another)"
	case errors.Is(err, parley.ErrChecksum) && kind == upload:
		return "checksum mismatch: the server received bytes that do not match the file (did it change while sending?); send it again"
	case errors.Is(err, parley.ErrChecksum):
		return "checksum mismatch: the downloaded bytes were discarded"
	case errors.Is(err, parley.ErrFileTooLarge):
		return describe(err) // the server says what the limit is
	case errors.As(err, &he):
		switch he.Status {
		case http.StatusNotFound:
			return "the file is gone (rejected, cancelled or expired)"
		case http.StatusForbidden:
			return "not allowed: " + printable(he.Message)
		case http.StatusRequestEntityTooLarge:
			return "file too large: " + printable(he.Message)
		case http.StatusConflict:
			return "still uploading, or another upload took over"
		case http.StatusUnauthorized:
			return "the session expired: log in again"
		}
		if he.Status >= 500 {
			return "file storage unavailable (" + printable(he.Message) + ")"
		}
		return printable(he.Error())
	case errors.Is(err, syscall.ECONNREFUSED):
		return "offline: the server refused the connection"
	case errors.As(err, &ne) && ne.Timeout():
		return "offline: the server did not answer in time"
	case errors.Is(err, errNotConnected), errors.Is(err, parley.ErrConnectionLost), errors.Is(err, parley.ErrClosed):
		return "offline: " + describe(err)
	}
	var oe *net.OpError
	if errors.As(err, &oe) {
		return "offline: " + printable(oe.Err.Error())
	}
	return printable(strings.TrimPrefix(describe(err), "download interrupted (resume by calling again): "))
}
