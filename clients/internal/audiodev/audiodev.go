// Package audiodev connects a call to the computer's microphone and
// speakers. The devices are reached through miniaudio
// (github.com/gen2brain/malgo, cgo); a build without cgo has no device
// support and says so (ErrUnsupported).
//
// A device works in callbacks of its own period (often 10 ms, at its own
// rate); miniaudio converts to 48 kHz mono 16-bit, and a small ring buffer
// turns its callbacks into the 20 ms, 960-sample frames a call reads
// (voice.PCMSource) and writes (voice.PCMSink), and back.
package audiodev

import (
	"errors"
	"log/slog"

	"github.com/parleychat/parley/clients/parley/voice"
)

// Errors of opening a device.
var (
	// ErrNoMicrophone: no capture device could be opened (none attached,
	// or no sound system at all).
	ErrNoMicrophone = errors.New("no microphone found")
	// ErrNoSpeaker: no playback device could be opened.
	ErrNoSpeaker = errors.New("no speaker found")
	// ErrUnsupported: this binary was built without audio device support
	// (without cgo).
	ErrUnsupported = errors.New("no audio device support in this build")
)

// Microphone is an open capture device: a voice.PCMSource.
type Microphone interface {
	voice.PCMSource
	Close() error
}

// Speaker is an open playback device: a voice.PCMSink.
type Speaker interface {
	voice.PCMSink
	Close() error
}

// System opens the default devices of the machine's sound system.
type System struct {
	log *slog.Logger
	// backends, if set, are the only sound systems tried (malgo.Backend
	// numbers; tests name one absent here to play a machine without
	// sound). Default: every real one, never miniaudio's null device,
	// which would pretend to be a microphone.
	backends []uint32
}

// NewSystem returns the machine's sound system; why a device could not be
// opened is logged to log (the errors say only what is missing).
func NewSystem(log *slog.Logger) *System {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &System{log: log}
}

// OpenMicrophone opens the default capture device. Errors are
// ErrNoMicrophone or ErrUnsupported.
func (s *System) OpenMicrophone() (Microphone, error) { return s.openCapture() }

// OpenSpeaker opens the default playback device. Errors are ErrNoSpeaker
// or ErrUnsupported.
func (s *System) OpenSpeaker() (Speaker, error) { return s.openPlayback() }
