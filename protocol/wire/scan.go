package wire

import (
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/parleychat/parley/protocol/parleyv1"
)

// Why a frame was refused is read from its bytes, not from the protobuf
// runtime's error: the runtime does not export its UTF-8 error, and its
// text is no contract. These scanners walk the encoding (the protobuf
// wire format: tag, wire type, value) with protowire.

// frameDesc is the descriptor the scanners follow.
var frameDesc = (&parleyv1.Frame{}).ProtoReflect().Descriptor()

// RequestID reads a frame's request_id (field 1, a varint) from its
// encoding without decoding the rest, so that a frame refused as a whole
// can still be answered with its request's id (docs/protocol.md §6). It
// scans the top-level fields in order and stops at the first one it cannot
// read; the last request_id seen before that wins, as in protobuf decoding.
// It returns 0 when none can be read.
func RequestID(b []byte) uint32 {
	var id uint32
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			break
		}
		b = b[n:]
		if num == 1 && typ == protowire.VarintType {
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				break
			}
			id = uint32(v) // as the runtime decodes a uint32 field
			b = b[n:]
			continue
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			break
		}
		b = b[n:]
	}
	return id
}

// invalidUTF8 reports whether b is a well-formed Frame encoding whose only
// fault is a string field, at any nesting level, holding bytes that are not
// UTF-8 (proto3 strings must be UTF-8, docs/protocol.md §4).
func invalidUTF8(b []byte) bool {
	bad := false
	ok := scanStrings(b, frameDesc, 0, func(v []byte) {
		if !utf8.Valid(v) {
			bad = true
		}
	})
	return ok && bad
}

// maxScanDepth bounds the nesting scanStrings follows, like the runtime's
// recursion limit (the schema is not recursive, so real frames stay far
// below it).
const maxScanDepth = 100

// scanStrings walks b as an encoding of md and calls visit with the bytes
// of every string field it holds, nested messages and map entries
// included (the slice aliases b). Fields md does not know, or that arrive
// with a wire type other than the schema's, are skipped as the runtime
// keeps them: as unknown fields, not validated. It reports whether b is
// well-formed: every tag, length and value complete and valid.
func scanStrings(b []byte, md protoreflect.MessageDescriptor, depth int, visit func(v []byte)) bool {
	if depth > maxScanDepth {
		return false
	}
	fields := md.Fields()
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 || num > protowire.MaxValidNumber {
			return false
		}
		b = b[n:]
		fd := fields.ByNumber(num)
		if fd == nil || typ != protowire.BytesType {
			n = protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return false
			}
			b = b[n:]
			continue
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return false
		}
		b = b[n:]
		switch fd.Kind() {
		case protoreflect.StringKind:
			visit(v)
		case protoreflect.MessageKind:
			if !scanStrings(v, fd.Message(), depth+1, visit) {
				return false
			}
		default:
			if fd.IsList() && !packedWellFormed(v, fd.Kind()) {
				return false
			}
		}
	}
	return true
}

// packedWellFormed reports whether v is a complete packed run of kind's
// values. Bytes fields, and other kinds that never come packed, are
// accepted as they are.
func packedWellFormed(v []byte, kind protoreflect.Kind) bool {
	var typ protowire.Type
	switch kind {
	case protoreflect.BoolKind, protoreflect.EnumKind, protoreflect.Int32Kind, protoreflect.Sint32Kind,
		protoreflect.Uint32Kind, protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Uint64Kind:
		typ = protowire.VarintType
	case protoreflect.Fixed32Kind, protoreflect.Sfixed32Kind, protoreflect.FloatKind:
		typ = protowire.Fixed32Type
	case protoreflect.Fixed64Kind, protoreflect.Sfixed64Kind, protoreflect.DoubleKind:
		typ = protowire.Fixed64Type
	default:
		return true
	}
	for len(v) > 0 {
		n := protowire.ConsumeFieldValue(1, typ, v)
		if n < 0 {
			return false
		}
		v = v[n:]
	}
	return true
}

// unknownMessage reports whether b, a Frame's unknown fields as the
// runtime kept them, holds a length-delimited field other than request_id:
// what a body member (always a message) of a later schema looks like.
func unknownMessage(b []byte) bool {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return false
		}
		b = b[n:]
		if num != 1 && typ == protowire.BytesType {
			return true
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return false
		}
		b = b[n:]
	}
	return false
}
