package relaysvc_test

import (
	"bytes"
	"context"
	"slices"
	"testing"
	"time"

	"github.com/parleychat/parley/libs/testenv"
	"github.com/parleychat/parley/protocol/parleyv1"
	"github.com/parleychat/parley/services/mediarelay/relaysvc"
)

// The owner forwards a participant's audio byte for byte to every gateway
// (the speaker's too: leaving the speaker out is the gateway's job), drops
// a muted participant's and a stranger's, and sends the roster.
func TestForwarding(t *testing.T) {
	e := newEnv(t, 2, nil)
	a := e.place(alice, "bob")
	id := a.Call.CallId
	d := e.downlink(id)
	b := e.join(bob, id)
	testenv.Eventually(t, 10*time.Second, "a roster of alice and bob", func() bool { return d.hasRoster(a.StreamId, b.StreamId) })
	// Each roster carries the revision of the record it was taken from:
	// the last is the record's now (bob's join, then the owner's takeover
	// of the call's media at the latest), and they never go back.
	testenv.Eventually(t, 10*time.Second, "a roster at the record's revision", func() bool {
		revs := d.rosterRevs()
		return len(revs) > 0 && revs[len(revs)-1] == e.recordRev(id)
	})
	if revs := d.rosterRevs(); !slices.IsSorted(revs) || revs[0] == 0 {
		t.Fatalf("roster revisions %v, want rising from the first revision on", revs)
	}

	want := audio(a.StreamId, 1, 30, true)
	e.send(id, a.StreamId, 1, 30, true)
	e.forwarded(d, id, b.StreamId, 1)
	got := d.audioFrom(a.StreamId)
	if len(got) != 1 || !bytes.Equal(got[0].data, want) {
		t.Fatalf("alice's packet forwarded as %d packets, want once, byte for byte", len(got))
	}

	e.send(id, 0x5eed, 1, 0, true) // nobody's stream
	e.must("alice mutes", e.mute(alice, id, true))
	e.waitEvent(bob, evUpdated, id, func(c *parleyv1.Call) bool {
		return slices.ContainsFunc(c.Participants, func(p *parleyv1.CallParticipant) bool { return p.UserId == alice.id && p.Muted })
	})
	// When the other replica answered the mute, the owner learns of it
	// from the KV watch, which may come after the event: a packet sent at
	// once can still pass (CI saw one). Once one is dropped, all are.
	seq := uint32(2)
	testenv.Eventually(t, 10*time.Second, "alice's audio dropped while she is muted", func() bool {
		before := len(d.audioFrom(a.StreamId))
		e.send(id, a.StreamId, seq, 0, true)
		e.forwarded(d, id, b.StreamId, seq)
		seq++
		return len(d.audioFrom(a.StreamId)) == before
	})
	passed := len(d.audioFrom(a.StreamId))
	for range 5 {
		e.send(id, a.StreamId, seq, 0, true)
		seq++
	}
	e.forwarded(d, id, b.StreamId, seq)
	seq++
	if n := len(d.audioFrom(a.StreamId)); n != passed {
		t.Fatalf("alice, muted, had %d packets forwarded after the first was dropped", n-passed)
	}
	if n := len(d.audioFrom(0x5eed)); n != 0 {
		t.Fatalf("a stranger's stream forwarded %d times", n)
	}
	e.must("alice unmutes", e.mute(alice, id, false))
	e.forwarded(d, id, a.StreamId, seq)

	e.must("bob hangs up", e.leave(bob, id))
	testenv.Eventually(t, 10*time.Second, "the empty roster that ends the call", func() bool { return d.hasRoster() })
}

// A rejoin (reconnect) gets a new stream: the old one is no longer
// forwarded, the new one is, and the roster says so.
func TestRejoinReplacesStream(t *testing.T) {
	e := newEnv(t, 1, nil)
	a := e.place(alice, team)
	id := a.Call.CallId
	d := e.downlink(id)
	b1 := e.join(bob, id)
	b2 := e.join(bob, id)
	if b2.StreamId == b1.StreamId || bytes.Equal(b2.MediaKey, b1.MediaKey) {
		t.Fatal("a rejoin kept the stream id or the key")
	}
	if n := len(b2.Call.Participants); n != 2 {
		t.Fatalf("after bob rejoined: %d participants, want 2", n)
	}
	testenv.Eventually(t, 10*time.Second, "a roster with bob's new stream", func() bool { return d.hasRoster(a.StreamId, b2.StreamId) })
	e.send(id, b1.StreamId, 7, 10, true)
	e.forwarded(d, id, b2.StreamId, 8)
	if n := len(d.audioFrom(b1.StreamId)); n != 0 {
		t.Fatalf("bob's old stream forwarded %d times after the rejoin", n)
	}
}

// With six speakers, only the three loudest are forwarded.
func TestLoudestThree(t *testing.T) {
	e := newEnv(t, 1, nil)
	speakers := []user{alice, bob, carol, dave, erin, frank}
	id := e.place(alice, crowd).Call.CallId
	streams := make([]uint32, len(speakers))
	for i, u := range speakers {
		streams[i] = e.join(u, id).StreamId // alice rejoins: a fresh stream like the others
	}
	d := e.downlink(id)
	testenv.Eventually(t, 10*time.Second, "a roster of six", func() bool { return d.hasRoster(streams...) })
	// Levels are -dBov: carol (10), erin (15) and alice (20) are the
	// loudest; bob (50), frank (60) and dave (70) are quieter.
	levels := map[uint32]uint8{}
	for i, lv := range []uint8{20, 50, 10, 70, 15, 60} {
		levels[streams[i]] = lv
	}
	const rounds = 75 // 1.5 s of 20 ms frames
	for seq := uint32(1); seq <= rounds; seq++ {
		for _, s := range streams {
			e.send(id, s, seq, levels[s], true)
		}
		time.Sleep(20 * time.Millisecond)
	}
	e.forwarded(d, id, streams[2], rounds+1)
	loud := []uint32{streams[0], streams[2], streams[4]}
	for _, s := range streams {
		var late int // packets of the last half second: the choice has long settled
		for _, r := range d.audioFrom(s) {
			if r.h.Seq > rounds-25 && r.h.Seq <= rounds {
				late++
			}
		}
		switch {
		case slices.Contains(loud, s) && late < 20:
			t.Errorf("loud stream %d (level %d): %d of its last 25 packets forwarded", s, levels[s], late)
		case !slices.Contains(loud, s) && late > 0:
			t.Errorf("quiet stream %d (level %d): %d of its last 25 packets forwarded", s, levels[s], late)
		}
	}
}

// Alive keeps a participant who says nothing; a participant no gateway
// reports is removed after the participant timeout (and a private call
// ends LOST).
func TestParticipantTimeout(t *testing.T) {
	e := newEnv(t, 1, func(c *relaysvc.Config) { c.ParticipantTimeout = 1500 * time.Millisecond })
	a := e.place(alice, team)
	id := a.Call.CallId
	b := e.join(bob, id)
	e.join(carol, id) // carol's gateway goes away: nothing reports her
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		for ctx.Err() == nil {
			e.alive(id, a.StreamId, b.StreamId)
			time.Sleep(300 * time.Millisecond)
		}
	}()
	testenv.Eventually(t, 10*time.Second, "carol timed out", func() bool {
		return !slices.Contains(userIDs(e.record(id).GetCall()), carol.id)
	})
	if got := userIDs(e.record(id).GetCall()); !slices.Equal(got, ids(alice, bob)) {
		t.Fatalf("after carol timed out: %v in the call, want alice and bob", got)
	}
	e.waitEvent(carol, evUpdated, id, func(c *parleyv1.Call) bool { return slices.Equal(userIDs(c), ids(alice, bob)) })
	// Alice and bob, kept alive, stay for several timeouts.
	time.Sleep(3 * e.cfg.ParticipantTimeout)
	if got := userIDs(e.record(id).GetCall()); !slices.Equal(got, ids(alice, bob)) {
		t.Fatalf("kept alive, yet the call has %v", got)
	}
	cancel()

	p := e.place(dave, "erin").Call.CallId
	e.join(erin, p)
	e.waitEvent(dave, evEnded, p, endedWith(lost))
	e.waitEvent(erin, evEnded, p, endedWith(lost))
	if m := e.waitPost(p, lost); m.req.Text[:10] != "Call ended" {
		t.Fatalf("lost call's message %q", m.req.Text)
	}
}

// Two speakers about as loud (within the head start a forwarded stream
// gets) do not swap the last slot every 100 ms: the one forwarded keeps it.
func TestSpeakerHysteresis(t *testing.T) {
	e := newEnv(t, 1, nil)
	speakers := []user{alice, bob, carol, dave, erin, frank}
	id := e.place(alice, crowd).Call.CallId
	streams := make([]uint32, len(speakers))
	for i, u := range speakers {
		streams[i] = e.join(u, id).StreamId
	}
	d := e.downlink(id)
	testenv.Eventually(t, 10*time.Second, "a roster of six", func() bool { return d.hasRoster(streams...) })
	a, b := streams[0], streams[1]
	// carol (10) and erin (15) hold two slots; alice (30) the third while
	// bob is clearly quieter (40); then bob gets a little louder than
	// alice (27: 3 dB, under the 6 dB head start). dave and frank are quiet.
	levels := map[uint32]uint8{a: 30, b: 40, streams[2]: 10, streams[3]: 70, streams[4]: 15, streams[5]: 60}
	const first, rounds = 60, 135 // 1.2 s with bob quiet, then 1.5 s with bob a little louder
	for seq := uint32(1); seq <= rounds; seq++ {
		if seq == first+1 {
			levels[b] = 27
		}
		for _, s := range streams {
			e.send(id, s, seq, levels[s], true)
		}
		time.Sleep(20 * time.Millisecond)
	}
	e.forwarded(d, id, streams[2], rounds+1)
	late := func(s uint32) int { // packets of the last half second
		n := 0
		for _, r := range d.audioFrom(s) {
			if r.h.Seq > rounds-25 && r.h.Seq <= rounds {
				n++
			}
		}
		return n
	}
	if na, nb := late(a), late(b); na < 20 || nb > 0 {
		t.Fatalf("of the last 25 packets, alice (forwarded first) had %d forwarded, bob (3 dB louder) %d: want alice kept (>= 20) and bob not (0)", na, nb)
	}
}
