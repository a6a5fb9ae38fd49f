// Package mediabus encodes the media plane between the gateways and the
// media-relay replica that owns a call, on subject.MediaUp(call) (gateways
// to the owner) and subject.MediaDown(call) (the owner to the gateways).
//
// These messages are on the hot path (50 a second per speaker), so they are
// not protobuf but a kind byte and fixed fields, every integer big-endian:
//
//	Audio  (both ways): 0x01, the packet's 16-byte clear header
//	                    (protocol/media), the opened payload (an Opus frame).
//	Alive  (up):        0x02, gateway id length (1 byte), gateway id, then
//	                    4-byte stream ids: these participants are still
//	                    connected to that gateway.
//	Roster (down):      0x04, the revision of the call's record (8 bytes)
//	                    the roster was taken from, then the 4-byte stream
//	                    ids of the call's participants at that revision;
//	                    none: the call ended. A gateway drops its streams of
//	                    the call that are not listed, and ignores a roster
//	                    older than the newest it took for the call (one
//	                    sent by a replica whose view of the call is behind,
//	                    as around an owner's takeover).
//	Roster without revision (down): 0x03, then the stream ids. What relays
//	                    sent before the revision; gateways still take it,
//	                    unordered, so they can be upgraded first.
//
// The payload travels in clear on NATS: the gateway opened it with the
// speaker's key and re-seals it with each listener's. NATS between the
// services is inside the deployment (use NATS TLS across untrusted links).
package mediabus

import (
	"encoding/binary"
	"errors"

	"github.com/parleychat/parley/protocol/media"
)

// Kind is a bus message's first byte.
type Kind uint8

// The kinds.
const (
	KindAudio           Kind = 1
	KindAlive           Kind = 2
	KindRosterUnordered Kind = 3 // a Roster without its revision (older relays)
	KindRoster          Kind = 4
)

// MaxStreams bounds the stream ids one Alive or Roster carries.
const MaxStreams = 4096

// Errors of Parse.
var (
	ErrShort    = errors.New("mediabus: message too short")
	ErrKind     = errors.New("mediabus: unknown kind")
	ErrLength   = errors.New("mediabus: stream list not a multiple of 4 bytes, or too long")
	ErrGateway  = errors.New("mediabus: bad gateway id")
	ErrTooLarge = errors.New("mediabus: payload too large")
)

// Audio is one speaker's packet, opened: the clear header and the payload.
type Audio struct {
	Header  media.Header
	Payload []byte // aliases the message's bytes
}

// AppendAudio appends the Audio message of h and payload to dst.
func AppendAudio(dst []byte, h media.Header, payload []byte) []byte {
	dst = append(dst, byte(KindAudio), media.Version, byte(h.Type), byte(h.Flags), h.Level)
	dst = binary.BigEndian.AppendUint32(dst, h.StreamID)
	dst = binary.BigEndian.AppendUint32(dst, h.Seq)
	dst = binary.BigEndian.AppendUint32(dst, h.Timestamp)
	return append(dst, payload...)
}

// ParseAudio reads an Audio message (its kind byte included).
func ParseAudio(b []byte) (Audio, error) {
	if len(b) < 1+media.HeaderLen {
		return Audio{}, ErrShort
	}
	if Kind(b[0]) != KindAudio {
		return Audio{}, ErrKind
	}
	if len(b)-1-media.HeaderLen > media.MaxPayload {
		return Audio{}, ErrTooLarge
	}
	// ParseHeader wants a whole packet's length; check the header alone by
	// giving it the header followed by a zero tag's worth of room.
	var pkt [media.Overhead]byte
	copy(pkt[:], b[1:1+media.HeaderLen])
	h, err := media.ParseHeader(pkt[:])
	if err != nil {
		return Audio{}, err
	}
	return Audio{Header: h, Payload: b[1+media.HeaderLen:]}, nil
}

// AppendAlive appends an Alive message for gateway's streams to dst.
func AppendAlive(dst []byte, gateway string, streams []uint32) []byte {
	dst = append(dst, byte(KindAlive), byte(len(gateway)))
	dst = append(dst, gateway...)
	return appendStreams(dst, streams)
}

// ParseAlive reads an Alive message; the stream ids are appended to ids.
func ParseAlive(b []byte, ids []uint32) (gateway string, out []uint32, err error) {
	if len(b) < 2 {
		return "", ids, ErrShort
	}
	if Kind(b[0]) != KindAlive {
		return "", ids, ErrKind
	}
	n := int(b[1])
	if n == 0 || len(b) < 2+n {
		return "", ids, ErrGateway
	}
	out, err = parseStreams(b[2+n:], ids)
	return string(b[2 : 2+n]), out, err
}

// Roster is the participants' streams of a call at revision Rev of its
// record (0: unknown, a KindRosterUnordered message).
type Roster struct {
	Rev     uint64
	Streams []uint32 // none: the call ended
}

// AppendRoster appends a Roster message (KindRoster) to dst.
func AppendRoster(dst []byte, r Roster) []byte {
	dst = binary.BigEndian.AppendUint64(append(dst, byte(KindRoster)), r.Rev)
	return appendStreams(dst, r.Streams)
}

// ParseRoster reads a Roster message of either kind; the stream ids are
// appended to ids (reused as r.Streams).
func ParseRoster(b []byte, ids []uint32) (r Roster, err error) {
	switch KindOf(b) {
	case 0:
		return Roster{Streams: ids}, ErrShort
	case KindRosterUnordered:
		r.Streams, err = parseStreams(b[1:], ids)
		return r, err
	case KindRoster:
		if len(b) < 9 {
			return Roster{Streams: ids}, ErrShort
		}
		r.Rev = binary.BigEndian.Uint64(b[1:9])
		r.Streams, err = parseStreams(b[9:], ids)
		return r, err
	default:
		return Roster{Streams: ids}, ErrKind
	}
}

// KindOf returns a message's kind, 0 for an empty one.
func KindOf(b []byte) Kind {
	if len(b) == 0 {
		return 0
	}
	return Kind(b[0])
}

func appendStreams(dst []byte, streams []uint32) []byte {
	for _, s := range streams {
		dst = binary.BigEndian.AppendUint32(dst, s)
	}
	return dst
}

func parseStreams(b []byte, ids []uint32) ([]uint32, error) {
	if len(b)%4 != 0 || len(b)/4 > MaxStreams {
		return ids, ErrLength
	}
	for i := 0; i < len(b); i += 4 {
		ids = append(ids, binary.BigEndian.Uint32(b[i:]))
	}
	return ids, nil
}
