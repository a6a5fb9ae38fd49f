'use strict';
// Conversations and messages (§15): sending, routing, idempotency, limits,
// catch-up exactly as §15.3 tells a client to do it, history and acks.

const { check, eq, ok, fail } = require('../lib/check');

let keyN = 0;
const key = () => `k-${process.pid}-${Date.now().toString(36)}-${++keyN}`;

// send sends one message and returns the stored Message (retrying
// RATE_LIMITED, §15.6).
async function send(t, conn, body) {
  const { frame } = await t.withRetry(conn, 'send', { client_key: key(), ...body });
  if (frame.body !== 'send_reply') fail(`send ${JSON.stringify(body).slice(0, 80)}: answered ${JSON.stringify(frame.error || frame.body)}`);
  return frame.send_reply.message;
}

// conversations reads every page of the conversation list (§15.1) and checks
// the paging rules on the way.
async function conversations(conn, limit = 0) {
  const all = [];
  let after = '';
  for (let pages = 0; ; pages++) {
    ok(pages < 10000, 'the conversation list does not end');
    const r = await conn.call('conversations', { after_id: after, limit }, 'conversations_reply');
    if (limit > 0) ok(r.conversations.length <= limit, `a page holds ${r.conversations.length} conversations, limit ${limit}`);
    if (r.more) ok(r.conversations.length > 0, 'a page with more: true is empty');
    for (const c of r.conversations) {
      ok(Buffer.compare(Buffer.from(c.id), Buffer.from(after)) > 0, `conversation ${c.id} is not above after_id ${after}`);
      after = c.id;
      all.push(c);
    }
    if (!r.more) return all;
  }
}

// catchUp does what §15.3 tells a client without local state to do after a
// login: list every conversation and read, for each with last_seq above what
// it has shown, the messages after that point (private chats and groups
// from acked_seq, the room from last_seq − 50), page by page. It returns
// the messages read per conversation and the first reply of each.
async function catchUp(conn) {
  const read = new Map();
  for (const c of await conversations(conn)) {
    if (c.invited) continue;
    let from = c.kind === 'CONVERSATION_KIND_ROOM' ? Math.max(0, c.last_seq - 50) : c.acked_seq;
    if (c.last_seq <= from) continue;
    const msgs = [];
    const replies = [];
    for (let pages = 0; ; pages++) {
      ok(pages < 1000, `catch-up of ${c.id} does not end`);
      const h = await conn.call('history', { conversation: c.id, after_seq: from }, 'history_reply');
      replies.push(h);
      for (const m of h.messages) {
        if (m.seq <= from) fail(`history after_seq ${from} of ${c.id} returned seq ${m.seq}`);
        msgs.push(m);
        from = m.seq;
      }
      if (!h.more) break;
      if (h.messages.length === 0) fail(`history of ${c.id} after_seq ${from}: more: true with no messages`);
    }
    read.set(c.id, { conversation: c, msgs, replies });
  }
  return read;
}

const dmID = (a, b) => `dm.${[a, b].sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y))).join('.')}`;

check('15.2', 'a room message is stored with the server\'s fields and reaches every member, the sender\'s own connections included (TCP and WebSocket)', async (t) => {
  const a = await t.user('rooma');
  const a2 = await t.login(a, { label: 'alice second device' });
  const b = await t.user('roomb', { transport: 'ws' });
  const text = '你好 👋\nsecond line';
  const k = key();
  const m = await a.conn.call('send', { conversation: 'room.public', text, client_key: k }, 'send_reply');
  eq(m.duplicate, false, 'SendReply.duplicate');
  const msg = m.message;
  eq(msg.conversation, 'room.public', 'Message.conversation');
  ok(msg.seq >= 1, 'Message.seq is 0');
  ok(msg.id >= 1, 'Message.id is 0');
  eq(msg.sender_id, a.id, 'Message.sender_id');
  eq(msg.sender_name, a.name, 'Message.sender_name');
  eq(msg.text, text, 'Message.text');
  eq(msg.client_key, k, 'Message.client_key');
  ok(msg.sent_at_unix_ms > 0, 'Message.sent_at_unix_ms is 0');
  for (const [c, who] of [[b.conn, 'another user (WebSocket)'], [a.conn, 'the sender\'s connection'], [a2, 'the sender\'s other device']]) {
    const ev = await c.event('message', (e) => e.message.id === msg.id, `MessageEvent on ${who}`);
    eq(ev.message.seq, msg.seq, `MessageEvent.seq on ${who}`);
    eq(ev.message.text, text, `MessageEvent.text on ${who}`);
  }
  const next = await send(t, b.conn, { conversation: 'room.public', text: 'next' });
  ok(next.seq > msg.seq, 'seq did not grow');
  ok(next.id !== msg.id, 'two messages share an id');
});

check('15.2', 'a re-send with the same client_key stores nothing new (duplicate, same message) and publishes the event again; the key for another text or conversation is INVALID_ARGUMENT', async (t) => {
  const a = await t.user('dupa');
  const b = await t.user('dupb');
  const k = key();
  const first = await a.conn.call('send', { to_username: b.name, text: 'once', client_key: k }, 'send_reply');
  const again = await a.conn.call('send', { to_username: b.name, text: 'once', client_key: k }, 'send_reply');
  eq(again.duplicate, true, 'SendReply.duplicate of the re-send');
  eq([again.message.id, again.message.seq], [first.message.id, first.message.seq], 'id and seq of the re-send');
  await b.conn.event('message', (e) => e.message.id === first.message.id, 'the first MessageEvent');
  await b.conn.event('message', (e) => e.message.id === first.message.id, 'the MessageEvent published again');
  await a.conn.refused('send', { to_username: b.name, text: 'another text', client_key: k }, 'INVALID_ARGUMENT');
  await a.conn.refused('send', { conversation: 'room.public', text: 'once', client_key: k }, 'INVALID_ARGUMENT');
  const h = await a.conn.call('history', { conversation: first.message.conversation, after_seq: 0 }, 'history_reply');
  eq(h.messages.map((x) => x.text), ['once'], 'texts stored');
  // Keys are per user: the same key from b names another message.
  const theirs = await b.conn.call('send', { to_username: a.name, text: 'once', client_key: k }, 'send_reply');
  eq(theirs.duplicate, false, 'SendReply.duplicate for another user\'s key');
});

check('15.2', 'client_key: required, 1-64 printable characters, no space first or last, no other white space or control (INVALID_ARGUMENT)', async (t) => {
  const a = await t.user('keys');
  for (const [k, why] of [
    [undefined, 'missing'], ['x'.repeat(65), '65 characters'], [' lead', 'leading space'], ['trail ', 'trailing space'],
    ['tab\there', 'a tab'], ['new\nline', 'a newline'], ['nb\u00a0sp', 'U+00A0'], ['ctl\u0007', 'a control character'],
    ['zw\u200bsp', 'a zero-width space (format)'], ['pua\ue000', 'a private-use character'],
  ]) {
    const body = { conversation: 'room.public', text: 'key test' };
    if (k !== undefined) body.client_key = k;
    const { id, frame } = await a.conn.request('send', body);
    ok(frame.body === 'error' && frame.error.code === 'ERROR_CODE_INVALID_ARGUMENT' && frame.request_id === id,
      `client_key ${why}: answered ${frame.body === 'error' ? frame.error.code : frame.body}, want INVALID_ARGUMENT`);
  }
  for (const [k, why] of [[(key() + 'x'.repeat(64)).slice(0, 64), '64 characters'], [`ключ 🔑 ${key()}`, 'letters, a symbol and inner spaces']]) {
    const r = await a.conn.call('send', { conversation: 'room.public', text: 'key test', client_key: k }, 'send_reply');
    eq(r.message.client_key, k, `client_key ${why}`);
  }
});

check('15.2', 'a text of only white space or invisible characters is EMPTY_MESSAGE; U+2800 is content', async (t) => {
  const a = await t.user('empty');
  for (const [text, why] of [
    ['', 'empty'], [' \t\n\r\u000b\u000c', 'ASCII white space'], ['\u00a0\u1680\u2000\u200a\u2028\u2029\u202f\u205f\u3000\u0085', 'Unicode White_Space'],
    ['\u200b\u200c\u200d\u2060\ufeff', 'zero-width characters'], ['\u200e\u200f\u202a\u202e\u2066\u2069\u061c', 'direction marks'],
    ['\u00ad\u115f\u1160\u3164\uffa0\u034f\u180e', 'soft hyphen, Hangul fillers, CGJ, Mongolian vowel separator'],
    ['\ufe0f\u{e0041}\u{e0001} ', 'variation selector and tag characters'],
  ]) {
    const { id, frame } = await a.conn.request('send', { conversation: 'room.public', text, client_key: key() });
    ok(frame.body === 'error' && frame.error.code === 'ERROR_CODE_EMPTY_MESSAGE' && frame.request_id === id,
      `text of ${why}: answered ${frame.body === 'error' ? frame.error.code : frame.body}, want EMPTY_MESSAGE`);
  }
  const m = await send(t, a.conn, { conversation: 'room.public', text: '\u2800' });
  eq(m.text, '\u2800', 'stored U+2800');
});

check('15.2', 'text limits: 4,000 code points (16,000 bytes) pass, 4,001 are MESSAGE_TOO_LARGE; a send near max_frame_size is MESSAGE_TOO_LARGE (§6), not fatal', async (t) => {
  const a = await t.user('size');
  const b = await t.user('sizeb');
  const fourK = '😀'.repeat(4000);
  const m = await send(t, a.conn, { to_username: b.name, text: fourK });
  eq(m.text, fourK, 'stored 4,000-emoji text');
  let e = await a.conn.refused('send', { to_username: b.name, text: 'a'.repeat(4001), client_key: key() }, 'MESSAGE_TOO_LARGE');
  eq(e.fatal, false, 'Error.fatal');
  const max = a.conn.welcome.max_frame_size;
  const huge = 'a'.repeat(max - 200);
  e = await a.conn.refused('send', { conversation: m.conversation, text: huge, client_key: key() }, 'MESSAGE_TOO_LARGE');
  eq(e.fatal, false, 'Error.fatal');
  await a.conn.call('ping', { nonce: 1 }, 'pong');
});

check('15.1', 'private messages: to_username goes to dm.<id>.<id> (ascending), reaches the peer, and is PERMISSION_DENIED to a third user; open_direct rules', async (t) => {
  const a = await t.user('dma');
  const b = await t.user('dmb');
  const c = await t.user('dmc');
  const m = await send(t, a.conn, { to_username: b.name, text: 'just for b' });
  eq(m.conversation, dmID(a.id, b.id), 'Message.conversation of a private message');
  await b.conn.event('message', (e) => e.message.id === m.id, 'MessageEvent to the recipient');
  const conv = await b.conn.call('open_direct', { username: a.name }, 'conversation');
  eq(conv.id, m.conversation, 'Conversation.id from open_direct');
  eq(conv.kind, 'CONVERSATION_KIND_DIRECT', 'Conversation.kind');
  eq(conv.peer_id, a.id, 'Conversation.peer_id');
  eq(conv.last_seq, m.seq, 'Conversation.last_seq');
  await c.conn.refused('history', { conversation: m.conversation }, 'PERMISSION_DENIED');
  await c.conn.refused('send', { conversation: m.conversation, text: 'intrude', client_key: key() }, 'PERMISSION_DENIED');
  await c.conn.refused('ack', { conversation: m.conversation, seq: 1 }, 'PERMISSION_DENIED');
  await c.conn.refused('history', { conversation: 'group.doesnotexist' }, 'NOT_FOUND');
  await c.conn.refused('open_direct', { username: t.name('ghost') }, 'NOT_FOUND');
  await c.conn.refused('send', { to_username: t.name('ghost'), text: 'hi', client_key: key() }, 'NOT_FOUND');
  await c.conn.refused('open_direct', { username: c.name }, 'INVALID_ARGUMENT');
});

check('15.3', 'catch-up from acked_seq 0: 120 private messages sent while the recipient was offline are all read once, in order (pages of 50 from after_seq 0)', async (t) => {
  const a = await t.user('cua');
  const b = await t.user('cub');
  b.conn.close();
  const conv = await a.conn.call('open_direct', { username: b.name }, 'conversation');
  const sent = [];
  for (let i = 1; i <= 120; i++) sent.push(await send(t, a.conn, { conversation: conv.id, text: `offline ${i}` }));
  eq(sent.map((m) => m.seq), Array.from({ length: 120 }, (_, i) => i + 1), 'seqs the sender got');
  const bc = await t.login(b, { label: 'bob after login' });
  const read = await catchUp(bc);
  const got = read.get(conv.id);
  ok(got, `catch-up did not read ${conv.id}`);
  eq(got.conversation.acked_seq, 0, 'Conversation.acked_seq before any ack');
  eq(got.conversation.last_seq, 120, 'Conversation.last_seq');
  eq(got.replies[0].messages.map((m) => m.seq), Array.from({ length: 50 }, (_, i) => i + 1), 'seqs of HistoryRequest{after_seq: 0}');
  eq(got.replies[0].more, true, 'HistoryReply.more of the first page');
  eq(got.replies[0].last_seq, 120, 'HistoryReply.last_seq');
  eq(got.msgs.map((m) => m.seq), Array.from({ length: 120 }, (_, i) => i + 1), 'seqs read by catch-up');
  eq(got.msgs.map((m) => m.text), sent.map((m) => m.text), 'texts read by catch-up');
  // §15.5, §17: the ack moves the unread count and tells the sender.
  await bc.call('ack', { conversation: conv.id, seq: 120 }, 'ok');
  const r = await a.conn.event('receipt', (x) => x.conversation === conv.id, 'ReceiptEvent to the sender');
  eq([r.user_id, r.seq], [b.id, 120], 'ReceiptEvent user_id and seq');
  const mine = (await conversations(bc)).find((c) => c.id === conv.id);
  eq(mine.acked_seq, 120, 'Conversation.acked_seq after the ack');
  const theirs = (await conversations(a.conn)).find((c) => c.id === conv.id);
  eq(theirs.peer_acked_seq, 120, 'Conversation.peer_acked_seq for the sender');
  // A second catch-up finds nothing left to read in that conversation.
  const again = await catchUp(bc);
  ok(!again.has(conv.id), 'catch-up after the ack read the conversation again');
});

check('15.4', 'history: after_seq pages forward, before_seq (or none) pages back, limit 0 means 50 and at most 200, both cursors are INVALID_ARGUMENT', async (t) => {
  const a = await t.user('hista');
  const b = await t.user('histb');
  const conv = await a.conn.call('open_direct', { username: b.name }, 'conversation');
  for (let i = 1; i <= 60; i++) await send(t, a.conn, { conversation: conv.id, text: `h${i}` });
  const range = (lo, hi) => Array.from({ length: hi - lo + 1 }, (_, i) => lo + i);
  const h = async (body, what) => {
    const r = await b.conn.call('history', { conversation: conv.id, ...body }, 'history_reply');
    return { seqs: r.messages.map((m) => m.seq), more: r.more, last: r.last_seq, what };
  };
  const cases = [
    [{}, range(11, 60), true, 'newest page (no cursor)'],
    [{ before_seq: 11 }, range(1, 10), false, 'before_seq 11'],
    [{ before_seq: 0, limit: 5 }, range(56, 60), true, 'before_seq 0, limit 5'],
    [{ after_seq: 0 }, range(1, 50), true, 'after_seq 0'],
    [{ after_seq: 50 }, range(51, 60), false, 'after_seq 50'],
    [{ after_seq: 60 }, [], false, 'after_seq 60'],
    [{ after_seq: 0, limit: 500 }, range(1, 60), false, 'after_seq 0, limit 500'],
    [{ after_seq: 0, before_seq: 0, limit: 7 }, range(1, 7), true, 'after_seq 0, before_seq 0, limit 7'],
  ];
  for (const [body, seqs, more, what] of cases) {
    const r = await h(body, what);
    eq(r.seqs, seqs, `seqs of ${what}`);
    eq(r.more, more, `more of ${what}`);
    eq(r.last, 60, `last_seq of ${what}`);
  }
  await b.conn.refused('history', { conversation: conv.id, after_seq: 5, before_seq: 20 }, 'INVALID_ARGUMENT');
  await b.conn.refused('history', { conversation: conv.id, after_seq: 0, before_seq: 20 }, 'INVALID_ARGUMENT');
});

check('15.5', 'acks never move backwards, and an ack above the newest seq is INVALID_ARGUMENT', async (t) => {
  const a = await t.user('acka');
  const b = await t.user('ackb');
  let m;
  for (let i = 0; i < 3; i++) m = await send(t, a.conn, { to_username: b.name, text: `a${i}` });
  await b.conn.call('ack', { conversation: m.conversation, seq: 3 }, 'ok');
  await b.conn.call('ack', { conversation: m.conversation, seq: 1 }, 'ok');
  await b.conn.refused('ack', { conversation: m.conversation, seq: 4 }, 'INVALID_ARGUMENT');
  const c = (await conversations(b.conn)).find((x) => x.id === m.conversation);
  eq([c.acked_seq, c.last_seq], [3, 3], 'acked_seq and last_seq after acks 3, 1, 4');
});

check('15.1', 'conversations: the room, private chats and groups in ascending id order, pages of limit with more, every page non-empty while more', async (t) => {
  const a = await t.user('lista');
  const b = await t.user('listb');
  const c = await t.user('listc');
  await send(t, a.conn, { to_username: b.name, text: 'hi b' });
  await send(t, c.conn, { to_username: a.name, text: 'hi a' });
  const g = await a.conn.call('create_group', { name: 'listing' }, 'conversation');
  const paged = await conversations(a.conn, 1);
  const ids = paged.map((x) => x.id);
  const want = ['room.public', dmID(a.id, b.id), dmID(a.id, c.id), g.id].sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y)));
  eq(ids, want, 'conversation ids, paged by 1');
  eq((await conversations(a.conn, 0)).map((x) => x.id), want, 'conversation ids, limit 0');
  const room = paged.find((x) => x.id === 'room.public');
  eq(room.kind, 'CONVERSATION_KIND_ROOM', 'kind of room.public');
  const group = paged.find((x) => x.id === g.id);
  eq([group.kind, group.title, group.owner_id], ['CONVERSATION_KIND_GROUP', 'listing', a.id], 'the group\'s kind, title and owner_id');
});

module.exports = { send, conversations, catchUp, key, dmID };
