// Package wire encodes and decodes Parley protocol frames (docs/protocol.md).
//
// The conversation on one connection:
//
//	client                                   gateway
//	  Hello{versions:[1]}            ──────►
//	                                 ◄──────  Welcome{version:1, limits}
//	  Register|Login|Resume (id=1)   ──────►
//	                                 ◄──────  Session (id=1)  or  Error (id=1)
//	                                 ◄──────  PresenceSnapshot ... (last=true)
//	                                 ◄──────  PresenceChange, SessionEnded (events, id=0)
//	  Who (id=2), Logout (id=3), ... ──────►
//	  Ping                           ◄─────►  Pong   (either side, any time after Welcome)
//
// On a stream transport (TCP, TLS) each frame is a 4-byte big-endian unsigned
// length N followed by N bytes: the protobuf encoding of parleyv1.Frame
// (docs/protocol.md §2). On WebSocket each binary message is one frame's
// protobuf encoding without the length prefix (§3). N is checked against the
// receiver's limit before any buffer is allocated, and the body's buffer
// grows with the bytes that arrive, not with what N announces.
package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/parleychat/parley/protocol/parleyv1"
)

// Version is the protocol version this package implements.
const Version = 1

// HeaderSize is the size of the length prefix on stream transports.
const HeaderSize = 4

// DefaultMaxFrameSize is the default limit on a frame's encoded size, without
// the length prefix.
const DefaultMaxFrameSize = 1 << 20

// Errors returned by the decoder. Each maps to one wire error code
// (see CodeOf).
var (
	// ErrFrameTooLarge: the length prefix exceeds the limit; the stream
	// cannot be trusted any more.
	ErrFrameTooLarge = errors.New("wire: frame too large")
	// ErrEmptyFrame: a zero length prefix or empty message.
	ErrEmptyFrame = errors.New("wire: empty frame")
	// ErrBadFrame: the bytes are not a valid Frame encoding.
	ErrBadFrame = errors.New("wire: malformed frame")
	// ErrInvalidUTF8: a string field holds invalid UTF-8.
	ErrInvalidUTF8 = errors.New("wire: invalid utf-8 in text field")
	// ErrNoBody: the frame decoded but carries no body.
	ErrNoBody = errors.New("wire: frame without body")
	// ErrUnknownBody: the frame's only body is a member this schema does
	// not know (a later protocol version's request): not malformed, but
	// nothing this side can act on.
	ErrUnknownBody = errors.New("wire: frame body unknown to this schema")
)

// CodeOf maps a decoder error to its wire error code.
func CodeOf(err error) parleyv1.ErrorCode {
	switch {
	case errors.Is(err, ErrFrameTooLarge):
		return parleyv1.ErrorCode_ERROR_CODE_FRAME_TOO_LARGE
	case errors.Is(err, ErrInvalidUTF8):
		return parleyv1.ErrorCode_ERROR_CODE_INVALID_UTF8
	case errors.Is(err, ErrEmptyFrame), errors.Is(err, ErrBadFrame), errors.Is(err, ErrNoBody):
		return parleyv1.ErrorCode_ERROR_CODE_BAD_FRAME
	case errors.Is(err, ErrUnknownBody):
		return parleyv1.ErrorCode_ERROR_CODE_UNKNOWN_REQUEST
	default:
		return parleyv1.ErrorCode_ERROR_CODE_INTERNAL
	}
}

// Decode parses one frame's protobuf encoding (no length prefix). A frame
// it refuses is ErrEmptyFrame, ErrNoBody, ErrUnknownBody (no body member
// this schema knows, but a message field it does not: a later version's
// body member, docs/protocol.md §4), ErrInvalidUTF8 (well-formed but for a
// string field, at any depth, that is not UTF-8) or ErrBadFrame;
// RequestID still reads such a frame's request_id where it can.
func Decode(b []byte) (*parleyv1.Frame, error) {
	if len(b) == 0 {
		return nil, ErrEmptyFrame
	}
	f := new(parleyv1.Frame)
	if err := proto.Unmarshal(b, f); err != nil {
		// The runtime validates proto3 strings as UTF-8 but does not export
		// that error; the bytes themselves say whether it is the only fault.
		if invalidUTF8(b) {
			return nil, ErrInvalidUTF8
		}
		return nil, fmt.Errorf("%v: %w", err, ErrBadFrame)
	}
	if f.Body == nil {
		if unknownMessage(f.ProtoReflect().GetUnknown()) {
			return nil, ErrUnknownBody
		}
		return nil, ErrNoBody
	}
	return f, nil
}

// Marshal returns a frame's protobuf encoding (no length prefix).
func Marshal(f *parleyv1.Frame) ([]byte, error) {
	return proto.Marshal(f)
}

// AppendFrame appends f with its 4-byte length prefix to dst.
func AppendFrame(dst []byte, f *parleyv1.Frame) ([]byte, error) {
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0)
	dst, err := proto.MarshalOptions{}.MarshalAppend(dst, f)
	if err != nil {
		return dst[:start], err
	}
	binary.BigEndian.PutUint32(dst[start:], uint32(len(dst)-start-HeaderSize))
	return dst, nil
}

// BodyField is the field number of the Frame body member named name (as
// in the schema: "message", "p2p_relay"); it panics for a name the schema
// does not have, so callers resolve it once, at start.
func BodyField(name string) protowire.Number {
	fd := (&parleyv1.Frame{}).ProtoReflect().Descriptor().Oneofs().ByName("body").Fields().ByName(protoreflect.Name(name))
	if fd == nil {
		panic("wire: Frame has no body member " + name)
	}
	return fd.Number()
}

// AppendBody appends, with its 4-byte length prefix, the frame (request_id
// 0) whose body member number field holds body, an already encoded message
// of that member's type: for a body that is forwarded as it came (checked
// by the caller), not decoded and encoded again.
func AppendBody(dst []byte, field protowire.Number, body []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(protowire.SizeTag(field)+protowire.SizeBytes(len(body))))
	dst = protowire.AppendTag(dst, field, protowire.BytesType)
	return protowire.AppendBytes(dst, body)
}

// WriteFrame writes f with its length prefix to w in one Write call.
func WriteFrame(w io.Writer, f *parleyv1.Frame) error {
	buf := getBuf()
	defer putBuf(buf)
	b, err := AppendFrame((*buf)[:0], f)
	if err != nil {
		return err
	}
	*buf = b
	_, err = w.Write(b)
	return err
}

// Reader reads length-prefixed frames from a stream. It holds no buffer
// between frames, so an idle connection costs only the Reader itself, and
// within a frame it holds one pooled buffer (at most 64 KiB) or about
// twice what has arrived, whichever is larger: the length prefix is a
// claim, not a reason to allocate.
type Reader struct {
	r      io.Reader
	max    uint32
	hdr    [HeaderSize]byte
	waited uint8 // bytes of hdr that Wait read ahead (0 or 1)
	// err ends the stream for good: a read failed inside a frame (part of
	// it consumed), so the bytes that follow are not a frame's start.
	err error
}

// SetMax changes the frame size limit for the frames read from now on. It
// must not be called concurrently with ReadFrame or ReadRaw.
func (r *Reader) SetMax(max uint32) {
	if max == 0 {
		max = DefaultMaxFrameSize
	}
	r.max = max
}

// NewReader returns a Reader that rejects frames larger than max bytes.
func NewReader(r io.Reader, max uint32) *Reader {
	if max == 0 {
		max = DefaultMaxFrameSize
	}
	return &Reader{r: r, max: max}
}

// ReadFrame reads and decodes the next frame. After ErrFrameTooLarge or an
// I/O error the stream is unusable, except for a deadline that passed
// before the frame's first byte (nothing consumed: the next read starts at
// the frame); after a read that failed inside a frame, deadline included,
// every later read returns that error. After ErrBadFrame, ErrInvalidUTF8,
// ErrEmptyFrame or ErrNoBody the frame was consumed entirely and the next
// one may be read.
func (r *Reader) ReadFrame() (*parleyv1.Frame, error) {
	b, err := r.ReadRaw()
	if err != nil {
		return nil, err
	}
	defer putBuf(b)
	return Decode(*b)
}

// ReadRaw reads the next frame's bytes into a pooled buffer. The caller must
// not keep the buffer; it is returned to the pool by PutRaw.
//
// The body's buffer grows with the bytes that arrive (grow), so a peer that
// announces 1 MiB and sends one byte costs one pooled buffer, not 1 MiB for
// as long as it stays silent.
//
// Stack budget: an idle connection parks in this function's read of the
// prefix, and one stuck in a frame in its read of the body, so its frame is
// on the stack of every connection (see gateway/internal/conn: a reader
// stack that outgrows 2 KiB costs 2 KiB per connection). The error paths
// and the growing are in helpers, to keep it small.
func (r *Reader) ReadRaw() (*[]byte, error) {
	if r.err != nil {
		return nil, r.err
	}
	if n, err := io.ReadFull(r.r, r.hdr[r.waited:]); err != nil {
		return nil, r.prefixFailed(n, err)
	}
	r.waited = 0
	n := int(binary.BigEndian.Uint32(r.hdr[:]))
	if uint32(n) > r.max {
		return nil, tooLarge(n, r.max)
	}
	if n == 0 {
		return nil, ErrEmptyFrame
	}
	b := getBuf()
	buf := (*b)[:0]
	for len(buf) < n {
		if len(buf) == cap(buf) {
			buf = grow(buf, n)
		}
		k, err := r.r.Read(buf[len(buf):min(cap(buf), n)])
		buf = buf[:len(buf)+k]
		if err != nil && len(buf) < n {
			return nil, r.readFailed(b, buf, err)
		}
	}
	*b = buf
	return b, nil
}

// Wait blocks until the next frame's first byte has arrived, without
// consuming the frame: the next ReadRaw (or ReadFrame) reads it whole. It
// returns nil at once if a byte is already waiting, and the read's error
// otherwise (io.EOF when the stream ended between frames; a deadline's
// error leaves the Reader usable if the stream is). A reader uses it to
// learn that its peer has gone while it is busy with the previous frame.
// It must not be called concurrently with ReadFrame or ReadRaw.
func (r *Reader) Wait() error {
	if r.err != nil {
		return r.err
	}
	if r.waited > 0 {
		return nil
	}
	n, err := r.r.Read(r.hdr[:1])
	if n > 0 {
		r.waited = 1
		return nil
	}
	return err
}

// prefixFailed is the error for a length prefix that could not be read
// whole (n bytes of it read now): io.EOF only when the stream ended before
// the frame's first byte. Once part of the prefix was consumed, the error
// ends the stream (r.err).
//
//go:noinline
func (r *Reader) prefixFailed(n int, err error) error {
	inFrame := r.waited > 0 || n > 0
	if inFrame && err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	r.waited = 0
	if inFrame {
		r.err = err
	}
	return err
}

// grow returns buf, full, in a buffer of twice its size (at least 4 KiB),
// at most n: what a frame holds is at most about twice what arrived.
//
//go:noinline
func grow(buf []byte, n int) []byte {
	grown := make([]byte, len(buf), min(n, max(2*cap(buf), 4096)))
	copy(grown, buf)
	return grown
}

//go:noinline
func tooLarge(n int, max uint32) error {
	return fmt.Errorf("length %d above limit %d: %w", n, max, ErrFrameTooLarge)
}

// readFailed releases a frame's buffer after a failed read of its body,
// which ends the stream (r.err); a frame cut short by the end of the stream
// is io.ErrUnexpectedEOF.
//
//go:noinline
func (r *Reader) readFailed(b *[]byte, buf []byte, err error) error {
	*b = buf
	putBuf(b)
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	r.err = err
	return err
}

// PutRaw returns a buffer obtained from ReadRaw or GetRaw.
func PutRaw(b *[]byte) { putBuf(b) }

// GetRaw returns an empty buffer from the pool ReadRaw uses, for a
// message-based transport that fills it itself; release it with PutRaw.
func GetRaw() *[]byte { return getBuf() }

// Buffers up to 64 KiB are pooled; larger ones are left to the GC so a
// single huge frame does not pin memory.
const maxPooled = 64 << 10

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

func getBuf() *[]byte { return bufPool.Get().(*[]byte) }

func putBuf(b *[]byte) {
	if cap(*b) > maxPooled {
		return
	}
	*b = (*b)[:0]
	bufPool.Put(b)
}

// ErrorFrame builds an Error frame answering requestID.
func ErrorFrame(requestID uint32, code parleyv1.ErrorCode, msg string, fatal bool) *parleyv1.Frame {
	return &parleyv1.Frame{RequestId: requestID, Body: &parleyv1.Frame_Error{Error: &parleyv1.Error{Code: code, Message: msg, Fatal: fatal}}}
}
