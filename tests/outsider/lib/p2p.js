'use strict';
// A direct session's client side as §20 describes it: a device key
// (§20.1), the session socket, registration at the rendezvous (§20.3), the
// connectivity checks and the choice of a pair (§20.4), and the relay
// through the connection (§20.4). Everything it sends or expects comes from
// docs/protocol.md; the STUN details from RFC 8489 (lib/stun.js).

const crypto = require('node:crypto');
const stun = require('./stun');
const { QuicConn } = require('./quic');
const { root } = require('./schema');
const { CheckFailure } = require('./check');
const { sleep } = require('./context');

// device makes an Ed25519 key pair; id is the §20.1 device_id.
function device() {
  const { publicKey, privateKey } = crypto.generateKeyPairSync('ed25519');
  const raw = publicKey.export({ format: 'der', type: 'spki' }).subarray(-32);
  return { publicKey, privateKey, raw: Buffer.from(raw), id: deviceId(raw) };
}

function deviceId(raw) {
  return crypto.createHash('sha256').update(raw).digest().subarray(0, 8).toString('hex');
}

// safetyNumber is §20.1's 60 digits for two public keys.
function safetyNumber(k1, k2) {
  const [lo, hi] = Buffer.compare(k1, k2) <= 0 ? [k1, k2] : [k2, k1];
  const h = crypto.createHash('sha512').update(Buffer.concat([Buffer.from('parley safety number v1', 'ascii'), lo, hi])).digest();
  const groups = [];
  for (let i = 0; i < 12; i++) {
    const n = h.readUIntBE(i * 5, 5);
    groups.push(String(n % 100000).padStart(5, '0'));
  }
  return groups.join(' ');
}

const p2pEvent = (conn, kind, sessionId, pred = () => true, what = `P2PEvent ${kind}`, timeoutMs) =>
  conn.event('p2p_event', (e) => e.kind === `KIND_${kind}` && e.session.session_id === sessionId && pred(e.session), what, timeoutMs)
    .then((e) => e.session);

// register sends the §20.3 registration (USERNAME register_username, the
// address's NONCE once known, MESSAGE-INTEGRITY with register_key,
// FINGERPRINT) from udp to each of the session's STUN addresses every 200 ms
// until each is answered with success, and returns the answers {addr:
// message}. A 438 (Stale Nonce) answer whose MESSAGE-INTEGRITY checks gives
// the nonce: the registration is sent again at once with it. Nonces are
// kept on the socket per session and rendezvous address (§20.3 "keep it per
// rendezvous address"); the 438 answers seen are kept in udp.stale.
async function register(udp, sess, opts = {}) {
  const out = {};
  const addrs = [sess.stun_addr, sess.stun_alt_addr].filter(Boolean);
  await Promise.all(addrs.map(async (addr) => { out[addr] = await registerAt(udp, sess, addr, opts); }));
  return out;
}

// registerAt registers udp at one rendezvous address (see register).
async function registerAt(udp, sess, addr, { key = sess.register_key, timeoutMs = 5000 } = {}) {
  udp.nonces = udp.nonces || new Map();
  udp.stale = udp.stale || [];
  const slot = `${sess.session_id} ${addr}`;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const nonce = udp.nonces.get(slot);
    const r = stun.request({ username: sess.register_username, nonce, key });
    const left = deadline - Date.now();
    if (left <= 0) throw new CheckFailure(`no successful registration answer from ${addr} within ${timeoutMs} ms (nonce ${nonce || 'none'})`);
    const d = await udp.repeat(() => udp.send(r.bytes, addr), (x) => {
      const m = stun.decode(x.msg);
      return m && m.txid.equals(r.id);
    }, `an answer to the registration at ${addr}`, { everyMs: 200, timeoutMs: left });
    const m = Object.assign(stun.decode(d.msg), { from: d.from });
    if (m.type === stun.BINDING_ERROR && stun.errorCode(m) === 438 && m.has(stun.ATTR.NONCE) && stun.checkIntegrity(m, key)) {
      const got = m.get(stun.ATTR.NONCE).toString();
      udp.stale.push({ addr, nonce: got, sent: nonce, msg: m });
      if (nonce !== undefined && got === nonce) {
        throw new CheckFailure(`the registration at ${addr} with the NONCE the rendezvous gave was answered 438 again`);
      }
      udp.nonces.set(slot, got);
      continue;
    }
    return m;
  }
}

// Side is one device's direct session: its socket, answering the peer's
// checks (§20.4), checking the peer's candidates and choosing a pair.
class Side {
  constructor(udp, sess) {
    this.udp = udp;
    this.sess = sess;
    this.pair = null; // the peer address the session uses once direct
    this.working = new Set(); // peer addresses a check of ours was answered from
    this.nominatedBy = null; // controlled: where the last nomination came from
    this.checksSeen = []; // {from, useCandidate, username}
    this.badChecks = 0;
    this.app = []; // non-STUN datagrams from the peer (QUIC, §20.4 demultiplexing)
    this.onApp = null;
    this.pending = new Map(); // txid hex -> {addr, resolve}
    udp.handlers.push((msg, from) => this._datagram(msg, from));
  }

  get sid() {
    return this.sess.session_id;
  }

  update(sess) {
    this.sess = sess;
  }

  username() {
    return `${this.sess.session_id}:${this.sess.side}`;
  }

  _datagram(msg, from) {
    if (stun.isStun(msg)) {
      const m = stun.decode(msg);
      if (!m) return false;
      if (m.type === stun.BINDING_REQUEST && this.sess.check_key && this.sess.check_key.length && m.has(stun.ATTR.USERNAME) &&
          m.get(stun.ATTR.USERNAME).toString().startsWith(`${this.sid}:`)) {
        if (!stun.checkIntegrity(m, this.sess.check_key) || !stun.checkFingerprint(m)) {
          this.badChecks++;
          return true; // dropped silently
        }
        const useCandidate = m.has(stun.ATTR.USE_CANDIDATE);
        this.checksSeen.push({ from, useCandidate, username: m.get(stun.ATTR.USERNAME).toString() });
        const answer = stun.encode(stun.BINDING_SUCCESS, m.txid, [[stun.ATTR.XOR_MAPPED_ADDRESS, stun.address(from, m.txid, true)]],
          { integrityKey: this.sess.check_key });
        this.udp.send(answer, from);
        if (!this.sess.controlling && useCandidate) {
          this.nominatedBy = from;
          this.pair = from;
        }
        return true;
      }
      if (m.type === stun.BINDING_SUCCESS) {
        const p = this.pending.get(m.txid.toString('hex'));
        if (p) {
          if (from === p.addr && stun.checkIntegrity(m, this.sess.check_key)) {
            this.pending.delete(m.txid.toString('hex'));
            this.working.add(from);
            p.resolve({ from, mapped: stun.parseAddress(m.get(stun.ATTR.XOR_MAPPED_ADDRESS), m.txid, true) });
          }
          return true;
        }
      }
      return false; // rendezvous answers: left for the inbox
    }
    if (msg.length > 0 && msg[0] >= 64) {
      if (this.onApp) this.onApp(msg, from);
      else this.app.push({ msg: Buffer.from(msg), from });
      return true;
    }
    return true; // anything else is dropped (§20.4)
  }

  // check sends one connectivity check to addr; it resolves when a valid
  // answer comes from addr (the pair works).
  check(addr, { useCandidate = false } = {}) {
    const attrs = useCandidate ? [[stun.ATTR.USE_CANDIDATE, Buffer.alloc(0)]] : [];
    const r = stun.request({ username: this.username(), key: this.sess.check_key, attrs });
    return new Promise((resolve) => {
      this.pending.set(r.id.toString('hex'), { addr, resolve });
      this.udp.send(r.bytes, addr);
    });
  }

  // connect runs §20.4 from the introduction: after start_delay_ms, checks
  // to every peer candidate (every 20 ms for the first second, then every
  // 100 ms); the controlling side takes the first working pair (preferring
  // a host candidate for up to 50 ms) and nominates it with USE-CANDIDATE
  // until answered; the controlled side waits for a nomination. It
  // resolves with the pair's peer address.
  async connect({ timeoutMs = 15000 } = {}) {
    const sess = this.sess;
    const cands = sess.peer_candidates.map((c) => c.addr);
    if (cands.length === 0) throw new CheckFailure(`session ${this.sid} side ${sess.side}: the introduction has no peer candidates`);
    await sleep(sess.start_delay_ms || 0);
    const started = Date.now();
    let first = null;
    const answered = new Promise((resolve) => { first = resolve; });
    let stop = false;
    const host = new Set(sess.peer_candidates.filter((c) => c.kind === 'KIND_HOST').map((c) => c.addr));
    const found = [];
    (async () => {
      while (!stop && Date.now() - started < timeoutMs) {
        for (const addr of cands) {
          if (this.working.has(addr)) continue;
          this.check(addr).then((r) => { found.push(r.from); first(r.from); });
        }
        await sleep(Date.now() - started < 1000 ? 20 : 100);
      }
    })();
    try {
      if (sess.controlling) {
        const got = await Promise.race([answered, sleep(timeoutMs).then(() => null)]);
        if (!got) throw new CheckFailure(`side a: no connectivity check answered within ${timeoutMs} ms (candidates ${cands.join(', ')})`);
        if (!host.has(got)) await sleep(50);
        const chosen = found.find((x) => host.has(x)) || got;
        // Nominate: repeat the check with USE-CANDIDATE until answered.
        const deadline = Date.now() + timeoutMs;
        for (;;) {
          const r = await Promise.race([this.check(chosen, { useCandidate: true }), sleep(200).then(() => null)]);
          if (r) break;
          if (Date.now() > deadline) throw new CheckFailure(`side a: the nomination of ${chosen} was not answered`);
        }
        this.pair = chosen;
        return chosen;
      }
      const deadline = Date.now() + timeoutMs;
      while (!this.nominatedBy) {
        if (Date.now() > deadline) throw new CheckFailure(`side b: no nomination within ${timeoutMs} ms (checks seen: ${this.checksSeen.length})`);
        await sleep(20);
      }
      this.pair = this.nominatedBy;
      return this.pair;
    } finally {
      stop = true;
    }
  }
}

// channel starts §20.5's secure channel for a session: a QUIC connection
// (role 'client' on the controlling side) whose packets go to the direct
// pair once side has one, else through the relay (p2p_relay frames on conn);
// packets from either path are taken. It counts what came by each path.
function channel({ side, conn, sid, role, dev, peerKey, label, relayOnly = false }) {
  const paths = { direct: 0, relay: 0, sentDirect: 0, sentRelay: 0, relayed: [] };
  const q = new QuicConn({
    role, key: dev, peerKey, label,
    send: (b) => {
      if (!relayOnly && side && side.pair) {
        paths.sentDirect++;
        side.udp.send(b, side.pair);
      } else {
        paths.sentRelay++;
        if (paths.relayed.length < 1000) paths.relayed.push(Buffer.from(b));
        conn.send({ request_id: 0, p2p_relay: { session_id: sid, packet: b } });
      }
    },
  });
  q.paths = paths;
  if (side) {
    side.onApp = (msg) => { paths.direct++; q.receive(msg); };
    for (const d of side.app.splice(0)) side.onApp(d.msg, d.from);
  }
  q.untap = conn.tap((f) => f.body === 'p2p_relay' && f.p2p_relay.session_id === sid, (f) => { paths.relay++; q.receive(f.p2p_relay.packet); });
  return q;
}

// The control stream's frames (§20.6): a 4-byte big-endian length and a
// DirectFrame.
const DirectFrame = root.lookupType('parley.v1.DirectFrame');

function writeDirect(q, stream, obj, fin = false) {
  const body = Buffer.from(DirectFrame.encode(DirectFrame.fromObject(obj)).finish());
  const len = Buffer.alloc(4);
  len.writeUInt32BE(body.length);
  q.write(stream, Buffer.concat([len, body]), fin);
}

async function readDirect(q, stream, timeoutMs = 10000) {
  const n = (await q.read(stream, 4, timeoutMs)).readUInt32BE(0);
  if (n > 1 << 20) throw new CheckFailure(`a DirectFrame of ${n} bytes, above 1 MiB`);
  const b = await q.read(stream, n, timeoutMs);
  return DirectFrame.toObject(DirectFrame.decode(b), { longs: Number, enums: String, bytes: Buffer, defaults: true, oneofs: true });
}

// audioDatagram is §20.7's 12-byte header and the Opus frame.
function audioDatagram({ flags = 1, level = 20, seq, ts }, frame) {
  const h = Buffer.alloc(12);
  h[0] = 1;
  h[1] = flags;
  h[2] = level;
  h.writeUInt32BE(seq >>> 0, 4);
  h.writeUInt32BE(ts >>> 0, 8);
  return Buffer.concat([h, frame]);
}

module.exports = { device, deviceId, safetyNumber, p2pEvent, register, registerAt, Side, channel, writeDirect, readDirect, audioDatagram };
