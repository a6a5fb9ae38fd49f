// Package media is the voice packet of Parley's calls: the datagram a client
// and the server exchange on the media (UDP) port, sealed with AES-256-GCM.
// It uses the standard library only, so clients can depend on it.
//
// # Packet
//
// A packet is a 16-byte header, sent in clear and authenticated as the AEAD
// additional data, then the AES-256-GCM ciphertext of the payload, then the
// 16-byte GCM tag. Multi-byte fields are unsigned, big-endian (network byte
// order):
//
//	offset size field
//	     0    1 version    1; any other value is refused
//	     1    1 type       1 audio, 2 probe, 3 probe reply, 4 keepalive;
//	                       any other value is refused
//	     2    1 flags      0x01 voice activity (the sender is speaking),
//	                       0x02 DTX (a discontinuous-transmission or
//	                       comfort-noise frame); the other bits are reserved
//	                       and must be zero. Audio only: must be 0 in the
//	                       other types
//	     3    1 level      audio level, 0-127 = -dBov as in RFC 6464
//	                       (0 is the loudest, 127 silence or muted); values
//	                       over 127 are refused. Audio only: must be 0 in
//	                       the other types
//	     4    4 stream id  the sending participant's stream in this call,
//	                       assigned by the server (never the user id); 0 is
//	                       refused
//	     8    4 sequence   starts anywhere, +1 (mod 2^32) for every packet
//	                       sealed on the stream, whatever its type
//	    12    4 timestamp  48 kHz units (+960 for a 20 ms frame), mod 2^32
//	    16    n ciphertext of the payload: one Opus frame (RFC 6716) for
//	                       audio; empty or a small body for the others;
//	                       0 <= n <= 1200 (MaxPayload)
//	  16+n   16 tag        the AES-GCM authentication tag
//
// A packet is therefore 32 (Overhead) to 1232 (MaxPacket) bytes: with the
// 8-byte UDP and 40-byte IPv6 headers the largest is exactly the 1280-byte
// minimum IPv6 MTU (RFC 8200 §5), so it needs no fragmentation on any IPv6
// path without tunnels.
//
// Probe (2) is the client asking whether UDP reaches the server; the server
// answers with a probe reply (3) carrying the probe's stream id, sequence
// number and timestamp. Keepalive (4) keeps a NAT binding open; the server sends none.
//
// # Sealing
//
// Each participant of a call gets its own 32-byte AES-256-GCM key (NIST SP
// 800-38D) over the signalling channel, new for every time it joins a call.
// The 12-byte nonce is
//
//	offset size
//	     0    1 direction  0 client to server ("up"), 1 server to client
//	                       ("down")
//	     1    3 zero
//	     4    4 stream id  as in the header
//	     8    4 sequence   as in the header
//
// and the additional data is the 16 header bytes, so no header field can be
// altered without failing authentication.
//
// A client seals what it sends with its key, direction up, on its own stream.
// The server opens it with that key and direction, checks the sequence
// number against the stream's replay window (ReplayWindow), and re-seals the
// payload for each listener with the listener's key, direction down, keeping
// the header as it came: the speaker's stream id, sequence number,
// timestamp, flags and level. A listener opens with its own key, direction
// down, and keeps a replay window per speaker's stream. A probe reply is
// sealed with the probing client's key, direction down.
//
// Two different payloads sealed under one key and nonce reveal their XOR
// and GCM's authentication key, after which packets under that key can be
// forged, so the contract is that (direction, stream id, sequence) never
// repeats under a key:
//
//   - up: a client never reuses a sequence number on its stream (2^32
//     packets, 2.7 years at 50 packets a second, is the most a key seals);
//   - down: the server re-seals only what passed the speaker's replay
//     window, which accepts each sequence number once in the window's life
//     (see ReplayWindow); stream ids are unique in a call and never
//     reassigned in it, and the server never forwards a client's own stream
//     to it, so its probe replies (on its own stream id, answering only
//     probes its replay window accepted) collide with nothing.
//
// No participant can forge another's packets: the server accepts on a
// stream only what that stream's owner's key seals, and a listener's key is
// known only to the listener and the server.
//
// The header is not encrypted: anyone on the path sees the stream ids,
// sequence numbers, timestamps, voice activity and level (see RFC 6464's
// security considerations), and the payload's length.
package media

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"errors"
	"sync"
)

// Sizes and limits of a packet.
const (
	// Version is the header's version byte.
	Version = 1
	// HeaderLen is the size of the clear header.
	HeaderLen = 16
	// TagLen is the size of the AES-GCM tag that ends a packet.
	TagLen = 16
	// Overhead is what sealing adds to a payload: header and tag.
	Overhead = HeaderLen + TagLen
	// MaxPayload bounds the plaintext payload.
	MaxPayload = 1200
	// MaxPacket bounds a whole packet: 1232 bytes, which with the UDP and
	// IPv6 headers is the 1280-byte minimum IPv6 MTU.
	MaxPacket = MaxPayload + Overhead
	// KeyLen is the size of a participant's key (AES-256).
	KeyLen = 32
	// NonceLen is the size of the AES-GCM nonce built from a header.
	NonceLen = 12
	// ClockRate is the timestamp's rate, in units a second.
	ClockRate = 48000
	// FrameTicks is the timestamp advance of a 20 ms frame.
	FrameTicks = ClockRate / 50
	// MaxLevel is the largest audio level: silence (RFC 6464: 127 is -127
	// dBov, "digital silence").
	MaxLevel = 127
)

// Type is a packet's kind (header byte 1).
type Type uint8

// The packet types.
const (
	TypeAudio      Type = 1 // an Opus frame
	TypeProbe      Type = 2 // client to server: does UDP work? (payload: empty, or a PathToken echoed)
	TypeProbeReply Type = 3 // server to client: it does (payload: empty, or a PathToken to echo)
	TypeKeepalive  Type = 4 // client to server: keeps the NAT binding open
)

// PathTokenLen is the length of a path token (docs/protocol.md §19.3): the
// payload of a probe reply sent to a UDP address that is not yet the
// stream's media address, which the client proves it receives there by
// echoing it as the payload of a probe from that address.
const PathTokenLen = 8

// Flags is header byte 2; only audio packets may set them.
type Flags uint8

// The flag bits; the others must be zero.
const (
	FlagVoice Flags = 0x01 // voice activity: the sender is speaking
	FlagDTX   Flags = 0x02 // a DTX / comfort-noise frame
	flagsAll        = FlagVoice | FlagDTX
)

// Direction says who sealed a packet; it is the nonce's first byte.
type Direction uint8

// The directions.
const (
	Up   Direction = 0 // client to server
	Down Direction = 1 // server to client
)

func (d Direction) String() string {
	switch d {
	case Up:
		return "up"
	case Down:
		return "down"
	}
	return "invalid"
}

// Header is a packet's clear header, version aside (always Version).
type Header struct {
	Type      Type
	Flags     Flags
	Level     uint8 // -dBov, 0-127; 0 in packets other than audio
	StreamID  uint32
	Seq       uint32
	Timestamp uint32
}

// Errors; test with errors.Is. Each is a reason to drop the packet.
var (
	ErrShort     = errors.New("media: packet shorter than header and tag")
	ErrTooLarge  = errors.New("media: payload over MaxPayload")
	ErrVersion   = errors.New("media: unknown version")
	ErrType      = errors.New("media: unknown packet type")
	ErrFlags     = errors.New("media: reserved flag set, or flags on a packet other than audio")
	ErrLevel     = errors.New("media: audio level over 127, or a level on a packet other than audio")
	ErrStreamID  = errors.New("media: stream id 0")
	ErrAuth      = errors.New("media: packet failed authentication")
	ErrKeySize   = errors.New("media: key is not 32 bytes")
	ErrDirection = errors.New("media: unknown direction")
)

// check applies the header rules of the package comment.
func (h Header) check() error {
	switch {
	case h.Type < TypeAudio || h.Type > TypeKeepalive:
		return ErrType
	case h.Flags&^flagsAll != 0, h.Type != TypeAudio && h.Flags != 0:
		return ErrFlags
	case h.Level > MaxLevel, h.Type != TypeAudio && h.Level != 0:
		return ErrLevel
	case h.StreamID == 0:
		return ErrStreamID
	}
	return nil
}

// ParseHeader reads and checks pkt's header and length without any
// cryptography: the server uses it to find the stream, and so the key, to
// open the packet with. Nothing it returns is authenticated until Open
// succeeds.
func ParseHeader(pkt []byte) (Header, error) {
	switch {
	case len(pkt) < Overhead:
		return Header{}, ErrShort
	case len(pkt) > MaxPacket:
		return Header{}, ErrTooLarge
	case pkt[0] != Version:
		return Header{}, ErrVersion
	}
	h := Header{
		Type:      Type(pkt[1]),
		Flags:     Flags(pkt[2]),
		Level:     pkt[3],
		StreamID:  binary.BigEndian.Uint32(pkt[4:]),
		Seq:       binary.BigEndian.Uint32(pkt[8:]),
		Timestamp: binary.BigEndian.Uint32(pkt[12:]),
	}
	if err := h.check(); err != nil {
		return Header{}, err
	}
	return h, nil
}

// Key is one participant's key. It is safe for concurrent use.
type Key struct {
	aead cipher.AEAD
}

// NewKey makes a Key of the 32 bytes the signalling channel handed out.
func NewKey(key []byte) (*Key, error) {
	if len(key) != KeyLen {
		return nil, ErrKeySize
	}
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(b)
	if err != nil {
		return nil, err
	}
	return &Key{aead: aead}, nil
}

// nonces holds nonce buffers: a nonce on the stack would escape to the heap
// through the cipher.AEAD interface, one allocation a packet.
var nonces = sync.Pool{New: func() any { return new([NonceLen]byte) }}

func nonce(dir Direction, streamID, seq uint32) *[NonceLen]byte {
	n := nonces.Get().(*[NonceLen]byte)
	n[0] = byte(dir) // bytes 1-3 are never written: zero
	binary.BigEndian.PutUint32(n[4:], streamID)
	binary.BigEndian.PutUint32(n[8:], seq)
	return n
}

// Seal appends to dst the packet of h and payload sealed for dir, and
// returns the extended slice. It allocates nothing when dst has room for
// len(payload)+Overhead more bytes. To seal in place, put the payload at
// dst[len(dst)+HeaderLen:]; otherwise payload must not overlap the room
// after dst.
func (k *Key) Seal(dst []byte, dir Direction, h Header, payload []byte) ([]byte, error) {
	if dir > Down {
		return dst, ErrDirection
	}
	if err := h.check(); err != nil {
		return dst, err
	}
	if len(payload) > MaxPayload {
		return dst, ErrTooLarge
	}
	start := len(dst)
	dst = grow(dst, HeaderLen+len(payload)+TagLen)
	hdr := dst[start : start+HeaderLen]
	hdr[0] = Version
	hdr[1] = byte(h.Type)
	hdr[2] = byte(h.Flags)
	hdr[3] = h.Level
	binary.BigEndian.PutUint32(hdr[4:], h.StreamID)
	binary.BigEndian.PutUint32(hdr[8:], h.Seq)
	binary.BigEndian.PutUint32(hdr[12:], h.Timestamp)
	n := nonce(dir, h.StreamID, h.Seq)
	dst = k.aead.Seal(dst[:start+HeaderLen], n[:], payload, hdr)
	nonces.Put(n)
	return dst, nil
}

// grow returns dst with n more bytes of capacity guaranteed, its length
// unchanged, reallocating only when needed.
func grow(dst []byte, n int) []byte {
	if cap(dst)-len(dst) >= n {
		return dst
	}
	b := make([]byte, len(dst), len(dst)+n)
	copy(b, dst)
	return b
}

// Open checks pkt's header (as ParseHeader), authenticates the packet as
// sealed for dir under k, and appends its payload to dst. It returns the
// header and the extended dst; on any error, a zero Header and dst at its
// old length (the room after it, pkt's body when opening in place, may have
// been overwritten). To open in place, pass pkt[HeaderLen:HeaderLen] as dst;
// otherwise dst's room must not overlap pkt.
//
// A packet that opens is authentic, not fresh: check its sequence number
// with the stream's ReplayWindow before using or forwarding it.
func (k *Key) Open(dst []byte, dir Direction, pkt []byte) (Header, []byte, error) {
	if dir > Down {
		return Header{}, dst, ErrDirection
	}
	h, err := ParseHeader(pkt)
	if err != nil {
		return Header{}, dst, err
	}
	n := nonce(dir, h.StreamID, h.Seq)
	out, err := k.aead.Open(dst, n[:], pkt[HeaderLen:], pkt[:HeaderLen])
	nonces.Put(n)
	if err != nil {
		return Header{}, dst, ErrAuth
	}
	return h, out, nil
}
