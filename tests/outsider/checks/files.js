'use strict';
// Files (§18): offers over frames, tus 1.0 uploads and ranged downloads over
// HTTP at Welcome.http_url.

const crypto = require('node:crypto');
const { check, eq, ok, fail } = require('../lib/check');
const { request, stream, patchCut, exchange, statuses } = require('../lib/http');
const { png, jpegSize } = require('../lib/png');
const { key, dmID } = require('./messages');

const MiB = 1024 * 1024;
const PART = 8 * MiB;
const sha256hex = (b) => crypto.createHash('sha256').update(b).digest('hex');
const b64 = (s) => Buffer.from(s).toString('base64');
const TUS = { 'Tus-Resumable': '1.0.0' };
const bearer = (token) => ({ Authorization: `Bearer ${token}` });
const tokenOf = (u) => u.conn.session.token;

function nosniff(res, what) {
  eq(res.headers['x-content-type-options'], 'nosniff', `X-Content-Type-Options of ${what}`);
}

// status asserts an answer's status and what §18.3 promises of every answer
// on the HTTP port: X-Content-Type-Options: nosniff, and an error body of
// one line of text.
function status(res, want, what) {
  if (res.status !== want) fail(`${what}: status ${res.status} (${res.body.toString('utf8', 0, 200).trim()}), want ${want}`);
  nosniff(res, what);
  if (res.status >= 400) {
    const body = res.body.toString('utf8').replace(/\r?\n$/, '');
    ok(!body.includes('\n'), `${what}: the ${res.status} body is not one line: ${JSON.stringify(body.slice(0, 200))}`);
  }
}

// offer sends an OfferFileRequest for bytes and returns the FileOffer.
async function offer(t, u, bytes, body) {
  const { frame } = await t.withRetry(u.conn, 'offer_file', {
    size: bytes.length, sha256: sha256hex(bytes), content_type: 'application/octet-stream', client_key: key(), ...body,
  });
  if (frame.body !== 'file_offer') fail(`offer_file: answered ${JSON.stringify(frame.error || frame.body)}`);
  return frame.file_offer;
}

function patch(t, u, path, offset, bytes, headers = {}) {
  return request(t.httpURL, 'PATCH', path, {
    headers: { ...TUS, ...bearer(tokenOf(u)), 'Content-Type': 'application/offset+octet-stream', 'Upload-Offset': String(offset), ...headers },
    body: bytes,
  });
}

function head(t, u, path, headers = {}) {
  return request(t.httpURL, 'HEAD', path, { headers: { ...TUS, ...(u ? bearer(tokenOf(u)) : {}), ...headers } });
}

// upload PATCHes the whole file from offset 0 and expects 204.
async function upload(t, u, path, bytes) {
  const r = await patch(t, u, path, 0, bytes);
  status(r, 204, `PATCH ${path} with the whole file`);
  eq(r.headers['upload-offset'], String(bytes.length), 'Upload-Offset after the whole file');
  return r;
}

async function downloadURL(conn, fileId) {
  const d = await conn.call('file_download', { file_id: fileId }, 'file_download_reply');
  ok(d.path.startsWith(`/v1/files/${fileId}/content`), `FileDownload.path ${d.path} is not /v1/files/<id>/content…`);
  return d;
}

check('18.3', 'OPTIONS /v1/files announces tus 1.0.0 with creation, termination, checksum (md5, sha1, sha256), expiration and Tus-Max-Size; no CORS by default', async (t) => {
  const u = await t.user('opt');
  const r = await request(t.httpURL, 'OPTIONS', '/v1/files', { headers: { ...TUS, ...bearer(tokenOf(u)), Origin: 'https://elsewhere.example' } });
  ok(r.status >= 200 && r.status < 300, `OPTIONS status ${r.status}`);
  ok((r.headers['tus-version'] || '').split(',').map((s) => s.trim()).includes('1.0.0'), `Tus-Version "${r.headers['tus-version']}"`);
  const ext = (r.headers['tus-extension'] || '').split(',').map((s) => s.trim());
  for (const e of ['creation', 'termination', 'checksum', 'expiration']) ok(ext.includes(e), `Tus-Extension "${r.headers['tus-extension']}" lacks ${e}`);
  ok(Number(r.headers['tus-max-size']) > 0, `Tus-Max-Size "${r.headers['tus-max-size']}"`);
  const alg = (r.headers['tus-checksum-algorithm'] || '').split(',').map((s) => s.trim());
  for (const a of ['md5', 'sha1', 'sha256']) ok(alg.includes(a), `Tus-Checksum-Algorithm "${r.headers['tus-checksum-algorithm']}" lacks ${a}`);
  nosniff(r, 'OPTIONS');
  eq(r.headers['access-control-allow-origin'], undefined, 'Access-Control-Allow-Origin with no origin configured');
});

check('18.1', 'offer_file: FileOffer{file, upload_path, part_size 8 MiB}; the offer is a message and a FileEvent OFFERED; client_key makes it idempotent', async (t) => {
  const a = await t.user('offa');
  const b = await t.user('offb');
  const bytes = crypto.randomBytes(1000);
  const k = key();
  const before = Date.now();
  const o = await offer(t, a, bytes, { to_username: b.name, name: '../secret/a<b>.txt', content_type: 'text/plain', client_key: k });
  const f = o.file;
  ok(f.file_id !== '', 'FileInfo.file_id is empty');
  eq(o.upload_path, `/v1/files/${f.file_id}`, 'FileOffer.upload_path');
  eq(o.part_size, PART, 'FileOffer.part_size');
  eq(o.duplicate, false, 'FileOffer.duplicate');
  eq([f.name, f.size, f.sha256, f.sender_id, f.sender_name, f.conversation, f.state, f.uploaded],
    ['a_b_.txt', 1000, sha256hex(bytes), a.id, a.name, dmID(a.id, b.id), 'FILE_STATE_UPLOADING', 0],
    'FileInfo name (sanitised), size, sha256, sender_id, sender_name, conversation, state, uploaded');
  ok(f.expires_at_unix_ms > before, 'FileInfo.expires_at_unix_ms is not in the future');
  const ev = await b.conn.event('file_event', (e) => e.file.file_id === f.file_id, 'FileEvent to the recipient');
  eq([ev.kind, ev.user_id, ev.username], ['KIND_OFFERED', a.id, a.name], 'FileEvent kind, user_id, username');
  for (const [c, who] of [[b.conn, 'the recipient'], [a.conn, 'the sender']]) {
    const m = await c.event('message', (e) => e.message.file && e.message.file.file_id === f.file_id, `the offer's MessageEvent to ${who}`);
    eq(m.message.text, 'a_b_.txt', `Message.text of the offer to ${who}`);
  }
  const again = await a.conn.call('offer_file', { to_username: b.name, name: 'a<b>.txt', size: 1000, sha256: sha256hex(bytes), client_key: k }, 'file_offer');
  eq([again.duplicate, again.file.file_id], [true, f.file_id], 'duplicate and file_id of the repeated offer');
  await a.conn.refused('offer_file', { to_username: b.name, name: 'x', size: 1001, sha256: sha256hex(bytes), client_key: k }, 'CONFLICT');
  await a.conn.refused('offer_file', { to_username: b.name, name: 'x', size: 10, sha256: sha256hex(bytes), client_key: 'k'.repeat(65) }, 'INVALID_ARGUMENT');
  const dev = await offer(t, a, bytes, { to_username: b.name, name: 'CON.txt' });
  eq(dev.file.name, '_CON.txt', 'sanitised Windows device name');
  const files = await b.conn.call('files', {}, 'files_reply');
  ok(files.files.some((x) => x.file_id === f.file_id), 'FilesRequest{} does not list an unanswered offer');
});

check('18.1', 'offer_file refusals: the public room (PERMISSION_DENIED), above the size limit (FILE_TOO_LARGE), size 0 and a malformed sha256 (INVALID_ARGUMENT)', async (t) => {
  const a = await t.user('offr');
  const b = await t.user('offrb');
  const sha = sha256hex(Buffer.from('x'));
  await a.conn.refused('offer_file', { conversation: 'room.public', name: 'x', size: 1, sha256: sha, client_key: key() }, 'PERMISSION_DENIED');
  await a.conn.refused('offer_file', { to_username: b.name, name: 'x', size: 11 * 1024 * MiB, sha256: sha, client_key: key() }, 'FILE_TOO_LARGE');
  await a.conn.refused('offer_file', { to_username: b.name, name: 'x', size: 0, sha256: sha, client_key: key() }, 'INVALID_ARGUMENT');
  await a.conn.refused('offer_file', { to_username: b.name, name: 'x', size: 1, sha256: sha.toUpperCase(), client_key: key() }, 'INVALID_ARGUMENT');
  await a.conn.refused('offer_file', { to_username: b.name, name: 'x', size: 1, client_key: key() }, 'INVALID_ARGUMENT');
});

check('18.2', 'answering: accept by the recipient tells the sender (FileEvent ACCEPTED) and takes the offer off FilesRequest{}; files of others\' conversations are refused', async (t) => {
  const a = await t.user('ansa');
  const b = await t.user('ansb');
  const c = await t.user('ansc');
  const o = await offer(t, a, crypto.randomBytes(10), { to_username: b.name, name: 'x.bin' });
  await b.conn.call('answer_file', { file_id: o.file.file_id, accept: true }, 'ok');
  const ev = await a.conn.event('file_event', (e) => e.file.file_id === o.file.file_id, 'FileEvent to the sender');
  eq([ev.kind, ev.user_id], ['KIND_ACCEPTED', b.id], 'FileEvent kind and user_id');
  const files = await b.conn.call('files', {}, 'files_reply');
  ok(!files.files.some((x) => x.file_id === o.file.file_id), 'FilesRequest{} still lists an answered offer');
  await c.conn.refused('files', { conversation: o.file.conversation }, 'PERMISSION_DENIED');
  await c.conn.refused('files', { conversation: '!!not an id' }, 'INVALID_ARGUMENT');
});

check('18.2', 'answer_file by the sender is PERMISSION_DENIED, by an unrelated user NOT_FOUND (as for an unknown file_id)', async (t) => {
  const a = await t.user('ans2a');
  const b = await t.user('ans2b');
  const c = await t.user('ans2c');
  const o = await offer(t, a, crypto.randomBytes(10), { to_username: b.name, name: 'x.bin' });
  await c.conn.refused('answer_file', { file_id: o.file.file_id, accept: true }, 'NOT_FOUND');
  await c.conn.refused('answer_file', { file_id: 'fnosuchfile', accept: true }, 'NOT_FOUND');
  await a.conn.refused('answer_file', { file_id: o.file.file_id, accept: true }, 'PERMISSION_DENIED');
});

check('18.3', 'upload with PATCH: HEAD offsets and who may see them, 401/403/409/412/413/415/460 refusals, a body cut mid-way kept, resumed from HEAD, FileEvent AVAILABLE', async (t) => {
  const a = await t.user('upa');
  const b = await t.user('upb');
  const c = await t.user('upc');
  const size = 9 * MiB + 12345;
  const bytes = crypto.randomBytes(size);
  const o = await offer(t, a, bytes, { to_username: b.name, name: 'big.bin' });
  const path = o.upload_path;

  let r = await head(t, a, path);
  status(r, 200, 'HEAD by the sender');
  eq([r.headers['upload-offset'], r.headers['upload-length'], r.headers['cache-control']], ['0', String(size), 'no-store'], 'Upload-Offset, Upload-Length, Cache-Control');
  ok(r.headers['upload-expires'], 'HEAD lacks Upload-Expires while uploading');
  nosniff(r, 'HEAD');
  status(await head(t, b, path), 403, 'HEAD by the recipient');
  status(await head(t, c, path), 404, 'HEAD by another user');
  status(await head(t, null, path), 401, 'HEAD without a token');

  const small = bytes.subarray(0, 1000);
  status(await request(t.httpURL, 'PATCH', path, { headers: { ...TUS, 'Content-Type': 'application/offset+octet-stream', 'Upload-Offset': '0' }, body: small }), 401, 'PATCH without a token');
  status(await patch(t, a, path, 0, small, { 'Tus-Resumable': '0.2.2' }), 412, 'PATCH with Tus-Resumable 0.2.2');
  status(await patch(t, a, path, 0, small, { 'Content-Type': 'text/plain' }), 415, 'PATCH with Content-Type text/plain');
  r = await patch(t, a, path, 5, small);
  status(r, 409, 'PATCH at a wrong Upload-Offset');
  eq(r.headers['upload-offset'], '0', 'Upload-Offset of the 409');
  status(await patch(t, b, path, 0, small), 403, 'PATCH by the recipient');
  status(await patch(t, a, path, size - 10, small), 409, 'PATCH at an offset ahead of the upload');
  const digest = (alg, buf) => crypto.createHash(alg).update(buf).digest('base64');
  r = await patch(t, a, path, 0, small, { 'Upload-Checksum': `sha256 ${digest('sha256', Buffer.from('other'))}` });
  status(r, 460, 'PATCH with a wrong Upload-Checksum');
  eq((await head(t, a, path)).headers['upload-offset'], '0', 'Upload-Offset after the checksum mismatch');
  r = await patch(t, a, path, 0, small, { 'Upload-Checksum': `sha1 ${digest('sha1', small)}` });
  status(r, 204, 'PATCH with a right sha1 Upload-Checksum');
  eq(r.headers['upload-offset'], '1000', 'Upload-Offset after 1,000 bytes');

  // The connection breaks 5 MiB into the file: what arrived is kept.
  const cutAt = 5 * MiB;
  await patchCut(t.httpURL, path, { ...TUS, ...bearer(tokenOf(a)), 'Content-Type': 'application/offset+octet-stream', 'Upload-Offset': '1000' },
    bytes.subarray(1000, cutAt), size - 1000);
  r = await head(t, a, path);
  status(r, 200, 'HEAD after the cut');
  eq(r.headers['upload-offset'], String(cutAt), 'Upload-Offset after a PATCH cut 5 MiB into the file (all of it arrived)');

  // Live download (§18.4): the recipient was online at the offer.
  const d = await downloadURL(b.conn, o.file.file_id);
  const live = await stream(t.httpURL, d.path);
  eq(live.status, 200, 'status of a live download');
  eq([live.headers['x-parley-live'], live.headers['content-length']], ['1', String(size)], 'X-Parley-Live and Content-Length of a live download');
  await live.atLeast(cutAt);

  status(await patch(t, a, path, cutAt, Buffer.concat([bytes.subarray(cutAt), Buffer.alloc(10)])), 413, 'PATCH beyond Upload-Length');
  eq((await head(t, a, path)).headers['upload-offset'], String(cutAt), 'Upload-Offset after the 413');
  r = await patch(t, a, path, cutAt, bytes.subarray(cutAt));
  status(r, 204, 'PATCH resuming from HEAD\'s offset');
  eq(r.headers['upload-offset'], String(size), 'Upload-Offset at the end');
  const avail = await a.conn.event('file_event', (e) => e.file.file_id === o.file.file_id && e.kind === 'KIND_AVAILABLE', 'FileEvent AVAILABLE to the sender');
  eq([avail.file.state, avail.file.uploaded], ['FILE_STATE_AVAILABLE', size], 'FileInfo state and uploaded in AVAILABLE');
  await b.conn.event('file_event', (e) => e.file.file_id === o.file.file_id && e.kind === 'KIND_AVAILABLE', 'FileEvent AVAILABLE to the recipient');
  const got = await live.body;
  eq([got.length, sha256hex(got)], [size, sha256hex(bytes)], 'length and SHA-256 of the live download');
  r = await head(t, a, path);
  eq(r.headers['upload-offset'], String(size), 'Upload-Offset of a finished upload');
});

check('18.3', 'tus creation: POST /v1/files with Upload-Metadata → 201, Location, Upload-Expires, an offer like offer_file; Upload-Defer-Length is 400; DELETE is 204', async (t) => {
  const a = await t.user('tusa');
  const b = await t.user('tusb');
  const bytes = Buffer.from('created with tus creation\n'.repeat(100));
  const meta = (name, sha) => `filename ${b64(name)},filetype ${b64('text/plain')},sha256 ${b64(sha)},to ${b64(b.name)}`;
  let r = await request(t.httpURL, 'POST', '/v1/files', {
    headers: { ...TUS, ...bearer(tokenOf(a)), 'Upload-Length': String(bytes.length), 'Upload-Metadata': meta('tus.txt', sha256hex(bytes)) },
  });
  status(r, 201, 'POST /v1/files');
  const loc = r.headers.location || '';
  ok(/^\/v1\/files\/[^/]+$/.test(loc), `Location "${loc}" is not /v1/files/<file_id>`);
  ok(r.headers['upload-expires'], 'POST lacks Upload-Expires');
  nosniff(r, 'POST');
  const id = loc.split('/').pop();
  const ev = await b.conn.event('file_event', (e) => e.file.file_id === id, 'FileEvent OFFERED for a tus creation');
  eq([ev.kind, ev.file.name, ev.file.size, ev.file.sha256], ['KIND_OFFERED', 'tus.txt', bytes.length, sha256hex(bytes)], 'FileEvent of a tus creation');
  await upload(t, a, loc, bytes);

  r = await request(t.httpURL, 'POST', '/v1/files', {
    headers: { ...TUS, ...bearer(tokenOf(a)), 'Upload-Defer-Length': '1', 'Upload-Metadata': meta('later.txt', sha256hex(bytes)) },
  });
  status(r, 400, 'POST with Upload-Defer-Length');
  status(await request(t.httpURL, 'POST', '/v1/files', {
    headers: { ...TUS, 'Upload-Length': '5', 'Upload-Metadata': meta('anon.txt', sha256hex(bytes)) },
  }), 401, 'POST without a token');

  r = await request(t.httpURL, 'POST', '/v1/files', {
    headers: { ...TUS, ...bearer(tokenOf(a)), 'Upload-Length': '10', 'Upload-Metadata': meta('gone.txt', sha256hex(Buffer.alloc(10))) },
  });
  status(r, 201, 'second POST');
  const gone = r.headers.location;
  r = await request(t.httpURL, 'DELETE', gone, { headers: { ...TUS, ...bearer(tokenOf(a)) } });
  status(r, 204, 'DELETE');
  status(await head(t, a, gone), 404, 'HEAD of a deleted upload');
  status(await head(t, a, '/v1/files/nosuchupload'), 404, 'HEAD of an unknown upload');
});

check('18.4', 'download: 200 with Accept-Ranges, Content-Type, Content-Disposition (filename and filename*), ETag, X-Parley-Sha256, nosniff, sandbox CSP; ranges 206/416; bearer instead of token', async (t) => {
  const a = await t.user('dla');
  const b = await t.user('dlb');
  const c = await t.user('dlc');
  const bytes = Buffer.from('<html><script>alert(1)</script></html>\n'.repeat(50));
  const name = 'résumé ü.html';
  const o = await offer(t, a, bytes, { to_username: b.name, name, content_type: 'text/html' });
  await upload(t, a, o.upload_path, bytes);
  await b.conn.event('file_event', (e) => e.file.file_id === o.file.file_id && e.kind === 'KIND_AVAILABLE', 'FileEvent AVAILABLE');
  const d = await downloadURL(b.conn, o.file.file_id);
  ok(d.expires_at_unix_ms > Date.now(), 'FileDownload.expires_at_unix_ms is not in the future');
  eq(d.file.file_id, o.file.file_id, 'FileDownload.file.file_id');

  let r = await request(t.httpURL, 'GET', d.path);
  status(r, 200, 'GET');
  eq(sha256hex(r.body), sha256hex(bytes), 'SHA-256 of the download');
  const h = r.headers;
  eq(h['accept-ranges'], 'bytes', 'Accept-Ranges');
  eq(h['content-type'], 'application/octet-stream', 'Content-Type of an HTML file');
  eq(h['content-length'], String(bytes.length), 'Content-Length');
  const cd = h['content-disposition'] || '';
  ok(/^attachment; filename=/.test(cd), `Content-Disposition "${cd}" is not attachment; filename=…`);
  ok(cd.includes(`filename*=UTF-8''${encodeURIComponent(name)}`), `Content-Disposition "${cd}" lacks filename*=UTF-8''${encodeURIComponent(name)}`);
  ok(h.etag, 'no ETag');
  eq(h['x-parley-sha256'], sha256hex(bytes), 'X-Parley-Sha256');
  nosniff(r, 'GET');
  eq(h['content-security-policy'], "default-src 'none'; sandbox", 'Content-Security-Policy');
  eq(h['x-parley-live'], undefined, 'X-Parley-Live of a finished file');

  const n = bytes.length;
  for (const [range, lo, hi] of [['bytes=10-19', 10, 19], ['bytes=-5', n - 5, n - 1], [`bytes=100-`, 100, n - 1]]) {
    r = await request(t.httpURL, 'GET', d.path, { headers: { Range: range } });
    status(r, 206, `GET with Range ${range}`);
    eq(r.headers['content-range'], `bytes ${lo}-${hi}/${n}`, `Content-Range for ${range}`);
    ok(r.body.equals(bytes.subarray(lo, hi + 1)), `body for ${range} differs from the file's bytes ${lo}-${hi}`);
  }
  status(await request(t.httpURL, 'GET', d.path, { headers: { Range: `bytes=${n}-` } }), 416, 'GET with a range past the end');

  const bare = d.path.split('?')[0];
  r = await request(t.httpURL, 'GET', bare, { headers: bearer(tokenOf(b)) });
  status(r, 200, 'GET with Authorization: Bearer instead of token');
  status(await request(t.httpURL, 'GET', bare, { headers: bearer(tokenOf(c)) }), 403, 'GET by a user the file is not for');
  await c.conn.refused('file_download', { file_id: o.file.file_id }, 'PERMISSION_DENIED');
  status(await request(t.httpURL, 'GET', `${bare}?token=not-a-token`), 401, 'GET with a forged token');
  status(await request(t.httpURL, 'GET', `/v1/files/nosuchfile/content`, { headers: bearer(tokenOf(b)) }), 404, 'GET of an unknown file');

  // The URL lasts only while the session does (§18.2).
  await b.conn.call('logout', {}, 'ok');
  status(await request(t.httpURL, 'GET', d.path), 401, 'GET with the token of a session that logged out');
});

check('18.4', 'Content-Type: text/plain is served as itself with its charset; a PNG that is not one is relabelled application/octet-stream', async (t) => {
  const a = await t.user('cta');
  const b = await t.user('ctb');
  const text = Buffer.from('plain words\n');
  const o1 = await offer(t, a, text, { to_username: b.name, name: 'notes.txt', content_type: 'text/plain; charset=utf-8' });
  await upload(t, a, o1.upload_path, text);
  const fake = Buffer.from('this is not a picture at all');
  const o2 = await offer(t, a, fake, { to_username: b.name, name: 'fake.png', content_type: 'image/png' });
  await upload(t, a, o2.upload_path, fake);
  for (const id of [o1.file.file_id, o2.file.file_id]) {
    await a.conn.event('file_event', (e) => e.file.file_id === id && e.kind === 'KIND_AVAILABLE', 'FileEvent AVAILABLE');
  }
  let r = await request(t.httpURL, 'GET', (await downloadURL(b.conn, o1.file.file_id)).path);
  status(r, 200, 'GET text');
  eq(r.headers['content-type'], 'text/plain; charset=utf-8', 'Content-Type of a text/plain file');
  const d2 = await downloadURL(b.conn, o2.file.file_id);
  eq(d2.file.content_type, 'application/octet-stream', 'FileInfo.content_type of a PNG that is not one');
  r = await request(t.httpURL, 'GET', d2.path);
  eq(r.headers['content-type'], 'application/octet-stream', 'Content-Type of a PNG that is not one');
});

check('18.4', 'a group file that is not live answers 409 with Retry-After: 2 until complete; members download it, others are refused; it is on the group\'s shelf', async (t) => {
  const a = await t.user('gfa');
  const b = await t.user('gfb');
  const c = await t.user('gfc');
  const g = await a.conn.call('create_group', { name: 'shelf', usernames: [b.name] }, 'conversation');
  await b.conn.call('join_group', { conversation: g.id }, 'conversation');
  const bytes = crypto.randomBytes(4096);
  const o = await offer(t, a, bytes, { conversation: g.id, name: 'shared.bin' });
  const d = await downloadURL(b.conn, o.file.file_id);
  let r = await request(t.httpURL, 'GET', d.path);
  status(r, 409, 'GET of a group file still uploading');
  eq(r.headers['retry-after'], '2', 'Retry-After of the 409');
  await upload(t, a, o.upload_path, bytes);
  await b.conn.event('file_event', (e) => e.file.file_id === o.file.file_id && e.kind === 'KIND_AVAILABLE', 'FileEvent AVAILABLE to a member');
  r = await request(t.httpURL, 'GET', d.path);
  status(r, 200, 'GET after the upload');
  eq(sha256hex(r.body), sha256hex(bytes), 'SHA-256 of the download');
  const shelf = await b.conn.call('files', { conversation: g.id }, 'files_reply');
  eq(shelf.files.map((f) => [f.file_id, f.state]), [[o.file.file_id, 'FILE_STATE_AVAILABLE']], 'the group\'s shelf');
  // Paged newest first (ties by file_id, descending), limit 1.
  for (let i = 0; i < 2; i++) await offer(t, a, crypto.randomBytes(10), { conversation: g.id, name: `more${i}.bin` });
  const all = (await b.conn.call('files', { conversation: g.id }, 'files_reply')).files;
  eq(all.length, 3, 'files on the shelf');
  const sorted = [...all].sort((x, y) => y.created_at_unix_ms - x.created_at_unix_ms || (x.file_id < y.file_id ? 1 : -1));
  eq(all.map((f) => f.file_id), sorted.map((f) => f.file_id), 'shelf order (newest first, ties by file_id descending)');
  const paged = [];
  let after = '';
  for (let pages = 0; pages < 10; pages++) {
    const r = await b.conn.call('files', { conversation: g.id, after_file_id: after, limit: 1 }, 'files_reply');
    ok(r.files.length <= 1, `a page of limit 1 holds ${r.files.length} files`);
    paged.push(...r.files.map((f) => f.file_id));
    if (!r.more) break;
    after = r.files[r.files.length - 1].file_id;
  }
  eq(paged, all.map((f) => f.file_id), 'the shelf read page by page');
  await b.conn.refused('files', { conversation: g.id, after_file_id: 'fnosuchfile' }, 'INVALID_ARGUMENT');
  await c.conn.refused('file_download', { file_id: o.file.file_id }, 'PERMISSION_DENIED');
  status(await request(t.httpURL, 'GET', d.path.split('?')[0], { headers: bearer(tokenOf(c)) }), 403, 'GET by a non-member');
  await c.conn.refused('files', { conversation: g.id }, 'PERMISSION_DENIED');
});

check('18.3', 'bytes that do not match the declared SHA-256: the last PATCH is 460, the file FAILED (FileEvent), its download 460, off the shelf', async (t) => {
  const a = await t.user('shaa');
  const b = await t.user('shab');
  const g = await a.conn.call('create_group', { name: 'checks', usernames: [b.name] }, 'conversation');
  await b.conn.call('join_group', { conversation: g.id }, 'conversation');
  const bytes = crypto.randomBytes(2048);
  const o = await offer(t, a, bytes, { conversation: g.id, name: 'bad.bin', sha256: sha256hex(Buffer.from('something else')) });
  const r = await patch(t, a, o.upload_path, 0, bytes);
  status(r, 460, 'PATCH completing a file with the wrong SHA-256');
  const ev = await a.conn.event('file_event', (e) => e.file.file_id === o.file.file_id && e.kind !== 'KIND_OFFERED', 'FileEvent FAILED');
  eq([ev.kind, ev.file.state], ['KIND_FAILED', 'FILE_STATE_FAILED'], 'FileEvent kind and state');
  const d = await b.conn.request('file_download', { file_id: o.file.file_id });
  if (d.frame.body === 'file_download_reply') {
    status(await request(t.httpURL, 'GET', d.frame.file_download_reply.path), 460, 'GET of a FAILED file');
  } else {
    status(await request(t.httpURL, 'GET', `/v1/files/${o.file.file_id}/content`, { headers: bearer(tokenOf(b)) }), 460, 'GET of a FAILED file');
  }
  const shelf = await b.conn.call('files', { conversation: g.id }, 'files_reply');
  eq(shelf.files.length, 0, 'files on the shelf after the failure');
});

check('18.2', 'a rejected file is deleted at once: the sender gets FileEvent REJECTED and the upload answers 404', async (t) => {
  const a = await t.user('reja');
  const b = await t.user('rejb');
  const bytes = crypto.randomBytes(1000);
  const o = await offer(t, a, bytes, { to_username: b.name, name: 'unwanted.bin' });
  await b.conn.call('answer_file', { file_id: o.file.file_id, accept: false }, 'ok');
  const ev = await a.conn.event('file_event', (e) => e.file.file_id === o.file.file_id, 'FileEvent to the sender');
  eq(ev.kind, 'KIND_REJECTED', 'FileEvent.kind');
  status(await patch(t, a, o.upload_path, 0, bytes), 404, 'PATCH of a rejected file');
  status(await head(t, a, o.upload_path), 404, 'HEAD of a rejected file');
});

check('18.4', 'HEAD of a download gives the headers of the GET (Content-Length the file\'s size) and no body', async (t) => {
  const a = await t.user('hda');
  const b = await t.user('hdb');
  const bytes = Buffer.from('twelve bytes'.repeat(10));
  const o = await offer(t, a, bytes, { to_username: b.name, name: 'head.txt', content_type: 'text/plain' });
  await upload(t, a, o.upload_path, bytes);
  await b.conn.event('file_event', (e) => e.file.file_id === o.file.file_id && e.kind === 'KIND_AVAILABLE', 'FileEvent AVAILABLE');
  const d = await downloadURL(b.conn, o.file.file_id);
  const get = await request(t.httpURL, 'GET', d.path);
  status(get, 200, 'GET');
  const r = await request(t.httpURL, 'HEAD', d.path);
  status(r, 200, 'HEAD');
  eq(r.body.length, 0, 'HEAD body length');
  for (const h of ['content-length', 'content-type', 'accept-ranges', 'content-disposition', 'etag', 'x-parley-sha256', 'x-content-type-options', 'content-security-policy']) {
    eq(r.headers[h], get.headers[h], `HEAD's ${h} (vs GET's)`);
  }
});

check('18.1', 'pictures: a PNG sent as application/octet-stream becomes image/png with a JPEG thumbnail of at most 160×160, aspect kept, in FileEvent AVAILABLE and file_download', async (t) => {
  const a = await t.user('pica');
  const b = await t.user('picb');
  const bytes = png(200, 100);
  const o = await offer(t, a, bytes, { to_username: b.name, name: 'picture.png', content_type: 'application/octet-stream' });
  eq(o.file.thumbnail.length, 0, 'thumbnail in the offer');
  await upload(t, a, o.upload_path, bytes);
  const ev = await b.conn.event('file_event', (e) => e.file.file_id === o.file.file_id && e.kind === 'KIND_AVAILABLE', 'FileEvent AVAILABLE');
  eq(ev.file.content_type, 'image/png', 'FileInfo.content_type of a PNG after the upload');
  const size = jpegSize(ev.file.thumbnail);
  ok(size, `FileEvent's thumbnail (${ev.file.thumbnail.length} bytes) is not a JPEG`);
  eq([size.width, size.height], [160, 80], 'thumbnail size of a 200×100 picture');
  const d = await downloadURL(b.conn, o.file.file_id);
  ok(jpegSize(d.file.thumbnail), 'FileDownload.file has no JPEG thumbnail');
  const r = await request(t.httpURL, 'GET', d.path);
  status(r, 200, 'GET');
  eq(r.headers['content-type'], 'image/png', 'Content-Type of a picture');
});

check('18.1', 'quota: offers beyond 20 GiB uploading or available are QUOTA_EXCEEDED (tus: 413) and make nothing; a cancelled upload frees its room', async (t) => {
  const a = await t.user('quota');
  const b = await t.user('quotab');
  const GiB10 = 10 * 1024 * 1024 * 1024;
  const sha = sha256hex(Buffer.from('big'));
  const first = await a.conn.call('offer_file', { to_username: b.name, name: 'a.bin', size: GiB10, sha256: sha, client_key: key() }, 'file_offer');
  await a.conn.call('offer_file', { to_username: b.name, name: 'b.bin', size: GiB10, sha256: sha, client_key: key() }, 'file_offer');
  const e = await a.conn.refused('offer_file', { to_username: b.name, name: 'c.bin', size: 1, sha256: sha, client_key: key() }, 'QUOTA_EXCEEDED');
  eq(e.fatal, false, 'Error.fatal');
  const meta = `filename ${b64('d.bin')},sha256 ${b64(sha)},to ${b64(b.name)}`;
  const r = await request(t.httpURL, 'POST', '/v1/files', { headers: { ...TUS, ...bearer(tokenOf(a)), 'Upload-Length': '1', 'Upload-Metadata': meta } });
  status(r, 413, 'POST /v1/files beyond the quota');
  ok(r.body.toString().includes('QUOTA_EXCEEDED'), `413 body "${r.body.toString().trim()}" does not say QUOTA_EXCEEDED`);
  status(await request(t.httpURL, 'DELETE', first.upload_path, { headers: { ...TUS, ...bearer(tokenOf(a)) } }), 204, 'DELETE of the first upload');
  await a.conn.call('offer_file', { to_username: b.name, name: 'c.bin', size: 1, sha256: sha, client_key: key() }, 'file_offer');
});

check('18.1', 'offer rate: 60 offers at once, the 61st is RATE_LIMITED with retry_after_ms (tus: 429 with Retry-After)', async (t) => {
  const a = await t.user('rate');
  const b = await t.user('rateb');
  const bytes = Buffer.from('r');
  for (let i = 1; i <= 60; i++) {
    await a.conn.call('offer_file', { to_username: b.name, name: `r${i}`, size: 1, sha256: sha256hex(bytes), client_key: key() }, 'file_offer');
  }
  const e = await a.conn.refused('offer_file', { to_username: b.name, name: 'r61', size: 1, sha256: sha256hex(bytes), client_key: key() }, 'RATE_LIMITED');
  ok(e.retry_after_ms > 0, 'RATE_LIMITED without retry_after_ms');
  const meta = `filename ${b64('r62')},sha256 ${b64(sha256hex(bytes))},to ${b64(b.name)}`;
  const r = await request(t.httpURL, 'POST', '/v1/files', { headers: { ...TUS, ...bearer(tokenOf(a)), 'Upload-Length': '1', 'Upload-Metadata': meta } });
  status(r, 429, 'POST /v1/files beyond the offer rate');
  ok(Number(r.headers['retry-after']) > 0, `Retry-After "${r.headers['retry-after']}"`);
});

check('18.3', 'bodies and connections: a body answered early is never taken for requests; pipelined requests are answered in order; obs-fold is 400 and closes', async (t) => {
  const host = new URL(t.httpURL).host;
  const smuggled = `OPTIONS /v1/files HTTP/1.1\r\nHost: ${host}\r\n\r\n`.repeat(1000);
  const early = (body, extra = '') => `PATCH /v1/files/nope HTTP/1.1\r\nHost: ${host}\r\nTus-Resumable: 1.0.0\r\n`
    + `Content-Type: application/offset+octet-stream\r\nUpload-Offset: 0\r\n${extra}Content-Length: ${body.length}\r\n\r\n${body}`;
  const options = `OPTIONS /v1/files HTTP/1.1\r\nHost: ${host}\r\nTus-Resumable: 1.0.0\r\nConnection: close\r\n\r\n`;
  let r = await exchange(t.httpURL, early(smuggled) + options);
  const got = statuses(r.text);
  eq(got.length, 2, `responses to one PATCH with a 40 KB body of requests, then one OPTIONS (statuses ${got})`);
  eq(got[0], 401, 'status of the PATCH without a token');
  ok(got[1] >= 200 && got[1] < 300 && /Tus-Version/i.test(r.text), `the pipelined OPTIONS got ${got[1]}`);

  // A body above 256 KiB answered early: Connection: close, nothing more.
  r = await exchange(t.httpURL, early(smuggled.repeat(8)) + options);
  eq(statuses(r.text), [401], 'statuses for a 320 KB body answered early');
  ok(/\r\nConnection: close\r\n/i.test(r.text), 'the early answer to a large body lacks Connection: close');
  ok(r.closed, 'the connection stayed open after an early answer to a large body');

  // Folded header lines.
  r = await exchange(t.httpURL, `OPTIONS /v1/files HTTP/1.1\r\nHost: ${host}\r\nTus-Resumable: 1.0.0\r\nX-Folded: a\r\n b\r\n\r\n` + options);
  eq(statuses(r.text), [400], 'statuses for a request with obs-fold and a pipelined one');
  ok(r.closed, 'the connection stayed open after obs-fold');

  // Transfer-Encoding and Content-Length: read by its chunks, then closed.
  const chunked = `PATCH /v1/files/nope HTTP/1.1\r\nHost: ${host}\r\nTus-Resumable: 1.0.0\r\nContent-Type: application/offset+octet-stream\r\n`
    + `Upload-Offset: 0\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n5\r\nhello\r\n0\r\n\r\n`;
  r = await exchange(t.httpURL, chunked + options);
  eq(statuses(r.text), [401], 'statuses for a request with Transfer-Encoding and Content-Length and a pipelined one');
  ok(r.closed, 'the connection stayed open after Transfer-Encoding with Content-Length');
});
