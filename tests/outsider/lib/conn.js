'use strict';
// One client connection: TCP with §2 length-prefixed frames, or WebSocket
// with one frame per binary message (§3). Every frame received is decoded and
// kept until a check takes it, so replies (matched by request_id, §6) and
// events (request_id 0) can be awaited in any order.

const net = require('node:net');
const WebSocket = require('ws');
const { encodeFrame, decodeFrame, prefix, code } = require('./schema');
const { CheckFailure } = require('./check');

const REPLY_TIMEOUT_MS = 10000;
// Request ids of the client's own heartbeat Pings; checks use small ids.
const HEARTBEAT_IDS = 0xfffe0000;

class Conn {
  constructor(kind, label) {
    this.kind = kind; // 'tcp' or 'ws'
    this.label = label;
    this.inbox = []; // frames no waiter has taken yet, in arrival order
    this.waiters = [];
    this.nextId = 1;
    this.closed = false;
    this.undecodable = []; // frames from the server that were not a Frame
    this.taps = []; // {pred, fn}: frames handed to fn as they come instead of kept
    this.welcome = null;
    this.session = null;
    this.whenClosed = new Promise((resolve) => { this._resolveClosed = resolve; });
  }

  // tcp connects to addr; localAddress picks the source address (another
  // loopback address looks like another network to the server).
  static tcp(addr, label = 'tcp', { localAddress } = {}) {
    const [host, port] = splitHostPort(addr);
    const c = new Conn('tcp', label);
    return new Promise((resolve, reject) => {
      const sock = net.connect({ host, port, localAddress });
      c.sock = sock;
      let buf = Buffer.alloc(0);
      sock.once('connect', () => { sock.setNoDelay(true); resolve(c); });
      sock.once('error', (err) => { if (!c.closed) reject(err); });
      sock.on('error', () => {});
      sock.on('data', (chunk) => {
        buf = Buffer.concat([buf, chunk]);
        while (buf.length >= 4) {
          const n = buf.readUInt32BE(0);
          if (buf.length < 4 + n) break;
          c._received(buf.subarray(4, 4 + n));
          buf = buf.subarray(4 + n);
        }
      });
      sock.on('close', () => c._closed());
    });
  }

  static ws(url, label = 'ws', options = {}) {
    const c = new Conn('ws', label);
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url, options);
      c.wsock = ws;
      ws.binaryType = 'nodebuffer';
      ws.once('open', () => resolve(c));
      ws.once('error', (err) => { if (!c.closed) reject(err); });
      ws.on('error', () => {});
      ws.on('message', (data, isBinary) => {
        if (!isBinary) {
          c.undecodable.push(Buffer.from(data));
          return;
        }
        c._received(Buffer.from(data));
      });
      ws.on('close', () => c._closed());
    });
  }

  _received(bytes) {
    let frame;
    try {
      frame = decodeFrame(bytes);
    } catch (err) {
      this.undecodable.push(Buffer.from(bytes));
      return;
    }
    // Answer the server's heartbeat as any client must: same nonce, same
    // request_id (§10).
    if (frame.body === 'ping' && !this.closed) {
      this.send({ request_id: frame.request_id, pong: { nonce: frame.ping.nonce } });
    }
    // The replies to this client's own heartbeats.
    if (frame.body === 'pong' && frame.request_id >= HEARTBEAT_IDS && frame.request_id < HEARTBEAT_IDS + 65536) return;
    // Frames a tap takes (a direct session's relayed packets) go to it.
    for (const t of this.taps) {
      if (t.pred(frame)) {
        t.fn(frame);
        return;
      }
    }
    for (let i = 0; i < this.waiters.length; i++) {
      const w = this.waiters[i];
      if (w.pred(frame)) {
        this.waiters.splice(i, 1);
        clearTimeout(w.timer);
        w.resolve(frame);
        return;
      }
    }
    this.inbox.push(frame);
  }

  _closed() {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.heartbeat);
    this._resolveClosed();
    for (const w of this.waiters.splice(0)) {
      clearTimeout(w.timer);
      w.reject(new CheckFailure(`${this.label}: connection closed while waiting for ${w.what}; unread: ${this.describeInbox()}`));
    }
  }

  // next resolves with the first frame (already received or to come) that
  // pred accepts, and takes it out of the inbox.
  next(pred, what, timeoutMs = REPLY_TIMEOUT_MS) {
    const i = this.inbox.findIndex(pred);
    if (i >= 0) return Promise.resolve(this.inbox.splice(i, 1)[0]);
    if (this.closed) {
      return Promise.reject(new CheckFailure(`${this.label}: connection closed, no ${what}; unread: ${this.describeInbox()}`));
    }
    return new Promise((resolve, reject) => {
      const w = { pred, resolve, reject, what };
      w.timer = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        reject(new CheckFailure(`${this.label}: no ${what} within ${timeoutMs} ms; unread: ${this.describeInbox()}`));
      }, timeoutMs);
      this.waiters.push(w);
    });
  }

  // event waits for a server-pushed frame (request_id 0) with member `member`
  // whose body pred accepts, and resolves with that body.
  event(member, pred = () => true, what = member, timeoutMs = REPLY_TIMEOUT_MS) {
    return this.next((f) => f.request_id === 0 && f.body === member && pred(f[member]), what, timeoutMs)
      .then((f) => f[member]);
  }

  // tap hands every frame pred accepts, from now on and already received,
  // to fn instead of keeping it; it returns a function that removes the tap.
  tap(pred, fn) {
    const t = { pred, fn };
    this.taps.push(t);
    for (const f of this.take(pred)) fn(f);
    return () => { this.taps = this.taps.filter((x) => x !== t); };
  }

  // take removes and returns every received frame pred accepts (for checks
  // that something did not arrive).
  take(pred) {
    const out = this.inbox.filter(pred);
    this.inbox = this.inbox.filter((f) => !pred(f));
    return out;
  }

  describeInbox() {
    if (this.inbox.length === 0) return 'none';
    return this.inbox.slice(-6).map(describe).join(', ');
  }

  send(obj) {
    this.sendBody(encodeFrame(obj));
  }

  // sendBody sends one Frame encoding (hand-made or not) with the
  // transport's framing.
  sendBody(body) {
    this.lastSent = Date.now();
    if (this.kind === 'tcp') this.sock.write(prefix(body));
    else this.wsock.send(body, { binary: true });
  }

  // sendRaw writes bytes to the TCP stream as they are (no prefix added).
  sendRaw(bytes) {
    if (this.kind !== 'tcp') throw new Error('sendRaw is for TCP');
    this.lastSent = Date.now();
    return new Promise((resolve) => this.sock.write(bytes, resolve));
  }

  sendText(text) {
    if (this.kind !== 'ws') throw new Error('sendText is for WebSocket');
    this.wsock.send(text, { binary: false });
  }

  // request sends {member: body} with a fresh request_id (or opts.id) and
  // resolves with the reply frame: the first frame carrying that id.
  request(member, body = {}, opts = {}) {
    const id = opts.id !== undefined ? opts.id : this.nextId++;
    const wait = this.next(
      opts.match || ((f) => f.request_id === id && (id !== 0 || f.body === 'error' || f.body === opts.reply)),
      `reply to ${member} (request_id ${id})`, opts.timeoutMs);
    this.send({ request_id: id, [member]: body });
    return wait.then((f) => ({ id, frame: f }));
  }

  // call expects the documented reply body and returns it.
  async call(member, body, replyMember, opts) {
    const { frame } = await this.request(member, body, opts);
    if (frame.body !== replyMember) {
      throw new CheckFailure(`${this.label}: ${member} ${short(body)} answered ${describe(frame)}, want ${replyMember}`);
    }
    return frame[replyMember];
  }

  // refused expects Error{code} with the request's id and returns the Error.
  async refused(member, body, codeName, opts) {
    const { id, frame } = await this.request(member, body, opts);
    expectError(frame, codeName, id, `${this.label}: ${member} ${short(body)}`);
    return frame.error;
  }

  // hello does the handshake (§5) and then keeps the connection alive as
  // §10 asks: a Ping whenever nothing was sent for heartbeat_interval_ms
  // (unless heartbeats is false).
  async hello(client = 'parley-outsider/1', { heartbeats = true } = {}) {
    this.welcome = await this.call('hello', { versions: [1], client }, 'welcome');
    if (heartbeats && this.welcome.heartbeat_interval_ms > 0) {
      const every = this.welcome.heartbeat_interval_ms;
      let n = 0;
      this.heartbeat = setInterval(() => {
        if (!this.closed && Date.now() - this.lastSent >= every) {
          this.send({ request_id: HEARTBEAT_IDS + (n++ % 65536), ping: { nonce: n } });
        }
      }, Math.min(250, every / 4));
      this.heartbeat.unref();
    }
    return this.welcome;
  }

  // waitClosed resolves when the server has closed the connection.
  waitClosed(what = 'the close', timeoutMs = REPLY_TIMEOUT_MS) {
    if (this.closed) return Promise.resolve();
    let timer;
    return Promise.race([
      this.whenClosed.then(() => clearTimeout(timer)),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new CheckFailure(`${this.label}: still open ${timeoutMs} ms after ${what}`)), timeoutMs);
      }),
    ]);
  }

  // endWrite half-closes a TCP connection (FIN): the stream ends here.
  endWrite() {
    this.sock.end();
  }

  close() {
    if (this.closed) return;
    clearInterval(this.heartbeat);
    if (this.kind === 'tcp') this.sock.destroy();
    else this.wsock.terminate();
  }
}

// expectError asserts that frame is Error{code} carrying request_id id.
function expectError(frame, codeName, id, what) {
  if (frame.body !== 'error' || frame.error.code !== code(codeName)) {
    throw new CheckFailure(`${what} answered ${describe(frame)}, want Error ${codeName}`);
  }
  if (id !== undefined && frame.request_id !== id) {
    throw new CheckFailure(`${what}: Error ${codeName} carries request_id ${frame.request_id}, want ${id}`);
  }
}

function describe(f) {
  if (!f) return String(f);
  if (f.body === 'error') {
    const e = f.error;
    return `{request_id ${f.request_id}, Error ${String(e.code).replace('ERROR_CODE_', '')}${e.fatal ? ' fatal' : ''} "${e.message}"${e.retry_after_ms ? ` retry_after_ms ${e.retry_after_ms}` : ''}}`;
  }
  return `{request_id ${f.request_id}, ${f.body}${f.body ? ' ' + short(f[f.body]) : ''}}`;
}

function short(v) {
  let s;
  try {
    s = JSON.stringify(v, (k, x) => (Buffer.isBuffer(x) || (x && x.type === 'Buffer') ? `<${(x.data || x).length} bytes>` : x));
  } catch {
    s = String(v);
  }
  if (s && s.length > 240) s = s.slice(0, 240) + '…';
  return s;
}

function splitHostPort(addr) {
  const i = addr.lastIndexOf(':');
  return [addr.slice(0, i).replace(/^\[|\]$/g, ''), Number(addr.slice(i + 1))];
}

module.exports = { Conn, expectError, describe, short, splitHostPort, REPLY_TIMEOUT_MS };
