'use strict';
// STUN (RFC 8489) as §20.3 and §20.4 use it: Binding requests and answers,
// the attributes the rendezvous and the connectivity checks carry,
// MESSAGE-INTEGRITY (HMAC-SHA1 with a short-term key given as bytes) and
// FINGERPRINT (CRC-32 xor 0x5354554e). Written from the RFCs; nothing here
// is Parley's.

const crypto = require('node:crypto');

const MAGIC = 0x2112a442;
const BINDING_REQUEST = 0x0001;
const BINDING_SUCCESS = 0x0101;
const BINDING_ERROR = 0x0111;

const ATTR = {
  MAPPED_ADDRESS: 0x0001,
  CHANGE_REQUEST: 0x0003,
  USERNAME: 0x0006,
  MESSAGE_INTEGRITY: 0x0008,
  ERROR_CODE: 0x0009,
  NONCE: 0x0015,
  UNKNOWN_ATTRIBUTES: 0x000a,
  XOR_MAPPED_ADDRESS: 0x0020,
  USE_CANDIDATE: 0x0025,
  PADDING: 0x0026,
  RESPONSE_PORT: 0x0027,
  SOFTWARE: 0x8022,
  FINGERPRINT: 0x8028,
  RESPONSE_ORIGIN: 0x802b,
  OTHER_ADDRESS: 0x802c,
};

let crcTable = null;
function crc32(buf) {
  if (!crcTable) {
    crcTable = new Int32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[n] = c;
    }
  }
  let c = -1;
  for (let i = 0; i < buf.length; i++) c = crcTable[(c ^ buf[i]) & 0xff] ^ (c >>> 8);
  return (c ^ -1) >>> 0;
}

function attr(type, value) {
  const pad = (4 - (value.length % 4)) % 4;
  const h = Buffer.alloc(4);
  h.writeUInt16BE(type, 0);
  h.writeUInt16BE(value.length, 2);
  return Buffer.concat([h, value, Buffer.alloc(pad)]);
}

function head(type, length, txid) {
  const h = Buffer.alloc(20);
  h.writeUInt16BE(type, 0);
  h.writeUInt16BE(length, 2);
  h.writeUInt32BE(MAGIC, 4);
  txid.copy(h, 8);
  return h;
}

// encode builds a message: attrs is a list of [type, Buffer]; with
// integrityKey a MESSAGE-INTEGRITY follows them, with fingerprint (default
// true) a FINGERPRINT comes last.
function encode(type, txid, attrs = [], { integrityKey = null, fingerprint = true } = {}) {
  let body = Buffer.concat(attrs.map(([t, v]) => attr(t, v)));
  if (integrityKey) {
    const h = head(type, body.length + 24, txid);
    const mac = crypto.createHmac('sha1', integrityKey).update(Buffer.concat([h, body])).digest();
    body = Buffer.concat([body, attr(ATTR.MESSAGE_INTEGRITY, mac)]);
  }
  if (fingerprint) {
    const h = head(type, body.length + 8, txid);
    const v = Buffer.alloc(4);
    v.writeUInt32BE((crc32(Buffer.concat([h, body])) ^ 0x5354554e) >>> 0, 0);
    body = Buffer.concat([body, attr(ATTR.FINGERPRINT, v)]);
  }
  return Buffer.concat([head(type, body.length, txid), body]);
}

// isStun says whether a datagram is STUN as §20.4 demultiplexes it: first
// byte 0-3 and the magic cookie at bytes 4-7.
function isStun(b) {
  return b.length >= 20 && b[0] <= 3 && b.readUInt32BE(4) === MAGIC;
}

// decode parses a message: {type, txid, attrs: [{type, value, offset}],
// get(type)}, or null when it is not STUN.
function decode(b) {
  if (!isStun(b)) return null;
  const len = b.readUInt16BE(2);
  if (20 + len !== b.length || len % 4 !== 0) return null;
  const attrs = [];
  let off = 20;
  while (off + 4 <= b.length) {
    const t = b.readUInt16BE(off);
    const l = b.readUInt16BE(off + 2);
    if (off + 4 + l > b.length) return null;
    attrs.push({ type: t, value: b.subarray(off + 4, off + 4 + l), offset: off });
    off += 4 + l + ((4 - (l % 4)) % 4);
  }
  const m = { type: b.readUInt16BE(0), txid: b.subarray(8, 20), attrs, raw: b };
  m.get = (type) => { const a = attrs.find((x) => x.type === type); return a ? a.value : undefined; };
  m.has = (type) => attrs.some((x) => x.type === type);
  return m;
}

// checkIntegrity verifies MESSAGE-INTEGRITY with key (RFC 8489 §14.5): the
// HMAC covers the message up to the attribute, the header's length counting
// up to and including it.
function checkIntegrity(m, key) {
  const a = m.attrs.find((x) => x.type === ATTR.MESSAGE_INTEGRITY);
  if (!a || a.value.length !== 20) return false;
  const upto = Buffer.from(m.raw.subarray(0, a.offset));
  upto.writeUInt16BE(a.offset - 20 + 24, 2);
  const mac = crypto.createHmac('sha1', key).update(upto).digest();
  return crypto.timingSafeEqual(mac, a.value);
}

// checkFingerprint verifies FINGERPRINT, which must be the last attribute.
function checkFingerprint(m) {
  const a = m.attrs[m.attrs.length - 1];
  if (!a || a.type !== ATTR.FINGERPRINT || a.value.length !== 4) return false;
  const upto = Buffer.from(m.raw.subarray(0, a.offset));
  upto.writeUInt16BE(a.offset - 20 + 8, 2);
  return ((crc32(upto) ^ 0x5354554e) >>> 0) === a.value.readUInt32BE(0);
}

// address encodes ip:port as a (XOR-)MAPPED-ADDRESS value.
function address(addr, txid, xor) {
  const { ip, port, family } = splitAddr(addr);
  const ipb = family === 6 ? ipv6Bytes(ip) : Buffer.from(ip.split('.').map(Number));
  const v = Buffer.alloc(4 + ipb.length);
  v[1] = family === 6 ? 2 : 1;
  v.writeUInt16BE(xor ? port ^ (MAGIC >>> 16) : port, 2);
  const mask = Buffer.concat([Buffer.from([0x21, 0x12, 0xa4, 0x42]), txid]);
  for (let i = 0; i < ipb.length; i++) v[4 + i] = xor ? ipb[i] ^ mask[i] : ipb[i];
  return v;
}

// parseAddress reads a (XOR-)MAPPED-ADDRESS-style value as 'ip:port'.
function parseAddress(v, txid, xor) {
  if (!v || v.length < 8) return undefined;
  const fam = v[1];
  let port = v.readUInt16BE(2);
  if (xor) port ^= MAGIC >>> 16;
  const mask = Buffer.concat([Buffer.from([0x21, 0x12, 0xa4, 0x42]), txid]);
  const n = fam === 2 ? 16 : 4;
  const ip = Buffer.alloc(n);
  for (let i = 0; i < n; i++) ip[i] = xor ? v[4 + i] ^ mask[i] : v[4 + i];
  if (fam === 1) return `${[...ip].join('.')}:${port}`;
  const parts = [];
  for (let i = 0; i < 16; i += 2) parts.push(ip.readUInt16BE(i).toString(16));
  return `[${parts.join(':')}]:${port}`;
}

function splitAddr(addr) {
  const i = addr.lastIndexOf(':');
  const ip = addr.slice(0, i).replace(/^\[|\]$/g, '');
  return { ip, port: Number(addr.slice(i + 1)), family: ip.includes(':') ? 6 : 4 };
}

function ipv6Bytes(ip) {
  const [l, r] = ip.split('::');
  const left = l ? l.split(':') : [];
  const right = r !== undefined && r ? r.split(':') : [];
  const groups = r === undefined ? left : [...left, ...Array(8 - left.length - right.length).fill('0'), ...right];
  const b = Buffer.alloc(16);
  groups.forEach((g, i) => b.writeUInt16BE(parseInt(g, 16), i * 2));
  return b;
}

const txid = () => crypto.randomBytes(12);

// request builds a Binding request with the given attributes (and
// credentials: username, then nonce, and key for MESSAGE-INTEGRITY).
function request({ id = txid(), username, nonce, key, attrs = [], fingerprint = true } = {}) {
  const all = [];
  if (username !== undefined) all.push([ATTR.USERNAME, Buffer.from(username, 'utf8')]);
  if (nonce !== undefined) all.push([ATTR.NONCE, Buffer.from(nonce)]);
  all.push(...attrs);
  return { id, bytes: encode(BINDING_REQUEST, id, all, { integrityKey: key, fingerprint }) };
}

// errorCode reads ERROR-CODE as a number (e.g. 401).
function errorCode(m) {
  const v = m.get(ATTR.ERROR_CODE);
  if (!v || v.length < 4) return undefined;
  return (v[2] & 0x7) * 100 + v[3];
}

module.exports = {
  MAGIC, BINDING_REQUEST, BINDING_SUCCESS, BINDING_ERROR, ATTR,
  encode, decode, isStun, checkIntegrity, checkFingerprint, address, parseAddress, request, errorCode, txid, crc32,
};
