'use strict';
// The schema, loaded at run time from protocol/proto/parley/v1/parley.proto with
// protobufjs, field names kept as the schema spells them (snake_case, as in
// docs/protocol.md), and the frame codec of §2-§4.

const path = require('node:path');
const protobuf = require('protobufjs');

const PROTO = path.join(__dirname, '..', '..', '..', 'protocol', 'proto', 'parley', 'v1', 'parley.proto');

const root = new protobuf.Root();
root.loadSync(PROTO, { keepCase: true });
root.resolveAll();

const Frame = root.lookupType('parley.v1.Frame');
const ErrorCode = root.lookupEnum('parley.v1.ErrorCode');

// Decoded frames are plain objects: uint64 as Number (seqs and ids stay far
// below 2^53 here), enums by name, every scalar with its default, and the
// oneof's member name in `body`.
const TO_OBJECT = { longs: Number, enums: String, bytes: Buffer, defaults: true, oneofs: true };

// encodeFrame returns the protobuf encoding of a Frame given as a plain object
// ({request_id, <member>: {...}}), without the §2 length prefix.
function encodeFrame(obj) {
  checkKeys(Frame, obj, 'Frame');
  return Buffer.from(Frame.encode(Frame.fromObject(obj)).finish());
}

// checkKeys refuses a field name the schema does not have (protobufjs would
// drop it silently, and the check would test something else than it says).
function checkKeys(type, obj, where) {
  for (const [k, v] of Object.entries(obj)) {
    const field = type.fields[k];
    if (!field) throw new Error(`${where} has no field ${k}`);
    if (field.resolvedType instanceof protobuf.Type && v !== null && v !== undefined) {
      const items = field.repeated ? v : [v];
      for (const item of items) checkKeys(field.resolvedType, item, `${where}.${k}`);
    }
  }
}

// decodeFrame parses one Frame encoding; it throws on bytes that are not one.
function decodeFrame(bytes) {
  return Frame.toObject(Frame.decode(bytes), TO_OBJECT);
}

// prefix adds the §2 length prefix (uint32, big-endian).
function prefix(body) {
  const head = Buffer.alloc(4);
  head.writeUInt32BE(body.length, 0);
  return Buffer.concat([head, body]);
}

// code turns a short error name ("BAD_FRAME") into the enum's value name.
function code(name) {
  const full = `ERROR_CODE_${name}`;
  if (!(full in ErrorCode.values)) throw new Error(`no error code ${name} in the schema`);
  return full;
}

// Hand-made protobuf bytes, for frames a protobuf library will not produce
// (invalid UTF-8, unknown fields, damaged encodings).
const raw = {
  varint(n) {
    const out = [];
    let v = BigInt(n);
    do {
      let b = Number(v & 0x7fn);
      v >>= 7n;
      if (v > 0n) b |= 0x80;
      out.push(b);
    } while (v > 0n);
    return Buffer.from(out);
  },
  // field encodes one field: a number value as a varint (wire type 0), a
  // Buffer or string as length-delimited (wire type 2).
  field(num, value) {
    if (typeof value === 'number' || typeof value === 'bigint') {
      return Buffer.concat([raw.varint((num << 3) | 0), raw.varint(value)]);
    }
    const bytes = Buffer.isBuffer(value) ? value : Buffer.from(value, 'utf8');
    return Buffer.concat([raw.varint((num << 3) | 2), raw.varint(bytes.length), bytes]);
  },
  // message concatenates encoded fields.
  message(...fields) {
    return Buffer.concat(fields);
  },
};

// The Frame member numbers of §4, for hand-made frames.
const MEMBER = {};
for (const f of Frame.oneofs.body.fieldsArray) MEMBER[f.name] = f.id;

module.exports = { root, Frame, encodeFrame, decodeFrame, prefix, code, raw, MEMBER, PROTO };
