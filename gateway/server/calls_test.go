package server_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/parleychat/parley/gateway/server"
	"github.com/parleychat/parley/libs/mediabus"
	"github.com/parleychat/parley/libs/subject"
	"github.com/parleychat/parley/libs/testenv"
	"github.com/parleychat/parley/protocol/media"
	"github.com/parleychat/parley/protocol/parleyv1"
)

// callEnv is a gateway with a stand-in media-relay.
type callEnv struct {
	*env
	relay *standInRelay
}

func startCallGateway(t *testing.T, mutate func(*server.Config)) *callEnv {
	t.Helper()
	e := startGateway(t, func(c *server.Config) {
		c.MediaAlive = 4 * time.Second // TestCallAlive shortens it
		if mutate != nil {
			mutate(c)
		}
	})
	return &callEnv{env: e, relay: startStandInRelay(t, e.nc)}
}

// peer is a call participant: its connection, what the relay handed it,
// and its UDP socket.
type peer struct {
	t      *testing.T
	name   string
	cl     *client
	joined *parleyv1.CallJoined
	key    *media.Key
	udp    *net.UDPConn
	to     *net.UDPAddr // the gateway's media port (udp_addr)
	seq    uint32
}

// inCall has caller start a call in conv and callee join it, each with a
// proven UDP address (probe).
func (e *callEnv) inCall(t *testing.T, caller, callee, conv string) (*peer, *peer) {
	t.Helper()
	a := e.join(t, caller, conv, "")
	b := e.join(t, callee, "", a.callID())
	a.probe(a.udp)
	b.probe(b.udp)
	return a, b
}

// join logs username in and places a call in conv (call == "") or joins
// call.
func (e *callEnv) join(t *testing.T, username, conv, call string) *peer {
	t.Helper()
	cl := dialTCP(t, e.env)
	cl.login(username, &parleyv1.ClientOptions{SkipPresenceFeed: true})
	f := &parleyv1.Frame{Body: &parleyv1.Frame_PlaceCall{PlaceCall: &parleyv1.PlaceCallRequest{Conversation: conv}}}
	if call != "" {
		f = &parleyv1.Frame{Body: &parleyv1.Frame_JoinCall{JoinCall: &parleyv1.JoinCallRequest{CallId: call}}}
	}
	r := cl.request(f)
	j := r.GetCallJoined()
	if j == nil {
		t.Fatalf("%s: call request answered with %v", username, r)
	}
	key, err := media.NewKey(j.GetMediaKey())
	if err != nil {
		t.Fatalf("%s: media key: %v", username, err)
	}
	p := &peer{t: t, name: username, cl: cl, joined: j, key: key, seq: 1000}
	if j.GetUdpAddr() != "" {
		// udp_addr is checked by the tests; packets go to the bound port
		// (-public-udp-addr may name a host that is not this one).
		p.to = e.srv.UDPAddr().(*net.UDPAddr)
		p.udp = p.socket()
	}
	return p
}

func (p *peer) callID() string { return p.joined.GetCall().GetCallId() }
func (p *peer) stream() uint32 { return p.joined.GetStreamId() }

// socket opens another local UDP socket.
func (p *peer) socket() *net.UDPConn {
	p.t.Helper()
	u, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		p.t.Fatal(err)
	}
	p.t.Cleanup(func() { _ = u.Close() })
	return u
}

// packet seals the next packet of p's stream.
func (p *peer) packet(typ media.Type, payload []byte) (media.Header, []byte) {
	p.t.Helper()
	p.seq++
	h := media.Header{Type: typ, StreamID: p.stream(), Seq: p.seq, Timestamp: p.seq * media.FrameTicks}
	if typ == media.TypeAudio {
		h.Flags, h.Level = media.FlagVoice, 30
	}
	pkt, err := p.key.Seal(nil, media.Up, h, payload)
	if err != nil {
		p.t.Fatal(err)
	}
	return h, pkt
}

// sendVia writes pkt from socket u to the gateway's media port.
func (p *peer) sendVia(u *net.UDPConn, pkt []byte) {
	p.t.Helper()
	if _, err := u.WriteToUDP(pkt, p.to); err != nil {
		p.t.Fatal(err)
	}
}

// sendFrame sends pkt as a media frame on p's connection.
func (p *peer) sendFrame(pkt []byte) {
	p.t.Helper()
	p.cl.send(&parleyv1.Frame{Body: &parleyv1.Frame_Media{Media: &parleyv1.MediaPacket{Packet: pkt}}})
}

// recvUDP reads the next packet on u, opened with p's key, direction Down.
func (p *peer) recvUDP(u *net.UDPConn) (media.Header, []byte) {
	p.t.Helper()
	buf := make([]byte, 2048)
	_ = u.SetReadDeadline(time.Now().Add(readTimeout))
	n, err := u.Read(buf)
	if err != nil {
		p.t.Fatalf("%s: no UDP packet: %v", p.name, err)
	}
	h, payload, err := p.key.Open(nil, media.Down, buf[:n])
	if err != nil {
		p.t.Fatalf("%s: a UDP packet that does not open with its key, direction down: %v", p.name, err)
	}
	return h, payload
}

// recvFrame waits for the next media frame on p's connection and opens it.
func (p *peer) recvFrame() (media.Header, []byte) {
	p.t.Helper()
	f := p.cl.waitFor("media frame", func(f *parleyv1.Frame) bool { return f.GetMedia() != nil })
	if f.GetRequestId() != 0 {
		p.t.Fatalf("media frame with request_id %d", f.GetRequestId())
	}
	h, payload, err := p.key.Open(nil, media.Down, f.GetMedia().GetPacket())
	if err != nil {
		p.t.Fatalf("%s: a media frame that does not open with its key, direction down: %v", p.name, err)
	}
	return h, payload
}

// probe sends a probe over UDP from u and checks the probe reply. From an
// address the stream has not proven the reply carries a path token
// (§19.3): probe echoes it, and the answer to that comes without one.
func (p *peer) probe(u *net.UDPConn) {
	p.t.Helper()
	if token := p.probeOnce(u, nil); token != nil {
		if again := p.probeOnce(u, token); again != nil {
			p.t.Fatalf("%s: the echo of path token %x was answered with another, %x", p.name, token, again)
		}
	}
}

// probeOnce sends a probe with payload from u and returns the path token
// its reply carried (nil: none).
func (p *peer) probeOnce(u *net.UDPConn, payload []byte) []byte {
	p.t.Helper()
	h, pkt := p.packet(media.TypeProbe, payload)
	p.sendVia(u, pkt)
	got, token := p.recvUDP(u)
	want := media.Header{Type: media.TypeProbeReply, StreamID: h.StreamID, Seq: h.Seq, Timestamp: h.Timestamp}
	if got != want {
		p.t.Fatalf("%s: probe answered with %+v, want %+v", p.name, got, want)
	}
	if len(token) != 0 && len(token) != media.PathTokenLen {
		p.t.Fatalf("%s: probe reply with a %d-byte payload", p.name, len(token))
	}
	if len(token) == 0 {
		return nil
	}
	return token
}

// expectOwnerAudio waits for the owner to receive Audio and checks it.
func (e *callEnv) expectOwnerAudio(t *testing.T, h media.Header, payload []byte) {
	t.Helper()
	select {
	case a := <-e.relay.audio:
		if a.Header != h || !bytes.Equal(a.Payload, payload) {
			t.Fatalf("owner got audio %+v %q, want %+v %q", a.Header, a.Payload, h, payload)
		}
	case <-time.After(readTimeout):
		t.Fatalf("owner got no audio within %s", readTimeout)
	}
}

func (e *callEnv) drops(reason string) float64 {
	return e.metric("parley_gateway_media_drops_total", map[string]string{"reason": reason})
}

// waitDrops waits until at least n packets were dropped for reason.
func (e *callEnv) waitDrops(t *testing.T, reason string, n float64) {
	t.Helper()
	testenv.Eventually(t, readTimeout, fmt.Sprintf("%v drops for %s (have %v)", n, reason, e.drops(reason)),
		func() bool { return e.drops(reason) >= n })
}

// TestCallJoin: place_call and join_call reach the relay with the
// caller's identity; the CallJoined reply carries the relay's stream id
// and key and the gateway's media port, which answers probes sealed with
// that key.
func TestCallJoin(t *testing.T) {
	e := startCallGateway(t, nil)
	a := e.join(t, "alice", "group.g1", "")
	if a.stream() == 0 || len(a.joined.GetMediaKey()) != 32 {
		t.Fatalf("CallJoined %v", a.joined)
	}
	if got, want := a.joined.GetUdpAddr(), e.srv.UDPAddr().String(); got != want {
		t.Fatalf("udp_addr %q, want %q", got, want)
	}
	if got := a.joined.GetCall().GetParticipants()[0].GetUserId(); got != "u-alice" {
		t.Fatalf("the relay saw the request from %q, want u-alice", got)
	}
	a.probe(a.udp)
	b := e.join(t, "bob", "", a.callID())
	if b.callID() != a.callID() || b.stream() == a.stream() {
		t.Fatalf("bob joined %v", b.joined)
	}
	b.probe(b.udp)
	if got := e.metric("parley_gateway_media_streams", nil); got != 2 {
		t.Fatalf("%v streams, want 2", got)
	}

	// A join of a call that does not exist is the relay's NOT_FOUND.
	r := b.cl.request(&parleyv1.Frame{Body: &parleyv1.Frame_JoinCall{JoinCall: &parleyv1.JoinCallRequest{CallId: "c000000000000000000000000"}}})
	if r.GetError().GetCode() != parleyv1.ErrorCode_ERROR_CODE_NOT_FOUND {
		t.Fatalf("join of an unknown call: %v", r)
	}
	// The other signalling requests are forwarded with the identity and
	// answered Ok.
	for _, f := range []*parleyv1.Frame{
		{Body: &parleyv1.Frame_MuteCall{MuteCall: &parleyv1.MuteCallRequest{CallId: a.callID(), Muted: true}}},
		{Body: &parleyv1.Frame_RejectCall{RejectCall: &parleyv1.RejectCallRequest{CallId: a.callID()}}},
	} {
		if r := a.cl.request(f); r.GetOk() == nil {
			t.Fatalf("%v answered %v", f, r)
		}
	}
	sig := e.relay.Signals()
	if len(sig) != 2 || sig[0].subject != subject.CallMute || sig[1].subject != subject.CallReject ||
		sig[0].header.Get(subject.HeaderUserID) != "u-alice" {
		t.Fatalf("relay got %v", sig)
	}
}

// TestCallAudio: a speaker's UDP audio reaches the call's owner as
// mediabus Audio with its header and payload; what the owner forwards
// reaches the other participant over UDP, sealed with that participant's
// key, and never the speaker.
func TestCallAudio(t *testing.T) {
	e := startCallGateway(t, nil)
	a, b := e.inCall(t, "alice", "bob", "group.g1")

	for i := range 5 {
		payload := fmt.Appendf(nil, "opus frame %d", i)
		h, pkt := a.packet(media.TypeAudio, payload)
		a.sendVia(a.udp, pkt)
		e.expectOwnerAudio(t, h, payload)
		got, p := b.recvUDP(b.udp)
		if got != h || !bytes.Equal(p, payload) {
			t.Fatalf("bob got %+v %q, want %+v %q", got, p, h, payload)
		}
	}
	// The speaker got none of it: the next audio alice receives is a
	// marker the owner sends after all of hers.
	marker := media.Header{Type: media.TypeAudio, StreamID: 77, Seq: 1, Timestamp: 1}
	e.relay.sendDown(a.callID(), mediabus.AppendAudio(nil, marker, []byte("marker")))
	if got, p := a.recvUDP(a.udp); got != marker || string(p) != "marker" {
		t.Fatalf("alice got %+v %q first, want the marker", got, p)
	}
	if got, p := b.recvUDP(b.udp); got != marker || string(p) != "marker" {
		t.Fatalf("bob got %+v %q, want the marker", got, p)
	}
}

// TestCallFrames: a client without UDP sends media frames and gets media
// frames: probe replies, and audio from the others. Media frames get no
// replies, not even for garbage.
func TestCallFrames(t *testing.T) {
	e := startCallGateway(t, func(c *server.Config) { c.UDPAddr = "" })
	a := e.join(t, "alice", "group.g1", "")
	if a.joined.GetUdpAddr() != "" {
		t.Fatalf("udp_addr %q without a media port", a.joined.GetUdpAddr())
	}
	b := e.join(t, "bob", "", a.callID())

	h, pkt := a.packet(media.TypeProbe, nil)
	a.sendFrame(pkt)
	if got, _ := a.recvFrame(); got.Type != media.TypeProbeReply || got.Seq != h.Seq || got.StreamID != h.StreamID {
		t.Fatalf("probe frame answered with %+v", got)
	}

	h, pkt = a.packet(media.TypeAudio, []byte("hello over tcp"))
	a.sendFrame(pkt)
	e.expectOwnerAudio(t, h, []byte("hello over tcp"))
	if got, p := b.recvFrame(); got != h || string(p) != "hello over tcp" {
		t.Fatalf("bob got %+v %q", got, p)
	}

	// Garbage, a replay and a frame with request_id: dropped silently.
	a.sendFrame([]byte("garbage"))
	a.sendFrame(pkt)
	a.cl.send(&parleyv1.Frame{RequestId: 99, Body: &parleyv1.Frame_Media{Media: &parleyv1.MediaPacket{}}})
	a.cl.ping(7) // the next frame is the Pong: no Error came before it
	e.waitDrops(t, "malformed", 2)
	e.waitDrops(t, "replay", 1)
	if got := e.metric("parley_gateway_errors_sent_total", nil); got != 0 {
		t.Fatalf("%v errors sent", got)
	}
}

// TestCallFramesUDPGateway: on a gateway with a media port, a client that
// sends frames gets frames, and one that then switches to UDP gets UDP.
func TestCallFramesUDPGateway(t *testing.T) {
	e := startCallGateway(t, nil)
	a := e.join(t, "alice", "group.g1", "")
	b := e.join(t, "bob", "", a.callID())
	_, pkt := b.packet(media.TypeKeepalive, nil)
	b.sendFrame(pkt)
	e.waitIn(t, "frame", 1)

	h, pkt := a.packet(media.TypeAudio, []byte("one"))
	a.sendVia(a.udp, pkt)
	if got, p := b.recvFrame(); got != h || string(p) != "one" {
		t.Fatalf("bob got %+v %q", got, p)
	}
	b.probe(b.udp) // bob's UDP works: his path moves to it
	h, pkt = a.packet(media.TypeAudio, []byte("two"))
	a.sendVia(a.udp, pkt)
	if got, p := b.recvUDP(b.udp); got != h || string(p) != "two" {
		t.Fatalf("bob got %+v %q", got, p)
	}
}

func (e *callEnv) waitIn(t *testing.T, transport string, n float64) {
	t.Helper()
	testenv.Eventually(t, readTimeout, "media packets in", func() bool {
		return e.metric("parley_gateway_media_packets_received_total", map[string]string{"transport": transport}) >= n
	})
}

// TestCallMigration: a participant whose address changes (a NAT rebinding,
// a network switch) gets the call's audio at the new address once it has
// proven it receives there: its first packet from there is answered with a
// path token, and the audio keeps going to the old address until a probe
// from the new one echoes it (§19.3).
func TestCallMigration(t *testing.T) {
	e := startCallGateway(t, nil)
	a := e.join(t, "alice", "group.g1", "")
	b := e.join(t, "bob", "", a.callID())
	b.probe(b.udp)
	moved := b.socket()
	kh, pkt := b.packet(media.TypeKeepalive, nil)
	b.sendVia(moved, pkt)
	got, token := b.recvUDP(moved)
	if want := (media.Header{Type: media.TypeProbeReply, StreamID: kh.StreamID, Seq: kh.Seq, Timestamp: kh.Timestamp}); got != want || len(token) != media.PathTokenLen {
		t.Fatalf("bob's keepalive from a new address answered with %+v %x, want %+v and a path token", got, token, want)
	}
	if n := e.metric("parley_gateway_media_paths_total", map[string]string{"event": "challenged"}); n < 1 {
		t.Fatalf("%v path challenges counted", n)
	}

	// Not proven yet: the audio still goes to the old address.
	h, pkt := a.packet(media.TypeAudio, []byte("before the proof"))
	a.sendVia(a.udp, pkt)
	if got, p := b.recvUDP(b.udp); got != h || string(p) != "before the proof" {
		t.Fatalf("bob got %+v %q at his old address", got, p)
	}
	// An echo of the wrong token proves nothing (it is answered with the
	// right one again).
	if again := b.probeOnce(moved, bytes.Repeat([]byte{0xAA}, media.PathTokenLen)); !bytes.Equal(again, token) {
		t.Fatalf("a wrong echo answered with token %x, want %x again", again, token)
	}
	if again := b.probeOnce(moved, token); again != nil {
		t.Fatalf("the echo answered with another token %x", again)
	}
	h, pkt = a.packet(media.TypeAudio, []byte("after the move"))
	a.sendVia(a.udp, pkt)
	if got, p := b.recvUDP(moved); got != h || string(p) != "after the move" {
		t.Fatalf("bob got %+v %q at his new address", got, p)
	}
	if n := e.metric("parley_gateway_media_paths_total", map[string]string{"event": "proven"}); n != 2 {
		t.Fatalf("%v paths proven, want 2 (bob's first address and the new one)", n)
	}
}

// TestCallNoRedirectToUnprovenAddress: a participant (who can seal
// packets) spoofing another host's source address cannot aim the call's
// audio at it. Here each audio packet of bob's comes from the "victim"
// socket: the victim gets path challenges, at most one per 100 ms, each
// 40 bytes, and none of alice's audio; bob keeps hearing her where he
// proved he listens.
func TestCallNoRedirectToUnprovenAddress(t *testing.T) {
	e := startCallGateway(t, nil)
	a, b := e.inCall(t, "alice", "bob", "group.g1")
	victim := b.socket()

	const n = 20
	sent, start := 0, time.Now()
	for i := range n {
		_, pkt := b.packet(media.TypeAudio, []byte("bob, spoofed"))
		b.sendVia(victim, pkt)
		sent += len(pkt)
		h, pkt := a.packet(media.TypeAudio, fmt.Appendf(nil, "alice %d", i))
		a.sendVia(a.udp, pkt)
		if got, p := b.recvUDP(b.udp); got != h || string(p) != fmt.Sprintf("alice %d", i) {
			t.Fatalf("bob got %+v %q, want alice's packet %d where he proved he listens", got, p, i)
		}
		time.Sleep(10 * time.Millisecond)
	}
	got, bytesIn := 0, 0
	buf := make([]byte, 2048)
	_ = victim.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	for {
		k, err := victim.Read(buf)
		if err != nil {
			break
		}
		h, payload, err := b.key.Open(nil, media.Down, buf[:k])
		if err != nil || h.Type != media.TypeProbeReply || len(payload) != media.PathTokenLen {
			t.Fatalf("the victim got %+v %x (%v): not a path challenge", h, payload, err)
		}
		got++
		bytesIn += k
	}
	most := 1 + int(time.Since(start)/(100*time.Millisecond))
	if got == 0 || got > most || bytesIn > sent {
		t.Fatalf("the victim got %d challenges, %d bytes, for %d packets (%d bytes) in its name: want at least one, no more than one per 100 ms (%d) nor more bytes than came", got, bytesIn, n, sent, most)
	}
	t.Logf("%d packets (%d bytes) in the victim's name over %v: it got %d path challenges, %d bytes", n, sent, time.Since(start).Round(time.Millisecond), got, bytesIn)
}

// TestCallBackFromFramesOnANewAddress: a client that proved a UDP
// address, went over to frames, and comes back by UDP from a new address
// gets frames until the new address is proven, not UDP to the old one
// (§19.3 step 2).
func TestCallBackFromFramesOnANewAddress(t *testing.T) {
	e := startCallGateway(t, nil)
	a, b := e.inCall(t, "alice", "bob", "group.g1")
	_, pkt := b.packet(media.TypeKeepalive, nil)
	b.sendFrame(pkt) // over to frames
	e.waitIn(t, "frame", 1)
	moved := b.socket()
	_, pkt = b.packet(media.TypeKeepalive, nil)
	b.sendVia(moved, pkt) // back by UDP, from an unproven address
	if got, token := b.recvUDP(moved); got.Type != media.TypeProbeReply || len(token) != media.PathTokenLen {
		t.Fatalf("the keepalive from a new address answered %+v %x, want a path token", got, token)
	}
	h, pkt := a.packet(media.TypeAudio, []byte("while unproven"))
	a.sendVia(a.udp, pkt)
	if got, p := b.recvFrame(); got != h || string(p) != "while unproven" {
		t.Fatalf("bob got %+v %q as a frame", got, p)
	}
	buf := make([]byte, 2048)
	_ = b.udp.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if n, err := b.udp.Read(buf); err == nil {
		t.Fatalf("bob's old address got a %d-byte packet while he was on frames", n)
	}
}

// TestCallChallengesPerStream: path challenges for audio and keepalives
// are bounded per stream, not per source: keepalives from two spoofed
// addresses in turn draw one challenge per 100 ms in all.
func TestCallChallengesPerStream(t *testing.T) {
	e := startCallGateway(t, nil)
	_, b := e.inCall(t, "alice", "bob", "group.g1")
	v1, v2 := b.socket(), b.socket()
	challenged := func() float64 {
		return e.metric("parley_gateway_media_paths_total", map[string]string{"event": "challenged"})
	}
	before, start := challenged(), time.Now()
	for i := range 20 {
		_, pkt := b.packet(media.TypeKeepalive, nil)
		b.sendVia([]*net.UDPConn{v1, v2}[i%2], pkt)
	}
	e.waitIn(t, "udp", 22) // the 2 probes of each, and the 20
	most := 1 + int(time.Since(start)/(100*time.Millisecond))
	if n := challenged() - before; n < 1 || int(n) > most {
		t.Fatalf("%v challenges for 20 keepalives from two addresses in %v, want 1 to %d", n, time.Since(start), most)
	}
}

// TestCallDrops: a packet with a bad tag, a replayed one, one for an
// unknown stream and one sealed with another participant's key are
// dropped and counted; the call goes on.
func TestCallDrops(t *testing.T) {
	e := startCallGateway(t, nil)
	a := e.join(t, "alice", "group.g1", "")
	b := e.join(t, "bob", "", a.callID())
	b.probe(b.udp)

	h, good := a.packet(media.TypeAudio, []byte("good"))
	a.sendVia(a.udp, good)
	e.expectOwnerAudio(t, h, []byte("good"))
	b.recvUDP(b.udp)

	bad := bytes.Clone(good)
	bad[len(bad)-1] ^= 1
	a.sendVia(a.udp, bad)  // bad tag
	a.sendVia(a.udp, good) // replay
	_, other := a.packet(media.TypeAudio, []byte("unknown"))
	other[7] ^= 0x55 // another stream id: unknown (the header is in clear)
	a.sendVia(a.udp, other)
	// Sealed with bob's key but on alice's stream id.
	forged, err := b.key.Seal(nil, media.Up, media.Header{Type: media.TypeAudio, StreamID: a.stream(), Seq: 5000}, []byte("forged"))
	if err != nil {
		t.Fatal(err)
	}
	a.sendVia(b.udp, forged)
	a.sendVia(a.udp, []byte("not a media packet at all, just some bytes"))
	e.waitDrops(t, "auth", 2)
	e.waitDrops(t, "replay", 1)
	e.waitDrops(t, "unknown_stream", 1)
	e.waitDrops(t, "malformed", 1)

	h, pkt := a.packet(media.TypeAudio, []byte("still works"))
	a.sendVia(a.udp, pkt)
	e.expectOwnerAudio(t, h, []byte("still works"))
	if got, p := b.recvUDP(b.udp); got != h || string(p) != "still works" {
		t.Fatalf("bob got %+v %q", got, p)
	}
	select {
	case x := <-e.relay.audio:
		t.Fatalf("the owner got a dropped packet: %+v %q", x.Header, x.Payload)
	default:
	}
}

// TestCallFlood: 100,000 garbage datagrams (random stream ids, short,
// forged) do not stop a running call.
func TestCallFlood(t *testing.T) {
	e := startCallGateway(t, nil)
	a := e.join(t, "alice", "group.g1", "")
	b := e.join(t, "bob", "", a.callID())
	b.probe(b.udp)
	flood := a.socket()
	junk := make([]byte, 200)
	const n = 100_000
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range n {
			switch i % 4 {
			case 0: // a header for a random stream
				junk[0], junk[1] = media.Version, byte(media.TypeAudio)
				junk[4], junk[5], junk[6], junk[7] = byte(i), byte(i>>8), byte(i>>16), 1
			case 1: // alice's stream, a forged tag
				junk[0], junk[1] = media.Version, byte(media.TypeAudio)
				s := a.stream()
				junk[4], junk[5], junk[6], junk[7] = byte(s>>24), byte(s>>16), byte(s>>8), byte(s)
				junk[8] = byte(i)
			case 2:
				junk[0] = 0xFF
			}
			_, _ = flood.WriteToUDP(junk[:32+i%150], a.to)
		}
	}()
	// Audio keeps flowing during the flood and after it. The kernel may
	// drop any datagram from a full socket buffer, alice's too: a packet
	// that does not reach the owner within a second counts as lost.
	sent, through := 0, 0
	for i := 0; ; i++ {
		payload := fmt.Appendf(nil, "during %d", i)
		h, pkt := a.packet(media.TypeAudio, payload)
		a.sendVia(a.udp, pkt)
		sent++
		if e.ownerAudioWithin(h, time.Second) {
			through++
			b.recvUDPUntil(h) // bob keeps up, so his socket's queue stays short
		}
		time.Sleep(20 * time.Millisecond) // a frame's pace, as a client sends
		select {
		case <-done:
		default:
			continue
		}
		break
	}
	t.Logf("during the flood %d of alice's %d packets reached the owner", through, sent)
	if through == 0 {
		t.Fatal("no audio got through during the flood")
	}
	h, pkt := a.packet(media.TypeAudio, []byte("after"))
	a.sendVia(a.udp, pkt)
	e.expectOwnerAudioEventually(t, h)
	b.recvUDPUntil(h)
	t.Logf("flood: %v datagrams received, drops: malformed %v, unknown_stream %v, auth %v",
		e.metric("parley_gateway_media_packets_received_total", map[string]string{"transport": "udp"}),
		e.drops("malformed"), e.drops("unknown_stream"), e.drops("auth"))
	if e.drops("auth") == 0 || e.drops("unknown_stream") == 0 || e.drops("malformed") == 0 {
		t.Fatal("the flood was not counted")
	}
}

// TestCallRateLimit: a participant sending far more than a call's 50
// packets a second has the excess dropped at the gateway, before it costs
// the relay and every listener anything; after a pause its packets flow
// again.
func TestCallRateLimit(t *testing.T) {
	e := startCallGateway(t, nil)
	a := e.join(t, "alice", "group.g1", "")
	const n = 400
	start := time.Now()
	for i := range n {
		_, pkt := a.packet(media.TypeAudio, fmt.Appendf(nil, "flood %d", i))
		a.sendVia(a.udp, pkt)
	}
	took := time.Since(start)
	// Through: the burst (50) and what 100 a second refilled meanwhile.
	allowed := 50 + int(math.Ceil(took.Seconds()*100))
	e.waitDrops(t, "rate", float64(n-allowed))
	t.Logf("%d packets sent in %s: %.0f dropped as over the stream's rate", n, took.Round(time.Millisecond), e.drops("rate"))
	time.Sleep(time.Second)
	h, pkt := a.packet(media.TypeAudio, []byte("after a pause"))
	a.sendVia(a.udp, pkt)
	e.expectOwnerAudioEventually(t, h)
}

// recvUDPUntil reads p's UDP socket until the packet with header h.
func (p *peer) recvUDPUntil(h media.Header) {
	p.t.Helper()
	for {
		if got, _ := p.recvUDP(p.udp); got == h {
			return
		}
	}
}

// ownerAudioWithin reports whether the owner got audio h within d
// (earlier audio is skipped).
func (e *callEnv) ownerAudioWithin(h media.Header, d time.Duration) bool {
	deadline := time.After(d)
	for {
		select {
		case a := <-e.relay.audio:
			if a.Header == h {
				return true
			}
		case <-deadline:
			return false
		}
	}
}

// expectOwnerAudioEventually waits for the owner to get audio h (the
// kernel may drop some of a sender's datagrams in a flood: earlier ones
// are skipped).
func (e *callEnv) expectOwnerAudioEventually(t *testing.T, h media.Header) {
	t.Helper()
	deadline := time.After(readTimeout)
	for {
		select {
		case a := <-e.relay.audio:
			if a.Header == h {
				return
			}
		case <-deadline:
			t.Fatalf("owner never got audio %+v", h)
		}
	}
}

// TestCallRoster: the owner's Roster drops the local streams it does not
// list (their packets are then unknown); an empty one ends the call here.
func TestCallRoster(t *testing.T) {
	e := startCallGateway(t, nil)
	server.SetMediaStreamLimits(e.srv, 0, time.Nanosecond) // no grace (TestCallRosterGrace)
	a, b := e.inCall(t, "alice", "bob", "group.g1")
	e.relay.roster(a.callID(), b.stream(), 12345)
	testenv.Eventually(t, readTimeout, "alice's stream dropped", func() bool {
		return e.metric("parley_gateway_media_streams", nil) == 1
	})
	_, pkt := a.packet(media.TypeProbe, nil)
	a.sendVia(a.udp, pkt)
	e.waitDrops(t, "unknown_stream", 1)
	b.probe(b.udp) // bob's is still served

	e.relay.roster(a.callID())
	testenv.Eventually(t, readTimeout, "bob's stream dropped", func() bool {
		return e.metric("parley_gateway_media_streams", nil) == 0
	})
	// Audio published after the call ended here reaches nobody. The
	// counter is bumped just after a packet's write, so the last probe
	// reply may trail the client's read of it: wait for all five replies
	// (a's two and b's two, each a path token and the echo's answer, and
	// b's third) to be counted first.
	const replies = 5
	testenv.Eventually(t, readTimeout, "the probe replies counted", func() bool {
		return e.metric("parley_gateway_media_packets_sent_total", nil) == replies
	})
	before := e.metric("parley_gateway_media_packets_sent_total", nil)
	e.relay.sendDown(a.callID(), mediabus.AppendAudio(nil, media.Header{Type: media.TypeAudio, StreamID: 9, Seq: 1}, []byte("x")))
	a.cl.ping(1)
	if got := e.metric("parley_gateway_media_packets_sent_total", nil); got != before {
		t.Fatalf("%v packets sent after the call ended", got-before)
	}
}

// TestCallRosterGrace: a roster that comes right after a join and does
// not list the new stream (the owner's periodic repeat of the roster from
// before the join) leaves it served; one after the grace period drops it.
func TestCallRosterGrace(t *testing.T) {
	e := startCallGateway(t, nil)
	server.SetMediaStreamLimits(e.srv, 0, time.Minute) // nothing here is that slow
	a, b := e.inCall(t, "alice", "bob", "group.g1")
	e.relay.roster(a.callID(), a.stream()) // the roster from before bob joined
	// Audio published after the roster reaches bob: the roster was taken
	// in (one subscription, in order) and bob's stream is still served.
	marker := media.Header{Type: media.TypeAudio, StreamID: 77, Seq: 1, Timestamp: 1}
	e.relay.sendDown(a.callID(), mediabus.AppendAudio(nil, marker, []byte("after the roster")))
	if got, p := b.recvUDP(b.udp); got != marker || string(p) != "after the roster" {
		t.Fatalf("bob got %+v %q, want the marker", got, p)
	}
	if got, p := a.recvUDP(a.udp); got != marker || string(p) != "after the roster" {
		t.Fatalf("alice got %+v %q, want the marker", got, p)
	}
	b.probe(b.udp)
	if got := e.metric("parley_gateway_media_streams", nil); got != 2 {
		t.Fatalf("%v streams after an old roster, want 2", got)
	}

	// Past the grace period the same roster drops bob's stream.
	server.SetMediaStreamLimits(e.srv, 0, time.Nanosecond)
	e.relay.roster(a.callID(), a.stream())
	testenv.Eventually(t, readTimeout, "bob's stream dropped", func() bool {
		return e.metric("parley_gateway_media_streams", nil) == 1
	})
	a.probe(a.udp)
	_, pkt := b.packet(media.TypeProbe, nil)
	b.sendVia(b.udp, pkt)
	e.waitDrops(t, "unknown_stream", 1)
}

// TestCallRosterDropsALeaverAtOnce: a stream a roster has listed is
// dropped by the next roster that leaves it out, however recently it was
// installed (the participant left, or moved the call to another device,
// §19.1): it gets none of the call's audio after that.
func TestCallRosterDropsALeaverAtOnce(t *testing.T) {
	e := startCallGateway(t, nil)
	server.SetMediaStreamLimits(e.srv, 0, time.Minute) // every stream here is "recent"
	a, b := e.inCall(t, "alice", "bob", "group.g1")
	e.relay.roster(a.callID(), a.stream(), b.stream())
	e.relay.roster(a.callID(), a.stream()) // bob's device moved the call elsewhere
	testenv.Eventually(t, readTimeout, "bob's old stream dropped", func() bool {
		return e.metric("parley_gateway_media_streams", nil) == 1
	})
	marker := media.Header{Type: media.TypeAudio, StreamID: 77, Seq: 1, Timestamp: 1}
	e.relay.sendDown(a.callID(), mediabus.AppendAudio(nil, marker, []byte("after the move")))
	if got, p := a.recvUDP(a.udp); got != marker || string(p) != "after the move" {
		t.Fatalf("alice got %+v %q, want the marker", got, p)
	}
	buf := make([]byte, 2048)
	_ = b.udp.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if n, err := b.udp.Read(buf); err == nil {
		t.Fatalf("bob's old stream still got a %d-byte packet after the roster left it out", n)
	}
}

// TestCallRosterBeforeInstall: a roster can reach the gateway before the
// stream it lists is installed (the owner publishes it when the join is
// committed, the gateway installs on the join's reply). The stream counts
// as listed all the same, so the next roster that leaves it out drops it
// at once.
func TestCallRosterBeforeInstall(t *testing.T) {
	e := startCallGateway(t, nil)
	server.SetMediaStreamLimits(e.srv, 0, time.Minute) // every stream here is "recent"
	a := e.join(t, "alice", "group.g1", "")
	a.probe(a.udp)
	const bobStream = 4242
	e.relay.force(bobStream)
	e.relay.roster(a.callID(), a.stream(), bobStream) // before bob's join reaches the gateway
	marker := media.Header{Type: media.TypeAudio, StreamID: 77, Seq: 1, Timestamp: 1}
	e.relay.sendDown(a.callID(), mediabus.AppendAudio(nil, marker, []byte("roster taken in")))
	a.recvUDP(a.udp) // the roster was read: the marker came after it on the one subscription
	b := e.join(t, "bob", "", a.callID())
	if b.stream() != bobStream {
		t.Fatalf("bob's stream %d, want the forced %d", b.stream(), bobStream)
	}
	b.probe(b.udp)
	e.relay.roster(a.callID(), a.stream()) // bob moved the call elsewhere
	testenv.Eventually(t, readTimeout, "bob's stream dropped", func() bool {
		return e.metric("parley_gateway_media_streams", nil) == 1
	})
}

// TestCallRosterStale: a roster of an older revision of the call's record
// than one the gateway took (a replica whose view is behind, such as an
// owner just replaced repeating its last roster) drops nothing, even a
// stream the newer roster listed; the next newer roster applies.
func TestCallRosterStale(t *testing.T) {
	e := startCallGateway(t, nil)
	server.SetMediaStreamLimits(e.srv, 0, time.Nanosecond) // no grace: only the revision keeps bob
	a, b := e.inCall(t, "alice", "bob", "group.g1")
	const joined, before = 20, 19
	e.relay.sendDown(a.callID(), mediabus.AppendRoster(nil, mediabus.Roster{Rev: joined, Streams: []uint32{a.stream(), b.stream()}}))
	e.relay.sendDown(a.callID(), mediabus.AppendRoster(nil, mediabus.Roster{Rev: before, Streams: []uint32{a.stream()}}))
	marker := media.Header{Type: media.TypeAudio, StreamID: 77, Seq: 1, Timestamp: 1}
	e.relay.sendDown(a.callID(), mediabus.AppendAudio(nil, marker, []byte("after the stale roster")))
	if got, p := b.recvUDP(b.udp); got != marker || string(p) != "after the stale roster" {
		t.Fatalf("bob got %+v %q, want the marker: the stale roster dropped his stream", got, p)
	}
	a.recvUDP(a.udp) // alice's copy of the marker
	if got := e.metric("parley_gateway_media_streams", nil); got != 2 {
		t.Fatalf("%v streams after a stale roster, want 2", got)
	}
	// The same revision again (the owner's periodic repeat) is taken.
	e.relay.sendDown(a.callID(), mediabus.AppendRoster(nil, mediabus.Roster{Rev: joined, Streams: []uint32{a.stream()}}))
	testenv.Eventually(t, readTimeout, "bob's stream dropped", func() bool {
		return e.metric("parley_gateway_media_streams", nil) == 1
	})
	// An empty roster older than the last taken does not end the call.
	e.relay.sendDown(a.callID(), mediabus.AppendRoster(nil, mediabus.Roster{Rev: before}))
	e.relay.sendDown(a.callID(), mediabus.AppendAudio(nil, marker, []byte("still on")))
	if got, p := a.recvUDP(a.udp); got != marker || string(p) != "still on" {
		t.Fatalf("alice got %+v %q, want the marker: a stale empty roster ended the call", got, p)
	}
}

// TestCallRosterUnordered: a roster without a revision (mediabus kind 3,
// what relays sent before revisions) is still taken, in the order it
// comes, so gateways can be upgraded before the relays; also after rosters
// with a revision (a new replica's, then an old one's).
func TestCallRosterUnordered(t *testing.T) {
	e := startCallGateway(t, nil)
	server.SetMediaStreamLimits(e.srv, 0, time.Nanosecond)
	a, _ := e.inCall(t, "alice", "bob", "group.g1")
	unordered := func(streams ...uint32) []byte {
		msg := []byte{byte(mediabus.KindRosterUnordered)}
		for _, s := range streams {
			msg = binary.BigEndian.AppendUint32(msg, s)
		}
		return msg
	}
	e.relay.sendDown(a.callID(), unordered(a.stream()))
	testenv.Eventually(t, readTimeout, "bob's stream dropped", func() bool {
		return e.metric("parley_gateway_media_streams", nil) == 1
	})
	e.relay.sendDown(a.callID(), unordered())
	testenv.Eventually(t, readTimeout, "the call ended here", func() bool {
		return e.metric("parley_gateway_media_streams", nil) == 0
	})

	// While relays are upgraded, an old replica can take over a call a new
	// one owned: its rosters come after ones with a revision, and still
	// count, the one that ends the call among them.
	c, d := e.inCall(t, "carol", "dave", "group.g2")
	e.relay.sendDown(c.callID(), mediabus.AppendRoster(nil, mediabus.Roster{Rev: 4000, Streams: []uint32{c.stream(), d.stream()}}))
	e.relay.sendDown(c.callID(), unordered(c.stream()))
	testenv.Eventually(t, readTimeout, "dave's stream dropped by the old replica's roster", func() bool {
		return e.metric("parley_gateway_media_streams", nil) == 1
	})
	e.relay.sendDown(c.callID(), unordered())
	testenv.Eventually(t, readTimeout, "the call ended by the old replica", func() bool {
		return e.metric("parley_gateway_media_streams", nil) == 0
	})
}

// TestCallConnectionClose: a closed connection's stream is dropped at
// once; leave_call drops it too; rejoining replaces it.
func TestCallConnectionClose(t *testing.T) {
	e := startCallGateway(t, nil)
	a := e.join(t, "alice", "group.g1", "")
	b := e.join(t, "bob", "", a.callID())
	a.probe(a.udp)
	a.cl.close()
	testenv.Eventually(t, readTimeout, "alice's stream dropped", func() bool {
		return e.metric("parley_gateway_media_streams", nil) == 1
	})
	_, pkt := a.packet(media.TypeProbe, nil)
	a.sendVia(a.udp, pkt)
	e.waitDrops(t, "unknown_stream", 1)

	// Rejoin on the same connection: a new stream replaces the old one.
	r := b.cl.request(&parleyv1.Frame{Body: &parleyv1.Frame_JoinCall{JoinCall: &parleyv1.JoinCallRequest{CallId: a.callID()}}})
	if r.GetCallJoined().GetStreamId() == 0 || r.GetCallJoined().GetStreamId() == b.stream() {
		t.Fatalf("rejoin: %v", r)
	}
	if got := e.metric("parley_gateway_media_streams", nil); got != 1 {
		t.Fatalf("%v streams after a rejoin, want 1", got)
	}
	if r := b.cl.request(&parleyv1.Frame{Body: &parleyv1.Frame_LeaveCall{LeaveCall: &parleyv1.LeaveCallRequest{CallId: a.callID()}}}); r.GetOk() == nil {
		t.Fatalf("leave: %v", r)
	}
	if got := e.metric("parley_gateway_media_streams", nil); got != 0 {
		t.Fatalf("%v streams after leave_call, want 0", got)
	}
}

// TestCallAlive: every interval the gateway tells the owner which of the
// call's participants it serves.
func TestCallAlive(t *testing.T) {
	e := startCallGateway(t, func(c *server.Config) { c.MediaAlive = 50 * time.Millisecond })
	a := e.join(t, "alice", "group.g1", "")
	b := e.join(t, "bob", "", a.callID())
	want := map[uint32]bool{a.stream(): true, b.stream(): true}
	seen := 0
	deadline := time.After(readTimeout)
	for seen < 3 {
		select {
		case m := <-e.relay.alive:
			if m.gateway != "gw-test" || m.call != a.callID() {
				t.Fatalf("alive %+v", m)
			}
			if len(m.streams) == 2 && want[m.streams[0]] && want[m.streams[1]] {
				seen++
			}
		case <-deadline:
			t.Fatalf("%d Alive messages naming both streams within %s", seen, readTimeout)
		}
	}
}

// TestCallAliveIdle: a stream whose client sends nothing (it abandoned
// the call) drops out of the Alive messages after the idle limit, so the
// owner can time the participant out; one that keeps probing stays.
func TestCallAliveIdle(t *testing.T) {
	e := startCallGateway(t, func(c *server.Config) { c.MediaAlive = 50 * time.Millisecond })
	const idle = 500 * time.Millisecond
	server.SetMediaStreamLimits(e.srv, idle, 0)
	a := e.join(t, "alice", "group.g1", "") // never sends a packet
	b := e.join(t, "bob", "", a.callID())
	has := func(m aliveMsg, id uint32) bool {
		for _, s := range m.streams {
			if s == id {
				return true
			}
		}
		return false
	}
	// bob probes every 100 ms (well within the idle limit); after alice
	// is gone from the Alive messages, bob must be in the next ones.
	nextProbe := time.Now()
	onlyBob := 0
	deadline := time.After(readTimeout)
	for onlyBob < 5 {
		if time.Now().After(nextProbe) {
			b.probe(b.udp)
			nextProbe = time.Now().Add(100 * time.Millisecond)
		}
		select {
		case m := <-e.relay.alive:
			switch {
			case has(m, a.stream()) && onlyBob > 0:
				t.Fatalf("alice's idle stream back in %+v", m)
			case has(m, a.stream()):
			case !has(m, b.stream()):
				t.Fatalf("bob's probing stream missing from %+v", m)
			default:
				onlyBob++
			}
		case <-deadline:
			t.Fatalf("%d Alive messages without alice's idle stream within %s", onlyBob, readTimeout)
		}
	}
	// alice's stream is still installed (the owner decides): audio she
	// sends now is forwarded, and puts her back in the Alive messages.
	h, pkt := a.packet(media.TypeAudio, []byte("back"))
	a.sendVia(a.udp, pkt)
	e.expectOwnerAudio(t, h, []byte("back"))
	testenv.Eventually(t, readTimeout, "alice in an Alive again", func() bool {
		select {
		case m := <-e.relay.alive:
			return has(m, a.stream())
		default:
			return false
		}
	})
}

// TestCallStreamCollision: two calls that picked the same stream id are
// told apart by their keys.
func TestCallStreamCollision(t *testing.T) {
	e := startCallGateway(t, nil)
	e.relay.force(42, 7, 42, 8)
	a := e.join(t, "alice", "group.g1", "")
	b := e.join(t, "bob", "", a.callID())
	c := e.join(t, "carol", "group.g2", "")
	d := e.join(t, "dave", "", c.callID())
	if a.stream() != 42 || c.stream() != 42 || a.callID() == c.callID() {
		t.Fatalf("streams %d and %d in %s and %s", a.stream(), c.stream(), a.callID(), c.callID())
	}
	b.probe(b.udp)
	d.probe(d.udp)
	for _, sp := range []struct{ from, to *peer }{{a, b}, {c, d}} {
		h, pkt := sp.from.packet(media.TypeAudio, []byte(sp.from.name))
		sp.from.sendVia(sp.from.udp, pkt)
		if got, p := sp.to.recvUDP(sp.to.udp); got != h || string(p) != sp.from.name {
			t.Fatalf("%s got %+v %q", sp.to.name, got, p)
		}
	}
}

// TestCallEvent: a CallEvent published on a user's subject reaches the
// user's connections as call_event.
func TestCallEvent(t *testing.T) {
	e := startCallGateway(t, nil)
	cl := dialTCP(t, e.env)
	cl.login("alice", &parleyv1.ClientOptions{SkipPresenceFeed: true})
	cl.settle()
	ev := &parleyv1.CallEvent{Kind: parleyv1.CallEvent_KIND_RINGING, Call: &parleyv1.Call{CallId: "c1", CallerName: "bob"}}
	b, _ := proto.Marshal(ev)
	if err := e.nc.Publish(subject.UserCallEvents("u-alice"), b); err != nil {
		t.Fatal(err)
	}
	f := cl.waitFor("call event", func(f *parleyv1.Frame) bool { return f.GetCallEvent() != nil })
	if !proto.Equal(f.GetCallEvent(), ev) {
		t.Fatalf("got %v, want %v", f.GetCallEvent(), ev)
	}
}

// TestCallUDPAddrConfig: -public-udp-addr is what clients are told; the
// media flags are validated.
func TestCallUDPAddrConfig(t *testing.T) {
	e := startCallGateway(t, func(c *server.Config) { c.PublicUDPAddr = "media.example.com:3478" })
	a := e.join(t, "alice", "group.g1", "")
	if a.joined.GetUdpAddr() != "media.example.com:3478" {
		t.Fatalf("udp_addr %q", a.joined.GetUdpAddr())
	}
	for _, tt := range []struct {
		name   string
		mutate func(*server.Config)
	}{
		{"udp addr without port", func(c *server.Config) { c.UDPAddr = "127.0.0.1" }},
		{"udp addr bad port", func(c *server.Config) { c.UDPAddr = "127.0.0.1:99999" }},
		{"public udp addr port 0", func(c *server.Config) { c.PublicUDPAddr = "example.com:0" }},
		{"public udp addr no host", func(c *server.Config) { c.PublicUDPAddr = ":3478" }},
		{"alive interval", func(c *server.Config) { c.MediaAlive = 0 }},
	} {
		cfg := testConfig()
		tt.mutate(&cfg)
		if err := cfg.Validate(); !errors.Is(err, server.ErrUDPAddr) && !errors.Is(err, server.ErrInvalidLimit) {
			t.Errorf("%s: Validate() = %v", tt.name, err)
		}
	}
	cfg := testConfig()
	cfg.UDPAddr = "0.0.0.0:0" // sealed media needs no -insecure
	if err := cfg.Validate(); err != nil {
		t.Errorf("udp on all interfaces: %v", err)
	}
}
