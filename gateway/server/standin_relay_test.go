package server_test

// Stand-in for the media-relay (services/media-relay, which the gateway
// may not import): responders on the call signalling subjects, in the
// relay's queue group, and the owner side of the media plane, with just
// enough of the relay's contract for the gateway's side to be observed.
//
//   - place_call: a new call (id "c" + 24 hex) per conversation, or the
//     running one; join_call: the call named (unknown: NOT_FOUND). Both
//     answer CallJoined with a random non-zero stream id (or the next one
//     of forceStreams) and a random 32-byte key, the caller (from the
//     identity headers) as a participant. No udp_addr: the gateway adds it.
//   - reject_call, leave_call, mute_call: recorded, answered empty.
//   - The owner: subscribed to MediaUp of every call it made; every Audio
//     is recorded and forwarded unchanged on MediaDown (no mixing, no
//     mute, no loudest-speaker choice: the gateway's side is what is
//     tested); Alive messages are recorded. roster publishes a Roster.

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"sync"
	"testing"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"

	"github.com/parleychat/parley/libs/mediabus"
	"github.com/parleychat/parley/libs/rpc"
	"github.com/parleychat/parley/libs/subject"
	"github.com/parleychat/parley/protocol/errcode"
	"github.com/parleychat/parley/protocol/parleyv1"
)

type standInRelay struct {
	t  testing.TB
	nc *nats.Conn

	audio chan mediabus.Audio // every Audio the owner received (payload copied)
	alive chan aliveMsg

	mu           sync.Mutex        // guards the fields below
	calls        map[string]string // conversation -> call id
	byID         map[string]bool   // call ids
	forceStreams []uint32          // the next joins' stream ids
	signals      []msgCall         // reject/leave/mute requests as received
	rev          uint64            // the last roster's revision
}

type aliveMsg struct {
	call    string
	gateway string
	streams []uint32
}

func startStandInRelay(t testing.TB, nc *nats.Conn) *standInRelay {
	t.Helper()
	r := &standInRelay{t: t, nc: nc, audio: make(chan mediabus.Audio, 1<<16), alive: make(chan aliveMsg, 1024),
		calls: map[string]string{}, byID: map[string]bool{}}
	var subs []*nats.Subscription
	handle := func(subj string, h func(msg *nats.Msg) (proto.Message, error)) {
		s, err := nc.QueueSubscribe(subj, subject.QueueMedia, func(msg *nats.Msg) {
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
		subs = append(subs, s)
	}
	handle(subject.CallPlace, func(msg *nats.Msg) (proto.Message, error) {
		req := new(parleyv1.PlaceCallRequest)
		if err := proto.Unmarshal(msg.Data, req); err != nil {
			return nil, errBadBody
		}
		conv := req.GetConversation()
		if conv == "" {
			conv = "dm.to." + req.GetToUsername()
		}
		r.mu.Lock()
		id, ok := r.calls[conv]
		if !ok {
			var b [12]byte
			_, _ = rand.Read(b[:])
			id = "c" + hex.EncodeToString(b[:])
			r.calls[conv] = id
			r.byID[id] = true
		}
		r.mu.Unlock()
		if !ok {
			r.own(id)
		}
		return r.joined(id, msg.Header), nil
	})
	handle(subject.CallJoin, func(msg *nats.Msg) (proto.Message, error) {
		req := new(parleyv1.JoinCallRequest)
		if err := proto.Unmarshal(msg.Data, req); err != nil {
			return nil, errBadBody
		}
		r.mu.Lock()
		ok := r.byID[req.GetCallId()]
		r.mu.Unlock()
		if !ok {
			return nil, errcode.New(parleyv1.ErrorCode_ERROR_CODE_NOT_FOUND, "no such call")
		}
		return r.joined(req.GetCallId(), msg.Header), nil
	})
	for _, subj := range []string{subject.CallReject, subject.CallLeave, subject.CallMute} {
		handle(subj, func(msg *nats.Msg) (proto.Message, error) {
			r.mu.Lock()
			r.signals = append(r.signals, msgCall{subject: msg.Subject, header: msg.Header, data: msg.Data})
			r.mu.Unlock()
			return nil, nil
		})
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, s := range subs {
			_ = s.Unsubscribe()
		}
	})
	return r
}

// joined is the CallJoined for a new participant of call id.
func (r *standInRelay) joined(id string, h nats.Header) *parleyv1.CallJoined {
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	r.mu.Lock()
	var stream uint32
	if len(r.forceStreams) > 0 {
		stream, r.forceStreams = r.forceStreams[0], r.forceStreams[1:]
	}
	r.mu.Unlock()
	for stream == 0 {
		var b [4]byte
		_, _ = rand.Read(b[:])
		stream = binary.BigEndian.Uint32(b[:])
	}
	return &parleyv1.CallJoined{
		Call: &parleyv1.Call{CallId: id, State: parleyv1.CallState_CALL_STATE_ACTIVE, Participants: []*parleyv1.CallParticipant{
			{UserId: h.Get(subject.HeaderUserID), Username: h.Get(subject.HeaderUsername), StreamId: stream},
		}},
		StreamId: stream,
		MediaKey: key,
	}
}

// own makes the stand-in the owner of call id: Audio on MediaUp is
// recorded and forwarded on MediaDown, Alive recorded.
func (r *standInRelay) own(id string) {
	sub, err := r.nc.Subscribe(subject.MediaUp(id), func(msg *nats.Msg) {
		switch mediabus.KindOf(msg.Data) {
		case mediabus.KindAudio:
			a, err := mediabus.ParseAudio(msg.Data)
			if err != nil {
				r.t.Errorf("owner: bad Audio from a gateway: %v", err)
				return
			}
			a.Payload = append([]byte(nil), a.Payload...)
			select {
			case r.audio <- a:
			default:
			}
			_ = r.nc.Publish(subject.MediaDown(id), msg.Data)
		case mediabus.KindAlive:
			gw, ids, err := mediabus.ParseAlive(msg.Data, nil)
			if err != nil {
				r.t.Errorf("owner: bad Alive from a gateway: %v", err)
				return
			}
			select {
			case r.alive <- aliveMsg{call: id, gateway: gw, streams: ids}:
			default:
			}
		default:
			r.t.Errorf("owner: unknown message kind %d on %s", mediabus.KindOf(msg.Data), msg.Subject)
		}
	})
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := r.nc.Flush(); err != nil {
		r.t.Fatal(err)
	}
}

// roster publishes the call's roster as its owner, at a revision newer
// than any before.
func (r *standInRelay) roster(call string, streams ...uint32) {
	r.t.Helper()
	r.mu.Lock()
	r.rev++
	rev := r.rev
	r.mu.Unlock()
	r.sendDown(call, mediabus.AppendRoster(nil, mediabus.Roster{Rev: rev, Streams: streams}))
}

// sendDown publishes raw bytes on the call's MediaDown as its owner.
func (r *standInRelay) sendDown(call string, data []byte) {
	r.t.Helper()
	if err := r.nc.Publish(subject.MediaDown(call), data); err != nil {
		r.t.Fatal(err)
	}
	if err := r.nc.Flush(); err != nil {
		r.t.Fatal(err)
	}
}

func (r *standInRelay) force(streams ...uint32) {
	r.mu.Lock()
	r.forceStreams = append(r.forceStreams, streams...)
	r.mu.Unlock()
}

func (r *standInRelay) Signals() []msgCall {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]msgCall(nil), r.signals...)
}
