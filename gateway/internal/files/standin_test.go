package files_test

// Stand-ins for the auth and file services.
//
// The gateway module may not import services/file (the gateway and the
// services meet only on NATS), so these tests answer the file service's
// subjects with the small NATS responder below, on a real in-process
// nats-server, and store bytes in a real objstore.Dir. It keeps just enough
// of the file service's contract (leases, offsets, parts, tails, the
// SHA-256 check at the end, who may upload and download) for the
// handler's side to be observed; it is not the file service, whose own
// tests (services/file/filesvc) check those rules. The integration tests in
// clients/parley and tests/ run the gateway against the real one.

import (
	"context"
	"crypto/sha256"
	"encoding"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"

	"github.com/parleychat/parley/libs/objstore"
	"github.com/parleychat/parley/libs/proto/internalv1"
	"github.com/parleychat/parley/libs/rpc"
	"github.com/parleychat/parley/libs/subject"
	"github.com/parleychat/parley/protocol/errcode"
	"github.com/parleychat/parley/protocol/parleyv1"
)

// startStandInAuth answers subject.AuthVerify: "tok-<name>" is the session
// of user "u-<name>", "tok-expired" is TOKEN_EXPIRED, anything else
// TOKEN_INVALID.
func startStandInAuth(t testing.TB, nc *nats.Conn) {
	t.Helper()
	sub, err := nc.QueueSubscribe(subject.AuthVerify, subject.QueueAuth, func(m *nats.Msg) {
		var req internalv1.TokenVerifyRequest
		_ = proto.Unmarshal(m.Data, &req)
		name, ok := strings.CutPrefix(req.GetToken(), "tok-")
		switch {
		case name == "expired":
			_ = rpc.RespondError(m, errcode.New(parleyv1.ErrorCode_ERROR_CODE_TOKEN_EXPIRED, "the session token has expired"))
		case !ok || name == "":
			_ = rpc.RespondError(m, errcode.New(parleyv1.ErrorCode_ERROR_CODE_TOKEN_INVALID, "invalid session token"))
		default:
			_ = rpc.Respond(m, &internalv1.AuthReply{Session: &parleyv1.Session{
				UserId: "u-" + name, Username: name, SessionId: "s-" + name, Token: req.GetToken()}})
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
}

// standInFiles answers the file service's subjects. Every offer is a
// private file to bob ("u-bob"), whoever it names: the sender uploads,
// bob may download, anyone else is told the file does not exist (upload)
// or is not theirs (download). Download tokens are "tok-for-<name>".
type standInFiles struct {
	t     testing.TB
	nc    *nats.Conn
	store objstore.Store

	mu       sync.Mutex // guards the fields below
	partSize uint64
	live     bool // new offers are live (the recipient was online)
	n        int
	files    map[string]*standInFile
	offers   []offerCall
	calls    map[string]int     // requests received, by subject
	fail     map[string][]error // answered instead, in turn, by subject
}

type standInFile struct {
	info      *parleyv1.FileInfo
	key       string
	uploadID  string
	offset    uint64
	parts     []*internalv1.FilePart
	tailKey   string
	tailSize  uint64
	hashState []byte
	lease     string
	nextPart  uint32
	live      string
}

// offerCall is an offer as the stand-in received it.
type offerCall struct {
	header nats.Header
	req    *parleyv1.OfferFileRequest
}

// partRange is how many part numbers a writer gets at a time (as the file
// service hands them out).
const partRange = 32

func startStandInFiles(t testing.TB, nc *nats.Conn, store objstore.Store, partSize uint64) *standInFiles {
	t.Helper()
	s := &standInFiles{t: t, nc: nc, store: store, partSize: partSize,
		files: map[string]*standInFile{}, calls: map[string]int{}, fail: map[string][]error{}}
	for subj, h := range map[string]func(*nats.Msg) (proto.Message, error){
		subject.FileOffer:        s.offer,
		subject.FileUploadBegin:  s.begin,
		subject.FileUploadCommit: s.commit,
		subject.FileUploadStatus: s.status,
		subject.FileTerminate:    s.terminate,
		subject.FileOpen:         s.open,
	} {
		sub, err := nc.QueueSubscribe(subj, subject.QueueFile, func(m *nats.Msg) {
			s.mu.Lock()
			s.calls[subj]++
			var injected error
			if q := s.fail[subj]; len(q) > 0 {
				injected, s.fail[subj] = q[0], q[1:]
			}
			s.mu.Unlock()
			if injected != nil {
				_ = rpc.RespondError(m, injected)
				return
			}
			resp, err := h(m)
			if err != nil {
				_ = rpc.RespondError(m, err)
				return
			}
			_ = rpc.Respond(m, resp)
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = sub.Unsubscribe() })
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return s
}

// failNext makes the next requests on subj answer errs, one each.
func (s *standInFiles) failNext(subj string, errs ...error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fail[subj] = append(s.fail[subj], errs...)
}

// set changes the part size and liveness of the files offered next.
func (s *standInFiles) set(partSize uint64, live bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.partSize, s.live = partSize, live
}

// multipart returns a file's object key and multipart upload id.
func (s *standInFiles) multipart(id string) (key, uploadID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.files[id].key, s.files[id].uploadID
}

// callCount is how many requests on subj reached the stand-in.
func (s *standInFiles) callCount(subj string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[subj]
}

func (s *standInFiles) offerCalls() []offerCall {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.offers)
}

// file returns a copy of a file's info with its progress.
func (s *standInFiles) file(id string) *parleyv1.FileInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.files[id]
	if f == nil {
		return nil
	}
	info := proto.Clone(f.info).(*parleyv1.FileInfo)
	info.Uploaded = f.offset
	return info
}

var (
	errNoFile   = errcode.New(parleyv1.ErrorCode_ERROR_CODE_NOT_FOUND, "no such file")
	errNotYours = errcode.New(parleyv1.ErrorCode_ERROR_CODE_PERMISSION_DENIED, "only the sender can upload or cancel this file")
	errNoAccess = errcode.New(parleyv1.ErrorCode_ERROR_CODE_PERMISSION_DENIED, "this file was not sent to you")
	errExpired  = errcode.New(parleyv1.ErrorCode_ERROR_CODE_NOT_FOUND, "the file has expired or was removed")
	errLease    = errcode.New(parleyv1.ErrorCode_ERROR_CODE_CONFLICT, "another upload of this file took over")
	errFailed   = errcode.New(parleyv1.ErrorCode_ERROR_CODE_CHECKSUM_MISMATCH, "the upload failed: its bytes did not match the declared SHA-256")
)

func (s *standInFiles) offer(m *nats.Msg) (proto.Message, error) {
	req := new(parleyv1.OfferFileRequest)
	if err := proto.Unmarshal(m.Data, req); err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.offers = append(s.offers, offerCall{header: m.Header, req: req})
	s.n++
	id := fmt.Sprintf("f%d", s.n)
	s.mu.Unlock()
	key := "files/" + id
	uploadID, err := s.store.NewUpload(context.Background(), key)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	f := &standInFile{
		info: &parleyv1.FileInfo{FileId: id, Name: req.GetName(), Size: req.GetSize(), ContentType: req.GetContentType(),
			Sha256: req.GetSha256(), SenderId: m.Header.Get(subject.HeaderUserID), CreatedAtUnixMs: now.UnixMilli(),
			ExpiresAtUnixMs: now.Add(24 * time.Hour).UnixMilli(), State: parleyv1.FileState_FILE_STATE_UPLOADING},
		key: key, uploadID: uploadID, hashState: emptyHashState(), nextPart: 1,
	}
	s.mu.Lock()
	if s.live {
		f.live = "live/" + id + "/"
	}
	s.files[id] = f
	defer s.mu.Unlock()
	return &parleyv1.FileOffer{File: proto.Clone(f.info).(*parleyv1.FileInfo), UploadPath: "/v1/files/" + id, PartSize: s.partSize}, nil
}

// uploader finds a file the caller may upload (the sender).
func (s *standInFiles) uploader(m *nats.Msg, id string) (*standInFile, error) {
	f := s.files[id]
	switch {
	case f == nil:
		return nil, errNoFile
	case f.info.SenderId == m.Header.Get(subject.HeaderUserID):
	case m.Header.Get(subject.HeaderUserID) == "u-bob":
		return nil, errNotYours
	default:
		return nil, errNoFile
	}
	switch f.info.State {
	case parleyv1.FileState_FILE_STATE_EXPIRED:
		return nil, errExpired
	case parleyv1.FileState_FILE_STATE_FAILED:
		return nil, errFailed
	}
	return f, nil
}

func (s *standInFiles) state(f *standInFile) *internalv1.UploadState {
	return &internalv1.UploadState{FileId: f.info.FileId, Size: f.info.Size, Offset: f.offset, Key: f.key, UploadId: f.uploadID,
		PartSize: s.partSize, TailKey: f.tailKey, TailSize: f.tailSize, HashState: f.hashState,
		ExpiresAtUnixMs: f.info.ExpiresAtUnixMs, State: f.info.State, LivePrefix: f.live}
}

func (s *standInFiles) begin(m *nats.Msg) (proto.Message, error) {
	var req internalv1.UploadBeginRequest
	_ = proto.Unmarshal(m.Data, &req)
	s.mu.Lock()
	defer s.mu.Unlock()
	f, err := s.uploader(m, req.GetFileId())
	if err != nil {
		return nil, err
	}
	st := s.state(f)
	if f.info.State == parleyv1.FileState_FILE_STATE_UPLOADING {
		s.n++
		f.lease = fmt.Sprintf("l%d", s.n)
		st.Lease, st.NextPart = f.lease, f.nextPart
		f.nextPart += partRange
		st.PartLimit = f.nextPart
	}
	return st, nil
}

func (s *standInFiles) status(m *nats.Msg) (proto.Message, error) {
	var req internalv1.UploadStatusRequest
	_ = proto.Unmarshal(m.Data, &req)
	s.mu.Lock()
	defer s.mu.Unlock()
	f, err := s.uploader(m, req.GetFileId())
	if err != nil {
		return nil, err
	}
	return s.state(f), nil
}

func (s *standInFiles) commit(m *nats.Msg) (proto.Message, error) {
	var req internalv1.UploadCommitRequest
	_ = proto.Unmarshal(m.Data, &req)
	s.mu.Lock()
	f, err := s.uploader(m, req.GetFileId())
	if err == nil && (f.lease != req.GetLease() || f.offset != req.GetFromOffset()) {
		err = errLease
	}
	if err != nil {
		s.mu.Unlock()
		return nil, err
	}
	oldTail := f.tailKey
	f.parts = append(f.parts, req.GetParts()...)
	f.offset, f.tailKey, f.tailSize, f.hashState = req.GetOffset(), req.GetTailKey(), req.GetTailSize(), req.GetHashState()
	if n := len(req.GetParts()); n > 0 && req.GetParts()[n-1].GetNumber()+8 >= f.nextPart {
		f.nextPart += partRange
	}
	done := f.offset == f.info.Size
	s.mu.Unlock()
	if oldTail != "" && oldTail != req.GetTailKey() {
		_ = s.store.Delete(context.Background(), oldTail)
	}
	if done {
		if err := s.finish(f); err != nil {
			return nil, err
		}
	}
	s.progress(f)
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.state(f)
	st.Lease, st.PartLimit = f.lease, f.nextPart
	return st, nil
}

// finish checks the SHA-256 and completes the upload, or fails it.
func (s *standInFiles) finish(f *standInFile) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	h := sha256.New()
	if err := h.(encoding.BinaryUnmarshaler).UnmarshalBinary(f.hashState); err != nil || fmt.Sprintf("%x", h.Sum(nil)) != f.info.Sha256 {
		f.info.State = parleyv1.FileState_FILE_STATE_FAILED
		_ = s.store.Abort(context.Background(), f.key, f.uploadID)
		return errFailed
	}
	parts := make([]objstore.Part, len(f.parts))
	for i, p := range f.parts {
		parts[i] = objstore.Part{Number: int(p.GetNumber()), ETag: p.GetEtag(), Size: int64(p.GetSize())}
	}
	if _, err := s.store.Complete(context.Background(), f.key, f.uploadID, parts); err != nil {
		s.t.Errorf("stand-in file service: complete %s: %v", f.info.FileId, err)
		return errcode.New(parleyv1.ErrorCode_ERROR_CODE_UNAVAILABLE, "file storage is unavailable")
	}
	f.info.State, f.uploadID, f.lease = parleyv1.FileState_FILE_STATE_AVAILABLE, "", ""
	return nil
}

func (s *standInFiles) terminate(m *nats.Msg) (proto.Message, error) {
	var req internalv1.FileTerminateRequest
	_ = proto.Unmarshal(m.Data, &req)
	s.mu.Lock()
	f, err := s.uploader(m, req.GetFileId())
	if err != nil {
		s.mu.Unlock()
		return nil, err
	}
	f.info.State = parleyv1.FileState_FILE_STATE_EXPIRED
	key, uploadID := f.key, f.uploadID
	s.mu.Unlock()
	if uploadID != "" {
		_ = s.store.Abort(context.Background(), key, uploadID)
	}
	s.progress(f)
	return nil, nil
}

func (s *standInFiles) open(m *nats.Msg) (proto.Message, error) {
	var req internalv1.FileOpenRequest
	_ = proto.Unmarshal(m.Data, &req)
	uid := m.Header.Get(subject.HeaderUserID)
	if req.GetToken() != "" {
		name, ok := strings.CutPrefix(req.GetToken(), "tok-for-")
		if !ok {
			return nil, errcode.New(parleyv1.ErrorCode_ERROR_CODE_TOKEN_INVALID, "invalid download token")
		}
		uid = "u-" + name
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.files[req.GetFileId()]
	switch {
	case f == nil:
		return nil, errNoFile
	case uid != f.info.SenderId && uid != "u-bob":
		return nil, errNoAccess
	case f.info.State == parleyv1.FileState_FILE_STATE_EXPIRED:
		return nil, errExpired
	case f.info.State == parleyv1.FileState_FILE_STATE_FAILED:
		return nil, errFailed
	}
	info := proto.Clone(f.info).(*parleyv1.FileInfo)
	info.Uploaded = f.offset
	reply := &internalv1.FileOpenReply{File: info, Key: f.key}
	if f.info.State == parleyv1.FileState_FILE_STATE_UPLOADING && f.live != "" {
		reply.LivePrefix, reply.Parts, reply.TailKey, reply.TailSize = f.live, f.parts, f.tailKey, f.tailSize
	}
	return reply, nil
}

// progress publishes that a file's record changed, as the file service
// does for live downloads.
func (s *standInFiles) progress(f *standInFile) {
	s.mu.Lock()
	ev := &internalv1.FileProgress{FileId: f.info.FileId, Uploaded: f.offset, State: f.info.State}
	s.mu.Unlock()
	b, _ := proto.Marshal(ev)
	if err := s.nc.Publish(subject.FileProgress(ev.FileId), b); err != nil {
		s.t.Errorf("stand-in file service: publish progress: %v", err)
	}
}

func emptyHashState() []byte {
	b, _ := sha256.New().(encoding.BinaryMarshaler).MarshalBinary()
	return b
}
