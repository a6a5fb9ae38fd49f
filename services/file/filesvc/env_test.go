package filesvc_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding"
	"encoding/hex"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	"github.com/parleychat/parley/libs/objstore"
	"github.com/parleychat/parley/libs/proto/internalv1"
	"github.com/parleychat/parley/libs/rpc"
	"github.com/parleychat/parley/libs/service"
	"github.com/parleychat/parley/libs/subject"
	"github.com/parleychat/parley/libs/testenv"
	"github.com/parleychat/parley/protocol/errcode"
	"github.com/parleychat/parley/protocol/parleyv1"
	"github.com/parleychat/parley/services/file/filesvc"
)

// user is an account as the gateway knows it from the session.
type user struct{ id, name string }

var (
	alice = user{"ualice", "alice"}
	bob   = user{"ubob", "bob"}
	carol = user{"ucarol", "carol"}
	dave  = user{"udave", "dave"}
)

// header is what the gateway sets from u's session.
func header(u user) nats.Header {
	h := nats.Header{}
	h.Set(subject.HeaderUserID, u.id)
	h.Set(subject.HeaderSessionID, "s-"+u.id)
	h.Set(subject.HeaderUsername, u.name)
	h.Set(subject.HeaderGatewayID, "gw-test")
	return h
}

// clock is the service's clock: real time moved on by the test.
type clock struct {
	mu   sync.Mutex
	skew time.Duration
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.skew)
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.skew += d
}

// env is one file service replica on its own nats-server, storing in its
// own bucket of a shared MinIO server, with stand-ins for the services it
// asks (messaging, presence, auth) and a connection playing the gateway.
type env struct {
	t     testing.TB
	ns    *server.Server
	nc    *nats.Conn // the gateway's
	store *objstore.MinIO
	clock *clock
	cfg   filesvc.Config
	svc   *filesvc.Service
	reg   *prometheus.Registry
	stop  func()
	world *world
}

var buckets atomic.Int32 // numbers each env's bucket

// testConfig is the deployed default, with a fixed token key, and sweeps
// only when a test calls Sweep (and once as Run starts).
func testConfig() filesvc.Config {
	cfg := filesvc.DefaultConfig()
	cfg.SweepInterval = time.Hour
	cfg.TokenKey = "0123456789abcdef0123456789abcdef"
	cfg.RequestTimeout = 3 * time.Second
	return cfg
}

// newEnv starts a replica with testConfig changed by edit, on a MinIO
// server m (one per top-level test: StartMinIO's life is its test's).
func newEnv(t *testing.T, m *testenv.MinIO, edit func(*filesvc.Config)) *env {
	t.Helper()
	e := &env{t: t, ns: testenv.NATS(t), clock: &clock{}, cfg: testConfig()}
	if edit != nil {
		edit(&e.cfg)
	}
	e.nc = testenv.Connect(t, e.ns)
	store, err := objstore.NewMinIO(t.Context(), objstore.MinIOConfig{Endpoint: m.Endpoint, AccessKey: m.AccessKey,
		SecretKey: m.SecretKey, Bucket: fmt.Sprintf("files-%d", buckets.Add(1))})
	if err != nil {
		t.Fatal(err)
	}
	e.store = store
	e.world = startWorld(t, testenv.Connect(t, e.ns))
	e.svc, e.reg, e.stop = e.start(e.cfg)
	return e
}

// start runs a replica with cfg on the env's NATS and storage; stop
// cancels it and waits for Run to return.
func (e *env) start(cfg filesvc.Config) (*filesvc.Service, *prometheus.Registry, func()) {
	e.t.Helper()
	nc := testenv.Connect(e.t, e.ns)
	reg := prometheus.NewRegistry()
	log := slog.New(slog.NewTextHandler(e.t.Output(), &slog.HandlerOptions{Level: slog.LevelError}))
	svc, err := filesvc.New(cfg, service.Deps{NC: nc, Log: log, Registry: reg, Clock: e.clock.now}, e.store)
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				e.t.Errorf("file service Run: %v", err)
			}
		})
	}
	e.t.Cleanup(stop)
	testenv.Eventually(e.t, 20*time.Second, "file service ready", func() bool { return svc.Ready() == nil })
	return svc, reg, stop
}

// call is what the gateway does: rpc.Request with u's identity headers.
func (e *env) call(u user, subj string, req, resp proto.Message) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var h nats.Header
	if u.id != "" {
		h = header(u)
	}
	return rpc.Request(ctx, e.nc, subj, h, req, resp)
}

// code is err's wire code (UNSPECIFIED for nil).
func code(err error) parleyv1.ErrorCode {
	if err == nil {
		return parleyv1.ErrorCode_ERROR_CODE_UNSPECIFIED
	}
	return errcode.Code(err)
}

func (e *env) offerReq(u user, req *parleyv1.OfferFileRequest) (*parleyv1.FileOffer, error) {
	var o parleyv1.FileOffer
	err := e.call(u, subject.FileOffer, req, &o)
	return &o, err
}

// offer offers data from u to a user (by name) or a conversation.
func (e *env) offer(u user, to string, data []byte) *parleyv1.FileOffer {
	e.t.Helper()
	req := &parleyv1.OfferFileRequest{Name: "file.bin", Size: uint64(len(data)), Sha256: sha256Hex(data),
		ContentType: "application/octet-stream"}
	if strings.Contains(to, ".") {
		req.Conversation = to
	} else {
		req.ToUsername = to
	}
	o, err := e.offerReq(u, req)
	if err != nil {
		e.t.Fatalf("%s offers %d bytes to %s: %v", u.name, len(data), to, err)
	}
	return o
}

func (e *env) begin(u user, id string) (*internalv1.UploadState, error) {
	var st internalv1.UploadState
	err := e.call(u, subject.FileUploadBegin, &internalv1.UploadBeginRequest{FileId: id}, &st)
	return &st, err
}

func (e *env) status(u user, id string) (*internalv1.UploadState, error) {
	var st internalv1.UploadState
	err := e.call(u, subject.FileUploadStatus, &internalv1.UploadStatusRequest{FileId: id}, &st)
	return &st, err
}

func (e *env) commit(u user, req *internalv1.UploadCommitRequest) (*internalv1.UploadState, error) {
	var st internalv1.UploadState
	err := e.call(u, subject.FileUploadCommit, req, &st)
	return &st, err
}

func (e *env) open(u user, id, token string) (*internalv1.FileOpenReply, error) {
	var r internalv1.FileOpenReply
	err := e.call(u, subject.FileOpen, &internalv1.FileOpenRequest{FileId: id, Token: token}, &r)
	return &r, err
}

func (e *env) list(u user, req *parleyv1.FilesRequest) (*parleyv1.FilesReply, error) {
	var r parleyv1.FilesReply
	err := e.call(u, subject.FileList, req, &r)
	return &r, err
}

func (e *env) answer(u user, id string, accept bool) error {
	return e.call(u, subject.FileAnswer, &parleyv1.AnswerFileRequest{FileId: id, Accept: accept}, nil)
}

func (e *env) terminate(u user, id string) error {
	return e.call(u, subject.FileTerminate, &internalv1.FileTerminateRequest{FileId: id}, nil)
}

func (e *env) downloadURL(u user, id string) (*parleyv1.FileDownload, error) {
	var d parleyv1.FileDownload
	err := e.call(u, subject.FileDownload, &parleyv1.FileDownloadRequest{FileId: id}, &d)
	return &d, err
}

// writer is a gateway writing one upload: it holds the lease and the
// running SHA-256 of what it committed.
type writer struct {
	e    *env
	u    user
	st   *internalv1.UploadState
	next uint32
	last *internalv1.UploadCommitRequest // the last commit sent
}

// writeFrom begins a writer for u (its lease takes over any earlier one).
func (e *env) writeFrom(u user, id string) *writer {
	e.t.Helper()
	st, err := e.begin(u, id)
	if err != nil {
		e.t.Fatalf("begin %s: %v", id, err)
	}
	return &writer{e: e, u: u, st: st, next: st.GetNextPart()}
}

// hashAfter is the SHA-256 state over data's first n bytes.
func hashAfter(data []byte, n int) []byte {
	h := sha256.New()
	h.Write(data[:n])
	b, _ := h.(encoding.BinaryMarshaler).MarshalBinary()
	return b
}

// parts stores data[from:to] as whole parts (the last may be the file's
// short last part) and commits them, with no tail.
func (w *writer) parts(data []byte, from, to int) (*internalv1.UploadState, error) {
	w.e.t.Helper()
	var stored []*internalv1.FilePart
	ps := int(w.st.GetPartSize())
	for at := from; at < to; at += ps {
		end := min(at+ps, to)
		p, err := w.e.store.PutPart(context.Background(), w.st.GetKey(), w.st.GetUploadId(), int(w.next), bytes.NewReader(data[at:end]), int64(end-at))
		if err != nil {
			w.e.t.Fatalf("store part %d: %v", w.next, err)
		}
		stored = append(stored, &internalv1.FilePart{Number: uint32(p.Number), Etag: p.ETag, Size: uint64(p.Size)})
		w.next++
	}
	return w.commit(&internalv1.UploadCommitRequest{Parts: stored, Offset: uint64(to), HashState: hashAfter(data, to)})
}

// tail stores data[from:to] as the upload's tail and commits it.
func (w *writer) tail(data []byte, from, to int) (*internalv1.UploadState, error) {
	w.e.t.Helper()
	key := fmt.Sprintf("tails/%s/%d", w.st.GetFileId(), to)
	if _, err := w.e.store.Put(context.Background(), key, bytes.NewReader(data[from:to]), int64(to-from), "application/octet-stream"); err != nil {
		w.e.t.Fatal(err)
	}
	return w.commit(&internalv1.UploadCommitRequest{TailKey: key, TailSize: uint64(to - from), Offset: uint64(to), HashState: hashAfter(data, to)})
}

// commit sends req under the writer's lease from its offset and takes the
// new state.
func (w *writer) commit(req *internalv1.UploadCommitRequest) (*internalv1.UploadState, error) {
	req.FileId, req.Lease, req.FromOffset = w.st.GetFileId(), w.st.GetLease(), w.st.GetOffset()
	w.last = proto.Clone(req).(*internalv1.UploadCommitRequest)
	st, err := w.e.commit(w.u, req)
	if err == nil {
		lease := w.st.GetLease()
		w.st = st
		if st.GetLease() == "" {
			w.st.Lease = lease
		}
	}
	return st, err
}

// upload writes data whole as u, part by part.
func (e *env) upload(u user, id string, data []byte) *internalv1.UploadState {
	e.t.Helper()
	st, err := e.writeFrom(u, id).parts(data, 0, len(data))
	if err != nil {
		e.t.Fatalf("upload %s: %v", id, err)
	}
	return st
}

// read returns a stored object whole.
func (e *env) read(key string) ([]byte, error) {
	rc, err := e.store.Get(context.Background(), key, 0, -1)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	var b bytes.Buffer
	_, err = b.ReadFrom(rc)
	return b.Bytes(), err
}

// objects lists the keys stored under prefix.
func (e *env) objects(prefix string) []string {
	e.t.Helper()
	infos, err := e.store.List(context.Background(), prefix)
	if err != nil {
		e.t.Fatal(err)
	}
	var keys []string
	for _, i := range infos {
		keys = append(keys, i.Key)
	}
	return keys
}

// uploads lists the unfinished multipart uploads under files/.
func (e *env) uploads() []objstore.Upload {
	e.t.Helper()
	u, err := e.store.ListUploads(context.Background(), "files/")
	if err != nil {
		e.t.Fatal(err)
	}
	return u
}

// events collects the FileEvents u receives.
type events struct {
	mu  sync.Mutex
	got []*parleyv1.FileEvent
}

func (e *env) events(u user) *events {
	e.t.Helper()
	ev := &events{}
	sub, err := e.nc.Subscribe(subject.UserFileEvents(u.id), func(m *nats.Msg) {
		var fe parleyv1.FileEvent
		if proto.Unmarshal(m.Data, &fe) == nil {
			ev.mu.Lock()
			ev.got = append(ev.got, &fe)
			ev.mu.Unlock()
		}
	})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := e.nc.Flush(); err != nil {
		e.t.Fatal(err)
	}
	return ev
}

// wait waits for an event of kind about file id and returns it.
func (ev *events) wait(t testing.TB, kind parleyv1.FileEvent_Kind, id string) *parleyv1.FileEvent {
	t.Helper()
	var found *parleyv1.FileEvent
	testenv.Eventually(t, 10*time.Second, fmt.Sprintf("a %v event about %s", kind, id), func() bool {
		ev.mu.Lock()
		defer ev.mu.Unlock()
		for _, e := range ev.got {
			if e.GetKind() == kind && e.GetFile().GetFileId() == id {
				found = e
				return true
			}
		}
		return false
	})
	return found
}

// kinds lists the kinds of the events received about file id.
func (ev *events) kinds(id string) []parleyv1.FileEvent_Kind {
	ev.mu.Lock()
	defer ev.mu.Unlock()
	var k []parleyv1.FileEvent_Kind
	for _, e := range ev.got {
		if e.GetFile().GetFileId() == id {
			k = append(k, e.GetKind())
		}
	}
	return k
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// dm is the id of the private chat of two users.
func dm(a, b user) string {
	ids := []string{a.id, b.id}
	sort.Strings(ids)
	return "dm." + ids[0] + "." + ids[1]
}

// world holds the stand-ins for the services the file service asks.
//
// STAND-INS for messaging, presence and auth: services must not import
// each other, so this test cannot start their real replicas; these answer
// the subjects the file service calls as those services do, for the users
// above: messaging resolves a private chat by username (NOT_FOUND for an
// unknown one, BLOCKED for a blocked pair) or a group by id (members
// only), presence says who is online, auth whether a session was ended.
// Those services have their own tests, and the end-to-end tests run the
// file service against the real ones.
type world struct {
	mu      sync.Mutex          // guards the fields below
	groups  map[string][]string // group conversation id -> member ids
	blocked map[[2]string]bool  // pairs of user ids that may not message
	online  map[string]bool
	ended   map[string]bool // session ids logged out
	authOff bool            // auth answers UNAVAILABLE
	posts   []*internalv1.PostFileRequest
}

func startWorld(t testing.TB, nc *nats.Conn) *world {
	t.Helper()
	w := &world{groups: map[string][]string{}, blocked: map[[2]string]bool{}, online: map[string]bool{}, ended: map[string]bool{}}
	byName := map[string]user{}
	for _, u := range []user{alice, bob, carol, dave} {
		byName[u.name] = u
	}
	serve := func(subj, queue string, h func(m *nats.Msg) (proto.Message, error)) {
		if _, err := nc.QueueSubscribe(subj, queue, func(m *nats.Msg) {
			resp, err := h(m)
			if err != nil {
				_ = rpc.RespondError(m, err)
				return
			}
			_ = rpc.Respond(m, resp)
		}); err != nil {
			t.Fatal(err)
		}
	}
	serve(subject.MsgPostFile, subject.QueueMessaging, func(m *nats.Msg) (proto.Message, error) {
		var req internalv1.PostFileRequest
		if err := proto.Unmarshal(m.Data, &req); err != nil {
			return nil, err
		}
		me := m.Header.Get(subject.HeaderUserID)
		w.mu.Lock()
		defer w.mu.Unlock()
		w.posts = append(w.posts, &req)
		reply := &internalv1.PostFileReply{}
		switch {
		case req.GetToUsername() != "":
			to, ok := byName[req.GetToUsername()]
			if !ok {
				return nil, errcode.New(parleyv1.ErrorCode_ERROR_CODE_NOT_FOUND, "no such user")
			}
			if w.blocked[[2]string{me, to.id}] || w.blocked[[2]string{to.id, me}] {
				return nil, errcode.New(parleyv1.ErrorCode_ERROR_CODE_BLOCKED, "you cannot message this user")
			}
			ids := []string{me, to.id}
			sort.Strings(ids)
			reply.Kind, reply.MemberIds = parleyv1.ConversationKind_CONVERSATION_KIND_DIRECT, ids
			reply.Message = &parleyv1.Message{Conversation: "dm." + ids[0] + "." + ids[1]}
		case strings.HasPrefix(req.GetConversation(), "group."):
			members, ok := w.groups[req.GetConversation()]
			if !ok {
				return nil, errcode.New(parleyv1.ErrorCode_ERROR_CODE_NOT_FOUND, "no such group")
			}
			if !slices.Contains(members, me) {
				return nil, errcode.New(parleyv1.ErrorCode_ERROR_CODE_PERMISSION_DENIED, "you are not in this group")
			}
			reply.Kind, reply.MemberIds = parleyv1.ConversationKind_CONVERSATION_KIND_GROUP, slices.Clone(members)
			reply.Message = &parleyv1.Message{Conversation: req.GetConversation()}
		default:
			return nil, errcode.New(parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "files go to a private chat or a group")
		}
		reply.Message.File = req.GetFile()
		return reply, nil
	})
	serve(subject.MsgMembers, subject.QueueMessaging, func(m *nats.Msg) (proto.Message, error) {
		var req parleyv1.MembersRequest
		_ = proto.Unmarshal(m.Data, &req)
		w.mu.Lock()
		defer w.mu.Unlock()
		members, ok := w.groups[req.GetConversation()]
		switch {
		case !ok:
			return nil, errcode.New(parleyv1.ErrorCode_ERROR_CODE_NOT_FOUND, "no such group")
		case !slices.Contains(members, m.Header.Get(subject.HeaderUserID)):
			return nil, errcode.New(parleyv1.ErrorCode_ERROR_CODE_PERMISSION_DENIED, "you are not in this group")
		}
		return &parleyv1.MembersReply{}, nil
	})
	serve(subject.PresenceUser, subject.QueuePresence, func(m *nats.Msg) (proto.Message, error) {
		var req internalv1.UserPresenceRequest
		_ = proto.Unmarshal(m.Data, &req)
		w.mu.Lock()
		defer w.mu.Unlock()
		reply := &internalv1.UserPresenceReply{}
		if w.online[req.GetUserId()] {
			reply.SessionIds = []string{"s-" + req.GetUserId()}
		}
		return reply, nil
	})
	serve(subject.AuthSessionCheck, subject.QueueAuth, func(m *nats.Msg) (proto.Message, error) {
		var req internalv1.SessionCheckRequest
		_ = proto.Unmarshal(m.Data, &req)
		w.mu.Lock()
		defer w.mu.Unlock()
		switch {
		case w.authOff:
			return nil, errcode.New(parleyv1.ErrorCode_ERROR_CODE_UNAVAILABLE, "auth is restarting")
		case w.ended[req.GetSessionId()]:
			return nil, errcode.New(parleyv1.ErrorCode_ERROR_CODE_SESSION_REVOKED, "the session ended")
		}
		return nil, nil
	})
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return w
}

func (w *world) set(change func(w *world)) {
	w.mu.Lock()
	defer w.mu.Unlock()
	change(w)
}
