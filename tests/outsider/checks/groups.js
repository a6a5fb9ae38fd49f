'use strict';
// Groups (§16): create, invite, join, members, owner rules, leaving.

const { check, eq, ok } = require('../lib/check');
const { send, conversations, key } = require('./messages');

const memberList = (r) => r.members.map((m) => [m.username, m.owner, m.invited]);

check('16', 'create, invite, join: invitees are told, cannot read or post until they join; members in join order, then invitations', async (t) => {
  const a = await t.user('ga');
  const b = await t.user('gb');
  const c = await t.user('gc');
  const d = await t.user('gd');
  const g = await a.conn.call('create_group', { name: '  team  ', usernames: [b.name] }, 'conversation');
  ok(g.id.startsWith('group.'), `Conversation.id ${g.id} is not group.<id>`);
  eq([g.kind, g.title, g.owner_id], ['CONVERSATION_KIND_GROUP', 'team', a.id], 'kind, title (trimmed) and owner_id of the new group');
  const inv = await b.conn.event('message', (e) => e.message.conversation === g.id, 'the invitation as a system message');
  eq([inv.message.system, inv.message.sender_id], [true, a.id], 'system and sender_id of the invitation message');
  const listed = (await conversations(b.conn)).find((x) => x.id === g.id);
  ok(listed, 'the invitee\'s conversation list lacks the group');
  eq([listed.invited, listed.last_seq, listed.acked_seq, listed.title, listed.owner_id], [true, 0, 0, 'team', a.id], 'invited, last_seq, acked_seq, title, owner_id for the invitee');
  await b.conn.refused('send', { conversation: g.id, text: 'early', client_key: key() }, 'PERMISSION_DENIED');
  await b.conn.refused('history', { conversation: g.id }, 'PERMISSION_DENIED');
  await b.conn.refused('members', { conversation: g.id }, 'PERMISSION_DENIED');
  await b.conn.refused('invite', { conversation: g.id, usernames: [c.name] }, 'PERMISSION_DENIED');

  let r = await a.conn.call('invite', { conversation: g.id, usernames: [c.name] }, 'members_reply');
  eq(memberList(r), [[a.name, true, false], [b.name, false, true], [c.name, false, true]], 'MembersReply after inviting');
  r = await a.conn.call('invite', { conversation: g.id, usernames: [b.name] }, 'members_reply');
  eq(memberList(r), [[a.name, true, false], [b.name, false, true], [c.name, false, true]], 'MembersReply after inviting an invitee again');
  await a.conn.refused('invite', { conversation: g.id, usernames: [a.name] }, 'ALREADY_MEMBER');
  await a.conn.refused('invite', { conversation: g.id, usernames: [d.name, t.name('ghost')] }, 'NOT_FOUND');
  await d.conn.refused('join_group', { conversation: g.id }, 'PERMISSION_DENIED');
  r = await a.conn.call('members', { conversation: g.id }, 'members_reply');
  ok(!r.members.some((m) => m.user_id === d.id), 'an invite refused for one name invited the others');

  const joined = await b.conn.call('join_group', { conversation: g.id }, 'conversation');
  eq([joined.id, joined.kind], [g.id, 'CONVERSATION_KIND_GROUP'], 'Conversation from join_group');
  r = await b.conn.call('members', { conversation: g.id }, 'members_reply');
  eq(memberList(r), [[a.name, true, false], [b.name, false, false], [c.name, false, true]], 'MembersReply after b joined');
  const m = await send(t, a.conn, { conversation: g.id, text: 'welcome' });
  await b.conn.event('message', (e) => e.message.id === m.id, 'a group message to a member');
  const m2 = await send(t, b.conn, { conversation: g.id, text: 'thanks' });
  await a.conn.event('message', (e) => e.message.id === m2.id, 'a member\'s message to the owner');
  const now = (await conversations(b.conn)).find((x) => x.id === g.id);
  eq(now.invited, false, 'Conversation.invited after joining');
  eq(now.last_seq, m2.seq, 'Conversation.last_seq after joining');
  const h = await b.conn.call('history', { conversation: g.id, after_seq: 0 }, 'history_reply');
  ok(h.messages.some((x) => x.system), 'the group history holds no system message');
  await c.conn.refused('history', { conversation: g.id }, 'PERMISSION_DENIED');
});

check('16', 'only the owner renames and removes (PERMISSION_DENIED); names are 1-64 printable characters (INVALID_NAME); a removed user learns of it', async (t) => {
  const a = await t.user('oa');
  const b = await t.user('ob');
  const c = await t.user('oc');
  const g = await a.conn.call('create_group', { name: 'owned', usernames: [b.name, c.name] }, 'conversation');
  await b.conn.call('join_group', { conversation: g.id }, 'conversation');
  await b.conn.refused('rename_group', { conversation: g.id, name: 'mine' }, 'PERMISSION_DENIED');
  await b.conn.refused('remove_member', { conversation: g.id, username: c.name }, 'PERMISSION_DENIED');
  for (const [name, why] of [['', 'empty'], ['   ', 'only spaces'], ['x'.repeat(65), '65 characters'], ['a\u0007b', 'a control character']]) {
    const { id, frame } = await a.conn.request('rename_group', { conversation: g.id, name });
    ok(frame.body === 'error' && frame.error.code === 'ERROR_CODE_INVALID_NAME' && frame.request_id === id,
      `rename to ${why}: answered ${frame.body === 'error' ? frame.error.code : frame.body}, want INVALID_NAME`);
  }
  await a.conn.refused('create_group', { name: 'x'.repeat(65) }, 'INVALID_NAME');
  const long = 'я'.repeat(64);
  const renamed = await a.conn.call('rename_group', { conversation: g.id, name: long }, 'conversation');
  eq(renamed.title, long, 'Conversation.title after renaming to 64 characters');
  await a.conn.refused('remove_member', { conversation: g.id, username: a.name }, 'INVALID_ARGUMENT');
  await a.conn.call('remove_member', { conversation: g.id, username: c.name }, 'ok');
  await c.conn.refused('join_group', { conversation: g.id }, 'PERMISSION_DENIED');
  await a.conn.call('remove_member', { conversation: g.id, username: b.name }, 'ok');
  await b.conn.event('message', (e) => e.message.conversation === g.id && e.message.system && /remov/i.test(e.message.text),
    'the system message telling the removed user');
  await b.conn.refused('send', { conversation: g.id, text: 'still here?', client_key: key() }, 'PERMISSION_DENIED');
});

check('16', 'an owner who leaves hands the group to the longest-standing member; when the last member leaves the group ends (NOT_FOUND)', async (t) => {
  const a = await t.user('la');
  const b = await t.user('lb');
  const c = await t.user('lc');
  const g = await a.conn.call('create_group', { name: 'passing', usernames: [b.name, c.name] }, 'conversation');
  await b.conn.call('join_group', { conversation: g.id }, 'conversation');
  await c.conn.call('join_group', { conversation: g.id }, 'conversation');
  await a.conn.call('leave_group', { conversation: g.id }, 'ok');
  const r = await c.conn.call('members', { conversation: g.id }, 'members_reply');
  eq(memberList(r), [[b.name, true, false], [c.name, false, false]], 'MembersReply after the owner left');
  await b.conn.call('leave_group', { conversation: g.id }, 'ok');
  await c.conn.call('leave_group', { conversation: g.id }, 'ok');
  await c.conn.refused('members', { conversation: g.id }, 'NOT_FOUND');
  await a.conn.refused('join_group', { conversation: g.id }, 'NOT_FOUND');
});

check('16', 'create_group naming an unknown user is NOT_FOUND and creates no group', async (t) => {
  const a = await t.user('nf');
  const before = (await conversations(a.conn)).length;
  await a.conn.refused('create_group', { name: 'nobody', usernames: [t.name('ghost')] }, 'NOT_FOUND');
  eq((await conversations(a.conn)).length, before, 'conversations after the refused create_group');
});

check('15.6', 'groups created: 10 at once, the 11th in the hour is RATE_LIMITED with retry_after_ms', async (t) => {
  const a = await t.user('many');
  for (let i = 1; i <= 10; i++) await a.conn.call('create_group', { name: `g${i}` }, 'conversation');
  const e = await a.conn.refused('create_group', { name: 'g11' }, 'RATE_LIMITED');
  ok(e.retry_after_ms > 0, 'RATE_LIMITED without retry_after_ms');
  const n = (await conversations(a.conn)).filter((c) => c.kind === 'CONVERSATION_KIND_GROUP').length;
  eq(n, 10, 'groups after the refused create_group');
});

check('16', 'a user holding 100 unanswered invitations: the next invite is QUOTA_EXCEEDED and creates no group; declining one makes room', async (t) => {
  const v = await t.user('popular');
  const invites = [];
  let refused = null;
  for (let i = 1; i <= 11 && !refused; i++) {
    const inviter = await t.user(`inv${i}`);
    for (let j = 1; j <= 10 && invites.length <= 100; j++) {
      const { frame } = await inviter.conn.request('create_group', { name: `invite ${i}.${j}`, usernames: [v.name] });
      if (invites.length < 100) {
        eq(frame.body, 'conversation', `create_group inviting the user for the ${invites.length + 1}th time`);
        invites.push({ inviter, g: frame.conversation });
        continue;
      }
      ok(frame.body === 'error' && frame.error.code === 'ERROR_CODE_QUOTA_EXCEEDED',
        `create_group inviting a user who holds 100 invitations answered ${frame.body === 'error' ? frame.error.code : frame.body}, want QUOTA_EXCEEDED`);
      refused = inviter;
      break;
    }
  }
  ok(refused, 'no create_group was refused');
  const groups = (await conversations(refused.conn)).filter((c) => c.kind === 'CONVERSATION_KIND_GROUP');
  const mine = invites.filter((x) => x.inviter === refused).length;
  eq(groups.length, mine, 'groups of the refused inviter (none created by the refused request)');
  const list = (await conversations(v.conn, 7)).filter((c) => c.invited);
  eq(list.length, 100, 'invitations in the invitee\'s conversation list');
  await v.conn.call('leave_group', { conversation: invites[0].g.id }, 'ok');
  const again = await refused.conn.call('create_group', { name: 'room at last', usernames: [v.name] }, 'conversation');
  ok(again.id.startsWith('group.'), 'create_group after a decline');
});
