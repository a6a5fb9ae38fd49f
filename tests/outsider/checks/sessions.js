'use strict';
// Sessions (§8): register, login, resume, token rotation, logout.

const { check, eq, ok } = require('../lib/check');
const { PASSWORD, sleep } = require('../lib/context');
const { request } = require('../lib/http');

const DAY_MS = 24 * 3600 * 1000;

// register sends a RegisterRequest on a fresh connection and returns the
// reply frame (retrying RATE_LIMITED, §8.1).
async function register(t, username, password) {
  const c = await t.connect('register');
  const body = {};
  if (username !== undefined) body.username = username;
  if (password !== undefined) body.password = password;
  const r = await t.withRetry(c, 'register', body);
  c.close();
  return r;
}

async function registerRefused(t, username, password, codeName, why) {
  const { id, frame } = await register(t, username, password);
  ok(frame.body === 'error' && frame.error.code === `ERROR_CODE_${codeName}` && frame.request_id === id,
    `register ${why}: answered ${frame.body === 'error' ? frame.error.code.replace('ERROR_CODE_', '') + ' "' + frame.error.message + '"' : frame.body}, want ${codeName}`);
}

async function registerAccepted(t, username, password, why) {
  const { frame } = await register(t, username, password);
  ok(frame.body === 'session', `register ${why}: answered ${frame.body === 'error' ? frame.error.code + ' "' + frame.error.message + '"' : frame.body}, want Session`);
  return frame.session;
}

check('8.1', 'register starts a session: Session{user_id, username as given, session_id, token, expires_at 7 days on, resumed false}', async (t) => {
  const c = await t.connect();
  const name = t.name('Reg');
  const before = Date.now();
  const s = await c.call('register', { username: name, password: PASSWORD, options: { device: 'laptop' } }, 'session');
  ok(s.user_id !== '', 'Session.user_id is empty');
  eq(s.username, name, 'Session.username');
  ok(s.session_id !== '', 'Session.session_id is empty');
  ok(s.token !== '', 'Session.token is empty');
  eq(s.resumed, false, 'Session.resumed');
  ok(s.expires_at_unix_ms >= before + 7 * DAY_MS - 60000 && s.expires_at_unix_ms <= Date.now() + 7 * DAY_MS + 60000,
    `Session.expires_at_unix_ms is ${(s.expires_at_unix_ms - before) / DAY_MS} days on, want 7 (the default)`);
  // The session works at once: no separate login.
  const who = await c.call('who', {}, 'who_reply');
  ok(who.users.some((x) => x.user_id === s.user_id), 'the new user is not in WhoReply');
});

check('8.1', 'username policy: 3-32 ASCII letters, digits, _ . -, starting with a letter or digit (INVALID_USERNAME)', async (t) => {
  const base = t.name('');
  for (const [name, why] of [
    ['ab', '2 characters'], ['a'.repeat(33), '33 characters'], [`_${base}`, 'starting with _'], [`.${base}`, 'starting with .'],
    [`${base} x`, 'with a space'], [`${base}$`, 'with $'], [`${base}é`, 'with é'], [`${base}@x`, 'with @'],
  ]) {
    await registerRefused(t, name, PASSWORD, 'INVALID_USERNAME', `"${name}" (${why})`);
  }
  const long = (base + 'x'.repeat(32)).slice(0, 32);
  const s = await registerAccepted(t, long, PASSWORD, '32 characters');
  eq(s.username, long, 'Session.username');
  await registerAccepted(t, `${base}9_.-Z`, PASSWORD, 'with _ . - and digits');
});

check('8.1', 'password policy: 8-256 code points, not the username, not a common password (WEAK_PASSWORD); spaces and any script allowed', async (t) => {
  const name = t.name('pw');
  await registerRefused(t, name, '1234567', 'WEAK_PASSWORD', '7 characters');
  await registerRefused(t, name, 'x'.repeat(257), 'WEAK_PASSWORD', '257 characters');
  await registerRefused(t, name, name, 'WEAK_PASSWORD', 'equal to the username');
  await registerRefused(t, name, 'password', 'WEAK_PASSWORD', '"password"');
  await registerRefused(t, name, '12345678', 'WEAK_PASSWORD', '"12345678"');
  // 7 code points in 21 bytes is short; 8 code points are enough.
  await registerRefused(t, name, '密码密码密码密', 'WEAK_PASSWORD', '7 code points of CJK');
  await registerAccepted(t, name, '密码密码密码密码', '8 code points of CJK');
  await registerAccepted(t, t.name('pw256'), 'y '.repeat(128), '256 characters with spaces');
});

check('8.1', 'register without a username or password is INVALID_ARGUMENT (missing field)', async (t) => {
  await registerRefused(t, undefined, PASSWORD, 'INVALID_ARGUMENT', 'without username');
  await registerRefused(t, t.name('nopw'), undefined, 'INVALID_ARGUMENT', 'without password');
});

check('8.1', 'names are unique regardless of case (USERNAME_TAKEN) and the registered spelling is the display name', async (t) => {
  const name = t.name('CaSe');
  await registerAccepted(t, name, PASSWORD, name);
  await registerRefused(t, name.toLowerCase(), PASSWORD, 'USERNAME_TAKEN', 'the same name in lower case');
  await registerRefused(t, name.toUpperCase(), PASSWORD, 'USERNAME_TAKEN', 'the same name in upper case');
  const c = await t.connect();
  const s = await c.call('login', { username: name.toLowerCase(), password: PASSWORD }, 'session');
  eq(s.username, name, 'Session.username after a login in lower case');
});

check('8.2', 'login: a wrong password and an unknown user both get BAD_CREDENTIALS with the same message', async (t) => {
  const u = await t.user('bc');
  const c = await t.connect();
  const wrong = await c.refused('login', { username: u.name, password: 'not the password' }, 'BAD_CREDENTIALS');
  const unknown = await c.refused('login', { username: t.name('ghost'), password: PASSWORD }, 'BAD_CREDENTIALS');
  eq(unknown.message, wrong.message, 'message for an unknown user (vs a wrong password)');
  eq(wrong.fatal, false, 'Error.fatal');
  // The connection is still usable for the right password.
  const s = await c.call('login', { username: u.name, password: PASSWORD }, 'session');
  eq(s.user_id, u.id, 'Session.user_id after the failures');
});

check('8.2', 'a second login starts another session (multi); a connection with a session gets ALREADY_AUTHENTICATED for register/login/resume', async (t) => {
  const u = await t.user('two');
  const c = await t.login(u);
  ok(c.session.session_id !== u.session.session_id, 'the second login has the same session_id as the first');
  eq(c.session.resumed, false, 'Session.resumed of a login');
  eq(c.session.user_id, u.id, 'Session.user_id');
  await c.refused('login', { username: u.name, password: PASSWORD }, 'ALREADY_AUTHENTICATED');
  await c.refused('register', { username: t.name('x'), password: PASSWORD }, 'ALREADY_AUTHENTICATED');
  await c.refused('resume', { token: u.token }, 'ALREADY_AUTHENTICATED');
});

check('8.4', 'resume on a new connection continues the session: resumed true, same session_id, a fresh token; a forged token is TOKEN_INVALID', async (t) => {
  const u = await t.user('res');
  const c = await t.resume(u.token);
  const s = c.session;
  eq(s.resumed, true, 'Session.resumed');
  eq(s.session_id, u.session.session_id, 'Session.session_id');
  eq(s.user_id, u.id, 'Session.user_id');
  eq(s.username, u.name, 'Session.username');
  ok(s.token !== '' && s.token !== u.token, 'resume did not return a fresh token');
  ok(s.expires_at_unix_ms >= u.session.expires_at_unix_ms, 'the fresh token expires before the old one');
  // §12 step 4: a fresh presence snapshot follows.
  await c.event('presence_snapshot', (p) => p.last, 'PresenceSnapshot{last: true} after resume');
  // Under multi the first connection goes on (§8.4).
  await u.conn.call('who', {}, 'who_reply');
  eq(u.conn.take((f) => f.body === 'session_ended').length, 0, 'SessionEnded on the first connection');
  const d = await t.connect('forged');
  await d.refused('resume', { token: u.token.slice(0, -4) + (u.token.endsWith('AAAA') ? 'BBBB' : 'AAAA') }, 'TOKEN_INVALID');
  await d.refused('resume', { token: 'v1.not-a-token' }, 'TOKEN_INVALID');
});

check('8.3', 'a replaced token still resumes within the grace (same session, a current token), and is TOKEN_INVALID after it', async (t) => {
  const u = await t.user('rot');
  const c1 = await t.resume(u.token, { label: 'first resume' });
  const fresh = c1.session.token;
  const c2 = await t.resume(u.token, { label: 'resume with the replaced token' });
  eq(c2.session.session_id, u.session.session_id, 'session_id of a resume with the replaced token');
  ok(c2.session.token !== u.token, 'the resume with the replaced token returned it again');
  await sleep(t.env.tokenGraceMs + 1500);
  const d = await t.connect('after grace');
  const e = await d.refused('resume', { token: u.token }, 'TOKEN_INVALID');
  ok(/replaced/i.test(e.message), `TOKEN_INVALID message "${e.message}" does not say it was replaced`);
  // HTTP refuses it too (401), and takes the newest (404: no such upload).
  const newest = c2.session.token;
  const head = (token) => request(t.httpURL, 'HEAD', '/v1/files/nosuchupload', { headers: { 'Tus-Resumable': '1.0.0', Authorization: `Bearer ${token}` } });
  eq((await head(u.token)).status, 401, 'HTTP status for the replaced token after the grace');
  eq((await head(newest)).status, 404, 'HTTP status for the newest token (an unknown upload)');
  // The session goes on for whoever holds the newest token.
  const c3 = await t.resume(newest, { label: 'resume with the newest token' });
  eq(c3.session.session_id, u.session.session_id, 'session_id with the newest token');
  ok(fresh !== '', 'no token');
});

check('8.5', 'logout: Ok; the session\'s other connections get SessionEnded{SESSION_REVOKED} and close; its token is SESSION_REVOKED; other sessions go on', async (t) => {
  const u = await t.user('out');
  const other = await t.login(u, { label: 'other session' });
  const same = await t.resume(u.token, { label: 'same session' });
  const token = same.session.token;
  await u.conn.call('logout', {}, 'ok');
  const ended = await same.event('session_ended', () => true, 'SessionEnded on the other connection of the session');
  eq(ended.reason, 'ERROR_CODE_SESSION_REVOKED', 'SessionEnded.reason');
  await same.waitClosed('SessionEnded');
  // The connection that logged out stays open, unauthenticated.
  await u.conn.refused('who', {}, 'UNAUTHENTICATED');
  const d = await t.connect('resume after logout');
  await d.refused('resume', { token }, 'SESSION_REVOKED');
  // The user's other session is untouched.
  await other.call('who', {}, 'who_reply');
  eq(other.take((f) => f.body === 'session_ended').length, 0, 'SessionEnded on the other session');
  // The same connection may log in again.
  const s = await u.conn.call('login', { username: u.name, password: PASSWORD }, 'session');
  eq(s.user_id, u.id, 'Session.user_id of a login after logout');
});

check('8.2', 'failed logins from a stranger\'s network are limited (RATE_LIMITED, retry_after_ms ≤ 12 s, even for the right password) without locking the owner out at home', async (t) => {
  const u = await t.user('lock'); // registered from 127.0.0.1: 127.0.0.0/24 is familiar
  const stranger = await t.tcp('stranger', { localAddress: '127.0.1.1' });
  await stranger.hello();
  for (let i = 1; i <= 5; i++) {
    await stranger.refused('login', { username: u.name, password: `wrong guess ${i}` }, 'BAD_CREDENTIALS');
  }
  let e = await stranger.refused('login', { username: u.name, password: 'wrong guess 6' }, 'RATE_LIMITED');
  ok(e.retry_after_ms > 0 && e.retry_after_ms <= 12000, `retry_after_ms ${e.retry_after_ms}, want 1-12000`);
  e = await stranger.refused('login', { username: u.name, password: PASSWORD }, 'RATE_LIMITED');
  // Every unfamiliar address shares the strangers' allowance.
  const other = await t.tcp('another stranger', { localAddress: '127.0.2.1' });
  await other.hello();
  await other.refused('login', { username: u.name, password: 'wrong guess 7' }, 'RATE_LIMITED');
  // The owner at a familiar network is not locked out.
  const home = await t.connect('owner at home');
  const s = await home.call('login', { username: u.name, password: PASSWORD }, 'session');
  eq(s.user_id, u.id, 'Session.user_id of the owner');
  // Sessions already held keep working: resume is not rate-limited.
  const r = await t.resume(u.token, { label: 'resume while limited' });
  eq(r.session.user_id, u.id, 'Session.user_id of a resume');
});

check('3', 'a whole session over WebSocket: register, snapshot, messages, resume on a second WebSocket, logout ends it there', async (t) => {
  const a = await t.user('wsa', { transport: 'ws' });
  await a.conn.event('presence_snapshot', (p) => p.last, 'PresenceSnapshot{last: true}');
  const b = await t.user('wsb');
  const sent = await b.conn.call('send', { to_username: a.name, text: 'over the web', client_key: 'k-ws-1' }, 'send_reply');
  const ev = await a.conn.event('message', (e) => e.message.id === sent.message.id, 'MessageEvent over WebSocket');
  eq(ev.message.text, 'over the web', 'Message.text');
  const r = await t.resume(a.token, { transport: 'ws', label: 'second WebSocket' });
  eq([r.session.resumed, r.session.session_id], [true, a.session.session_id], 'resumed and session_id over WebSocket');
  await a.conn.call('logout', {}, 'ok');
  const ended = await r.event('session_ended', () => true, 'SessionEnded on the second WebSocket');
  eq(ended.reason, 'ERROR_CODE_SESSION_REVOKED', 'SessionEnded.reason');
  await r.waitClosed('SessionEnded');
});

module.exports = { register };
