package filesvc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/parleychat/parley/libs/proto/internalv1"
	"github.com/parleychat/parley/protocol/parleyv1"
)

// Storage quota (-file-user-quota). A user's usage is the bytes of their
// files that are uploading or available, kept in KV under "q.<user id>"
// and changed only by compare-and-set: an offer charges its size if it
// fits (QUOTA_EXCEEDED otherwise), before its record exists; a file that
// fails its SHA-256 check, is cancelled, rejected or expires, and an offer
// that fails, credits it back. A replica that dies between changing a
// record and the usage leaves the usage wrong, so Sweep recomputes every
// user's usage from the records and repairs it. An offer charged but not
// yet recorded is listed in the usage as pending (by file id), so the
// sweep counts it rather than taking it for drift; the sweep drops the
// entry once the record exists, or after pendingGrace (an offer whose
// replica died).

// pendingGrace is how long an offer may take from its charge to its record.
const pendingGrace = 10 * time.Minute

// usageRecord is the value of "q.<user id>" (JSON).
type usageRecord struct {
	Used    int64                    `json:"used"`
	Pending map[string]pendingCharge `json:"pending,omitempty"`
}

type pendingCharge struct {
	Size int64 `json:"size"`
	At   int64 `json:"at"` // unix ms of the charge
}

func quotaKey(uid string) string { return "q." + uid }

// usage reads uid's usage and its revision (0: none recorded).
func (s *Service) usage(ctx context.Context, uid string) (usageRecord, uint64, error) {
	var u usageRecord
	e, err := s.kv.Get(ctx, quotaKey(uid))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return u, 0, nil
	}
	if err != nil {
		return u, 0, fmt.Errorf("read quota usage: %w", err)
	}
	if err := json.Unmarshal(e.Value(), &u); err != nil {
		u = usageRecord{} // unreadable: the sweep writes it again
	}
	return u, e.Revision(), nil
}

// setUsage writes uid's usage if it is still at revision rev (0: absent).
func (s *Service) setUsage(ctx context.Context, uid string, u usageRecord, rev uint64) error {
	u.Used = max(u.Used, 0)
	v, err := json.Marshal(u)
	if err != nil {
		return err
	}
	if rev == 0 {
		_, err = s.kv.Create(ctx, quotaKey(uid), v)
	} else {
		_, err = s.kv.Update(ctx, quotaKey(uid), v, rev)
	}
	return err
}

// conflict reports a compare-and-set that lost to another writer.
func conflict(err error) bool {
	var apiErr *jetstream.APIError
	return errors.Is(err, jetstream.ErrKeyExists) ||
		errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence
}

// changeUsage applies change to uid's usage by compare-and-set, retrying
// from a fresh read when another replica wrote meanwhile.
func (s *Service) changeUsage(ctx context.Context, uid string, change func(*usageRecord) error) error {
	for range 8 {
		u, rev, err := s.usage(ctx, uid)
		if err != nil {
			return err
		}
		if u.Pending == nil {
			u.Pending = map[string]pendingCharge{}
		}
		if err := change(&u); err != nil {
			return err
		}
		if err := s.setUsage(ctx, uid, u, rev); !conflict(err) {
			return err
		}
	}
	return errBusy
}

// charge adds the size of file id, being offered, to uid's usage if it
// stays within the quota.
func (s *Service) charge(ctx context.Context, uid, id string, size uint64) error {
	if s.cfg.UserQuota <= 0 {
		return nil
	}
	return s.changeUsage(ctx, uid, func(u *usageRecord) error {
		if size > uint64(s.cfg.UserQuota) || u.Used+int64(size) > s.cfg.UserQuota {
			return errQuota(u.Used, s.cfg.UserQuota)
		}
		u.Used += int64(size)
		u.Pending[id] = pendingCharge{Size: int64(size), At: ms(s.now())}
		return nil
	})
}

// credit gives the size of file id back to uid (best effort: the sweep
// repairs a lost one).
func (s *Service) credit(ctx context.Context, uid, id string, size uint64) {
	if s.cfg.UserQuota <= 0 {
		return
	}
	err := s.changeUsage(context.WithoutCancel(ctx), uid, func(u *usageRecord) error {
		u.Used -= int64(size)
		delete(u.Pending, id)
		return nil
	})
	if err != nil {
		s.log.Warn("quota usage not credited; the sweep repairs it", "user_id", uid, "file_id", id, "err", err)
	}
}

// counted reports whether a record's size counts towards its sender's
// usage.
func counted(rec *internalv1.FileRecord) bool {
	st := rec.Info.GetState()
	return st == parleyv1.FileState_FILE_STATE_UPLOADING || st == parleyv1.FileState_FILE_STATE_AVAILABLE
}

// usageEntry is a usage as Sweep read it, before walking the records: a
// usage changed meanwhile (an offer, a removal) has a newer revision and
// is not overwritten.
type usageEntry struct {
	usageRecord
	rev uint64
}

func (s *Service) usageSnapshot(ctx context.Context) (map[string]usageEntry, error) {
	keys, err := s.kv.ListKeysFiltered(ctx, "q.*")
	if err != nil {
		return nil, err
	}
	snap := map[string]usageEntry{}
	for k := range keys.Keys() {
		uid := strings.TrimPrefix(k, "q.")
		u, rev, err := s.usage(ctx, uid)
		if err == nil && rev != 0 {
			snap[uid] = usageEntry{u, rev}
		}
	}
	return snap, nil
}

// repairUsage writes, wherever it differs from what snap holds, each
// user's usage as Sweep counted it from the records (bySender), plus the
// offers charged whose record did not exist yet when the records were
// listed (recorded: every record id listed).
func (s *Service) repairUsage(ctx context.Context, snap map[string]usageEntry, bySender map[string]int64, recorded map[string]bool, now time.Time) {
	users := map[string]bool{}
	for uid := range snap {
		users[uid] = true
	}
	for uid := range bySender {
		users[uid] = true
	}
	for uid := range users {
		was := snap[uid]
		want := wantUsage(was.usageRecord, bySender[uid], recorded, now)
		if want.Used == was.Used && len(want.Pending) == len(was.Pending) {
			continue
		}
		if err := s.setUsage(ctx, uid, want, was.rev); err != nil {
			if !conflict(err) {
				s.log.Warn("sweep: quota usage not repaired", "user_id", uid, "err", err)
			}
			continue
		}
		if want.Used != was.Used {
			s.log.Info("sweep: quota usage repaired", "user_id", uid, "was", was.Used, "now", want.Used)
		}
	}
}

// wantUsage is a user's usage as it should be: the bytes of their counted
// records, plus the offers charged (was.Pending) that have no record yet
// and are younger than pendingGrace; the others leave the pending list.
func wantUsage(was usageRecord, counted int64, recorded map[string]bool, now time.Time) usageRecord {
	want := usageRecord{Used: counted, Pending: map[string]pendingCharge{}}
	for id, p := range was.Pending {
		if !recorded[id] && now.Sub(time.UnixMilli(p.At)) < pendingGrace {
			want.Used += p.Size
			want.Pending[id] = p
		}
	}
	return want
}
