'use strict';
// The calls' media packet exactly as §19.4 lays it out, sealed and opened
// with Node's own AES-256-GCM: a 16-byte clear header (version, type, flags,
// level, stream id, sequence, timestamp; big-endian), the ciphertext of the
// payload and the 16-byte tag. The nonce is the direction byte (0 up, 1
// down), three zero bytes, the stream id and the sequence number; the header
// is the additional authenticated data.

const crypto = require('node:crypto');

const TYPE = { audio: 1, probe: 2, probeReply: 3, keepalive: 4 };
const UP = 0; // client to server
const DOWN = 1; // server to client

function header({ version = 1, type, flags = 0, level = 0, stream, seq, ts = 0 }) {
  const h = Buffer.alloc(16);
  h[0] = version;
  h[1] = type;
  h[2] = flags;
  h[3] = level;
  h.writeUInt32BE(stream >>> 0, 4);
  h.writeUInt32BE(seq >>> 0, 8);
  h.writeUInt32BE(ts >>> 0, 12);
  return h;
}

function nonce(direction, stream, seq) {
  const n = Buffer.alloc(12);
  n[0] = direction;
  n.writeUInt32BE(stream >>> 0, 4);
  n.writeUInt32BE(seq >>> 0, 8);
  return n;
}

// seal returns the packet for fields ({type, flags, level, stream, seq, ts,
// version}) and payload, sealed with key in direction (UP unless told).
function seal(key, fields, payload = Buffer.alloc(0), direction = UP) {
  const h = header(fields);
  const c = crypto.createCipheriv('aes-256-gcm', key, nonce(direction, fields.stream, fields.seq));
  c.setAAD(h);
  const ct = Buffer.concat([c.update(payload), c.final()]);
  return Buffer.concat([h, ct, c.getAuthTag()]);
}

// parse reads the clear header; null when the packet is shorter than 32.
function parse(packet) {
  if (packet.length < 32) return null;
  return {
    version: packet[0], type: packet[1], flags: packet[2], level: packet[3],
    stream: packet.readUInt32BE(4), seq: packet.readUInt32BE(8), ts: packet.readUInt32BE(12),
  };
}

// open authenticates and decrypts packet with key in direction (DOWN unless
// told): {header fields, payload}, or null when it does not open.
function open(key, packet, direction = DOWN) {
  const f = parse(packet);
  if (!f) return null;
  try {
    const d = crypto.createDecipheriv('aes-256-gcm', key, nonce(direction, f.stream, f.seq));
    d.setAAD(packet.subarray(0, 16));
    d.setAuthTag(packet.subarray(packet.length - 16));
    const payload = Buffer.concat([d.update(packet.subarray(16, packet.length - 16)), d.final()]);
    return { ...f, payload };
  } catch {
    return null;
  }
}

// Stream is one participant's sending side: its stream id, key and the
// sequence number that goes up by one for every packet sealed (§19.4).
class Stream {
  constructor(joined, { seq = crypto.randomInt(0, 2 ** 32), ts = crypto.randomInt(0, 2 ** 32) } = {}) {
    this.id = joined.stream_id;
    this.key = joined.media_key;
    this.seq = seq;
    this.ts = ts;
  }

  next() {
    const s = this.seq;
    this.seq = (this.seq + 1) >>> 0;
    return s;
  }

  probe() {
    return seal(this.key, { type: TYPE.probe, stream: this.id, seq: this.next(), ts: this.ts });
  }

  keepalive() {
    return seal(this.key, { type: TYPE.keepalive, stream: this.id, seq: this.next(), ts: this.ts });
  }

  // audio seals one 20 ms frame (payload stands in for the Opus frame: the
  // server never decodes it, §19).
  audio(payload, { flags = 0x01, level = 30 } = {}) {
    this.ts = (this.ts + 960) >>> 0;
    return seal(this.key, { type: TYPE.audio, flags, level, stream: this.id, seq: this.next(), ts: this.ts }, payload);
  }
}

module.exports = { TYPE, UP, DOWN, header, nonce, seal, open, parse, Stream };
