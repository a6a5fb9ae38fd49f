package sdktest

import (
	"fmt"
	"testing"
	"time"

	"github.com/parleychat/parley/clients/internal/parleytest"
	"github.com/parleychat/parley/clients/parley"
	"github.com/parleychat/parley/libs/testenv"
)

// Calls over a direct session (docs/protocol.md §20.7), through parleyd on
// one machine, where direct sessions go direct on their host candidates.
// What the gateway's media relay carried is read from its own counters
// (parley_gateway_media_packets_*_total, every transport).

const (
	gatewayMediaIn  = "parley_gateway_media_packets_received_total"
	gatewayMediaOut = "parley_gateway_media_packets_sent_total"
)

// callPair has alice call bob and bob answer, each with its own mouth and
// ear; it returns both sessions once the call is active.
func callPair(t *testing.T, alice, bob *parley.Client, aIn, bIn parley.CallOptions) (*parley.CallSession, *parley.CallSession) {
	t.Helper()
	ctx := ctxT(t)
	aSess, err := alice.PlaceCallTo(ctx, "bob", aIn)
	if err != nil {
		t.Fatalf("alice calls bob: %v", err)
	}
	next(t, bob, func(ev parley.CallRingingEvent) bool { return ev.Call.ID == aSess.ID() })
	bSess, err := bob.JoinCall(ctx, aSess.ID(), bIn)
	if err != nil {
		t.Fatalf("bob answers: %v", err)
	}
	if err := aSess.WaitActive(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		bSess.Hangup(ctxT(t))
		aSess.Hangup(ctxT(t))
	})
	return aSess, bSess
}

// waitCallPath waits for the CallPathEvent saying s's audio took path,
// and for its stats to say so.
func waitCallPath(t *testing.T, c *parley.Client, s *parley.CallSession, path parley.CallPath) {
	t.Helper()
	next(t, c, func(ev parley.CallPathEvent) bool { return ev.Session == s && ev.Path == path })
	if got := s.Stats().Path; got != path {
		t.Fatalf("after a CallPathEvent %s the stats say %s", path, got)
	}
}

// TestCallOverDirectSession: alice and bob hold a direct session when
// alice calls bob. Their audio goes straight between them: every burst is
// heard both ways, each side's stats and events say direct, and the
// gateway's media relay carries none of the audio meanwhile (only the
// probes that keep the call's streams alive).
func TestCallOverDirectSession(t *testing.T) {
	p := parleytest.Start(t, nil)
	ctx := ctxT(t)
	alice := dial(t, p.TCPAddr(), parley.WithPresenceFeed(false))
	bob := dial(t, p.TCPAddr(), parley.WithPresenceFeed(false))
	register(t, alice, "alice")
	register(t, bob, "bob")
	as, bs := goDirect(t, alice, bob, "bob")
	for _, s := range []*parley.DirectSession{as, bs} {
		if err := s.WaitPath(ctx, parley.DirectDirect); err != nil {
			t.Fatalf("the direct session never went direct: %v", err)
		}
	}

	aMouth, aEar := testenv.NewMouth(testenv.StandardBursts(5)), &testenv.Ear{}
	bMouth, bEar := testenv.NewMouth(testenv.StandardBursts(5)), &testenv.Ear{}
	aSess, bSess := callPair(t, alice, bob, parley.CallOptions{Input: aMouth, Output: aEar}, parley.CallOptions{Input: bMouth, Output: bEar})
	waitCallPath(t, alice, aSess, parley.CallDirect)
	waitCallPath(t, bob, bSess, parley.CallDirect)

	a0, b0 := aSess.Stats(), bSess.Stats()
	in0, out0 := p.Counter(gatewayMediaIn), p.Counter(gatewayMediaOut)
	// Every snapshot of the stats taken while they talk counts each frame
	// said in AudioSent and DirectSent together: the two never drift apart.
	stop, drift := make(chan struct{}), make(chan string, 1)
	go func() {
		defer close(drift)
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
			for who, s := range map[string]*parley.CallSession{"alice": aSess, "bob": bSess} {
				st, st0 := s.Stats(), a0
				if s == bSess {
					st0 = b0
				}
				if st.AudioSent-st0.AudioSent != st.DirectSent-st0.DirectSent {
					drift <- fmt.Sprintf("%s's stats said %d frames sent, %d direct", who, st.AudioSent-st0.AudioSent, st.DirectSent-st0.DirectSent)
					return
				}
			}
		}
	}()
	testenv.PlayAll(t, aMouth, bMouth)
	close(stop)
	if d, ok := <-drift; ok {
		t.Errorf("a snapshot of the stats mid-call: %s", d)
	}
	in, out := p.Counter(gatewayMediaIn)-in0, p.Counter(gatewayMediaOut)-out0
	a, b := aSess.Stats(), bSess.Stats()
	testenv.RequireHeard(t, "alice -> bob (direct)", testenv.Listen(aMouth, bEar, time.Second), 0.6)
	testenv.RequireHeard(t, "bob -> alice (direct)", testenv.Listen(bMouth, aEar, time.Second), 0.6)

	aSaid, bSaid := a.AudioSent-a0.AudioSent, b.AudioSent-b0.AudioSent
	t.Logf("while they talked: alice said %d frames (%d direct), bob %d (%d direct); bob heard %d direct, alice %d; the gateway took %v media packets and sent %v",
		aSaid, a.DirectSent-a0.DirectSent, bSaid, b.DirectSent-b0.DirectSent, b.DirectReceived-b0.DirectReceived, a.DirectReceived-a0.DirectReceived, in, out)
	for _, s := range []struct {
		who      string
		said     uint64
		direct   uint64
		heard    uint64
		peerSaid uint64
		st       parley.CallStats
	}{
		{"alice", aSaid, a.DirectSent - a0.DirectSent, a.DirectReceived - a0.DirectReceived, bSaid, a},
		{"bob", bSaid, b.DirectSent - b0.DirectSent, b.DirectReceived - b0.DirectReceived, aSaid, b},
	} {
		if s.said < 100 || s.direct != s.said {
			t.Errorf("%s said %d frames, %d of them direct: want 100 or more, all direct", s.who, s.said, s.direct)
		}
		if s.heard < s.peerSaid*95/100 {
			t.Errorf("%s received %d frames directly of the %d the other said", s.who, s.heard, s.peerSaid)
		}
		if s.st.Path != parley.CallDirect {
			t.Errorf("%s's call is %s after the talk", s.who, s.st.Path)
		}
	}
	// The gateway heard each client's probes (one every 5 s) and answered
	// them, but none of the 200 and more frames they said.
	if in > 10 || out > 10 {
		t.Errorf("the gateway's media relay took %v packets and sent %v while %d frames went direct: the audio went through it", in, out, aSaid+bSaid)
	}
	if aSess.Call().State != parley.CallActive || len(aSess.Call().Participants) != 2 {
		t.Errorf("the call lost a participant: %+v", aSess.Call())
	}
}

// TestCallMovesBetweenRelayAndDirect: a call starts on the media relay; a
// direct session opened mid-call takes its audio; closing that session
// mid-call puts the audio back on the relay at once. The call goes on
// throughout and each side hears the other's tone all along.
func TestCallMovesBetweenRelayAndDirect(t *testing.T) {
	p := parleytest.Start(t, nil)
	ctx := ctxT(t)
	alice := dial(t, p.TCPAddr(), parley.WithPresenceFeed(false))
	bob := dial(t, p.TCPAddr(), parley.WithPresenceFeed(false))
	register(t, alice, "alice")
	register(t, bob, "bob")
	aMouth, aEar := testenv.ToneMouth(440), &testenv.Ear{}
	bMouth, bEar := testenv.ToneMouth(660), &testenv.Ear{}
	aSess, bSess := callPair(t, alice, bob, parley.CallOptions{Input: aMouth, Output: aEar}, parley.CallOptions{Input: bMouth, Output: bEar})
	aMouth.Start()
	bMouth.Start()
	heard := func(what string, s *parley.CallSession, n uint64, direct bool) {
		t.Helper()
		base := s.Stats()
		testenv.Eventually(t, wait, what, func() bool {
			st := s.Stats()
			if direct {
				return st.DirectReceived-base.DirectReceived >= n
			}
			return st.PacketsReceived-st.DirectReceived-(base.PacketsReceived-base.DirectReceived) >= n
		})
	}

	// Relayed: no direct session yet.
	heard("bob hears alice through the relay", bSess, 50, false)
	heard("alice hears bob through the relay", aSess, 50, false)
	if a, b := aSess.Stats(), bSess.Stats(); a.Path != parley.CallRelayed || b.Path != parley.CallRelayed || a.DirectSent != 0 || b.DirectSent != 0 {
		t.Fatalf("without a direct session the call is %s/%s, %d/%d frames sent direct", a.Path, b.Path, a.DirectSent, b.DirectSent)
	}

	// A direct session opens mid-call: the audio moves onto it.
	opened := time.Now()
	as, bs := goDirect(t, alice, bob, "bob")
	for _, s := range []*parley.DirectSession{as, bs} {
		if err := s.WaitPath(ctx, parley.DirectDirect); err != nil {
			t.Fatalf("the direct session never went direct: %v", err)
		}
	}
	waitCallPath(t, alice, aSess, parley.CallDirect)
	waitCallPath(t, bob, bSess, parley.CallDirect)
	heard("bob hears alice directly", bSess, 100, true)
	heard("alice hears bob directly", aSess, 100, true)

	// Alice closes it mid-call: back to the relay, the call goes on.
	in0 := p.Counter(gatewayMediaIn)
	closed := time.Now()
	if err := as.Close(); err != nil {
		t.Fatal(err)
	}
	waitCallPath(t, alice, aSess, parley.CallRelayed)
	waitCallPath(t, bob, bSess, parley.CallRelayed)
	heard("bob hears alice through the relay again", bSess, 100, false)
	heard("alice hears bob through the relay again", aSess, 100, false)
	if in := p.Counter(gatewayMediaIn) - in0; in < 200 {
		t.Errorf("the gateway's media relay took %v packets since the direct session closed, want the audio of both (200 and more)", in)
	}
	for _, e := range []struct {
		what string
		ear  *testenv.Ear
	}{{"alice -> bob", bEar}, {"bob -> alice", aEar}} {
		gap := testenv.SilentRun(e.ear, opened)
		t.Logf("%s: the tone stopped for at most %s through both moves (loud in %.0f%% of the frames since the close)", e.what, gap, 100*testenv.LoudSince(e.ear, closed))
		if gap >= time.Second {
			t.Errorf("%s: the tone stopped for %s around the moves", e.what, gap)
		}
		if loud := testenv.LoudSince(e.ear, closed); loud < 0.8 {
			t.Errorf("%s: loud in %.0f%% of the frames since the direct session closed", e.what, loud*100)
		}
	}
	for _, s := range []*parley.CallSession{aSess, bSess} {
		select {
		case <-s.Done():
			t.Fatalf("the call ended with the direct session: %v", s.Err())
		default:
		}
	}
}

// TestGroupCallStaysRelayed: alice and bob hold a direct session, but
// their group's call is a group call: its audio goes through the media
// relay (a group call never goes direct), and is heard there.
func TestGroupCallStaysRelayed(t *testing.T) {
	p := parleytest.Start(t, nil)
	ctx := ctxT(t)
	alice := dial(t, p.TCPAddr(), parley.WithPresenceFeed(false))
	bob := dial(t, p.TCPAddr(), parley.WithPresenceFeed(false))
	register(t, alice, "alice")
	register(t, bob, "bob")
	as, bs := goDirect(t, alice, bob, "bob")
	for _, s := range []*parley.DirectSession{as, bs} {
		if err := s.WaitPath(ctx, parley.DirectDirect); err != nil {
			t.Fatalf("the direct session never went direct: %v", err)
		}
	}
	g, err := alice.CreateGroup(ctx, "Team", "bob")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bob.JoinGroup(ctx, g.ID); err != nil {
		t.Fatal(err)
	}

	aMouth, bEar := testenv.ToneMouth(440), &testenv.Ear{}
	aSess, err := alice.PlaceCall(ctx, g.ID, parley.CallOptions{Input: aMouth})
	if err != nil {
		t.Fatalf("alice calls the group: %v", err)
	}
	next(t, bob, func(ev parley.CallRingingEvent) bool { return ev.Call.ID == aSess.ID() })
	bSess, err := bob.JoinCall(ctx, aSess.ID(), parley.CallOptions{Output: bEar})
	if err != nil {
		t.Fatalf("bob joins: %v", err)
	}
	t.Cleanup(func() {
		bSess.Hangup(ctxT(t))
		aSess.Hangup(ctxT(t))
	})
	if err := aSess.WaitActive(ctx); err != nil {
		t.Fatal(err)
	}
	aMouth.Start()
	in0 := p.Counter(gatewayMediaIn)
	testenv.Eventually(t, wait, "bob hears alice in the group call", func() bool { return bSess.Stats().PacketsReceived >= 100 })
	a, b := aSess.Stats(), bSess.Stats()
	if a.Path != parley.CallRelayed || b.Path != parley.CallRelayed || a.DirectSent != 0 || b.DirectReceived != 0 {
		t.Fatalf("a group call went direct: alice %s (%d frames direct), bob %s (%d received direct)", a.Path, a.DirectSent, b.Path, b.DirectReceived)
	}
	if in := p.Counter(gatewayMediaIn) - in0; in < 100 {
		t.Errorf("the gateway's media relay took %v packets while bob heard 100 frames", in)
	}
	if loud := testenv.LoudSince(bEar, time.Now().Add(-time.Second)); loud < 0.8 {
		t.Errorf("bob hears alice's tone in %.0f%% of the last second's frames", loud*100)
	}
	if as.Path() != parley.DirectDirect {
		t.Errorf("the direct session is %s: the test did not have one to use", as.Path())
	}
}
