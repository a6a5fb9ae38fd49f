package server_test

// Stand-ins for the auth and presence services.
//
// The gateway module may not import services/auth or services/presence (the
// gateway and the services meet only on NATS), so these tests answer the
// auth and presence subjects with the small NATS responders below. They
// implement just enough of each service's contract for the gateway's side to
// be observed; they are not the services. The integration tests in tests/
// run the gateway against the real ones.

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"

	"github.com/parleychat/parley/libs/proto/internalv1"
	"github.com/parleychat/parley/libs/rpc"
	"github.com/parleychat/parley/libs/subject"
	"github.com/parleychat/parley/protocol/errcode"
	"github.com/parleychat/parley/protocol/parleyv1"
)

// standInAuth answers the auth subjects. Every username logs in with any
// password except "wrong" (BAD_CREDENTIALS) and "slow-down"
// (RATE_LIMITED, retry after 1500 ms); user ids are "u-<username>" and each
// login gets a new session id and the token "tok-<username>". Resume
// accepts any token "tok-<username>": it continues the latest session
// issued with that token (SESSION_REVOKED once logged out), or starts one.
//
// Like the real service, a logout publishes a SessionKick{SESSION_REVOKED}
// for the session naming the connection that asked (from the
// Parley-Gateway and Parley-Conn headers), so that the session's other
// connections end; with takeover set, so does a resume
// (LOGGED_IN_ELSEWHERE).
type standInAuth struct {
	nc *nats.Conn

	mu       sync.Mutex // guards the fields below
	n        int
	logins   []authCall
	logouts  []authCall
	sessions map[string]*parleyv1.Session // by token: the latest session issued with it
	revoked  map[string]bool              // session ids logged out
	takeover bool                         // a resume kicks the session's other connections
}

// authCall is one request as the stand-in received it.
type authCall struct {
	header nats.Header
	data   []byte
}

func startStandInAuth(t testing.TB, nc *nats.Conn) *standInAuth {
	t.Helper()
	a := &standInAuth{nc: nc, sessions: map[string]*parleyv1.Session{}, revoked: map[string]bool{}}
	sub := func(subj string, h nats.MsgHandler) {
		s, err := nc.QueueSubscribe(subj, subject.QueueAuth, h)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Unsubscribe() })
	}
	sub(subject.AuthLogin, func(m *nats.Msg) {
		req := new(parleyv1.LoginRequest)
		if err := proto.Unmarshal(m.Data, req); err != nil {
			_ = rpc.RespondError(m, errcode.New(parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "bad body"))
			return
		}
		a.record(&a.logins, m)
		switch req.GetPassword() {
		case "wrong":
			_ = rpc.RespondError(m, errcode.New(parleyv1.ErrorCode_ERROR_CODE_BAD_CREDENTIALS, "unknown user or wrong password"))
			return
		case "slow-down":
			_ = rpc.RespondError(m, &errcode.Error{Code: parleyv1.ErrorCode_ERROR_CODE_RATE_LIMITED, Message: "too many attempts", RetryAfter: 1500})
			return
		}
		_ = rpc.Respond(m, &internalv1.AuthReply{Session: a.session(req.GetUsername(), false)})
	})
	sub(subject.AuthRegister, func(m *nats.Msg) {
		req := new(parleyv1.RegisterRequest)
		_ = proto.Unmarshal(m.Data, req)
		a.record(&a.logins, m)
		_ = rpc.Respond(m, &internalv1.AuthReply{Session: a.session(req.GetUsername(), false)})
	})
	sub(subject.AuthResume, func(m *nats.Msg) {
		req := new(parleyv1.ResumeRequest)
		_ = proto.Unmarshal(m.Data, req)
		a.record(&a.logins, m)
		var name string
		if _, err := fmt.Sscanf(req.GetToken(), "tok-%s", &name); err != nil {
			_ = rpc.RespondError(m, errcode.New(parleyv1.ErrorCode_ERROR_CODE_TOKEN_INVALID, "bad token"))
			return
		}
		s, err := a.resume(req.GetToken(), name)
		if err != nil {
			_ = rpc.RespondError(m, err)
			return
		}
		a.mu.Lock()
		takeover := a.takeover
		a.mu.Unlock()
		if takeover {
			a.kick(t, m.Header, s.GetUserId(), s.GetSessionId(), parleyv1.ErrorCode_ERROR_CODE_LOGGED_IN_ELSEWHERE, "your session was resumed elsewhere")
		}
		_ = rpc.Respond(m, &internalv1.AuthReply{Session: s})
	})
	sub(subject.AuthLogout, func(m *nats.Msg) {
		a.record(&a.logouts, m)
		user, session := m.Header.Get(subject.HeaderUserID), m.Header.Get(subject.HeaderSessionID)
		a.mu.Lock()
		a.revoked[session] = true
		a.mu.Unlock()
		a.kick(t, m.Header, user, session, parleyv1.ErrorCode_ERROR_CODE_SESSION_REVOKED, "you logged out on another device")
		_ = rpc.Respond(m, nil)
	})
	return a
}

// kick publishes a SessionKick for session sparing the connection the
// request came from, and flushes it before the request is answered.
func (a *standInAuth) kick(t testing.TB, h nats.Header, user, session string, reason parleyv1.ErrorCode, msg string) {
	b, err := proto.Marshal(&internalv1.SessionKick{
		UserId: user, SessionId: session, Reason: reason, Message: msg,
		ExceptGatewayId: h.Get(subject.HeaderGatewayID), ExceptConnId: h.Get(subject.HeaderConnID),
	})
	if err == nil {
		err = a.nc.Publish(subject.SessionKick(user), b)
	}
	if err == nil {
		err = a.nc.Flush()
	}
	if err != nil {
		t.Errorf("stand-in auth: publish kick: %v", err)
	}
}

// resume continues the latest session issued with token, or starts one.
func (a *standInAuth) resume(token, username string) (*parleyv1.Session, error) {
	a.mu.Lock()
	prev := a.sessions[token]
	revoked := prev != nil && a.revoked[prev.GetSessionId()]
	a.mu.Unlock()
	switch {
	case revoked:
		return nil, errcode.New(parleyv1.ErrorCode_ERROR_CODE_SESSION_REVOKED, "the session was logged out")
	case prev == nil:
		return a.session(username, true), nil
	}
	s := proto.Clone(prev).(*parleyv1.Session)
	s.Resumed = true
	return s, nil
}

func (a *standInAuth) setTakeover(v bool) {
	a.mu.Lock()
	a.takeover = v
	a.mu.Unlock()
}

func (a *standInAuth) session(username string, resumed bool) *parleyv1.Session {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.n++
	s := &parleyv1.Session{
		UserId:    "u-" + username,
		Username:  username,
		SessionId: fmt.Sprintf("s-%d", a.n),
		Token:     "tok-" + username,
		Resumed:   resumed,
	}
	a.sessions[s.Token] = s
	return s
}

func (a *standInAuth) record(into *[]authCall, m *nats.Msg) {
	a.mu.Lock()
	defer a.mu.Unlock()
	*into = append(*into, authCall{header: m.Header, data: slices.Clone(m.Data)})
}

func (a *standInAuth) Logins() []authCall {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.logins)
}

func (a *standInAuth) Logouts() []authCall {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.logouts)
}

// standInPresence answers the presence subjects from an in-memory map of
// connections and publishes PresenceChange events with increasing seq when
// a user's first connection arrives or last one goes, like the real service.
// Extra offline-irrelevant users can be preloaded into the online list.
//
// The list is paged like the real service's: users sorted by id, the cursor
// is the offset of the next page, limit 0 means 500 and above 1000 means
// 1000, each page carries the seq at the time it was read. With dupes set,
// every page after the first starts with the previous page's last user
// again, as a Redis HSCAN walk may return a user twice.
type standInPresence struct {
	nc *nats.Conn

	mu          sync.Mutex // guards the fields below
	seq         uint64
	conns       map[string]*internalv1.Conn // by conn id
	extra       []*parleyv1.OnlineUser      // preloaded users listed as online
	dupes       bool                        // repeat a user across pages
	lists       []*internalv1.PresenceListRequest
	afterPage   func(page int) // called after each list page is read, before it is answered
	connects    []*internalv1.Conn
	disconnects []*internalv1.PresenceDisconnect
	heartbeats  []*internalv1.GatewayHeartbeat
	resyncs     []*internalv1.GatewayResync
	resync      bool // answer heartbeats with resync=true

	listHandler nats.MsgHandler
	listSub     *nats.Subscription // nil while the list is "down" (no responder)
}

// stopList takes the list responder away: requests get no responders, as
// while presence restarts.
func (p *standInPresence) stopList() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.listSub != nil {
		_ = p.listSub.Unsubscribe()
		p.listSub = nil
	}
}

// startList (re)subscribes the list responder.
func (p *standInPresence) startList(t testing.TB) {
	s, err := p.nc.QueueSubscribe(subject.PresenceList, subject.QueuePresence, p.listHandler)
	if err != nil {
		t.Fatal(err)
	}
	_ = p.nc.Flush()
	p.mu.Lock()
	p.listSub = s
	p.mu.Unlock()
	t.Cleanup(func() { _ = s.Unsubscribe() })
}

func startStandInPresence(t testing.TB, nc *nats.Conn) *standInPresence {
	t.Helper()
	p := &standInPresence{nc: nc, conns: make(map[string]*internalv1.Conn)}
	sub := func(subj string, h nats.MsgHandler) {
		s, err := nc.QueueSubscribe(subj, subject.QueuePresence, h)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Unsubscribe() })
	}
	sub(subject.PresenceConnect, func(m *nats.Msg) {
		req := new(internalv1.PresenceConnect)
		_ = proto.Unmarshal(m.Data, req)
		p.mu.Lock()
		p.connects = append(p.connects, req.GetConn())
		first := p.sessionsLocked(req.GetConn().GetUserId()) == 0
		p.conns[req.GetConn().GetConnId()] = req.GetConn()
		if first {
			p.publishLocked(req.GetConn(), true)
		}
		p.mu.Unlock()
		_ = rpc.Respond(m, nil)
	})
	sub(subject.PresenceDisconnect, func(m *nats.Msg) {
		req := new(internalv1.PresenceDisconnect)
		_ = proto.Unmarshal(m.Data, req)
		p.mu.Lock()
		p.disconnects = append(p.disconnects, req)
		if c := p.conns[req.GetConnId()]; c != nil {
			delete(p.conns, req.GetConnId())
			if p.sessionsLocked(c.GetUserId()) == 0 {
				p.publishLocked(c, false)
			}
		}
		p.mu.Unlock()
		_ = rpc.Respond(m, nil)
	})
	p.listHandler = func(m *nats.Msg) {
		req := new(internalv1.PresenceListRequest)
		if err := proto.Unmarshal(m.Data, req); err != nil {
			_ = rpc.RespondError(m, errcode.New(parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "bad body"))
			return
		}
		reply, n, hook, err := p.page(req)
		if err != nil {
			_ = rpc.RespondError(m, err)
			return
		}
		if hook != nil {
			hook(n)
		}
		_ = rpc.Respond(m, reply)
	}
	p.startList(t)
	sub(subject.PresenceHeartbeat, func(m *nats.Msg) {
		req := new(internalv1.GatewayHeartbeat)
		_ = proto.Unmarshal(m.Data, req)
		p.mu.Lock()
		p.heartbeats = append(p.heartbeats, req)
		resync := p.resync
		p.mu.Unlock()
		_ = rpc.Respond(m, &internalv1.GatewayHeartbeatReply{Resync: resync})
	})
	sub(subject.PresenceResync, func(m *nats.Msg) {
		req := new(internalv1.GatewayResync)
		_ = proto.Unmarshal(m.Data, req)
		p.mu.Lock()
		p.resyncs = append(p.resyncs, req)
		p.mu.Unlock()
		_ = rpc.Respond(m, nil)
	})
	return p
}

func (p *standInPresence) sessionsLocked(userID string) int {
	n := 0
	for _, c := range p.conns {
		if c.GetUserId() == userID {
			n++
		}
	}
	return n
}

// publishLocked publishes a change while holding mu, so seq order is
// publish order.
func (p *standInPresence) publishLocked(c *internalv1.Conn, online bool) {
	p.seq++
	ev := &parleyv1.PresenceChange{
		User:   &parleyv1.OnlineUser{UserId: c.GetUserId(), Username: c.GetUsername(), Sessions: uint32(p.sessionsLocked(c.GetUserId()))},
		Online: online,
		Seq:    p.seq,
	}
	b, _ := proto.Marshal(ev)
	_ = p.nc.Publish(subject.PresenceEvents, b)
}

// page answers one list request; it also returns how many list requests
// were answered so far and the afterPage hook.
func (p *standInPresence) page(req *internalv1.PresenceListRequest) (*internalv1.PresenceListReply, int, func(int), error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.lists = append(p.lists, req)
	all := slices.Clone(p.extra)
	seen := map[string]*parleyv1.OnlineUser{}
	for _, c := range p.conns {
		u := seen[c.GetUserId()]
		if u == nil {
			u = &parleyv1.OnlineUser{UserId: c.GetUserId(), Username: c.GetUsername()}
			seen[c.GetUserId()] = u
			all = append(all, u)
		}
		u.Sessions++
	}
	slices.SortFunc(all, func(a, b *parleyv1.OnlineUser) int { return strings.Compare(a.GetUserId(), b.GetUserId()) })
	off := 0
	if req.GetCursor() != "" {
		var err error
		off, err = strconv.Atoi(req.GetCursor())
		if err != nil || off < 0 || off > len(all) {
			return nil, 0, nil, errcode.New(parleyv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "malformed list cursor")
		}
	}
	limit := int(req.GetLimit())
	switch {
	case limit == 0:
		limit = 500
	case limit > 1000:
		limit = 1000
	}
	start, end := off, min(off+limit, len(all))
	if p.dupes && start > 0 {
		start--
	}
	reply := &internalv1.PresenceListReply{Seq: p.seq, Users: all[start:end]}
	if end < len(all) {
		reply.NextCursor = strconv.Itoa(end)
	}
	return reply, len(p.lists), p.afterPage, nil
}

// Lists returns the list requests received so far.
func (p *standInPresence) Lists() []*internalv1.PresenceListRequest {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.lists)
}

func (p *standInPresence) preload(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := range n {
		p.extra = append(p.extra, &parleyv1.OnlineUser{UserId: fmt.Sprintf("u-extra%d", i), Username: fmt.Sprintf("extra%d", i), Sessions: 1})
	}
}

func (p *standInPresence) setResync(v bool) {
	p.mu.Lock()
	p.resync = v
	p.mu.Unlock()
}

func (p *standInPresence) Connects() []*internalv1.Conn {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.connects)
}

func (p *standInPresence) Disconnected(connID string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, d := range p.disconnects {
		if d.GetConnId() == connID {
			return true
		}
	}
	return false
}

func (p *standInPresence) Heartbeats() []*internalv1.GatewayHeartbeat {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.heartbeats)
}

func (p *standInPresence) Resyncs() []*internalv1.GatewayResync {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.resyncs)
}

// connOf returns the presence record the gateway registered for a session.
func (p *standInPresence) connOf(sessionID string) *internalv1.Conn {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.connects {
		if c.GetSessionId() == sessionID {
			return c
		}
	}
	return nil
}
