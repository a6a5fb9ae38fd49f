'use strict';
// HTTP for files (§18): ordinary requests with node:http (a new connection
// each, so no request depends on another's connection), a streamed GET for
// live downloads, and a PATCH cut off mid-body on a raw socket.

const http = require('node:http');
const net = require('node:net');
const { CheckFailure } = require('./check');

const HTTP_TIMEOUT_MS = 30000;

// request resolves with {status, headers, body}; headers are lower-case.
function request(base, method, path, { headers = {}, body } = {}) {
  const url = new URL(base + path);
  return new Promise((resolve, reject) => {
    const req = http.request({
      hostname: url.hostname, port: url.port, path: url.pathname + url.search, method, headers, agent: false,
    }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.setTimeout(HTTP_TIMEOUT_MS, () => req.destroy(new CheckFailure(`${method} ${path}: no answer within ${HTTP_TIMEOUT_MS} ms`)));
    req.on('error', reject);
    req.end(body);
  });
}

// stream starts a GET and resolves when the headers are in, with the
// response and a promise of the whole body (rejected if the connection
// breaks before Content-Length bytes).
function stream(base, path, headers = {}) {
  const url = new URL(base + path);
  return new Promise((resolve, reject) => {
    const req = http.request({ hostname: url.hostname, port: url.port, path: url.pathname + url.search, method: 'GET', headers, agent: false }, (res) => {
      const chunks = [];
      let received = 0;
      const progress = [];
      res.on('data', (c) => {
        chunks.push(c);
        received += c.length;
        for (const p of progress.splice(0)) if (received >= p.n) p.resolve(); else progress.push(p);
      });
      const body = new Promise((res2, rej2) => {
        res.on('end', () => res2(Buffer.concat(chunks)));
        res.on('error', rej2);
        res.on('aborted', () => rej2(new CheckFailure(`GET ${path}: the response broke off after ${received} bytes`)));
      });
      body.catch(() => {});
      // received(n) resolves once n bytes of the body are in.
      const atLeast = (n) => (received >= n ? Promise.resolve() : new Promise((r) => progress.push({ n, resolve: r })));
      resolve({ status: res.statusCode, headers: res.headers, body, atLeast, received: () => received, abort: () => req.destroy() });
    });
    req.setTimeout(HTTP_TIMEOUT_MS * 4, () => req.destroy(new CheckFailure(`GET ${path}: stalled`)));
    req.on('error', reject);
    req.end();
  });
}

// patchCut sends a PATCH announcing declaredLength bytes, sends only body,
// then ends the stream (FIN) as a client whose connection breaks would, and
// resolves with whatever the server answered once it closes.
function patchCut(base, path, headers, body, declaredLength) {
  const url = new URL(base + path);
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: url.hostname, port: Number(url.port) });
    const got = [];
    sock.on('data', (c) => got.push(c));
    sock.on('error', () => {});
    sock.on('close', () => resolve(Buffer.concat(got).toString('latin1')));
    sock.setTimeout(HTTP_TIMEOUT_MS, () => { sock.destroy(); reject(new CheckFailure(`cut PATCH ${path}: the server kept the connection open`)); });
    sock.once('connect', () => {
      const lines = [`PATCH ${url.pathname} HTTP/1.1`, `Host: ${url.host}`];
      for (const [k, v] of Object.entries(headers)) lines.push(`${k}: ${v}`);
      lines.push(`Content-Length: ${declaredLength}`, '', '');
      sock.write(lines.join('\r\n'));
      sock.write(body, () => sock.end());
    });
  });
}

module.exports = { request, stream, patchCut };

// exchange writes bytes to a new connection as they are and resolves with
// everything the server sent until it closed the connection (or, after
// idleMs of silence, until then: {text, closed}).
function exchange(base, bytes, idleMs = 3000) {
  const url = new URL(base);
  return new Promise((resolve) => {
    const sock = net.connect({ host: url.hostname, port: Number(url.port) });
    const got = [];
    let closed = false;
    let timer;
    const done = () => { clearTimeout(timer); resolve({ text: Buffer.concat(got).toString('latin1'), closed }); sock.destroy(); };
    const idle = () => { clearTimeout(timer); timer = setTimeout(done, idleMs); };
    sock.on('data', (c) => { got.push(c); idle(); });
    sock.on('error', () => {});
    sock.on('close', () => { closed = true; done(); });
    sock.once('connect', () => { sock.write(bytes); idle(); });
  });
}

// statuses lists the status codes of the HTTP/1.1 responses in text.
function statuses(text) {
  return [...text.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => Number(m[1]));
}

module.exports.exchange = exchange;
module.exports.statuses = statuses;
