'use strict';
// Calls (§19): signalling on the connection (place, ring, answer, reject,
// leave, mute, the events and the system messages), and media: packets
// sealed by hand as §19.4 lays them out, sent over UDP to CallJoined.udp_addr
// or as media frames on the connection, and opened by the other participant.

const crypto = require('node:crypto');
const { check, eq, ok } = require('../lib/check');
const { sleep } = require('../lib/context');
const media = require('../lib/media');

// §19.2: a call rings 45 seconds (t.env.ringMs: the runner is told when the
// server was started with another -relay-ring-timeout).

// ---- signalling helpers ----

const callEvent = (conn, kind, callId, pred = () => true, what = `CallEvent ${kind}`, timeoutMs) =>
  conn.event('call_event', (e) => e.kind === `KIND_${kind}` && e.call.call_id === callId && pred(e.call), what, timeoutMs)
    .then((e) => e.call);

// callMessage waits for the system message a call leaves in its
// conversation (§19.2) and returns it.
const callMessage = (conn, callId, outcome, what, timeoutMs) =>
  conn.event('message', (e) => e.message.system && e.message.call && e.message.call.call_id === callId &&
    e.message.call.outcome === `CALL_END_REASON_${outcome}`, what || `the call's system message (${outcome})`, timeoutMs)
    .then((e) => e.message);

const ids = (ps) => ps.map((p) => p.user_id).sort();
const dmId = (x, y) => `dm.${[x, y].sort().join('.')}`;

// placed checks what §19.1 promises of every CallJoined.
function checkJoined(j, who) {
  ok(j.stream_id > 0, `${who}: CallJoined.stream_id is 0`);
  ok(Buffer.isBuffer(j.media_key) && j.media_key.length === 32, `${who}: CallJoined.media_key is ${j.media_key && j.media_key.length} bytes, want 32`);
  ok(/^(\[[0-9a-fA-F:.]+\]|[^:\[\]]+):\d+$/.test(j.udp_addr), `${who}: CallJoined.udp_addr "${j.udp_addr}" is not host:port`);
  const me = j.call.participants.filter((p) => p.stream_id === j.stream_id);
  eq(me.length, 1, `${who}: participants carrying CallJoined.stream_id`);
}

// answered places a private call from a to b and has b answer it: both
// CallJoined replies and the call id.
async function answered(a, b) {
  const ja = await a.conn.call('place_call', { to_username: b.name }, 'call_joined');
  await callEvent(b.conn, 'RINGING', ja.call.call_id);
  const jb = await b.conn.call('join_call', { call_id: ja.call.call_id }, 'call_joined');
  await callEvent(a.conn, 'UPDATED', ja.call.call_id, (c) => c.state === 'CALL_STATE_ACTIVE', 'CallEvent UPDATED ACTIVE');
  return { ja, jb, id: ja.call.call_id };
}

// ---- media helpers ----

// attach makes udp a participant's media socket for stream as §19.3 asks:
// a probe reply that opens and carries an 8-byte path token is answered at
// once with a probe whose payload is that token, from this socket (unless
// echo is false); the address is proven when the reply to such a probe
// comes back empty. Token replies are kept in state.tokens, not the inbox.
function attach(udp, stream, addr, { echo = true } = {}) {
  const state = { udp, stream, addr, key: stream.key, tokens: [], echoes: new Set(), proven: false, echo };
  udp.handlers.push((msg) => {
    const o = media.open(stream.key, msg);
    if (!o || o.type !== media.TYPE.probeReply) return false;
    if (o.payload.length === 8) {
      state.tokens.push({ seq: o.seq, ts: o.ts, size: msg.length, at: Date.now() });
      if (state.echo) {
        const pk = media.seal(stream.key, { type: media.TYPE.probe, stream: stream.id, seq: stream.next(), ts: stream.ts }, o.payload);
        state.echoes.add(media.parse(pk).seq);
        udp.send(pk, addr);
      }
      return true;
    }
    if (o.payload.length === 0 && state.echoes.has(o.seq)) state.proven = true;
    return false;
  });
  return state;
}

// onUdp opens a UDP socket for a participant, probes udp_addr (every 200 ms,
// §19.3) and echoes the path token until the address is proven; it returns
// the socket and the participant's sending stream.
async function onUdp(t, joined, label, opts) {
  const udp = await t.udp(label);
  const P = attach(udp, new media.Stream(joined), joined.udp_addr, opts);
  await probe(P);
  return P;
}

// probe sends probes every 200 ms until one is answered with an empty probe
// reply that opens: the address is proven (path tokens echoed on the way).
async function probe(P) {
  const sent = new Set();
  const d = await P.udp.repeat(async () => {
    if (P.proven) return;
    const p = P.stream.probe();
    sent.add(media.parse(p).seq);
    await P.udp.send(p, P.addr);
  }, (x) => {
    const o = media.open(P.key, x.msg);
    return o && o.type === media.TYPE.probeReply && o.payload.length === 0 && (sent.has(o.seq) || P.echoes.has(o.seq));
  }, 'an empty probe reply that opens with the media key (a proven address)', { everyMs: 200, timeoutMs: 10000 });
  P.proven = true;
  return media.open(P.key, d.msg);
}

// audioOn takes the audio packets of stream `from` that reached udp and open
// with key (direction 1).
function audioOn(udp, key, from) {
  return udp.take((d) => { const f = media.parse(d.msg); return f && f.type === media.TYPE.audio && f.stream === from; })
    .map((d) => media.open(key, d.msg));
}

// hear waits for an audio packet of stream `from` on udp whose payload is
// payload.
async function hear(udp, key, from, payload, what, timeoutMs = 10000) {
  const d = await udp.next((x) => {
    const o = media.open(key, x.msg);
    return o && o.type === media.TYPE.audio && o.stream === from && o.payload.equals(payload);
  }, what, timeoutMs);
  return media.open(key, d.msg);
}

// frames returns the media frames received on conn so far (taking them).
const mediaFrames = (conn) => conn.take((f) => f.body === 'media').map((f) => f.media.packet);

// hearFrame waits for a media frame on conn carrying an audio packet of
// stream `from` with payload.
async function hearFrame(conn, key, from, payload, what, timeoutMs = 10000) {
  const f = await conn.next((x) => {
    if (x.body !== 'media') return false;
    const o = media.open(key, x.media.packet);
    return o && o.type === media.TYPE.audio && o.stream === from && o.payload.equals(payload);
  }, what, timeoutMs);
  ok(f.request_id === 0, `a media frame carries request_id ${f.request_id}, want 0`);
  return media.open(key, f.media.packet);
}

// settle gives the server time to forward what it would forward: a Ping
// round trip on each connection and a pause.
async function settle(...conns) {
  for (const c of conns) await c.call('ping', { nonce: 7 }, 'pong');
  await sleep(500);
}

const payload = (tag) => Buffer.from(`opus frame ${tag} ${crypto.randomBytes(4).toString('hex')}`);

// ---- signalling ----

check('19.1', 'place_call to_username: CallJoined (RINGING, the caller its one participant, stream id, 32-byte media_key, udp_addr); the callee rings on every connection (CallEvent RINGING, ring deadline 45 s)', async (t) => {
  const a = await t.user('cra');
  const b = await t.user('crb');
  const b2 = await t.login(b, { label: 'callee second device' });
  const before = Date.now();
  const j = await a.conn.call('place_call', { to_username: b.name }, 'call_joined');
  checkJoined(j, 'the caller');
  const c = j.call;
  ok(c.call_id, 'Call.call_id is empty');
  eq([c.conversation, c.kind, c.state, c.caller_id, c.caller_name], [dmId(a.id, b.id), 'CONVERSATION_KIND_DIRECT', 'CALL_STATE_RINGING', a.id, a.name],
    'Call conversation, kind, state, caller_id, caller_name');
  eq(c.participants.map((p) => [p.user_id, p.username, p.stream_id, p.muted]), [[a.id, a.name, j.stream_id, false]], 'Call.participants');
  eq(c.ringing_ids, [b.id], 'Call.ringing_ids');
  ok(c.started_at_unix_ms >= before - 5000 && c.started_at_unix_ms <= Date.now() + 5000, `Call.started_at_unix_ms ${c.started_at_unix_ms} is not now`);
  eq(c.ring_deadline_unix_ms - c.started_at_unix_ms, t.env.ringMs, 'ring_deadline_unix_ms - started_at_unix_ms');
  eq([c.answered_at_unix_ms, c.ended_at_unix_ms, c.end_reason], [0, 0, 'CALL_END_REASON_UNSPECIFIED'], 'answered_at, ended_at, end_reason of a ringing call');
  for (const [conn, which] of [[b.conn, 'first'], [b2, 'second']]) {
    const r = await callEvent(conn, 'RINGING', c.call_id, () => true, `CallEvent RINGING on the callee's ${which} connection`);
    eq([r.state, r.caller_id, r.ringing_ids], ['CALL_STATE_RINGING', a.id, [b.id]], `RINGING call on the callee's ${which} connection`);
  }
  // A second caller's place_call in the private chat answers the ringing
  // call instead of placing one (§19.1).
  const jb = await b.conn.call('place_call', { conversation: c.conversation }, 'call_joined');
  checkJoined(jb, 'the callee answering with place_call');
  eq([jb.call.call_id, jb.call.state], [c.call_id, 'CALL_STATE_ACTIVE'], 'call_id and state of the call the callee\'s place_call joined');
  ok(jb.stream_id !== j.stream_id, 'the two participants have the same stream id');
  ok(!jb.media_key.equals(j.media_key), 'the two participants have the same media key');
  ok(jb.call.answered_at_unix_ms > 0, 'Call.answered_at_unix_ms is 0 after the answer');
  eq(ids(jb.call.participants), [a.id, b.id].sort(), 'participants after the answer');
  eq(jb.call.ringing_ids, [], 'ringing_ids after the answer');
  const up = await callEvent(a.conn, 'UPDATED', c.call_id, (x) => x.state === 'CALL_STATE_ACTIVE', 'CallEvent UPDATED (answered) to the caller');
  eq(up.participants.map((p) => [p.user_id, p.stream_id]).sort(), [[a.id, j.stream_id], [b.id, jb.stream_id]].sort(), 'participants and their stream ids in UPDATED');
  // The callee's other device learns that its user answered.
  await callEvent(b2, 'UPDATED', c.call_id, (x) => x.participants.some((p) => p.user_id === b.id), 'CallEvent UPDATED with its own user among participants on the callee\'s other device');
  await a.conn.call('leave_call', { call_id: c.call_id }, 'ok');
  for (const [conn, which] of [[b.conn, 'first'], [b2, 'second']]) {
    await callEvent(conn, 'ENDED', c.call_id, (x) => x.end_reason === 'CALL_END_REASON_COMPLETED', `CallEvent ENDED on the callee's ${which} connection`);
  }
});

check('19.2', 'a private call answered and hung up: ENDED COMPLETED to both, ended_at set; "Call ended (m:ss)" with CallSummary COMPLETED to both; leave and join after the end are NOT_FOUND', async (t) => {
  const a = await t.user('cca');
  const b = await t.user('ccb');
  const { id, ja } = await answered(a, b);
  await sleep(1100);
  await b.conn.call('leave_call', { call_id: id }, 'ok');
  for (const [conn, who] of [[a.conn, 'caller'], [b.conn, 'callee']]) {
    const e = await callEvent(conn, 'ENDED', id, () => true, `CallEvent ENDED to the ${who}`);
    eq([e.state, e.end_reason], ['CALL_STATE_ENDED', 'CALL_END_REASON_COMPLETED'], `state and end_reason in ENDED to the ${who}`);
    ok(e.ended_at_unix_ms >= e.answered_at_unix_ms && e.answered_at_unix_ms > 0, `ended_at ${e.ended_at_unix_ms} / answered_at ${e.answered_at_unix_ms} in ENDED`);
    const m = await callMessage(conn, id, 'COMPLETED', `"Call ended" system message to the ${who}`);
    ok(/^Call ended \(\d+:\d\d\)$/.test(m.text), `system message text "${m.text}", want "Call ended (m:ss)"`);
    eq(m.conversation, ja.call.conversation, 'conversation of the call\'s system message');
    ok(m.call.duration_ms >= 1000, `CallSummary.duration_ms ${m.call.duration_ms} of a call of more than a second`);
  }
  await a.conn.refused('leave_call', { call_id: id }, 'NOT_FOUND');
  await b.conn.refused('join_call', { call_id: id }, 'NOT_FOUND');
  await a.conn.refused('mute_call', { call_id: id, muted: true }, 'NOT_FOUND');
});

check('19.1', 'reject_call ends a private call REJECTED for both ("Declined call"); rejecting again, or a call that does not ring you, is NOT_FOUND', async (t) => {
  const a = await t.user('rja');
  const b = await t.user('rjb');
  const j = await a.conn.call('place_call', { to_username: b.name }, 'call_joined');
  const id = j.call.call_id;
  await callEvent(b.conn, 'RINGING', id);
  await a.conn.refused('reject_call', { call_id: id }, 'NOT_FOUND');
  await b.conn.call('reject_call', { call_id: id }, 'ok');
  for (const [conn, who] of [[a.conn, 'caller'], [b.conn, 'callee']]) {
    const e = await callEvent(conn, 'ENDED', id, () => true, `CallEvent ENDED to the ${who}`);
    eq(e.end_reason, 'CALL_END_REASON_REJECTED', `end_reason to the ${who}`);
    const m = await callMessage(conn, id, 'REJECTED', `"Declined call" to the ${who}`);
    eq([m.text, m.call.duration_ms], ['Declined call', 0], 'text and duration_ms of the system message');
  }
  await b.conn.refused('reject_call', { call_id: id }, 'NOT_FOUND');
  await b.conn.refused('join_call', { call_id: id }, 'NOT_FOUND');
});

check('19.1', 'the caller hanging up before an answer cancels: ENDED CANCELLED to both, "Missed call" (CANCELLED)', async (t) => {
  const a = await t.user('cna');
  const b = await t.user('cnb');
  const j = await a.conn.call('place_call', { to_username: b.name }, 'call_joined');
  const id = j.call.call_id;
  await callEvent(b.conn, 'RINGING', id);
  await a.conn.call('leave_call', { call_id: id }, 'ok');
  for (const [conn, who] of [[a.conn, 'caller'], [b.conn, 'callee']]) {
    const e = await callEvent(conn, 'ENDED', id, () => true, `CallEvent ENDED to the ${who}`);
    eq([e.end_reason, e.answered_at_unix_ms], ['CALL_END_REASON_CANCELLED', 0], `end_reason and answered_at to the ${who}`);
    const m = await callMessage(conn, id, 'CANCELLED', `"Missed call" to the ${who}`);
    eq(m.text, 'Missed call', 'text of the system message');
  }
  await b.conn.refused('join_call', { call_id: id }, 'NOT_FOUND');
});

check('19.1', 'place_call errors: INVALID_ARGUMENT (the public room, yourself, both or neither target), NOT_FOUND (unknown user, conversation), PERMISSION_DENIED (not a member); join/reject/leave/mute of an unknown call NOT_FOUND', async (t) => {
  const a = await t.user('pea');
  const b = await t.user('peb');
  const c = await t.user('pec');
  await a.conn.refused('place_call', { conversation: 'room.public' }, 'INVALID_ARGUMENT');
  await a.conn.refused('place_call', { to_username: a.name }, 'INVALID_ARGUMENT');
  await a.conn.refused('place_call', { to_username: b.name, conversation: dmId(a.id, b.id) }, 'INVALID_ARGUMENT');
  await a.conn.refused('place_call', {}, 'INVALID_ARGUMENT');
  await a.conn.refused('place_call', { to_username: t.name('ghost') }, 'NOT_FOUND');
  await a.conn.refused('place_call', { conversation: 'group.nosuchgroup0' }, 'NOT_FOUND');
  await c.conn.call('open_direct', { username: b.name }, 'conversation');
  await a.conn.refused('place_call', { conversation: dmId(b.id, c.id) }, 'PERMISSION_DENIED');
  const g = await b.conn.call('create_group', { name: 'no calls for a', usernames: [a.name] }, 'conversation');
  // a is invited, not a member (§16).
  await a.conn.refused('place_call', { conversation: g.id }, 'PERMISSION_DENIED');
  await c.conn.refused('place_call', { conversation: g.id }, 'PERMISSION_DENIED');
  const ghost = 'c' + crypto.randomBytes(12).toString('hex');
  await a.conn.refused('join_call', { call_id: ghost }, 'NOT_FOUND');
  await a.conn.refused('reject_call', { call_id: ghost }, 'NOT_FOUND');
  await a.conn.refused('leave_call', { call_id: ghost }, 'NOT_FOUND');
  await a.conn.refused('mute_call', { call_id: ghost, muted: true }, 'NOT_FOUND');
  // A call in someone else's private chat: others may not join it, and
  // leave or mute by a non-participant is NOT_FOUND.
  const j = await b.conn.call('place_call', { to_username: c.name }, 'call_joined');
  await a.conn.refused('join_call', { call_id: j.call.call_id }, 'PERMISSION_DENIED');
  await a.conn.refused('reject_call', { call_id: j.call.call_id }, 'NOT_FOUND');
  await a.conn.refused('leave_call', { call_id: j.call.call_id }, 'NOT_FOUND');
  await a.conn.refused('mute_call', { call_id: j.call.call_id, muted: true }, 'NOT_FOUND');
  await c.conn.refused('leave_call', { call_id: j.call.call_id }, 'NOT_FOUND');
  await b.conn.call('leave_call', { call_id: j.call.call_id }, 'ok');
});

check('19.1', 'place_call in a private chat where either user blocked the other is BLOCKED', async (t) => {
  const a = await t.user('bla');
  const b = await t.user('blb');
  await b.conn.call('block', { username: a.name }, 'ok');
  await a.conn.refused('place_call', { to_username: b.name }, 'BLOCKED');
  await b.conn.refused('place_call', { to_username: a.name }, 'BLOCKED');
  const conv = await b.conn.call('open_direct', { username: a.name }, 'conversation');
  await a.conn.refused('place_call', { conversation: conv.id }, 'BLOCKED');
  await b.conn.refused('place_call', { conversation: conv.id }, 'BLOCKED');
  await b.conn.call('unblock', { username: a.name }, 'ok');
  const j = await a.conn.call('place_call', { to_username: b.name }, 'call_joined');
  await a.conn.call('leave_call', { call_id: j.call.call_id }, 'ok');
});

check('19.1', 'calling a user in another call is BUSY (both see "Missed call", outcome BUSY); a user in a call placing or joining another is CONFLICT', async (t) => {
  const a = await t.user('bua');
  const b = await t.user('bub');
  const c = await t.user('buc');
  const { id } = await answered(a, b);
  await c.conn.refused('place_call', { to_username: a.name }, 'BUSY');
  for (const [conn, who] of [[a.conn, 'busy callee'], [c.conn, 'caller']]) {
    const m = await conn.event('message', (e) => e.message.system && e.message.call && e.message.call.outcome === 'CALL_END_REASON_BUSY' &&
      e.message.conversation === dmId(a.id, c.id), `"Missed call" with outcome BUSY to the ${who}`).then((e) => e.message);
    eq([m.conversation, m.text], [dmId(a.id, c.id), 'Missed call'], `conversation and text of the BUSY system message to the ${who}`);
  }
  await a.conn.refused('place_call', { to_username: c.name }, 'CONFLICT');
  // A caller whose own call still rings is in that call too.
  const d = await t.user('bud');
  const ringing = await d.conn.call('place_call', { to_username: c.name }, 'call_joined');
  await d.conn.refused('place_call', { to_username: b.name }, 'CONFLICT');
  await d.conn.call('leave_call', { call_id: ringing.call.call_id }, 'ok');
  const g = await c.conn.call('create_group', { name: 'busy people', usernames: [a.name] }, 'conversation');
  await a.conn.call('join_group', { conversation: g.id }, 'conversation');
  const jg = await c.conn.call('place_call', { conversation: g.id }, 'call_joined');
  await a.conn.refused('join_call', { call_id: jg.call.call_id }, 'CONFLICT');
  await a.conn.refused('place_call', { conversation: g.id }, 'CONFLICT');
  await c.conn.refused('join_call', { call_id: id }, 'PERMISSION_DENIED');
  await a.conn.call('leave_call', { call_id: id }, 'ok');
  const joined = await a.conn.call('join_call', { call_id: jg.call.call_id }, 'call_joined');
  eq(joined.call.call_id, jg.call.call_id, 'the group call joined after leaving the other');
});

check('19.2', 'a group call: "<name> started a call" (outcome UNSPECIFIED) in the group, every member rung (not invitees), a reject stops only that ringing, place_call joins the running call, the call ends COMPLETED when the last leaves', async (t) => {
  const a = await t.user('gca');
  const b = await t.user('gcb');
  const c = await t.user('gcc');
  const d = await t.user('gcd');
  const g = await a.conn.call('create_group', { name: 'callers', usernames: [b.name, c.name, d.name] }, 'conversation');
  await b.conn.call('join_group', { conversation: g.id }, 'conversation');
  await c.conn.call('join_group', { conversation: g.id }, 'conversation');
  const j = await a.conn.call('place_call', { conversation: g.id }, 'call_joined');
  checkJoined(j, 'the group caller');
  const id = j.call.call_id;
  eq([j.call.kind, j.call.state, j.call.conversation], ['CONVERSATION_KIND_GROUP', 'CALL_STATE_RINGING', g.id], 'kind, state, conversation of a group call');
  eq([...j.call.ringing_ids].sort(), [b.id, c.id].sort(), 'ringing_ids of a group call (members, not the invitee)');
  const started = await callMessage(b.conn, id, 'UNSPECIFIED', '"<name> started a call" in the group');
  eq([started.text, started.conversation], [`${a.name} started a call`, g.id], 'text and conversation of the group call\'s first system message');
  await callEvent(b.conn, 'RINGING', id);
  await callEvent(c.conn, 'RINGING', id);
  await d.conn.refused('join_call', { call_id: id }, 'PERMISSION_DENIED');
  const jb = await b.conn.call('join_call', { call_id: id }, 'call_joined');
  eq(jb.call.state, 'CALL_STATE_ACTIVE', 'state after the second participant joined');
  await callEvent(c.conn, 'UPDATED', id, (x) => x.participants.some((p) => p.user_id === b.id), 'CallEvent UPDATED (b joined) to a member still being rung');
  await c.conn.call('reject_call', { call_id: id }, 'ok');
  await callEvent(c.conn, 'UPDATED', id, (x) => !x.ringing_ids.includes(c.id), 'CallEvent UPDATED to the user who rejected (the user who caused it)');
  const up = await callEvent(a.conn, 'UPDATED', id, (x) => !x.ringing_ids.includes(c.id), 'CallEvent UPDATED after the reject');
  eq([up.state, ids(up.participants)], ['CALL_STATE_ACTIVE', [a.id, b.id].sort()], 'state and participants after a group reject');
  await c.conn.refused('reject_call', { call_id: id }, 'NOT_FOUND');
  const jc = await c.conn.call('place_call', { conversation: g.id }, 'call_joined');
  eq(jc.call.call_id, id, 'call_id of the call place_call joined');
  eq(ids(jc.call.participants), [a.id, b.id, c.id].sort(), 'participants after c joined');
  ok(new Set([j.stream_id, jb.stream_id, jc.stream_id]).size === 3, 'stream ids are not distinct');
  await a.conn.call('leave_call', { call_id: id }, 'ok');
  const left = await callEvent(b.conn, 'UPDATED', id, (x) => !x.participants.some((p) => p.user_id === a.id), 'CallEvent UPDATED after the caller left');
  eq(left.state, 'CALL_STATE_ACTIVE', 'state of a group call after its caller left');
  await b.conn.call('leave_call', { call_id: id }, 'ok');
  await c.conn.call('leave_call', { call_id: id }, 'ok');
  const e = await callEvent(c.conn, 'ENDED', id);
  eq(e.end_reason, 'CALL_END_REASON_COMPLETED', 'end_reason of a group call its last participant left');
  const m = await callMessage(b.conn, id, 'COMPLETED', '"Call ended (m:ss)" in the group');
  ok(/^Call ended \(\d+:\d\d\)$/.test(m.text), `system message "${m.text}", want "Call ended (m:ss)"`);
});

check('19.1', 'mute_call: Ok, UPDATED with the participant muted to the others; unmuting clears it', async (t) => {
  const a = await t.user('mua');
  const b = await t.user('mub');
  const { id } = await answered(a, b);
  await a.conn.call('mute_call', { call_id: id, muted: true }, 'ok');
  const m = await callEvent(b.conn, 'UPDATED', id, (x) => x.participants.some((p) => p.user_id === a.id && p.muted), 'CallEvent UPDATED with the caller muted');
  eq(m.participants.find((p) => p.user_id === b.id).muted, false, 'the other participant\'s muted');
  await a.conn.call('mute_call', { call_id: id, muted: false }, 'ok');
  await callEvent(b.conn, 'UPDATED', id, (x) => x.participants.some((p) => p.user_id === a.id && !p.muted), 'CallEvent UPDATED with the caller unmuted');
  await b.conn.call('leave_call', { call_id: id }, 'ok');
});

check('19.1', 'joining from a second device moves the call there (a new stream id and key); the first device can no longer leave or mute it (NOT_FOUND)', async (t) => {
  const a = await t.user('mva');
  const b = await t.user('mvb');
  const { id, jb } = await answered(a, b);
  const b2 = await t.login(b, { label: 'callee second device' });
  const jb2 = await b2.call('join_call', { call_id: id }, 'call_joined');
  checkJoined(jb2, 'the second device');
  ok(jb2.stream_id !== jb.stream_id, 'the second device got the first device\'s stream id');
  ok(!jb2.media_key.equals(jb.media_key), 'the second device got the first device\'s media key');
  eq(jb2.call.participants.filter((p) => p.user_id === b.id).map((p) => p.stream_id), [jb2.stream_id], 'the callee\'s participants after the move');
  await callEvent(a.conn, 'UPDATED', id, (x) => x.participants.some((p) => p.stream_id === jb2.stream_id), 'CallEvent UPDATED with the new stream id');
  await b.conn.refused('leave_call', { call_id: id }, 'NOT_FOUND');
  await b.conn.refused('mute_call', { call_id: id, muted: true }, 'NOT_FOUND');
  await b2.call('mute_call', { call_id: id, muted: true }, 'ok');
  await b2.call('leave_call', { call_id: id }, 'ok');
  const e = await callEvent(a.conn, 'ENDED', id);
  eq(e.end_reason, 'CALL_END_REASON_COMPLETED', 'end_reason');
});

check('19.1', 'after a move to a second device the old stream stops within moments: nothing is sent to it (probe replies, the others\' audio), its packets are not forwarded, the new stream works', async (t) => {
  const a = await t.user('osa');
  const b = await t.user('osb');
  const { id, ja, jb } = await answered(a, b);
  const A = await onUdp(t, ja, 'caller udp');
  const B = await onUdp(t, jb, 'first device udp');
  let p = payload('before the move');
  await A.udp.send(A.stream.audio(p), A.addr);
  await hear(B.udp, B.key, ja.stream_id, p, 'the caller\'s audio on the first device');
  const b2 = await t.login(b, { label: 'callee second device' });
  const jb2 = await b2.call('join_call', { call_id: id }, 'call_joined');
  // "Within moments": the old stream's gateway hears of the move from the
  // call's owner, a hop away from the join's reply.
  await sleep(500);
  const tokensBefore = B.tokens.length;
  // The first device goes on as if nothing happened.
  for (let i = 0; i < 3; i++) await B.udp.send(B.stream.probe(), B.addr);
  await B.udp.send(B.stream.audio(payload('old stream')), B.addr);
  const B2 = await onUdp(t, jb2, 'second device udp');
  p = payload('to the new stream');
  await A.udp.send(A.stream.audio(p), A.addr);
  await hear(B2.udp, B2.key, ja.stream_id, p, 'the caller\'s audio on the second device');
  const q = payload('from the new stream');
  await B2.udp.send(B2.stream.audio(q), B2.addr);
  await hear(A.udp, A.key, jb2.stream_id, q, 'the second device\'s audio at the caller');
  await settle(a.conn, b2);
  eq(audioOn(A.udp, A.key, jb.stream_id).length, 0, 'audio of the old stream forwarded');
  const names = { [jb.stream_id]: 'the old stream', [jb2.stream_id]: 'the new stream', [ja.stream_id]: 'the caller' };
  const old = B.udp.take().map((d) => {
    const f = media.parse(d.msg);
    return f ? `type ${f.type} of ${names[f.stream] || f.stream}${media.open(jb.media_key, d.msg) ? ' (opens with the old key)' : ''}` : `${d.msg.length} bytes`;
  });
  eq(old, [], 'datagrams sent to the old stream after the move');
  eq(B.tokens.length - tokensBefore, 0, 'path token replies sent to the old stream after the move');
  eq(mediaFrames(b.conn).length, 0, 'media frames sent to the first device after the move');
  await b2.call('leave_call', { call_id: id }, 'ok');
});

check('19.2', 'a call nobody answers ends MISSED at the ring deadline (45 s): ENDED MISSED to both, "Missed call" (MISSED)', async (t) => {
  const a = await t.user('msa');
  const b = await t.user('msb');
  const j = await a.conn.call('place_call', { to_username: b.name }, 'call_joined');
  const id = j.call.call_id;
  await callEvent(b.conn, 'RINGING', id);
  // The caller does what §19.3 asks of a participant: probes, then a
  // keepalive at least every 15 s (here every 5 s).
  const A = await onUdp(t, j, 'caller udp');
  const keep = setInterval(() => A.udp.send(A.stream.keepalive(), A.addr), 5000);
  let e;
  try {
    e = await callEvent(a.conn, 'ENDED', id, () => true, 'CallEvent ENDED', t.env.ringMs + 15000);
  } finally {
    clearInterval(keep);
  }
  eq(e.end_reason, 'CALL_END_REASON_MISSED', 'end_reason of an unanswered call');
  ok(Date.now() >= j.call.ring_deadline_unix_ms - 1000, `the call ended ${j.call.ring_deadline_unix_ms - Date.now()} ms before its ring deadline`);
  await callEvent(b.conn, 'ENDED', id, (x) => x.end_reason === 'CALL_END_REASON_MISSED', 'CallEvent ENDED MISSED to the callee');
  const m = await callMessage(b.conn, id, 'MISSED', '"Missed call" (MISSED)');
  eq(m.text, 'Missed call', 'text');
});

check('19.2', 'a group call nobody joins stops ringing at the ring deadline but goes on: ringing_ids empties, and a member can still join', async (t) => {
  const a = await t.user('gra');
  const b = await t.user('grb');
  const g = await a.conn.call('create_group', { name: 'no answer', usernames: [b.name] }, 'conversation');
  await b.conn.call('join_group', { conversation: g.id }, 'conversation');
  const j = await a.conn.call('place_call', { conversation: g.id }, 'call_joined');
  const id = j.call.call_id;
  await callEvent(b.conn, 'RINGING', id);
  const A = await onUdp(t, j, 'caller udp');
  const keep = setInterval(() => A.udp.send(A.stream.keepalive(), A.addr), 5000);
  try {
    const up = await callEvent(a.conn, 'UPDATED', id, (x) => x.ringing_ids.length === 0, 'CallEvent UPDATED with nobody ringing after the ring deadline', t.env.ringMs + 15000);
    ok(Date.now() >= j.call.ring_deadline_unix_ms - 1000, 'the ringing stopped before the ring deadline');
    ok(up.state !== 'CALL_STATE_ENDED', 'the group call ended at the ring deadline');
    await callEvent(b.conn, 'UPDATED', id, (x) => x.ringing_ids.length === 0, 'CallEvent UPDATED to the member no longer rung');
    eq(b.conn.take((f) => f.body === 'call_event' && f.call_event.kind === 'KIND_ENDED').length, 0, 'CallEvent ENDED of a group call at its ring deadline');
    const jb = await b.conn.call('join_call', { call_id: id }, 'call_joined');
    eq([jb.call.state, ids(jb.call.participants)], ['CALL_STATE_ACTIVE', [a.id, b.id].sort()], 'state and participants after joining past the ring deadline');
  } finally {
    clearInterval(keep);
  }
});

check('19.3', 'a participant whose connection goes away and does not come back is removed after about 8 s: the private call ends LOST ("Call ended (m:ss)", outcome LOST)', async (t) => {
  const a = await t.user('lsa');
  const b = await t.user('lsb');
  const { id, ja } = await answered(a, b);
  const A = await onUdp(t, ja, 'caller udp');
  const keep = setInterval(() => A.udp.send(A.stream.keepalive(), A.addr), 1000);
  try {
    const gone = Date.now();
    b.conn.close();
    const e = await callEvent(a.conn, 'ENDED', id, () => true, 'CallEvent ENDED after the callee vanished', 40000);
    eq(e.end_reason, 'CALL_END_REASON_LOST', 'end_reason');
    const after = Date.now() - gone;
    ok(after >= 5000, `the call ended ${after} ms after the connection went, well before 8 s`);
    const m = await callMessage(a.conn, id, 'LOST', '"Call ended" (LOST)');
    ok(/^Call ended \(\d+:\d\d\)$/.test(m.text), `system message "${m.text}", want "Call ended (m:ss)"`);
  } finally {
    clearInterval(keep);
  }
});

check('19.3', 'participants that send a keepalive every 12 s (by UDP, or as media frames) stay; one the server hears nothing from, by either path, for 20 s is removed about 8 s later (a group call goes on)', async (t) => {
  const a = await t.user('aba');
  const b = await t.user('abb');
  const c = await t.user('abc');
  const g = await a.conn.call('create_group', { name: 'quiet one', usernames: [b.name, c.name] }, 'conversation');
  await b.conn.call('join_group', { conversation: g.id }, 'conversation');
  await c.conn.call('join_group', { conversation: g.id }, 'conversation');
  const ja = await a.conn.call('place_call', { conversation: g.id }, 'call_joined');
  const id = ja.call.call_id;
  const jc = await c.conn.call('join_call', { call_id: id }, 'call_joined');
  await b.conn.call('join_call', { call_id: id }, 'call_joined'); // b never sends a packet
  const since = Date.now();
  await callEvent(a.conn, 'UPDATED', id, (x) => x.participants.length === 3, 'CallEvent UPDATED with three participants');
  a.conn.take((f) => f.body === 'call_event'); // older events
  // a keeps its stream alive over UDP, c with media frames on its
  // connection ("by either path").
  const A = await onUdp(t, ja, 'a udp');
  const C = new media.Stream(jc);
  c.conn.send({ request_id: 0, media: { packet: C.probe() } });
  const keep = setInterval(() => {
    A.udp.send(A.stream.keepalive(), A.addr);
    c.conn.send({ request_id: 0, media: { packet: C.keepalive() } });
  }, 12000);
  try {
    const up = await callEvent(a.conn, 'UPDATED', id, (x) => !x.participants.some((p) => p.user_id === b.id), 'CallEvent UPDATED without the silent participant', 60000);
    const after = Date.now() - since;
    ok(after >= 19000, `the silent participant was removed ${after} ms after joining: a stream counts as abandoned after 20 s of silence`);
    eq([up.state, ids(up.participants)], ['CALL_STATE_ACTIVE', [a.id, c.id].sort()], 'state and participants after the silent one was removed');
  } finally {
    clearInterval(keep);
  }
  await sleep(1000);
  eq(a.conn.take((f) => f.body === 'call_event' && f.call_event.kind === 'KIND_ENDED').length, 0, 'CallEvent ENDED while two participants keep sending keepalives');
  await a.conn.call('leave_call', { call_id: id }, 'ok');
  await c.conn.call('leave_call', { call_id: id }, 'ok');
});

check('19.3', 'reconnecting: after a resume, join_call again gives a new stream id and key and the call goes on', async (t) => {
  const a = await t.user('rca');
  const b = await t.user('rcb');
  const { id, ja, jb } = await answered(a, b);
  b.conn.close();
  const b2 = await t.resume(b.token, { label: 'callee resumed' });
  const again = await b2.call('join_call', { call_id: id }, 'call_joined');
  ok(again.stream_id !== jb.stream_id && !again.media_key.equals(jb.media_key), 'the rejoin kept the old stream id or key');
  const A = await onUdp(t, ja, 'caller udp');
  const B = await onUdp(t, again, 'callee udp');
  const p = payload('after resume');
  await A.udp.send(A.stream.audio(p), A.addr);
  await hear(B.udp, B.key, ja.stream_id, p, 'the caller\'s audio after the callee rejoined');
  await sleep(9000);
  const { frame } = await a.conn.request('mute_call', { call_id: id, muted: true });
  eq(frame.body, 'ok', 'mute_call 9 s after the rejoin (the call should go on)');
});

// ---- media ----

check('19.3', 'UDP path tokens: a probe from an unproven address is answered with a probe reply carrying an 8-byte token (type 3, its stream id, sequence number and timestamp, sealed with the key in direction 1, from udp_addr); its echo is answered empty and proves the address; a probe with a payload of another length is dropped', async (t) => {
  const a = await t.user('pra');
  const b = await t.user('prb');
  const { ja } = await answered(a, b);
  const udp = await t.udp('caller udp');
  const s = new media.Stream(ja);
  const reply = (seq, what) => udp.next((d) => { const f = media.parse(d.msg); return f && f.seq === seq; }, what);
  const seq = s.seq;
  const pk = media.seal(s.key, { type: media.TYPE.probe, stream: s.id, seq: s.next(), ts: 123456789 });
  const d = await udp.repeat(() => udp.send(pk, ja.udp_addr), () => true, 'a probe reply', { everyMs: 200, timeoutMs: 10000 });
  eq(d.from, ja.udp_addr, 'source address of the probe reply');
  const f = media.parse(d.msg);
  ok(f, `the reply is ${d.msg.length} bytes, shorter than 32`);
  eq([f.version, f.type, f.flags, f.level, f.stream, f.seq, f.ts], [1, 3, 0, 0, s.id, seq, 123456789], 'probe reply header: version, type, flags, level, stream id, sequence, timestamp');
  const o = media.open(s.key, d.msg, media.DOWN);
  ok(o, 'the probe reply does not open with the media key in direction 1');
  ok(!media.open(s.key, d.msg, media.UP), 'the probe reply opens in direction 0 too');
  eq([d.msg.length, o.payload.length], [40, 8], 'length of the first probe reply and of its payload (a path token)');
  udp.take();
  // A probe with a 5-byte payload: dropped, no reply.
  const odd = s.next();
  await udp.send(media.seal(s.key, { type: media.TYPE.probe, stream: s.id, seq: odd, ts: 1 }, Buffer.alloc(5)), ja.udp_addr);
  // The echo: a probe whose payload is the token.
  const echo = s.next();
  await udp.send(media.seal(s.key, { type: media.TYPE.probe, stream: s.id, seq: echo, ts: 2 }, o.payload), ja.udp_addr);
  const e = await reply(echo, 'the reply to the probe echoing the token');
  const eo = media.open(s.key, e.msg);
  ok(eo && eo.type === 3, 'the reply to the echo does not open as a probe reply');
  eq([e.msg.length, eo.ts], [32, 2], 'length (empty payload) and timestamp of the reply to the echo');
  // From the proven address a probe is answered empty.
  const later = s.next();
  await udp.send(media.seal(s.key, { type: media.TYPE.probe, stream: s.id, seq: later, ts: 3 }), ja.udp_addr);
  const l = await reply(later, 'the reply to a probe from the proven address');
  eq(l.msg.length, 32, 'length of a probe reply at a proven address');
  await settle(a.conn);
  eq(udp.take((x) => { const g = media.parse(x.msg); return g && g.seq === odd; }).length, 0, 'replies to a probe with a 5-byte payload');
});

check('19.4', 'UDP: audio reaches the other participant re-sealed with its key (direction 1), the speaker\'s header kept (stream id, sequence, timestamp, flags, level), payload intact, each way', async (t) => {
  const a = await t.user('aua');
  const b = await t.user('aub');
  const { ja, jb } = await answered(a, b);
  const A = await onUdp(t, ja, 'caller udp');
  const B = await onUdp(t, jb, 'callee udp');
  for (const [from, to, j, tj, who] of [[A, B, ja, jb, 'caller to callee'], [B, A, jb, ja, 'callee to caller']]) {
    const p = payload(who);
    const seq = from.stream.seq;
    const pk = from.stream.audio(p, { flags: 0x01, level: 17 });
    const sent = media.parse(pk);
    await from.udp.send(pk, from.addr);
    const got = await to.udp.next((d) => { const f = media.parse(d.msg); return f && f.type === 1 && f.stream === j.stream_id; }, `${who} audio`);
    eq(got.from, tj.udp_addr, `${who}: source address`);
    const f = media.parse(got.msg);
    eq([f.version, f.type, f.flags, f.level, f.stream, f.seq, f.ts], [1, 1, 0x01, 17, j.stream_id, seq, sent.ts], `${who}: header as the speaker sent it`);
    eq(got.msg.length, pk.length, `${who}: packet length`);
    const o = media.open(tj.media_key, got.msg, media.DOWN);
    ok(o, `${who}: the packet does not open with the listener's key in direction 1`);
    ok(o.payload.equals(p), `${who}: payload "${o.payload}" differs from the one sent`);
    ok(!media.open(j.media_key, got.msg, media.DOWN), `${who}: the forwarded packet opens with the speaker's key`);
  }
  // A largest payload (1200 bytes) passes too.
  const big = crypto.randomBytes(1200);
  await A.udp.send(A.stream.audio(big), A.addr);
  await hear(B.udp, B.key, ja.stream_id, big, 'a 1200-byte payload');
});

check('19.4', 'UDP: packets that fail to open (another key, direction 1, another stream\'s id, a changed byte), a version other than 1, a payload above 1200 bytes, and replays are dropped; the stream goes on', async (t) => {
  const a = await t.user('bda');
  const b = await t.user('bdb');
  const { ja, jb } = await answered(a, b);
  const A = await onUdp(t, ja, 'caller udp');
  const B = await onUdp(t, jb, 'callee udp');
  const s = A.stream;
  const bad = [];
  const wrongKey = crypto.randomBytes(32);
  bad.push(['another key', media.seal(wrongKey, { type: 1, flags: 1, level: 20, stream: s.id, seq: s.next(), ts: 960 }, payload('wrong key'))]);
  bad.push(['direction 1', media.seal(s.key, { type: 1, flags: 1, level: 20, stream: s.id, seq: s.next(), ts: 1920 }, payload('down'), media.DOWN)]);
  bad.push(['version 2', media.seal(s.key, { version: 2, type: 1, flags: 1, level: 20, stream: s.id, seq: s.next(), ts: 2880 }, payload('v2'))]);
  bad.push(['the callee\'s stream id sealed with the caller\'s key', media.seal(s.key, { type: 1, flags: 1, level: 20, stream: jb.stream_id, seq: 77, ts: 3840 }, payload('spoof'))]);
  bad.push(['the caller\'s stream id sealed with the callee\'s key', media.seal(jb.media_key, { type: 1, flags: 1, level: 20, stream: s.id, seq: s.next(), ts: 4800 }, payload('spoof2'))]);
  bad.push(['a 1201-byte payload (1233 bytes)', s.audio(crypto.randomBytes(1201))]);
  const tampered = s.audio(payload('tampered'));
  tampered[tampered.length - 20] ^= 0xff;
  bad.push(['a changed byte', tampered]);
  for (const [, pk] of bad) await A.udp.send(pk, A.addr);
  // One good packet, then the same packet again (a replay).
  const p = payload('good');
  const good = s.audio(p);
  await A.udp.send(good, A.addr);
  await hear(B.udp, B.key, ja.stream_id, p, 'the good packet after the bad ones');
  await A.udp.send(good, A.addr);
  await B.udp.send(B.stream.keepalive(), B.addr);
  const p2 = payload('after the replay');
  await A.udp.send(s.audio(p2), A.addr);
  await hear(B.udp, B.key, ja.stream_id, p2, 'a good packet after the replay');
  await settle(a.conn, b.conn);
  const rest = B.udp.take((d) => { const f = media.parse(d.msg); return f && f.type === 1; });
  const what = rest.map((d) => { const f = media.parse(d.msg); const o = media.open(B.key, d.msg); return `stream ${f.stream} seq ${f.seq} "${o ? o.payload : 'unopenable'}"`; });
  eq(what, [], 'audio forwarded beyond the two good packets (a bad packet or the replay)');
});

check('19.4', 'the gateway keeps a replay window: packets out of order within the 1024 before the newest pass once, older ones are dropped; sequence numbers wrap modulo 2^32', async (t) => {
  const a = await t.user('rwa');
  const b = await t.user('rwb');
  const { ja, jb } = await answered(a, b);
  const A = await t.udp('caller udp');
  const s = new media.Stream(ja, { seq: 0xfffffff0 });
  await probe(attach(A, s, ja.udp_addr));
  const B = await onUdp(t, jb, 'callee udp');
  const base = s.seq; // a little below 2^32: the numbers below wrap
  const send = (d, tag) => A.send(media.seal(s.key, { type: 1, flags: 1, level: 10, stream: s.id, seq: (base + d) >>> 0, ts: (d * 960) >>> 0 }, Buffer.from(tag)), ja.udp_addr);
  const order = [[5, 'n+5'], [3, 'n+3 (late, within the window)'], [4, 'n+4'], [3, 'n+3 again'], [40, 'n+40 (past 2^32)'],
    [2000, 'n+2000'], [977, 'n+977 (1023 before the newest)'], [975, 'n+975 (1025 before the newest)'], [6, 'n+6 (far older)'], [1500, 'n+1500']];
  for (const [d, tag] of order) { await send(d, tag); await sleep(5); }
  await settle(a.conn, b.conn);
  const got = B.udp.take().map((x) => media.open(B.key, x.msg)).filter((o) => o && o.type === 1).map((o) => o.payload.toString());
  eq(got, ['n+5', 'n+3 (late, within the window)', 'n+4', 'n+40 (past 2^32)', 'n+2000', 'n+977 (1023 before the newest)', 'n+1500'], 'audio forwarded, in the order sent');
});

check('19.4', 'the replay window is the newest and the 1023 before it: a packet exactly 1024 before the newest is dropped, one 1023 before it passes', async (t) => {
  const a = await t.user('rxa');
  const b = await t.user('rxb');
  const { ja, jb } = await answered(a, b);
  const A = await onUdp(t, ja, 'caller udp');
  const B = await onUdp(t, jb, 'callee udp');
  const s = A.stream;
  const newest = (s.seq + 2000) >>> 0;
  await A.udp.send(media.seal(s.key, { type: 1, flags: 1, level: 10, stream: s.id, seq: newest, ts: 0 }, Buffer.from('newest')), A.addr);
  await hear(B.udp, B.key, ja.stream_id, Buffer.from('newest'), 'the newest packet');
  for (const d of [1024, 1023]) {
    await A.udp.send(media.seal(s.key, { type: 1, flags: 1, level: 10, stream: s.id, seq: (newest - d) >>> 0, ts: 0 }, Buffer.from(`newest - ${d}`)), A.addr);
    await sleep(5);
  }
  await hear(B.udp, B.key, ja.stream_id, Buffer.from('newest - 1023'), 'the packet 1023 before the newest', 3000);
  await settle(a.conn, b.conn);
  const got = B.udp.take().map((x) => media.open(B.key, x.msg)).filter((o) => o && o.type === 1).map((o) => o.payload.toString());
  eq(got.filter((p) => p === 'newest - 1024'), [], 'the packet 1024 before the newest was forwarded');
});

check('19.1', 'while muted the server forwards none of a participant\'s audio; after unmuting it does again', async (t) => {
  const a = await t.user('mma');
  const b = await t.user('mmb');
  const { id, ja, jb } = await answered(a, b);
  const A = await onUdp(t, ja, 'caller udp');
  const B = await onUdp(t, jb, 'callee udp');
  const p0 = payload('before mute');
  await A.udp.send(A.stream.audio(p0), A.addr);
  await hear(B.udp, B.key, ja.stream_id, p0, 'audio before the mute');
  await a.conn.call('mute_call', { call_id: id, muted: true }, 'ok');
  for (let i = 0; i < 20; i++) {
    await A.udp.send(A.stream.audio(payload(`muted ${i}`)), A.addr);
    await sleep(20);
  }
  await settle(a.conn, b.conn);
  const heard = audioOn(B.udp, B.key, ja.stream_id);
  eq(heard.length, 0, 'audio packets of a muted participant forwarded');
  await a.conn.call('mute_call', { call_id: id, muted: false }, 'ok');
  const p1 = payload('unmuted');
  await A.udp.send(A.stream.audio(p1), A.addr);
  await hear(B.udp, B.key, ja.stream_id, p1, 'audio after unmuting');
});

check('19.3', 'media frames: a probe on the connection is answered with a probe reply frame; audio sent as frames reaches a listener (on WebSocket) that never used UDP as media frames (request_id 0); a bad packet gets no reply and no error', async (t) => {
  const a = await t.user('mfa');
  const b = await t.user('mfb', { transport: 'ws' });
  const { ja, jb } = await answered(a, b);
  const s = new media.Stream(ja);
  const seq = s.seq;
  a.conn.send({ request_id: 0, media: { packet: s.probe() } });
  const r = await a.conn.next((f) => f.body === 'media', 'a probe reply as a media frame');
  eq(r.request_id, 0, 'request_id of the probe reply frame');
  const o = media.open(s.key, r.media.packet);
  ok(o, 'the probe reply frame does not open with the media key (direction 1)');
  eq([o.type, o.stream, o.seq, o.payload.length], [3, s.id, seq, 0], 'probe reply type, stream id, sequence, payload length (never a token on the connection)');
  const p = payload('as a frame');
  a.conn.send({ request_id: 0, media: { packet: s.audio(p) } });
  await hearFrame(b.conn, jb.media_key, ja.stream_id, p, 'the caller\'s audio as a media frame to a listener who only listens');
  // A packet that does not open: dropped silently.
  a.conn.send({ request_id: 0, media: { packet: crypto.randomBytes(60) } });
  a.conn.send({ request_id: 0, media: { packet: Buffer.from([1, 2, 3]) } });
  await settle(a.conn, b.conn);
  eq(a.conn.take((f) => f.body === 'error' || f.body === 'media').map((f) => f.body), [], 'frames answering bad media packets');
  eq(mediaFrames(b.conn).length, 0, 'media frames forwarded for bad packets');
});

check('19.3', 'the gateway sends media on the path the listener\'s last packet took: on the connection (WebSocket) until one came by UDP, then UDP, then the connection again after a media frame', async (t) => {
  const a = await t.user('pta');
  const b = await t.user('ptb', { transport: 'ws' });
  const { ja, jb } = await answered(a, b);
  const A = await onUdp(t, ja, 'caller udp');
  const sb = new media.Stream(jb);
  let p = payload('1');
  await A.udp.send(A.stream.audio(p), A.addr);
  await hearFrame(b.conn, jb.media_key, ja.stream_id, p, 'audio as a frame to a listener that sent nothing by UDP');
  const ub = await t.udp('callee udp');
  await probe(attach(ub, sb, jb.udp_addr));
  p = payload('2');
  await A.udp.send(A.stream.audio(p), A.addr);
  await hear(ub, jb.media_key, ja.stream_id, p, 'audio by UDP after the listener\'s probe came by UDP');
  // A probe by UDP is answered by UDP, one as a frame with a frame.
  const onFrame = sb.seq;
  b.conn.send({ request_id: 0, media: { packet: sb.probe() } });
  const rf = await b.conn.next((f) => f.body === 'media' && (() => { const o = media.open(jb.media_key, f.media.packet); return o && o.type === 3 && o.seq === onFrame; })(), 'the probe reply as a frame to a probe sent as a frame');
  ok(rf, 'no probe reply frame');
  b.conn.send({ request_id: 0, media: { packet: sb.keepalive() } });
  await settle(b.conn);
  p = payload('3');
  await A.udp.send(A.stream.audio(p), A.addr);
  await hearFrame(b.conn, jb.media_key, ja.stream_id, p, 'audio as a frame after the listener\'s last packet came as a frame');
  // The caller switches to frames: its audio still arrives.
  p = payload('4');
  a.conn.send({ request_id: 0, media: { packet: A.stream.audio(p) } });
  await hearFrame(b.conn, jb.media_key, ja.stream_id, p, 'audio the speaker sent as a frame after using UDP');
});

check('19.3', 'moving networks: the first packet from a new address is answered there with a path token and the media stays at the proven address; the echo of the token moves the stream there', async (t) => {
  const a = await t.user('nwa');
  const b = await t.user('nwb');
  const { ja, jb } = await answered(a, b);
  const A = await onUdp(t, ja, 'caller udp');
  const B = await onUdp(t, jb, 'callee udp');
  let p = payload('old address');
  await A.udp.send(A.stream.audio(p), A.addr);
  await hear(B.udp, B.key, ja.stream_id, p, 'audio at the old address');
  const moved = await t.udp('callee new udp');
  const M = attach(moved, B.stream, B.addr, { echo: false });
  const k = B.stream.seq;
  await moved.send(B.stream.keepalive(), B.addr);
  const deadline = Date.now() + 10000;
  while (!M.tokens.length && Date.now() < deadline) await sleep(20);
  eq(M.tokens.map((x) => [x.seq, x.size]), [[k, 40]], 'path token replies at the new address (the keepalive\'s sequence number, 40 bytes)');
  p = payload('before the echo');
  await A.udp.send(A.stream.audio(p), A.addr);
  await hear(B.udp, B.key, ja.stream_id, p, 'audio at the proven old address before the echo');
  M.echo = true;
  await probe(M);
  p = payload('new address');
  await A.udp.send(A.stream.audio(p), A.addr);
  await hear(moved, B.key, ja.stream_id, p, 'audio at the new address after the echo');
  eq(audioOn(B.udp, B.key, ja.stream_id).length, 0, 'audio still sent to the old address');
});

check('19.4', 'an address that has not proven itself gets only path tokens: authentic packets from it are answered with one 40-byte token reply at most per packet and per 100 ms, never media; the stream\'s media stays where it was proven', async (t) => {
  const a = await t.user('spa');
  const b = await t.user('spb');
  const { ja, jb } = await answered(a, b);
  const A = await onUdp(t, ja, 'caller udp');
  const B = await onUdp(t, jb, 'callee udp');
  // Another address sends the caller's packets (as one spoofing it would:
  // here with the key, the worst case).
  const other = await t.udp('unproven address');
  const V = attach(other, A.stream, A.addr, { echo: false });
  const sent = new Map();
  const t0 = Date.now();
  for (let i = 0; i < 20; i++) {
    const pk = A.stream.audio(payload(`from elsewhere ${i}`));
    const f = media.parse(pk);
    sent.set(f.seq, f.ts);
    await other.send(pk, A.addr);
    await sleep(5);
  }
  const spread = Date.now() - t0;
  const q = payload('to the caller');
  await B.udp.send(B.stream.audio(q), B.addr);
  await hear(A.udp, A.key, jb.stream_id, q, 'the callee\'s audio at the caller\'s proven address');
  await settle(a.conn, b.conn);
  ok(V.tokens.length >= 1, 'no path token reply at the unproven address');
  for (const x of V.tokens) {
    eq(x.size, 40, 'size of a path token reply');
    ok(sent.has(x.seq) && sent.get(x.seq) === x.ts, `a token reply with sequence number ${x.seq} and timestamp ${x.ts}, not those of a packet sent from there`);
  }
  const window = Math.max(spread, V.tokens.length ? V.tokens[V.tokens.length - 1].at - V.tokens[0].at : 0);
  ok(V.tokens.length <= 1 + Math.floor(window / 100) + 1, `${V.tokens.length} token replies to 20 audio packets within ${window} ms, want at most one every 100 ms`);
  eq(other.take().map((d) => d.msg.length), [], 'anything else sent to the unproven address');
});

check('19.3', 'a listener that never echoes its path token hears the call as media frames on its connection, its socket getting nothing but tokens', async (t) => {
  const a = await t.user('nea');
  const b = await t.user('neb');
  const { ja, jb } = await answered(a, b);
  const A = await onUdp(t, ja, 'caller udp');
  const udp = await t.udp('callee udp that never echoes');
  const B = attach(udp, new media.Stream(jb), jb.udp_addr, { echo: false });
  for (let i = 0; i < 3; i++) { await udp.send(B.stream.probe(), B.addr); await sleep(200); }
  ok(B.tokens.length >= 1, 'no path token reply to the probes');
  const p = payload('to a listener without a proven address');
  await A.udp.send(A.stream.audio(p), A.addr);
  await hearFrame(b.conn, jb.media_key, ja.stream_id, p, 'the caller\'s audio as a media frame');
  await settle(a.conn, b.conn);
  eq(udp.take().map((d) => d.msg.length), [], 'datagrams other than token replies at the listener\'s socket');
});

check('19.3', 'the gateway takes a burst of 50 packets on a stream and at most 100 a second; it drops the rest', async (t) => {
  const a = await t.user('rta');
  const b = await t.user('rtb');
  const { ja, jb } = await answered(a, b);
  const A = await onUdp(t, ja, 'caller udp');
  const B = await onUdp(t, jb, 'callee udp');
  await sleep(1000); // the bucket refills after the probes
  const n = 200;
  const pks = [];
  for (let i = 0; i < n; i++) pks.push(A.stream.audio(Buffer.from(`burst ${i}`)));
  const t0 = Date.now();
  await Promise.all(pks.map((pk) => A.udp.send(pk, A.addr)));
  const spread = Date.now() - t0;
  await sleep(1500);
  await settle(a.conn, b.conn);
  const arrived = B.udp.take((d) => { const f = media.parse(d.msg); return f && f.type === media.TYPE.audio && f.stream === ja.stream_id && media.open(B.key, d.msg); });
  const got = arrived.length;
  // However slowly the gateway read them, what it forwarded within a span
  // of time is at most the burst and 100 a second of it.
  const window = Math.max(spread, got ? arrived[got - 1].at - arrived[0].at : 0);
  const most = 50 + Math.ceil(100 * window / 1000) + 1;
  ok(got >= 50, `${got} of a burst of ${n} packets forwarded, want at least the burst of 50`);
  ok(got <= most, `${got} of a burst of ${n} packets forwarded within ${window} ms, want at most ${most}`);
});

check('19.3', 'a call of more than 4 participants forwards only the 3 loudest speakers', async (t) => {
  const users = [];
  for (let i = 0; i < 5; i++) users.push(await t.user(`ld${i}`));
  const [o, ...rest] = users;
  const g = await o.conn.call('create_group', { name: 'loud', usernames: rest.map((u) => u.name) }, 'conversation');
  for (const u of rest) await u.conn.call('join_group', { conversation: g.id }, 'conversation');
  const joined = [await o.conn.call('place_call', { conversation: g.id }, 'call_joined')];
  for (const u of rest) joined.push(await u.conn.call('place_call', { conversation: g.id }, 'call_joined'));
  const ps = [];
  for (let i = 0; i < 5; i++) ps.push(await onUdp(t, joined[i], `participant ${i} udp`));
  const listener = ps[4];
  // Speakers 0-3 at levels 10, 20, 30, 40 (-dBov: 40 is the quietest).
  const levels = [10, 20, 30, 40];
  const rounds = 100;
  for (let r = 0; r < rounds; r++) {
    for (let i = 0; i < 4; i++) await ps[i].udp.send(ps[i].stream.audio(Buffer.from(`r${r} s${i}`), { flags: 1, level: levels[i] }), ps[i].addr);
    await sleep(20);
  }
  await settle(o.conn);
  const byStream = new Map();
  const late = new Map();
  for (const d of listener.udp.take()) {
    const pk = media.open(listener.key, d.msg);
    if (!pk || pk.type !== 1) continue;
    byStream.set(pk.stream, (byStream.get(pk.stream) || 0) + 1);
    const r = Number(/^r(\d+)/.exec(pk.payload.toString())[1]);
    if (r >= rounds / 2) late.set(pk.stream, (late.get(pk.stream) || 0) + 1);
  }
  const count = (m, i) => m.get(joined[i].stream_id) || 0;
  for (let i = 0; i < 3; i++) ok(count(late, i) > 0, `the ${['loudest', 'second loudest', 'third loudest'][i]} speaker was not forwarded (counts per speaker ${[0, 1, 2, 3].map((k) => count(byStream, k))})`);
  eq(count(late, 3), 0, `packets of the quietest (4th) speaker forwarded in the second half (counts per speaker ${[0, 1, 2, 3].map((k) => count(byStream, k))})`);
});

module.exports = { answered, onUdp, attach, probe, callEvent };
