package files

import (
	"bytes"
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"hash"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/nats-io/nats.go"

	"github.com/parleychat/parley/gateway/internal/reqbody"
	"github.com/parleychat/parley/libs/objkey"
	"github.com/parleychat/parley/libs/objstore"
	"github.com/parleychat/parley/libs/proto/internalv1"
	"github.com/parleychat/parley/libs/subject"
	"github.com/parleychat/parley/protocol/errcode"
	"github.com/parleychat/parley/protocol/parleyv1"
)

// slotWait is how long a PATCH waits for a free upload slot
// (-max-uploads) before it is answered 503.
const slotWait = 3 * time.Second

// commitRetryFor bounds how long a commit is retried while no file service
// answers.
const commitRetryFor = 20 * time.Second

// errTooMuch: the body goes past the upload's length.
var errTooMuch = errors.New("the body goes past Upload-Length")

// upload is one PATCH in progress.
type upload struct {
	h    *Handler
	ctx  context.Context
	hdr  nats.Header
	st   *internalv1.UploadState
	sum  hash.Hash // running SHA-256 of the whole file
	next uint32    // next part number this writer may use
	// base is the file offset of buf[0]; buf holds the bytes after the
	// last whole part (the old tail first).
	base    uint64
	buf     []byte
	pending []*internalv1.FilePart // stored, not yet committed (checksum mode)
	// Whole parts go to storage in the background, up to storeDepth at
	// once, while the next is read from the client; they are committed in
	// order, each after its predecessor. jobs are those in flight, oldest
	// first; free holds the buffers of finished ones. mu guards st, which
	// commits replace; pending is touched by one storer at a time (in
	// commit order) and by the reader only when nothing is in flight.
	mu   sync.Mutex
	jobs []*storeJob
	free [][]byte
	// Constant for the request, so storers need not read st.
	key, uploadID, livePrefix string
}

// storeDepth is how many parts of one upload are stored at once: MinIO
// takes one part PUT after another on a connection, and two in flight
// keep it busy while the gateway reads the next part. A PATCH holds up
// to storeDepth+1 part buffers.
const storeDepth = 2

// storeJob is one part being stored and committed.
type storeJob struct {
	done chan struct{} // closed when stored and committed (or failed)
	err  error         // set before done is closed
	data []byte
}

// patch is tus PATCH: append the body at Upload-Offset.
func (h *Handler) patch(c *fiber.Ctx) error {
	h.tusHeaders(c)
	if c.Get("Tus-Resumable") != tusVersion {
		return h.fail(c, http.StatusPreconditionFailed, "Tus-Resumable: 1.0.0 required")
	}
	if c.Get(fiber.HeaderContentType) != "application/offset+octet-stream" {
		return h.fail(c, http.StatusUnsupportedMediaType, "Content-Type must be application/offset+octet-stream")
	}
	offset, err := strconv.ParseUint(c.Get("Upload-Offset"), 10, 64)
	if err != nil {
		return h.fail(c, http.StatusBadRequest, "Upload-Offset must be a non-negative integer")
	}
	var check hash.Hash
	var want []byte
	if v := c.Get("Upload-Checksum"); v != "" {
		if check, want, err = newChecksum(v); err != nil {
			return h.fail(c, http.StatusBadRequest, err.Error())
		}
	}
	who, hdr, err := h.identity(c)
	if err != nil {
		return h.failErr(c, err)
	}
	select {
	case <-h.draining:
		c.Set(fiber.HeaderRetryAfter, "1")
		c.Set(fiber.HeaderConnection, "close")
		return h.fail(c, http.StatusServiceUnavailable, "UNAVAILABLE: this gateway is shutting down; resume through another")
	default:
	}
	uid := who.UserID
	if !h.takeUserSlot(uid) {
		h.o.Log.Warn("upload refused: -max-uploads-per-user reached", "user_id", uid, "max_uploads_per_user", h.o.MaxUploadsPerUser)
		c.Set(fiber.HeaderRetryAfter, "5")
		return h.fail(c, http.StatusServiceUnavailable, fmt.Sprintf("UNAVAILABLE: you are already writing %d uploads through this gateway; retry after a few seconds", h.o.MaxUploadsPerUser))
	}
	defer h.freeUserSlot(uid)
	if h.writing != nil {
		// Every part buffer taken: wait a little for one (the body waits
		// in the socket meanwhile), then refuse. Memory stays bounded;
		// tus clients retry a 503 after Retry-After.
		t := time.NewTimer(slotWait)
		select {
		case h.writing <- struct{}{}:
			t.Stop()
			defer func() { <-h.writing }()
		case <-t.C:
			h.o.Log.Warn("upload refused: -max-uploads reached", "max_uploads", cap(h.writing))
			c.Set(fiber.HeaderRetryAfter, "5")
			return h.fail(c, http.StatusServiceUnavailable, "UNAVAILABLE: this gateway is writing as many uploads as it may; retry after a few seconds")
		}
	}
	ctx := c.UserContext()
	st := new(internalv1.UploadState)
	if err := h.call(ctx, subject.FileUploadBegin, hdr, &internalv1.UploadBeginRequest{FileId: c.Params("id")}, st); err != nil {
		return h.failErr(c, err)
	}
	if offset != st.GetOffset() {
		c.Set("Upload-Offset", strconv.FormatUint(st.GetOffset(), 10))
		return h.fail(c, http.StatusConflict, fmt.Sprintf("Upload-Offset %d does not match the upload's offset %d", offset, st.GetOffset()))
	}
	if st.GetState() != parleyv1.FileState_FILE_STATE_UPLOADING {
		// Complete already: nothing more to take.
		c.Set("Upload-Offset", strconv.FormatUint(st.GetOffset(), 10))
		if n := c.Request().Header.ContentLength(); n > 0 {
			return h.fail(c, http.StatusRequestEntityTooLarge, "the upload is complete")
		}
		return c.SendStatus(http.StatusNoContent)
	}
	if n := c.Request().Header.ContentLength(); n > 0 && offset+uint64(n) > st.GetSize() {
		return h.fail(c, http.StatusRequestEntityTooLarge, "the body goes past Upload-Length")
	}
	sum, err := restoreHash(st.GetHashState())
	if err != nil {
		return h.fail(c, http.StatusInternalServerError, "corrupt upload state: "+err.Error())
	}
	u := &upload{h: h, ctx: ctx, hdr: hdr, st: st, sum: sum, next: st.GetNextPart(),
		base: st.GetOffset() - st.GetTailSize(), buf: getBuf(int(st.GetPartSize())),
		key: st.GetKey(), uploadID: st.GetUploadId(), livePrefix: st.GetLivePrefix()}
	defer func() {
		_ = u.wait() // storers still hold buffers
		putBuf(u.buf)
		for _, b := range u.free {
			putBuf(b)
		}
	}()
	if st.GetTailSize() > 0 {
		if err := u.loadTail(); err != nil {
			if errors.Is(err, objstore.ErrUnavailable) {
				return h.storageDown(c)
			}
			return h.fail(c, http.StatusServiceUnavailable, "reading the stored tail: "+err.Error())
		}
	}
	bodyErr := u.copy(h.newBodyReader(c), check)
	// The gateway may end a body itself: when it drains, or when the body
	// arrives too slowly. What was read is kept then (unless it must match
	// a checksum), and the answer says where it stands.
	var stopped string
	switch {
	case errors.Is(bodyErr, errDraining):
		stopped, bodyErr = "UNAVAILABLE: this gateway is shutting down; resume through another", nil
	case errors.Is(bodyErr, errTooSlow):
		stopped, bodyErr = fmt.Sprintf("UNAVAILABLE: the body arrived slower than %d bytes/s; what arrived is kept: resume from Upload-Offset", h.o.MinRate), nil
	}
	switch {
	case errors.Is(bodyErr, errTooMuch):
		return h.fail(c, http.StatusRequestEntityTooLarge, "the body goes past Upload-Length")
	case bodyErr != nil && !isClientGone(bodyErr):
		return h.failErr(c, bodyErr)
	}
	// stop answers an upload the gateway stopped with where it stands.
	stop := func() error {
		_ = u.wait() // u.st is settled once no part is in flight
		c.Set("Upload-Offset", strconv.FormatUint(u.st.GetOffset(), 10))
		c.Set(fiber.HeaderRetryAfter, "1")
		c.Set(fiber.HeaderConnection, "close")
		return h.fail(c, http.StatusServiceUnavailable, stopped)
	}
	// broken answers a body that broke off (a cut connection, which will
	// not read it, or a malformed chunked body, which may).
	broken := func() error {
		_ = u.wait()
		c.Set("Upload-Offset", strconv.FormatUint(u.st.GetOffset(), 10))
		return h.fail(c, http.StatusBadRequest, "the request body broke off; resume from Upload-Offset")
	}
	if check != nil {
		if stopped != "" {
			return stop() // a cut-off body cannot be checked: nothing of it is kept
		}
		if bodyErr != nil {
			return broken() // the same
		}
		if subtle.ConstantTimeCompare(check.Sum(nil), want) != 1 {
			return h.fail(c, 460, "CHECKSUM_MISMATCH: the body does not match Upload-Checksum; nothing was stored")
		}
	}
	if err := u.finish(); err != nil {
		return h.failErr(c, err)
	}
	if bodyErr != nil {
		h.o.Log.Info("upload cut off; kept what arrived", "file_id", st.GetFileId(), "offset", u.st.GetOffset(), "err", bodyErr)
		return broken()
	}
	if stopped != "" {
		h.o.Log.Info("upload stopped by the gateway; kept what arrived", "file_id", st.GetFileId(), "offset", u.st.GetOffset(), "why", stopped)
		return stop()
	}
	c.Set("Upload-Offset", strconv.FormatUint(u.st.GetOffset(), 10))
	return c.SendStatus(http.StatusNoContent)
}

// loadTail reads the stored tail into buf.
func (u *upload) loadTail() error {
	r, err := u.h.o.Storage.Get(u.ctx, u.st.GetTailKey(), 0, int64(u.st.GetTailSize()))
	if err != nil {
		return err
	}
	defer r.Close()
	n, err := io.ReadFull(r, u.buf[:u.st.GetTailSize()])
	u.buf = u.buf[:n]
	return err
}

// copy reads the body into whole parts, storing (and, without a checksum,
// committing) each as it fills. It returns the body's read error (nil at
// its end), errTooMuch, or a storage or service error.
func (u *upload) copy(body io.Reader, check hash.Hash) error {
	size, partSize := u.st.GetSize(), int(u.st.GetPartSize())
	for {
		select {
		case <-u.h.draining:
			return errDraining
		default:
		}
		n, err := io.ReadFull(body, u.buf[len(u.buf):partSize])
		if n > 0 {
			fresh := u.buf[len(u.buf) : len(u.buf)+n]
			if u.base+uint64(len(u.buf)+n) > size {
				return errTooMuch
			}
			u.sum.Write(fresh)
			if check != nil {
				check.Write(fresh)
			}
			u.buf = u.buf[:len(u.buf)+n]
		}
		if len(u.buf) == partSize {
			if perr := u.storePart(check == nil); perr != nil {
				return perr
			}
		}
		switch {
		case err == nil:
		case isClientGone(err), errors.Is(err, errTooSlow):
			return err
		case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
			// The body ended (ReadFull reports a short last read as
			// ErrUnexpectedEOF); a cut connection is a clientGone from
			// the bodyReader.
			return nil
		default:
			return clientGone{err}
		}
	}
}

// storePart hands buf, a whole part (or the file's last), to a background
// storer and goes on with a fresh buffer, so the next part is read from
// the client while earlier ones are written to storage (at most
// storeDepth at once). If commit, each storer records its part at the
// file service once it is stored and its predecessor is recorded.
func (u *upload) storePart(commit bool) error {
	if len(u.jobs) >= storeDepth {
		if err := u.waitOldest(); err != nil {
			return err
		}
	}
	if u.next >= u.partLimit() {
		// Out of part numbers: once the parts in flight are recorded, a
		// commit (even empty) extends the range.
		if err := u.wait(); err != nil {
			return err
		}
		if err := u.commit(nil, u.st.GetTailKey(), u.st.GetTailSize(), u.st.GetOffset(), u.st.GetHashState()); err != nil {
			return err
		}
		if u.next >= u.partLimit() {
			return errcode.New(parleyv1.ErrorCode_ERROR_CODE_FILE_TOO_LARGE, "no part numbers left for this upload")
		}
	}
	number, data := u.next, u.buf
	u.next++
	u.base += uint64(len(data))
	offset, hashState := u.base, marshalHash(u.sum) // the sum covers exactly the bytes up to offset
	if n := len(u.free); n > 0 {
		u.buf, u.free = u.free[n-1][:0], u.free[:n-1]
	} else {
		u.buf = getBuf(cap(data))
	}
	var prev *storeJob
	if n := len(u.jobs); n > 0 {
		prev = u.jobs[n-1]
	}
	j := &storeJob{done: make(chan struct{}), data: data}
	u.jobs = append(u.jobs, j)
	go func() {
		defer close(j.done)
		j.err = u.put(number, data, commit, offset, hashState, prev)
	}()
	return nil
}

func (u *upload) partLimit() uint32 {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.st.GetPartLimit()
}

// waitOldest waits for the oldest part in flight and returns its error.
func (u *upload) waitOldest() error {
	j := u.jobs[0]
	<-j.done
	u.jobs = u.jobs[1:]
	u.free = append(u.free, j.data[:0])
	return j.err
}

// wait waits for every part in flight and returns the first error.
func (u *upload) wait() error {
	var first error
	for len(u.jobs) > 0 {
		if err := u.waitOldest(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// put stores data as part number (with its readable copy, for a live
// file, at the same time), then, after prev is done, commits it or keeps
// it pending.
func (u *upload) put(number uint32, data []byte, commit bool, offset uint64, hashState []byte, prev *storeJob) error {
	var copyDone chan struct{}
	if u.livePrefix != "" {
		// A readable copy for a download running alongside. Without it
		// that download waits for the upload to finish; the upload goes on.
		copyDone = make(chan struct{})
		go func() {
			defer close(copyDone)
			key := objkey.LivePart(u.livePrefix, number)
			if _, err := u.h.o.Storage.Put(u.ctx, key, bytes.NewReader(data), int64(len(data)), "application/octet-stream"); err != nil {
				u.h.o.Log.Warn("storage: put live part", "key", key, "err", err)
			}
		}()
	}
	p, err := u.h.o.Storage.PutPart(u.ctx, u.key, u.uploadID, int(number), bytes.NewReader(data), int64(len(data)))
	if copyDone != nil {
		<-copyDone
	}
	if prev != nil {
		<-prev.done
		if prev.err != nil {
			return prev.err // nothing after a failed part may be recorded
		}
	}
	if err != nil {
		if errors.Is(err, objstore.ErrUploadNotFound) {
			return errcode.New(parleyv1.ErrorCode_ERROR_CODE_NOT_FOUND, "the upload was removed")
		}
		u.h.o.Log.Error("storage: put part", "key", u.key, "part", number, "err", err)
		return errcode.New(parleyv1.ErrorCode_ERROR_CODE_UNAVAILABLE, "file storage failed; resume the upload")
	}
	part := &internalv1.FilePart{Number: uint32(p.Number), Etag: p.ETag, Size: uint64(p.Size)}
	if !commit {
		u.pending = append(u.pending, part)
		return nil
	}
	return u.commit([]*internalv1.FilePart{part}, "", 0, offset, hashState)
}

// finish stores what is left in buf: the file's last part when the body
// reached its size, else a tail object; then commits it with any parts
// still pending.
func (u *upload) finish() error {
	if err := u.wait(); err != nil {
		return err
	}
	end := u.base + uint64(len(u.buf))
	switch {
	case end == u.st.GetOffset() && len(u.pending) == 0:
		// Nothing new; also when the last whole part, committed as it
		// was stored, completed the file (a size of whole parts): the
		// file service takes no more commits then.
		return nil
	case end == u.st.GetSize():
		if len(u.buf) > 0 {
			if err := u.storePart(false); err != nil {
				return err
			}
			if err := u.wait(); err != nil {
				return err
			}
		}
		return u.commitPending(end, "", 0)
	case len(u.buf) == 0:
		return u.commitPending(end, "", 0)
	}
	key := objkey.Tail(u.st.GetFileId(), end)
	if _, err := u.h.o.Storage.Put(context.WithoutCancel(u.ctx), key, bytes.NewReader(u.buf), int64(len(u.buf)), "application/octet-stream"); err != nil {
		u.h.o.Log.Error("storage: put tail", "key", key, "err", err)
		return errcode.New(parleyv1.ErrorCode_ERROR_CODE_UNAVAILABLE, "file storage failed; resume the upload")
	}
	return u.commitPending(end, key, uint64(len(u.buf)))
}

func (u *upload) commitPending(offset uint64, tailKey string, tailSize uint64) error {
	if err := u.commit(u.pending, tailKey, tailSize, offset, marshalHash(u.sum)); err != nil {
		return err
	}
	u.pending = nil
	return nil
}

// commit records parts, tail and the hash state (covering exactly offset
// bytes) at the file service, and takes the new state (offset, lease, part
// range).
// Commits are never concurrent (storers commit in order, the reader only
// when none is in flight); mu orders their st with the reader's reads.
func (u *upload) commit(parts []*internalv1.FilePart, tailKey string, tailSize, offset uint64, hashState []byte) error {
	u.mu.Lock()
	cur := u.st
	u.mu.Unlock()
	st := new(internalv1.UploadState)
	ctx := context.WithoutCancel(u.ctx) // record what is stored even if the client left
	req := &internalv1.UploadCommitRequest{
		FileId: cur.GetFileId(), Lease: cur.GetLease(), Parts: parts, TailKey: tailKey, TailSize: tailSize,
		HashState: hashState, Offset: offset, FromOffset: cur.GetOffset(),
	}
	// While no file service answers (replicas restarting: a rollout, a
	// crash) the commit is retried for a while rather than losing the
	// parts read. A retry of a commit that did apply (its answer was
	// lost with the replica that saved it) is answered as the first
	// time, so the parts read since are kept too.
	for wait, deadline := 100*time.Millisecond, time.Now().Add(commitRetryFor); ; wait = min(2*wait, time.Second) {
		err := u.h.call(ctx, subject.FileUploadCommit, u.hdr, req, st)
		if err == nil {
			break
		}
		switch errcode.Code(err) {
		case parleyv1.ErrorCode_ERROR_CODE_UNAVAILABLE, parleyv1.ErrorCode_ERROR_CODE_TIMEOUT:
			if time.Now().Add(wait).Before(deadline) {
				u.h.o.Log.Warn("upload commit failed; retrying", "file_id", req.FileId, "offset", offset, "err", err)
				time.Sleep(wait)
				continue
			}
		}
		return err
	}
	if st.Lease == "" {
		st.Lease = cur.GetLease()
	}
	u.mu.Lock()
	u.st = st
	u.mu.Unlock()
	return nil
}

// clientGone wraps a body read error: the client went away mid-request.
type clientGone struct{ err error }

func (e clientGone) Error() string { return "client went away: " + e.err.Error() }
func (e clientGone) Unwrap() error { return e.err }

func isClientGone(err error) bool {
	var cg clientGone
	return errors.As(err, &cg)
}

// errTooSlow ends a body that arrives below the minimum rate.
var errTooSlow = errors.New("the body arrives too slowly")

// bodyReader reads a PATCH body (through reqbody, which stops at its end).
// Each read must bring something within the idle timeout: a transfer may
// take as long as it keeps moving. With a minimum rate, each window must
// also bring its quota (MinRate × RateWindow bytes) by its deadline, the
// next window starting when the quota is in: a body trickling in is ended
// (errTooSlow) and frees its slot, while one moving at any rate above the
// floor, however slow, is never interrupted.
type bodyReader struct {
	body  *reqbody.Body
	conn  net.Conn
	idle  time.Duration
	quota int // bytes due per window; 0: no floor
	win   time.Duration
	due   time.Time // when the current window's quota must be in
	got   int       // bytes of the current window
}

func (h *Handler) newBodyReader(c *fiber.Ctx) *bodyReader {
	r := &bodyReader{body: reqbody.Of(c), conn: c.Context().Conn(), idle: h.o.IdleTimeout}
	if h.o.MinRate > 0 {
		r.win = h.o.RateWindow
		r.quota = max(1, int(int64(h.o.MinRate)*int64(r.win)/int64(time.Second)))
		r.due = time.Now().Add(r.win)
	}
	return r
}

// Read returns a clientGone for a body the connection broke off, and
// errTooSlow for one below the floor.
func (r *bodyReader) Read(p []byte) (int, error) {
	deadline := time.Now().Add(r.idle)
	if r.quota > 0 && r.due.Before(deadline) {
		deadline = r.due
	}
	_ = r.conn.SetReadDeadline(deadline)
	n, err := r.body.Read(p)
	if r.quota > 0 {
		if r.got += n; r.got >= r.quota {
			r.got, r.due = 0, time.Now().Add(r.win)
		}
	}
	if err == nil || errors.Is(err, io.EOF) {
		return n, err
	}
	var ne net.Error
	if r.quota > 0 && errors.As(err, &ne) && ne.Timeout() && !time.Now().Before(r.due) {
		return n, errTooSlow
	}
	return n, clientGone{err}
}

// takeUserSlot counts one more PATCH for uid, waiting up to slotWait while
// uid already has MaxUploadsPerUser; false: none freed in time.
func (h *Handler) takeUserSlot(uid string) bool {
	if h.o.MaxUploadsPerUser <= 0 {
		return true
	}
	t := time.NewTimer(slotWait)
	defer t.Stop()
	for {
		h.mu.Lock()
		if h.writers[uid] < h.o.MaxUploadsPerUser {
			h.writers[uid]++
			h.mu.Unlock()
			return true
		}
		freed := h.freed
		h.mu.Unlock()
		select {
		case <-freed:
		case <-t.C:
			return false
		}
	}
}

func (h *Handler) freeUserSlot(uid string) {
	if h.o.MaxUploadsPerUser <= 0 {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.writers[uid]--; h.writers[uid] <= 0 {
		delete(h.writers, uid)
	}
	close(h.freed)
	h.freed = make(chan struct{})
}
