package parley

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/parleychat/parley/protocol/parleyv1"
)

// Files (docs/protocol.md §18). Offers, answers and lists travel as frames;
// bytes travel over HTTP on the gateway's HTTP port: uploads with tus 1.0
// (resumable), downloads with Range (resumable).

// FileInfo describes an offered file as the server knows it
// (docs/protocol.md §18).
type FileInfo struct {
	ID string
	// Name is the sanitised base name: no path, no control or format
	// characters.
	Name string
	Size uint64 // bytes
	// ContentType is what the sender declared ("image/png"), checked
	// against the bytes for images.
	ContentType string
	SHA256      string // lower-case hex of the whole file
	SenderID    string
	SenderName  string
	// Conversation is where the file was offered.
	Conversation string
	CreatedAt    time.Time
	// ExpiresAt is when retention removes the file; while it is
	// uploading, the upload's deadline.
	ExpiresAt time.Time
	State     FileState
	Uploaded  uint64 // bytes stored so far
	// Answer: private chats, the recipient's answer.
	Answer FileAnswer
	// Thumbnail: images, a small JPEG (at most 160x160) once available.
	Thumbnail []byte
}

// FileState is where a file is in its life. The values are the
// protocol's numbers (FileState in docs/protocol.md §18).
type FileState int

// File states.
const (
	FileStateUnknown   FileState = iota
	FileStateUploading           // offered; bytes still arriving
	FileStateAvailable           // every byte stored and the SHA-256 verified
	FileStateFailed              // the upload's bytes did not match the SHA-256; nothing can be downloaded
	FileStateExpired             // removed: by retention, cancelled by its sender or rejected by the recipient
)

func (s FileState) String() string {
	switch s {
	case FileStateUploading:
		return "uploading"
	case FileStateAvailable:
		return "available"
	case FileStateFailed:
		return "failed"
	case FileStateExpired:
		return "expired"
	}
	return "unknown"
}

// FileAnswer is the recipient's answer to a file offered in a private
// chat. The values are the protocol's numbers (FileAnswer).
type FileAnswer int

// File answers.
const (
	FileAnswerNone     FileAnswer = iota // not answered yet (private chats), or not asked (groups)
	FileAnswerAccepted                   // AnswerFile(..., true)
	FileAnswerRejected                   // AnswerFile(..., false); the file is deleted
)

func (a FileAnswer) String() string {
	switch a {
	case FileAnswerAccepted:
		return "accepted"
	case FileAnswerRejected:
		return "rejected"
	}
	return "none"
}

// FileOffer is what OfferFile returns: the file and where to upload it.
type FileOffer struct {
	File *FileInfo // never nil in an offer OfferFile returns
	// UploadPath is where Upload sends the bytes, relative to HTTPBase
	// ("/v1/files/<id>").
	UploadPath string
	// PartSize is how many bytes the server stores per part: an
	// interrupted upload sends at most this much again.
	PartSize uint64
	// Duplicate: the offer's ClientKey was seen before, and this is the
	// first offer made with it.
	Duplicate bool
}

// FileDownload is what DownloadURL returns: the file as it is now and
// where to download it.
type FileDownload struct {
	File *FileInfo // never nil
	// Path is the download URL relative to HTTPBase
	// ("/v1/files/<id>/content?token=..."); it supports Range.
	Path string
	// ExpiresAt is when the token in Path stops working.
	ExpiresAt time.Time
}

// fileFromWire converts a FileInfo; nil stays nil.
func fileFromWire(f *parleyv1.FileInfo) *FileInfo {
	if f == nil {
		return nil
	}
	out := &FileInfo{
		ID:           f.GetFileId(),
		Name:         f.GetName(),
		Size:         f.GetSize(),
		ContentType:  f.GetContentType(),
		SHA256:       f.GetSha256(),
		SenderID:     f.GetSenderId(),
		SenderName:   f.GetSenderName(),
		Conversation: f.GetConversation(),
		CreatedAt:    unixMilli(f.GetCreatedAtUnixMs()),
		ExpiresAt:    unixMilli(f.GetExpiresAtUnixMs()),
		Uploaded:     f.GetUploaded(),
		Thumbnail:    f.GetThumbnail(),
	}
	switch f.GetState() {
	case parleyv1.FileState_FILE_STATE_UPLOADING:
		out.State = FileStateUploading
	case parleyv1.FileState_FILE_STATE_AVAILABLE:
		out.State = FileStateAvailable
	case parleyv1.FileState_FILE_STATE_FAILED:
		out.State = FileStateFailed
	case parleyv1.FileState_FILE_STATE_EXPIRED:
		out.State = FileStateExpired
	}
	switch f.GetAnswer() {
	case parleyv1.FileAnswer_FILE_ANSWER_ACCEPTED:
		out.Answer = FileAnswerAccepted
	case parleyv1.FileAnswer_FILE_ANSWER_REJECTED:
		out.Answer = FileAnswerRejected
	}
	return out
}

// fileOrEmpty converts the file of an offer, a download or an event, which
// the server always sets; a missing one becomes an empty FileInfo so that
// callers need no nil check.
func fileOrEmpty(f *parleyv1.FileInfo) *FileInfo {
	if out := fileFromWire(f); out != nil {
		return out
	}
	return &FileInfo{}
}

func fileOfferFromWire(o *parleyv1.FileOffer) *FileOffer {
	return &FileOffer{File: fileOrEmpty(o.GetFile()), UploadPath: o.GetUploadPath(), PartSize: o.GetPartSize(), Duplicate: o.GetDuplicate()}
}

func fileDownloadFromWire(d *parleyv1.FileDownload) *FileDownload {
	return &FileDownload{File: fileOrEmpty(d.GetFile()), Path: d.GetPath(), ExpiresAt: unixMilli(d.GetExpiresAtUnixMs())}
}

// unixMilli is the time of a wire timestamp; 0 (not set) is the zero Time.
func unixMilli(ms int64) time.Time {
	if ms <= 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms)
}

// FileEventKind says what happened to a file.
type FileEventKind int

// File event kinds.
const (
	FileEventUnknown   FileEventKind = iota
	FileEventOffered                 // offered to you in a private chat while you are connected (Files("") lists older ones)
	FileEventAccepted                // the recipient accepted (to the sender and the recipient's devices)
	FileEventRejected                // the recipient rejected; the file is deleted
	FileEventAvailable               // the upload finished and its SHA-256 matched (a picture now has its thumbnail)
	FileEventFailed                  // the upload's bytes did not match the SHA-256
	FileEventExpired                 // removed by retention or by its sender
)

func (k FileEventKind) String() string {
	switch k {
	case FileEventOffered:
		return "offered"
	case FileEventAccepted:
		return "accepted"
	case FileEventRejected:
		return "rejected"
	case FileEventAvailable:
		return "available"
	case FileEventFailed:
		return "failed"
	case FileEventExpired:
		return "expired"
	}
	return "unknown"
}

// FileEvent tells the user about a file (File is never nil).
// UserID/Username name who caused it (empty for retention). Live events may
// be dropped when Events is not read (like typing events); Files lists the
// current state at any time.
type FileEvent struct {
	Kind     FileEventKind
	File     *FileInfo
	UserID   string
	Username string
}

func (FileEvent) isEvent() {}

func fileEventFromWire(ev *parleyv1.FileEvent) FileEvent {
	kind := FileEventUnknown
	switch ev.GetKind() {
	case parleyv1.FileEvent_KIND_OFFERED:
		kind = FileEventOffered
	case parleyv1.FileEvent_KIND_ACCEPTED:
		kind = FileEventAccepted
	case parleyv1.FileEvent_KIND_REJECTED:
		kind = FileEventRejected
	case parleyv1.FileEvent_KIND_AVAILABLE:
		kind = FileEventAvailable
	case parleyv1.FileEvent_KIND_FAILED:
		kind = FileEventFailed
	case parleyv1.FileEvent_KIND_EXPIRED:
		kind = FileEventExpired
	}
	return FileEvent{Kind: kind, File: fileOrEmpty(ev.GetFile()), UserID: ev.GetUserId(), Username: ev.GetUsername()}
}

// DefaultHTTPPort is the gateway's HTTP port used for files when the client
// dialled a tcp:// or tls:// address and the server did not say where its
// files are (ws/wss addresses name the port already).
const DefaultHTTPPort = "7480"

// WithHTTPBase sets the gateway's HTTP base URL for file transfers
// ("http://host:7480"), overriding what the server announces.
func WithHTTPBase(base string) Option {
	return func(o *config) { o.httpBase = strings.TrimRight(base, "/") }
}

// HTTPBase is the base URL file transfers use: WithHTTPBase if given; else
// the current connection's Welcome.http_url, where the gateway says its
// files are (docs/protocol.md §18); else one derived from the dial
// address (the address's host with DefaultHTTPPort, https for tls://; a
// ws:// or wss:// address's own host and port), for a gateway too old to
// say. It may change after a reconnect to another gateway.
func (c *Client) HTTPBase() string {
	if c.cfg.httpBase != "" {
		return c.cfg.httpBase
	}
	if u := strings.TrimRight(c.Welcome().HTTPURL, "/"); strings.HasPrefix(u, "http://") || strings.HasPrefix(u, "https://") {
		return u
	}
	switch c.addr.kind {
	case kindWS:
		return "http://" + c.addr.host
	case kindWSS:
		return "https://" + c.addr.host
	case kindTLS:
		return "https://" + net.JoinHostPort(c.addr.hostname(), DefaultHTTPPort)
	}
	return "http://" + net.JoinHostPort(c.addr.hostname(), DefaultHTTPPort)
}

// OfferRequest describes a file to offer: to a user (To) or in a
// conversation (a private chat or a group). SHA256 is the file's hex
// digest; FileSHA256 computes it.
type OfferRequest struct {
	To, Conversation  string
	Name, ContentType string
	Size              uint64
	SHA256            string
	// ClientKey makes the offer idempotent (empty: OfferFile picks one).
	// OfferFile re-sends with it after a lost connection or a timeout, and
	// the server answers a repeat with the first offer.
	ClientKey string
}

// OfferFile offers a file; then Upload sends its bytes. When the outcome
// is unknown (connection lost, timeout) it asks again with the same client
// key, so one call never makes two files.
func (c *Client) OfferFile(ctx context.Context, r OfferRequest) (*FileOffer, error) {
	if r.ClientKey == "" {
		r.ClientKey = newClientKey()
	}
	req := &parleyv1.OfferFileRequest{Conversation: r.Conversation, ToUsername: r.To, Name: r.Name, Size: r.Size,
		ContentType: r.ContentType, Sha256: r.SHA256, ClientKey: r.ClientKey}
	var err error
	for attempt := 1; attempt <= maxSendAttempts; attempt++ {
		var reply *parleyv1.Frame
		reply, err = c.do(ctx, &parleyv1.Frame{Body: &parleyv1.Frame_OfferFile{OfferFile: req}})
		if err == nil {
			if reply.GetFileOffer() == nil {
				return nil, fmt.Errorf("%w: expected FileOffer, got %T", ErrProtocol, reply.GetBody())
			}
			return fileOfferFromWire(reply.GetFileOffer()), nil
		}
		if ctx.Err() != nil || !sendRetryable(err) {
			return nil, err
		}
		c.log.Warn("parley: offer outcome unknown; retrying with the same key", "attempt", attempt, "err", err)
		if !errors.Is(err, ErrConnectionLost) {
			select {
			case <-time.After(sendRetryPause):
			case <-ctx.Done():
				return nil, err
			}
		}
	}
	return nil, err
}

// AnswerFile accepts or rejects a file offered to you in a private chat.
func (c *Client) AnswerFile(ctx context.Context, fileID string, accept bool) error {
	reply, err := c.do(ctx, &parleyv1.Frame{Body: &parleyv1.Frame_AnswerFile{AnswerFile: &parleyv1.AnswerFileRequest{FileId: fileID, Accept: accept}}})
	if err != nil {
		return err
	}
	if reply.GetOk() == nil {
		return fmt.Errorf("%w: expected Ok, got %T", ErrProtocol, reply.GetBody())
	}
	return nil
}

// Files lists all of a conversation's files (a group's shelf), or with ""
// the offers you have not answered, newest first, fetching every page.
func (c *Client) Files(ctx context.Context, conversation string) ([]*FileInfo, error) {
	var all []*FileInfo
	after := ""
	for {
		files, more, err := c.FilesPage(ctx, conversation, after, 0)
		if err != nil {
			return nil, err
		}
		all = append(all, files...)
		if !more || len(files) == 0 {
			return all, nil
		}
		after = files[len(files)-1].ID
	}
}

// FilesPage lists one page of Files: up to limit files (0: the server's
// default, 50) after the file with id after ("" for the newest), and
// whether more follow.
func (c *Client) FilesPage(ctx context.Context, conversation, after string, limit int) ([]*FileInfo, bool, error) {
	reply, err := c.do(ctx, &parleyv1.Frame{Body: &parleyv1.Frame_Files{Files: &parleyv1.FilesRequest{
		Conversation: conversation, AfterFileId: after, Limit: uint32(max(0, limit))}}})
	if err != nil {
		return nil, false, err
	}
	r := reply.GetFilesReply()
	if r == nil {
		return nil, false, fmt.Errorf("%w: expected FilesReply, got %T", ErrProtocol, reply.GetBody())
	}
	files := make([]*FileInfo, 0, len(r.GetFiles()))
	for _, f := range r.GetFiles() {
		files = append(files, fileOrEmpty(f))
	}
	return files, r.GetMore(), nil
}

// DownloadURL asks for a download URL (with a scoped, expiring token) for
// a file; the FileDownload's file tells its size, state and SHA-256.
func (c *Client) DownloadURL(ctx context.Context, fileID string) (*FileDownload, error) {
	reply, err := c.do(ctx, &parleyv1.Frame{Body: &parleyv1.Frame_FileDownload{FileDownload: &parleyv1.FileDownloadRequest{FileId: fileID}}})
	if err != nil {
		return nil, err
	}
	if reply.GetFileDownloadReply() == nil {
		return nil, fmt.Errorf("%w: expected FileDownload, got %T", ErrProtocol, reply.GetBody())
	}
	return fileDownloadFromWire(reply.GetFileDownloadReply()), nil
}

// FileSHA256 returns the hex SHA-256 of what r reads.
func FileSHA256(r io.Reader) (string, error) {
	h := sha256.New()
	if _, err := io.Copy(h, r); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// HTTPError is a file endpoint's error answer.
type HTTPError struct {
	Status     int
	Message    string
	RetryAfter time.Duration // from Retry-After, when the server sent one
}

func (e *HTTPError) Error() string { return fmt.Sprintf("http %d: %s", e.Status, e.Message) }

// ErrChecksum: the bytes do not match the file's SHA-256 (tus 460 on
// upload, the CHECKSUM_MISMATCH error, a downloaded file whose digest
// differs). It is ErrChecksumMismatch.
var ErrChecksum = ErrChecksumMismatch

func httpErr(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	msg := strings.TrimSpace(string(b))
	if resp.StatusCode == 460 {
		return fmt.Errorf("%w: %s", ErrChecksum, msg)
	}
	e := &HTTPError{Status: resp.StatusCode, Message: msg}
	if secs, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && secs >= 0 {
		e.RetryAfter = time.Duration(secs) * time.Second
	}
	return e
}

// UploadOptions tune Upload.
type UploadOptions struct {
	// Progress, if set, is called with the bytes the server has
	// confirmed so far and after each chunk written.
	Progress func(sent, total uint64)
	// ChunkSize bounds one PATCH request (0: the whole rest in one); a
	// failed request is resumed from the server's offset.
	ChunkSize int64
	// Retries is how many failed requests in a row are resumed before
	// giving up (0: 8), with pauses doubling from 400 ms up to 10 s: about
	// 45 s in all, enough for a gateway or MinIO restart.
	Retries int
	// HTTPClient (nil: a default client).
	HTTPClient *http.Client
}

// Upload sends a file's bytes for an offer, resuming after any failure from
// the offset the server reports (HEAD), so at most one part is sent twice.
// src must read the whole file from its start at offset 0.
func (c *Client) Upload(ctx context.Context, offer *FileOffer, src io.ReaderAt, o UploadOptions) error {
	target := c.HTTPBase() + offer.UploadPath
	var size uint64
	if offer.File != nil {
		size = offer.File.Size
	}
	hc := o.HTTPClient
	if hc == nil {
		hc = http.DefaultClient
	}
	retries := o.Retries
	if retries == 0 {
		retries = 8
	}
	failures := 0
	for {
		offset, err := c.uploadOffset(ctx, hc, target)
		if err == nil {
			if o.Progress != nil {
				o.Progress(offset, size)
			}
			if offset >= size {
				return nil
			}
			n := int64(size - offset)
			if o.ChunkSize > 0 {
				n = min(n, o.ChunkSize)
			}
			err = c.patch(ctx, hc, target, offset, io.NewSectionReader(src, int64(offset), n), n, size, o.Progress)
			if err == nil {
				failures = 0
				continue
			}
		}
		var he *HTTPError
		switch {
		case errors.Is(err, ErrChecksum), ctx.Err() != nil:
			return err
		case errors.As(err, &he) && he.Status != http.StatusConflict && he.Status < 500:
			return err // not worth retrying: forbidden, gone, too large, ...
		case errors.As(err, &he) && he.Status == http.StatusServiceUnavailable && he.RetryAfter > 0:
			// The gateway is busy (-max-uploads): wait as asked, for as
			// long as ctx allows; that is not a failure of the upload.
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(he.RetryAfter):
			}
			continue
		}
		failures++
		if failures > retries {
			return fmt.Errorf("parley: upload failed %d times: %w", failures, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(min(200*time.Millisecond<<failures, 10*time.Second)):
		}
	}
}

func (c *Client) bearer() string {
	c.adoptNewestToken()
	if s := c.Session(); s != nil {
		return "Bearer " + s.Token
	}
	return ""
}

func (c *Client) uploadOffset(ctx context.Context, hc *http.Client, url string) (uint64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, url, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Tus-Resumable", "1.0.0")
	req.Header.Set("Authorization", c.bearer())
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, &HTTPError{Status: resp.StatusCode, Message: resp.Status}
	}
	return strconv.ParseUint(resp.Header.Get("Upload-Offset"), 10, 64)
}

func (c *Client) patch(ctx context.Context, hc *http.Client, url string, offset uint64, body io.Reader, n int64, size uint64, progress func(uint64, uint64)) error {
	if progress != nil {
		body = &progressReader{r: body, done: offset, total: size, fn: progress}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPatch, url, body)
	if err != nil {
		return err
	}
	req.ContentLength = n
	req.Header.Set("Tus-Resumable", "1.0.0")
	req.Header.Set("Content-Type", "application/offset+octet-stream")
	req.Header.Set("Upload-Offset", strconv.FormatUint(offset, 10))
	req.Header.Set("Authorization", c.bearer())
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		return httpErr(resp)
	}
	return nil
}

type progressReader struct {
	r           io.Reader
	done, total uint64
	fn          func(uint64, uint64)
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.done += uint64(n)
	p.fn(p.done, p.total)
	return n, err
}

// DownloadTo downloads a file into path, resuming from the bytes already
// in it (Range), and checks the whole file's SHA-256 at the end: on a
// mismatch the file is removed and ErrChecksum returned. progress may be
// nil. A file still uploading is followed as it arrives when the server
// offers that (a live transfer), else DownloadTo waits until the upload is
// complete (or ctx ends).
func (c *Client) DownloadTo(ctx context.Context, fileID, path string, progress func(done, total uint64)) (*FileInfo, error) {
	for {
		info, err := c.downloadTo(ctx, fileID, path, progress)
		var he *HTTPError
		if !errors.As(err, &he) || he.Status != http.StatusConflict {
			return info, err
		}
		// Still uploading, and not live: wait as the server asks.
		wait := min(max(he.RetryAfter, 200*time.Millisecond), 5*time.Second)
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for the upload to finish: %w", ctx.Err())
		case <-time.After(wait):
		}
	}
}

func (c *Client) downloadTo(ctx context.Context, fileID, path string, progress func(done, total uint64)) (*FileInfo, error) {
	dl, err := c.DownloadURL(ctx, fileID)
	if err != nil {
		return nil, err
	}
	info := dl.File
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	have, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return nil, err
	}
	if uint64(have) > info.Size {
		if err := f.Truncate(0); err != nil {
			return nil, err
		}
		have, _ = f.Seek(0, io.SeekStart)
	}
	if uint64(have) < info.Size {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.HTTPBase()+dl.Path, nil)
		if err != nil {
			return nil, err
		}
		if have > 0 {
			req.Header.Set("Range", "bytes="+strconv.FormatInt(have, 10)+"-")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		switch {
		case have > 0 && resp.StatusCode == http.StatusPartialContent:
		case resp.StatusCode == http.StatusOK:
			if _, err := f.Seek(0, io.SeekStart); err != nil {
				return nil, err
			}
			if err := f.Truncate(0); err != nil {
				return nil, err
			}
			have = 0
		default:
			return nil, httpErr(resp)
		}
		var body io.Reader = resp.Body
		if progress != nil {
			body = &progressReader{r: body, done: uint64(have), total: info.Size, fn: progress}
		}
		if _, err := io.Copy(f, body); err != nil {
			return nil, fmt.Errorf("download interrupted (resume by calling again): %w", err)
		}
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	sum, err := FileSHA256(f)
	if err != nil {
		return nil, err
	}
	if sum != info.SHA256 {
		f.Close()
		_ = os.Remove(path)
		return nil, fmt.Errorf("%w: got %s, want %s", ErrChecksum, sum, info.SHA256)
	}
	return info, nil
}
