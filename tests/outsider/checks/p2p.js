'use strict';
// Direct sessions (§20): device keys, opening and answering, the events, the
// rendezvous (a STUN server, RFC 8489/5780) and registration, the
// introduction, connectivity checks between two outsider devices on the
// loopback, the relay through the connection, and the secure channel (QUIC
// with the devices' Ed25519 keys) over the direct pair and over the relay.

const crypto = require('node:crypto');
const { check, eq, ok } = require('../lib/check');
const { sleep } = require('../lib/context');
const stun = require('../lib/stun');
const { device, deviceId, p2pEvent, register, registerAt, Side, channel, writeDirect, readDirect, audioDatagram } = require('../lib/p2p');
const media = require('../lib/media');
const { answered, onUdp } = require('./calls');

const HOST = 'KIND_HOST';
const EI = 'NAT_MAPPING_ENDPOINT_INDEPENDENT';
const ADDR = /^(\d{1,3}(\.\d{1,3}){3}|\[[0-9a-fA-F:.]+\]):\d{1,5}$/;

async function registerDevice(conn, dev, name = 'outsider') {
  return conn.call('register_device', { public_key: dev.raw, name }, 'device_keys_reply');
}

// opened makes two users with a registered device each, a session socket
// each, and a session a offered to b; b accepts unless told not to. host
// candidates default to the sockets' own addresses.
async function opened(t, { accept = true, hostA, hostB, rttA = 10, rttB = 30, tag = 'p' } = {}) {
  const a = await t.user(`${tag}a`);
  const b = await t.user(`${tag}b`);
  a.dev = device();
  b.dev = device();
  await registerDevice(a.conn, a.dev, 'a laptop');
  await registerDevice(b.conn, b.dev, 'b phone');
  a.udp = await t.udp('a session socket');
  b.udp = await t.udp('b session socket');
  const candA = [{ kind: HOST, addr: hostA ? `${hostA}:${a.udp.port}` : a.udp.addr }];
  const candB = [{ kind: HOST, addr: hostB ? `${hostB}:${b.udp.port}` : b.udp.addr }];
  a.sess = await a.conn.call('p2p_open', { to_username: b.name, device_id: a.dev.id, candidates: candA, rtt_ms: rttA }, 'p2p_session');
  const sid = a.sess.session_id;
  b.offer = await p2pEvent(b.conn, 'OFFER', sid);
  if (accept) {
    b.sess = await b.conn.call('p2p_answer', { session_id: sid, accept: true, device_id: b.dev.id, candidates: candB, rtt_ms: rttB }, 'p2p_session');
    a.sess = await p2pEvent(a.conn, 'ACCEPTED', sid);
  }
  return { a, b, sid, candA, candB };
}

// introduced registers both session sockets (§20.3) and returns each side's
// first introduction in which both mappings are known.
async function introduced(a, b) {
  const sid = a.sess.session_id;
  await register(a.udp, a.sess);
  await register(b.udp, b.sess);
  const known = (s) => s.mapping !== 'NAT_MAPPING_UNKNOWN' && s.peer_mapping !== 'NAT_MAPPING_UNKNOWN';
  a.intro = await p2pEvent(a.conn, 'INTRO', sid, known, 'P2PEvent INTRO with both mappings known');
  b.intro = await p2pEvent(b.conn, 'INTRO', sid, known, 'P2PEvent INTRO with both mappings known');
  return [a.intro, b.intro];
}

const cands = (s) => s.peer_candidates.map((c) => [c.kind, c.addr]).sort();

// ---- device keys ----

check('20.1', 'register_device: DeviceKeysReply with device_id = hex of SHA-256\'s first 8 bytes; registering again renames; device_keys by username or user_id (exactly one, else INVALID_ARGUMENT), NOT_FOUND for no user', async (t) => {
  const a = await t.user('dka');
  const b = await t.user('dkb');
  const d = device();
  const r = await registerDevice(a.conn, d, 'laptop');
  eq([r.user_id, r.username], [a.id, a.name], 'user_id and username of DeviceKeysReply');
  eq(r.devices.map((x) => [x.device_id, x.public_key.toString('hex'), x.name]), [[deviceId(d.raw), d.raw.toString('hex'), 'laptop']], 'devices after one registration');
  eq(d.id.length, 16, 'length of a device id');
  ok(r.devices[0].registered_at_unix_ms > 0, 'registered_at_unix_ms is 0');
  const again = await registerDevice(a.conn, d, 'desk');
  eq(again.devices.map((x) => [x.device_id, x.name]), [[d.id, 'desk']], 'devices after registering the same key with another name');
  const d2 = device();
  await registerDevice(a.conn, d2, 'phone');
  for (const body of [{ username: a.name }, { user_id: a.id }]) {
    const l = await b.conn.call('device_keys', body, 'device_keys_reply');
    eq([l.user_id, l.username, l.devices.map((x) => x.device_id).sort()], [a.id, a.name, [d.id, d2.id].sort()], `another user's device_keys ${JSON.stringify(body)}`);
  }
  await b.conn.refused('device_keys', { username: a.name, user_id: a.id }, 'INVALID_ARGUMENT');
  await b.conn.refused('device_keys', {}, 'INVALID_ARGUMENT');
  await b.conn.refused('device_keys', { username: t.name('ghost') }, 'NOT_FOUND');
  await a.conn.refused('register_device', { public_key: crypto.randomBytes(31), name: 'short' }, 'INVALID_ARGUMENT');
  await a.conn.refused('register_device', { public_key: crypto.randomBytes(33), name: 'long' }, 'INVALID_ARGUMENT');
  // The schema: a name is 0-64 printable characters.
  await a.conn.refused('register_device', { public_key: device().raw, name: 'x'.repeat(65) }, 'INVALID_ARGUMENT');
  await a.conn.refused('register_device', { public_key: device().raw, name: 'a\u0007b' }, 'INVALID_ARGUMENT');
  const named = await registerDevice(a.conn, device(), 'я'.repeat(64));
  ok(named.devices.some((x) => x.name === 'я'.repeat(64)), 'a device named with 64 characters is missing');
});

check('20.1', 'an account keeps its 16 most recently registered device keys (newest first); registering a key again only renames it', async (t) => {
  const a = await t.user('dkm');
  const devs = [];
  for (let i = 0; i < 17; i++) {
    devs.push(device());
    await registerDevice(a.conn, devs[i], `device ${i}`);
    await sleep(5);
  }
  const l = await a.conn.call('device_keys', { user_id: a.id }, 'device_keys_reply');
  eq(l.devices.map((x) => x.device_id), devs.slice(1).reverse().map((x) => x.id), 'devices kept after 17 registrations (all but the first, newest first)');
  // Renaming the oldest kept key does not make it recent: the next new key
  // pushes it out.
  await registerDevice(a.conn, devs[1], 'renamed');
  await sleep(5);
  const last = device();
  const r = await registerDevice(a.conn, last, 'device 17');
  eq(r.devices.map((x) => x.device_id), [last, ...devs.slice(2).reverse()].map((x) => x.id), 'devices after renaming the oldest and registering one more');
});

// ---- opening, answering, closing ----

check('20.2', 'p2p_open: P2PSession OFFERED (side a, controlling, rendezvous addresses, keys, expiry in 60 s); OFFER to every device of the peer; accept: ACCEPTED reply and events with the devices\' keys; another device\'s answer is CONFLICT', async (t) => {
  const a = await t.user('opa');
  const b = await t.user('opb');
  const b2 = await t.login(b, { label: 'peer second device' });
  a.dev = device();
  b.dev = device();
  await registerDevice(a.conn, a.dev);
  await registerDevice(b.conn, b.dev);
  const ua = await t.udp('a');
  const ub = await t.udp('b');
  const before = Date.now();
  const s = await a.conn.call('p2p_open', { to_username: b.name, device_id: a.dev.id, candidates: [{ kind: HOST, addr: ua.addr }], rtt_ms: 5 }, 'p2p_session');
  ok(s.session_id, 'P2PSession.session_id is empty');
  eq([s.state, s.side, s.controlling, s.peer_id, s.peer_name, s.peer_is_friend, s.device_id], ['STATE_OFFERED', 'a', true, b.id, b.name, false, a.dev.id],
    'state, side, controlling, peer_id, peer_name, peer_is_friend, device_id of the opener\'s session');
  eq(s.stun_addr, a.conn.welcome.stun_addr, 'P2PSession.stun_addr (Welcome.stun_addr, §5)');
  ok(ADDR.test(s.stun_addr) && ADDR.test(s.stun_alt_addr), `stun_addr "${s.stun_addr}" or stun_alt_addr "${s.stun_alt_addr}" is not ip:port`);
  eq([s.register_key.length, s.check_key.length], [32, 32], 'lengths of register_key and check_key');
  eq(s.register_username, `${s.session_id}:a`, 'register_username (today <session_id>:<side>)');
  const ttl = s.expires_at_unix_ms - before;
  const want = t.env.offerTtlMs; // 60 s unless the runner is told otherwise
  ok(ttl > want - 1000 && ttl < want + 1000 + (Date.now() - before), `expires_at_unix_ms is ${ttl} ms after the open, want ${want} ms`);
  for (const [conn, which] of [[b.conn, 'first'], [b2, 'second']]) {
    const o = await p2pEvent(conn, 'OFFER', s.session_id, () => true, `P2PEvent OFFER on the peer's ${which} device`);
    eq([o.state, o.side, o.controlling, o.peer_id, o.peer_name, o.device_id], ['STATE_OFFERED', 'b', false, a.id, a.name, ''],
      `state, side, controlling, peer_id, peer_name, device_id of the OFFER on the ${which} device`);
    eq(o.expires_at_unix_ms, s.expires_at_unix_ms, 'expires_at_unix_ms of the OFFER');
  }
  const sb = await b.conn.call('p2p_answer', { session_id: s.session_id, accept: true, device_id: b.dev.id, candidates: [{ kind: HOST, addr: ub.addr }], rtt_ms: 5 }, 'p2p_session');
  eq([sb.state, sb.side, sb.controlling, sb.device_id, sb.register_username], ['STATE_ACCEPTED', 'b', false, b.dev.id, `${s.session_id}:b`],
    'state, side, controlling, device_id, register_username of the answer');
  eq([sb.peer_device && sb.peer_device.device_id, sb.peer_device && sb.peer_device.public_key.toString('hex')], [a.dev.id, a.dev.raw.toString('hex')], 'the opener\'s device in the answer');
  ok(sb.check_key.equals(s.check_key), 'the two sides\' check_key differ (one key for both sides, §20.4)');
  ok(!sb.register_key.equals(s.register_key), 'the two sides have the same register_key');
  const acc = await p2pEvent(a.conn, 'ACCEPTED', s.session_id, () => true, 'P2PEvent ACCEPTED to the opener');
  eq([acc.state, acc.side, acc.device_id, acc.peer_device && acc.peer_device.public_key.toString('hex')], ['STATE_ACCEPTED', 'a', a.dev.id, b.dev.raw.toString('hex')],
    'state, side, device_id, peer device key in ACCEPTED to the opener');
  const other = await p2pEvent(b2, 'ACCEPTED', s.session_id, () => true, 'P2PEvent ACCEPTED on the peer\'s other device');
  eq(other.device_id, b.dev.id, 'device_id in ACCEPTED on the other device (the device that answered, not its own)');
  const b2dev = device();
  await registerDevice(b2, b2dev, 'b tablet');
  await b2.refused('p2p_answer', { session_id: s.session_id, accept: true, device_id: b2dev.id, candidates: [], rtt_ms: 5 }, 'CONFLICT');
  // Events for a session reach every connection of the user (§20.2).
  await register(ua, acc);
  await register(ub, sb);
  for (const [conn, who] of [[a.conn, 'the opener'], [b.conn, 'the peer\'s answering device'], [b2, 'the peer\'s other device']]) {
    const i = await p2pEvent(conn, 'INTRO', s.session_id, () => true, `P2PEvent INTRO on ${who}`);
    ok(i.peer_candidates.length > 0, `INTRO on ${who} without peer_candidates`);
  }
  await a.conn.call('p2p_close', { session_id: s.session_id }, 'ok');
  for (const [conn, who] of [[a.conn, 'the opener'], [b.conn, 'the peer\'s answering device'], [b2, 'the peer\'s other device']]) {
    await p2pEvent(conn, 'CLOSED', s.session_id, (x) => x.close_reason === 'CLOSE_REASON_CLOSED', `P2PEvent CLOSED on ${who}`);
  }
});

check('20.2', 'declining: the reply is CLOSED (REJECTED), the opener gets P2PEvent CLOSED REJECTED; answering again is NOT_FOUND; OFFER says peer_is_friend between friends', async (t) => {
  const a = await t.user('dca');
  const b = await t.user('dcb');
  await a.conn.call('add_friend', { username: b.name }, 'ok');
  await b.conn.call('answer_friend', { username: a.name, accept: true }, 'ok');
  a.dev = device();
  b.dev = device();
  await registerDevice(a.conn, a.dev);
  await registerDevice(b.conn, b.dev);
  const s = await a.conn.call('p2p_open', { to_username: b.name, device_id: a.dev.id, candidates: [], rtt_ms: 0 }, 'p2p_session');
  eq(s.peer_is_friend, true, 'peer_is_friend in the opener\'s session between friends');
  const o = await p2pEvent(b.conn, 'OFFER', s.session_id);
  eq(o.peer_is_friend, true, 'peer_is_friend in the OFFER between friends');
  const r = await b.conn.call('p2p_answer', { session_id: s.session_id, accept: false, device_id: b.dev.id }, 'p2p_session');
  eq([r.state, r.close_reason], ['STATE_CLOSED', 'CLOSE_REASON_REJECTED'], 'state and close_reason of the decline\'s reply');
  const c = await p2pEvent(a.conn, 'CLOSED', s.session_id, () => true, 'P2PEvent CLOSED to the opener');
  eq([c.state, c.close_reason], ['STATE_CLOSED', 'CLOSE_REASON_REJECTED'], 'state and close_reason in CLOSED');
  await b.conn.refused('p2p_answer', { session_id: s.session_id, accept: true, device_id: b.dev.id }, 'NOT_FOUND');
});

check('20.2', 'p2p_close ends the session for both sides (P2PEvent CLOSED, CLOSED); answering or updating it after is NOT_FOUND', async (t) => {
  const { a, b, sid } = await opened(t, { tag: 'cl' });
  await b.conn.call('p2p_close', { session_id: sid }, 'ok');
  for (const [u, who] of [[a, 'opener'], [b, 'peer']]) {
    const c = await p2pEvent(u.conn, 'CLOSED', sid, () => true, `P2PEvent CLOSED to the ${who}`);
    eq([c.state, c.close_reason], ['STATE_CLOSED', 'CLOSE_REASON_CLOSED'], `state and close_reason to the ${who}`);
  }
  await a.conn.refused('p2p_update', { session_id: sid, device_id: a.dev.id, candidates: [], rtt_ms: 1 }, 'NOT_FOUND');
  await b.conn.refused('p2p_answer', { session_id: sid, accept: true, device_id: b.dev.id }, 'NOT_FOUND');
});

check('20.2', 'p2p_open errors: NOT_FOUND (unknown user, a device_id not yours), INVALID_ARGUMENT (yourself, 9 candidates, one not ip:port), BLOCKED; p2p_answer and p2p_update of a session not offered to you NOT_FOUND', async (t) => {
  const a = await t.user('oea');
  const b = await t.user('oeb');
  const c = await t.user('oec');
  a.dev = device();
  b.dev = device();
  await registerDevice(a.conn, a.dev);
  await registerDevice(b.conn, b.dev);
  const open = (conn, body) => ({ to_username: b.name, device_id: a.dev.id, candidates: [], rtt_ms: 1, ...body });
  await a.conn.refused('p2p_open', open(a.conn, { to_username: t.name('ghost') }), 'NOT_FOUND');
  await a.conn.refused('p2p_open', open(a.conn, { device_id: device().id }), 'NOT_FOUND');
  await a.conn.refused('p2p_open', open(a.conn, { device_id: b.dev.id }), 'NOT_FOUND');
  await a.conn.refused('p2p_open', open(a.conn, { to_username: a.name }), 'INVALID_ARGUMENT');
  const nine = [];
  for (let i = 0; i < 9; i++) nine.push({ kind: HOST, addr: `127.0.0.1:${40000 + i}` });
  await a.conn.refused('p2p_open', open(a.conn, { candidates: nine }), 'INVALID_ARGUMENT');
  for (const bad of ['localhost:4000', '127.0.0.1', '127.0.0.1:port', '300.1.1.1:5']) {
    await a.conn.refused('p2p_open', open(a.conn, { candidates: [{ kind: HOST, addr: bad }] }), 'INVALID_ARGUMENT');
  }
  const eight = await a.conn.call('p2p_open', open(a.conn, { candidates: nine.slice(0, 8) }), 'p2p_session');
  await a.conn.call('p2p_close', { session_id: eight.session_id }, 'ok');
  await b.conn.call('block', { username: a.name }, 'ok');
  await a.conn.refused('p2p_open', open(a.conn, {}), 'BLOCKED');
  await b.conn.call('unblock', { username: a.name }, 'ok');
  const s = await a.conn.call('p2p_open', open(a.conn, {}), 'p2p_session');
  c.dev = device();
  await registerDevice(c.conn, c.dev);
  await c.conn.refused('p2p_answer', { session_id: s.session_id, accept: true, device_id: c.dev.id }, 'NOT_FOUND');
  await c.conn.refused('p2p_update', { session_id: s.session_id, device_id: c.dev.id, candidates: [], rtt_ms: 1 }, 'NOT_FOUND');
  await b.conn.refused('p2p_answer', { session_id: 'p' + crypto.randomBytes(12).toString('hex'), accept: true, device_id: b.dev.id }, 'NOT_FOUND');
  await a.conn.call('p2p_close', { session_id: s.session_id }, 'ok');
});

check('20.2', 'a user with 8 sessions open gets QUOTA_EXCEEDED for a ninth p2p_open; closing one makes room', async (t) => {
  const a = await t.user('qa');
  a.dev = device();
  await registerDevice(a.conn, a.dev);
  const peers = [];
  for (let i = 0; i < 3; i++) peers.push(await t.user(`qp${i}`));
  // Four sessions on each of two connections (the per-connection relay
  // cap is 8 too), the ninth on a third.
  const a2 = await t.login(a, { label: 'a second connection' });
  const a3 = await t.login(a, { label: 'a third connection' });
  const open = [];
  for (let i = 0; i < 8; i++) {
    open.push(await (i < 4 ? a.conn : a2).call('p2p_open', { to_username: peers[i % 3].name, device_id: a.dev.id, candidates: [], rtt_ms: 1 }, 'p2p_session'));
  }
  await a3.refused('p2p_open', { to_username: peers[0].name, device_id: a.dev.id, candidates: [], rtt_ms: 1 }, 'QUOTA_EXCEEDED');
  await a.conn.call('p2p_close', { session_id: open[0].session_id }, 'ok');
  const s = await a3.call('p2p_open', { to_username: peers[0].name, device_id: a.dev.id, candidates: [], rtt_ms: 1 }, 'p2p_session');
  eq(s.state, 'STATE_OFFERED', 'state of the open after a close made room');
});

check('20.2', 'an offer not answered within 60 s closes EXPIRED for both', async (t) => {
  const { a, b, sid } = await opened(t, { accept: false, tag: 'ex' });
  const wait = Math.max(0, a.sess.expires_at_unix_ms - Date.now()) + 15000;
  for (const [u, who] of [[a, 'opener'], [b, 'peer']]) {
    const c = await p2pEvent(u.conn, 'CLOSED', sid, () => true, `P2PEvent CLOSED (EXPIRED) to the ${who}`, wait);
    eq(c.close_reason, 'CLOSE_REASON_EXPIRED', `close_reason to the ${who}`);
  }
  ok(Date.now() >= a.sess.expires_at_unix_ms - 1000, 'the offer expired before expires_at_unix_ms');
  await b.conn.refused('p2p_answer', { session_id: sid, accept: true, device_id: b.dev.id }, 'NOT_FOUND');
});

// ---- the rendezvous ----

// binding sends a Binding request (attrs) to addr from udp every 200 ms
// until answered, and returns the answer with where it came from.
async function binding(udp, addr, attrs = [], opts = {}) {
  const r = stun.request({ attrs, ...opts });
  const d = await udp.repeat(() => udp.send(r.bytes, addr), (x) => {
    const m = stun.decode(x.msg);
    return m && m.txid.equals(r.id);
  }, `an answer to a Binding request to ${addr}`, { everyMs: 200, timeoutMs: 5000 });
  return Object.assign(stun.decode(d.msg), { from: d.from, size: d.msg.length, req: r.bytes.length });
}

const changeRequest = (ip, port) => [stun.ATTR.CHANGE_REQUEST, Buffer.from([0, 0, 0, (ip ? 4 : 0) | (port ? 2 : 0)])];

check('20.3', 'the rendezvous answers Binding with XOR-MAPPED-ADDRESS, RESPONSE-ORIGIN, OTHER-ADDRESS and FINGERPRINT; CHANGE-REQUEST is answered from the alternate IP and port asked for; RESPONSE-PORT is honoured; PADDING is not amplified', async (t) => {
  const c = await t.connect('stun');
  const primary = c.welcome.stun_addr;
  ok(ADDR.test(primary), `Welcome.stun_addr "${primary}" is not ip:port`);
  const u = await t.udp('stun client');
  const m = await binding(u, primary);
  eq(m.type, stun.BINDING_SUCCESS, 'message type of the answer');
  eq(m.from, primary, 'source of the answer');
  eq(stun.parseAddress(m.get(stun.ATTR.XOR_MAPPED_ADDRESS), m.txid, true), u.addr, 'XOR-MAPPED-ADDRESS (M1 = the socket\'s own address: no NAT)');
  eq(stun.parseAddress(m.get(stun.ATTR.RESPONSE_ORIGIN), m.txid, false), primary, 'RESPONSE-ORIGIN');
  const other = stun.parseAddress(m.get(stun.ATTR.OTHER_ADDRESS), m.txid, false);
  ok(other && ADDR.test(other), `OTHER-ADDRESS ${other}`);
  const [pip, pport] = [primary.slice(0, primary.lastIndexOf(':')), primary.slice(primary.lastIndexOf(':') + 1)];
  const [oip, oport] = [other.slice(0, other.lastIndexOf(':')), other.slice(other.lastIndexOf(':') + 1)];
  ok(oip !== pip && oport !== pport, `OTHER-ADDRESS ${other} is not another IP and another port than ${primary}`);
  ok(stun.checkFingerprint(m), 'the answer\'s FINGERPRINT is missing, not last, or wrong');
  // Classification (§20.3): the mapping at O's IP and the primary's port,
  // then at O.
  const m2 = await binding(u, `${oip}:${pport}`);
  eq(m2.from, `${oip}:${pport}`, 'source of the answer from the alternate IP at the primary port');
  eq(stun.parseAddress(m2.get(stun.ATTR.XOR_MAPPED_ADDRESS), m2.txid, true), u.addr, 'M2 (endpoint-independent mapping)');
  const m3 = await binding(u, other);
  eq(stun.parseAddress(m3.get(stun.ATTR.XOR_MAPPED_ADDRESS), m3.txid, true), u.addr, 'M3');
  // Filtering: CHANGE-REQUEST for IP and port, then port only.
  const both = await binding(u, primary, [changeRequest(true, true)]);
  eq([both.type, both.from], [stun.BINDING_SUCCESS, other], 'type and source of the answer to CHANGE-REQUEST (IP and port)');
  const port = await binding(u, primary, [changeRequest(false, true)]);
  eq([port.type, port.from], [stun.BINDING_SUCCESS, `${pip}:${oport}`], 'type and source of the answer to CHANGE-REQUEST (port only)');
  const ip = await binding(u, primary, [changeRequest(true, false)]);
  eq([ip.type, ip.from], [stun.BINDING_SUCCESS, `${oip}:${pport}`], 'type and source of the answer to CHANGE-REQUEST (IP only)');
  // RESPONSE-PORT: the answer goes to that port of the sender's IP.
  const to = await t.udp('response port');
  const rp = Buffer.alloc(4);
  rp.writeUInt16BE(to.port, 0);
  const r = stun.request({ attrs: [[stun.ATTR.RESPONSE_PORT, rp]] });
  await u.send(r.bytes, primary);
  const d = await to.repeat(() => u.send(r.bytes, primary), (x) => { const mm = stun.decode(x.msg); return mm && mm.txid.equals(r.id); },
    'the answer at the RESPONSE-PORT', { everyMs: 200, timeoutMs: 5000 });
  eq(stun.parseAddress(stun.decode(d.msg).get(stun.ATTR.XOR_MAPPED_ADDRESS), r.id, true), u.addr, 'XOR-MAPPED-ADDRESS of the answer sent to RESPONSE-PORT');
  // PADDING: an answer is never longer than... its padding never exceeds
  // the request's.
  const pr = stun.request({ attrs: [[stun.ATTR.PADDING, Buffer.alloc(400)]] });
  const pd = await u.repeat(() => u.send(pr.bytes, primary), (x) => { const mm = stun.decode(x.msg); return mm && mm.txid.equals(pr.id); },
    'an answer to a padded Binding request', { everyMs: 200, timeoutMs: 5000 });
  const pm = stun.decode(pd.msg);
  const pad = pm.get(stun.ATTR.PADDING);
  ok(!pad || pad.length <= 400, `the answer's PADDING is ${pad && pad.length} bytes, the request's 400`);
  const small = stun.request({ attrs: [[stun.ATTR.PADDING, Buffer.alloc(8)]] });
  const sd = await u.repeat(() => u.send(small.bytes, primary), (x) => { const mm = stun.decode(x.msg); return mm && mm.txid.equals(small.id); },
    'an answer to a Binding request with 8 bytes of padding', { everyMs: 200, timeoutMs: 5000 });
  const sp = stun.decode(sd.msg).get(stun.ATTR.PADDING);
  ok(!sp || sp.length <= 8, `the answer's PADDING is ${sp && sp.length} bytes, the request's 8`);
});

check('20.3', 'no Binding answer is longer than 3 times its request: SOFTWARE, then RESPONSE-ORIGIN, then OTHER-ADDRESS are left out while it would be; FINGERPRINT only when the request had one; a bare 20-byte request gets XOR-MAPPED-ADDRESS, OTHER-ADDRESS and RESPONSE-ORIGIN', async (t) => {
  const c = await t.connect('stun');
  const primary = c.welcome.stun_addr;
  const u = await t.udp('stun client');
  const sw = [stun.ATTR.SOFTWARE, Buffer.from('parley-outsider/1')];
  const cases = [
    ['a bare 20-byte request', [], false],
    ['a 28-byte request with FINGERPRINT', [], true],
    ['a request with SOFTWARE and FINGERPRINT', [sw], true],
    ['a request with 8 bytes of PADDING', [[stun.ATTR.PADDING, Buffer.alloc(8)]], false],
    ['a request with 200 bytes of PADDING and FINGERPRINT', [[stun.ATTR.PADDING, Buffer.alloc(200)]], true],
    ['a request with CHANGE-REQUEST (IP and port)', [changeRequest(true, true)], false],
  ];
  const order = [stun.ATTR.SOFTWARE, stun.ATTR.RESPONSE_ORIGIN, stun.ATTR.OTHER_ADDRESS];
  for (const [what, attrs, fingerprint] of cases) {
    const m = await binding(u, primary, attrs, { fingerprint });
    const has = m.attrs.map((x) => `0x${x.type.toString(16)}`).join(' ');
    eq(m.type, stun.BINDING_SUCCESS, `type of the answer to ${what}`);
    ok(m.size <= 3 * m.req, `the answer to ${what} is ${m.size} bytes, the request ${m.req}: more than 3 times (attributes ${has})`);
    eq(stun.parseAddress(m.get(stun.ATTR.XOR_MAPPED_ADDRESS), m.txid, true), u.addr, `XOR-MAPPED-ADDRESS of the answer to ${what}`);
    eq(m.has(stun.ATTR.FINGERPRINT), fingerprint, `FINGERPRINT in the answer to ${what} (attributes ${has})`);
    if (fingerprint) ok(stun.checkFingerprint(m), `the FINGERPRINT of the answer to ${what} is wrong or not last`);
    // Left out in order: an attribute may be missing only if the ones
    // before it in that order are.
    for (let i = 1; i < order.length; i++) {
      if (!m.has(order[i])) ok(order.slice(0, i).every((x) => !m.has(x)), `the answer to ${what} leaves out 0x${order[i].toString(16)} but keeps one left out before it (attributes ${has})`);
    }
    if (what === 'a bare 20-byte request') {
      eq([m.has(stun.ATTR.OTHER_ADDRESS), m.has(stun.ATTR.RESPONSE_ORIGIN), m.has(stun.ATTR.SOFTWARE)], [true, true, false], `OTHER-ADDRESS, RESPONSE-ORIGIN, SOFTWARE in the answer to a bare 20-byte request over IPv4 (attributes ${has})`);
    }
    if (what === 'a request with SOFTWARE and FINGERPRINT') {
      ok(m.has(stun.ATTR.SOFTWARE) && m.has(stun.ATTR.RESPONSE_ORIGIN) && m.has(stun.ATTR.OTHER_ADDRESS), `the answer to a ${m.req}-byte request with SOFTWARE and FINGERPRINT lacks SOFTWARE, RESPONSE-ORIGIN or OTHER-ADDRESS (attributes ${has})`);
    }
  }
});

// stunAnswer sends req from udp to addr every 200 ms until answered.
async function stunAnswer(udp, addr, req, what) {
  const d = await udp.repeat(() => udp.send(req.bytes, addr), (x) => { const m = stun.decode(x.msg); return m && m.txid.equals(req.id); }, what, { everyMs: 200, timeoutMs: 5000 });
  return Object.assign(stun.decode(d.msg), { from: d.from, size: d.msg.length });
}

const introsAfter = (conn, sid, n) => conn.take((f) => f.body === 'p2p_event' && f.p2p_event.kind === 'KIND_INTRO' && f.p2p_event.session.session_id === sid && f.p2p_event.session.intro > n);

check('20.3', 'registration: a wrong MESSAGE-INTEGRITY gets 401; one without the address\'s NONCE gets 438 with a 24-character NONCE and MESSAGE-INTEGRITY, and changes nothing; sent again with it, it is answered with the mapped address and MESSAGE-INTEGRITY; once both sides registered, INTRO to both with the peer\'s candidates, both mappings and start_delay_ms', async (t) => {
  const { a, b, sid, candA, candB } = await opened(t, { tag: 'rg', rttA: 10, rttB: 50 });
  const bad = await stunAnswer(a.udp, a.sess.stun_addr, stun.request({ username: a.sess.register_username, key: crypto.randomBytes(32) }), 'an answer to a registration with a wrong key');
  eq([bad.type, stun.errorCode(bad)], [stun.BINDING_ERROR, 401], 'type and error code of the answer to a wrong MESSAGE-INTEGRITY');
  await register(b.udp, b.sess);
  // a, without a nonce: 438 at each address, nothing recorded.
  for (const addr of [a.sess.stun_addr, a.sess.stun_alt_addr]) {
    const m = await stunAnswer(a.udp, addr, stun.request({ username: a.sess.register_username, key: a.sess.register_key }), `an answer to a registration without NONCE at ${addr}`);
    eq([m.type, stun.errorCode(m)], [stun.BINDING_ERROR, 438], `type and error code of the answer to a registration without NONCE at ${addr}`);
    const nonce = m.get(stun.ATTR.NONCE);
    ok(nonce && nonce.length === 24, `NONCE of the 438 answer at ${addr}: ${nonce && JSON.stringify(nonce.toString())}, want 24 characters`);
    ok(stun.checkIntegrity(m, a.sess.register_key), `the 438 answer at ${addr} has no MESSAGE-INTEGRITY with register_key`);
  }
  await sleep(1000);
  await a.conn.call('ping', { nonce: 1 }, 'pong');
  await b.conn.call('ping', { nonce: 1 }, 'pong');
  eq([introsAfter(a.conn, sid, 0).length, introsAfter(b.conn, sid, 0).length], [0, 0], 'INTROs after a\'s registrations without NONCE (438 changes nothing)');
  const answers = await register(a.udp, a.sess);
  for (const [addr, x] of Object.entries(answers)) {
    eq(x.type, stun.BINDING_SUCCESS, `type of the registration answer from ${addr}`);
    eq(x.from, addr, 'source of the registration answer');
    eq(stun.parseAddress(x.get(stun.ATTR.XOR_MAPPED_ADDRESS), x.txid, true), a.udp.addr, `XOR-MAPPED-ADDRESS of the registration answer from ${addr}`);
    ok(stun.checkIntegrity(x, a.sess.register_key), `the registration answer from ${addr} has no MESSAGE-INTEGRITY with register_key`);
    ok(stun.checkFingerprint(x), `the registration answer from ${addr} has no valid FINGERPRINT`);
  }
  const known = (x) => x.mapping !== 'NAT_MAPPING_UNKNOWN' && x.peer_mapping !== 'NAT_MAPPING_UNKNOWN';
  a.intro = await p2pEvent(a.conn, 'INTRO', sid, known, 'P2PEvent INTRO with both mappings known');
  b.intro = await p2pEvent(b.conn, 'INTRO', sid, known, 'P2PEvent INTRO with both mappings known');
  // The peer's host candidates and its server-reflexive address (here the
  // same address as its host candidate: the server lists it once).
  for (const [x, cand, peerAddr, who] of [[a.intro, candB, b.udp.addr, 'opener'], [b.intro, candA, a.udp.addr, 'peer']]) {
    for (const c of cand) ok(x.peer_candidates.some((p) => p.kind === HOST && p.addr === c.addr), `the ${who}'s peer_candidates ${JSON.stringify(cands(x))} lack the host candidate ${c.addr}`);
    ok(x.peer_candidates.some((p) => p.addr === peerAddr), `the ${who}'s peer_candidates ${JSON.stringify(cands(x))} lack the server-reflexive address ${peerAddr}`);
    ok(x.peer_candidates.every((p) => ADDR.test(p.addr) && (p.kind === HOST || p.kind === 'KIND_SERVER_REFLEXIVE')), `the ${who}'s peer_candidates ${JSON.stringify(cands(x))}: a kind or address is not as §20.3 says`);
  }
  eq([a.intro.mapping, a.intro.peer_mapping, b.intro.mapping, b.intro.peer_mapping], [EI, EI, EI, EI], 'mapping and peer_mapping on the loopback');
  eq([a.intro.start_delay_ms, b.intro.start_delay_ms], [20, 0], 'start_delay_ms (rtt_ms 10 and 50: half the difference to the nearer side, 0 to the farther)');
  ok(a.intro.intro > 0 && b.intro.intro > 0, 'INTRO numbers');
  eq([a.intro.side, b.intro.side, a.intro.controlling, b.intro.controlling], ['a', 'b', true, false], 'side and controlling in the INTROs');
  // From another socket: a wrong key gets 401; the right key with the first
  // socket's nonce gets 438 with a nonce of its own. Neither changes
  // anything: no new INTRO.
  await sleep(300);
  a.conn.take((f) => f.body === 'p2p_event');
  b.conn.take((f) => f.body === 'p2p_event');
  const other = await t.udp('a stray socket');
  const wrong = await stunAnswer(other, a.sess.stun_addr, stun.request({ username: a.sess.register_username, key: crypto.randomBytes(32) }), 'an answer to a wrong registration from another socket');
  eq(stun.errorCode(wrong), 401, 'error code of a registration with a wrong key from another socket');
  const theirs = a.udp.nonces.get(`${sid} ${a.sess.stun_addr}`);
  const borrowed = await stunAnswer(other, a.sess.stun_addr, stun.request({ username: a.sess.register_username, nonce: theirs, key: a.sess.register_key }), 'an answer to a registration with another address\'s nonce');
  eq([borrowed.type, stun.errorCode(borrowed)], [stun.BINDING_ERROR, 438], 'type and error code of a registration with the NONCE of another address');
  ok(borrowed.get(stun.ATTR.NONCE) && borrowed.get(stun.ATTR.NONCE).toString() !== theirs, 'the 438 for another address carries the same NONCE');
  await sleep(1000);
  await a.conn.call('ping', { nonce: 2 }, 'pong');
  await b.conn.call('ping', { nonce: 2 }, 'pong');
  eq([...introsAfter(a.conn, sid, a.intro.intro), ...introsAfter(b.conn, sid, b.intro.intro)].map((f) => cands(f.p2p_event.session)), [], 'INTROs after registrations that failed (401, 438)');
  await a.conn.call('p2p_close', { session_id: sid }, 'ok');
});

check('20.3', 'a server-reflexive address other than the host candidates is introduced as KIND_SERVER_REFLEXIVE; p2p_update replaces the host candidates and introduces both sides again with a higher intro', async (t) => {
  // a announces a host candidate the loopback cannot reach (as behind a
  // NAT): the rendezvous sees it at 127.0.0.1.
  const { a, b, sid } = await opened(t, { tag: 'up', hostA: '192.0.2.1' });
  await introduced(a, b);
  eq(cands(b.intro), [[HOST, `192.0.2.1:${a.udp.port}`], ['KIND_SERVER_REFLEXIVE', a.udp.addr]].sort(), 'the peer\'s peer_candidates: a\'s host and server-reflexive candidates');
  const moved = await t.udp('b new socket');
  const s = await b.conn.call('p2p_update', { session_id: sid, device_id: b.dev.id, candidates: [{ kind: HOST, addr: moved.addr }], rtt_ms: 30 }, 'p2p_session');
  eq([s.session_id, s.state, s.side], [sid, 'STATE_ACCEPTED', 'b'], 'session_id, state, side of the p2p_update reply');
  b.sess = s;
  await register(moved, s);
  const ia = await p2pEvent(a.conn, 'INTRO', sid, (x) => x.intro > a.intro.intro && x.peer_candidates.some((c) => c.addr === moved.addr), 'a new INTRO with b\'s new host candidate');
  eq(cands(ia).filter(([k]) => k === HOST), [[HOST, moved.addr]], 'the opener\'s peer host candidates after the update');
  await p2pEvent(b.conn, 'INTRO', sid, (x) => x.intro > b.intro.intro, 'a new INTRO to the side that updated');
  await a.conn.call('p2p_close', { session_id: sid }, 'ok');
});

check('20.3', 'the mapping is what the rendezvous saw at its two addresses: one socket at both is ENDPOINT_INDEPENDENT; two different source addresses (as a symmetric NAT makes) ENDPOINT_DEPENDENT, with the address seen at the primary as the server-reflexive candidate; a registration that changes the mapping sends a new INTRO', async (t) => {
  const { a, b, sid } = await opened(t, { tag: 'mp' });
  await introduced(a, b);
  eq([b.intro.peer_mapping, a.intro.mapping], [EI, EI], 'mappings after registering one socket at both addresses');
  // a registers again from two other sockets: one to the primary, one to
  // the alternate address.
  const p1 = await t.udp('a mapped at the primary');
  const p2 = await t.udp('a mapped at the alternate');
  const reg = async (u, addr) => {
    const m = await registerAt(u, a.sess, addr);
    eq(m.type, stun.BINDING_SUCCESS, `type of the registration answer from ${addr}`);
    return stun.parseAddress(m.get(stun.ATTR.XOR_MAPPED_ADDRESS), m.txid, true);
  };
  eq(await reg(p1, a.sess.stun_addr), p1.addr, 'mapped address at the primary');
  eq(await reg(p2, a.sess.stun_alt_addr), p2.addr, 'mapped address at the alternate');
  const ED = 'NAT_MAPPING_ENDPOINT_DEPENDENT';
  const ib = await p2pEvent(b.conn, 'INTRO', sid, (x) => x.intro > b.intro.intro && x.peer_mapping === ED, 'a new INTRO to b with peer_mapping ENDPOINT_DEPENDENT');
  const srflx = ib.peer_candidates.filter((c) => c.kind === 'KIND_SERVER_REFLEXIVE').map((c) => c.addr);
  eq(srflx, [p1.addr], 'a\'s server-reflexive candidate: the address seen at the primary');
  const ia = await p2pEvent(a.conn, 'INTRO', sid, (x) => x.intro > a.intro.intro && x.mapping === ED, 'a new INTRO to a with mapping ENDPOINT_DEPENDENT');
  eq(ia.peer_mapping, EI, 'peer_mapping in a\'s new INTRO');
  await a.conn.call('p2p_close', { session_id: sid }, 'ok');
});

// ---- connectivity checks and the relay ----

check('20.4', 'connectivity checks: two devices on the loopback, host candidates unreachable, find each other at their server-reflexive addresses; a nominates, b follows the nomination', async (t) => {
  const { a, b, sid } = await opened(t, { tag: 'ck', hostA: '192.0.2.1', hostB: '192.0.2.2' });
  await introduced(a, b);
  eq(a.intro.peer_candidates.find((c) => c.kind === 'KIND_SERVER_REFLEXIVE').addr, b.udp.addr, 'b\'s server-reflexive candidate');
  const A = new Side(a.udp, a.intro);
  const B = new Side(b.udp, b.intro);
  const [pa, pb] = await Promise.all([A.connect(), B.connect()]);
  eq([pa, pb], [b.udp.addr, a.udp.addr], 'the pair each side uses');
  ok(B.checksSeen.some((c) => c.useCandidate && c.username === `${sid}:a`), 'b saw no nomination with USERNAME <session_id>:a');
  ok(A.checksSeen.some((c) => c.username === `${sid}:b`), 'a saw no check with USERNAME <session_id>:b');
  await a.conn.call('p2p_close', { session_id: sid }, 'ok');
});

check('20.4', 'relay: p2p_relay frames reach the other side\'s connection as sent (request_id 0), up to 1500 bytes; larger ones and ones for a session not attached to the connection are dropped; after a reconnect p2p_update re-attaches the relay', async (t) => {
  const { a, b, sid } = await opened(t, { tag: 'rl' });
  const bOther = await t.login(b, { label: 'b connection without the session' });
  const relayed = (conn, packet, what) => conn.next((f) => f.body === 'p2p_relay' && f.p2p_relay.session_id === sid && f.p2p_relay.packet.equals(packet), what);
  for (const [from, to, who] of [[a, b, 'a to b'], [b, a, 'b to a']]) {
    const p = Buffer.concat([Buffer.from([0x40]), crypto.randomBytes(99)]);
    from.conn.send({ request_id: 0, p2p_relay: { session_id: sid, packet: p } });
    const f = await relayed(to.conn, p, `the relayed packet ${who}`);
    eq(f.request_id, 0, 'request_id of a relayed packet');
  }
  const max = crypto.randomBytes(1500);
  a.conn.send({ request_id: 0, p2p_relay: { session_id: sid, packet: max } });
  await relayed(b.conn, max, 'a relayed packet of 1500 bytes');
  a.conn.send({ request_id: 0, p2p_relay: { session_id: sid, packet: crypto.randomBytes(1501) } });
  // A second connection of a's user does not hold the session.
  const a2 = await t.login(a, { label: 'a second connection' });
  a2.send({ request_id: 0, p2p_relay: { session_id: sid, packet: crypto.randomBytes(50) } });
  a.conn.send({ request_id: 0, p2p_relay: { session_id: 'p' + crypto.randomBytes(12).toString('hex'), packet: crypto.randomBytes(50) } });
  const mark = crypto.randomBytes(64);
  a.conn.send({ request_id: 0, p2p_relay: { session_id: sid, packet: mark } });
  await relayed(b.conn, mark, 'the packet after the dropped ones');
  await sleep(300);
  eq(b.conn.take((f) => f.body === 'p2p_relay').map((f) => f.p2p_relay.packet.length), [], 'relayed packets that should have been dropped (sizes)');
  eq(bOther.take((f) => f.body === 'p2p_relay').length, 0, 'relayed packets delivered to a connection of the peer that does not hold the session');
  eq([...a.conn.take((f) => f.body === 'error'), ...a2.take((f) => f.body === 'error')].length, 0, 'errors for p2p_relay frames');
  // b's connection goes; the session lives on (§20.2). The new connection
  // carries the relay after p2p_update.
  b.conn.close();
  const nb = await t.login(b, { label: 'b reconnected' });
  const s = await nb.call('p2p_update', { session_id: sid, device_id: b.dev.id, candidates: [{ kind: HOST, addr: b.udp.addr }], rtt_ms: 5 }, 'p2p_session');
  eq(s.state, 'STATE_ACCEPTED', 'state after p2p_update on a new connection');
  const p = crypto.randomBytes(200);
  a.conn.send({ request_id: 0, p2p_relay: { session_id: sid, packet: p } });
  await relayed(nb, p, 'a relayed packet on the new connection after p2p_update');
  const q = crypto.randomBytes(200);
  nb.send({ request_id: 0, p2p_relay: { session_id: sid, packet: q } });
  await relayed(a.conn, q, 'a relayed packet from the new connection');
  await a.conn.call('p2p_close', { session_id: sid }, 'ok');
});

check('20.2', 'a connection carries the relay of at most 8 sessions: a ninth p2p_answer on it is QUOTA_EXCEEDED, on another connection it is accepted', async (t) => {
  const b = await t.user('rqb');
  b.dev = device();
  await registerDevice(b.conn, b.dev);
  const offers = [];
  const openers = [];
  for (let i = 0; i < 9; i++) {
    const a = await t.user(`rq${i}`);
    a.dev = device();
    await registerDevice(a.conn, a.dev);
    openers.push(a);
  }
  for (const a of openers) {
    const s = await a.conn.call('p2p_open', { to_username: b.name, device_id: a.dev.id, candidates: [], rtt_ms: 1 }, 'p2p_session');
    offers.push(s.session_id);
    await p2pEvent(b.conn, 'OFFER', s.session_id);
  }
  for (let i = 0; i < 8; i++) await b.conn.call('p2p_answer', { session_id: offers[i], accept: true, device_id: b.dev.id }, 'p2p_session');
  await b.conn.refused('p2p_answer', { session_id: offers[8], accept: true, device_id: b.dev.id }, 'QUOTA_EXCEEDED');
  // Updating a session the connection already carries is not a ninth.
  await b.conn.call('p2p_update', { session_id: offers[0], device_id: b.dev.id, candidates: [], rtt_ms: 1 }, 'p2p_session');
  const b2 = await t.login(b, { label: 'b second connection' });
  const s = await b2.call('p2p_answer', { session_id: offers[8], accept: true, device_id: b.dev.id }, 'p2p_session');
  eq(s.state, 'STATE_ACCEPTED', 'state of the ninth session answered on another connection');
});

check('20.2', 'p2p_update re-attaches the relay to the connection it is sent on: the session\'s packets reach that connection only, the old one\'s are dropped, and the old one has room for another session', async (t) => {
  const { a, b, sid } = await opened(t, { tag: 'mv' });
  const b2 = await t.login(b, { label: 'b second connection' });
  await b2.call('p2p_update', { session_id: sid, device_id: b.dev.id, candidates: [], rtt_ms: 1 }, 'p2p_session');
  const p = crypto.randomBytes(100);
  a.conn.send({ request_id: 0, p2p_relay: { session_id: sid, packet: p } });
  await b2.next((f) => f.body === 'p2p_relay' && f.p2p_relay.packet.equals(p), 'the relayed packet on the connection that sent p2p_update');
  const q = crypto.randomBytes(100);
  b.conn.send({ request_id: 0, p2p_relay: { session_id: sid, packet: q } });
  const mark = crypto.randomBytes(100);
  b2.send({ request_id: 0, p2p_relay: { session_id: sid, packet: mark } });
  await a.conn.next((f) => f.body === 'p2p_relay' && f.p2p_relay.packet.equals(mark), 'a relayed packet from the new connection');
  await sleep(300);
  eq(b.conn.take((f) => f.body === 'p2p_relay').length, 0, 'relayed packets still delivered to the old connection after p2p_update on another');
  eq(a.conn.take((f) => f.body === 'p2p_relay').length, 0, 'relayed packets from the old connection delivered after p2p_update on another');
  // The old connection carries no session now: 8 more fit on it.
  for (let i = 0; i < 8; i++) {
    const o = await t.user(`mv${i}`);
    o.dev = device();
    await registerDevice(o.conn, o.dev);
    const s = await o.conn.call('p2p_open', { to_username: b.name, device_id: o.dev.id, candidates: [], rtt_ms: 1 }, 'p2p_session');
    await p2pEvent(b.conn, 'OFFER', s.session_id);
    await b.conn.call('p2p_answer', { session_id: s.session_id, accept: true, device_id: b.dev.id }, 'p2p_session');
  }
});

check('20.4', 'the relay passes a connection\'s burst (-p2p-relay-burst) and then its rate (-p2p-relay-rate), dropping the excess', async (t) => {
  const { a, b, sid } = await opened(t, { tag: 'rr' });
  const { p2pRelayRate: rate, p2pRelayBurst: burst } = t.env;
  const size = 1500;
  const n = Math.ceil((burst * 3) / size) + 10;
  await sleep(Math.ceil((burst / rate) * 1000) + 200); // a full bucket
  const got = [];
  const times = [];
  const untap = b.conn.tap((f) => f.body === 'p2p_relay' && f.p2p_relay.session_id === sid, (f) => { got.push(f.p2p_relay.packet.length); times.push(Date.now()); });
  const t0 = Date.now();
  for (let i = 0; i < n; i++) a.conn.send({ request_id: 0, p2p_relay: { session_id: sid, packet: crypto.randomBytes(size) } });
  await a.conn.call('ping', { nonce: 3 }, 'pong');
  const spread = Date.now() - t0;
  await sleep(1000);
  await b.conn.call('ping', { nonce: 3 }, 'pong');
  untap();
  const bytes = got.reduce((x, y) => x + y, 0);
  // Whatever the pace the gateway read them at: within a span of time it
  // relays at most the burst and the rate times that span.
  const window = Math.max(spread, times.length ? times[times.length - 1] - times[0] : 0);
  const most = burst + Math.ceil((rate * window) / 1000) + size;
  ok(bytes >= Math.min(n * size, burst - size), `${bytes} bytes relayed of ${n * size} sent at once, want at least the burst (${burst})`);
  ok(bytes <= most, `${bytes} bytes relayed of ${n * size} within ${window} ms, want at most ${most} (burst ${burst}, rate ${rate}/s)`);
});

// ---- the secure channel ----

// secure opens a session between two outsider devices, goes direct (unless
// relayOnly: then neither registers, and the channel runs over the relay)
// and starts the QUIC connection, a being the client (§20.5).
async function secure(t, { tag, relayOnly = false }) {
  const o = await opened(t, { tag, hostA: '192.0.2.1', hostB: '192.0.2.2' });
  const { a, b, sid } = o;
  let A = null;
  let B = null;
  if (!relayOnly) {
    await introduced(a, b);
    A = new Side(a.udp, a.intro);
    B = new Side(b.udp, b.intro);
    await Promise.all([A.connect(), B.connect()]);
  }
  const qb = channel({ side: B, conn: b.conn, sid, role: 'server', dev: b.dev, peerKey: b.sess.peer_device.public_key, label: 'b (QUIC server)', relayOnly });
  const qa = channel({ side: A, conn: a.conn, sid, role: 'client', dev: a.dev, peerKey: a.sess.peer_device.public_key, label: 'a (QUIC client)', relayOnly });
  await qa.start();
  await qb.ready;
  return { ...o, A, B, qa, qb };
}

// hello opens the control stream and exchanges DirectHello both ways
// (§20.6).
async function hello(qa, qb, a, b) {
  const sa = qa.openStream();
  writeDirect(qa, sa, { hello: { device_id: a.dev.id, client: 'parley-outsider/1' } });
  const sb = await qb.acceptStream();
  eq(sb.id, 0, 'the control stream\'s id (the client\'s first bidirectional stream)');
  const h = await readDirect(qb, sb);
  eq([h.body, h.hello && h.hello.device_id], ['hello', a.dev.id], 'the first frame on the control stream at b');
  writeDirect(qb, sb, { hello: { device_id: b.dev.id, client: 'parley-outsider/1' } });
  const h2 = await readDirect(qa, sa);
  eq([h2.body, h2.hello && h2.hello.device_id], ['hello', b.dev.id], 'the first frame on the control stream at a');
  return [sa, sb];
}

check('20.5', 'the secure channel over the direct pair: QUIC v1, ALPN parley-p2p/1, each side\'s certificate key its device key; DirectHello both ways, DirectChat answered with DirectChatAck; nothing through the relay', async (t) => {
  const { a, b, sid, qa, qb } = await secure(t, { tag: 'sc' });
  const [sa, sb] = await hello(qa, qb, a, b);
  const text = 'over the direct path: ⇄ 直接';
  writeDirect(qa, sa, { chat: { id: 'm-1', text, sent_at_unix_ms: Date.now() } });
  const m = await readDirect(qb, sb);
  eq([m.body, m.chat && m.chat.id, m.chat && m.chat.text], ['chat', 'm-1', text], 'DirectChat at b');
  writeDirect(qb, sb, { chat_ack: { id: 'm-1' } });
  const ack = await readDirect(qa, sa);
  eq([ack.body, ack.chat_ack && ack.chat_ack.id], ['chat_ack', 'm-1'], 'DirectChatAck at a');
  eq([qa.paths.relay, qb.paths.relay, qa.paths.sentRelay, qb.paths.sentRelay], [0, 0, 0, 0], 'packets received and sent through the relay on a direct session');
  ok(qa.paths.direct > 0 && qb.paths.direct > 0, 'no packet came over the direct pair');
  qa.close(0);
  await a.conn.call('p2p_close', { session_id: sid }, 'ok');
});

check('20.4', 'with UDP never registered neither side is introduced, and the secure channel runs over the relay: the QUIC packets cross the server as they are, both ways, and what they carry stays encrypted', async (t) => {
  const { a, b, sid, qa, qb } = await secure(t, { tag: 'sr', relayOnly: true });
  const seen = [];
  qb.untap();
  const untap = b.conn.tap((f) => f.body === 'p2p_relay' && f.p2p_relay.session_id === sid, (f) => { seen.push(f.p2p_relay.packet); qb.paths.relay++; qb.receive(f.p2p_relay.packet); });
  const [sa, sb] = await hello(qa, qb, a, b);
  const secret = `relayed secret ${crypto.randomBytes(8).toString('hex')}`;
  writeDirect(qa, sa, { chat: { id: 'r-1', text: secret, sent_at_unix_ms: Date.now() } });
  const m = await readDirect(qb, sb);
  eq(m.chat && m.chat.text, secret, 'DirectChat over the relay');
  writeDirect(qb, sb, { chat_ack: { id: 'r-1' } });
  await readDirect(qa, sa);
  untap();
  ok(qa.paths.relay > 0 && qb.paths.relay > 0, 'no packet came through the relay');
  ok(!seen.some((p) => p.includes(Buffer.from(secret))), 'the relayed packets carry the message in the clear');
  const sent = new Set(qa.paths.relayed.map((p) => p.toString('hex')));
  ok(seen.length > 0 && seen.every((p) => sent.has(p.toString('hex'))), 'a packet relayed to b is not one a sent, byte for byte');
  eq([a.conn.take((f) => f.body === 'p2p_event' && f.p2p_event.kind === 'KIND_INTRO').length, b.conn.take((f) => f.body === 'p2p_event' && f.p2p_event.kind === 'KIND_INTRO').length], [0, 0],
    'INTROs while neither side registered');
  qa.close(0);
  await a.conn.call('p2p_close', { session_id: sid }, 'ok');
});

check('20.7', 'call audio over the channel: during a private call, after DirectCall{call_id, direct: true} both ways, an audio frame goes as a QUIC datagram (12-byte header, the sender\'s call stream sequence number); the next frame through the gateway takes the next number', async (t) => {
  const { a, b, sid, qa, qb } = await secure(t, { tag: 'dc' });
  const [sa, sb] = await hello(qa, qb, a, b);
  const { id, ja, jb } = await answered(a, b);
  const A = await onUdp(t, ja, 'a call udp');
  const B = await onUdp(t, jb, 'b call udp');
  writeDirect(qa, sa, { call: { call_id: id, direct: true } });
  writeDirect(qb, sb, { call: { call_id: id, direct: true } });
  const ca = await readDirect(qb, sb);
  const cb = await readDirect(qa, sa);
  eq([ca.body, ca.call && ca.call.call_id, ca.call && ca.call.direct, cb.call && cb.call.direct], ['call', id, true, true], 'DirectCall frames');
  const frame = crypto.randomBytes(80);
  const seq = A.stream.next();
  const ts = (A.stream.ts += 960) >>> 0;
  qa.sendDatagram(audioDatagram({ flags: 1, level: 25, seq, ts }, frame));
  const d = await qb.nextDatagram();
  eq([d.length, d[0], d[1], d[2], d[3], d.readUInt32BE(4), d.readUInt32BE(8)], [12 + 80, 1, 1, 25, 0, seq, ts], 'the audio datagram\'s header at b');
  ok(d.subarray(12).equals(frame), 'the Opus frame in the datagram');
  // The next frame goes through the media relay with the next sequence
  // number: nothing is played twice (§20.7 Numbering).
  const p = Buffer.from('back through the gateway');
  await A.udp.send(A.stream.audio(p), A.addr);
  const heard = await B.udp.next((x) => { const o = media.open(B.key, x.msg); return o && o.type === 1 && o.payload.equals(p); }, 'the next frame through the media relay');
  eq(heard.msg.readUInt32BE(8), (seq + 1) >>> 0, 'sequence number of the frame after the datagram');
  writeDirect(qa, sa, { call: { call_id: id, direct: false } });
  const off = await readDirect(qb, sb);
  eq([off.call && off.call.call_id, off.call && off.call.direct], [id, false], 'DirectCall direct: false');
  await a.conn.call('leave_call', { call_id: id }, 'ok');
  qa.close(0);
  await a.conn.call('p2p_close', { session_id: sid }, 'ok');
});

module.exports = { opened, introduced, registerDevice };
