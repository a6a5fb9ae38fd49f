//go:build !cgo

package audiodev

// Without cgo there is no miniaudio: calls run without sound devices.

func (s *System) openCapture() (Microphone, error) { return nil, ErrUnsupported }

func (s *System) openPlayback() (Speaker, error) { return nil, ErrUnsupported }
