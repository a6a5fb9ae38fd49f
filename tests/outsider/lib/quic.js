'use strict';
// A small QUIC version 1 endpoint (RFC 9000, RFC 9001, datagrams RFC 9221)
// with its TLS 1.3 handshake (RFC 8446), enough for §20.5's secure channel:
// TLS_AES_128_GCM_SHA256, X25519, Ed25519 certificates on both sides (the
// server asks for the client's), ALPN parley-p2p/1, bidirectional streams and
// datagrams, retransmission of what was not acknowledged. Node 20 has no
// QUIC, so it is written here from the RFCs with node:crypto; it carries its
// packets over whatever path it is given (the direct pair or the relay).

const crypto = require('node:crypto');

const VERSION = 1;
const ALPN = 'parley-p2p/1';
const SERVER_NAME = 'parley-p2p';
const INITIAL_SALT = Buffer.from('38762cf7f55934b34d179ae6a4c80cadccbb7f0a', 'hex');
const EMPTY = Buffer.alloc(0);
const X25519_SPKI = Buffer.from('302a300506032b656e032100', 'hex');
const ED25519_SPKI = Buffer.from('302a300506032b6570032100', 'hex');
const HRR_RANDOM = Buffer.from('cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c', 'hex');
const MAX_PACKET = 1350;

// ---- encoding ----

function varint(n) {
  if (n < 0x40) return Buffer.from([n]);
  if (n < 0x4000) { const b = Buffer.alloc(2); b.writeUInt16BE(n | 0x4000); return b; }
  if (n < 0x40000000) { const b = Buffer.alloc(4); b.writeUInt32BE((n | 0x80000000) >>> 0); return b; }
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(n) | (3n << 62n));
  return b;
}

const u8 = (n) => Buffer.from([n]);
const u16 = (n) => { const b = Buffer.alloc(2); b.writeUInt16BE(n); return b; };
const u24 = (n) => Buffer.from([(n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff]);
const vec8 = (b) => Buffer.concat([u8(b.length), b]);
const vec16 = (b) => Buffer.concat([u16(b.length), b]);
const vec24 = (b) => Buffer.concat([u24(b.length), b]);


// reassemble moves the received pieces (offset -> bytes) that continue the
// data read so far (up to readOffset, appended to buf) onto buf, in order,
// and drops pieces wholly before it: CRYPTO frames and STREAM frames alike
// may come out of order and overlap (RFC 9000 §2.2, §19.6). It returns the
// new buf and readOffset; pieces past a gap wait in the map.
function reassemble(pieces, buf, readOffset) {
  for (;;) {
    let progressed = false;
    for (const [o, d] of pieces) {
      if (o <= readOffset && o + d.length > readOffset) {
        buf = Buffer.concat([buf, d.subarray(readOffset - o)]);
        readOffset = o + d.length;
        pieces.delete(o);
        progressed = true;
      } else if (o + d.length <= readOffset) {
        pieces.delete(o);
      }
    }
    if (!progressed) return [buf, readOffset];
  }
}

class Reader {
  constructor(buf) { this.b = buf; this.o = 0; }
  left() { return this.b.length - this.o; }
  need(n) { if (this.o + n > this.b.length) throw new Error('truncated'); }
  u8() { this.need(1); return this.b[this.o++]; }
  u16() { this.need(2); const v = this.b.readUInt16BE(this.o); this.o += 2; return v; }
  u24() { this.need(3); const v = (this.b[this.o] << 16) | (this.b[this.o + 1] << 8) | this.b[this.o + 2]; this.o += 3; return v; }
  u32() { this.need(4); const v = this.b.readUInt32BE(this.o); this.o += 4; return v; }
  bytes(n) { this.need(n); const v = this.b.subarray(this.o, this.o + n); this.o += n; return v; }
  rest() { return this.bytes(this.left()); }
  v() {
    this.need(1);
    const len = 1 << (this.b[this.o] >> 6);
    this.need(len);
    let n = this.b[this.o] & 0x3f;
    for (let i = 1; i < len; i++) n = n * 256 + this.b[this.o + i];
    this.o += len;
    return n;
  }
}

// ---- key schedule (RFC 8446 §7, RFC 9001 §5) ----

const hmac = (key, data) => crypto.createHmac('sha256', key).update(data).digest();
const sha256 = (data) => crypto.createHash('sha256').update(data).digest();

function expand(prk, info, len) {
  const out = [];
  let t = EMPTY;
  let have = 0;
  for (let i = 1; have < len; i++) {
    t = hmac(prk, Buffer.concat([t, info, u8(i)]));
    out.push(t);
    have += t.length;
  }
  return Buffer.concat(out).subarray(0, len);
}

function expandLabel(secret, label, context, len) {
  const l = Buffer.from(`tls13 ${label}`, 'ascii');
  return expand(secret, Buffer.concat([u16(len), vec8(l), vec8(context)]), len);
}

function packetKeys(secret) {
  return {
    key: expandLabel(secret, 'quic key', EMPTY, 16),
    iv: expandLabel(secret, 'quic iv', EMPTY, 12),
    hp: expandLabel(secret, 'quic hp', EMPTY, 16),
  };
}

function initialKeys(dcid) {
  const s = hmac(INITIAL_SALT, dcid);
  return { client: packetKeys(expandLabel(s, 'client in', EMPTY, 32)), server: packetKeys(expandLabel(s, 'server in', EMPTY, 32)) };
}

function hpMask(hp, sample) {
  const c = crypto.createCipheriv('aes-128-ecb', hp, null);
  c.setAutoPadding(false);
  return c.update(sample);
}

function nonceFor(iv, pn) {
  const n = Buffer.from(iv);
  let p = BigInt(pn);
  for (let i = 11; i >= 4; i--) { n[i] ^= Number(p & 0xffn); p >>= 8n; }
  return n;
}

// protect seals a packet whose header (packet number included, 4 bytes at
// pnOffset) is header.
function protect(keys, header, pnOffset, pn, payload) {
  const c = crypto.createCipheriv('aes-128-gcm', keys.key, nonceFor(keys.iv, pn));
  c.setAAD(header);
  const pkt = Buffer.concat([header, c.update(payload), c.final(), c.getAuthTag()]);
  const mask = hpMask(keys.hp, pkt.subarray(pnOffset + 4, pnOffset + 20));
  pkt[0] ^= mask[0] & (pkt[0] & 0x80 ? 0x0f : 0x1f);
  for (let i = 0; i < 4; i++) pkt[pnOffset + i] ^= mask[1 + i];
  return pkt;
}

function decodePn(largest, truncated, bits) {
  const expected = largest + 1;
  const win = 2 ** bits;
  const hwin = win / 2;
  const candidate = expected - (expected % win) + truncated;
  if (candidate <= expected - hwin && candidate < 2 ** 62 - win) return candidate + win;
  if (candidate > expected + hwin && candidate >= win) return candidate - win;
  return candidate;
}

// unprotect opens one packet (pkt: its bytes, pnOffset where its packet
// number starts); null when it does not open.
function unprotect(keys, pkt, pnOffset, largest) {
  if (pkt.length < pnOffset + 20) return null;
  const mask = hpMask(keys.hp, pkt.subarray(pnOffset + 4, pnOffset + 20));
  const first = pkt[0] ^ (mask[0] & (pkt[0] & 0x80 ? 0x0f : 0x1f));
  const pnLen = (first & 3) + 1;
  const header = Buffer.from(pkt.subarray(0, pnOffset + pnLen));
  header[0] = first;
  let truncated = 0;
  for (let i = 0; i < pnLen; i++) {
    header[pnOffset + i] = pkt[pnOffset + i] ^ mask[1 + i];
    truncated = truncated * 256 + header[pnOffset + i];
  }
  const pn = decodePn(largest, truncated, pnLen * 8);
  try {
    const d = crypto.createDecipheriv('aes-128-gcm', keys.key, nonceFor(keys.iv, pn));
    d.setAAD(header);
    d.setAuthTag(pkt.subarray(pkt.length - 16));
    const payload = Buffer.concat([d.update(pkt.subarray(pnOffset + pnLen, pkt.length - 16)), d.final()]);
    return { pn, payload, first };
  } catch {
    return null;
  }
}

// ---- certificates ----

function der(tag, content) {
  const n = content.length;
  let len;
  if (n < 0x80) len = u8(n);
  else if (n < 0x100) len = Buffer.from([0x81, n]);
  else len = Buffer.from([0x82, n >> 8, n & 0xff]);
  return Buffer.concat([u8(tag), len, content]);
}

// selfSigned makes the §20.5 certificate: self-signed X.509 v3 whose key is
// the device's Ed25519 key.
function selfSigned(privateKey, publicKey) {
  const algId = der(0x30, der(0x06, Buffer.from([0x2b, 0x65, 0x70])));
  const name = der(0x30, der(0x31, der(0x30, Buffer.concat([der(0x06, Buffer.from([0x55, 0x04, 0x03])), der(0x0c, Buffer.from(SERVER_NAME))]))));
  const validity = der(0x30, Buffer.concat([der(0x17, Buffer.from('250101000000Z')), der(0x17, Buffer.from('491231235959Z'))]));
  const serial = crypto.randomBytes(8);
  serial[0] = (serial[0] & 0x7f) | 0x01;
  const spki = publicKey.export({ format: 'der', type: 'spki' });
  const tbs = der(0x30, Buffer.concat([der(0xa0, der(0x02, u8(2))), der(0x02, serial), algId, name, validity, name, spki]));
  const sig = crypto.sign(null, tbs, privateKey);
  return der(0x30, Buffer.concat([tbs, algId, der(0x03, Buffer.concat([u8(0), sig]))]));
}

function certKey(certDer) {
  const x = new crypto.X509Certificate(certDer);
  const k = x.publicKey;
  if (k.asymmetricKeyType !== 'ed25519') throw new Error(`certificate key is ${k.asymmetricKeyType}, not Ed25519`);
  return { keyObject: k, raw: Buffer.from(k.export({ format: 'der', type: 'spki' }).subarray(-32)) };
}

// ---- transport parameters ----

function encodeParams(p) {
  const out = [];
  const int = (id, v) => { const val = varint(v); out.push(varint(id), varint(val.length), val); };
  const bytes = (id, b) => { out.push(varint(id), varint(b.length), b); };
  if (p.odcid) bytes(0x00, p.odcid);
  int(0x01, 30000); // max_idle_timeout: 30 s (§20.5)
  int(0x03, 1452); // max_udp_payload_size (§20.5)
  int(0x04, 16 << 20);
  int(0x05, 4 << 20);
  int(0x06, 4 << 20);
  int(0x07, 4 << 20);
  int(0x08, 100);
  int(0x09, 100);
  int(0x0e, 4);
  bytes(0x0f, p.scid);
  int(0x20, 1452); // max_datagram_frame_size: datagrams on (RFC 9221)
  return Buffer.concat(out);
}

function decodeParams(b) {
  const r = new Reader(b);
  const p = {};
  while (r.left() > 0) {
    const id = r.v();
    const v = r.bytes(r.v());
    p[id] = v;
  }
  const int = (id) => (p[id] ? new Reader(p[id]).v() : undefined);
  return {
    raw: p, odcid: p[0x00], scid: p[0x0f], maxDatagram: int(0x20), maxData: int(0x04) || 0,
    bidiLocal: int(0x05) || 0, bidiRemote: int(0x06) || 0, maxBidi: int(0x08) || 0, idle: int(0x01),
  };
}

// ---- TLS messages ----

const hs = (type, body) => Buffer.concat([u8(type), vec24(body)]);
const ext = (type, body) => Buffer.concat([u16(type), vec16(body)]);

function parseExtensions(r) {
  const out = {};
  const er = new Reader(r.bytes(r.u16()));
  while (er.left() > 0) {
    const t = er.u16();
    out[t] = er.bytes(er.u16());
  }
  return out;
}

function alpnExt(proto) {
  return ext(0x10, vec16(vec8(Buffer.from(proto))));
}

function parseAlpn(b) {
  const r = new Reader(b);
  const list = new Reader(r.bytes(r.u16()));
  const out = [];
  while (list.left() > 0) out.push(list.bytes(list.u8()).toString());
  return out;
}

function x25519() {
  const { publicKey, privateKey } = crypto.generateKeyPairSync('x25519');
  return { privateKey, raw: Buffer.from(publicKey.export({ format: 'der', type: 'spki' }).subarray(-32)) };
}

function sharedSecret(kp, peerRaw) {
  const pub = crypto.createPublicKey({ key: Buffer.concat([X25519_SPKI, peerRaw]), format: 'der', type: 'spki' });
  return crypto.diffieHellman({ privateKey: kp.privateKey, publicKey: pub });
}

function verifyContent(server, transcriptHash) {
  return Buffer.concat([Buffer.alloc(64, 0x20), Buffer.from(`TLS 1.3, ${server ? 'server' : 'client'} CertificateVerify`), u8(0), transcriptHash]);
}

class QuicError extends Error {}

// ---- the connection ----

const SPACES = ['initial', 'handshake', 'app'];

class Space {
  constructor(name) {
    this.name = name;
    this.send = null; // packet keys
    this.recv = null;
    this.nextPn = 0;
    this.largest = -1;
    this.received = []; // packet numbers, newest last (bounded)
    this.ackNeeded = false;
    this.cryptoOut = []; // {offset, data} not yet sent
    this.cryptoOffset = 0;
    this.cryptoIn = new Map(); // offset -> data
    this.cryptoRead = 0;
    this.cryptoBuf = EMPTY;
    this.sent = new Map(); // pn -> {at, frames, tries}
    this.dropped = false;
  }
}

class QuicConn {
  // role 'client' or 'server'; send(datagram) carries packets; key: the
  // device's {privateKey, publicKey}; peerKey: the 32-byte Ed25519 key the
  // peer's certificate must carry (§20.5).
  constructor({ role, send, key, peerKey, label = role }) {
    this.role = role;
    this.label = label;
    this.out = send;
    this.key = key;
    this.peerKey = peerKey;
    this.cert = selfSigned(key.privateKey, key.publicKey);
    this.spaces = { initial: new Space('initial'), handshake: new Space('handshake'), app: new Space('app') };
    this.scid = crypto.randomBytes(8);
    this.dcid = null;
    this.transcript = [];
    this.streams = new Map(); // id -> {recv: Map, readOffset, buf, fin, waiters, sendOffset}
    this.streamWaiters = [];
    this.datagrams = [];
    this.datagramWaiters = [];
    this.pendingStream = []; // {id, offset, data, fin}
    this.pendingOther = []; // frames for the app space: Buffers
    this.nextBidi = role === 'client' ? 0 : 1;
    this.closed = null; // {code, reason, remote}
    this.confirmed = false;
    this.peerParams = null;
    this.stats = { sent: 0, received: 0, undecryptable: 0 };
    this.ready = new Promise((resolve, reject) => { this._ready = resolve; this._fail = reject; });
    this.ready.catch(() => {});
    this.timer = setInterval(() => this._tick(), 50);
    this.timer.unref();
  }

  // ---- client start ----
  start() {
    if (this.role !== 'client') throw new Error('start is for the client');
    this.dcid = crypto.randomBytes(8);
    this.odcid = this.dcid;
    this._setInitial(this.dcid);
    this.kx = x25519();
    const random = crypto.randomBytes(32);
    const exts = Buffer.concat([
      ext(0x0000, vec16(Buffer.concat([u8(0), vec16(Buffer.from(SERVER_NAME))]))),
      ext(0x000a, vec16(u16(0x001d))),
      ext(0x000d, vec16(u16(0x0807))),
      alpnExt(ALPN),
      ext(0x002b, vec8(u16(0x0304))),
      ext(0x0033, vec16(Buffer.concat([u16(0x001d), vec16(this.kx.raw)]))),
      ext(0x0039, encodeParams({ scid: this.scid })),
    ]);
    const body = Buffer.concat([u16(0x0303), random, vec8(EMPTY), vec16(u16(0x1301)), vec8(u8(0)), vec16(exts)]);
    this._handshakeOut('initial', hs(1, body));
    this._flush();
    return this.ready;
  }

  _setInitial(dcid) {
    const k = initialKeys(dcid);
    const sp = this.spaces.initial;
    sp.send = this.role === 'client' ? k.client : k.server;
    sp.recv = this.role === 'client' ? k.server : k.client;
  }

  _handshakeOut(space, msg) {
    this.transcript.push(msg);
    const sp = this.spaces[space];
    sp.cryptoOut.push({ offset: sp.cryptoOffset, data: msg });
    sp.cryptoOffset += msg.length;
  }

  _th() {
    return sha256(Buffer.concat(this.transcript));
  }

  // ---- receiving ----
  receive(datagram) {
    if (this.closed && this.closed.remote) return;
    let b = Buffer.from(datagram);
    try {
      while (b.length > 0) {
        if (b[0] & 0x80) {
          const r = new Reader(b);
          const first = r.u8();
          const version = r.u32();
          if (version !== VERSION) return;
          const dcid = r.bytes(r.u8());
          const scid = r.bytes(r.u8());
          const type = (first >> 4) & 3;
          if (type === 0) r.bytes(r.v()); // token
          if (type !== 0 && type !== 2) return; // 0-RTT, Retry: not spoken here
          const len = r.v();
          const pnOffset = r.o;
          const end = pnOffset + len;
          if (end > b.length) return;
          const pkt = b.subarray(0, end);
          b = b.subarray(end);
          const space = type === 0 ? 'initial' : 'handshake';
          if (this.role === 'server' && type === 0 && !this.dcid) {
            this.odcid = Buffer.from(dcid);
            this.dcid = Buffer.from(scid);
            this._setInitial(this.odcid);
          }
          if (this.role === 'client' && type === 0 && !this.serverCidSet) {
            this.serverCidSet = true;
            this.dcid = Buffer.from(scid);
          }
          this._packet(space, pkt, pnOffset);
        } else {
          if (b.length < 1 + this.scid.length) return;
          this._packet('app', b, 1 + this.scid.length);
          b = EMPTY;
        }
      }
    } catch (err) {
      this._error(err);
    }
    this._flush();
  }

  _packet(space, pkt, pnOffset) {
    const sp = this.spaces[space];
    if (!sp.recv || sp.dropped) return;
    const o = unprotect(sp.recv, pkt, pnOffset, sp.largest);
    if (!o) { this.stats.undecryptable++; return; }
    this.stats.received++;
    if (sp.received.includes(o.pn)) return;
    sp.received.push(o.pn);
    if (sp.received.length > 256) sp.received.shift();
    if (o.pn > sp.largest) sp.largest = o.pn;
    if (this.role === 'server' && space === 'handshake') this._dropSpace('initial');
    this._frames(space, o.payload);
  }

  _frames(space, payload) {
    const sp = this.spaces[space];
    const r = new Reader(payload);
    while (r.left() > 0) {
      const type = r.v();
      if (type !== 0x00 && type !== 0x02 && type !== 0x03 && type !== 0x1c && type !== 0x1d) sp.ackNeeded = true;
      if (type === 0x00) continue;
      if (type === 0x01) continue;
      if (type === 0x02 || type === 0x03) {
        const largest = r.v();
        r.v(); // delay
        const count = r.v();
        let hi = largest;
        let lo = largest - r.v();
        this._acked(sp, lo, hi);
        for (let i = 0; i < count; i++) {
          const gap = r.v();
          hi = lo - gap - 2;
          lo = hi - r.v();
          this._acked(sp, lo, hi);
        }
        if (type === 0x03) { r.v(); r.v(); r.v(); }
        continue;
      }
      if (type === 0x04) { r.v(); r.v(); r.v(); continue; }
      if (type === 0x05) { r.v(); r.v(); continue; }
      if (type === 0x06) {
        const off = r.v();
        const data = r.bytes(r.v());
        this._crypto(space, off, data);
        continue;
      }
      if (type === 0x07) { r.bytes(r.v()); continue; }
      if (type >= 0x08 && type <= 0x0f) {
        const id = r.v();
        const off = type & 0x04 ? r.v() : 0;
        const data = type & 0x02 ? r.bytes(r.v()) : r.rest();
        this._streamData(id, off, data, !!(type & 0x01));
        continue;
      }
      if (type === 0x10 || type === 0x12 || type === 0x13 || type === 0x14 || type === 0x16 || type === 0x17) { r.v(); continue; }
      if (type === 0x11 || type === 0x15) { r.v(); r.v(); continue; }
      if (type === 0x18) { r.v(); r.v(); r.bytes(r.u8()); r.bytes(16); continue; }
      if (type === 0x19) { r.v(); continue; }
      if (type === 0x1a) { this.pendingOther.push(Buffer.concat([u8(0x1b), r.bytes(8)])); continue; }
      if (type === 0x1b) { r.bytes(8); continue; }
      if (type === 0x1c || type === 0x1d) {
        const code = r.v();
        if (type === 0x1c) r.v();
        const reason = r.bytes(r.v()).toString();
        this._closedBy({ code, reason, remote: true, transport: type === 0x1c });
        return;
      }
      if (type === 0x1e) {
        if (this.role === 'client') this._confirm();
        continue;
      }
      if (type === 0x30 || type === 0x31) {
        const data = type === 0x31 ? r.bytes(r.v()) : r.rest();
        this._datagram(Buffer.from(data));
        continue;
      }
      throw new QuicError(`unknown frame type 0x${type.toString(16)}`);
    }
  }

  _acked(sp, lo, hi) {
    for (const pn of [...sp.sent.keys()]) if (pn >= lo && pn <= hi) sp.sent.delete(pn);
  }

  _crypto(space, off, data) {
    const sp = this.spaces[space];
    if (off + data.length <= sp.cryptoRead) return;
    sp.cryptoIn.set(off, Buffer.from(data));
    [sp.cryptoBuf, sp.cryptoRead] = reassemble(sp.cryptoIn, sp.cryptoBuf, sp.cryptoRead);
    while (sp.cryptoBuf.length >= 4) {
      const n = (sp.cryptoBuf[1] << 16) | (sp.cryptoBuf[2] << 8) | sp.cryptoBuf[3];
      if (sp.cryptoBuf.length < 4 + n) break;
      const msg = sp.cryptoBuf.subarray(0, 4 + n);
      sp.cryptoBuf = sp.cryptoBuf.subarray(4 + n);
      this._tls(space, Buffer.from(msg));
    }
  }

  // ---- the TLS state machine ----
  _tls(space, msg) {
    const type = msg[0];
    const r = new Reader(msg.subarray(4));
    if (this.role === 'server') return this._tlsServer(space, type, r, msg);
    return this._tlsClient(space, type, r, msg);
  }

  _handshakeKeys(shared) {
    const zero = Buffer.alloc(32);
    const early = hmac(zero, zero);
    const derived = expandLabel(early, 'derived', sha256(EMPTY), 32);
    this.hsSecret = hmac(derived, shared);
    const th = this._th();
    this.cHs = expandLabel(this.hsSecret, 'c hs traffic', th, 32);
    this.sHs = expandLabel(this.hsSecret, 's hs traffic', th, 32);
    const sp = this.spaces.handshake;
    sp.send = packetKeys(this.role === 'client' ? this.cHs : this.sHs);
    sp.recv = packetKeys(this.role === 'client' ? this.sHs : this.cHs);
  }

  _appKeys() {
    const d2 = expandLabel(this.hsSecret, 'derived', sha256(EMPTY), 32);
    const master = hmac(d2, Buffer.alloc(32));
    const th = this._th();
    const cAp = expandLabel(master, 'c ap traffic', th, 32);
    const sAp = expandLabel(master, 's ap traffic', th, 32);
    const sp = this.spaces.app;
    sp.send = packetKeys(this.role === 'client' ? cAp : sAp);
    sp.recv = packetKeys(this.role === 'client' ? sAp : cAp);
  }

  _finished(baseKey) {
    return hmac(expandLabel(baseKey, 'finished', EMPTY, 32), this._th());
  }

  _peerCertificate(r) {
    r.bytes(r.u8()); // context
    const list = new Reader(r.bytes(r.u24()));
    if (list.left() === 0) throw new QuicError('the peer sent no certificate');
    const cert = list.bytes(list.u24());
    const k = certKey(cert);
    if (!k.raw.equals(this.peerKey)) throw new QuicError(`the peer's certificate key ${k.raw.toString('hex')} is not its device key ${this.peerKey.toString('hex')}`);
    this.peerCertKey = k.keyObject;
  }

  _peerVerify(r, server) {
    const alg = r.u16();
    const sig = r.bytes(r.u16());
    if (alg !== 0x0807) throw new QuicError(`CertificateVerify with algorithm 0x${alg.toString(16)}, not Ed25519`);
    if (!crypto.verify(null, verifyContent(server, this._th()), this.peerCertKey, sig)) throw new QuicError('CertificateVerify does not verify');
  }

  _ownCertificate(space, context) {
    this._handshakeOut(space, hs(11, Buffer.concat([vec8(context), vec24(Buffer.concat([vec24(this.cert), u16(0)]))])));
    const sig = crypto.sign(null, verifyContent(this.role === 'server', this._th()), this.key.privateKey);
    this._handshakeOut(space, hs(15, Buffer.concat([u16(0x0807), vec16(sig)])));
  }

  _tlsClient(space, type, r, msg) {
    if (type === 2 && space === 'initial') {
      r.u16();
      const random = r.bytes(32);
      if (random.equals(HRR_RANDOM)) throw new QuicError('HelloRetryRequest (only X25519 is offered)');
      r.bytes(r.u8());
      const suite = r.u16();
      if (suite !== 0x1301) throw new QuicError(`cipher suite 0x${suite.toString(16)}`);
      r.u8();
      const exts = parseExtensions(r);
      const ks = exts[0x33];
      if (!ks) throw new QuicError('ServerHello without key_share');
      const kr = new Reader(ks);
      if (kr.u16() !== 0x001d) throw new QuicError('ServerHello key_share not X25519');
      const peer = kr.bytes(kr.u16());
      this.transcript.push(msg);
      this._handshakeKeys(sharedSecret(this.kx, peer));
      return;
    }
    if (space !== 'handshake') throw new QuicError(`TLS message ${type} in the ${space} space`);
    if (type === 8) {
      const exts = parseExtensions(r);
      if (!exts[0x10] || parseAlpn(exts[0x10])[0] !== ALPN) throw new QuicError('no ALPN parley-p2p/1 in EncryptedExtensions');
      if (!exts[0x39]) throw new QuicError('no transport parameters');
      this.peerParams = decodeParams(exts[0x39]);
      if (!this.peerParams.odcid || !this.peerParams.odcid.equals(this.odcid)) throw new QuicError('original_destination_connection_id mismatch');
      this.transcript.push(msg);
      return;
    }
    if (type === 13) { this.certRequest = r.bytes(r.u8()); this.transcript.push(msg); return; }
    if (type === 11) { this._peerCertificate(r); this.transcript.push(msg); return; }
    if (type === 15) { this._peerVerify(r, true); this.transcript.push(msg); return; }
    if (type === 20) {
      const want = this._finished(this.sHs);
      if (!r.rest().equals(want)) throw new QuicError('server Finished does not verify');
      this.transcript.push(msg);
      this._appKeys();
      if (!this.peerCertKey) throw new QuicError('the server presented no certificate');
      if (this.certRequest === undefined) throw new QuicError('the server did not ask for the client\'s certificate (§20.5: it requires one)');
      this._ownCertificate('handshake', this.certRequest);
      this._handshakeOut('handshake', hs(20, this._finished(this.cHs)));
      this._dropSpace('initial');
      this._established();
      return;
    }
    throw new QuicError(`unexpected TLS message ${type}`);
  }

  _tlsServer(space, type, r, msg) {
    if (type === 1 && space === 'initial') {
      r.u16();
      r.bytes(32);
      const sessionId = r.bytes(r.u8());
      const suites = new Reader(r.bytes(r.u16()));
      let aes = false;
      while (suites.left() > 0) if (suites.u16() === 0x1301) aes = true;
      if (!aes) throw new QuicError('the client does not offer TLS_AES_128_GCM_SHA256');
      r.bytes(r.u8());
      const exts = parseExtensions(r);
      if (!exts[0x10] || !parseAlpn(exts[0x10]).includes(ALPN)) throw new QuicError('the client does not offer ALPN parley-p2p/1');
      if (!exts[0x39]) throw new QuicError('no transport parameters');
      this.peerParams = decodeParams(exts[0x39]);
      const kr = new Reader(exts[0x33]);
      const shares = new Reader(kr.bytes(kr.u16()));
      let peer = null;
      while (shares.left() > 0) {
        const g = shares.u16();
        const k = shares.bytes(shares.u16());
        if (g === 0x001d) peer = k;
      }
      if (!peer) throw new QuicError('no X25519 key share');
      this.transcript.push(msg);
      this.kx = x25519();
      const sh = Buffer.concat([u16(0x0303), crypto.randomBytes(32), vec8(sessionId), u16(0x1301), u8(0),
        vec16(Buffer.concat([ext(0x2b, u16(0x0304)), ext(0x33, Buffer.concat([u16(0x001d), vec16(this.kx.raw)]))]))]);
      this._handshakeOut('initial', hs(2, sh));
      this._handshakeKeys(sharedSecret(this.kx, peer));
      const ee = vec16(Buffer.concat([alpnExt(ALPN), ext(0x39, encodeParams({ odcid: this.odcid, scid: this.scid }))]));
      this._handshakeOut('handshake', hs(8, ee));
      this._handshakeOut('handshake', hs(13, Buffer.concat([vec8(EMPTY), vec16(ext(0x0d, vec16(u16(0x0807))))])));
      this._ownCertificate('handshake', EMPTY);
      this._handshakeOut('handshake', hs(20, this._finished(this.sHs)));
      this.clientFinishedTh = null;
      this._appKeys();
      return;
    }
    if (space !== 'handshake') throw new QuicError(`TLS message ${type} in the ${space} space`);
    if (type === 11) { this._peerCertificate(r); this.transcript.push(msg); return; }
    if (type === 15) { this._peerVerify(r, false); this.transcript.push(msg); return; }
    if (type === 20) {
      if (!this.peerCertKey) throw new QuicError('the client presented no certificate');
      const want = this._finished(this.cHs);
      if (!r.rest().equals(want)) throw new QuicError('client Finished does not verify');
      this.transcript.push(msg);
      this.pendingOther.push(u8(0x1e)); // HANDSHAKE_DONE
      this._established();
      this._confirm();
      return;
    }
    throw new QuicError(`unexpected TLS message ${type}`);
  }

  _established() {
    this.isEstablished = true;
    this._ready(this);
  }

  _confirm() {
    this.confirmed = true;
    this._dropSpace('initial');
    this._dropSpace('handshake');
  }

  _dropSpace(name) {
    const sp = this.spaces[name];
    if (sp.dropped) return;
    if (name === 'handshake' && sp.ackNeeded && sp.send) this._sendPacket('handshake', this._ackFrame(sp));
    sp.dropped = true;
    sp.sent.clear();
    sp.cryptoOut = [];
  }

  // ---- streams and datagrams ----
  _stream(id) {
    let s = this.streams.get(id);
    if (!s) {
      s = { id, recv: new Map(), readOffset: 0, buf: EMPTY, fin: false, finAt: -1, waiters: [], sendOffset: 0 };
      this.streams.set(id, s);
      if ((id & 1) !== (this.role === 'client' ? 0 : 1)) {
        for (const w of this.streamWaiters.splice(0)) w(s);
        if (!this.streamWaiters.length) (this.acceptQueue = this.acceptQueue || []).push(s);
      }
    }
    return s;
  }

  _streamData(id, off, data, fin) {
    const s = this._stream(id);
    if (fin) s.finAt = off + data.length;
    if (off + data.length > s.readOffset) s.recv.set(off, Buffer.from(data));
    [s.buf, s.readOffset] = reassemble(s.recv, s.buf, s.readOffset);
    if (s.finAt >= 0 && s.readOffset >= s.finAt) s.fin = true;
    for (const w of s.waiters.splice(0)) w();
  }

  _datagram(data) {
    const w = this.datagramWaiters.shift();
    if (w) w(data);
    else this.datagrams.push(data);
  }

  // openStream opens the next bidirectional stream of this side.
  openStream() {
    const id = this.nextBidi;
    this.nextBidi += 4;
    const s = this._stream(id);
    return s;
  }

  // acceptStream resolves with the next stream the peer opened.
  acceptStream(timeoutMs = 10000) {
    if (this.acceptQueue && this.acceptQueue.length) return Promise.resolve(this.acceptQueue.shift());
    return withTimeout(new Promise((resolve) => this.streamWaiters.push((s) => { this.acceptQueue && this.acceptQueue.splice(this.acceptQueue.indexOf(s), 1); resolve(s); })),
      timeoutMs, `${this.label}: no stream opened by the peer`);
  }

  write(s, data, fin = false) {
    for (let i = 0; i < data.length || (fin && i === 0 && data.length === 0); i += 1000) {
      const chunk = data.subarray(i, i + 1000);
      const last = i + 1000 >= data.length;
      this.pendingStream.push({ id: s.id, offset: s.sendOffset, data: chunk, fin: fin && last });
      s.sendOffset += chunk.length;
      if (data.length === 0) break;
    }
    this._flush();
  }

  // read resolves with exactly n bytes of stream s.
  async read(s, n, timeoutMs = 10000) {
    const deadline = Date.now() + timeoutMs;
    while (s.buf.length < n) {
      if (s.fin) throw new QuicError(`${this.label}: stream ${s.id} ended after ${s.buf.length} bytes, ${n} wanted`);
      if (this.closed) throw new QuicError(`${this.label}: connection closed (${JSON.stringify(this.closed)})`);
      const left = deadline - Date.now();
      if (left <= 0) throw new QuicError(`${this.label}: ${n} bytes not read from stream ${s.id} within ${timeoutMs} ms`);
      await withTimeout(new Promise((resolve) => s.waiters.push(resolve)), left, '').catch(() => {});
    }
    const out = s.buf.subarray(0, n);
    s.buf = s.buf.subarray(n);
    return Buffer.from(out);
  }

  sendDatagram(data) {
    this.pendingOther.push(Buffer.concat([u8(0x31), varint(data.length), data]));
    this._flush();
  }

  nextDatagram(timeoutMs = 10000) {
    if (this.datagrams.length) return Promise.resolve(this.datagrams.shift());
    return withTimeout(new Promise((resolve) => this.datagramWaiters.push(resolve)), timeoutMs, `${this.label}: no datagram`);
  }

  close(code = 0, reason = '') {
    if (this.closed) return;
    const r = Buffer.from(reason);
    if (this.spaces.app.send) this._sendPacket('app', Buffer.concat([u8(0x1d), varint(code), varint(r.length), r]));
    this._closedBy({ code, reason, remote: false });
  }

  _closedBy(c) {
    if (this.closed) return;
    this.closed = c;
    clearInterval(this.timer);
    if (!this.isEstablished) this._fail(new QuicError(`${this.label}: connection closed during the handshake: ${JSON.stringify(c)}`));
  }

  _error(err) {
    if (this.closed) return;
    this.lastError = err;
    // A TLS failure: CONNECTION_CLOSE with a crypto error (0x100 + alert 40).
    for (const name of ['app', 'handshake', 'initial']) {
      const sp = this.spaces[name];
      if (sp.send && !sp.dropped) {
        const reason = Buffer.from(String(err.message).slice(0, 100));
        this._sendPacket(name, Buffer.concat([u8(0x1c), varint(0x128), varint(0), varint(reason.length), reason]));
        break;
      }
    }
    this._closedBy({ code: 0x128, reason: err.message, remote: false });
    this._fail(err);
  }

  // ---- sending ----
  _ackFrame(sp) {
    const pns = [...new Set(sp.received)].sort((x, y) => y - x);
    const ranges = [];
    for (const pn of pns) {
      const last = ranges[ranges.length - 1];
      if (last && last.lo === pn + 1) last.lo = pn;
      else ranges.push({ hi: pn, lo: pn });
    }
    const parts = [u8(0x02), varint(ranges[0].hi), varint(0), varint(ranges.length - 1), varint(ranges[0].hi - ranges[0].lo)];
    for (let i = 1; i < ranges.length; i++) {
      parts.push(varint(ranges[i - 1].lo - ranges[i].hi - 2), varint(ranges[i].hi - ranges[i].lo));
    }
    sp.ackNeeded = false;
    return Buffer.concat(parts);
  }

  _sendPacket(space, payload, record = null) {
    const sp = this.spaces[space];
    const pn = sp.nextPn++;
    let header;
    let pnOffset;
    if (space === 'app') {
      header = Buffer.concat([u8(0x40 | 0x03), this.dcid, u32(pn)]);
      pnOffset = 1 + this.dcid.length;
      if (payload.length < 4) payload = Buffer.concat([payload, Buffer.alloc(4 - payload.length)]);
    } else {
      const type = space === 'initial' ? 0 : 2;
      let body = payload;
      const pre = Buffer.concat([u8(0xc0 | (type << 4) | 0x03), u32(VERSION), vec8(this.dcid), vec8(this.scid), type === 0 ? varint(0) : EMPTY]);
      if (space === 'initial' && (this.role === 'client' || record)) {
        const want = 1200 - pre.length - 2 - 4 - 16;
        if (body.length < want) body = Buffer.concat([body, Buffer.alloc(want - body.length)]);
      }
      payload = body;
      const len = 4 + payload.length + 16;
      header = Buffer.concat([pre, u16(0x4000 | len), u32(pn)]);
      pnOffset = pre.length + 2;
    }
    const pkt = protect(sp.send, header, pnOffset, pn, payload);
    if (record) sp.sent.set(pn, { at: Date.now(), frames: record, tries: 0 });
    this.stats.sent++;
    try { this.out(pkt); } catch { /* path gone */ }
  }

  _flush() {
    if (this.closed) return;
    for (const name of SPACES) {
      const sp = this.spaces[name];
      if (!sp.send || sp.dropped) continue;
      for (;;) {
        const frames = [];
        const record = [];
        let size = 0;
        if (sp.ackNeeded && sp.received.length) { const a = this._ackFrame(sp); frames.push(a); size += a.length; }
        while (sp.cryptoOut.length && size < MAX_PACKET - 100) {
          const c = sp.cryptoOut[0];
          const room = MAX_PACKET - 100 - size;
          const part = c.data.subarray(0, room);
          frames.push(Buffer.concat([u8(0x06), varint(c.offset), varint(part.length), part]));
          record.push({ kind: 'crypto', offset: c.offset, data: part });
          size += part.length + 10;
          if (part.length === c.data.length) sp.cryptoOut.shift();
          else sp.cryptoOut[0] = { offset: c.offset + part.length, data: c.data.subarray(part.length) };
        }
        if (name === 'app' && this.isEstablished) {
          while (this.pendingOther.length && size < MAX_PACKET - 100) {
            const f = this.pendingOther.shift();
            frames.push(f);
            size += f.length;
            if (f[0] === 0x1e) record.push({ kind: 'raw', frame: f });
          }
          while (this.pendingStream.length && size < MAX_PACKET - 1100) {
            const s = this.pendingStream.shift();
            const type = 0x08 | 0x04 | 0x02 | (s.fin ? 1 : 0);
            frames.push(Buffer.concat([u8(type), varint(s.id), varint(s.offset), varint(s.data.length), s.data]));
            record.push({ kind: 'stream', ...s });
            size += s.data.length + 20;
          }
        }
        if (!frames.length) break;
        this._sendPacket(name, Buffer.concat(frames), record.length ? record : null);
      }
    }
  }

  _tick() {
    if (this.closed) return;
    const now = Date.now();
    let again = false;
    for (const name of SPACES) {
      const sp = this.spaces[name];
      if (sp.dropped) continue;
      for (const [pn, rec] of [...sp.sent]) {
        if (now - rec.at < Math.min(2000, 300 * 2 ** rec.tries)) continue;
        sp.sent.delete(pn);
        again = true;
        for (const f of rec.frames) {
          if (f.kind === 'crypto') sp.cryptoOut.unshift({ offset: f.offset, data: f.data });
          else if (f.kind === 'stream') this.pendingStream.unshift({ id: f.id, offset: f.offset, data: f.data, fin: f.fin });
          else if (f.kind === 'raw') this.pendingOther.unshift(f.frame);
        }
      }
    }
    if (again) this._flush();
  }
}

function u32(n) { const b = Buffer.alloc(4); b.writeUInt32BE(n >>> 0); return b; }

function withTimeout(p, ms, what) {
  let timer;
  return Promise.race([p.finally(() => clearTimeout(timer)), new Promise((_, reject) => { timer = setTimeout(() => reject(new QuicError(what)), ms); })]);
}

module.exports = { QuicConn, QuicError, initialKeys, packetKeys, expandLabel, selfSigned, certKey, ALPN, SERVER_NAME, ED25519_SPKI };
