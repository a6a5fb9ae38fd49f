//go:build cgo

package audiodev

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

	"github.com/gen2brain/malgo"

	"github.com/parleychat/parley/clients/parley/voice"
)

// realBackends are miniaudio's sound systems but the null one; those not
// built for this platform are skipped by miniaudio.
var realBackends = []malgo.Backend{
	malgo.BackendWasapi, malgo.BackendDsound, malgo.BackendWinmm, malgo.BackendCoreaudio,
	malgo.BackendSndio, malgo.BackendAudio4, malgo.BackendOss, malgo.BackendPulseaudio,
	malgo.BackendAlsa, malgo.BackendJack, malgo.BackendAaudio, malgo.BackendOpensl,
	malgo.BackendWebaudio,
}

// device is an open miniaudio device and its context.
type device struct {
	ctx  *malgo.AllocatedContext
	dev  *malgo.Device
	once sync.Once
}

// open starts a device of kind, 48 kHz mono 16-bit (miniaudio converts
// from what the hardware does), calling data with each callback's
// samples: the captured ones (capture) or the buffer to fill (playback).
func (s *System) open(kind malgo.DeviceType, data func(pcm []int16)) (*device, error) {
	backends := realBackends
	if s.backends != nil {
		backends = backends[:0:0]
		for _, b := range s.backends {
			backends = append(backends, malgo.Backend(b))
		}
	}
	quietSoundSystem()
	ctx, err := malgo.InitContext(backends, malgo.ContextConfig{}, nil)
	if err != nil {
		return nil, fmt.Errorf("no sound system: %w", err)
	}
	d := &device{ctx: ctx}
	fail := func(err error) (*device, error) {
		_ = ctx.Uninit()
		ctx.Free()
		return nil, err
	}
	infos, err := ctx.Devices(kind)
	if err != nil {
		return fail(fmt.Errorf("listing devices: %w", err))
	}
	if len(infos) == 0 {
		return fail(errors.New("the sound system lists no device"))
	}
	cfg := malgo.DefaultDeviceConfig(kind)
	cfg.SampleRate = voice.SampleRate
	cfg.PeriodSizeInMilliseconds = 10
	sub := &cfg.Capture
	if kind == malgo.Playback {
		sub = &cfg.Playback
	}
	sub.Format, sub.Channels = malgo.FormatS16, 1
	var pcm []int16 // the callback's samples; only the device's thread uses it
	cb := func(out, in []byte, frames uint32) {
		raw := in
		if kind == malgo.Playback {
			raw = out
		}
		n := len(raw) / 2
		if cap(pcm) < n {
			pcm = make([]int16, n)
		}
		pcm = pcm[:n]
		if kind == malgo.Capture {
			for i := range pcm {
				pcm[i] = int16(binary.LittleEndian.Uint16(raw[2*i:]))
			}
		}
		data(pcm)
		if kind == malgo.Playback {
			for i, v := range pcm {
				binary.LittleEndian.PutUint16(raw[2*i:], uint16(v))
			}
		}
	}
	dev, err := malgo.InitDevice(ctx.Context, cfg, malgo.DeviceCallbacks{Data: cb})
	if err != nil {
		return fail(fmt.Errorf("opening the default device: %w", err))
	}
	if err := dev.Start(); err != nil {
		dev.Uninit()
		return fail(fmt.Errorf("starting the device: %w", err))
	}
	d.dev = dev
	return d, nil
}

// close stops the device (no callback runs after it) and frees it.
func (d *device) close() {
	d.once.Do(func() {
		d.dev.Uninit()
		_ = d.ctx.Uninit()
		d.ctx.Free()
	})
}

// mic is an open capture device.
type mic struct {
	*captureBuffer
	dev *device
}

// Close implements Microphone; ReadFrame says io.EOF afterwards.
func (m *mic) Close() error {
	m.dev.close()
	m.captureBuffer.close()
	return nil
}

func (s *System) openCapture() (Microphone, error) {
	buf := newCaptureBuffer()
	dev, err := s.open(malgo.Capture, buf.push)
	if err != nil {
		s.log.Info("audio: no microphone", "err", err)
		return nil, ErrNoMicrophone
	}
	return &mic{captureBuffer: buf, dev: dev}, nil
}

// speaker is an open playback device.
type speaker struct {
	*playbackBuffer
	dev *device
}

// Close implements Speaker.
func (sp *speaker) Close() error {
	sp.dev.close()
	sp.playbackBuffer.close()
	return nil
}

func (s *System) openPlayback() (Speaker, error) {
	buf := newPlaybackBuffer()
	dev, err := s.open(malgo.Playback, buf.pull)
	if err != nil {
		s.log.Info("audio: no speaker", "err", err)
		return nil, ErrNoSpeaker
	}
	return &speaker{playbackBuffer: buf, dev: dev}, nil
}

var (
	_ Microphone = (*mic)(nil)
	_ Speaker    = (*speaker)(nil)
)
