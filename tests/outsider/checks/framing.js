'use strict';
// Framing and the envelope: §2 (stream framing), §3 (WebSocket), §4 (Frame),
// §6 (request ids), §10 (heartbeats), §11 (bad frames), §14 (the worked bytes).

const { check, eq, ok } = require('../lib/check');
const { expectError } = require('../lib/conn');
const { encodeFrame, prefix, raw } = require('../lib/schema');
const { sleep } = require('../lib/context');

const hex = (s) => Buffer.from(s.replace(/\s+/g, ''), 'hex');

// The frame carrying an error at request_id id, or at 0.
const errorFrame = (id) => (f) => f.body === 'error' && (id === undefined || f.request_id === id);

check('14', 'the worked Hello and Ping bytes are answered by Welcome (request_id 1) and Pong{nonce 5} (request_id 9)', async (t) => {
  // The library agrees with the document's bytes first.
  eq(prefix(encodeFrame({ request_id: 1, hello: { versions: [1], client: 'x' } })).toString('hex'),
    '0000000a080112060a0101120178', 'protobufjs encoding of §14 Hello');
  const c = await t.tcp();
  c.sendRaw(hex('00 00 00 0a  08 01  12 06  0a 01 01  12 01 78'));
  const w = await c.next((f) => f.request_id === 1, 'Welcome');
  eq(w.body, 'welcome', 'reply to the §14 Hello');
  eq(w.welcome.version, 1, 'Welcome.version');
  ok(w.welcome.server !== '', 'Welcome.server is empty');
  ok(w.welcome.gateway_id !== '', 'Welcome.gateway_id is empty');
  ok(w.welcome.max_frame_size >= 16384, `Welcome.max_frame_size ${w.welcome.max_frame_size} is below the pre-login limit`);
  ok(w.welcome.heartbeat_interval_ms > 0, 'Welcome.heartbeat_interval_ms is 0');
  ok(w.welcome.idle_timeout_ms > w.welcome.heartbeat_interval_ms, 'Welcome.idle_timeout_ms is not above heartbeat_interval_ms');
  c.sendRaw(hex('00 00 00 06  08 09 2a 02 08 05'));
  const p = await c.next((f) => f.request_id === 9, 'Pong');
  eq(p.body, 'pong', 'reply to the §14 Ping');
  eq(p.pong.nonce, 5, 'Pong.nonce');
});

check('5', 'Welcome.http_url is the HTTP base for files: http:// and the gateway\'s HTTP address, no trailing slash (TCP and WebSocket)', async (t) => {
  const wsHost = new URL(t.env.ws).host;
  const c = await t.connect('tcp');
  eq(c.welcome.http_url, `http://${wsHost}`, 'Welcome.http_url on TCP (the HTTP listener binds one address)');
  const w = await t.connect('ws', 'ws');
  eq(w.welcome.http_url, `http://${wsHost}`, 'Welcome.http_url on WebSocket (the upgrade\'s Host)');
});

check('2', 'frames are read across any segmentation: one byte per write, several frames per write', async (t) => {
  const c = await t.tcp();
  const hello = prefix(encodeFrame({ request_id: 1, hello: { versions: [1], client: 'slow' } }));
  for (const b of hello) {
    await c.sendRaw(Buffer.from([b]));
    await sleep(2);
  }
  eq((await c.next((f) => f.request_id === 1, 'Welcome')).body, 'welcome', 'reply to a Hello sent byte by byte');
  const two = Buffer.concat([
    prefix(encodeFrame({ request_id: 2, ping: { nonce: 22 } })),
    prefix(encodeFrame({ request_id: 3, ping: { nonce: 33 } })),
  ]);
  await c.sendRaw(two);
  eq((await c.next((f) => f.request_id === 2, 'Pong 2')).pong.nonce, 22, 'first Pong of one write');
  eq((await c.next((f) => f.request_id === 3, 'Pong 3')).pong.nonce, 33, 'second Pong of one write');
});

check('2', 'N = 0 is BAD_FRAME (request_id 0, not fatal after Welcome)', async (t) => {
  const c = await t.connect();
  await c.sendRaw(hex('00000000'));
  const e = await c.next(errorFrame(), 'Error for N = 0');
  expectError(e, 'BAD_FRAME', 0, 'N = 0');
  eq(e.error.fatal, false, 'Error.fatal');
  eq((await c.call('ping', { nonce: 1 }, 'pong')).nonce, 1, 'Pong after the bad frame');
});

check('2', 'without a session a frame of exactly 16,384 bytes is read, N = 16,385 is FRAME_TOO_LARGE, fatal, body not awaited', async (t) => {
  const c = await t.connect();
  // A Ping padded to 16,384 bytes with an unknown top-level field (§4:
  // unknown fields are ignored).
  const ping = encodeFrame({ request_id: 5, ping: { nonce: 7 } });
  const pad = (n) => Buffer.concat([ping, raw.field(99, Buffer.alloc(n, 0x61))]);
  let padLen = 16384 - ping.length;
  while (pad(padLen).length > 16384) padLen--;
  const padded = pad(padLen);
  eq(padded.length, 16384, 'padded frame length');
  c.sendBody(padded);
  eq((await c.next((f) => f.request_id === 5, 'Pong')).body, 'pong', 'reply to a 16,384-byte Ping');
  // Only the prefix: the gateway must answer without waiting for a body.
  await c.sendRaw(hex('00004001'));
  const e = await c.next(errorFrame(), 'Error for N = 16,385');
  expectError(e, 'FRAME_TOO_LARGE', 0, 'N = 16,385 without a session');
  eq(e.error.fatal, true, 'Error.fatal');
  await c.waitClosed('a fatal FRAME_TOO_LARGE');
});

check('2', 'with a session a frame above 16 KiB is read, and N = max_frame_size + 1 is FRAME_TOO_LARGE, fatal', async (t) => {
  const u = await t.user('big');
  const c = u.conn;
  const ping = encodeFrame({ request_id: 50, ping: { nonce: 8 } });
  c.sendBody(Buffer.concat([ping, raw.field(99, Buffer.alloc(40000, 0x62))]));
  eq((await c.next((f) => f.request_id === 50, 'Pong')).body, 'pong', 'reply to a 40 KB Ping after login');
  const head = Buffer.alloc(4);
  head.writeUInt32BE(c.welcome.max_frame_size + 1, 0);
  await c.sendRaw(head);
  const e = await c.next(errorFrame(), 'Error for N = max_frame_size + 1');
  expectError(e, 'FRAME_TOO_LARGE', 0, 'N = max_frame_size + 1');
  eq(e.error.fatal, true, 'Error.fatal');
  await c.waitClosed('a fatal FRAME_TOO_LARGE');
});

check('11', 'a frame cut short by the end of the stream is a fatal BAD_FRAME', async (t) => {
  const c = await t.connect();
  await c.sendRaw(Buffer.concat([hex('00000064'), Buffer.alloc(10, 0x08)]));
  c.endWrite();
  const e = await c.next(errorFrame(), 'Error for a cut frame');
  expectError(e, 'BAD_FRAME', undefined, 'a frame cut by FIN');
  eq(e.error.fatal, true, 'Error.fatal');
  await c.waitClosed('a cut frame');
});

check('6', 'bytes that are not protobuf from the first byte get BAD_FRAME with request_id 0, not fatal', async (t) => {
  const c = await t.connect();
  c.sendBody(hex('07 07 07'));
  const e = await c.next(errorFrame(), 'Error');
  expectError(e, 'BAD_FRAME', 0, 'garbage frame');
  eq(e.error.fatal, false, 'Error.fatal');
  eq((await c.call('ping', { nonce: 2 }, 'pong')).nonce, 2, 'Pong afterwards');
});

check('6', 'a damaged frame is answered BAD_FRAME with the request_id read before the damage', async (t) => {
  const c = await t.connect();
  // request_id 42, then a ping member announcing 5 bytes and holding 1.
  c.sendBody(hex('08 2a  2a 05 08'));
  const e = await c.next(errorFrame(), 'Error');
  expectError(e, 'BAD_FRAME', 42, 'damaged frame');
  eq(e.error.fatal, false, 'Error.fatal');
});

check('4', 'a frame with no body member is BAD_FRAME with its request_id', async (t) => {
  const c = await t.connect();
  c.sendBody(hex('08 07'));
  const e = await c.next(errorFrame(), 'Error');
  expectError(e, 'BAD_FRAME', 7, 'frame without body');
});

check('4', 'a request whose only member is one the schema does not have (field 99) is a non-fatal UNKNOWN_REQUEST with its request_id', async (t) => {
  const u = await t.user('unk');
  u.conn.sendBody(raw.message(raw.field(1, 61), raw.field(99, raw.message(raw.field(1, 'x')))));
  const e = await u.conn.next(errorFrame(), 'Error');
  ok(e.request_id === 61, `Error carries request_id ${e.request_id}, want 61`);
  ok(e.error.code === 'ERROR_CODE_UNKNOWN_REQUEST', `Error code ${e.error.code}, want UNKNOWN_REQUEST`);
  eq(e.error.fatal, false, 'Error.fatal');
});

check('4', 'a body only the server sends (welcome, session) is UNKNOWN_REQUEST with its request_id', async (t) => {
  const u = await t.user('srvbody');
  await u.conn.refused('welcome', { version: 1 }, 'UNKNOWN_REQUEST');
  await u.conn.refused('session', { user_id: 'x' }, 'UNKNOWN_REQUEST');
});

check('11', 'ten bad frames are answered, the eleventh closes the connection (fatal)', async (t) => {
  const c = await t.connect();
  for (let i = 1; i <= 10; i++) {
    c.sendBody(raw.message(raw.field(1, i), hex('07')));
    const e = await c.next(errorFrame(), `Error ${i}`);
    expectError(e, 'BAD_FRAME', i, `bad frame ${i}`);
    eq(e.error.fatal, false, `Error ${i}.fatal`);
  }
  c.sendBody(raw.message(raw.field(1, 11), hex('07')));
  const e = await c.next(errorFrame(), 'Error 11');
  eq(e.error.fatal, true, 'Error 11 (more than 10 bad frames).fatal');
  await c.waitClosed('the eleventh bad frame');
});

check('6', 'a reply copies the largest request_id (4294967295)', async (t) => {
  const c = await t.connect();
  const { frame } = await c.request('ping', { nonce: 3 }, { id: 4294967295 });
  eq(frame.body, 'pong', 'reply');
  eq(frame.request_id, 4294967295, 'request_id');
});

check('6', 'request_id 0 on a request is INVALID_ARGUMENT with request_id 0 (login before, send after a session); Hello and Ping may use 0', async (t) => {
  const c = await t.tcp();
  const w = await c.request('hello', { versions: [1], client: 'zero' }, { id: 0, reply: 'welcome' });
  eq(w.frame.body, 'welcome', 'reply to Hello with request_id 0');
  eq(w.frame.request_id, 0, 'Welcome.request_id');
  const p = await c.request('ping', { nonce: 4 }, { id: 0, reply: 'pong' });
  eq(p.frame.body, 'pong', 'reply to Ping with request_id 0');
  eq(p.frame.request_id, 0, 'Pong.request_id');
  const l = await c.request('login', { username: 'nobody', password: 'whatever-it-is' }, { id: 0 });
  expectError(l.frame, 'INVALID_ARGUMENT', 0, 'login with request_id 0');
  const u = await t.user('zero');
  const other = await t.user('zero2');
  const s = await u.conn.request('send', { to_username: other.name, text: 'not stored', client_key: 'k0' }, { id: 0 });
  expectError(s.frame, 'INVALID_ARGUMENT', 0, 'send with request_id 0');
  const conv = await u.conn.call('open_direct', { username: other.name }, 'conversation');
  const h = await u.conn.call('history', { conversation: conv.id, after_seq: 0 }, 'history_reply');
  eq(h.messages.length, 0, 'messages stored by the refused send');
});

check('6', 'request_id 0 is INVALID_ARGUMENT with request_id 0 for every request body of §4, and nothing is done', async (t) => {
  const a = await t.user('zeroall');
  const b = await t.user('zeroallb');
  const conv = (await a.conn.call('open_direct', { username: b.name }, 'conversation')).id;
  const sha = '0'.repeat(64);
  const requests = [
    ['register', { username: t.name('z'), password: 'correct horse battery staple' }], ['login', { username: a.name, password: 'x' }],
    ['resume', { token: a.token }], ['who', {}], ['send', { conversation: conv, text: 'zero', client_key: 'kz' }],
    ['history', { conversation: conv }], ['ack', { conversation: conv, seq: 0 }], ['conversations', {}],
    ['open_direct', { username: b.name }], ['create_group', { name: 'zero' }], ['invite', { conversation: conv, usernames: [b.name] }],
    ['join_group', { conversation: conv }], ['leave_group', { conversation: conv }], ['remove_member', { conversation: conv, username: b.name }],
    ['rename_group', { conversation: conv, name: 'z' }], ['members', { conversation: conv }], ['add_friend', { username: b.name }],
    ['answer_friend', { username: b.name, accept: true }], ['remove_friend', { username: b.name }], ['friends', {}],
    ['block', { username: b.name }], ['unblock', { username: b.name }], ['typing', { conversation: conv }],
    ['offer_file', { to_username: b.name, name: 'z', size: 1, sha256: sha, client_key: 'kz' }], ['answer_file', { file_id: 'f1', accept: true }],
    ['file_download', { file_id: 'f1' }], ['files', {}], ['logout', {}],
  ];
  for (const [member, body] of requests) {
    const { frame } = await a.conn.request(member, body, { id: 0 });
    expectError(frame, 'INVALID_ARGUMENT', 0, `${member} with request_id 0`);
  }
  // Nothing was done: no message, no group, no friend request, still logged in.
  const h = await a.conn.call('history', { conversation: conv, after_seq: 0 }, 'history_reply');
  eq(h.messages.length, 0, 'messages after the refused requests');
  const f = await b.conn.call('friends', {}, 'friends_reply');
  eq(f.friends.length, 0, 'b\'s friends list after the refused requests');
});

check('10', 'the gateway ignores an unsolicited Pong, and Ping is answered with the same nonce and request_id', async (t) => {
  const c = await t.connect();
  c.send({ request_id: 0, pong: { nonce: 77 } });
  const nonce = 2 ** 40 + 5;
  const { frame } = await c.request('ping', { nonce }, { id: 31 });
  eq(frame.body, 'pong', 'reply after an unsolicited Pong');
  eq(frame.pong.nonce, nonce, 'Pong.nonce');
  eq(c.take((f) => f.body === 'error').length, 0, 'Errors for the unsolicited Pong');
});

check('10', 'a connection that sends nothing for idle_timeout_ms gets IDLE_TIMEOUT, fatal, and closes; one that pings every heartbeat_interval_ms stays', async (t) => {
  const quiet = await t.tcp('quiet');
  const w = await quiet.hello('quiet', { heartbeats: false });
  const alive = await t.connect('alive');
  const e = await quiet.next(errorFrame(), 'IDLE_TIMEOUT', w.idle_timeout_ms + 5000);
  expectError(e, 'IDLE_TIMEOUT', 0, 'a silent connection');
  eq(e.error.fatal, true, 'Error.fatal');
  await quiet.waitClosed('IDLE_TIMEOUT');
  await sleep(1000);
  eq((await alive.call('ping', { nonce: 6 }, 'pong')).nonce, 6, 'Pong on the connection that sent heartbeats');
});

check('3', 'WebSocket: binary messages carry frames without the prefix; a text message is BAD_FRAME (request_id 0, not fatal)', async (t) => {
  const c = await t.ws();
  c.sendBody(encodeFrame({ request_id: 1, hello: { versions: [1], client: 'ws' } }));
  eq((await c.next((f) => f.request_id === 1, 'Welcome')).body, 'welcome', 'reply to Hello over WebSocket');
  c.sendText('hello');
  const e = await c.next(errorFrame(), 'Error');
  expectError(e, 'BAD_FRAME', 0, 'text message');
  eq(e.error.fatal, false, 'Error.fatal');
  eq((await c.call('ping', { nonce: 9 }, 'pong')).nonce, 9, 'Pong after the text message');
});

check('3', 'WebSocket: a message above the pre-login limit is FRAME_TOO_LARGE, fatal', async (t) => {
  const c = await t.connect('ws', 'ws');
  const ping = encodeFrame({ request_id: 5, ping: { nonce: 1 } });
  c.sendBody(Buffer.concat([ping, raw.field(99, Buffer.alloc(17000, 0x61))]));
  const e = await c.next(errorFrame(), 'Error');
  expectError(e, 'FRAME_TOO_LARGE', undefined, '17 KB message without a session');
  eq(e.error.fatal, true, 'Error.fatal');
  await c.waitClosed('a fatal FRAME_TOO_LARGE');
});
