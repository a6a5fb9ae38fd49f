'use strict';
// Presence (§9): the snapshot, changes, the skip option and Who paging.

const { check, eq, ok, fail } = require('../lib/check');

// snapshot collects one PresenceSnapshot (frames until last: true) and
// checks what §9 promises of it.
async function snapshot(conn) {
  const users = new Map();
  let seq = null;
  for (;;) {
    const p = await conn.event('presence_snapshot', () => true, 'PresenceSnapshot');
    if (seq === null) seq = p.seq;
    eq(p.seq, seq, 'PresenceSnapshot.seq of a later frame of one snapshot');
    ok(p.users.length <= 500, `a PresenceSnapshot frame holds ${p.users.length} users, more than 500`);
    for (const u of p.users) {
      if (users.has(u.user_id)) fail(`user ${u.username} appears twice in one snapshot`);
      users.set(u.user_id, u);
    }
    if (p.last) return { users, seq };
  }
}

check('9', 'after login the snapshot (frames until last, one seq) lists the online users with their connection counts, the user\'s own entry included', async (t) => {
  const a = await t.user('snapa');
  await snapshot(a.conn);
  const second = await t.login(a, { label: 'second connection' });
  await snapshot(second);
  const o = await t.user('snapo');
  const { users } = await snapshot(o.conn);
  ok(users.has(o.id), 'the user\'s own entry is missing from the snapshot');
  ok(users.has(a.id), 'an online user is missing from the snapshot');
  eq(users.get(a.id).username, a.name, 'OnlineUser.username');
  eq(users.get(a.id).sessions, 2, 'OnlineUser.sessions of a user with two connections');
  eq(users.get(o.id).sessions, 1, 'OnlineUser.sessions of the user itself');
});

check('9', 'PresenceChange: online at a user\'s first connection, offline at the last one closed or logged out, with seq above the snapshot\'s', async (t) => {
  const o = await t.user('watch');
  const { seq } = await snapshot(o.conn);
  const p = await t.user('come');
  let ch = await o.conn.event('presence_change', (x) => x.user.user_id === p.id, 'PresenceChange for the new user');
  eq(ch.online, true, 'PresenceChange.online');
  eq(ch.user.username, p.name, 'PresenceChange.user.username');
  ok(ch.seq > seq, `PresenceChange.seq ${ch.seq} is not above the snapshot's ${seq}`);
  const last = ch.seq;
  p.conn.close();
  ch = await o.conn.event('presence_change', (x) => x.user.user_id === p.id, 'PresenceChange after the connection closed');
  eq(ch.online, false, 'PresenceChange.online after the last connection closed');
  ok(ch.seq > last, 'PresenceChange.seq did not grow');
  // §8.5: a logout of the last connection.
  const q = await t.user('leave');
  ch = await o.conn.event('presence_change', (x) => x.user.user_id === q.id, 'PresenceChange for the next user');
  eq(ch.online, true, 'PresenceChange.online');
  await q.conn.call('logout', {}, 'ok');
  ch = await o.conn.event('presence_change', (x) => x.user.user_id === q.id, 'PresenceChange after logout');
  eq(ch.online, false, 'PresenceChange.online after logout (§8.5)');
});

check('9', 'skip_presence_feed: no snapshot and no changes, while a connection with the feed sees them', async (t) => {
  const s = await t.user('skip', { options: { skip_presence_feed: true } });
  const o = await t.user('feed');
  await snapshot(o.conn);
  const n = await t.user('newcomer');
  await o.conn.event('presence_change', (x) => x.user.user_id === n.id, 'PresenceChange on the feed connection');
  await s.conn.call('ping', { nonce: 1 }, 'pong');
  const got = s.conn.take((f) => f.body === 'presence_snapshot' || f.body === 'presence_change');
  eq(got.length, 0, 'presence frames on the connection that skipped the feed');
});

check('9', 'Who pages with next_cursor until it is empty, limit 1 included; a cursor not from a reply is INVALID_ARGUMENT', async (t) => {
  const a = await t.user('whoa');
  const b = await t.user('whob');
  const seen = new Map();
  let cursor = '';
  for (let pages = 0; ; pages++) {
    ok(pages < 10000, 'Who paging does not end');
    const r = await a.conn.call('who', { cursor, limit: 1 }, 'who_reply');
    for (const u of r.users) seen.set(u.user_id, u);
    if (r.next_cursor === '') break;
    cursor = r.next_cursor;
  }
  ok(seen.has(a.id) && seen.has(b.id), 'a user online during the whole walk is missing');
  const all = await a.conn.call('who', { limit: 0 }, 'who_reply');
  ok(all.users.some((u) => u.user_id === b.id), 'WhoRequest{limit: 0} misses an online user');
  const e = await a.conn.refused('who', { cursor: 'not-a-cursor' }, 'INVALID_ARGUMENT');
  eq(e.fatal, false, 'Error.fatal');
});

module.exports = { snapshot };
