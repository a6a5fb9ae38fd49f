'use strict';
// Friends, blocking and typing (§17).

const { check, eq, ok } = require('../lib/check');
const { send, key } = require('./messages');

// byName maps a FriendsReply to {username: state}, with the online flag
// for friends (§17 promises online state for friends only).
const byName = (r) => Object.fromEntries(r.friends.map((f) => [f.username, f.state === 'FRIEND_STATE_FRIEND' ? [f.state, f.online] : f.state]));

check('17', 'friend request and accept: FriendEvent REQUEST and ACCEPTED, FriendsReply states OUTGOING/INCOMING then FRIEND with online', async (t) => {
  const a = await t.user('fa');
  const b = await t.user('fb');
  await a.conn.call('add_friend', { username: b.name }, 'ok');
  const req = await b.conn.event('friend_event', (e) => e.user_id === a.id, 'FriendEvent to the asked user');
  eq([req.kind, req.username], ['KIND_REQUEST', a.name], 'FriendEvent kind and username');
  eq(byName(await a.conn.call('friends', {}, 'friends_reply'))[b.name], 'FRIEND_STATE_OUTGOING', 'the asker\'s entry for b');
  eq(byName(await b.conn.call('friends', {}, 'friends_reply'))[a.name], 'FRIEND_STATE_INCOMING', 'b\'s entry for the asker');
  await b.conn.call('answer_friend', { username: a.name, accept: true }, 'ok');
  const acc = await a.conn.event('friend_event', (e) => e.user_id === b.id, 'FriendEvent to the asker');
  eq(acc.kind, 'KIND_ACCEPTED', 'FriendEvent.kind');
  eq(byName(await a.conn.call('friends', {}, 'friends_reply'))[b.name], ['FRIEND_STATE_FRIEND', true], 'a\'s entry for b');
  await a.conn.refused('add_friend', { username: b.name }, 'ALREADY_FRIENDS');
  // Online state follows presence (§9): b's only connection closes.
  b.conn.close();
  await a.conn.event('presence_change', (x) => x.user.user_id === b.id && !x.online, 'PresenceChange offline for b');
  eq(byName(await a.conn.call('friends', {}, 'friends_reply'))[b.name], ['FRIEND_STATE_FRIEND', false], 'a\'s entry for b offline');
  b.conn = await t.login(b);
  await a.conn.call('remove_friend', { username: b.name }, 'ok');
  const rem = await b.conn.event('friend_event', (e) => e.user_id === a.id && e.kind !== 'KIND_REQUEST', 'FriendEvent REMOVED');
  eq(rem.kind, 'KIND_REMOVED', 'FriendEvent.kind');
  eq(byName(await b.conn.call('friends', {}, 'friends_reply'))[a.name], undefined, 'b\'s entry for a after the removal');
  await a.conn.refused('remove_friend', { username: b.name }, 'NOT_FOUND');
});

check('17', 'decline, asking back, and the friend request errors (NOT_FOUND, INVALID_ARGUMENT for oneself)', async (t) => {
  const a = await t.user('da');
  const b = await t.user('db');
  const c = await t.user('dc');
  await a.conn.call('add_friend', { username: b.name }, 'ok');
  await b.conn.call('answer_friend', { username: a.name, accept: false }, 'ok');
  const dec = await a.conn.event('friend_event', (e) => e.user_id === b.id, 'FriendEvent DECLINED');
  eq(dec.kind, 'KIND_DECLINED', 'FriendEvent.kind');
  await b.conn.refused('answer_friend', { username: a.name, accept: true }, 'NOT_FOUND');
  await a.conn.refused('add_friend', { username: a.name }, 'INVALID_ARGUMENT');
  await a.conn.refused('add_friend', { username: t.name('ghost') }, 'NOT_FOUND');
  // Asking someone who already asked you makes you friends at once.
  await c.conn.call('add_friend', { username: a.name }, 'ok');
  await a.conn.call('add_friend', { username: c.name }, 'ok');
  eq(byName(await a.conn.call('friends', {}, 'friends_reply'))[c.name], ['FRIEND_STATE_FRIEND', true], 'after asking back');
  // A request withdrawn with remove_friend.
  await a.conn.call('add_friend', { username: b.name }, 'ok');
  await a.conn.call('remove_friend', { username: b.name }, 'ok');
  await b.conn.refused('answer_friend', { username: a.name, accept: true }, 'NOT_FOUND');
});

check('17', 'block: the blocked user\'s private messages, friend requests and invitations are BLOCKED; blocking ends the friendship; unblock lifts it', async (t) => {
  const a = await t.user('ba');
  const m = await t.user('bm');
  await a.conn.call('add_friend', { username: m.name }, 'ok');
  await m.conn.call('answer_friend', { username: a.name, accept: true }, 'ok');
  await a.conn.call('block', { username: m.name }, 'ok');
  eq(byName(await a.conn.call('friends', {}, 'friends_reply'))[m.name], 'FRIEND_STATE_BLOCKED', 'a\'s entry for the blocked user');
  eq(byName(await m.conn.call('friends', {}, 'friends_reply'))[a.name], undefined, 'the blocked user\'s entry for a');
  const e = await m.conn.refused('send', { to_username: a.name, text: 'let me in', client_key: key() }, 'BLOCKED');
  eq(e.fatal, false, 'Error.fatal');
  await m.conn.refused('add_friend', { username: a.name }, 'BLOCKED');
  const inv = await m.conn.refused('create_group', { name: 'trap', usernames: [a.name] }, 'BLOCKED');
  ok(inv.message.includes(a.name), `BLOCKED message "${inv.message}" does not name the user`);
  await a.conn.refused('add_friend', { username: m.name }, 'INVALID_ARGUMENT');
  const conv = await a.conn.call('open_direct', { username: m.name }, 'conversation');
  const h = await a.conn.call('history', { conversation: conv.id, after_seq: 0 }, 'history_reply');
  eq(h.messages.length, 0, 'messages stored from the blocked user');
  await a.conn.call('unblock', { username: m.name }, 'ok');
  await a.conn.call('unblock', { username: m.name }, 'ok');
  const sent = await send(t, m.conn, { to_username: a.name, text: 'thanks' });
  await a.conn.event('message', (x) => x.message.id === sent.id, 'a message after unblock');
});

check('17', 'typing: Ok and TypingEvent to the peer in a private chat; INVALID_ARGUMENT in the room and groups; PERMISSION_DENIED in others\' chats', async (t) => {
  const a = await t.user('ta');
  const b = await t.user('tb');
  const c = await t.user('tc');
  const conv = await a.conn.call('open_direct', { username: b.name }, 'conversation');
  await a.conn.call('typing', { conversation: conv.id }, 'ok');
  const ev = await b.conn.event('typing_event', () => true, 'TypingEvent');
  eq([ev.conversation, ev.user_id, ev.username], [conv.id, a.id, a.name], 'TypingEvent fields');
  await a.conn.refused('typing', { conversation: 'room.public' }, 'INVALID_ARGUMENT');
  const g = await a.conn.call('create_group', { name: 'typists' }, 'conversation');
  await a.conn.refused('typing', { conversation: g.id }, 'INVALID_ARGUMENT');
  await c.conn.refused('typing', { conversation: conv.id }, 'PERMISSION_DENIED');
  // A user who blocked the typist gets nothing; the typist gets Ok all the same.
  await b.conn.call('block', { username: a.name }, 'ok');
  await a.conn.call('typing', { conversation: conv.id }, 'ok');
  await b.conn.call('ping', { nonce: 1 }, 'pong');
  eq(b.conn.take((f) => f.body === 'typing_event').length, 0, 'TypingEvents from a blocked user');
});

check('17', 'typing: one TypingEvent per 2 s per conversation (extras answered Ok); 20 forwarded at once per user over all connections, then RATE_LIMITED', async (t) => {
  const a = await t.user('typer');
  const a2 = await t.login(a, { label: 'typer second connection' });
  const first = await t.user('peer');
  const convs = [(await a.conn.call('open_direct', { username: first.name }, 'conversation')).id];
  for (let i = 2; i <= 21; i++) {
    const p = await t.user(`peer${i}`);
    p.conn.close();
    convs.push((await a.conn.call('open_direct', { username: p.name }, 'conversation')).id);
  }
  await a.conn.call('typing', { conversation: convs[0] }, 'ok');
  await a2.call('typing', { conversation: convs[0] }, 'ok'); // within 2 s: not forwarded
  for (let i = 1; i < 20; i++) await (i % 2 ? a2 : a.conn).call('typing', { conversation: convs[i] }, 'ok');
  const e = await a2.refused('typing', { conversation: convs[20] }, 'RATE_LIMITED');
  ok(e.retry_after_ms > 0, 'RATE_LIMITED without retry_after_ms');
  await first.conn.event('typing_event', () => true, 'the TypingEvent');
  await first.conn.call('ping', { nonce: 1 }, 'pong');
  eq(first.conn.take((f) => f.body === 'typing_event').length, 0, 'TypingEvents beyond the first within 2 s');
});
