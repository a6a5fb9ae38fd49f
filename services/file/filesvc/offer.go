package filesvc

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/parleychat/parley/libs/identity"
	"github.com/parleychat/parley/libs/objkey"
	"github.com/parleychat/parley/libs/objstore"
	"github.com/parleychat/parley/libs/proto/internalv1"
	"github.com/parleychat/parley/libs/rpc"
	"github.com/parleychat/parley/libs/subject"
	"github.com/parleychat/parley/protocol/convid"
	"github.com/parleychat/parley/protocol/errcode"
	"github.com/parleychat/parley/protocol/filename"
	"github.com/parleychat/parley/protocol/fileurl"
	"github.com/parleychat/parley/protocol/parleyv1"
)

// identityOf is the user a request is for, from the gateway's identity
// headers (identity.Read); a request without them is UNAUTHENTICATED.
func identityOf(m *nats.Msg) (identity.Caller, error) {
	c, err := identity.Read(m.Header)
	if err != nil {
		return identity.Caller{}, errNoIdentity
	}
	return c, nil
}

// PartSize is the part size for a file of size bytes: objstore.PartSize,
// grown so the file needs at most half of S3's 10,000 parts. The other half
// are spare numbers: a part number is never reused, and each resumed
// upload (a new writer) may leave a few unused.
func PartSize(size int64) int64 {
	p := objstore.PartSize(size)
	const mib = 1 << 20
	if need := (size + objstore.MaxParts/2 - 1) / (objstore.MaxParts / 2); need > p {
		p = (need + mib - 1) / mib * mib
	}
	return p
}

// handleOffer creates a file: the multipart upload, the record and the
// offer message in the conversation. The sender then uploads to
// the offer's upload path (fileurl.Upload).
func (s *Service) handleOffer(ctx context.Context, m *nats.Msg) (proto.Message, error) {
	me, err := identityOf(m)
	if err != nil {
		return nil, err
	}
	var req parleyv1.OfferFileRequest
	if err := proto.Unmarshal(m.Data, &req); err != nil {
		return nil, errMalformed
	}
	switch {
	case (req.Conversation == "") == (req.ToUsername == ""):
		return nil, errTarget
	case req.Size == 0:
		return nil, errEmptyFile
	case req.Size > uint64(s.cfg.MaxFileSize):
		return nil, errTooLarge(s.cfg.MaxFileSize)
	case !validSHA256(req.Sha256):
		return nil, errChecksumArg
	}
	now := s.now()
	id := newID("f")
	var reserved string // the client key's entry, released if the offer fails
	if req.ClientKey != "" {
		if utf8.RuneCountInString(req.ClientKey) > maxClientKeyChars {
			return nil, errClientKey
		}
		k := offerKey(me.UserID, req.ClientKey)
		if _, err := s.offers.Create(ctx, k, []byte(id)); err != nil {
			if errors.Is(err, jetstream.ErrKeyExists) {
				return s.repeatOffer(ctx, k, me, &req)
			}
			return nil, fmt.Errorf("reserve client key: %w", err)
		}
		reserved = k
	}
	charged := false
	release := func() {
		if reserved != "" {
			if err := s.offers.Delete(context.WithoutCancel(ctx), reserved); err != nil {
				s.log.Warn("client key not released after a failed offer", "err", err)
			}
		}
		if charged {
			s.credit(ctx, me.UserID, id, req.Size)
		}
	}
	// A repeat of an offer (above) is neither limited nor charged again.
	if ok, wait := s.offerLimit.Take(me.UserID); !ok {
		release()
		s.log.Info("offer refused: -file-offer-rate reached", "user_id", me.UserID, "retry_after", wait)
		return nil, errOfferRate(wait)
	}
	if err := s.charge(ctx, me.UserID, id, req.Size); err != nil {
		release()
		if errcode.Code(err) == parleyv1.ErrorCode_ERROR_CODE_QUOTA_EXCEEDED {
			s.log.Info("offer refused: -file-user-quota reached", "user_id", me.UserID, "size", req.Size)
		}
		return nil, err
	}
	charged = true
	info := &parleyv1.FileInfo{
		FileId: id, Name: filename.Sanitize(req.Name), Size: req.Size, ContentType: normalizeContentType(req.ContentType),
		Sha256: req.Sha256, SenderId: me.UserID, SenderName: me.Username, CreatedAtUnixMs: ms(now),
		ExpiresAtUnixMs: ms(now.Add(s.cfg.UploadTTL)), State: parleyv1.FileState_FILE_STATE_UPLOADING,
	}
	key := objkey.File(id)
	uploadID, err := s.st.NewUpload(ctx, key)
	if err != nil {
		release()
		s.log.Error("storage: new upload", "key", key, "err", err)
		return nil, errStorage
	}
	abort := func() {
		release()
		if err := s.st.Abort(context.WithoutCancel(ctx), key, uploadID); err != nil {
			s.log.Warn("storage: abort after failed offer", "key", key, "err", err)
		}
	}
	// The offer becomes a message in the conversation; messaging checks
	// that the sender may post there (member, not blocked).
	rctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
	defer cancel()
	var posted internalv1.PostFileReply
	if err := rpc.Request(rctx, s.nc, subject.MsgPostFile, me.Header(), &internalv1.PostFileRequest{
		Conversation: req.Conversation, ToUsername: req.ToUsername, File: info, ClientKey: "file-" + id,
	}, &posted); err != nil {
		abort()
		return nil, err
	}
	info.Conversation = posted.GetMessage().GetConversation()
	rec := &internalv1.FileRecord{
		Info: info, Key: key, UploadId: uploadID, PartSize: uint64(PartSize(int64(req.Size))),
		NextPart: 1, HashState: newHashState(),
	}
	for _, u := range posted.MemberIds {
		if u != me.UserID {
			rec.Members = append(rec.Members, u)
		}
	}
	direct := posted.Kind == parleyv1.ConversationKind_CONVERSATION_KIND_DIRECT
	if direct {
		rec.Answers = map[string]parleyv1.FileAnswer{}
		for _, u := range rec.Members {
			rec.Answers[u] = parleyv1.FileAnswer_FILE_ANSWER_UNSPECIFIED
		}
		if s.cfg.Live && s.anyOnline(ctx, rec.Members) {
			rec.LivePrefix = objkey.LivePrefix(id)
		}
	}
	if err := s.create(ctx, rec); err != nil {
		// The offer message is posted but the file cannot be kept:
		// downloads of it answer NOT_FOUND.
		abort()
		s.log.Error("file record not created", "file_id", id, "err", err)
		return nil, errBusy
	}
	s.index(ctx, convIndexKey(info.Conversation, id))
	if direct {
		for _, u := range rec.Members {
			s.index(ctx, userIndexKey(u, id))
		}
		s.publish(parleyv1.FileEvent_KIND_OFFERED, info, me, rec.Members...)
	}
	s.metrics.offered.Inc()
	s.log.Info("file offered", "file_id", id, "user_id", me.UserID, "conversation", info.Conversation, "size", req.Size)
	return &parleyv1.FileOffer{File: info, UploadPath: fileurl.Upload(id), PartSize: rec.PartSize}, nil
}

// offerKeyTTL is how long an offer's client key is remembered.
const offerKeyTTL = 24 * time.Hour

// maxClientKeyChars bounds an offer's client key, in characters (code
// points) as for a message's (docs/protocol.md §18.1); it is hashed, so
// any characters will do.
const maxClientKeyChars = 64

// offerKey names a sender's client key in BucketFileOffers (hashed: KV
// keys allow few characters).
func offerKey(uid, clientKey string) string {
	h := sha256.Sum256([]byte(clientKey))
	return uid + "." + hex.EncodeToString(h[:16])
}

// repeatOffer answers an offer whose client key was seen: the first
// offer's file (waiting briefly while that offer is still being made), if
// it is the same file.
func (s *Service) repeatOffer(ctx context.Context, k string, me identity.Caller, req *parleyv1.OfferFileRequest) (proto.Message, error) {
	e, err := s.offers.Get(ctx, k)
	if err != nil {
		return nil, errBusy // released meanwhile (the first offer failed): the client retries
	}
	id := string(e.Value())
	deadline := time.Now().Add(s.cfg.RequestTimeout)
	for {
		rec, _, err := s.get(ctx, id)
		switch {
		case err == nil:
			if rec.Info.SenderId != me.UserID || rec.Info.Size != req.Size || rec.Info.Sha256 != req.Sha256 {
				return nil, errKeyReused
			}
			s.log.Info("offer repeated; answered with the first", "file_id", id, "user_id", me.UserID)
			return &parleyv1.FileOffer{File: s.view(rec, me.UserID), UploadPath: fileurl.Upload(id), PartSize: rec.PartSize, Duplicate: true}, nil
		case !errors.Is(err, errNoFile):
			return nil, err
		case time.Now().After(deadline):
			return nil, errBusy
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// index writes an (empty) index key; a lost index entry only hides the
// file from a list, never from its recipients' downloads.
func (s *Service) index(ctx context.Context, key string) {
	if _, err := s.kv.Put(ctx, key, nil); err != nil {
		s.log.Warn("file index not written", "key", key, "err", err)
	}
}

// handleAnswer records a direct recipient's accept or reject and tells the
// sender. A rejected file is removed from storage at once: nobody else may
// download it.
func (s *Service) handleAnswer(ctx context.Context, m *nats.Msg) (proto.Message, error) {
	me, err := identityOf(m)
	if err != nil {
		return nil, err
	}
	var req parleyv1.AnswerFileRequest
	if err := proto.Unmarshal(m.Data, &req); err != nil {
		return nil, errMalformed
	}
	answer := parleyv1.FileAnswer_FILE_ANSWER_REJECTED
	if req.Accept {
		answer = parleyv1.FileAnswer_FILE_ANSWER_ACCEPTED
	}
	var removed *internalv1.FileRecord // storage to clean after a reject
	rec, err := s.update(ctx, req.FileId, func(rec *internalv1.FileRecord) error {
		removed = nil
		if _, ok := rec.Answers[me.UserID]; !ok {
			if rec.Info.SenderId == me.UserID || slices.Contains(rec.Members, me.UserID) {
				return errNotRecipient
			}
			return errNoFile
		}
		if gone(rec) {
			return errExpired
		}
		rec.Answers[me.UserID] = answer
		if answer == parleyv1.FileAnswer_FILE_ANSWER_REJECTED {
			removed = proto.Clone(rec).(*internalv1.FileRecord)
			markRemoved(rec)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if removed != nil {
		s.announce(rec)
		s.credit(ctx, rec.Info.SenderId, rec.Info.FileId, rec.Info.Size)
		s.removeStorage(ctx, removed)
	}
	if err := s.kv.Delete(ctx, userIndexKey(me.UserID, rec.Info.FileId)); err != nil {
		s.log.Warn("file index not removed", "err", err)
	}
	kind := parleyv1.FileEvent_KIND_REJECTED
	if req.Accept {
		kind = parleyv1.FileEvent_KIND_ACCEPTED
	}
	s.publish(kind, s.view(rec, rec.Info.SenderId), me, rec.Info.SenderId, me.UserID)
	return nil, nil
}

// gone reports whether a file can no longer be uploaded or downloaded.
func gone(rec *internalv1.FileRecord) bool {
	st := rec.Info.State
	return st == parleyv1.FileState_FILE_STATE_EXPIRED || st == parleyv1.FileState_FILE_STATE_FAILED
}

// markRemoved sets a record to EXPIRED; removeStorage (with the record as
// it was) deletes what it held.
func markRemoved(rec *internalv1.FileRecord) {
	rec.Info.State = parleyv1.FileState_FILE_STATE_EXPIRED
	rec.UploadId, rec.Lease, rec.TailKey, rec.TailSize, rec.Parts, rec.LivePrefix = "", "", "", 0, nil, ""
}

// removeStorage deletes an upload's or a file's bytes (best effort: the
// sweeper aborts orphaned uploads later).
func (s *Service) removeStorage(ctx context.Context, old *internalv1.FileRecord) {
	ctx = context.WithoutCancel(ctx)
	s.removeLive(old)
	if old.UploadId != "" {
		if err := s.st.Abort(ctx, old.Key, old.UploadId); err != nil && !errors.Is(err, objstore.ErrUploadNotFound) {
			s.log.Warn("storage: abort", "key", old.Key, "err", err)
		}
	}
	if old.Info.GetState() == parleyv1.FileState_FILE_STATE_AVAILABLE {
		if err := s.st.Delete(ctx, old.Key); err != nil {
			s.log.Warn("storage: delete", "key", old.Key, "err", err)
		}
	}
	if old.TailKey != "" {
		if err := s.st.Delete(ctx, old.TailKey); err != nil {
			s.log.Warn("storage: delete tail", "key", old.TailKey, "err", err)
		}
	}
}

// view is the FileInfo a user sees: with the current upload progress and,
// in a private chat, the recipient's answer.
func (s *Service) view(rec *internalv1.FileRecord, uid string) *parleyv1.FileInfo {
	info := proto.Clone(rec.Info).(*parleyv1.FileInfo)
	info.Uploaded = rec.Offset
	if info.State == parleyv1.FileState_FILE_STATE_AVAILABLE {
		info.Uploaded = info.Size
	}
	for u, a := range rec.Answers {
		if u == uid || uid == rec.Info.SenderId {
			info.Answer = a
		}
	}
	return info
}

// mayDownload reports whether uid may read the file: its sender; in a
// private chat the recipient unless they rejected it; in a group anyone
// who is a member now (asked of messaging with the user's identity).
func (s *Service) mayDownload(ctx context.Context, rec *internalv1.FileRecord, uid string) error {
	if uid == rec.Info.SenderId {
		return nil
	}
	if rec.Answers != nil {
		a, ok := rec.Answers[uid]
		switch {
		case !ok:
			return errNoAccess
		case a == parleyv1.FileAnswer_FILE_ANSWER_REJECTED:
			return errRejected
		}
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
	defer cancel()
	err := rpc.Request(ctx, s.nc, subject.MsgMembers, identity.Caller{UserID: uid}.Header(),
		&parleyv1.MembersRequest{Conversation: rec.Info.Conversation}, nil)
	switch errcode.Code(err) {
	case parleyv1.ErrorCode_ERROR_CODE_UNSPECIFIED:
		return nil
	case parleyv1.ErrorCode_ERROR_CODE_PERMISSION_DENIED, parleyv1.ErrorCode_ERROR_CODE_NOT_FOUND:
		return errNoAccess
	default:
		return err
	}
}

// handleDownload issues a download URL with a token scoped to the file and
// the user, valid for -file-token-ttl.
func (s *Service) handleDownload(ctx context.Context, m *nats.Msg) (proto.Message, error) {
	me, err := identityOf(m)
	if err != nil {
		return nil, err
	}
	var req parleyv1.FileDownloadRequest
	if err := proto.Unmarshal(m.Data, &req); err != nil {
		return nil, errMalformed
	}
	rec, _, err := s.get(ctx, req.FileId)
	if err != nil {
		return nil, err
	}
	if err := s.mayDownload(ctx, rec, me.UserID); err != nil {
		return nil, err
	}
	switch rec.Info.State {
	case parleyv1.FileState_FILE_STATE_EXPIRED:
		return nil, errExpired
	case parleyv1.FileState_FILE_STATE_FAILED:
		return nil, errFailed
	}
	if me.SessionID == "" {
		return nil, errNoIdentity // the URL is bound to the session asking for it
	}
	exp := s.now().Add(s.cfg.TokenTTL)
	tok := s.signer.issue(rec.Info.FileId, me.UserID, me.SessionID, exp)
	return &parleyv1.FileDownload{File: s.view(rec, me.UserID), Path: fileurl.Download(rec.Info.FileId, tok),
		ExpiresAtUnixMs: ms(exp)}, nil
}

// handleOpen answers a gateway about to serve a download: who may read
// (identity headers, or the URL's token) and where the bytes are.
func (s *Service) handleOpen(ctx context.Context, m *nats.Msg) (proto.Message, error) {
	var req internalv1.FileOpenRequest
	if err := proto.Unmarshal(m.Data, &req); err != nil {
		return nil, errMalformed
	}
	var uid string
	if req.Token != "" {
		var sid string
		var err error
		uid, sid, err = s.signer.verify(req.Token, req.FileId, s.now())
		switch {
		case errors.Is(err, errTokenExpired):
			return nil, errOldToken
		case err != nil:
			return nil, errBadToken
		}
		if err := s.sessionAlive(ctx, uid, sid); err != nil {
			return nil, err
		}
	} else {
		me, err := identityOf(m)
		if err != nil {
			return nil, err
		}
		uid = me.UserID
	}
	rec, _, err := s.get(ctx, req.FileId)
	if err != nil {
		return nil, err
	}
	if err := s.mayDownload(ctx, rec, uid); err != nil {
		return nil, err
	}
	switch rec.Info.State {
	case parleyv1.FileState_FILE_STATE_EXPIRED:
		return nil, errExpired
	case parleyv1.FileState_FILE_STATE_FAILED:
		return nil, errFailed
	}
	reply := &internalv1.FileOpenReply{File: s.view(rec, uid), Key: rec.Key}
	if rec.Info.State == parleyv1.FileState_FILE_STATE_UPLOADING && rec.LivePrefix != "" {
		reply.LivePrefix, reply.Parts, reply.TailKey, reply.TailSize = rec.LivePrefix, rec.Parts, rec.TailKey, rec.TailSize
	}
	return reply, nil
}

// sessionAlive asks auth whether the session a download token was issued
// to still exists (subject.AuthSessionCheck): an ended one (logout,
// takeover) is SESSION_REVOKED. It fails closed: when auth cannot answer
// (no replica, a timeout) the download is refused with UNAVAILABLE, which
// the gateway answers 503 (try again), rather than honour a link whose
// session may have ended.
func (s *Service) sessionAlive(ctx context.Context, uid, sid string) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
	defer cancel()
	err := rpc.Request(ctx, s.nc, subject.AuthSessionCheck, nil, &internalv1.SessionCheckRequest{UserId: uid, SessionId: sid}, nil)
	if err == nil {
		return nil
	}
	switch errcode.Code(err) {
	case parleyv1.ErrorCode_ERROR_CODE_SESSION_REVOKED:
		return errSessionGone
	case parleyv1.ErrorCode_ERROR_CODE_UNAVAILABLE, parleyv1.ErrorCode_ERROR_CODE_TIMEOUT:
		// The client sees errSessionUnknown; the log (the Runner's, at
		// warn) sees auth's failure.
		return fmt.Errorf("session check: %w: %w", errSessionUnknown, err)
	}
	return err
}

// anyOnline reports whether one of users has a live connection now (a
// presence error counts as offline: the file then simply is not live).
func (s *Service) anyOnline(ctx context.Context, users []string) bool {
	ctx, cancel := context.WithTimeout(ctx, min(s.cfg.RequestTimeout, time.Second))
	defer cancel()
	for _, u := range users {
		var reply internalv1.UserPresenceReply
		err := rpc.Request(ctx, s.nc, subject.PresenceUser, nil, &internalv1.UserPresenceRequest{UserId: u}, &reply)
		if err != nil {
			s.log.Warn("presence lookup for a live file failed; not live", "user_id", u, "err", err)
			return false
		}
		if len(reply.SessionIds) > 0 {
			return true
		}
	}
	return false
}

// removeLive deletes the readable copies of a live upload's parts, every
// part number handed out (a writer that died may have stored one it never
// committed), in the background: downloads that were reading them move to
// the finished object or end. A removal cut short by shutdown leaves parts
// no record owns, which the sweep deletes.
func (s *Service) removeLive(rec *internalv1.FileRecord) {
	if rec.LivePrefix == "" {
		return
	}
	s.run.Go(func(ctx context.Context) {
		for n := uint32(1); n < rec.NextPart; n++ {
			key := objkey.LivePart(rec.LivePrefix, n)
			if err := s.st.Delete(ctx, key); err != nil && !errors.Is(err, objstore.ErrNotFound) {
				s.log.Warn("storage: delete live part", "key", key, "err", err)
			}
		}
	})
}

// handleList lists a conversation's files (a group's shelf), newest first,
// or without a conversation the offers the caller has not answered.
// Expired and failed files are left out.
func (s *Service) handleList(ctx context.Context, m *nats.Msg) (proto.Message, error) {
	me, err := identityOf(m)
	if err != nil {
		return nil, err
	}
	var req parleyv1.FilesRequest
	if err := proto.Unmarshal(m.Data, &req); err != nil {
		return nil, errMalformed
	}
	var prefix string
	if req.Conversation == "" {
		prefix = "u." + me.UserID + "."
	} else {
		if err := s.mayList(ctx, req.Conversation, me); err != nil {
			return nil, err
		}
		prefix = "c." + req.Conversation + "."
	}
	keys, err := s.kv.ListKeysFiltered(ctx, prefix+"*")
	if err != nil {
		return nil, err
	}
	var files []*parleyv1.FileInfo
	for k := range keys.Keys() {
		rec, _, err := s.get(ctx, strings.TrimPrefix(k, prefix))
		if err != nil || gone(rec) {
			continue
		}
		files = append(files, s.view(rec, me.UserID))
	}
	var after *parleyv1.FileInfo
	if req.AfterFileId != "" {
		// Expired and failed records stay readable for a while, so a
		// page boundary that expired meanwhile still places the next page.
		rec, _, err := s.get(ctx, req.AfterFileId)
		if err != nil {
			return nil, errcode.New(parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "after_file_id: no such file; list from the start")
		}
		after = rec.Info
	}
	return page(files, after, req.Limit), nil
}

// Pages of file lists: newest first, ties by file id, and at most
// listPageBytes of FileInfos (thumbnails make them up to ~16 KiB) so a
// reply stays well inside NATS's and the client frame's 1 MiB.
const (
	listDefault   = 50
	listMax       = 200
	listPageBytes = 512 << 10
)

// newestFirst orders files by creation time, then id, descending.
func newestFirst(a, b *parleyv1.FileInfo) int {
	if c := cmp.Compare(b.CreatedAtUnixMs, a.CreatedAtUnixMs); c != 0 {
		return c
	}
	return strings.Compare(b.FileId, a.FileId)
}

// page sorts files and cuts the page that follows after (from the start
// when after is nil).
func page(files []*parleyv1.FileInfo, after *parleyv1.FileInfo, limit uint32) *parleyv1.FilesReply {
	slices.SortFunc(files, newestFirst)
	if after != nil {
		i, _ := slices.BinarySearchFunc(files, after, newestFirst)
		for i < len(files) && files[i].FileId == after.FileId {
			i++
		}
		files = files[i:]
	}
	n := int(limit)
	if n == 0 {
		n = listDefault
	}
	n = min(n, listMax, len(files))
	size := 0
	for i, f := range files[:n] {
		if size += proto.Size(f); size > listPageBytes && i > 0 {
			n = i
			break
		}
	}
	return &parleyv1.FilesReply{Files: files[:n], More: n < len(files)}
}

// mayList checks that me may list conversation conv's files (§18.2). An
// id not shaped like a conversation id is INVALID_ARGUMENT (it would be an
// invalid or wildcard KV key); the rest is decided as messaging decides it
// for every request (convid.ParseFor): a private chat must name me
// (PERMISSION_DENIED) and be canonical (NOT_FOUND; INVALID_ARGUMENT when it
// names me twice), unknown kinds are NOT_FOUND, rooms have no files
// (NOT_FOUND), and group membership is asked of messaging.
func (s *Service) mayList(ctx context.Context, conv string, me identity.Caller) error {
	if _, err := convid.Parse(conv); errors.Is(err, convid.ErrMalformed) {
		return errBadConv
	}
	id, err := convid.ParseFor(conv, me.UserID)
	switch {
	case errors.Is(err, convid.ErrNotMember):
		return errNotMember
	case errors.Is(err, convid.ErrSelf):
		return errSelf
	case err != nil:
		return errNoConversation
	case id.Kind() == convid.KindRoom:
		return errRoomNoFiles
	case id.Kind() == convid.KindDirect:
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
	defer cancel()
	return rpc.Request(ctx, s.nc, subject.MsgMembers, me.Header(), &parleyv1.MembersRequest{Conversation: conv}, nil)
}
