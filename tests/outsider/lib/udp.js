'use strict';
// One UDP socket on the loopback: every datagram received is kept until a
// check takes it, like lib/conn.js does for frames, so an answer can be
// awaited (with a deadline) or its absence asserted.

const dgram = require('node:dgram');
const { CheckFailure } = require('./check');
const { splitHostPort } = require('./conn');

class Udp {
  constructor(label, sock) {
    this.label = label;
    this.sock = sock;
    this.inbox = []; // {msg, from: 'ip:port', at}
    this.waiters = [];
    this.closed = false;
    this.handlers = []; // (msg, rinfo) => true when handled (answered, not kept)
    sock.on('message', (msg, rinfo) => this._received(msg, rinfo));
    sock.on('error', () => {});
  }

  // open binds a socket to host (127.0.0.1 unless told) on a free port.
  static open(label = 'udp', host = '127.0.0.1', port = 0) {
    const sock = dgram.createSocket({ type: host.includes(':') ? 'udp6' : 'udp4' });
    return new Promise((resolve, reject) => {
      sock.once('error', reject);
      sock.bind(port, host, () => {
        sock.removeListener('error', reject);
        resolve(new Udp(label, sock));
      });
    });
  }

  get addr() {
    const a = this.sock.address();
    return a.family === 'IPv6' ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`;
  }

  get port() {
    return this.sock.address().port;
  }

  _received(msg, rinfo) {
    const from = rinfo.family === 'IPv6' ? `[${rinfo.address}]:${rinfo.port}` : `${rinfo.address}:${rinfo.port}`;
    for (const h of this.handlers) if (h(msg, from)) return;
    const d = { msg: Buffer.from(msg), from, at: Date.now() };
    for (let i = 0; i < this.waiters.length; i++) {
      const w = this.waiters[i];
      if (w.pred(d)) {
        this.waiters.splice(i, 1);
        clearTimeout(w.timer);
        w.resolve(d);
        return;
      }
    }
    this.inbox.push(d);
    if (this.inbox.length > 20000) this.inbox.shift();
  }

  // send sends one datagram to addr ('host:port').
  send(bytes, addr) {
    if (this.closed) return Promise.resolve();
    const [host, port] = splitHostPort(addr);
    return new Promise((resolve) => this.sock.send(bytes, port, host, () => resolve()));
  }

  // next resolves with the first datagram (already received or to come)
  // pred accepts, and takes it out of the inbox.
  next(pred, what, timeoutMs = 10000) {
    const i = this.inbox.findIndex(pred);
    if (i >= 0) return Promise.resolve(this.inbox.splice(i, 1)[0]);
    return new Promise((resolve, reject) => {
      const w = { pred, resolve, reject };
      w.timer = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        reject(new CheckFailure(`${this.label} (${this.addr}): no ${what} within ${timeoutMs} ms; ${this.inbox.length} other datagrams received`));
      }, timeoutMs);
      this.waiters.push(w);
    });
  }

  // repeat sends (calling send, which may build a fresh packet each time)
  // every everyMs until a datagram pred accepts arrives; it resolves with
  // that datagram.
  async repeat(send, pred, what, { everyMs = 200, timeoutMs = 10000 } = {}) {
    let done = false;
    const got = this.next(pred, what, timeoutMs).finally(() => { done = true; });
    got.catch(() => {});
    (async () => {
      while (!done && !this.closed) {
        await send();
        await new Promise((r) => setTimeout(r, everyMs));
      }
    })();
    return got;
  }

  // take removes and returns every datagram received so far that pred
  // accepts.
  take(pred = () => true) {
    const out = this.inbox.filter(pred);
    this.inbox = this.inbox.filter((d) => !pred(d));
    return out;
  }

  close() {
    if (this.closed) return;
    this.closed = true;
    for (const w of this.waiters.splice(0)) {
      clearTimeout(w.timer);
      w.reject(new CheckFailure(`${this.label}: socket closed`));
    }
    try { this.sock.close(); } catch { /* already closed */ }
  }
}

module.exports = { Udp };
