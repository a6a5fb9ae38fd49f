package voice

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// ErrWAV: a file is not a WAV file this package reads.
var ErrWAV = errors.New("voice: not a WAV file")

// ReadWAV reads a whole WAV file of 16-bit PCM, 48 kHz mono (what calls
// send; convert others first, e.g. `sox in.wav -r 48000 -c 1 -b 16
// out.wav`). Anything else is an error saying what the file is.
func ReadWAV(r io.Reader) ([]int16, error) {
	var riff [12]byte
	if _, err := io.ReadFull(r, riff[:]); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrWAV, err)
	}
	if string(riff[:4]) != "RIFF" || string(riff[8:]) != "WAVE" {
		return nil, fmt.Errorf("%w: no RIFF/WAVE header", ErrWAV)
	}
	var haveFmt bool
	for {
		var ch [8]byte
		if _, err := io.ReadFull(r, ch[:]); err != nil {
			return nil, fmt.Errorf("%w: no data chunk (%v)", ErrWAV, err)
		}
		id, size := string(ch[:4]), binary.LittleEndian.Uint32(ch[4:])
		switch id {
		case "fmt ":
			if size < 16 || size > 1<<10 {
				return nil, fmt.Errorf("%w: fmt chunk of %d bytes", ErrWAV, size)
			}
			f := make([]byte, size+size%2)
			if _, err := io.ReadFull(r, f); err != nil {
				return nil, fmt.Errorf("%w: %v", ErrWAV, err)
			}
			format, channels := binary.LittleEndian.Uint16(f), binary.LittleEndian.Uint16(f[2:])
			rate, bits := binary.LittleEndian.Uint32(f[4:]), binary.LittleEndian.Uint16(f[14:])
			if format == 0xFFFE && size >= 26 { // WAVE_FORMAT_EXTENSIBLE: the sub-format's first two bytes
				format = binary.LittleEndian.Uint16(f[24:])
			}
			if format != 1 || channels != 1 || rate != SampleRate || bits != 16 {
				return nil, fmt.Errorf("voice: WAV of format %d, %d channel(s), %d Hz, %d bits; calls need PCM (1), 1 channel, 48000 Hz, 16 bits", format, channels, rate, bits)
			}
			haveFmt = true
		case "data":
			if !haveFmt {
				return nil, fmt.Errorf("%w: data before fmt", ErrWAV)
			}
			// A writer that could not seek leaves the size unknown
			// (0 or 0xFFFFFFFF): read to the end.
			var src io.Reader = r
			if size != 0 && size != 0xFFFFFFFF {
				src = io.LimitReader(r, int64(size))
			}
			b, err := io.ReadAll(src)
			if err != nil {
				return nil, fmt.Errorf("voice: reading WAV samples: %w", err)
			}
			pcm := make([]int16, len(b)/2)
			for i := range pcm {
				pcm[i] = int16(binary.LittleEndian.Uint16(b[2*i:]))
			}
			return pcm, nil
		default:
			if _, err := io.CopyN(io.Discard, r, int64(size)+int64(size%2)); err != nil {
				return nil, fmt.Errorf("%w: chunk %q cut short", ErrWAV, id)
			}
		}
	}
}

// WAVWriter writes 16-bit 48 kHz mono PCM as a WAV file as it comes; Close
// writes the sizes into the header.
type WAVWriter struct {
	w io.WriteSeeker
	n uint32 // data bytes written
}

// NewWAVWriter writes the header to w.
func NewWAVWriter(w io.WriteSeeker) (*WAVWriter, error) {
	if _, err := w.Write(wavHeader(0)); err != nil {
		return nil, err
	}
	return &WAVWriter{w: w}, nil
}

// Write appends samples.
func (ww *WAVWriter) Write(pcm []int16) error {
	b := make([]byte, 2*len(pcm))
	for i, s := range pcm {
		binary.LittleEndian.PutUint16(b[2*i:], uint16(s))
	}
	n, err := ww.w.Write(b)
	ww.n += uint32(n)
	return err
}

// Close writes the sizes into the header (the file stays open).
func (ww *WAVWriter) Close() error {
	if _, err := ww.w.Seek(0, io.SeekStart); err != nil {
		return err
	}
	if _, err := ww.w.Write(wavHeader(ww.n)); err != nil {
		return err
	}
	_, err := ww.w.Seek(0, io.SeekEnd)
	return err
}

func wavHeader(data uint32) []byte {
	h := make([]byte, 44)
	copy(h, "RIFF")
	binary.LittleEndian.PutUint32(h[4:], 36+data)
	copy(h[8:], "WAVEfmt ")
	binary.LittleEndian.PutUint32(h[16:], 16)
	binary.LittleEndian.PutUint16(h[20:], 1) // PCM
	binary.LittleEndian.PutUint16(h[22:], 1) // mono
	binary.LittleEndian.PutUint32(h[24:], SampleRate)
	binary.LittleEndian.PutUint32(h[28:], SampleRate*2)
	binary.LittleEndian.PutUint16(h[32:], 2)
	binary.LittleEndian.PutUint16(h[34:], 16)
	copy(h[36:], "data")
	binary.LittleEndian.PutUint32(h[40:], data)
	return h
}
