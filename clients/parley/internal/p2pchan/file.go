package p2pchan

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/parleychat/parley/protocol/filename"
	"github.com/parleychat/parley/protocol/parleyv1"
)

const copyBuf = 64 << 10

// FileOptions describe a file to send.
type FileOptions struct {
	// TransferID names the transfer (1-64 printable characters, NewID):
	// send again with the same id to resume a transfer that was cut.
	TransferID string
	// Name is the file's name for the receiver (sanitised as §18.1 says).
	Name      string
	MediaType string
	// SHA256 of the whole file; nil: SendFile reads the file once to
	// compute it.
	SHA256 []byte
	// Progress, if set, is told the bytes the receiver holds, from the
	// offset it resumed at to the size.
	Progress func(done, total int64)
}

// SendFilePath sends the file at path (Name defaults to its base name).
func (c *Channel) SendFilePath(ctx context.Context, path string, o FileOptions) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if o.Name == "" {
		o.Name = filepath.Base(path)
	}
	return c.SendFile(ctx, f, st.Size(), o)
}

// SendFile sends size bytes of r on a stream of their own (§20.6) and
// returns when the receiver checked them: nil, ErrFileCorrupt (the SHA-256
// did not match; the receiver dropped the bytes), a *RejectedError,
// ErrFileAborted, or ctx's error. A connection lost mid-way is not an
// error: the transfer is offered again on the next connection and goes on
// from the bytes the receiver kept. r must give the same bytes each time.
func (c *Channel) SendFile(ctx context.Context, r io.ReaderAt, size int64, o FileOptions) error {
	if err := checkID("transfer id", o.TransferID); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if size < 0 || size > maxFileSize {
		return fmt.Errorf("%w: size %d", ErrInvalid, size)
	}
	if err := checkLabel("media type", o.MediaType, maxMediaType); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	sum := o.SHA256
	if sum == nil {
		h := sha256.New()
		if _, err := io.Copy(h, io.NewSectionReader(r, 0, size)); err != nil {
			return err
		}
		sum = h.Sum(nil)
	} else if len(sum) != sha256.Size {
		return fmt.Errorf("%w: a SHA-256 is 32 bytes", ErrInvalid)
	}
	offer := &parleyv1.DirectFileOffer{
		TransferId: o.TransferID,
		Name:       filename.Sanitize(o.Name),
		Size:       uint64(size),
		Sha256:     sum,
		MediaType:  o.MediaType,
	}
	var last *session
	for {
		s, err := c.waitSession(ctx, last)
		if err != nil {
			return err
		}
		err = s.sendFile(ctx, r, offer, o.Progress)
		switch {
		case err == nil:
			return nil
		case ctx.Err() != nil:
			return ctx.Err()
		case c.ctx.Err() != nil:
			return c.Err()
		case !isConnErr(err):
			return err // an answer (rejected, corrupt, aborted) or a local error
		}
		c.log.Info("p2p file transfer cut, resuming on the next connection", "transfer_id", o.TransferID, "err", err)
		last = s
	}
}

// sendFile is one attempt: offer, answer, bytes, done.
func (s *session) sendFile(ctx context.Context, r io.ReaderAt, offer *parleyv1.DirectFileOffer, progress func(int64, int64)) error {
	st, err := s.conn.OpenStreamSync(ctx)
	if err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() {
		st.CancelWrite(streamCanceled)
		st.CancelRead(streamCanceled)
	})
	defer stop()
	size := int64(offer.GetSize())
	if err := WriteFrame(st, &parleyv1.DirectFrame{Body: &parleyv1.DirectFrame_FileOffer{FileOffer: offer}}); err != nil {
		return s.fileErr(err)
	}
	f, err := ReadFrame(st)
	if err != nil {
		return s.fileErr(err)
	}
	ans := f.GetFileAnswer()
	if ans == nil {
		return s.fileViolation(st, violation("%s answers a file offer", kind(f)))
	}
	if !ans.GetAccept() {
		st.CancelRead(streamRejected)
		st.Close()
		return &RejectedError{Reason: peerText(ans.GetReason())}
	}
	off := ans.GetOffset()
	if off > offer.GetSize() {
		return s.fileViolation(st, violation("file answer offset %d beyond the size %d", off, size))
	}
	if progress != nil {
		progress(int64(off), size)
	}
	sec := io.NewSectionReader(r, int64(off), size-int64(off))
	buf := make([]byte, copyBuf)
	done := int64(off)
	for {
		n, rerr := sec.Read(buf)
		if n > 0 {
			if _, err := st.Write(buf[:n]); err != nil {
				return s.fileErr(err)
			}
			done += int64(n)
			if progress != nil {
				progress(done, size)
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			st.CancelWrite(streamCanceled)
			st.CancelRead(streamCanceled)
			return fmt.Errorf("reading the file: %w", rerr)
		}
	}
	if done != size {
		st.CancelWrite(streamCanceled)
		st.CancelRead(streamCanceled)
		return fmt.Errorf("reading the file: %w", io.ErrUnexpectedEOF)
	}
	if err := st.Close(); err != nil {
		return s.fileErr(err)
	}
	f, err = ReadFrame(st)
	if err != nil {
		return s.fileErr(err)
	}
	fd := f.GetFileDone()
	if fd == nil {
		return s.fileViolation(st, violation("%s ends a file transfer", kind(f)))
	}
	if !fd.GetOk() {
		return fmt.Errorf("%w (%s)", ErrFileCorrupt, peerText(fd.GetError()))
	}
	return nil
}

// fileErr classifies an error on a file stream: the connection's end
// (returned as is: the caller resumes on the next one), the peer's reset
// (ErrFileAborted) or a protocol error.
func (s *session) fileErr(err error) error {
	if s.connGone(err) {
		return err
	}
	var se *quic.StreamError
	if errors.As(err, &se) && se.Remote {
		return fmt.Errorf("%w (the peer's code %d)", ErrFileAborted, se.ErrorCode)
	}
	switch {
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		err = violation("the file stream ended without an answer")
	case errors.Is(err, ErrFrameTooLarge):
		err = violation("file stream: %w", err)
	}
	if errors.Is(err, ErrProtocol) {
		s.c.violate(err)
	}
	return err
}

func (s *session) fileViolation(st *quic.Stream, err error) error {
	st.CancelWrite(streamCanceled)
	st.CancelRead(streamCanceled)
	s.c.violate(err)
	return err
}

// FileOffer is an incoming file, as offered (§20.6).
type FileOffer struct {
	TransferID string
	Name       string // sanitised (protocol/filename): safe as a base name
	Size       int64
	SHA256     []byte
	MediaType  string
}

// FileDecision is what Config.OnFile answers.
type FileDecision struct {
	Accept bool
	Reason string // when rejecting, for the sender
	// Dir is the folder the file goes to. The bytes collect in a partial
	// file there (PartPath) until the whole file's SHA-256 matches; then it
	// takes the offered name, or "name (1).ext", ... when that is taken:
	// nothing there is overwritten. A cut transfer offered again (same
	// TransferID) resumes when the answer names the same Dir.
	Dir string
	// Progress, if set, is told the bytes held, from the resumed offset.
	Progress func(received, total int64)
	// Done, if set, is told how this attempt ended: the file's path, or
	// ErrFileCorrupt (bytes dropped), ErrInterrupted (partial kept for a
	// resume) or another error.
	Done func(path string, err error)
}

// completedFile remembers a transfer this channel finished, so that the
// sender's re-offer (its DirectFileDone was lost with a connection) is
// answered at once instead of sending the file again.
type completedFile struct {
	size uint64
	sum  []byte
}

// PartPath is where an incoming transfer's bytes collect in dir:
// the offered name, a hash of the transfer id, ".part". A sidecar
// PartPath+".json" records which transfer the bytes belong to.
func PartPath(dir, name, transferID string) string {
	h := sha256.Sum256([]byte(transferID))
	return filepath.Join(dir, filename.Truncate(filename.Sanitize(name), 150)+"."+hex.EncodeToString(h[:6])+".part")
}

// receiveFile serves one file stream opened by the peer.
func (s *session) receiveFile(st *quic.Stream) {
	c := s.c
	abandon := func(code quic.StreamErrorCode) {
		st.CancelRead(code)
		st.CancelWrite(code)
	}
	st.SetReadDeadline(time.Now().Add(c.cfg.HandshakeTimeout))
	f, err := ReadFrame(st)
	st.SetReadDeadline(time.Time{})
	if err != nil {
		if errors.Is(err, ErrFrameTooLarge) {
			err = violation("file stream: %w", err)
		}
		if errors.Is(err, ErrProtocol) {
			c.violate(err)
		}
		abandon(streamCanceled)
		return
	}
	o := f.GetFileOffer()
	if o == nil {
		c.violate(violation("a file stream starts with %s, not an offer", kind(f)))
		return
	}
	if err := checkOffer(o); err != nil {
		c.violate(err)
		return
	}
	offer := FileOffer{
		TransferID: o.GetTransferId(),
		Name:       filename.Sanitize(o.GetName()),
		Size:       int64(o.GetSize()),
		SHA256:     o.GetSha256(),
		MediaType:  o.GetMediaType(),
	}
	answer := func(a *parleyv1.DirectFileAnswer) error {
		return WriteFrame(st, &parleyv1.DirectFrame{Body: &parleyv1.DirectFrame_FileAnswer{FileAnswer: a}})
	}
	finish := func(ok bool, msg string) {
		WriteFrame(st, &parleyv1.DirectFrame{Body: &parleyv1.DirectFrame_FileDone{FileDone: &parleyv1.DirectFileDone{Ok: ok, Error: msg}}})
		st.Close()
	}

	ctx, cancel := context.WithCancel(s.conn.Context())
	defer cancel()
	unlock, err := c.lockTransfer(ctx, offer.TransferID)
	if err != nil {
		abandon(streamCanceled)
		return
	}
	defer unlock()

	if c.alreadyReceived(o) {
		if answer(&parleyv1.DirectFileAnswer{Accept: true, Offset: o.GetSize()}) != nil {
			return
		}
		if err := expectEOF(st); err != nil {
			if !s.connGone(err) {
				c.violate(violation("bytes beyond a file's end: %v", err))
			}
			return
		}
		finish(true, "")
		return
	}

	var dec FileDecision
	if c.cfg.OnFile != nil {
		dec = c.cfg.OnFile(ctx, offer)
	} else {
		dec.Reason = "this device does not take files"
	}
	if !dec.Accept {
		answer(&parleyv1.DirectFileAnswer{Accept: false, Reason: truncate(dec.Reason, 256)})
		st.CancelRead(streamRejected)
		st.Close()
		return
	}
	doneCB := func(path string, err error) {
		if dec.Done != nil {
			dec.Done(path, err)
		}
	}
	p, err := openPartial(dec.Dir, offer)
	if err != nil {
		answer(&parleyv1.DirectFileAnswer{Accept: false, Reason: "the receiver cannot store the file"})
		st.CancelRead(streamFailed)
		st.Close()
		doneCB("", err)
		return
	}
	if err := answer(&parleyv1.DirectFileAnswer{Accept: true, Offset: uint64(p.offset)}); err != nil {
		p.close()
		doneCB("", fmt.Errorf("%w: %v", ErrInterrupted, err))
		return
	}
	if dec.Progress != nil {
		dec.Progress(p.offset, offer.Size)
	}
	err = p.receive(st, offer.Size, dec.Progress)
	switch {
	case errors.Is(err, errShort), errors.Is(err, errLong):
		p.close()
		abandon(streamCanceled)
		c.violate(violation("file %q: %v", offer.TransferID, err))
		doneCB("", err)
		return
	case errors.Is(err, errWrite):
		p.close()
		abandon(streamFailed)
		doneCB("", err)
		return
	case err != nil: // the stream or the connection broke: keep the bytes
		p.close()
		doneCB("", fmt.Errorf("%w: %v", ErrInterrupted, err))
		return
	}
	if !bytes.Equal(p.hash.Sum(nil), offer.SHA256) {
		p.discard()
		finish(false, "sha-256 mismatch")
		doneCB("", ErrFileCorrupt)
		return
	}
	path, err := p.place(dec.Dir, offer.Name)
	if err != nil {
		abandon(streamFailed)
		doneCB("", err)
		return
	}
	c.mu.Lock()
	c.completed[offer.TransferID] = completedFile{size: o.GetSize(), sum: o.GetSha256()}
	c.mu.Unlock()
	finish(true, "")
	doneCB(path, nil)
}

func (c *Channel) alreadyReceived(o *parleyv1.DirectFileOffer) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	done, ok := c.completed[o.GetTransferId()]
	return ok && done.size == o.GetSize() && bytes.Equal(done.sum, o.GetSha256())
}

// lockTransfer makes a transfer id's writers take turns: a re-offer on a
// new connection waits until the old connection's writer let go.
func (c *Channel) lockTransfer(ctx context.Context, id string) (unlock func(), err error) {
	for {
		c.mu.Lock()
		busy, ok := c.transfers[id]
		if !ok {
			mine := make(chan struct{})
			c.transfers[id] = mine
			c.mu.Unlock()
			return func() {
				c.mu.Lock()
				delete(c.transfers, id)
				c.mu.Unlock()
				close(mine)
			}, nil
		}
		c.mu.Unlock()
		select {
		case <-busy:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func expectEOF(r io.Reader) error {
	var b [1]byte
	n, err := r.Read(b[:])
	for n == 0 && err == nil {
		n, err = r.Read(b[:])
	}
	if n > 0 {
		return errLong
	}
	if err == io.EOF {
		return nil
	}
	return err
}

var (
	errShort = errors.New("the file stream ended before the file did")
	errLong  = errors.New("the file stream carries more bytes than the file")
	errWrite = errors.New("p2pchan: storing the file")
)

// partial is an incoming file's bytes so far, with their running hash.
type partial struct {
	file   *os.File
	path   string
	meta   string
	offset int64
	hash   hash.Hash
}

// partMeta is the sidecar: the bytes in the .part belong to this transfer.
type partMeta struct {
	TransferID string `json:"transfer_id"`
	Name       string `json:"name"`
	Size       int64  `json:"size"`
	SHA256     string `json:"sha256"`
}

// openPartial opens the transfer's partial file in dir, resuming it when
// its sidecar names the same transfer (id, size and SHA-256), else
// starting it afresh. The bytes held are hashed again, so a partial that
// changed on disk fails the final check instead of passing unnoticed.
func openPartial(dir string, o FileOffer) (*partial, error) {
	st, err := os.Stat(dir)
	if err != nil {
		return nil, err
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("%s is not a folder", dir)
	}
	p := &partial{path: PartPath(dir, o.Name, o.TransferID), hash: sha256.New()}
	p.meta = p.path + ".json"
	want := partMeta{TransferID: o.TransferID, Name: o.Name, Size: o.Size, SHA256: hex.EncodeToString(o.SHA256)}
	var have partMeta
	if b, err := os.ReadFile(p.meta); err == nil && json.Unmarshal(b, &have) == nil && have == want {
		if f, err := os.OpenFile(p.path, os.O_RDWR, 0); err == nil {
			if fi, err := f.Stat(); err == nil && fi.Size() <= o.Size {
				if _, err := io.Copy(p.hash, io.NewSectionReader(f, 0, fi.Size())); err == nil {
					if _, err := f.Seek(fi.Size(), io.SeekStart); err == nil {
						p.file, p.offset = f, fi.Size()
						return p, nil
					}
				}
			}
			f.Close()
			p.hash.Reset()
		}
	}
	if err := writeMeta(p.meta, want); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(p.path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		os.Remove(p.meta)
		return nil, err
	}
	p.file = f
	return p, nil
}

func writeMeta(path string, m partMeta) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// receive appends the stream's bytes up to size, then expects its end.
func (p *partial) receive(r io.Reader, size int64, progress func(int64, int64)) error {
	buf := make([]byte, copyBuf)
	for p.offset < size {
		n, err := r.Read(buf[:min(int64(len(buf)), size-p.offset)])
		if n > 0 {
			if _, werr := p.file.Write(buf[:n]); werr != nil {
				return fmt.Errorf("%w: %v", errWrite, werr)
			}
			p.hash.Write(buf[:n])
			p.offset += int64(n)
			if progress != nil {
				progress(p.offset, size)
			}
		}
		if err == io.EOF {
			if p.offset < size {
				return errShort
			}
			return nil
		}
		if err != nil {
			return err
		}
	}
	return expectEOF(r)
}

func (p *partial) close() { p.file.Close() }

func (p *partial) discard() {
	p.file.Close()
	os.Remove(p.path)
	os.Remove(p.meta)
}

// place moves the finished file into dir under name, or "name (1).ext",
// "name (2).ext", ... when taken: it never overwrites (as the SDK's
// downloads do). It returns the path used.
func (p *partial) place(dir, name string) (string, error) {
	if err := p.file.Sync(); err != nil {
		p.file.Close()
		return "", fmt.Errorf("%w: %v", errWrite, err)
	}
	if err := p.file.Close(); err != nil {
		return "", fmt.Errorf("%w: %v", errWrite, err)
	}
	ext := filepath.Ext(name)
	stem := strings.TrimSuffix(name, ext)
	if stem == "" {
		stem, ext = name, ""
	}
	for i := range 1000 {
		cand := name
		if i > 0 {
			cand = fmt.Sprintf("%s (%d)%s", stem, i, ext)
		}
		dst := filepath.Join(dir, cand)
		// A hard link fails when dst exists, so nothing is overwritten
		// even if another program creates the name meanwhile.
		err := os.Link(p.path, dst)
		if err == nil {
			os.Remove(p.path)
			os.Remove(p.meta)
			return dst, nil
		}
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		// No hard links on this file system: rename if the name is free.
		if _, statErr := os.Lstat(dst); errors.Is(statErr, fs.ErrNotExist) {
			if err := os.Rename(p.path, dst); err != nil {
				return "", err
			}
			os.Remove(p.meta)
			return dst, nil
		}
	}
	return "", fmt.Errorf("%w: no free name for %s in %s", errWrite, name, dir)
}
