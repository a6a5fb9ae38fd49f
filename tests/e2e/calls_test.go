package e2e

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parleychat/parley/clients/parley"
	"github.com/parleychat/parley/clients/parley/voice"
	"github.com/parleychat/parley/libs/testenv"
	"github.com/parleychat/parley/protocol/media"
)

// callPair is alice on one gateway calling bob on another, both talking.
type callPair struct {
	alice, bob           *parley.Client
	aliceName, bobName   string
	aSess, bSess         *parley.CallSession
	aMouth, bMouth       *testenv.Mouth
	aEar, bEar           *testenv.Ear
	callID, conversation string
}

// connectCall registers alice at aAddr and bob at bAddr, has alice call bob
// and bob answer, and waits until both send over transport; both say sig.
func connectCall(t *testing.T, aAddr, bAddr string, sig testenv.Bursts, transport string) *callPair {
	t.Helper()
	return connectCallWith(t, aAddr, bAddr, testenv.NewMouth(sig), testenv.NewMouth(sig), transport)
}

// connectCallWith is connectCall with the mouths given.
func connectCallWith(t *testing.T, aAddr, bAddr string, aMouth, bMouth *testenv.Mouth, transport string) *callPair {
	t.Helper()
	p := &callPair{aMouth: aMouth, bMouth: bMouth, aEar: &testenv.Ear{}, bEar: &testenv.Ear{}}
	var as, bs *parley.Session
	p.alice, as = registered(t, "tcp://"+aAddr, "alice")
	p.bob, bs = registered(t, "tcp://"+bAddr, "bob")
	p.aliceName, p.bobName = as.Username, bs.Username
	var err error
	p.aSess, err = p.alice.PlaceCallTo(ctxS(t), p.bobName, parley.CallOptions{Input: p.aMouth, Output: p.aEar})
	if err != nil {
		t.Fatalf("alice calls bob: %v", err)
	}
	t.Cleanup(func() { _ = p.aSess.Hangup(ctxS(t)) })
	call := ringing(t, p.bob)
	if call.ID != p.aSess.ID() || call.CallerName != p.aliceName {
		t.Fatalf("bob's phone rings for %s from %q, want %s from %q", call.ID, call.CallerName, p.aSess.ID(), p.aliceName)
	}
	p.callID, p.conversation = call.ID, call.Conversation
	p.bSess, err = p.bob.JoinCall(ctxS(t), call.ID, parley.CallOptions{Input: p.bMouth, Output: p.bEar})
	if err != nil {
		t.Fatalf("bob answers: %v", err)
	}
	t.Cleanup(func() { _ = p.bSess.Hangup(ctxS(t)) })
	if err := p.aSess.WaitActive(ctxS(t)); err != nil {
		t.Fatalf("alice waits for the answer: %v", err)
	}
	onTransport(t, p.aSess, transport)
	onTransport(t, p.bSess, transport)
	return p
}

// TestCallAcrossGateways: alice on one gateway calls bob on another; both
// talk at once; every burst each one says is heard by the other, and the
// hang-up ends the call for both and leaves "Call ended" in their chat.
func TestCallAcrossGateways(t *testing.T) {
	c := newCluster(t, 2, clusterOpts{relays: 2})
	p := connectCall(t, c.gateways[0].tcp, c.gateways[1].tcp, testenv.StandardBursts(8), parley.TransportUDP)

	testenv.PlayAll(t, p.aMouth, p.bMouth)
	testenv.RequireHeard(t, "alice -> bob (udp, 2 gateways)", testenv.Listen(p.aMouth, p.bEar, time.Second), 0.6)
	testenv.RequireHeard(t, "bob -> alice (udp, 2 gateways)", testenv.Listen(p.bMouth, p.aEar, time.Second), 0.6)
	t.Logf("alice's stats: %+v", p.aSess.Stats())
	t.Logf("bob's stats: %+v", p.bSess.Stats())
	// The audio came by UDP: each client proved its address with the
	// gateway's path token (§19.3), and only a round trip's worth may have
	// come as frames before.
	for name, s := range map[string]*parley.CallSession{"alice": p.aSess, "bob": p.bSess} {
		if st := s.Stats(); st.PacketsReceived == 0 || st.ReceivedUDP < st.PacketsReceived*9/10 {
			t.Errorf("%s received %d of %d audio packets by UDP, want at least 90 %%", name, st.ReceivedUDP, st.PacketsReceived)
		}
	}

	if err := p.aSess.Hangup(ctxS(t)); err != nil {
		t.Fatalf("alice hangs up: %v", err)
	}
	ended := callEnded(t, p.bob, p.callID, 10*time.Second)
	if ended.EndReason != parley.CallEndCompleted {
		t.Errorf("bob's call ended %v, want completed", ended.EndReason)
	}
	select {
	case <-p.bSess.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("bob's call session still runs after alice hung up")
	}
	// The chat says so, with the call's length.
	testenv.Eventually(t, 10*time.Second, "a 'Call ended' message in bob's chat", func() bool {
		msgs, _, err := p.bob.History(ctxS(t), p.conversation, 0, 20)
		if err != nil {
			return false
		}
		for _, m := range msgs {
			if m.System && m.Call != nil && m.Call.CallID == p.callID && m.Call.Outcome == parley.CallEndCompleted &&
				m.Call.Duration >= 5*time.Second && strings.HasPrefix(m.Text, "Call ended") {
				return true
			}
		}
		return false
	})
	// A new call can be placed once this one ended.
	again, err := p.bob.PlaceCallTo(ctxS(t), p.aliceName, parley.CallOptions{})
	if err != nil {
		t.Fatalf("bob calls alice after the call ended: %v", err)
	}
	if err := again.Hangup(ctxS(t)); err != nil && !errors.Is(err, parley.ErrCallEnded) {
		t.Fatalf("bob cancels: %v", err)
	}
}

// TestCallThroughLossAndJitter: bob's gateway is reached through a link
// that loses 5 % of the datagrams each way and delays each by 0-30 ms
// (reordering them); speech still comes through, both ways.
func TestCallThroughLossAndJitter(t *testing.T) {
	c := newCluster(t, 1, clusterOpts{relays: 1})
	var proxy *testenv.UDPProxy
	g2 := c.addGatewayWith("gw-lossy", func(g *gatewayProc) {
		proxy = testenv.StartUDPProxy(t, g.udp, testenv.Impairment{Loss: 0.05, Jitter: 30 * time.Millisecond})
		g.publicUDP = proxy.Addr()
	})
	p := connectCall(t, c.gateways[0].tcp, g2.tcp, testenv.StandardBursts(8), parley.TransportUDP)

	testenv.PlayAll(t, p.aMouth, p.bMouth)
	// A burst is found when it matches at 0.4 or more within 600 ms of
	// when it was said (noise scores under 0.1, the other bursts under
	// 0.5 and they start 800 ms apart). Clean bursts score 0.9-1.0; a lost
	// packet (the chirps are coded in Opus' CELT mode, which has no FEC)
	// or the jitter buffer stretching its delay in the middle of a burst
	// costs some: 0.43-0.6 for one or two bursts in eight, measured.
	testenv.RequireHeard(t, "alice -> bob (5% loss, 0-30 ms jitter)", testenv.Listen(p.aMouth, p.bEar, 600*time.Millisecond), 0.4)
	testenv.RequireHeard(t, "bob -> alice (5% loss, 0-30 ms jitter)", testenv.Listen(p.bMouth, p.aEar, 600*time.Millisecond), 0.4)
	t.Logf("proxy: %d datagrams forwarded, %d dropped", proxy.Forwarded.Load(), proxy.Dropped.Load())
	bst := p.bSess.Stats()
	t.Logf("bob's stats: %+v", bst)
	if proxy.Dropped.Load() == 0 || bst.Lost == 0 {
		t.Errorf("the link lost nothing (proxy dropped %d, bob lost %d): the test did not test loss", proxy.Dropped.Load(), bst.Lost)
	}
}

// TestGroupCall: a call in a group of three. Carol joins while alice and
// bob talk and hears what is said from then on; bob's mute reaches the
// others and silences him; carol leaves and the call goes on; it ends when
// the last one leaves, and the group's history tells of it.
func TestGroupCall(t *testing.T) {
	c := newCluster(t, 2, clusterOpts{relays: 2})
	gw1, gw2 := c.gateways[0].tcp, c.gateways[1].tcp
	alice, _ := registered(t, "tcp://"+gw1, "alice")
	bob, bs := registered(t, "tcp://"+gw2, "bob")
	carol, cs := registered(t, "tcp://"+gw1, "carol")
	outsider, _ := registered(t, "tcp://"+gw2, "mallory")
	group, err := alice.CreateGroup(ctxS(t), "standup", bs.Username, cs.Username)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []*parley.Client{bob, carol} {
		if _, err := m.JoinGroup(ctxS(t), group.ID); err != nil {
			t.Fatal(err)
		}
	}

	aMouth, aEar := testenv.NewMouth(testenv.StandardBursts(4)), &testenv.Ear{}
	aSess, err := alice.PlaceCall(ctxS(t), group.ID, parley.CallOptions{Input: aMouth, Output: aEar})
	if err != nil {
		t.Fatalf("alice starts a group call: %v", err)
	}
	t.Cleanup(func() { _ = aSess.Hangup(ctxS(t)) })
	for _, m := range []*parley.Client{bob, carol} {
		if call := ringing(t, m); call.ID != aSess.ID() || call.Kind != parley.ConversationGroup {
			t.Fatalf("rings for %s (%v), want the group call %s", call.ID, call.Kind, aSess.ID())
		}
	}
	// Someone outside the group cannot listen in.
	if _, err := outsider.JoinCall(ctxS(t), aSess.ID(), parley.CallOptions{}); !errors.Is(err, parley.ErrPermissionDenied) {
		t.Fatalf("an outsider joins the group call: %v, want PERMISSION_DENIED", err)
	}

	bMouth, bEar := testenv.ToneMouth(523), &testenv.Ear{}
	bSess, err := bob.JoinCall(ctxS(t), aSess.ID(), parley.CallOptions{Input: bMouth, Output: bEar})
	if err != nil {
		t.Fatalf("bob joins: %v", err)
	}
	t.Cleanup(func() { _ = bSess.Hangup(ctxS(t)) })
	onTransport(t, aSess, parley.TransportUDP)
	onTransport(t, bSess, parley.TransportUDP)
	bMouth.Start()
	testenv.PlayAll(t, aMouth)
	testenv.RequireHeard(t, "alice -> bob (group, before carol)", testenv.Listen(aMouth, bEar, time.Second), 0.6)

	// Carol joins mid-call, and hears both from then on.
	cEar := &testenv.Ear{}
	cSess, err := carol.JoinCall(ctxS(t), aSess.ID(), parley.CallOptions{Output: cEar})
	if err != nil {
		t.Fatalf("carol joins mid-call: %v", err)
	}
	t.Cleanup(func() { _ = cSess.Hangup(ctxS(t)) })
	onTransport(t, cSess, parley.TransportUDP)
	testenv.Eventually(t, 10*time.Second, "carol sees three participants", func() bool { return len(cSess.Call().Participants) == 3 })
	joined := time.Now()
	time.Sleep(time.Second)
	if loud := testenv.LoudSince(cEar, joined.Add(500*time.Millisecond)); loud < 0.8 {
		t.Errorf("carol hears bob's tone in %.0f%% of the frames since she joined, want most", loud*100)
	}

	// Bob mutes: the others see it, and his tone stops reaching them.
	if err := bSess.Mute(ctxS(t), true); err != nil {
		t.Fatalf("bob mutes: %v", err)
	}
	muted := time.Now()
	testenv.Eventually(t, 10*time.Second, "alice sees bob muted", func() bool {
		p, ok := aSess.Call().Participant(bs.UserID)
		return ok && p.Muted
	})
	time.Sleep(1500 * time.Millisecond)
	if loud := testenv.LoudSince(aEar, muted.Add(500*time.Millisecond)); loud > 0.05 {
		t.Errorf("alice still hears bob in %.0f%% of the frames after he muted", loud*100)
	}
	if err := bSess.Mute(ctxS(t), false); err != nil {
		t.Fatalf("bob unmutes: %v", err)
	}
	unmuted := time.Now()
	time.Sleep(1500 * time.Millisecond)
	if loud := testenv.LoudSince(aEar, unmuted.Add(500*time.Millisecond)); loud < 0.8 {
		t.Errorf("alice hears bob in %.0f%% of the frames after he unmuted, want most", loud*100)
	}

	// Carol leaves; the call goes on for the two others.
	if err := cSess.Hangup(ctxS(t)); err != nil {
		t.Fatalf("carol leaves: %v", err)
	}
	testenv.Eventually(t, 10*time.Second, "alice sees carol gone", func() bool {
		_, in := aSess.Call().Participant(cs.UserID)
		return !in && len(aSess.Call().Participants) == 2
	})
	select {
	case <-aSess.Done():
		t.Fatal("the group call ended when carol left")
	default:
	}
	// The last two leave: it ends.
	if err := aSess.Hangup(ctxS(t)); err != nil {
		t.Fatal(err)
	}
	if err := bSess.Hangup(ctxS(t)); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, "the group's history tells of the call", func() bool {
		msgs, _, err := carol.History(ctxS(t), group.ID, 0, 50)
		if err != nil {
			return false
		}
		var started, ended bool
		for _, m := range msgs {
			if m.Call == nil || m.Call.CallID != aSess.ID() {
				continue
			}
			started = started || strings.Contains(m.Text, "started a call")
			ended = ended || (m.Call.Outcome == parley.CallEndCompleted && m.Call.Duration > 0)
		}
		return started && ended
	})
}

// TestCallSurvivesRelayKill: the media-relay replica that forwards a
// call's audio is killed (SIGKILL); the other one takes the call over and
// the audio comes back within 2 s, without anyone redialling.
func TestCallSurvivesRelayKill(t *testing.T) {
	c := newCluster(t, 2, clusterOpts{relays: 2})
	p := connectCallWith(t, c.gateways[0].tcp, c.gateways[1].tcp, testenv.ToneMouth(440), testenv.ToneMouth(660), parley.TransportUDP)
	p.aMouth.Start()
	p.bMouth.Start()
	time.Sleep(time.Second)
	var owner *relayProc
	for _, r := range c.relays {
		if metric(t, r.admin, "parley_relay_calls_active") == 1 {
			owner = r
		}
	}
	if owner == nil {
		t.Fatal("no relay replica owns the call")
	}
	killed := time.Now()
	owner.kill()
	time.Sleep(5 * time.Second)
	gapAB, gapBA := testenv.SilentRun(p.bEar, killed), testenv.SilentRun(p.aEar, killed)
	t.Logf("owner %s killed: the audio stopped for %s (alice -> bob) and %s (bob -> alice)", owner.id, gapAB, gapBA)
	for _, g := range []time.Duration{gapAB, gapBA} {
		if g >= 2*time.Second {
			t.Errorf("the audio stopped for %s after the owner was killed, want under 2 s", g)
		}
	}
	if loud := testenv.LoudSince(p.bEar, killed.Add(3*time.Second)); loud < 0.9 {
		t.Errorf("bob hears alice in %.0f%% of the frames after the takeover", loud*100)
	}
	select {
	case <-p.aSess.Done():
		t.Fatalf("alice's call ended: %v", p.aSess.Err())
	case <-p.bSess.Done():
		t.Fatalf("bob's call ended: %v", p.bSess.Err())
	default:
	}
}

// TestCallSurvivesGatewayRestart: bob's gateway is killed and started
// again; bob's client reconnects, rejoins the call, and the two hear each
// other again; the call never ended.
func TestCallSurvivesGatewayRestart(t *testing.T) {
	c := newCluster(t, 2, clusterOpts{relays: 1})
	p := connectCallWith(t, c.gateways[0].tcp, c.gateways[1].tcp, testenv.ToneMouth(440), testenv.ToneMouth(660), parley.TransportUDP)
	p.aMouth.Start()
	p.bMouth.Start()
	time.Sleep(time.Second)
	before := p.bSess.Stats().StreamID
	restarted := time.Now()
	c.restartGateway(c.gateways[1])
	testenv.Eventually(t, 15*time.Second, "bob rejoined on a new stream", func() bool {
		st := p.bSess.Stats()
		return st.StreamID != before && st.Transport == parley.TransportUDP
	})
	back := time.Now()
	time.Sleep(2 * time.Second)
	t.Logf("bob's gateway restarted: back in the call after %s", back.Sub(restarted).Round(time.Millisecond))
	if loud := testenv.LoudSince(p.bEar, back.Add(500*time.Millisecond)); loud < 0.8 {
		t.Errorf("bob hears alice in %.0f%% of the frames after rejoining", loud*100)
	}
	if loud := testenv.LoudSince(p.aEar, back.Add(500*time.Millisecond)); loud < 0.8 {
		t.Errorf("alice hears bob in %.0f%% of the frames after he rejoined", loud*100)
	}
	select {
	case <-p.aSess.Done():
		t.Fatalf("alice's call ended: %v", p.aSess.Err())
	default:
	}
}

// TestCallClientKilled: bob answers with the parley command line, which is
// then killed (SIGKILL); alice's call ends (LOST) within 10 s. Before
// that, the command line recorded the conversation as Ogg Opus, which
// opusdec (opus-tools) decodes.
func TestCallClientKilled(t *testing.T) {
	c := newCluster(t, 1, clusterOpts{relays: 1})
	gw := c.gateways[0].tcp
	bobDir := t.TempDir()
	bobName := uniq("bob")
	if r := runParley(t, gw, bobDir, "register", "--user", bobName, "--password-stdin"); r.err != nil {
		t.Fatalf("parley register: %v\n%s", r.err, r.out)
	}
	rec := filepath.Join(bobDir, "call.ogg")
	bob := startParley(t, gw, bobDir, "answer", "--record", rec, "--wait", "30s")
	bob.waitOutput(t, "waiting for a call", 15*time.Second)

	alice, _ := registered(t, "tcp://"+gw, "alice")
	aMouth, aEar := testenv.NewMouth(testenv.StandardBursts(4)), &testenv.Ear{}
	sess, err := alice.PlaceCallTo(ctxS(t), bobName, parley.CallOptions{Input: aMouth, Output: aEar})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sess.Hangup(ctxS(t)) })
	if err := sess.WaitActive(ctxS(t)); err != nil {
		t.Fatalf("bob's parley answer did not answer: %v\n%s", err, bob.out.String())
	}
	onTransport(t, sess, parley.TransportUDP)
	testenv.PlayAll(t, aMouth)

	killed := time.Now()
	bob.kill()
	ended := callEnded(t, alice, sess.ID(), 15*time.Second)
	took := time.Since(killed)
	t.Logf("bob's client killed: alice's call ended (%v) after %s", ended.EndReason, took.Round(time.Millisecond))
	if took > 10*time.Second {
		t.Errorf("alice learned of bob's loss after %s, want within 10 s", took)
	}
	if ended.EndReason != parley.CallEndLost {
		t.Errorf("the call ended %v, want lost", ended.EndReason)
	}

	// What bob's client recorded decodes with a decoder nobody here wrote,
	// and what alice said is in it.
	out := filepath.Join(t.TempDir(), "decoded.wav")
	if b, err := exec.Command("opusdec", "--rate", "48000", "--force-wav", rec, out).CombinedOutput(); err != nil {
		t.Fatalf("opusdec %s: %v\n%s", rec, err, b)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	pcm, err := voice.ReadWAV(f)
	if err != nil {
		t.Fatalf("opusdec's output: %v", err)
	}
	found := 0
	var scores []string
	for k := range aMouth.Signal().Starts {
		_, score := aMouth.Signal().Find(pcm, k, 0, len(pcm))
		if score >= 0.6 {
			found++
		}
		scores = append(scores, fmt.Sprintf("%.2f", score))
	}
	t.Logf("opusdec decoded %.1f s of the recording; %d of %d of alice's bursts in it (scores %v)", float64(len(pcm))/48000, found, len(aMouth.Signal().Starts), scores)
	if found != len(aMouth.Signal().Starts) {
		t.Errorf("%d of alice's %d bursts in the recording", found, len(aMouth.Signal().Starts))
	}
}

// TestCallAbuse: a stranger cannot join a private call; forged packets on
// a participant's stream and a flood of garbage at the gateway's media port
// are dropped, and the call is unharmed: every burst still heard.
func TestCallAbuse(t *testing.T) {
	c := newCluster(t, 1, clusterOpts{relays: 1})
	g := c.gateways[0]
	p := connectCall(t, g.tcp, g.tcp, testenv.StandardBursts(6), parley.TransportUDP)
	stranger, _ := registered(t, "tcp://"+g.tcp, "mallory")
	if _, err := stranger.JoinCall(ctxS(t), p.callID, parley.CallOptions{}); !errors.Is(err, parley.ErrPermissionDenied) && !errors.Is(err, parley.ErrNotFound) {
		t.Fatalf("a stranger joins a private call: %v, want PERMISSION_DENIED or NOT_FOUND", err)
	}
	if err := stranger.RejectCall(ctxS(t), p.callID); !errors.Is(err, parley.ErrNotFound) {
		t.Fatalf("a stranger rejects someone else's call: %v, want NOT_FOUND", err)
	}

	// The flood: garbage, and packets that claim alice's stream with a key
	// that is not hers, from another address, while both talk.
	aliceStream := p.aSess.Stats().StreamID
	conn, err := net.Dial("udp", g.udp)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	forgedKey := make([]byte, media.KeyLen)
	key, _ := media.NewKey(forgedKey)
	stop := make(chan struct{})
	var sent atomic.Int64
	var flood sync.WaitGroup
	flood.Go(func() {
		buf := make([]byte, 200)
		for i := uint32(0); ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			var pkt []byte
			if i%2 == 0 {
				pkt, _ = key.Seal(buf[:0], media.Up, media.Header{Type: media.TypeAudio, StreamID: aliceStream, Seq: i, Timestamp: i * 960}, []byte("not alice"))
			} else {
				for j := range buf {
					buf[j] = byte(i*31 + uint32(j))
				}
				pkt = buf
			}
			if _, err := conn.Write(pkt); err == nil {
				sent.Add(1)
			}
			if i%64 == 0 {
				time.Sleep(time.Millisecond) // ~50k packets a second: a flood, without starving the machine's two cores
			}
		}
	})
	testenv.PlayAll(t, p.aMouth, p.bMouth)
	close(stop)
	flood.Wait()
	testenv.RequireHeard(t, "alice -> bob during the flood", testenv.Listen(p.aMouth, p.bEar, time.Second), 0.6)
	testenv.RequireHeard(t, "bob -> alice during the flood", testenv.Listen(p.bMouth, p.aEar, time.Second), 0.6)
	drops := metric(t, g.admin, "parley_gateway_media_drops_total")
	t.Logf("flood: %d datagrams sent at the media port during the call; the gateway dropped %.0f (auth %.0f, malformed %.0f, unknown stream %.0f)",
		sent.Load(), drops, metric(t, g.admin, "parley_gateway_media_drops_total", `reason="auth"`),
		metric(t, g.admin, "parley_gateway_media_drops_total", `reason="malformed"`),
		metric(t, g.admin, "parley_gateway_media_drops_total", `reason="unknown_stream"`))
	if drops < float64(sent.Load())/2 {
		t.Errorf("the gateway counted %.0f drops of %d garbage datagrams", drops, sent.Load())
	}
	if st := p.bSess.Stats(); st.Dropped != 0 {
		t.Errorf("bob's client dropped %d packets: forged ones got through the gateway", st.Dropped)
	}
}
