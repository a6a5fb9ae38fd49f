package filesvc

import (
	"context"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/parleychat/parley/libs/identity"
	"github.com/parleychat/parley/libs/objkey"
	"github.com/parleychat/parley/libs/proto/internalv1"
	"github.com/parleychat/parley/protocol/parleyv1"
)

// Retention. Every -file-sweep-interval each replica walks the records:
// an upload past its deadline (-file-upload-ttl) is aborted, a finished
// file past -file-ttl is deleted, and both become EXPIRED (their senders
// and members get a FileEvent); records of removed files are purged a
// further recordGrace later, with their index keys. Then multipart uploads
// in storage that no record owns (a crash between NewUpload and the
// record) and that are older than the upload deadline are aborted
// explicitly: MinIO ignores the lifecycle rule for unfinished uploads.
// Replicas sweeping at once do no harm: every change is a compare-and-set.

// recordGrace is how long the record of a removed file stays (so clients
// see EXPIRED rather than NOT_FOUND).
const recordGrace = 7 * 24 * time.Hour

func (s *Service) sweepLoop(ctx context.Context) {
	t := time.NewTicker(s.cfg.SweepInterval)
	defer t.Stop()
	for {
		s.Sweep(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Sweep runs one retention pass now.
func (s *Service) Sweep(ctx context.Context) {
	now := s.now()
	var snap map[string]usageEntry
	if s.cfg.UserQuota > 0 {
		var err error
		if snap, err = s.usageSnapshot(ctx); err != nil {
			s.log.Warn("sweep: read quota usage", "err", err)
		}
	}
	keys, err := s.kv.ListKeysFiltered(ctx, "f.*")
	if err != nil {
		s.log.Warn("sweep: list records", "err", err)
		return
	}
	owned := map[string]bool{}    // upload ids records still own
	keep := map[string]bool{}     // objects records still own: files, tails, live prefixes
	usage := map[string]int64{}   // bytes each sender's counted files take
	recorded := map[string]bool{} // every file id with a record
	for k := range keys.Keys() {
		id := strings.TrimPrefix(k, "f.")
		recorded[id] = true
		rec, _, err := s.get(ctx, id)
		if err != nil {
			continue
		}
		s.sweepRecord(ctx, rec, now)
		if rec, _, err = s.get(ctx, id); err != nil {
			continue
		}
		if rec.UploadId != "" {
			owned[rec.UploadId] = true
		}
		if counted(rec) {
			usage[rec.Info.SenderId] += int64(rec.Info.Size)
		}
		switch rec.Info.State {
		case parleyv1.FileState_FILE_STATE_UPLOADING, parleyv1.FileState_FILE_STATE_AVAILABLE:
			keep[rec.Key] = true
			keep[rec.TailKey] = true
			keep[rec.LivePrefix] = true
		}
	}
	if snap != nil {
		s.repairUsage(ctx, snap, usage, recorded, now)
	}
	s.sweepObjects(ctx, keep, now)
	uploads, err := s.st.ListUploads(ctx, objkey.FilesPrefix)
	if err != nil {
		s.log.Warn("sweep: list uploads", "err", err)
		return
	}
	for _, u := range uploads {
		if owned[u.UploadID] || now.Sub(u.Initiated) < s.cfg.UploadTTL {
			continue
		}
		if err := s.st.Abort(ctx, u.Key, u.UploadID); err != nil {
			s.log.Warn("sweep: abort orphaned upload", "key", u.Key, "err", err)
			continue
		}
		s.metrics.swept.WithLabelValues("orphan").Inc()
		s.log.Info("sweep: aborted orphaned upload", "key", u.Key, "initiated", u.Initiated)
	}
}

// sweepObjects deletes objects no live record owns, once older than the
// upload deadline (so none is taken from an upload being finished): a
// finished file whose record is gone or expired (a delete that failed, a
// crash between completing and recording it), tails and live copies left
// behind by writers that died.
func (s *Service) sweepObjects(ctx context.Context, keep map[string]bool, now time.Time) {
	for _, prefix := range objkey.Prefixes() {
		objs, err := s.st.List(ctx, prefix)
		if err != nil {
			s.log.Warn("sweep: list objects", "prefix", prefix, "err", err)
			continue
		}
		for _, o := range objs {
			if keep[objkey.Owner(o.Key)] || now.Sub(o.ModTime) < s.cfg.UploadTTL {
				continue
			}
			if err := s.st.Delete(ctx, o.Key); err != nil {
				s.log.Warn("sweep: delete orphaned object", "key", o.Key, "err", err)
				continue
			}
			s.metrics.swept.WithLabelValues("orphan").Inc()
			s.log.Info("sweep: deleted orphaned object", "key", o.Key, "modified", o.ModTime)
		}
	}
}

func (s *Service) sweepRecord(ctx context.Context, rec *internalv1.FileRecord, now time.Time) {
	id := rec.Info.FileId
	expired := now.UnixMilli() >= rec.Info.ExpiresAtUnixMs
	switch rec.Info.State {
	case parleyv1.FileState_FILE_STATE_UPLOADING, parleyv1.FileState_FILE_STATE_AVAILABLE:
		if !expired {
			return
		}
		what := "upload"
		if rec.Info.State == parleyv1.FileState_FILE_STATE_AVAILABLE {
			what = "file"
		}
		var old *internalv1.FileRecord
		done, err := s.update(ctx, id, func(r *internalv1.FileRecord) error {
			old = nil
			if gone(r) || now.UnixMilli() < r.Info.ExpiresAtUnixMs {
				return nil
			}
			old = proto.Clone(r).(*internalv1.FileRecord)
			markRemoved(r)
			r.Info.ExpiresAtUnixMs = ms(now)
			return nil
		})
		if err != nil || old == nil {
			return
		}
		s.announce(done)
		s.credit(ctx, done.Info.SenderId, id, done.Info.Size)
		s.removeStorage(ctx, old)
		s.metrics.swept.WithLabelValues(what).Inc()
		s.log.Info("sweep: expired", "file_id", id, "what", what)
		s.publish(parleyv1.FileEvent_KIND_EXPIRED, done.Info, identity.Caller{}, everyone(done)...)
	default: // EXPIRED, FAILED: purge the record after the grace period
		since := rec.Info.ExpiresAtUnixMs
		if rec.Info.State == parleyv1.FileState_FILE_STATE_FAILED {
			since = rec.Info.CreatedAtUnixMs
		}
		if now.Sub(time.UnixMilli(since)) < recordGrace {
			return
		}
		for _, k := range append([]string{convIndexKey(rec.Info.Conversation, id)}, userKeys(rec)...) {
			_ = s.kv.Delete(ctx, k)
		}
		if err := s.kv.Delete(ctx, recordKey(id)); err == nil {
			s.metrics.swept.WithLabelValues("record").Inc()
		}
	}
}

func userKeys(rec *internalv1.FileRecord) []string {
	var ks []string
	for u := range rec.Answers {
		ks = append(ks, userIndexKey(u, rec.Info.FileId))
	}
	return ks
}
