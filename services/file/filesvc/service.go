// Package filesvc is Parley's file service. It owns every file's state:
// offers in private chats and groups, the recipient's answer, the upload's
// progress (parts, offset, running SHA-256), downloads' authorization and
// retention. It never touches file bytes itself: gateways stream them
// between clients (tus uploads, ranged downloads over HTTP) and storage
// under the upload the file service created and leased to them, and report
// each stored part back here (docs/architecture.md, "Files").
//
// State lives in the JetStream KV bucket subject.BucketFiles, one record per
// file (internalv1.FileRecord, key "f.<id>"), changed only by
// compare-and-set, so any number of replicas may run; index keys
// "c.<conversation>.<id>" (a conversation's files, a group's shelf) and
// "u.<user>.<id>" (offers a user has not answered) make the lists cheap.
//
// A file offer is also a message: the service asks messaging
// (subject.MsgPostFile) to post it in the conversation, so it shows in the
// chat, in history and, for an offline recipient, at the next login.
package filesvc

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	"github.com/parleychat/parley/libs/identity"
	"github.com/parleychat/parley/libs/objstore"
	"github.com/parleychat/parley/libs/proto/internalv1"
	"github.com/parleychat/parley/libs/ratelimit"
	"github.com/parleychat/parley/libs/service"
	"github.com/parleychat/parley/libs/subject"
	"github.com/parleychat/parley/protocol/parleyv1"
)

// MaxFileSizeLimit is the largest -file-max-size accepted (1 TiB): parts
// stay below ~210 MiB, so a transfer's memory stays bounded.
const MaxFileSizeLimit = 1 << 40

// Storage is what the service needs from the object store (objstore.Dir
// or objstore.MinIO): creating, completing and aborting multipart uploads
// and deleting objects. Gateways write the parts.
type Storage interface {
	NewUpload(ctx context.Context, key string) (string, error)
	Complete(ctx context.Context, key, uploadID string, parts []objstore.Part) (objstore.Info, error)
	Abort(ctx context.Context, key, uploadID string) error
	ListUploads(ctx context.Context, prefix string) ([]objstore.Upload, error)
	Delete(ctx context.Context, key string) error
	Get(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error)
	List(ctx context.Context, prefix string) ([]objstore.Info, error)
}

// ErrNoStorage is New's error without an object store.
var ErrNoStorage = errors.New("file: storage required")

// Service is one file service replica.
type Service struct {
	cfg     Config
	nc      *nats.Conn
	st      Storage
	log     *slog.Logger
	now     func() time.Time
	metrics *metrics
	run     *service.Runner

	// Set by open before the handlers are subscribed, never changed after.
	kv     jetstream.KeyValue
	offers jetstream.KeyValue // client keys of recent offers
	signer signer

	thumbs     chan struct{}      // bounds the pictures decoded at once
	offerLimit *ratelimit.Limiter // offers per user (-file-offer-rate)
}

type metrics struct {
	offered   prometheus.Counter
	completed *prometheus.CounterVec // result: ok, checksum_mismatch, storage_error
	swept     *prometheus.CounterVec // what: upload, file, orphan, record
	bytes     prometheus.Counter
}

// New validates cfg and deps and registers metrics; it contacts nothing.
func New(cfg Config, deps service.Deps, st Storage) (*Service, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	deps, err := deps.WithDefaults()
	if err != nil {
		return nil, fmt.Errorf("file: %w", err)
	}
	if st == nil {
		return nil, ErrNoStorage
	}
	m := &metrics{
		offered: prometheus.NewCounter(prometheus.CounterOpts{Name: "parley_file_offers_total", Help: "Files offered."}),
		completed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "parley_file_uploads_finished_total",
			Help: "Uploads that reached their size, by result (ok, checksum_mismatch, storage_error)."}, []string{"result"}),
		swept: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "parley_file_swept_total",
			Help: "What retention removed: expired uploads, expired files, orphaned multipart uploads, old records."}, []string{"what"}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{Name: "parley_file_bytes_committed_total", Help: "Upload bytes committed."}),
	}
	for _, c := range []prometheus.Collector{m.offered, m.completed, m.swept, m.bytes} {
		if err := deps.Registry.Register(c); err != nil {
			return nil, fmt.Errorf("file: metrics: %w", err)
		}
	}
	s := &Service{cfg: cfg, nc: deps.NC, st: st, log: deps.Log, now: deps.Clock, metrics: m,
		thumbs:     make(chan struct{}, thumbsAtOnce),
		offerLimit: ratelimit.New(cfg.OfferRate, time.Minute, cfg.OfferRate, deps.Clock)}
	s.run, err = service.NewRunner(service.Spec{
		Name: "file", Queue: subject.QueueFile, Workers: cfg.Workers, Open: s.open,
		Endpoints: []service.Endpoint{
			{Subject: subject.FileOffer, Handler: s.handleOffer},
			{Subject: subject.FileAnswer, Handler: s.handleAnswer},
			{Subject: subject.FileDownload, Handler: s.handleDownload},
			{Subject: subject.FileList, Handler: s.handleList},
			{Subject: subject.FileUploadBegin, Handler: s.handleBegin},
			{Subject: subject.FileUploadCommit, Handler: s.handleCommit},
			{Subject: subject.FileUploadStatus, Handler: s.handleStatus},
			{Subject: subject.FileTerminate, Handler: s.handleTerminate},
			{Subject: subject.FileOpen, Handler: s.handleOpen},
		},
		Loops: []func(context.Context){s.sweepLoop},
		Attrs: []any{"max_file_size", cfg.MaxFileSize, "file_ttl", cfg.FileTTL, "upload_ttl", cfg.UploadTTL},
	}, deps)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// Ready reports whether this replica serves (the /readyz check).
func (s *Service) Ready() error { return s.run.Ready() }

// Run opens the buckets (retrying while JetStream is unavailable), serves
// requests and sweeps expired files until ctx ends, then drains (libs/service
// Runner).
func (s *Service) Run(ctx context.Context) error { return s.run.Run(ctx) }

// open opens the buckets and the download-token key; the Runner retries it
// until it succeeds.
func (s *Service) open(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	js, err := jetstream.New(s.nc)
	if err != nil {
		return err
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: subject.BucketFiles, Description: "Parley files: records and indexes",
		History: 1, Replicas: s.cfg.KVReplicas, Storage: jetstream.FileStorage,
	})
	if err != nil {
		return fmt.Errorf("bucket %s: %w", subject.BucketFiles, err)
	}
	offers, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: subject.BucketFileOffers, Description: "Parley files: recent offers by client key (idempotent offers)",
		History: 1, Replicas: s.cfg.KVReplicas, Storage: jetstream.FileStorage, TTL: offerKeyTTL,
	})
	if err != nil {
		return fmt.Errorf("bucket %s: %w", subject.BucketFileOffers, err)
	}
	key := []byte(s.cfg.TokenKey)
	if len(key) == 0 {
		if key, err = s.sharedKey(ctx, js); err != nil {
			return err
		}
	}
	s.kv, s.offers, s.signer = kv, offers, signer{key: key}
	return nil
}

// sharedKey returns the download-token key kept in KV, creating it once:
// the first replica's Create wins and every replica reads that one.
func (s *Service) sharedKey(ctx context.Context, js jetstream.JetStream) ([]byte, error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: subject.BucketFileKeys, Description: "Parley file service: download token key",
		History: 1, Replicas: s.cfg.KVReplicas, Storage: jetstream.FileStorage,
	})
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", subject.BucketFileKeys, err)
	}
	fresh := make([]byte, 32)
	_, _ = rand.Read(fresh)
	if _, err := kv.Create(ctx, "token", fresh); err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
		return nil, fmt.Errorf("create token key: %w", err)
	}
	e, err := kv.Get(ctx, "token")
	if err != nil {
		return nil, fmt.Errorf("read token key: %w", err)
	}
	return e.Value(), nil
}

// Records.

func recordKey(id string) string { return "f." + id }

// convIndexKey indexes a file under its conversation; conversation ids are
// dot-separated tokens (dm.<a>.<b>, group.<id>: protocol/convid), the file id
// is the last one.
func convIndexKey(conv, id string) string { return "c." + conv + "." + id }
func userIndexKey(uid, id string) string  { return "u." + uid + "." + id }

var errRecordMissing = errors.New("file record missing")

func (s *Service) get(ctx context.Context, id string) (*internalv1.FileRecord, uint64, error) {
	if !validFileID(id) {
		return nil, 0, errNoFile
	}
	e, err := s.kv.Get(ctx, recordKey(id))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, errNoFile
	}
	if err != nil {
		return nil, 0, fmt.Errorf("read file record: %w", err)
	}
	rec := new(internalv1.FileRecord)
	if err := proto.Unmarshal(e.Value(), rec); err != nil {
		return nil, 0, fmt.Errorf("decode file record %s: %w", id, err)
	}
	return rec, e.Revision(), nil
}

// update applies change to the record of id and saves it by
// compare-and-set, retrying from a fresh read when another replica wrote
// meanwhile. change returns errors as they should reach the client; it may
// be called more than once.
func (s *Service) update(ctx context.Context, id string, change func(*internalv1.FileRecord) error) (*internalv1.FileRecord, error) {
	for range 8 {
		rec, rev, err := s.get(ctx, id)
		if err != nil {
			return nil, err
		}
		if err := change(rec); err != nil {
			return nil, err
		}
		data, err := proto.Marshal(rec)
		if err != nil {
			return nil, err
		}
		_, err = s.kv.Update(ctx, recordKey(id), data, rev)
		if err == nil {
			return rec, nil
		}
		var apiErr *jetstream.APIError
		if !errors.As(err, &apiErr) || apiErr.ErrorCode != jetstream.JSErrCodeStreamWrongLastSequence {
			return nil, fmt.Errorf("save file record: %w", err)
		}
	}
	return nil, errBusy
}

func (s *Service) create(ctx context.Context, rec *internalv1.FileRecord) error {
	data, err := proto.Marshal(rec)
	if err != nil {
		return err
	}
	_, err = s.kv.Create(ctx, recordKey(rec.Info.FileId), data)
	return err
}

// publish sends a FileEvent to each user (best effort: clients also list
// files and see the state in FileInfo).
func (s *Service) publish(kind parleyv1.FileEvent_Kind, info *parleyv1.FileInfo, by identity.Caller, users ...string) {
	ev := &parleyv1.FileEvent{Kind: kind, File: info, UserId: by.UserID, Username: by.Username}
	data, err := proto.Marshal(ev)
	if err != nil {
		return
	}
	seen := map[string]bool{}
	for _, u := range users {
		if u == "" || seen[u] {
			continue
		}
		seen[u] = true
		if err := s.nc.Publish(subject.UserFileEvents(u), data); err != nil {
			s.log.Warn("file event not published", "user_id", u, "err", err)
		}
	}
}

// announce publishes that an upload's record changed (a commit, its
// completion or failure, its removal) on subject.FileProgress, best
// effort: live downloads waiting for the uploader ask again at once
// instead of polling (they still ask now and then, for a lost event).
func (s *Service) announce(rec *internalv1.FileRecord) {
	ev := &internalv1.FileProgress{FileId: rec.Info.FileId, Uploaded: rec.Offset, State: rec.Info.State}
	if rec.Info.State == parleyv1.FileState_FILE_STATE_AVAILABLE {
		ev.Uploaded = rec.Info.Size
	}
	data, err := proto.Marshal(ev)
	if err != nil {
		return
	}
	if err := s.nc.Publish(subject.FileProgress(rec.Info.FileId), data); err != nil {
		s.log.Warn("file progress not published", "file_id", rec.Info.FileId, "err", err)
	}
}

// everyone returns the sender and members of a file.
func everyone(rec *internalv1.FileRecord) []string {
	return append([]string{rec.Info.SenderId}, rec.Members...)
}

// newHashState is the marshalled state of an empty SHA-256.
func newHashState() []byte {
	b, _ := sha256.New().(encoding.BinaryMarshaler).MarshalBinary()
	return b
}

// sumHashState finishes a marshalled SHA-256 state.
func sumHashState(state []byte) (string, error) {
	h := sha256.New()
	if err := h.(encoding.BinaryUnmarshaler).UnmarshalBinary(state); err != nil {
		return "", err
	}
	return fmt.Sprintf("%x", h.Sum(nil)), nil
}

func ms(t time.Time) int64 { return t.UnixMilli() }
