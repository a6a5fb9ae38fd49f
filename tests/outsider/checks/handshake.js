'use strict';
// The handshake (§5), requests before a session, and invalid UTF-8 (§4).

const { check, eq, ok } = require('../lib/check');
const { expectError } = require('../lib/conn');
const { raw, MEMBER } = require('../lib/schema');

const errorFrame = (f) => f.body === 'error';
const BAD_UTF8 = Buffer.from([0x61, 0xff, 0xfe, 0x62]);

check('5', 'the server picks version 1 from versions [1, 7]', async (t) => {
  const c = await t.tcp();
  const w = await c.call('hello', { versions: [1, 7], client: 'future' }, 'welcome');
  eq(w.version, 1, 'Welcome.version');
});

check('5', 'no common version: UNSUPPORTED_VERSION, fatal, naming the server\'s versions, then close', async (t) => {
  const c = await t.tcp();
  const e = await c.refused('hello', { versions: [2, 3], client: 'future' }, 'UNSUPPORTED_VERSION');
  eq(e.fatal, true, 'Error.fatal');
  ok(/\b1\b/.test(e.message), `Error.message "${e.message}" does not name version 1`);
  await c.waitClosed('UNSUPPORTED_VERSION');
});

check('5', 'a first frame other than Hello (Ping, Login) is HANDSHAKE_REQUIRED, fatal, then close', async (t) => {
  for (const [member, body] of [['ping', { nonce: 1 }], ['login', { username: 'someone', password: 'something long' }]]) {
    const c = await t.tcp(member);
    c.send({ request_id: 1, [member]: body });
    const e = await c.next(errorFrame, `Error for a first ${member}`);
    expectError(e, 'HANDSHAKE_REQUIRED', undefined, `first frame ${member}`);
    eq(e.error.fatal, true, 'Error.fatal');
    await c.waitClosed(`a first ${member}`);
  }
});

check('5', 'silence past the handshake timeout is HANDSHAKE_REQUIRED, fatal, then close', async (t) => {
  const c = await t.tcp();
  const e = await c.next(errorFrame, 'Error for silence', t.env.handshakeTimeoutMs + 5000);
  expectError(e, 'HANDSHAKE_REQUIRED', 0, 'silence');
  eq(e.error.fatal, true, 'Error.fatal');
  await c.waitClosed('the handshake timeout');
});

check('5', 'undecodable first bytes get their decode code with fatal: BAD_FRAME, FRAME_TOO_LARGE (N above 16 KiB), INVALID_UTF8', async (t) => {
  const bad = await t.tcp('bad');
  bad.sendBody(Buffer.from([0x07, 0x07]));
  let e = await bad.next(errorFrame, 'Error');
  expectError(e, 'BAD_FRAME', 0, 'garbage first frame');
  eq(e.error.fatal, true, 'BAD_FRAME.fatal before Welcome');
  await bad.waitClosed('a garbage first frame');

  const big = await t.tcp('big');
  await big.sendRaw(Buffer.from([0, 0, 0x40, 0x01]));
  e = await big.next(errorFrame, 'Error');
  expectError(e, 'FRAME_TOO_LARGE', 0, 'first frame of 16,385 bytes');
  eq(e.error.fatal, true, 'FRAME_TOO_LARGE.fatal');
  await big.waitClosed('a too large first frame');

  const utf = await t.tcp('utf8');
  utf.sendBody(raw.message(raw.field(1, 1), raw.field(MEMBER.hello, raw.message(raw.field(1, 1), raw.field(2, BAD_UTF8)))));
  e = await utf.next(errorFrame, 'Error');
  expectError(e, 'INVALID_UTF8', undefined, 'Hello with invalid UTF-8 in client');
  eq(e.error.fatal, true, 'INVALID_UTF8.fatal before Welcome');
  await utf.waitClosed('a first frame with invalid UTF-8');
});

check('5', 'a second Hello after Welcome is a non-fatal HANDSHAKE_REQUIRED', async (t) => {
  const c = await t.connect();
  const e = await c.refused('hello', { versions: [1], client: 'again' }, 'HANDSHAKE_REQUIRED');
  eq(e.fatal, false, 'Error.fatal');
  eq((await c.call('ping', { nonce: 3 }, 'pong')).nonce, 3, 'Pong afterwards');
});

check('5', 'before a session every request but register/login/resume/ping is UNAUTHENTICATED, and the connection stays usable', async (t) => {
  const c = await t.connect();
  const requests = [
    ['who', {}], ['send', { conversation: 'room.public', text: 'hi', client_key: 'k' }],
    ['history', { conversation: 'room.public' }], ['conversations', {}], ['logout', {}],
    ['create_group', { name: 'g' }], ['friends', {}], ['offer_file', { name: 'f', size: 1 }],
  ];
  for (const [member, body] of requests) {
    const e = await c.refused(member, body, 'UNAUTHENTICATED');
    eq(e.fatal, false, `${member}: Error.fatal`);
  }
  const name = t.name('late');
  const s = await c.call('register', { username: name, password: 'correct horse battery staple' }, 'session');
  eq(s.username, name, 'Session.username after the refusals');
});

check('4', 'invalid UTF-8 anywhere in a request is INVALID_UTF8 with the request_id, not fatal: Login.username, Login.options.device', async (t) => {
  const c = await t.connect();
  const login = (fields) => raw.message(raw.field(1, 21), raw.field(MEMBER.login, raw.message(...fields)));
  c.sendBody(login([raw.field(1, BAD_UTF8), raw.field(2, 'some password')]));
  let e = await c.next(errorFrame, 'Error');
  expectError(e, 'INVALID_UTF8', 21, 'login with invalid username');
  eq(e.error.fatal, false, 'Error.fatal');
  const u = await t.user('utf');
  const c2 = await t.connect('device');
  c2.sendBody(raw.message(raw.field(1, 22), raw.field(MEMBER.login, raw.message(
    raw.field(1, u.name), raw.field(2, u.password), raw.field(3, raw.message(raw.field(1, BAD_UTF8)))))));
  e = await c2.next(errorFrame, 'Error');
  expectError(e, 'INVALID_UTF8', 22, 'login with invalid options.device');
  // Nothing in it was acted upon: the connection has no session.
  await c2.refused('who', {}, 'UNAUTHENTICATED');
});

check('4', 'invalid UTF-8 in SendRequest.text is INVALID_UTF8 with the request_id and nothing is stored; strings in unknown fields are not checked', async (t) => {
  const a = await t.user('utfa');
  const b = await t.user('utfb');
  const conv = await a.conn.call('open_direct', { username: b.name }, 'conversation');
  a.conn.sendBody(raw.message(raw.field(1, 23), raw.field(MEMBER.send, raw.message(
    raw.field(1, conv.id), raw.field(3, BAD_UTF8), raw.field(4, 'k-utf')))));
  const e = await a.conn.next((f) => f.request_id === 23, 'reply');
  expectError(e, 'INVALID_UTF8', 23, 'send with invalid text');
  const h = await a.conn.call('history', { conversation: conv.id, after_seq: 0 }, 'history_reply');
  eq(h.messages.length, 0, 'messages stored after the refused send');
  // Field 99 of SendRequest is unknown: its bytes are not checked.
  a.conn.sendBody(raw.message(raw.field(1, 24), raw.field(MEMBER.send, raw.message(
    raw.field(1, conv.id), raw.field(3, 'fine'), raw.field(4, 'k-unknown'), raw.field(99, BAD_UTF8)))));
  const r = await a.conn.next((f) => f.request_id === 24, 'reply');
  eq(r.body, 'send_reply', 'reply to a send with invalid UTF-8 in an unknown field');
  eq(r.send_reply.message.text, 'fine', 'stored text');
});
