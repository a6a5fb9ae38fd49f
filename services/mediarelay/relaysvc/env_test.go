package relaysvc_test

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	"github.com/parleychat/parley/libs/identity"
	"github.com/parleychat/parley/libs/mediabus"
	"github.com/parleychat/parley/libs/proto/internalv1"
	"github.com/parleychat/parley/libs/rpc"
	"github.com/parleychat/parley/libs/service"
	"github.com/parleychat/parley/libs/subject"
	"github.com/parleychat/parley/libs/testenv"
	"github.com/parleychat/parley/protocol/errcode"
	"github.com/parleychat/parley/protocol/media"
	"github.com/parleychat/parley/protocol/parleyv1"
	"github.com/parleychat/parley/services/mediarelay/relaysvc"
)

// user is an account as the gateway knows it from the session.
type user struct{ id, name string }

var (
	alice = user{"ualice", "alice"}
	bob   = user{"ubob", "bob"}
	carol = user{"ucarol", "carol"}
	dave  = user{"udave", "dave"}
	erin  = user{"uerin", "erin"}
	frank = user{"ufrank", "frank"}
	grace = user{"ugrace", "grace"} // in no group: an outsider
	all   = []user{alice, bob, carol, dave, erin, frank, grace}
)

// The groups the stand-in messaging knows.
const (
	team  = "group.team"  // alice, bob, carol, dave
	crowd = "group.crowd" // alice .. frank: six members
)

// dm is the id of the private chat of two users.
func dm(a, b user) string {
	ids := []string{a.id, b.id}
	sort.Strings(ids)
	return "dm." + ids[0] + "." + ids[1]
}

// header is what the gateway sets from u's session (one of u's devices)
// and its connection.
func header(u user, session string) nats.Header {
	return identity.Header(identity.Caller{UserID: u.id, SessionID: session, Username: u.name},
		identity.Origin{RemoteAddr: "127.0.0.1:1", GatewayID: "gw-test", ConnID: "conn-" + session})
}

// messaging is the stand-in for the messaging service (not this
// helper's): it resolves conversations for calls and records the system
// messages posted.
type messaging struct {
	mu     sync.Mutex
	groups map[string][]string
	posts  []post
}

// post is one system message as messaging received it.
type post struct {
	as  string // the user it was posted as (identity header)
	req *internalv1.PostCallRequest
}

func startMessaging(t testing.TB, nc *nats.Conn) *messaging {
	t.Helper()
	w := &messaging{groups: map[string][]string{
		team:  {alice.id, bob.id, carol.id, dave.id},
		crowd: {alice.id, bob.id, carol.id, dave.id, erin.id, frank.id},
	}}
	byName := map[string]user{}
	for _, u := range all {
		byName[u.name] = u
	}
	serve := func(subj string, h func(me identity.Caller, data []byte) (proto.Message, error)) {
		if _, err := nc.QueueSubscribe(subj, subject.QueueMessaging, func(m *nats.Msg) {
			me, err := identity.Read(m.Header)
			var resp proto.Message
			if err != nil {
				err = errcode.New(parleyv1.ErrorCode_ERROR_CODE_UNAUTHENTICATED, "log in first")
			} else {
				resp, err = h(me, m.Data)
			}
			if err != nil {
				_ = rpc.RespondError(m, err)
				return
			}
			_ = rpc.Respond(m, resp)
		}); err != nil {
			t.Fatal(err)
		}
	}
	serve(subject.MsgCallResolve, func(me identity.Caller, data []byte) (proto.Message, error) {
		var req internalv1.CallResolveRequest
		if err := proto.Unmarshal(data, &req); err != nil {
			return nil, err
		}
		w.mu.Lock()
		defer w.mu.Unlock()
		conv := req.Conversation
		if req.ToUsername != "" {
			to, ok := byName[req.ToUsername]
			if !ok {
				return nil, errcode.New(parleyv1.ErrorCode_ERROR_CODE_NOT_FOUND, "no such user")
			}
			if to.id == me.UserID {
				return nil, errcode.New(parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "you cannot call yourself")
			}
			conv = dm(user{id: me.UserID}, to)
		}
		switch {
		case strings.HasPrefix(conv, "dm."):
			ids := strings.Split(conv[3:], ".")
			if !slices.Contains(ids, me.UserID) {
				return nil, errcode.New(parleyv1.ErrorCode_ERROR_CODE_PERMISSION_DENIED, "you are not in this conversation")
			}
			peer := ids[0]
			if peer == me.UserID {
				peer = ids[1]
			}
			return &internalv1.CallResolveReply{Conversation: conv, Kind: parleyv1.ConversationKind_CONVERSATION_KIND_DIRECT,
				MemberIds: ids, PeerName: strings.TrimPrefix(peer, "u")}, nil
		case strings.HasPrefix(conv, "group."):
			members, ok := w.groups[conv]
			if !ok {
				return nil, errcode.New(parleyv1.ErrorCode_ERROR_CODE_NOT_FOUND, "no such group")
			}
			if !slices.Contains(members, me.UserID) {
				return nil, errcode.New(parleyv1.ErrorCode_ERROR_CODE_PERMISSION_DENIED, "you are not in this group")
			}
			return &internalv1.CallResolveReply{Conversation: conv, Kind: parleyv1.ConversationKind_CONVERSATION_KIND_GROUP,
				MemberIds: slices.Clone(members)}, nil
		}
		return nil, errcode.New(parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "calls are in private chats and groups")
	})
	serve(subject.MsgPostCall, func(me identity.Caller, data []byte) (proto.Message, error) {
		var req internalv1.PostCallRequest
		if err := proto.Unmarshal(data, &req); err != nil {
			return nil, err
		}
		w.mu.Lock()
		defer w.mu.Unlock()
		for _, p := range w.posts {
			if p.req.ClientKey == req.ClientKey {
				return &parleyv1.Message{Conversation: req.Conversation, Text: p.req.Text, System: true, Call: p.req.Call}, nil
			}
		}
		w.posts = append(w.posts, post{as: me.UserID, req: &req})
		return &parleyv1.Message{Conversation: req.Conversation, Text: req.Text, System: true, Call: req.Call}, nil
	})
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return w
}

// postsAbout lists the system messages about call id.
func (w *messaging) postsAbout(id string) []post {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []post
	for _, p := range w.posts {
		if p.req.GetCall().GetCallId() == id {
			out = append(out, p)
		}
	}
	return out
}

// waitPost waits for the system message of outcome about call id.
func (e *env) waitPost(id string, outcome parleyv1.CallEndReason) post {
	e.t.Helper()
	var found post
	testenv.Eventually(e.t, 10*time.Second, fmt.Sprintf("a %v system message about %s", outcome, id), func() bool {
		for _, p := range e.msg.postsAbout(id) {
			if p.req.GetCall().GetOutcome() == outcome {
				found = p
				return true
			}
		}
		return false
	})
	return found
}

// replica is one running media relay.
type replica struct {
	svc  *relaysvc.Service
	nc   *nats.Conn
	reg  *prometheus.Registry
	stop func()
}

// env is a NATS with JetStream, the stand-in messaging, relay replicas
// and a connection playing the gateway.
type env struct {
	t        *testing.T
	ns       *server.Server
	nc       *nats.Conn // the gateway's
	msg      *messaging
	cfg      relaysvc.Config
	replicas []*replica
	events   map[string]*events
	kv       jetstream.KeyValue
	// setup, when set, is applied to each replica started from then on,
	// before it runs (test hooks).
	setup func(*relaysvc.Service)
}

// testConfig is the deployed default, except that participants are not
// timed out (tests that need it set their own timeout).
func testConfig() relaysvc.Config {
	cfg := relaysvc.DefaultConfig()
	cfg.ParticipantTimeout = time.Hour
	cfg.RequestTimeout = 3 * time.Second
	return cfg
}

// newEnv starts n replicas (ids r1, r2, ...) with testConfig changed by
// edit, and listens to every user's call events.
func newEnv(t *testing.T, n int, edit func(*relaysvc.Config)) *env {
	t.Helper()
	return newEnvSetup(t, n, edit, nil)
}

// newEnvSetup is newEnv with setup applied to every replica before it
// runs (test hooks).
func newEnvSetup(t *testing.T, n int, edit func(*relaysvc.Config), setup func(*relaysvc.Service)) *env {
	t.Helper()
	e := &env{t: t, ns: testenv.NATS(t), cfg: testConfig(), events: map[string]*events{}, setup: setup}
	if edit != nil {
		edit(&e.cfg)
	}
	e.nc = testenv.Connect(t, e.ns)
	e.msg = startMessaging(t, testenv.Connect(t, e.ns))
	for _, u := range all {
		e.events[u.id] = e.listen(u)
	}
	for i := range n {
		e.start(fmt.Sprintf("r%d", i+1))
	}
	js, err := jetstream.New(e.nc)
	if err != nil {
		t.Fatal(err)
	}
	if e.kv, err = js.KeyValue(t.Context(), subject.BucketCalls); err != nil {
		t.Fatal(err)
	}
	return e
}

// start runs a replica named id on its own connection.
func (e *env) start(id string) *replica {
	e.t.Helper()
	cfg := e.cfg
	cfg.ReplicaID = id
	nc := testenv.Connect(e.t, e.ns)
	reg := prometheus.NewRegistry()
	log := slog.New(slog.NewTextHandler(e.t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	svc, err := relaysvc.New(cfg, service.Deps{NC: nc, Log: log, Registry: reg,
		Runner: service.RunnerConfig{DrainTimeout: 2 * time.Second}})
	if err != nil {
		e.t.Fatal(err)
	}
	if e.setup != nil {
		e.setup(svc)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				e.t.Errorf("media relay %s Run: %v", id, err)
			}
		})
	}
	e.t.Cleanup(stop)
	testenv.Eventually(e.t, 20*time.Second, "media relay ready", func() bool { return svc.Ready() == nil })
	r := &replica{svc: svc, nc: nc, reg: reg, stop: stop}
	e.replicas = append(e.replicas, r)
	return r
}

// call is what the gateway does: rpc.Request with u's identity headers.
func (e *env) call(u user, subj string, req, resp proto.Message) error {
	return e.callFrom(u, "s-"+u.id, subj, req, resp)
}

// callFrom is call from u's session (device) session.
func (e *env) callFrom(u user, session, subj string, req, resp proto.Message) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return rpc.Request(ctx, e.nc, subj, header(u, session), req, resp)
}

// code is err's wire code (UNSPECIFIED for nil).
func code(err error) parleyv1.ErrorCode {
	if err == nil {
		return parleyv1.ErrorCode_ERROR_CODE_UNSPECIFIED
	}
	return errcode.Code(err)
}

// placeErr places a call from u to a conversation (with a dot) or a user
// name.
func (e *env) placeErr(u user, to string) (*parleyv1.CallJoined, error) {
	req := &parleyv1.PlaceCallRequest{}
	if strings.Contains(to, ".") {
		req.Conversation = to
	} else {
		req.ToUsername = to
	}
	var j parleyv1.CallJoined
	err := e.call(u, subject.CallPlace, req, &j)
	return &j, err
}

func (e *env) place(u user, to string) *parleyv1.CallJoined {
	e.t.Helper()
	j, err := e.placeErr(u, to)
	if err != nil {
		e.t.Fatalf("%s places a call to %s: %v", u.name, to, err)
	}
	checkJoined(e.t, j)
	return j
}

func (e *env) joinErr(u user, id string) (*parleyv1.CallJoined, error) {
	var j parleyv1.CallJoined
	err := e.call(u, subject.CallJoin, &parleyv1.JoinCallRequest{CallId: id}, &j)
	return &j, err
}

func (e *env) join(u user, id string) *parleyv1.CallJoined {
	e.t.Helper()
	j, err := e.joinErr(u, id)
	if err != nil {
		e.t.Fatalf("%s joins %s: %v", u.name, id, err)
	}
	checkJoined(e.t, j)
	return j
}

func (e *env) reject(u user, id string) error {
	return e.call(u, subject.CallReject, &parleyv1.RejectCallRequest{CallId: id}, nil)
}

func (e *env) leave(u user, id string) error {
	return e.call(u, subject.CallLeave, &parleyv1.LeaveCallRequest{CallId: id}, nil)
}

func (e *env) mute(u user, id string, muted bool) error {
	return e.call(u, subject.CallMute, &parleyv1.MuteCallRequest{CallId: id, Muted: muted}, nil)
}

// must fails the test on err.
func (e *env) must(what string, err error) {
	e.t.Helper()
	if err != nil {
		e.t.Fatalf("%s: %v", what, err)
	}
}

// checkJoined checks what a client needs from CallJoined: a stream and a
// key to seal with.
func checkJoined(t testing.TB, j *parleyv1.CallJoined) {
	t.Helper()
	if j.GetStreamId() == 0 || len(j.GetMediaKey()) != media.KeyLen || len(j.GetCall().GetCallId()) != 25 {
		t.Fatalf("CallJoined without a usable stream, key or call id: %v", j)
	}
}

// record reads call id's record from KV (nil when there is none).
func (e *env) record(id string) *internalv1.CallRecord {
	e.t.Helper()
	en, err := e.kv.Get(context.Background(), "call."+id)
	if err != nil {
		return nil
	}
	rec := new(internalv1.CallRecord)
	if err := proto.Unmarshal(en.Value(), rec); err != nil {
		e.t.Fatal(err)
	}
	return rec
}

// events collects the CallEvents one user receives.
type events struct {
	mu  sync.Mutex
	got []*parleyv1.CallEvent
}

func (e *env) listen(u user) *events {
	e.t.Helper()
	ev := &events{}
	if _, err := e.nc.Subscribe(subject.UserCallEvents(u.id), func(m *nats.Msg) {
		var ce parleyv1.CallEvent
		if proto.Unmarshal(m.Data, &ce) == nil {
			ev.mu.Lock()
			ev.got = append(ev.got, &ce)
			ev.mu.Unlock()
		}
	}); err != nil {
		e.t.Fatal(err)
	}
	if err := e.nc.Flush(); err != nil {
		e.t.Fatal(err)
	}
	return ev
}

// waitEvent waits until u received an event of kind about call id that
// satisfies ok (nil: any) and returns it.
func (e *env) waitEvent(u user, kind parleyv1.CallEvent_Kind, id string, ok func(*parleyv1.Call) bool) *parleyv1.Call {
	e.t.Helper()
	ev := e.events[u.id]
	var found *parleyv1.Call
	testenv.Eventually(e.t, 10*time.Second, fmt.Sprintf("%s gets a %v event about %s", u.name, kind, id), func() bool {
		ev.mu.Lock()
		defer ev.mu.Unlock()
		for _, ce := range ev.got {
			if ce.GetKind() == kind && (id == "" || ce.GetCall().GetCallId() == id) && (ok == nil || ok(ce.GetCall())) {
				found = ce.GetCall()
				return true
			}
		}
		return false
	})
	return found
}

// eventCount counts the events of kind u received about call id.
func (e *env) eventCount(u user, kind parleyv1.CallEvent_Kind, id string) int {
	ev := e.events[u.id]
	ev.mu.Lock()
	defer ev.mu.Unlock()
	n := 0
	for _, ce := range ev.got {
		if ce.GetKind() == kind && ce.GetCall().GetCallId() == id {
			n++
		}
	}
	return n
}

// userIDs lists a call's participants' user ids.
func userIDs(c *parleyv1.Call) []string {
	var ids []string
	for _, p := range c.GetParticipants() {
		ids = append(ids, p.GetUserId())
	}
	sort.Strings(ids)
	return ids
}

func ids(us ...user) []string {
	var out []string
	for _, u := range us {
		out = append(out, u.id)
	}
	sort.Strings(out)
	return out
}

// downlink is a gateway's subscription to a call's MediaDown: what the
// owner forwarded.
type downlink struct {
	mu      sync.Mutex
	audio   []received
	rosters []mediabus.Roster // in the order they came, streams sorted
}

// received is one forwarded Audio message.
type received struct {
	h    media.Header
	data []byte
	at   time.Time
}

func (e *env) downlink(id string) *downlink {
	e.t.Helper()
	d := &downlink{}
	sub, err := e.nc.Subscribe(subject.MediaDown(id), func(m *nats.Msg) {
		d.mu.Lock()
		defer d.mu.Unlock()
		switch mediabus.KindOf(m.Data) {
		case mediabus.KindAudio:
			a, err := mediabus.ParseAudio(m.Data)
			if err == nil {
				d.audio = append(d.audio, received{h: a.Header, data: slices.Clone(m.Data), at: time.Now()})
			}
		case mediabus.KindRoster:
			r, err := mediabus.ParseRoster(m.Data, nil)
			if err == nil {
				slices.Sort(r.Streams)
				d.rosters = append(d.rosters, r)
			}
		}
	})
	if err != nil {
		e.t.Fatal(err)
	}
	_ = sub.SetPendingLimits(-1, -1)
	e.t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := e.nc.Flush(); err != nil {
		e.t.Fatal(err)
	}
	return d
}

// audioFrom returns the forwarded packets of stream (0: all).
func (d *downlink) audioFrom(stream uint32) []received {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []received
	for _, r := range d.audio {
		if stream == 0 || r.h.StreamID == stream {
			out = append(out, r)
		}
	}
	return out
}

// hasRoster reports whether a roster of exactly these streams arrived.
func (d *downlink) hasRoster(streams ...uint32) bool {
	want := slices.Clone(streams)
	slices.Sort(want)
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, r := range d.rosters {
		if slices.Equal(r.Streams, want) {
			return true
		}
	}
	return false
}

// rosterRevs returns the revisions of the rosters that came, in order.
func (d *downlink) rosterRevs() []uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	revs := make([]uint64, len(d.rosters))
	for i, r := range d.rosters {
		revs[i] = r.Rev
	}
	return revs
}

// recordRev returns the revision of call id's record now.
func (e *env) recordRev(id string) uint64 {
	e.t.Helper()
	en, err := e.kv.Get(context.Background(), "call."+id)
	if err != nil {
		e.t.Fatal(err)
	}
	return en.Revision()
}

// audio is an Audio message as a gateway publishes it for stream.
func audio(stream, seq uint32, level uint8, voice bool) []byte {
	h := media.Header{Type: media.TypeAudio, Level: level, StreamID: stream, Seq: seq, Timestamp: seq * media.FrameTicks}
	if voice {
		h.Flags = media.FlagVoice
	}
	return mediabus.AppendAudio(nil, h, []byte(fmt.Sprintf("opus frame %d of %d", seq, stream)))
}

// send publishes one Audio message on the call's MediaUp, as a gateway.
func (e *env) send(id string, stream, seq uint32, level uint8, voice bool) {
	e.t.Helper()
	if err := e.nc.Publish(subject.MediaUp(id), audio(stream, seq, level, voice)); err != nil {
		e.t.Fatal(err)
	}
}

// alive publishes a gateway's Alive for streams of call id.
func (e *env) alive(id string, streams ...uint32) {
	e.t.Helper()
	if err := e.nc.Publish(subject.MediaUp(id), mediabus.AppendAlive(nil, "gw-test", streams)); err != nil {
		e.t.Fatal(err)
	}
}

// forwarded sends a marker packet from stream (a participant's, unmuted)
// and waits until it comes back: everything the gateway published before
// it has been handled by the owner (one subscription, in order).
func (e *env) forwarded(d *downlink, id string, stream, seq uint32) {
	e.t.Helper()
	testenv.Eventually(e.t, 10*time.Second, fmt.Sprintf("marker %d of stream %d forwarded", seq, stream), func() bool {
		for _, r := range d.audioFrom(stream) {
			if r.h.Seq == seq {
				return true
			}
		}
		e.send(id, stream, seq, 20, true)
		time.Sleep(50 * time.Millisecond)
		return false
	})
}
