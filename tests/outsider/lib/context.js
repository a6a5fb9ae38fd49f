'use strict';
// What a check works with: connections to the server under test, fresh
// users, and the HTTP base URL the server announced (Welcome.http_url, §5).
// Everything a check opens is closed when it ends.

const { Conn } = require('./conn');
const { Udp } = require('./udp');
const { CheckFailure } = require('./check');
const { code } = require('./schema');

const PASSWORD = 'correct horse battery staple';

class Context {
  constructor(env) {
    this.env = env; // {tcp, ws, runId, handshakeTimeoutMs, tokenGraceMs, ringMs, offerTtlMs, p2pRelayRate, p2pRelayBurst}
    this.conns = [];
    this.sockets = [];
  }

  // udp opens a UDP socket on the loopback (lib/udp.js), closed when the
  // check ends.
  async udp(label = 'udp', host = '127.0.0.1') {
    const u = await Udp.open(label, host);
    this.sockets.push(u);
    return u;
  }

  async tcp(label = 'tcp', options) {
    const c = await Conn.tcp(this.env.tcp, label, options);
    this.conns.push(c);
    return c;
  }

  async ws(label = 'ws', options) {
    const c = await Conn.ws(this.env.ws, label, options);
    this.conns.push(c);
    return c;
  }

  // connect opens a connection and completes the handshake (§5).
  async connect(label, transport = 'tcp') {
    const c = transport === 'ws' ? await this.ws(label) : await this.tcp(label);
    await c.hello();
    return c;
  }

  // name makes a username no earlier run has used (§8.1: 3-32 of letters,
  // digits, _ . -), so the runner also works against a server with data.
  name(tag) {
    this.env.seq = (this.env.seq || 0) + 1;
    return `o${this.env.runId}${this.env.seq.toString(36)}${tag}`.slice(0, 32);
  }

  // withRetry repeats a request refused with RATE_LIMITED after its
  // retry_after_ms (§7, §15.6), so the checks pass against default limits,
  // only more slowly.
  async withRetry(conn, member, body, reply, opts = {}) {
    for (let attempt = 0; ; attempt++) {
      const { id, frame } = await conn.request(member, body, opts);
      if (frame.body === 'error' && frame.error.code === code('RATE_LIMITED') && attempt < 20) {
        await sleep(Math.max(frame.error.retry_after_ms, 50));
        continue;
      }
      return { id, frame };
    }
  }

  // user registers a new account on a new connection and returns it with
  // its session (§8.1). options are ClientOptions.
  async user(tag, { transport = 'tcp', options } = {}) {
    const conn = await this.connect(tag, transport);
    const name = this.name(tag);
    const body = { username: name, password: PASSWORD };
    if (options) body.options = options;
    const { frame } = await this.withRetry(conn, 'register', body);
    if (frame.body !== 'session') throw new CheckFailure(`register ${name}: answered ${JSON.stringify(frame.error || frame.body)}`);
    conn.session = frame.session;
    return { name, password: PASSWORD, id: frame.session.user_id, conn, session: frame.session, token: frame.session.token };
  }

  // login opens a new connection and logs in (§8.2).
  async login(u, { transport = 'tcp', options, label } = {}) {
    const conn = await this.connect(label || `${u.name}-login`, transport);
    const body = { username: u.name, password: u.password };
    if (options) body.options = options;
    const { frame } = await this.withRetry(conn, 'login', body);
    if (frame.body !== 'session') throw new CheckFailure(`login ${u.name}: answered ${JSON.stringify(frame.error || frame.body)}`);
    conn.session = frame.session;
    return conn;
  }

  // resume opens a new connection and resumes with token (§8.4).
  async resume(token, { transport = 'tcp', options, label = 'resume' } = {}) {
    const conn = await this.connect(label, transport);
    const body = { token };
    if (options) body.options = options;
    const s = await conn.call('resume', body, 'session');
    conn.session = s;
    return conn;
  }

  get httpURL() {
    return this.env.httpURL;
  }

  cleanup() {
    for (const c of this.conns) c.close();
    this.conns = [];
    for (const u of this.sockets) u.close();
    this.sockets = [];
  }
}

function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

module.exports = { Context, PASSWORD, sleep };
