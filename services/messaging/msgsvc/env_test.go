package msgsvc_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	"github.com/parleychat/parley/libs/identity"
	"github.com/parleychat/parley/libs/proto/internalv1"
	"github.com/parleychat/parley/libs/rpc"
	"github.com/parleychat/parley/libs/service"
	"github.com/parleychat/parley/libs/subject"
	"github.com/parleychat/parley/libs/testenv"
	"github.com/parleychat/parley/protocol/convid"
	"github.com/parleychat/parley/protocol/errcode"
	"github.com/parleychat/parley/protocol/parleyv1"
	"github.com/parleychat/parley/services/messaging/msgsvc"
)

// user is an account as the gateway knows it from the session.
type user struct{ id, name string }

var (
	alice = user{"ualice", "Alice"}
	bob   = user{"ubob", "Bob"}
	carol = user{"ucarol", "Carol"}
)

// env is one NATS server with a client connection that plays the gateway.
type env struct {
	t       testing.TB
	ns      *server.Server
	nc      *nats.Conn
	seq     atomic.Int64  // for unique client keys
	lookups *atomic.Int64 // lookups the auth stand-in answered
}

// newEnv knows alice, bob, carol and the extra users (at the auth
// stand-in).
func newEnv(t testing.TB, extra ...user) *env {
	t.Helper()
	return newEnvOn(t, testenv.NATS(t), extra...)
}

// newEnvOn is newEnv on a NATS server the test configured.
func newEnvOn(t testing.TB, ns *server.Server, extra ...user) *env {
	t.Helper()
	e := &env{t: t, ns: ns}
	e.nc = testenv.Connect(t, e.ns)
	e.lookups = serveLookup(t, e.ns.ClientURL(), append([]user{alice, bob, carol}, extra...)...)
	return e
}

// serveLookup answers subject.AuthLookup for the given users.
//
// STAND-IN for the auth service: services must not import each other, so
// this test cannot start the real auth replica; it answers the lookup as
// auth does (case-insensitive name, display form back, NOT_FOUND
// otherwise). The real auth handler has its own test in services/auth, and
// the end-to-end tests run messaging against the real auth. It counts the
// lookups it answers.
func serveLookup(t testing.TB, url string, users ...user) *atomic.Int64 {
	t.Helper()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	byName := map[string]user{}
	for _, u := range users {
		byName[strings.ToLower(u.name)] = u
	}
	count := new(atomic.Int64)
	_, err = nc.QueueSubscribe(subject.AuthLookup, subject.QueueAuth, func(m *nats.Msg) {
		count.Add(1)
		var req internalv1.UserLookupRequest
		if proto.Unmarshal(m.Data, &req) != nil {
			_ = rpc.RespondError(m, errcode.New(parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "malformed"))
			return
		}
		u, ok := byName[strings.ToLower(req.Username)]
		if !ok {
			_ = rpc.RespondError(m, errcode.New(parleyv1.ErrorCode_ERROR_CODE_NOT_FOUND, "no such user"))
			return
		}
		_ = rpc.Respond(m, &internalv1.UserLookupReply{UserId: u.id, Username: u.name})
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return count
}

// replica is one running messaging service on its own connection.
type replica struct {
	svc  *msgsvc.Service
	nc   *nats.Conn
	reg  *prometheus.Registry
	stop func() // cancels Run and waits for it; idempotent
}

// testConfig is the deployed default, except that users may send without
// a rate limit: several tests send hundreds of messages as fast as they
// can (limits_test.go tests the limit itself).
func testConfig() msgsvc.Config {
	cfg := msgsvc.DefaultConfig()
	cfg.SendLimit = 0
	return cfg
}

func (e *env) start(t testing.TB, cfg msgsvc.Config) *replica {
	t.Helper()
	return e.startClock(t, cfg, nil)
}

// startClock starts a replica on clock now (nil: time.Now).
func (e *env) startClock(t testing.TB, cfg msgsvc.Config, now func() time.Time) *replica {
	t.Helper()
	nc, err := nats.Connect(e.ns.ClientURL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelError}))
	svc, err := msgsvc.New(cfg, service.Deps{NC: nc, Log: log, Registry: reg, Clock: now})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("messaging Run: %v", err)
			}
			nc.Close()
		})
	}
	t.Cleanup(stop)
	testenv.Eventually(t, 10*time.Second, "messaging ready", func() bool { return svc.Ready() == nil })
	return &replica{svc: svc, nc: nc, reg: reg, stop: stop}
}

// header is what the gateway sets from u's session.
func header(u user) nats.Header {
	return identity.Header(identity.Caller{UserID: u.id, SessionID: "s-" + u.id, Username: u.name},
		identity.Origin{GatewayID: "gw-test"})
}

// directID is the private chat's id of users a and b.
func directID(a, b string) string {
	id, err := convid.DM(a, b)
	if err != nil {
		panic(err) // test users have distinct, plain ids
	}
	return id.String()
}

func (e *env) key() string { return fmt.Sprintf("k%d", e.seq.Add(1)) }

// The calls below are exactly what the gateway does: rpc.Request with the
// client's request as body and the session's identity in headers.

func (e *env) sendReq(u user, req *parleyv1.SendRequest) (*parleyv1.SendReply, error) {
	var reply parleyv1.SendReply
	err := rpc.Request(context.Background(), e.nc, subject.MsgSend, header(u), req, &reply)
	return &reply, err
}

func (e *env) send(t testing.TB, u user, conv, text string) *parleyv1.Message {
	t.Helper()
	r, err := e.sendReq(u, &parleyv1.SendRequest{Conversation: conv, Text: text, ClientKey: e.key()})
	if err != nil {
		t.Fatalf("%s sends to %s: %v", u.name, conv, err)
	}
	return r.Message
}

func (e *env) history(u user, req *parleyv1.HistoryRequest) (*parleyv1.HistoryReply, error) {
	var reply parleyv1.HistoryReply
	err := rpc.Request(context.Background(), e.nc, subject.MsgHistory, header(u), req, &reply)
	return &reply, err
}

func (e *env) ack(u user, conv string, seq uint64) error {
	return rpc.Request(context.Background(), e.nc, subject.MsgAck, header(u), &parleyv1.AckRequest{Conversation: conv, Seq: seq}, nil)
}

// conversations reads u's whole conversation list (every page), which
// must be in ascending id order, by id.
func (e *env) conversations(t testing.TB, u user) map[string]*parleyv1.Conversation {
	t.Helper()
	list := e.listAll(u)
	out := map[string]*parleyv1.Conversation{}
	for i, c := range list {
		out[c.Id] = c
		if i > 0 && list[i-1].Id >= c.Id {
			t.Errorf("conversations of %s: %q listed after %q", u.name, c.Id, list[i-1].Id)
		}
	}
	if _, ok := out[convid.PublicRoom]; !ok {
		t.Errorf("conversations of %s: no public room in %v", u.name, list)
	}
	return out
}

// listAll reads every page of u's conversation list.
func (e *env) listAll(u user) []*parleyv1.Conversation {
	e.t.Helper()
	var out []*parleyv1.Conversation
	after := ""
	for {
		var reply parleyv1.ConversationsReply
		if err := rpc.Request(context.Background(), e.nc, subject.MsgConversations, header(u), &parleyv1.ConversationsRequest{AfterId: after}, &reply); err != nil {
			e.t.Fatalf("conversations of %s after %q: %v", u.name, after, err)
		}
		out = append(out, reply.Conversations...)
		if !reply.More {
			return out
		}
		if len(reply.Conversations) == 0 {
			e.t.Fatalf("conversations of %s after %q: an empty page with more", u.name, after)
		}
		after = reply.Conversations[len(reply.Conversations)-1].Id
	}
}

func (e *env) typing(u user, conv string) error {
	return rpc.Request(context.Background(), e.nc, subject.MsgTyping, header(u), &parleyv1.TypingRequest{Conversation: conv}, nil)
}

func (e *env) openDirect(u user, name string) (*parleyv1.Conversation, error) {
	var reply parleyv1.Conversation
	err := rpc.Request(context.Background(), e.nc, subject.MsgOpenDirect, header(u), &parleyv1.OpenDirectRequest{Username: name}, &reply)
	return &reply, err
}

// allHistory reads a conversation's whole history, paging backwards.
func (e *env) allHistory(t testing.TB, u user, conv string) []*parleyv1.Message {
	t.Helper()
	var pages [][]*parleyv1.Message
	before := uint64(0)
	for {
		r, err := e.history(u, &parleyv1.HistoryRequest{Conversation: conv, BeforeSeq: before, Limit: 200})
		if err != nil {
			t.Fatalf("history: %v", err)
		}
		pages = append(pages, r.Messages)
		if !r.More || len(r.Messages) == 0 {
			break
		}
		before = r.Messages[0].Seq
	}
	var out []*parleyv1.Message
	for i := len(pages) - 1; i >= 0; i-- {
		out = append(out, pages[i]...)
	}
	return out
}

// storedCount is the number of messages in the stream.
func (e *env) storedCount(t testing.TB) uint64 {
	t.Helper()
	js, err := jetstream.New(e.nc)
	if err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(context.Background(), subject.StreamMessages)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

// wantCode fails unless err is a wire error with code.
func wantCode(t testing.TB, err error, code parleyv1.ErrorCode) {
	t.Helper()
	var e *errcode.Error
	if !errors.As(err, &e) || e.Code != code {
		t.Fatalf("got %v, want %s", err, errcode.ShortName(code))
	}
}

// seqs lists the messages' seqs.
func seqs(ms []*parleyv1.Message) []uint64 {
	out := make([]uint64, len(ms))
	for i, m := range ms {
		out[i] = m.Seq
	}
	return out
}

// wantSeqs fails unless ms have exactly seqs from..to in order.
func wantSeqs(t testing.TB, what string, ms []*parleyv1.Message, from, to uint64) {
	t.Helper()
	ok := uint64(len(ms)) == to-from+1
	for i, m := range ms {
		ok = ok && m.Seq == from+uint64(i)
	}
	if !ok {
		t.Fatalf("%s: seqs %v, want %d..%d", what, seqs(ms), from, to)
	}
}

// events collects what arrives on subj.
type events struct {
	mu   sync.Mutex // guards msgs
	msgs []*parleyv1.Message
}

func (e *env) watch(t testing.TB, subj string) *events {
	t.Helper()
	ev := &events{}
	_, err := e.nc.Subscribe(subj, func(m *nats.Msg) {
		var me parleyv1.MessageEvent
		if err := proto.Unmarshal(m.Data, &me); err != nil {
			t.Errorf("undecodable event on %s: %v", subj, err)
			return
		}
		ev.mu.Lock()
		ev.msgs = append(ev.msgs, me.Message)
		ev.mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return ev
}

func (ev *events) get() []*parleyv1.Message {
	ev.mu.Lock()
	defer ev.mu.Unlock()
	return append([]*parleyv1.Message(nil), ev.msgs...)
}
