//go:build cgo

package audiodev

import (
	"errors"
	"testing"

	"github.com/gen2brain/malgo"
)

// A machine without any sound system (here: only WASAPI tried, which does
// not exist off Windows) gets the plain errors, not a crash and not
// miniaudio's null device.
func TestNoSoundSystem(t *testing.T) {
	if testing.Short() {
		t.Skip("opens miniaudio")
	}
	s := NewSystem(nil)
	s.backends = []uint32{uint32(malgo.BackendWasapi)}
	if _, err := s.OpenMicrophone(); !errors.Is(err, ErrNoMicrophone) || err.Error() != "no microphone found" {
		t.Errorf("OpenMicrophone: %v, want %v", err, ErrNoMicrophone)
	}
	if _, err := s.OpenSpeaker(); !errors.Is(err, ErrNoSpeaker) {
		t.Errorf("OpenSpeaker: %v, want %v", err, ErrNoSpeaker)
	}
}

// This machine's real sound system. The test machines have no sound card
// (no /dev/snd; ALSA's library is there): the real devices cannot run, and
// opening them must say so. On a machine with a microphone the device is
// opened, read once and closed.
func TestThisMachine(t *testing.T) {
	s := NewSystem(nil)
	m, err := s.OpenMicrophone()
	if err != nil {
		if !errors.Is(err, ErrNoMicrophone) {
			t.Fatalf("OpenMicrophone: %v, want %v", err, ErrNoMicrophone)
		}
		t.Logf("no microphone here: %v", err)
		return
	}
	defer m.Close()
	frame := make([]int16, 960)
	if err := m.ReadFrame(frame); err != nil {
		t.Errorf("reading the microphone: %v", err)
	}
}
