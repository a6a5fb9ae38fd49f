package tui

import (
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parleychat/parley/clients/internal/audiodev"
	"github.com/parleychat/parley/clients/parley"
	"github.com/parleychat/parley/clients/parley/voice"
)

// The real microphone and speaker (audiodev.System) cannot run here: the
// test machines have no sound card. The TUI's tests give calls in-memory
// devices instead: fakeMic says a steady tone, fakeSpeaker keeps what it
// is given; noDevices plays a machine without any (what audiodev.System
// answers on this machine: its own tests check that).

// fakeMic is an in-memory microphone: a 440 Hz tone.
type fakeMic struct {
	mu     sync.Mutex // guards n and closed
	n      int
	closed bool
}

func (f *fakeMic) ReadFrame(pcm []int16) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range pcm {
		pcm[i] = int16(8000 * math.Sin(2*math.Pi*440*float64(f.n)/voice.SampleRate))
		f.n++
	}
	return nil
}

func (f *fakeMic) Close() error {
	f.mu.Lock()
	f.closed = true
	f.mu.Unlock()
	return nil
}

// fakeSpeaker is an in-memory speaker: it counts the frames that carried
// sound.
type fakeSpeaker struct {
	mu     sync.Mutex // guards loud and closed
	loud   int
	closed bool
}

func (f *fakeSpeaker) WriteFrame(pcm []int16) error {
	var sum float64
	for _, v := range pcm {
		sum += float64(v) * float64(v)
	}
	f.mu.Lock()
	if math.Sqrt(sum/float64(len(pcm))) > 1000 {
		f.loud++
	}
	f.mu.Unlock()
	return nil
}

func (f *fakeSpeaker) Close() error {
	f.mu.Lock()
	f.closed = true
	f.mu.Unlock()
	return nil
}

// heard is how many frames with sound were played.
func (f *fakeSpeaker) heard() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.loud
}

func (f *fakeSpeaker) isClosed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.closed
}

// fakeDevices hands out one microphone and one speaker.
type fakeDevices struct {
	mic *fakeMic
	spk *fakeSpeaker
}

func newFakeDevices() *fakeDevices { return &fakeDevices{mic: &fakeMic{}, spk: &fakeSpeaker{}} }

func (d *fakeDevices) OpenMicrophone() (audiodev.Microphone, error) { return d.mic, nil }
func (d *fakeDevices) OpenSpeaker() (audiodev.Speaker, error)       { return d.spk, nil }

// noDevices is a machine without a sound card.
type noDevices struct{}

func (noDevices) OpenMicrophone() (audiodev.Microphone, error) { return nil, audiodev.ErrNoMicrophone }
func (noDevices) OpenSpeaker() (audiodev.Speaker, error)       { return nil, audiodev.ErrNoSpeaker }

// unsupported is a build without cgo.
type unsupported struct{}

func (unsupported) OpenMicrophone() (audiodev.Microphone, error) { return nil, audiodev.ErrUnsupported }
func (unsupported) OpenSpeaker() (audiodev.Speaker, error)       { return nil, audiodev.ErrUnsupported }

func TestCallBarRendering(t *testing.T) {
	now := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
	alice := parley.CallParticipant{UserID: "u1", Username: "alice"}
	bob := parley.CallParticipant{UserID: "u2", Username: "bob"}
	carol := parley.CallParticipant{UserID: "u3", Username: "carol", Muted: true}
	speaking := bob
	speaking.Speaking = true
	for _, tt := range []struct {
		name string
		snap callSnapshot
		want []string
	}{
		{"outgoing ringing", callSnapshot{title: "@bob", me: "u1",
			call: parley.Call{State: parley.CallRinging, StartedAt: now.Add(-12 * time.Second), Participants: []parley.CallParticipant{alice}}},
			[]string{"CALLING @bob · ringing 0:12", "alice (you)", "/mute · /hangup"}},
		{"active, marks", callSnapshot{title: "+Team", me: "u1", muted: true,
			call: parley.Call{State: parley.CallActive, AnsweredAt: now.Add(-83 * time.Second),
				Participants: []parley.CallParticipant{alice, speaking, carol}},
			stats: parley.CallStats{PacketsReceived: 990, Lost: 10, Jitter: 4 * time.Millisecond, RTT: 12 * time.Millisecond, Transport: parley.TransportUDP}},
			[]string{"IN CALL +Team · 1:23", "alice (you, muted)", "bob (speaking)", "carol (muted)",
				"loss 1.0% · jitter 4 ms · rtt 12 ms · relayed (udp)", "/mute: unmute · /hangup"}},
		{"frames, devices missing", callSnapshot{title: "@bob", me: "u1", devicesMissing: true,
			call:  parley.Call{State: parley.CallActive, AnsweredAt: now, Participants: []parley.CallParticipant{alice, bob}},
			stats: parley.CallStats{Transport: parley.TransportFrames}},
			[]string{"IN CALL @bob · 0:00", "loss 0.0% · jitter 0 ms · rtt 0 ms · relayed (frames) · sound devices missing"}},
		{"direct", callSnapshot{title: "@bob", me: "u1",
			call:  parley.Call{State: parley.CallActive, AnsweredAt: now, Participants: []parley.CallParticipant{alice, bob}},
			stats: parley.CallStats{Transport: parley.TransportUDP, Path: parley.CallDirect, RTT: 3 * time.Millisecond}},
			[]string{"IN CALL @bob · 0:00", "loss 0.0% · jitter 0 ms · rtt 3 ms · direct"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rows := renderCallBar(tt.snap, now, 200)
			if len(rows) != 2 {
				t.Fatalf("%d rows, want 2", len(rows))
			}
			text := strings.Join(rows, "\n")
			for _, w := range tt.want {
				if !strings.Contains(text, w) {
					t.Errorf("bar lacks %q:\n%s", w, text)
				}
			}
			for _, r := range renderCallBar(tt.snap, now, 30) {
				if n := len([]rune(stripANSI(r))); n > 30 {
					t.Errorf("a row is %d columns on a 30-column screen: %q", n, r)
				}
			}
		})
	}
}

func stripANSI(s string) string {
	var b strings.Builder
	esc := false
	for _, r := range s {
		switch {
		case r == '\x1b':
			esc = true
		case esc && (r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z'):
			esc = false
		case !esc:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// A call's system messages read from the user's side.
func TestCallMessages(t *testing.T) {
	const dm = "dm.u1.u2"
	m := loggedIn(t) // alice, u1
	m.Update(convsMsg{convs: []parley.Conversation{room(0), {ID: dm, Kind: parley.ConversationDirect, Title: "bob"}}})
	m.selectConv(1)
	for i, tt := range []struct {
		fromID, from string
		outcome      parley.CallEndReason
		text, want   string
	}{
		{"u2", "bob", parley.CallEndMissed, "Missed call", "* missed call from bob"},
		{"u1", "alice", parley.CallEndMissed, "Missed call", "* no answer from bob"},
		{"u2", "bob", parley.CallEndCancelled, "Missed call", "* missed call from bob"},
		{"u1", "alice", parley.CallEndBusy, "Missed call", "* bob was busy (in another call)"},
		{"u2", "bob", parley.CallEndRejected, "Declined call", "* bob declined the call"},
		{"u1", "alice", parley.CallEndRejected, "Declined call", "* you declined the call"},
		{"u2", "bob", parley.CallEndCompleted, "Call ended (1:05)", "* call ended · 1:05"},
		{"u2", "bob", parley.CallEndUnknown, "bob started a call", "* bob started a call (/call joins it while it runs)"},
	} {
		ev := systemMessage(dm, uint64(i+1), tt.fromID, tt.from, tt.text)
		ev.Message.Call = &parley.CallSummary{CallID: "c1", Outcome: tt.outcome, Duration: 65 * time.Second}
		m.onEvent(ev)
		if v := m.View(); !strings.Contains(v, tt.want) {
			t.Errorf("%s's %s call: screen lacks %q:\n%s", tt.from, tt.outcome, tt.want, v)
		}
	}
}

// The commands check what they can before asking the server.
func TestCallCommandsOffline(t *testing.T) {
	m := loggedIn(t)
	for _, tt := range []struct{ input, want string }{
		{"/answer", "/answer: no call is ringing"},
		{"/mute", "/mute: you are not in a call"},
		{"/hangup", "/hangup: you are not in a call"},
		{"/call", "/call: calls are in a private chat or a group"},
		{"/call bob carol", "usage: /call [@USER]"},
		// Nothing rings: /reject is the file command.
		{"/reject", "/reject: no such file in this chat"},
	} {
		if got := enter(m, tt.input); got != nil {
			t.Errorf("%s produced %#v", tt.input, got)
		}
		if !strings.Contains(m.View(), tt.want) {
			t.Errorf("%s: screen lacks %q:\n%s", tt.input, tt.want, m.View())
		}
	}
}
