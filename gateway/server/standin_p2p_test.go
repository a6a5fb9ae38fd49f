package server_test

// Stand-ins for the rendezvous (direct sessions, docs/protocol.md §20) and
// for auth's device key subjects, which the gateway may not import: NATS
// responders with just enough of the contract for the gateway's side to
// be observed. They are not the services.
//
//   - register_device (auth's queue group): answers DeviceKeysReply with
//     the caller (identity headers) and one device "d-<name>" holding the
//     key sent; device_keys: the user "u-<username>" with no devices, or
//     NOT_FOUND for "nobody".
//   - p2p_open: a new session "p<n>" offered by the caller (side "a") to
//     the user "u-<to_username>", OFFERED; "nobody": NOT_FOUND.
//   - p2p_answer: by the session's peer only (else NOT_FOUND): accept ->
//     ACCEPTED, side "b"; decline -> CLOSED (REJECTED).
//   - p2p_update: the session as the caller's side sees it; NOT_FOUND for
//     unknown or closed sessions and other users.
//   - p2p_close: NOT_FOUND as for update; else the session is closed and,
//     unless quietClose, a P2PEvent{CLOSED} is published to both users
//     (flushed before the reply).
//
// Every request is recorded with its headers.

import (
	"fmt"
	"sync"
	"testing"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"

	"github.com/parleychat/parley/libs/rpc"
	"github.com/parleychat/parley/libs/subject"
	"github.com/parleychat/parley/protocol/errcode"
	"github.com/parleychat/parley/protocol/parleyv1"
)

type standInRendezvous struct {
	t  testing.TB
	nc *nats.Conn

	mu         sync.Mutex // guards the fields below
	n          int
	sessions   map[string]*standInP2P
	calls      []msgCall
	quietClose bool // p2p_close publishes no CLOSED events
}

// standInP2P is one session: the users of sides a and b.
type standInP2P struct {
	id       string
	a, b     string // user ids
	aName    string
	bName    string
	state    parleyv1.P2PSession_State
	closedBy parleyv1.P2PSession_CloseReason
}

var errNoSession = errcode.New(parleyv1.ErrorCode_ERROR_CODE_NOT_FOUND, "no such session")

func startStandInRendezvous(t testing.TB, nc *nats.Conn) *standInRendezvous {
	t.Helper()
	rv := &standInRendezvous{t: t, nc: nc, sessions: map[string]*standInP2P{}}
	handle := func(subj, queue string, h func(msg *nats.Msg) (proto.Message, error)) {
		s, err := nc.QueueSubscribe(subj, queue, func(msg *nats.Msg) {
			rv.mu.Lock()
			rv.calls = append(rv.calls, msgCall{subject: msg.Subject, header: msg.Header, data: msg.Data})
			rv.mu.Unlock()
			reply, err := h(msg)
			if err != nil {
				_ = rpc.RespondError(msg, err)
				return
			}
			_ = rpc.Respond(msg, reply)
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Unsubscribe() })
	}
	handle(subject.AuthDeviceRegister, subject.QueueAuth, func(msg *nats.Msg) (proto.Message, error) {
		req := new(parleyv1.RegisterDeviceRequest)
		if err := proto.Unmarshal(msg.Data, req); err != nil {
			return nil, errBadBody
		}
		name := msg.Header.Get(subject.HeaderUsername)
		return &parleyv1.DeviceKeysReply{UserId: msg.Header.Get(subject.HeaderUserID), Username: name,
			Devices: []*parleyv1.DeviceKey{{DeviceId: "d-" + name, PublicKey: req.GetPublicKey(), Name: req.GetName()}}}, nil
	})
	handle(subject.AuthDeviceKeys, subject.QueueAuth, func(msg *nats.Msg) (proto.Message, error) {
		req := new(parleyv1.DeviceKeysRequest)
		if err := proto.Unmarshal(msg.Data, req); err != nil {
			return nil, errBadBody
		}
		if req.GetUsername() == "nobody" {
			return nil, errcode.New(parleyv1.ErrorCode_ERROR_CODE_NOT_FOUND, "no such user")
		}
		return &parleyv1.DeviceKeysReply{UserId: "u-" + req.GetUsername(), Username: req.GetUsername()}, nil
	})
	handle(subject.P2POpen, subject.QueueRendezvous, func(msg *nats.Msg) (proto.Message, error) {
		req := new(parleyv1.P2POpenRequest)
		if err := proto.Unmarshal(msg.Data, req); err != nil {
			return nil, errBadBody
		}
		if req.GetToUsername() == "nobody" {
			return nil, errcode.New(parleyv1.ErrorCode_ERROR_CODE_NOT_FOUND, "no such user")
		}
		rv.mu.Lock()
		defer rv.mu.Unlock()
		rv.n++
		s := &standInP2P{id: fmt.Sprintf("p%d", rv.n), a: msg.Header.Get(subject.HeaderUserID), aName: msg.Header.Get(subject.HeaderUsername),
			b: "u-" + req.GetToUsername(), bName: req.GetToUsername(), state: parleyv1.P2PSession_STATE_OFFERED}
		rv.sessions[s.id] = s
		return s.view("a"), nil
	})
	handle(subject.P2PAnswer, subject.QueueRendezvous, func(msg *nats.Msg) (proto.Message, error) {
		req := new(parleyv1.P2PAnswerRequest)
		if err := proto.Unmarshal(msg.Data, req); err != nil {
			return nil, errBadBody
		}
		rv.mu.Lock()
		defer rv.mu.Unlock()
		s := rv.sessions[req.GetSessionId()]
		if s == nil || s.b != msg.Header.Get(subject.HeaderUserID) || s.state != parleyv1.P2PSession_STATE_OFFERED {
			return nil, errNoSession
		}
		s.state = parleyv1.P2PSession_STATE_ACCEPTED
		if !req.GetAccept() {
			s.state, s.closedBy = parleyv1.P2PSession_STATE_CLOSED, parleyv1.P2PSession_CLOSE_REASON_REJECTED
		}
		return s.view("b"), nil
	})
	handle(subject.P2PUpdate, subject.QueueRendezvous, func(msg *nats.Msg) (proto.Message, error) {
		req := new(parleyv1.P2PUpdateRequest)
		if err := proto.Unmarshal(msg.Data, req); err != nil {
			return nil, errBadBody
		}
		rv.mu.Lock()
		defer rv.mu.Unlock()
		s, side := rv.live(req.GetSessionId(), msg.Header)
		if s == nil {
			return nil, errNoSession
		}
		return s.view(side), nil
	})
	handle(subject.P2PClose, subject.QueueRendezvous, func(msg *nats.Msg) (proto.Message, error) {
		req := new(parleyv1.P2PCloseRequest)
		if err := proto.Unmarshal(msg.Data, req); err != nil {
			return nil, errBadBody
		}
		rv.mu.Lock()
		s, _ := rv.live(req.GetSessionId(), msg.Header)
		if s != nil {
			s.state, s.closedBy = parleyv1.P2PSession_STATE_CLOSED, parleyv1.P2PSession_CLOSE_REASON_CLOSED
		}
		quiet := rv.quietClose
		rv.mu.Unlock()
		if s == nil {
			return nil, errNoSession
		}
		if !quiet {
			for _, side := range []string{"a", "b"} {
				rv.publishEvent(s.user(side), &parleyv1.P2PEvent{Kind: parleyv1.P2PEvent_KIND_CLOSED, Session: s.view(side)})
			}
			if err := nc.Flush(); err != nil {
				t.Errorf("flush: %v", err)
			}
		}
		return nil, nil
	})
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return rv
}

// live is the session id if it is open and the caller is one of its
// users, with the caller's side (rv.mu held).
func (rv *standInRendezvous) live(id string, h nats.Header) (*standInP2P, string) {
	s := rv.sessions[id]
	if s == nil || s.state == parleyv1.P2PSession_STATE_CLOSED {
		return nil, ""
	}
	switch h.Get(subject.HeaderUserID) {
	case s.a:
		return s, "a"
	case s.b:
		return s, "b"
	}
	return nil, ""
}

// publishEvent publishes a P2PEvent on user uid's subject.
func (rv *standInRendezvous) publishEvent(uid string, ev *parleyv1.P2PEvent) {
	b, err := proto.Marshal(ev)
	if err == nil {
		err = rv.nc.Publish(subject.UserP2PEvents(uid), b)
	}
	if err != nil {
		rv.t.Errorf("publish p2p event: %v", err)
	}
}

// requests returns the recorded requests on subj.
func (rv *standInRendezvous) requests(subj string) []msgCall {
	rv.mu.Lock()
	defer rv.mu.Unlock()
	var out []msgCall
	for _, c := range rv.calls {
		if c.subject == subj {
			out = append(out, c)
		}
	}
	return out
}

func (rv *standInRendezvous) setQuietClose(q bool) {
	rv.mu.Lock()
	rv.quietClose = q
	rv.mu.Unlock()
}

func (s *standInP2P) user(side string) string {
	if side == "a" {
		return s.a
	}
	return s.b
}

// view is the session as side sees it.
func (s *standInP2P) view(side string) *parleyv1.P2PSession {
	v := &parleyv1.P2PSession{SessionId: s.id, State: s.state, CloseReason: s.closedBy, Side: side, Controlling: side == "a"}
	if side == "a" {
		v.PeerId, v.PeerName = s.b, s.bName
	} else {
		v.PeerId, v.PeerName = s.a, s.aName
	}
	return v
}
