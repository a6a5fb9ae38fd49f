package parley_test

import (
	"context"
	"errors"
	"math"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/parleychat/parley/clients/parley"
	"github.com/parleychat/parley/clients/parley/voice"
)

// speechLike is n frames of a speech-like signal: a harmonic series on a
// gliding pitch shaped by two formants and a 4 Hz syllable envelope (the
// Opus encoder is tuned for speech, so a pure tone is a poor probe).
func speechLike(n int) []int16 {
	pcm := make([]int16, n*voice.FrameSamples)
	phase := 0.0
	for i := range pcm {
		t := float64(i) / voice.SampleRate
		f0 := 140 + 30*math.Sin(2*math.Pi*0.7*t)
		phase += 2 * math.Pi * f0 / voice.SampleRate
		var v float64
		for h := 1; h <= 20; h++ {
			f := f0 * float64(h)
			formants := math.Exp(-math.Pow((f-700)/300, 2)) + 0.6*math.Exp(-math.Pow((f-1800)/400, 2)) + 0.05
			v += formants * math.Sin(float64(h)*phase) / float64(h)
		}
		env := 0.2 + 0.8*math.Max(0, math.Sin(2*math.Pi*4*t))
		pcm[i] = int16(9000 * env * v)
	}
	return pcm
}

// gatedSource sends silence until open is called, then pcm, then io.EOF.
type gatedSource struct {
	mu     sync.Mutex
	opened bool
	src    *voice.SamplesSource
}

func (g *gatedSource) open() {
	g.mu.Lock()
	g.opened = true
	g.mu.Unlock()
}

func (g *gatedSource) ReadFrame(pcm []int16) error {
	g.mu.Lock()
	opened := g.opened
	g.mu.Unlock()
	if !opened {
		clear(pcm)
		return nil
	}
	return g.src.ReadFrame(pcm)
}

// decimate averages blocks of k samples (a crude low-pass), as float64.
func decimate(pcm []int16, k int) []float64 {
	out := make([]float64, len(pcm)/k)
	for i := range out {
		var s float64
		for _, v := range pcm[i*k : (i+1)*k] {
			s += float64(v)
		}
		out[i] = s / float64(k)
	}
	return out
}

func ncc(a, b []float64, lag int) float64 {
	var ab, aa, bb float64
	for i := 0; i < len(a) && i+lag < len(b); i++ {
		x, y := a[i], b[i+lag]
		ab += x * y
		aa += x * x
		bb += y * y
	}
	if aa == 0 || bb == 0 {
		return 0
	}
	return ab / math.Sqrt(aa*bb)
}

// bestMatch is the normalised cross-correlation of sent with heard at the
// lag (up to maxLag samples) where they match best, found on signals
// decimated by 8 (6 kHz) and refined at full rate.
func bestMatch(sent, heard []int16, maxLag int) (lag int, c float64) {
	const k = 8
	ds, dh := decimate(sent, k), decimate(heard, k)
	best, bc := 0, -2.0
	for l := 0; l <= maxLag/k; l++ {
		if v := ncc(ds, dh, l); v > bc {
			best, bc = l, v
		}
	}
	fs, fh := decimate(sent, 1), decimate(heard, 1)
	lag, c = best*k, -2
	for l := max(0, best*k-2*k); l <= best*k+2*k; l++ {
		if v := ncc(fs, fh, l); v > c {
			lag, c = l, v
		}
	}
	return lag, c
}

// segmentMatch is the median over 200 ms pieces of sent of each piece's
// best correlation with heard within 60 ms of lag: it tolerates what a
// jitter buffer does on a busy machine (a frame concealed, the delay
// moved by a frame), which a single alignment of the whole does not.
func segmentMatch(sent, heard []int16, lag int) float64 {
	const k, seg, slack = 4, voice.SampleRate / 5, 3 * voice.SampleRate / 50
	ds, dh := decimate(sent, k), decimate(heard, k)
	var cs []float64
	for off := 0; off+seg/k <= len(ds); off += seg / k {
		piece := ds[off : off+seg/k]
		best := -2.0
		for l := max(0, (lag-slack)/k); l <= (lag+slack)/k; l++ {
			if off+l >= len(dh) {
				break
			}
			best = max(best, ncc(piece, dh[off+l:], 0))
		}
		cs = append(cs, best)
	}
	slices.Sort(cs)
	if len(cs) == 0 {
		return 0
	}
	return cs[len(cs)/2]
}

// waitFor polls cond until it holds or a generous deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// user is a logged-in client whose events are collected.
type user struct {
	c      *parley.Client
	mu     sync.Mutex
	events []parley.Event
}

func login(t *testing.T, g *fakeGateway, name string, opts ...parley.Option) *user {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := parley.Dial(ctx, g.addr(), append([]parley.Option{parley.WithBackoff(20*time.Millisecond, 100*time.Millisecond)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.Login(ctx, name, "pw"); err != nil {
		t.Fatal(err)
	}
	u := &user{c: c}
	go func() {
		for ev := range c.Events() {
			u.mu.Lock()
			u.events = append(u.events, ev)
			u.mu.Unlock()
		}
	}()
	return u
}

// event waits for the first event match accepts.
func (u *user) event(t *testing.T, what string, match func(parley.Event) bool) parley.Event {
	t.Helper()
	var found parley.Event
	waitFor(t, what, func() bool {
		u.mu.Lock()
		defer u.mu.Unlock()
		for _, ev := range u.events {
			if match(ev) {
				found = ev
				return true
			}
		}
		return false
	})
	return found
}

func ringing(t *testing.T, u *user) parley.Call {
	t.Helper()
	return u.event(t, "the call to ring", func(ev parley.Event) bool {
		_, ok := ev.(parley.CallRingingEvent)
		return ok
	}).(parley.CallRingingEvent).Call
}

// callPair has alice call bob and bob answer; alice speaks what src gives
// and bob hears into heard.
func callPair(t *testing.T, g *fakeGateway, aliceOpts, bobOpts parley.CallOptions) (alice, bob *user, as, bs *parley.CallSession) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	alice, bob = login(t, g, "alice"), login(t, g, "bob")
	as, err := alice.c.PlaceCallTo(ctx, "bob", aliceOpts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = as.Hangup(context.Background()) })
	call := ringing(t, bob)
	if call.ID != as.ID() || call.CallerName != "alice" || call.State != parley.CallRinging {
		t.Fatalf("bob was rung for %+v; alice placed %s", call, as.ID())
	}
	bs, err = bob.c.JoinCall(ctx, call.ID, bobOpts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = bs.Hangup(context.Background()) })
	if err := as.WaitActive(ctx); err != nil {
		t.Fatalf("alice waiting for the answer: %v", err)
	}
	return alice, bob, as, bs
}

// speakAndHear opens the gate of alice's speech and checks bob hears it:
// the mix at his output matches what was sent.
func speakAndHear(t *testing.T, src *gatedSource, sent []int16, heard *voice.SampleBuffer, listener *parley.CallSession) {
	t.Helper()
	start := heard.Len()
	src.open()
	waitFor(t, "bob's output to cover the speech", func() bool {
		return heard.Len() >= start+len(sent)+voice.SampleRate
	})
	got := heard.Samples()[start:]
	lag, whole := bestMatch(sent, got, voice.SampleRate)
	c := segmentMatch(sent, got, lag)
	t.Logf("heard the speech %v later, correlation %.3f (whole), %.3f (median of 200 ms pieces)", time.Duration(lag)*time.Second/voice.SampleRate, whole, c)
	if c < 0.6 {
		t.Errorf("what bob heard matches what alice said with correlation %.3f (lag %d samples), want >= 0.6; bob's stats %+v", c, lag, listener.Stats())
	}
}

func TestCallOverUDP(t *testing.T) {
	g := newFakeGateway(t, false)
	sent := speechLike(75) // 1.5 s
	src := &gatedSource{src: voice.NewSamplesSource(sent)}
	heard := new(voice.SampleBuffer)
	alice, bob, as, bs := callPair(t, g, parley.CallOptions{Input: src}, parley.CallOptions{Output: heard})

	waitFor(t, "both sides to find UDP", func() bool {
		return as.Stats().Transport == parley.TransportUDP && bs.Stats().Transport == parley.TransportUDP
	})
	speakAndHear(t, src, sent, heard, bs)
	if st := as.Stats(); st.AudioSent < 60 || st.RTT <= 0 {
		t.Errorf("alice's stats %+v: want the speech's packets sent and an RTT", st)
	}
	t.Logf("bob: %+v", bs.Stats())
	if st := bs.Stats(); st.PacketsReceived < 60 {
		t.Errorf("bob's stats %+v: want the speech's packets received", st)
	}

	// The events: bob saw the answer, and both the end.
	up := alice.event(t, "alice to see the answer", func(ev parley.Event) bool {
		u, ok := ev.(parley.CallUpdatedEvent)
		return ok && u.Call.State == parley.CallActive
	}).(parley.CallUpdatedEvent)
	if len(up.Call.Participants) != 2 || up.Call.Kind != parley.ConversationDirect {
		t.Errorf("the answered call %+v: want two participants of a direct call", up.Call)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := as.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-bs.Done():
	case <-ctx.Done():
		t.Fatal("bob's session did not end when alice hung up")
	}
	if bs.Err() != nil || bs.Call().State != parley.CallEnded || bs.Call().EndReason != parley.CallEndCompleted {
		t.Errorf("bob's session ended with %v, call %+v; want a completed call and no error", bs.Err(), bs.Call())
	}
	bob.event(t, "bob's CallEndedEvent", func(ev parley.Event) bool {
		e, ok := ev.(parley.CallEndedEvent)
		return ok && e.Call.EndReason == parley.CallEndCompleted
	})
}

func TestCallSpeakingFlag(t *testing.T) {
	g := newFakeGateway(t, false)
	sent := speechLike(250) // 5 s: long enough to poll for
	src := &gatedSource{src: voice.NewSamplesSource(sent)}
	_, _, _, bs := callPair(t, g, parley.CallOptions{Input: src}, parley.CallOptions{})
	src.open()
	waitFor(t, "bob to see alice speaking", func() bool {
		for _, p := range bs.Call().Participants {
			if p.Username == "alice" && p.Speaking {
				return true
			}
		}
		return false
	})
	for _, p := range bs.Call().Participants {
		if p.Username == "bob" && p.Speaking {
			t.Error("bob, who sends nothing, is shown speaking")
		}
	}
}

func TestCallFallsBackToFrames(t *testing.T) {
	g := newFakeGateway(t, true) // the UDP address given never answers
	sent := speechLike(75)
	src := &gatedSource{src: voice.NewSamplesSource(sent)}
	heard := new(voice.SampleBuffer)
	_, _, as, bs := callPair(t, g, parley.CallOptions{Input: src}, parley.CallOptions{Output: heard})
	if tr := as.Stats().Transport; tr != parley.TransportProbing && tr != parley.TransportFrames {
		t.Fatalf("alice's transport %q right after placing: want probing (or frames already)", tr)
	}
	began := time.Now()
	waitFor(t, "both sides to give UDP up", func() bool {
		return as.Stats().Transport == parley.TransportFrames && bs.Stats().Transport == parley.TransportFrames
	})
	t.Logf("fell back to frames %v after the answer", time.Since(began).Round(time.Millisecond))
	speakAndHear(t, src, sent, heard, bs)
}

func TestCallForceFrames(t *testing.T) {
	g := newFakeGateway(t, false)
	sent := speechLike(75)
	src := &gatedSource{src: voice.NewSamplesSource(sent)}
	heard := new(voice.SampleBuffer)
	_, _, as, bs := callPair(t, g, parley.CallOptions{Input: src, ForceFrames: true}, parley.CallOptions{Output: heard, ForceFrames: true})
	if as.Stats().Transport != parley.TransportFrames || bs.Stats().Transport != parley.TransportFrames {
		t.Fatalf("transports %q and %q with ForceFrames, want frames", as.Stats().Transport, bs.Stats().Transport)
	}
	speakAndHear(t, src, sent, heard, bs)
}

func TestCallMute(t *testing.T) {
	g := newFakeGateway(t, false)
	sent := speechLike(3000) // a minute: alice talks throughout
	src := &gatedSource{src: voice.NewSamplesSource(sent)}
	heard := new(voice.SampleBuffer)
	_, bob, as, _ := callPair(t, g, parley.CallOptions{Input: src}, parley.CallOptions{Output: heard})
	src.open()
	waitFor(t, "alice's audio to reach the gateway", func() bool { return g.audioFrom("alice") > 10 })

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := as.Mute(ctx, true); err != nil {
		t.Fatal(err)
	}
	bob.event(t, "bob to see alice muted", func(ev parley.Event) bool {
		u, ok := ev.(parley.CallUpdatedEvent)
		if !ok {
			return false
		}
		p, _ := u.Call.Participant("u-alice")
		return p.Muted
	})
	// Muting takes effect at once: a packet already on its way aside,
	// nothing arrives for a second of bob's output (50 frames).
	muted := g.audioFrom("alice")
	start := heard.Len()
	waitFor(t, "a second to pass", func() bool { return heard.Len() >= start+voice.SampleRate })
	if n := g.audioFrom("alice") - muted; n > 1 {
		t.Errorf("%d audio packets from alice after she muted", n)
	}
	if err := as.Mute(ctx, false); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "alice's audio after unmuting", func() bool { return g.audioFrom("alice") > muted+10 })
}

func TestCallBusyAndRejected(t *testing.T) {
	g := newFakeGateway(t, false)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	alice, bob := login(t, g, "alice"), login(t, g, "bob")
	if _, err := alice.c.PlaceCallTo(ctx, "busybob", parley.CallOptions{}); !errors.Is(err, parley.ErrBusy) {
		t.Fatalf("calling a busy user: %v, want ErrBusy", err)
	}
	as, err := alice.c.PlaceCallTo(ctx, "bob", parley.CallOptions{})
	if err != nil {
		t.Fatal(err)
	}
	call := ringing(t, bob)
	if err := bob.c.RejectCall(ctx, call.ID); err != nil {
		t.Fatal(err)
	}
	if err := as.WaitActive(ctx); !errors.Is(err, parley.ErrCallEnded) {
		t.Fatalf("waiting for an answer to a rejected call: %v, want ErrCallEnded", err)
	}
	<-as.Done()
	if as.Err() != nil || as.Call().EndReason != parley.CallEndRejected {
		t.Errorf("alice's session: err %v, end reason %v; want nil and rejected", as.Err(), as.Call().EndReason)
	}
	if _, err := bob.c.JoinCall(ctx, call.ID, parley.CallOptions{}); !errors.Is(err, parley.ErrNotFound) {
		t.Errorf("joining the ended call: %v, want ErrNotFound", err)
	}
}

func TestCallRejoinsAfterReconnect(t *testing.T) {
	g := newFakeGateway(t, false)
	sent := speechLike(75)
	src := &gatedSource{src: voice.NewSamplesSource(sent)}
	heard := new(voice.SampleBuffer)
	alice, _, as, bs := callPair(t, g, parley.CallOptions{Input: src}, parley.CallOptions{Output: heard})
	waitFor(t, "alice on UDP", func() bool { return as.Stats().Transport == parley.TransportUDP })
	before := as.Stats().StreamID

	g.dropConns("alice")
	alice.event(t, "alice to reconnect", func(ev parley.Event) bool {
		_, ok := ev.(parley.ReconnectedEvent)
		return ok
	})
	waitFor(t, "alice to rejoin with a new stream", func() bool {
		st := as.Stats()
		return st.StreamID != before && st.Transport == parley.TransportUDP
	})
	if joins := g.joinLog(); len(joins) != 3 || joins[2] != "alice "+as.ID() {
		t.Errorf("joins %q: want alice's place, bob's answer, alice's rejoin", joins)
	}
	select {
	case <-as.Done():
		t.Fatalf("alice's session ended on the reconnect: %v", as.Err())
	default:
	}
	speakAndHear(t, src, sent, heard, bs)
}

// TestCallRejoinFindsCallEnded: a call that ended while the client was
// disconnected (its ENDED event never came) ends the session normally when
// the rejoin is answered NOT_FOUND: state ended, no error.
func TestCallRejoinFindsCallEnded(t *testing.T) {
	g := newFakeGateway(t, false)
	alice, _, as, _ := callPair(t, g, parley.CallOptions{}, parley.CallOptions{})
	g.forgetCall(as.ID())
	g.dropConns("alice")
	alice.event(t, "alice to reconnect", func(ev parley.Event) bool {
		_, ok := ev.(parley.ReconnectedEvent)
		return ok
	})
	select {
	case <-as.Done():
	case <-time.After(20 * time.Second):
		t.Fatal("alice's session still runs after its rejoin found the call ended")
	}
	if err := as.Err(); err != nil {
		t.Errorf("Err() = %v, want nil (a normal end of the call)", err)
	}
	if st := as.Call().State; st != parley.CallEnded {
		t.Errorf("state %v, want ended", st)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := as.WaitActive(ctx); !errors.Is(err, parley.ErrCallEnded) {
		t.Errorf("WaitActive: %v, want ErrCallEnded", err)
	}
}

// TestCallHangupDuringRejoin: a session that ends while its rejoin's join
// is on its way leaves the call when the CallJoined arrives (the server
// seated it again).
func TestCallHangupDuringRejoin(t *testing.T) {
	g := newFakeGateway(t, false)
	alice, _, as, _ := callPair(t, g, parley.CallOptions{}, parley.CallOptions{})
	id := as.ID()
	release := g.holdJoinReplies()
	g.dropConns("alice")
	alice.event(t, "alice to reconnect", func(ev parley.Event) bool {
		_, ok := ev.(parley.ReconnectedEvent)
		return ok
	})
	waitFor(t, "alice's rejoin to reach the gateway", func() bool { return len(g.joinLog()) == 3 })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := as.Hangup(ctx); err != nil {
		t.Fatalf("Hangup: %v", err)
	}
	leaves := len(g.leaveLog())
	release()
	waitFor(t, "alice to leave the seat the late CallJoined gave her", func() bool {
		l := g.leaveLog()
		return len(l) > leaves && l[len(l)-1] == "alice "+id
	})
}

// TestCallPlaceAbandoned: a caller whose context ends while the place
// request is on its way gets its error, and the seat the server made is
// left when the CallJoined arrives.
func TestCallPlaceAbandoned(t *testing.T) {
	g := newFakeGateway(t, false)
	alice, bob := login(t, g, "alice"), login(t, g, "bob")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s, err := alice.c.PlaceCallTo(ctx, "bob", parley.CallOptions{})
	if err != nil {
		t.Fatal(err)
	}
	release := g.holdJoinReplies()
	jctx, jcancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		_, err := bob.c.JoinCall(jctx, s.ID(), parley.CallOptions{})
		done <- err
	}()
	waitFor(t, "bob's join to reach the gateway", func() bool { return len(g.joinLog()) == 2 })
	jcancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("JoinCall with its context cancelled: %v", err)
	}
	release()
	waitFor(t, "bob to leave the seat the late CallJoined gave him", func() bool {
		return slices.Contains(g.leaveLog(), "bob "+s.ID())
	})
	select {
	case <-s.Done():
	case <-time.After(20 * time.Second):
		t.Fatal("alice's call did not end when bob left")
	}
}
