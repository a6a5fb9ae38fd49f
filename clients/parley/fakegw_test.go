package parley_test

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parleychat/parley/protocol/media"
	"github.com/parleychat/parley/protocol/parleyv1"
	"github.com/parleychat/parley/protocol/wire"
)

// fakeGateway is a stand-in for the gateway and media relay, which other
// parts of the project build and which cannot run inside this module's
// tests: a real TCP listener speaking the frame protocol (handshake,
// login/resume, the call requests, call events) and a real UDP socket
// doing what the gateway does with media packets (protocol/media: open
// with the speaker's key, direction up, replay window, answer probes,
// re-seal audio for each listener with theirs, direction down, over UDP or
// as a media frame, whichever the listener last used). It is only as
// faithful as these tests need: one call at a time per user, direct calls.
type fakeGateway struct {
	t   *testing.T
	ln  net.Listener
	udp *net.UDPConn
	// deadUDP, when set, is the udp_addr handed out: a socket that reads
	// and never answers (UDP blocked on the way).
	deadUDP *net.UDPConn

	mu      sync.Mutex // guards the fields below
	conns   map[*fakeConn]bool
	calls   map[string]*fakeCall
	streams map[uint32]*fakeStream
	joins   []string // "username call-id" of every place/join, in order
	leaves  []string // "username call-id" of every leave, in order
	// holdJoins, when set, holds the replies to join requests (processed
	// at once) until it is closed: a reply still on its way.
	holdJoins chan struct{}
	audio     map[uint32]int
}

type fakeConn struct {
	nc   net.Conn
	wmu  sync.Mutex
	out  chan *parleyv1.Frame // events and media, in order, for pump
	user string               // username once logged in; guarded by fakeGateway.mu
}

// send queues an event or media frame; a full queue drops it.
func (c *fakeConn) send(f *parleyv1.Frame) {
	select {
	case c.out <- f:
	default:
	}
}

// pump writes queued frames until the connection closes.
func (c *fakeConn) pump(done <-chan struct{}) {
	for {
		select {
		case f := <-c.out:
			c.write(f)
		case <-done:
			return
		}
	}
}

func (c *fakeConn) write(f *parleyv1.Frame) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_ = wire.WriteFrame(c.nc, f)
}

type fakeStream struct {
	id   uint32
	user string
	key  *media.Key
	win  media.ReplayWindow
	call *fakeCall
	conn *fakeConn
	addr *net.UDPAddr // the last UDP source; nil: frames
}

type fakeCall struct {
	id      string
	caller  string
	callee  string
	state   parleyv1.CallState
	reason  parleyv1.CallEndReason
	seats   map[string]*fakeStream // username -> stream
	muted   map[string]bool
	retired map[uint32]bool
}

func newFakeGateway(t *testing.T, deadUDP bool) *fakeGateway {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	g := &fakeGateway{t: t, ln: ln, udp: udp, conns: map[*fakeConn]bool{}, calls: map[string]*fakeCall{},
		streams: map[uint32]*fakeStream{}, audio: map[uint32]int{}}
	if deadUDP {
		if g.deadUDP, err = net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}); err != nil {
			t.Fatal(err)
		}
		go func() {
			buf := make([]byte, 2048)
			for {
				if _, _, err := g.deadUDP.ReadFromUDP(buf); err != nil {
					return
				}
			}
		}()
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); g.accept() }()
	go func() { defer wg.Done(); g.readUDP() }()
	t.Cleanup(func() {
		ln.Close()
		udp.Close()
		if g.deadUDP != nil {
			g.deadUDP.Close()
		}
		g.mu.Lock()
		for c := range g.conns {
			c.nc.Close()
		}
		g.mu.Unlock()
		wg.Wait()
	})
	return g
}

func (g *fakeGateway) addr() string { return g.ln.Addr().String() }

func (g *fakeGateway) accept() {
	for {
		nc, err := g.ln.Accept()
		if err != nil {
			return
		}
		c := &fakeConn{nc: nc, out: make(chan *parleyv1.Frame, 512)}
		g.mu.Lock()
		g.conns[c] = true
		g.mu.Unlock()
		done := make(chan struct{})
		go c.pump(done)
		go func() { g.serve(c); close(done) }()
	}
}

// dropConns closes user's connections, as a network break would.
func (g *fakeGateway) dropConns(user string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for c := range g.conns {
		if c.user == user {
			c.nc.Close()
		}
	}
}

func (g *fakeGateway) leaveLog() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]string(nil), g.leaves...)
}

// holdJoinReplies holds the replies to join requests until the returned
// function is called.
func (g *fakeGateway) holdJoinReplies() (release func()) {
	ch := make(chan struct{})
	g.mu.Lock()
	g.holdJoins = ch
	g.mu.Unlock()
	return func() {
		g.mu.Lock()
		g.holdJoins = nil
		g.mu.Unlock()
		close(ch)
	}
}

// forgetCall ends call id without telling anyone (its ENDED event lost,
// as for a user who was disconnected then).
func (g *fakeGateway) forgetCall(id string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if call := g.calls[id]; call != nil {
		for _, st := range call.seats {
			delete(g.streams, st.id)
		}
		delete(g.calls, id)
	}
}

func (g *fakeGateway) joinLog() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]string(nil), g.joins...)
}

// audioFrom counts the audio packets the gateway accepted from user's
// current stream.
func (g *fakeGateway) audioFrom(user string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, call := range g.calls {
		if st := call.seats[user]; st != nil {
			return g.audio[st.id]
		}
	}
	return 0
}

func (g *fakeGateway) serve(c *fakeConn) {
	defer func() {
		c.nc.Close()
		g.mu.Lock()
		delete(g.conns, c)
		for id, st := range g.streams {
			if st.conn == c { // the gateway drops a closed connection's streams
				delete(g.streams, id)
			}
		}
		g.mu.Unlock()
	}()
	r := wire.NewReader(c.nc, wire.DefaultMaxFrameSize)
	for {
		f, err := r.ReadFrame()
		if err != nil {
			return
		}
		if reply := g.handle(c, f); reply != nil {
			reply.RequestId = f.GetRequestId()
			c.write(reply)
		}
	}
}

func errFrame(code parleyv1.ErrorCode, msg string) *parleyv1.Frame {
	return &parleyv1.Frame{Body: &parleyv1.Frame_Error{Error: &parleyv1.Error{Code: code, Message: msg}}}
}

func okFrame() *parleyv1.Frame { return &parleyv1.Frame{Body: &parleyv1.Frame_Ok{Ok: &parleyv1.Ok{}}} }

func sessionFrame(user string, resumed bool) *parleyv1.Frame {
	return &parleyv1.Frame{Body: &parleyv1.Frame_Session{Session: &parleyv1.Session{
		UserId: "u-" + user, Username: user, SessionId: "s-" + user, Token: "tok-" + user,
		ExpiresAtUnixMs: time.Now().Add(time.Hour).UnixMilli(), Resumed: resumed}}}
}

func (g *fakeGateway) handle(c *fakeConn, f *parleyv1.Frame) *parleyv1.Frame {
	switch b := f.Body.(type) {
	case *parleyv1.Frame_Hello:
		return &parleyv1.Frame{Body: &parleyv1.Frame_Welcome{Welcome: &parleyv1.Welcome{Version: wire.Version,
			Server: "fake", GatewayId: "fake-1", MaxFrameSize: wire.DefaultMaxFrameSize,
			HeartbeatIntervalMs: 10000, IdleTimeoutMs: 30000}}}
	case *parleyv1.Frame_Ping:
		return &parleyv1.Frame{Body: &parleyv1.Frame_Pong{Pong: &parleyv1.Pong{Nonce: b.Ping.GetNonce()}}}
	case *parleyv1.Frame_Pong:
		return nil
	case *parleyv1.Frame_Login:
		g.mu.Lock()
		c.user = b.Login.GetUsername()
		g.mu.Unlock()
		return sessionFrame(c.user, false)
	case *parleyv1.Frame_Resume:
		user, ok := strings.CutPrefix(b.Resume.GetToken(), "tok-")
		if !ok {
			return errFrame(parleyv1.ErrorCode_ERROR_CODE_TOKEN_INVALID, "bad token")
		}
		g.mu.Lock()
		c.user = user
		g.mu.Unlock()
		return sessionFrame(user, true)
	case *parleyv1.Frame_Conversations:
		return &parleyv1.Frame{Body: &parleyv1.Frame_ConversationsReply{ConversationsReply: &parleyv1.ConversationsReply{}}}
	case *parleyv1.Frame_Media:
		g.packet(b.Media.GetPacket(), c, nil)
		return nil
	case *parleyv1.Frame_PlaceCall:
		return g.place(c, b.PlaceCall.GetToUsername())
	case *parleyv1.Frame_JoinCall:
		reply := g.join(c, b.JoinCall.GetCallId())
		g.mu.Lock()
		hold := g.holdJoins
		g.mu.Unlock()
		if hold == nil {
			return reply
		}
		reply.RequestId = f.GetRequestId()
		go func() { <-hold; c.write(reply) }()
		return nil
	case *parleyv1.Frame_LeaveCall:
		g.mu.Lock()
		g.leaves = append(g.leaves, c.user+" "+b.LeaveCall.GetCallId())
		g.mu.Unlock()
		return g.end(c, b.LeaveCall.GetCallId(), parleyv1.CallEndReason_CALL_END_REASON_COMPLETED)
	case *parleyv1.Frame_RejectCall:
		return g.end(c, b.RejectCall.GetCallId(), parleyv1.CallEndReason_CALL_END_REASON_REJECTED)
	case *parleyv1.Frame_MuteCall:
		g.mu.Lock()
		call := g.calls[b.MuteCall.GetCallId()]
		if call == nil || call.seats[c.user] == nil {
			g.mu.Unlock()
			return errFrame(parleyv1.ErrorCode_ERROR_CODE_NOT_FOUND, "not in that call")
		}
		call.muted[c.user] = b.MuteCall.GetMuted()
		g.publishLocked(call, parleyv1.CallEvent_KIND_UPDATED, call.caller, call.callee)
		g.mu.Unlock()
		return okFrame()
	}
	return errFrame(parleyv1.ErrorCode_ERROR_CODE_UNKNOWN_REQUEST, "the fake gateway does not do that")
}

func randomID() uint32 {
	var b [4]byte
	for {
		_, _ = rand.Read(b[:])
		if id := binary.BigEndian.Uint32(b[:]); id != 0 {
			return id
		}
	}
}

func (g *fakeGateway) place(c *fakeConn, to string) *parleyv1.Frame {
	if to == "busybob" {
		return errFrame(parleyv1.ErrorCode_ERROR_CODE_BUSY, "busybob is in another call")
	}
	var idb [12]byte
	_, _ = rand.Read(idb[:])
	g.mu.Lock()
	defer g.mu.Unlock()
	call := &fakeCall{id: "c" + string(hexOf(idb[:])), caller: c.user, callee: to,
		state: parleyv1.CallState_CALL_STATE_RINGING, seats: map[string]*fakeStream{}, muted: map[string]bool{}, retired: map[uint32]bool{}}
	g.calls[call.id] = call
	reply := g.seatLocked(c, call)
	g.publishLocked(call, parleyv1.CallEvent_KIND_RINGING, to)
	return reply
}

func hexOf(b []byte) []byte {
	const digits = "0123456789abcdef"
	out := make([]byte, 0, 2*len(b))
	for _, x := range b {
		out = append(out, digits[x>>4], digits[x&15])
	}
	return out
}

func (g *fakeGateway) join(c *fakeConn, id string) *parleyv1.Frame {
	g.mu.Lock()
	defer g.mu.Unlock()
	call := g.calls[id]
	if call == nil || call.state == parleyv1.CallState_CALL_STATE_ENDED {
		return errFrame(parleyv1.ErrorCode_ERROR_CODE_NOT_FOUND, "no such call")
	}
	if c.user != call.caller && c.user != call.callee {
		return errFrame(parleyv1.ErrorCode_ERROR_CODE_PERMISSION_DENIED, "not yours")
	}
	reply := g.seatLocked(c, call)
	if len(call.seats) == 2 {
		call.state = parleyv1.CallState_CALL_STATE_ACTIVE
	}
	g.publishLocked(call, parleyv1.CallEvent_KIND_UPDATED, call.caller, call.callee)
	return reply
}

// seatLocked gives c's user a (new) stream in call and answers CallJoined.
func (g *fakeGateway) seatLocked(c *fakeConn, call *fakeCall) *parleyv1.Frame {
	key := make([]byte, media.KeyLen)
	_, _ = rand.Read(key)
	k, err := media.NewKey(key)
	if err != nil {
		g.t.Error(err)
	}
	if old := call.seats[c.user]; old != nil {
		delete(g.streams, old.id)
		call.retired[old.id] = true
	}
	st := &fakeStream{id: randomID(), user: c.user, key: k, call: call, conn: c}
	g.streams[st.id] = st
	call.seats[c.user] = st
	g.joins = append(g.joins, c.user+" "+call.id)
	udpAddr := g.udp.LocalAddr().String()
	if g.deadUDP != nil {
		udpAddr = g.deadUDP.LocalAddr().String()
	}
	return &parleyv1.Frame{Body: &parleyv1.Frame_CallJoined{CallJoined: &parleyv1.CallJoined{
		Call: g.wireCallLocked(call), StreamId: st.id, MediaKey: key, UdpAddr: udpAddr}}}
}

func (g *fakeGateway) wireCallLocked(call *fakeCall) *parleyv1.Call {
	w := &parleyv1.Call{CallId: call.id, Conversation: "dm.u-" + call.caller + ".u-" + call.callee,
		Kind: parleyv1.ConversationKind_CONVERSATION_KIND_DIRECT, State: call.state, CallerId: "u-" + call.caller,
		CallerName: call.caller, EndReason: call.reason, StartedAtUnixMs: 1}
	for _, u := range []string{call.caller, call.callee} {
		if st := call.seats[u]; st != nil {
			w.Participants = append(w.Participants, &parleyv1.CallParticipant{UserId: "u-" + u, Username: u,
				StreamId: st.id, Muted: call.muted[u]})
		}
	}
	if call.state == parleyv1.CallState_CALL_STATE_RINGING {
		w.RingingIds = []string{"u-" + call.callee}
	}
	return w
}

// publishLocked sends a call event to every connection of users.
func (g *fakeGateway) publishLocked(call *fakeCall, kind parleyv1.CallEvent_Kind, users ...string) {
	f := &parleyv1.Frame{Body: &parleyv1.Frame_CallEvent{CallEvent: &parleyv1.CallEvent{Kind: kind, Call: g.wireCallLocked(call)}}}
	for c := range g.conns {
		for _, u := range users {
			if c.user == u {
				c.send(f)
			}
		}
	}
}

func (g *fakeGateway) end(c *fakeConn, id string, reason parleyv1.CallEndReason) *parleyv1.Frame {
	g.mu.Lock()
	defer g.mu.Unlock()
	call := g.calls[id]
	if call == nil || (c.user != call.caller && c.user != call.callee) {
		return errFrame(parleyv1.ErrorCode_ERROR_CODE_NOT_FOUND, "no such call")
	}
	call.state, call.reason = parleyv1.CallState_CALL_STATE_ENDED, reason
	g.publishLocked(call, parleyv1.CallEvent_KIND_ENDED, call.caller, call.callee)
	for _, st := range call.seats {
		delete(g.streams, st.id)
	}
	delete(g.calls, id)
	return okFrame()
}

func (g *fakeGateway) readUDP() {
	buf := make([]byte, 2048)
	for {
		n, from, err := g.udp.ReadFromUDP(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		g.packet(append([]byte(nil), buf[:n]...), nil, from)
	}
}

// packet is what the gateway does with a client's media packet, from a
// connection (conn) or a UDP address (from).
func (g *fakeGateway) packet(pkt []byte, conn *fakeConn, from *net.UDPAddr) {
	h, err := media.ParseHeader(pkt)
	if err != nil {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	st := g.streams[h.StreamID]
	if st == nil {
		return
	}
	h, payload, err := st.key.Open(nil, media.Up, pkt)
	if err != nil || !st.win.Accept(h.Seq) {
		return
	}
	if from != nil {
		st.addr = from
	} else {
		st.addr = nil
		st.conn = conn
	}
	switch h.Type {
	case media.TypeProbe:
		reply, _ := st.key.Seal(nil, media.Down, media.Header{Type: media.TypeProbeReply, StreamID: h.StreamID, Seq: h.Seq, Timestamp: h.Timestamp}, nil)
		g.sendLocked(st, reply)
	case media.TypeAudio:
		g.audio[st.id]++
		for _, other := range st.call.seats {
			if other == st || g.streams[other.id] == nil {
				continue
			}
			out, _ := other.key.Seal(nil, media.Down, h, payload)
			g.sendLocked(other, out)
		}
	}
}

func (g *fakeGateway) sendLocked(st *fakeStream, pkt []byte) {
	if st.addr != nil {
		_, _ = g.udp.WriteToUDP(pkt, st.addr)
		return
	}
	st.conn.send(&parleyv1.Frame{Body: &parleyv1.Frame_Media{Media: &parleyv1.MediaPacket{Packet: pkt}}})
}
