package tui

import (
	"strings"
	"testing"
)

// These drive the TUI's models against a real in-process Parley with its
// media relay (the world of files_test.go), the sound through in-memory
// devices (calls_test.go).

// withAudio gives u's calls d.
func (u *user) withAudio(d AudioDevices) *user { u.m.cfg.Audio = d; return u }

// barShows waits until u's call bar (not the chat) shows every one of want.
func (u *user) barShows(want ...string) {
	u.w.t.Helper()
	u.w.until(u.name+"'s call bar to show "+strings.Join(want, ", "), func() bool {
		bar := u.m.callBar()
		for _, s := range want {
			if !strings.Contains(bar, s) {
				return false
			}
		}
		return true
	}, u)
}

// TestCallAnswerMuteHangup: alice calls bob from their private chat; bob's
// screen rings; he answers; both bars show the call with its participants
// and figures over UDP; bob hears alice's microphone; alice mutes (bob
// sees it); alice hangs up: both are told, the devices are closed, and the
// chat shows the call's message.
func TestCallAnswerMuteHangup(t *testing.T) {
	w := newWorld(t, nil)
	aliceDev, bobDev := newFakeDevices(), newFakeDevices()
	alice, bob := w.join("alice").withAudio(aliceDev), w.join("bob").withAudio(bobDev)
	directChat(alice, bob)

	alice.enter("/call")
	alice.barShows("CALLING @bob · ringing", "alice (you)")
	bob.barShows("Incoming call from alice · /answer · /reject")
	bob.sees("incoming call from alice: /answer · /reject")

	bob.enter("/answer")
	bob.barShows("IN CALL @alice", "alice", "bob (you)")
	alice.barShows("IN CALL @bob", "alice (you)", "bob")
	if strings.Contains(bob.m.callBar(), "Incoming call") {
		t.Errorf("bob's screen still rings after he answered:\n%s", bob.m.callBar())
	}
	// bob hears alice's tone, and his bar marks her speaking.
	w.until("bob to hear alice", func() bool { return bobDev.spk.heard() >= 10 }, bob)
	bob.barShows("alice (speaking)")
	alice.barShows("loss ", "jitter ", "rtt ", "· relayed (udp)")

	alice.enter("/mute")
	alice.sees("muted: the others do not hear you")
	alice.barShows("alice (you, muted)", "/mute: unmute")
	bob.barShows("alice (muted)")
	alice.enter("/mute")
	alice.sees("unmuted")
	bob.barShows("alice (speaking)")

	alice.enter("/hangup")
	alice.sees("call ended")
	bob.sees("call ended: hung up")
	for _, u := range []*user{alice, bob} {
		u.sees("* call ended · 0:")
		if bar := u.m.callBar(); bar != "" {
			t.Errorf("%s's call bar stays after the call:\n%s", u.name, bar)
		}
	}
	w.until("the devices to close", func() bool { return aliceDev.spk.isClosed() && bobDev.spk.isClosed() })
}

// TestCallAnsweredOnAnotherDevice: bob runs two TUIs; both ring; he
// answers on one, and the other stops ringing and says why.
func TestCallAnsweredOnAnotherDevice(t *testing.T) {
	w := newWorld(t, nil)
	alice := w.join("alice").withAudio(newFakeDevices())
	bob1 := w.join("bob").withAudio(newFakeDevices())
	bob2 := w.login("bob").withAudio(newFakeDevices())
	bob2.m.chat.width = 200

	alice.enter("/call @bob")
	alice.barShows("CALLING @bob")
	bob1.barShows("Incoming call from alice")
	bob2.barShows("Incoming call from alice")

	bob1.enter("/answer")
	bob1.barShows("IN CALL")
	bob2.sees("the call from alice was answered on another device")
	if bar := bob2.m.callBar(); bar != "" {
		t.Errorf("bob's other TUI still shows a call:\n%s", bar)
	}
	alice.barShows("IN CALL")
}

// TestCallRejectAndMissed: bob declines with /reject (alice is told, the
// chat says so on both sides); then alice gives up before he answers:
// he sees a missed call.
func TestCallRejectAndMissed(t *testing.T) {
	w := newWorld(t, nil)
	alice, bob := w.join("alice").withAudio(newFakeDevices()), w.join("bob").withAudio(newFakeDevices())
	directChat(alice, bob)

	alice.enter("/call")
	bob.barShows("Incoming call from alice")
	bob.enter("/reject")
	bob.sees("declined the call from alice", "* you declined the call")
	alice.sees("call ended: declined", "* bob declined the call")
	if bar := alice.m.callBar() + bob.m.callBar(); bar != "" {
		t.Errorf("a call bar stays after the decline:\n%s", bar)
	}

	alice.enter("/call")
	bob.barShows("Incoming call from alice")
	alice.enter("/hangup")
	alice.sees("call ended: cancelled", "* call cancelled")
	bob.sees("* missed call from alice")
	w.until("bob's screen to stop ringing", func() bool { return bob.m.callBar() == "" }, bob)
}

// TestCallWithoutSoundDevices: on a machine without a sound card (as this
// one) the call goes on and the user is told plainly what the others will
// not hear; a build without device support says so.
func TestCallWithoutSoundDevices(t *testing.T) {
	w := newWorld(t, nil)
	alice, bob := w.join("alice").withAudio(noDevices{}), w.join("bob").withAudio(unsupported{})
	directChat(alice, bob)

	alice.enter("/call")
	alice.sees("! no microphone found: the call continues without sending audio",
		"! no speaker found: the call continues without playing what the others say")
	alice.barShows("CALLING @bob")
	bob.barShows("Incoming call from alice")
	bob.enter("/answer")
	bob.sees("! no audio device support in this build: the call continues without sound")
	bob.barShows("IN CALL @alice", "sound devices missing")
	alice.barShows("IN CALL @bob", "sound devices missing")
	bob.enter("/hangup")
	alice.sees("call ended: hung up")
}
