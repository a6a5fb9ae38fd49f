#!/usr/bin/env node
'use strict';
// A second, independent Parley client, written in JavaScript from
// docs/protocol.md, README.md and the schema alone, run as a conformance
// check: every check asserts what the document promises and names the
// section. See README.md in this directory.
//
//   node tests/outsider/run.js --tcp 127.0.0.1:7420 --ws ws://127.0.0.1:7480/v1/ws
//        [--handshake-timeout-ms 10000] [--token-grace-ms 60000] [--only REGEXP]
//
// The HTTP address for files is the one the server announces in
// Welcome.http_url (§5). Exit status: 0 all checks passed, 1 a check failed,
// 2 the runner could not start.

const { Context } = require('./lib/context');
const { Conn } = require('./lib/conn');
const { registry, CheckFailure } = require('./lib/check');

const CHECK_TIMEOUT_MS = 180000;

function parseArgs(argv) {
  const env = { handshakeTimeoutMs: 10000, tokenGraceMs: 60000, only: null };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = () => {
      if (i + 1 >= argv.length) usage(`${a} needs a value`);
      return argv[++i];
    };
    if (a === '--tcp') env.tcp = v();
    else if (a === '--ws') env.ws = v();
    else if (a === '--handshake-timeout-ms') env.handshakeTimeoutMs = Number(v());
    else if (a === '--token-grace-ms') env.tokenGraceMs = Number(v());
    else if (a === '--only') env.only = new RegExp(v());
    else usage(`unknown argument ${a}`);
  }
  if (!env.tcp || !env.ws) usage('--tcp and --ws are required');
  return env;
}

function usage(msg) {
  console.error(`run.js: ${msg}\nusage: node run.js --tcp HOST:PORT --ws ws://HOST:PORT/v1/ws [--handshake-timeout-ms N] [--token-grace-ms N] [--only REGEXP]`);
  process.exit(2);
}

function loadChecks() {
  for (const m of ['framing', 'handshake', 'sessions', 'presence', 'messages', 'groups', 'friends', 'files']) {
    require(`./checks/${m}`);
  }
}

async function main() {
  const env = parseArgs(process.argv.slice(2));
  env.runId = Date.now().toString(36).slice(-5) + Math.floor(Math.random() * 36 ** 2).toString(36);

  // The HTTP base for files comes from the protocol itself (§5, §18).
  try {
    const c = await Conn.tcp(env.tcp, 'setup');
    const w = await c.hello();
    c.close();
    env.httpURL = w.http_url;
  } catch (err) {
    console.error(`run.js: cannot reach the gateway at ${env.tcp}: ${err.message}`);
    process.exit(2);
  }

  loadChecks();
  const checks = registry.filter((c) => !env.only || env.only.test(c.title));
  console.log(`parley outsider: ${checks.length} checks, tcp=${env.tcp} ws=${env.ws} http_url=${env.httpURL}`);
  const failed = [];
  for (const c of checks) {
    const t = new Context(env);
    const started = Date.now();
    let timer;
    try {
      await Promise.race([
        c.fn(t),
        new Promise((_, reject) => {
          timer = setTimeout(() => reject(new CheckFailure(`did not finish within ${CHECK_TIMEOUT_MS} ms`)), CHECK_TIMEOUT_MS);
        }),
      ]);
      console.log(`ok    ${c.title} (${((Date.now() - started) / 1000).toFixed(1)}s)`);
    } catch (err) {
      const why = err instanceof CheckFailure ? err.message : (err && err.stack) || String(err);
      console.log(`FAIL  ${c.title}\n      ${why.split('\n').join('\n      ')}`);
      failed.push(c.title);
    } finally {
      clearTimeout(timer);
      t.cleanup();
    }
  }
  console.log(`\n${checks.length} checks: ${checks.length - failed.length} passed, ${failed.length} failed`);
  for (const f of failed) console.log(`  FAILED ${f}`);
  process.exit(failed.length ? 1 : 0);
}

main().catch((err) => {
  console.error(err && err.stack ? err.stack : err);
  process.exit(2);
});
