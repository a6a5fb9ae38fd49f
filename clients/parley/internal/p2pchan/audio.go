package p2pchan

import (
	"encoding/binary"
	"errors"
)

// The call audio datagram (§20.7): 12 bytes of header and the Opus frame.
const (
	audioHeader  = 12
	audioType    = 1
	MaxOpusBytes = 1200
)

// Audio is one audio frame of a call carried directly (§20.7).
type Audio struct {
	Flags     uint8  // as in §19.4
	Level     uint8  // as in §19.4
	Seq       uint32 // +1 per datagram
	Timestamp uint32 // 48 kHz units
	Opus      []byte // at most MaxOpusBytes
}

var errAudio = errors.New("p2pchan: not an audio datagram")

// AppendAudio appends a's datagram to b.
//
//	offset 0: type 1 | 1: flags | 2: level | 3: 0 | 4-7: seq | 8-11: timestamp | 12-: Opus
func AppendAudio(b []byte, a Audio) []byte {
	b = append(b, audioType, a.Flags, a.Level, 0)
	b = binary.BigEndian.AppendUint32(b, a.Seq)
	b = binary.BigEndian.AppendUint32(b, a.Timestamp)
	return append(b, a.Opus...)
}

// The header rules §20.7 takes from §19.4.
const (
	audioFlags = 0x03 // voice activity, DTX; the other bits are 0
	maxLevel   = 127  // -dBov
)

// ParseAudio reads an audio datagram (§20.7). Anything else is an error,
// and the receiver drops it: another type, shorter than the header, an
// Opus frame above MaxOpusBytes, flags or a level §19.4 does not allow, a
// byte 3 that is not 0. Opus aliases b.
func ParseAudio(b []byte) (Audio, error) {
	switch {
	case len(b) < audioHeader, b[0] != audioType, len(b)-audioHeader > MaxOpusBytes,
		b[1]&^audioFlags != 0, b[2] > maxLevel, b[3] != 0:
		return Audio{}, errAudio
	}
	return Audio{
		Flags:     b[1],
		Level:     b[2],
		Seq:       binary.BigEndian.Uint32(b[4:]),
		Timestamp: binary.BigEndian.Uint32(b[8:]),
		Opus:      b[audioHeader:],
	}, nil
}
