package files

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/parleychat/parley/libs/objkey"
	"github.com/parleychat/parley/libs/objstore"
	"github.com/parleychat/parley/libs/proto/internalv1"
	"github.com/parleychat/parley/libs/subject"
	"github.com/parleychat/parley/protocol/parleyv1"
)

// DefaultLiveFallback is how often a live download that has served every
// byte stored so far asks the file service again when no progress event
// came: events are best effort (core NATS), so one may be lost.
const DefaultLiveFallback = 5 * time.Second

// liveReader is the body of a download that started while its (live)
// upload runs: it reads the readable copies of the committed parts, then
// the tail object, then waits for the uploader: for the file service's
// progress event (subject.FileProgress, published when the upload's record
// changes) or, failing one, LiveFallback; then it asks the file service
// again (which also checks again that the reader may read). When the
// upload is complete it continues from the finished object; when it fails
// or is removed, or nothing arrives for the idle timeout, the body ends
// with an error, so the client sees a short download it can resume.
type liveReader struct {
	h        *Handler
	ctx      context.Context
	cancel   context.CancelFunc
	req      *internalv1.FileOpenRequest
	hdr      nats.Header
	open     *internalv1.FileOpenReply
	pos, end int64 // next byte to serve; end of the range (exclusive)

	// progress has a value when an event arrived since the last look
	// (events coalesce); sub delivers them until Close (nil: none, the
	// fallback alone).
	progress chan struct{}
	sub      *nats.Subscription

	cur    io.ReadCloser // the object being read, up to curEnd
	curEnd int64
	idle   time.Time // when the last byte arrived (or the read began)
	misses int       // consecutive objects gone before they were read
}

var (
	errLiveFailed = errors.New("the upload failed or was removed")
	errLiveIdle   = errors.New("the upload stopped moving")
)

func (h *Handler) newLiveReader(id string, req *internalv1.FileOpenRequest, hdr nats.Header, open *internalv1.FileOpenReply, start, length int64) *liveReader {
	// The body is read after the handler returned: fasthttp reuses the
	// memory behind the request's strings (Fiber hands them out
	// zero-copy), so keep copies.
	req = &internalv1.FileOpenRequest{FileId: strings.Clone(req.GetFileId()), Token: strings.Clone(req.GetToken())}
	h2 := nats.Header{}
	for k, vs := range hdr {
		for _, v := range vs {
			h2.Add(strings.Clone(k), strings.Clone(v))
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &liveReader{h: h, ctx: ctx, cancel: cancel, req: req, hdr: h2, open: open,
		pos: start, end: start + length, idle: time.Now(), progress: make(chan struct{}, 1)}
	sub, err := h.o.NC.Subscribe(subject.FileProgress(req.GetFileId()), func(*nats.Msg) { r.signal() })
	if err != nil {
		h.o.Log.Warn("live download: no progress events; asking every fallback period", "file_id", req.GetFileId(), "err", err)
	}
	r.sub = sub
	// What changed between the handler's open and the subscription has
	// no event: the first wait asks again at once.
	r.signal()
	return r
}

func (r *liveReader) signal() {
	select {
	case r.progress <- struct{}{}:
	default:
	}
}

func (r *liveReader) Read(p []byte) (int, error) {
	for {
		if r.pos >= r.end {
			return 0, io.EOF
		}
		if r.cur != nil {
			n, err := r.cur.Read(p[:min(int64(len(p)), r.curEnd-r.pos)])
			r.pos += int64(n)
			if n > 0 {
				r.idle = time.Now()
				return n, nil
			}
			r.closeCur()
			if err != nil && !errors.Is(err, io.EOF) {
				// Deleted under us (a tail replaced, copies removed at
				// the end): ask where the bytes are now.
				if err := r.refresh(); err != nil {
					return 0, err
				}
			}
			continue
		}
		if err := r.next(); err != nil {
			return 0, err
		}
	}
}

// next opens the object holding r.pos, waiting for it if needed.
func (r *liveReader) next() error {
	for {
		f := r.open.GetFile()
		switch f.GetState() {
		case parleyv1.FileState_FILE_STATE_AVAILABLE:
			return r.openObject(r.open.GetKey(), r.pos, r.end-r.pos, r.end)
		case parleyv1.FileState_FILE_STATE_UPLOADING:
		default:
			return errLiveFailed
		}
		if key, off, n, ok := r.locate(); ok {
			err := r.openObject(key, off, n, r.pos+n)
			if !errors.Is(err, objstore.ErrNotFound) {
				return err
			}
			if r.misses++; r.misses > 50 {
				return fmt.Errorf("live download: stored bytes keep vanishing: %w", err)
			}
		} else if idle := time.Since(r.idle); idle > r.h.o.IdleTimeout {
			return errLiveIdle
		} else {
			t := time.NewTimer(min(r.h.o.LiveFallback, r.h.o.IdleTimeout-idle+time.Millisecond))
			select {
			case <-r.ctx.Done():
				t.Stop()
				return r.ctx.Err()
			case <-r.progress:
			case <-t.C:
			}
			t.Stop()
		}
		if err := r.refresh(); err != nil {
			return err
		}
	}
}

// locate finds the stored object holding r.pos in the live upload: a
// part's readable copy or the tail.
func (r *liveReader) locate() (key string, off, n int64, ok bool) {
	var at int64
	for _, p := range r.open.GetParts() {
		size := int64(p.GetSize())
		if r.pos < at+size {
			off = r.pos - at
			return objkey.LivePart(r.open.GetLivePrefix(), p.GetNumber()), off, min(size-off, r.end-r.pos), true
		}
		at += size
	}
	if t := int64(r.open.GetTailSize()); t > 0 && r.pos < at+t {
		off = r.pos - at
		return r.open.GetTailKey(), off, min(t-off, r.end-r.pos), true
	}
	return "", 0, 0, false
}

func (r *liveReader) openObject(key string, off, n, end int64) error {
	rc, err := r.h.o.Storage.Get(r.ctx, key, off, n)
	if err != nil {
		return err
	}
	r.misses = 0
	r.cur, r.curEnd = rc, end
	return nil
}

// refresh asks the file service again where the upload stands.
func (r *liveReader) refresh() error {
	open := new(internalv1.FileOpenReply)
	if err := r.h.call(r.ctx, subject.FileOpen, r.hdr, r.req, open); err != nil {
		return fmt.Errorf("live download: %w", err)
	}
	r.open = open
	return nil
}

func (r *liveReader) closeCur() {
	if r.cur != nil {
		_ = r.cur.Close()
		r.cur = nil
	}
}

// Close ends the download (fasthttp calls it when the body is sent or the
// client left).
func (r *liveReader) Close() error {
	if r.sub != nil {
		_ = r.sub.Unsubscribe()
	}
	r.cancel()
	r.closeCur()
	return nil
}
