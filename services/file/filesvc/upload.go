package filesvc

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"

	"github.com/parleychat/parley/libs/identity"
	"github.com/parleychat/parley/libs/objstore"
	"github.com/parleychat/parley/libs/proto/internalv1"
	"github.com/parleychat/parley/protocol/parleyv1"
)

// Uploads. One PATCH at a time writes a file: handleBegin gives the writer
// a lease (taking it from an earlier writer, whose gateway may have died
// or whose client was cut off) and a range of part numbers of its own;
// the writer stores parts in storage and commits them here with the new
// offset and SHA-256 state. A commit under a lost lease, or from another
// offset than the record's, is refused with CONFLICT, so two writers can
// never both advance a file, and part numbers are never reused, so a
// superseded writer cannot overwrite a committed part either.

// partRange is how many part numbers a writer gets at a time.
const partRange = 32

func (s *Service) uploadState(rec *internalv1.FileRecord) *internalv1.UploadState {
	return &internalv1.UploadState{
		FileId: rec.Info.FileId, Size: rec.Info.Size, Offset: rec.Offset, Key: rec.Key, UploadId: rec.UploadId,
		PartSize: rec.PartSize, TailKey: rec.TailKey, TailSize: rec.TailSize, HashState: rec.HashState,
		ExpiresAtUnixMs: rec.Info.ExpiresAtUnixMs, State: rec.Info.State, LivePrefix: rec.LivePrefix,
	}
}

// checkUploader allows only the sender: the file's recipients are told it
// is not theirs to upload, anyone else that it does not exist.
func checkUploader(rec *internalv1.FileRecord, me identity.Caller) error {
	switch {
	case rec.Info.SenderId == me.UserID:
		return nil
	case slices.Contains(rec.Members, me.UserID):
		return errNotYours
	}
	return errNoFile
}

// uploadable reports the error for a record that takes no more bytes.
func uploadable(rec *internalv1.FileRecord, now time.Time) error {
	switch rec.Info.State {
	case parleyv1.FileState_FILE_STATE_UPLOADING:
		if now.UnixMilli() >= rec.Info.ExpiresAtUnixMs {
			return errExpired
		}
		return nil
	case parleyv1.FileState_FILE_STATE_FAILED:
		return errFailed
	case parleyv1.FileState_FILE_STATE_EXPIRED:
		return errExpired
	}
	return nil // AVAILABLE: the caller sees offset == size
}

func (s *Service) handleBegin(ctx context.Context, m *nats.Msg) (proto.Message, error) {
	me, err := identityOf(m)
	if err != nil {
		return nil, err
	}
	var req internalv1.UploadBeginRequest
	if err := proto.Unmarshal(m.Data, &req); err != nil {
		return nil, errMalformed
	}
	now := s.now()
	var first uint32
	rec, err := s.update(ctx, req.FileId, func(rec *internalv1.FileRecord) error {
		if err := checkUploader(rec, me); err != nil {
			return err
		}
		if err := uploadable(rec, now); err != nil {
			return err
		}
		if rec.Info.State != parleyv1.FileState_FILE_STATE_UPLOADING {
			return nil
		}
		if rec.NextPart+partRange > objstore.MaxParts+1 {
			return errTooManyParts
		}
		first = rec.NextPart
		rec.NextPart += partRange
		rec.Lease = newID("l")
		rec.LeaseUntilUnixMs = ms(now.Add(s.cfg.LeaseTTL))
		return nil
	})
	if err != nil {
		return nil, err
	}
	st := s.uploadState(rec)
	if rec.Info.State == parleyv1.FileState_FILE_STATE_UPLOADING {
		st.Lease, st.NextPart, st.PartLimit = rec.Lease, first, rec.NextPart
	}
	return st, nil
}

func (s *Service) handleStatus(ctx context.Context, m *nats.Msg) (proto.Message, error) {
	me, err := identityOf(m)
	if err != nil {
		return nil, err
	}
	var req internalv1.UploadStatusRequest
	if err := proto.Unmarshal(m.Data, &req); err != nil {
		return nil, errMalformed
	}
	rec, _, err := s.get(ctx, req.FileId)
	if err != nil {
		return nil, err
	}
	if err := checkUploader(rec, me); err != nil {
		return nil, err
	}
	if err := uploadable(rec, s.now()); err != nil {
		return nil, err
	}
	return s.uploadState(rec), nil
}

// handleCommit records parts and the new tail, hash and offset. When the
// offset reaches the size it finishes the upload: the SHA-256 of every
// byte must equal the declared one, else the file FAILED and its bytes
// are dropped; then the multipart upload is completed and the file is
// AVAILABLE.
func (s *Service) handleCommit(ctx context.Context, m *nats.Msg) (proto.Message, error) {
	me, err := identityOf(m)
	if err != nil {
		return nil, err
	}
	var req internalv1.UploadCommitRequest
	if err := proto.Unmarshal(m.Data, &req); err != nil {
		return nil, errMalformed
	}
	now := s.now()
	var oldTail string
	var added uint64
	var replayed *internalv1.FileRecord
	rec, err := s.update(ctx, req.FileId, func(rec *internalv1.FileRecord) error {
		oldTail, added = "", 0
		if err := checkUploader(rec, me); err != nil {
			return err
		}
		if applied(rec, &req) {
			replayed = rec
			return errApplied
		}
		if err := uploadable(rec, now); err != nil {
			return err
		}
		if rec.Info.State != parleyv1.FileState_FILE_STATE_UPLOADING || rec.Lease == "" || rec.Lease != req.Lease {
			return errLease
		}
		if req.FromOffset != rec.Offset {
			return errOffset
		}
		if err := checkCommit(rec, &req); err != nil {
			return err
		}
		if rec.TailKey != "" && rec.TailKey != req.TailKey {
			oldTail = rec.TailKey
		}
		added = req.Offset - rec.Offset
		rec.Parts = append(rec.Parts, req.Parts...)
		rec.TailKey, rec.TailSize, rec.HashState, rec.Offset = req.TailKey, req.TailSize, req.HashState, req.Offset
		rec.Info.Uploaded = req.Offset
		rec.LeaseUntilUnixMs = ms(now.Add(s.cfg.LeaseTTL))
		if last := lastPart(&req); last+8 >= rec.NextPart && rec.NextPart+partRange <= objstore.MaxParts+1 {
			rec.NextPart += partRange
		}
		return nil
	})
	if errors.Is(err, errApplied) {
		// A retry of a commit whose answer was lost (this replica died
		// after saving it, or the answer timed out): it is answered as
		// the first time, so the gateway keeps the parts it read since.
		s.log.Info("upload commit repeated; already recorded", "file_id", req.FileId, "offset", req.Offset)
		st := s.uploadState(replayed)
		if replayed.Info.State == parleyv1.FileState_FILE_STATE_UPLOADING {
			st.Lease, st.PartLimit = replayed.Lease, replayed.NextPart
		}
		return st, nil
	}
	if err != nil {
		return nil, err
	}
	s.metrics.bytes.Add(float64(added))
	if oldTail != "" {
		if err := s.st.Delete(context.WithoutCancel(ctx), oldTail); err != nil {
			s.log.Warn("storage: delete old tail", "key", oldTail, "err", err)
		}
	}
	if rec.Offset == rec.Info.Size {
		return s.finish(ctx, rec, me)
	}
	s.announce(rec)
	st := s.uploadState(rec)
	st.Lease, st.PartLimit = rec.Lease, rec.NextPart
	return st, nil
}

// errApplied stops an update: the commit is already recorded.
var errApplied = errors.New("commit already applied")

// applied tells whether req is a commit rec already records: the same
// lease (or, once the upload finished with it, the file complete), the
// offset it asked for, its tail, and its parts as the last recorded ones.
// A commit moves the offset, so any other commit from req's FromOffset
// would be refused as out of date.
func applied(rec *internalv1.FileRecord, req *internalv1.UploadCommitRequest) bool {
	if req.FromOffset == rec.Offset || req.Offset != rec.Offset || req.Offset <= req.FromOffset {
		return false
	}
	switch rec.Info.State {
	case parleyv1.FileState_FILE_STATE_UPLOADING:
		if rec.Lease == "" || rec.Lease != req.Lease || rec.TailKey != req.TailKey {
			return false
		}
	case parleyv1.FileState_FILE_STATE_AVAILABLE:
		if rec.Offset != rec.Info.Size || req.TailKey != "" {
			return false
		}
	default:
		return false
	}
	if len(req.Parts) > len(rec.Parts) {
		return false
	}
	last := rec.Parts[len(rec.Parts)-len(req.Parts):]
	for i, p := range req.Parts {
		if last[i].Number != p.Number || last[i].Etag != p.Etag || last[i].Size != p.Size {
			return false
		}
	}
	return true
}

func lastPart(req *internalv1.UploadCommitRequest) uint32 {
	if n := len(req.Parts); n > 0 {
		return req.Parts[n-1].Number
	}
	return 0
}

// checkCommit checks that a commit adds up: parts numbered above the last
// committed one and below the numbers handed out, each a whole part but
// the file's last, and parts + tail = offset <= size.
func checkCommit(rec *internalv1.FileRecord, req *internalv1.UploadCommitRequest) error {
	var sum uint64
	prev := uint32(0)
	for _, p := range rec.Parts {
		sum += p.Size
		prev = p.Number
	}
	for i, p := range req.Parts {
		if p.Number <= prev || p.Number >= rec.NextPart || p.Etag == "" || p.Size == 0 || p.Size > rec.PartSize {
			return errBadParts
		}
		sum += p.Size
		final := i == len(req.Parts)-1 && req.TailSize == 0 && sum == rec.Info.Size
		if p.Size != rec.PartSize && !final {
			return errBadParts
		}
		prev = p.Number
	}
	if (req.TailSize == 0) != (req.TailKey == "") || req.TailSize >= rec.PartSize {
		return errBadParts
	}
	if sum+req.TailSize != req.Offset || req.Offset > rec.Info.Size || req.Offset < rec.Offset || len(req.HashState) == 0 {
		return errBadParts
	}
	if req.Offset == rec.Info.Size && req.TailSize != 0 {
		return errBadParts
	}
	return nil
}

// finish completes an upload whose every byte is committed.
func (s *Service) finish(ctx context.Context, rec *internalv1.FileRecord, me identity.Caller) (proto.Message, error) {
	id := rec.Info.FileId
	sum, err := sumHashState(rec.HashState)
	if err != nil || sum != rec.Info.Sha256 {
		s.metrics.completed.WithLabelValues("checksum_mismatch").Inc()
		s.log.Warn("upload failed: SHA-256 mismatch", "file_id", id, "declared", rec.Info.Sha256, "received", sum)
		old := proto.Clone(rec).(*internalv1.FileRecord)
		failed, uerr := s.update(ctx, id, func(r *internalv1.FileRecord) error {
			r.Info.State = parleyv1.FileState_FILE_STATE_FAILED
			r.UploadId, r.Lease, r.TailKey, r.TailSize, r.Parts, r.LivePrefix = "", "", "", 0, nil, ""
			return nil
		})
		if uerr == nil {
			s.announce(failed)
			s.credit(ctx, failed.Info.SenderId, id, failed.Info.Size)
			s.removeStorage(ctx, old)
			s.publish(parleyv1.FileEvent_KIND_FAILED, s.view(failed, failed.Info.SenderId), me, everyone(failed)...)
		}
		return nil, errFailed
	}
	parts := make([]objstore.Part, len(rec.Parts))
	for i, p := range rec.Parts {
		parts[i] = objstore.Part{Number: int(p.Number), ETag: p.Etag, Size: int64(p.Size)}
	}
	if _, err := s.st.Complete(ctx, rec.Key, rec.UploadId, parts); err != nil {
		s.metrics.completed.WithLabelValues("storage_error").Inc()
		s.log.Error("storage: complete upload", "file_id", id, "err", err)
		return nil, errStorage
	}
	ctype, thumbnail := s.picture(ctx, rec)
	now := s.now()
	done, err := s.update(ctx, id, func(r *internalv1.FileRecord) error {
		r.Info.ContentType, r.Info.Thumbnail = ctype, thumbnail
		r.Info.State = parleyv1.FileState_FILE_STATE_AVAILABLE
		r.Info.Uploaded = r.Info.Size
		r.Info.ExpiresAtUnixMs = ms(now.Add(s.cfg.FileTTL))
		r.CompletedAtUnixMs = ms(now)
		r.UploadId, r.Lease, r.HashState, r.LivePrefix = "", "", nil, ""
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.announce(done)
	s.removeLive(rec)
	s.metrics.completed.WithLabelValues("ok").Inc()
	s.log.Info("file uploaded", "file_id", id, "size", done.Info.Size, "parts", len(parts))
	for _, u := range everyone(done) {
		s.publish(parleyv1.FileEvent_KIND_AVAILABLE, s.view(done, u), me, u)
	}
	return s.uploadState(done), nil
}

// handleTerminate cancels an upload or removes a finished file (tus
// DELETE); only its sender may.
func (s *Service) handleTerminate(ctx context.Context, m *nats.Msg) (proto.Message, error) {
	me, err := identityOf(m)
	if err != nil {
		return nil, err
	}
	var req internalv1.FileTerminateRequest
	if err := proto.Unmarshal(m.Data, &req); err != nil {
		return nil, errMalformed
	}
	var old *internalv1.FileRecord
	rec, err := s.update(ctx, req.FileId, func(rec *internalv1.FileRecord) error {
		if err := checkUploader(rec, me); err != nil {
			return err
		}
		if gone(rec) {
			return errExpired
		}
		old = proto.Clone(rec).(*internalv1.FileRecord)
		markRemoved(rec)
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.announce(rec)
	s.credit(ctx, rec.Info.SenderId, rec.Info.FileId, rec.Info.Size)
	s.removeStorage(ctx, old)
	s.publish(parleyv1.FileEvent_KIND_EXPIRED, rec.Info, me, everyone(rec)...)
	s.log.Info("file removed by its sender", "file_id", req.FileId)
	return nil, nil
}
