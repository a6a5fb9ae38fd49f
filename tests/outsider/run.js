#!/usr/bin/env node
'use strict';
// A second, independent Parley client, written in JavaScript from
// docs/protocol.md, README.md and the schema alone, run as a conformance
// check: every check asserts what the document promises and names the
// section. See README.md in this directory.
//
//   node tests/outsider/run.js --tcp 127.0.0.1:7420 --ws ws://127.0.0.1:7480/v1/ws
//        [--handshake-timeout-ms 10000] [--token-grace-ms 60000]
//        [--ring-ms 45000] [--offer-ttl-ms 60000]
//        [--p2p-relay-rate 4194304] [--p2p-relay-burst 1048576]
//        [--only REGEXP] [--known]
//
// The HTTP address for files is the one the server announces in
// Welcome.http_url (§5). Exit status: 0 all checks passed, 1 a check failed,
// 2 the runner could not start.

const { Context } = require('./lib/context');
const { Conn } = require('./lib/conn');
const { registry, CheckFailure } = require('./lib/check');

const CHECK_TIMEOUT_MS = 180000;

// Checks of places where the server and the document are known to disagree,
// skipped unless --known is given (each reported in README.md, "Where the
// server and the document disagree"). A check leaves this list when the
// server or the document is fixed.
const KNOWN_DISAGREEMENTS = [
  // None at the moment. A check the server fails because it and the
  // document disagree goes here, with a KNOWN DISAGREEMENT comment, until
  // one of them is fixed.
];

function parseArgs(argv) {
  const env = { handshakeTimeoutMs: 10000, tokenGraceMs: 60000, ringMs: 45000, offerTtlMs: 60000, p2pRelayRate: 4194304, p2pRelayBurst: 1048576, only: null, known: false };
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
    else if (a === '--ring-ms') env.ringMs = Number(v());
    else if (a === '--offer-ttl-ms') env.offerTtlMs = Number(v());
    else if (a === '--p2p-relay-rate') env.p2pRelayRate = Number(v());
    else if (a === '--p2p-relay-burst') env.p2pRelayBurst = Number(v());
    else if (a === '--only') env.only = new RegExp(v());
    else if (a === '--known') env.known = true;
    else usage(`unknown argument ${a}`);
  }
  if (!env.tcp || !env.ws) usage('--tcp and --ws are required');
  return env;
}

function usage(msg) {
  console.error(`run.js: ${msg}\nusage: node run.js --tcp HOST:PORT --ws ws://HOST:PORT/v1/ws [--handshake-timeout-ms N] [--token-grace-ms N] [--ring-ms N] [--offer-ttl-ms N] [--p2p-relay-rate N] [--p2p-relay-burst N] [--only REGEXP] [--known]`);
  process.exit(2);
}

function loadChecks() {
  for (const m of ['framing', 'handshake', 'sessions', 'presence', 'messages', 'groups', 'friends', 'files', 'calls', 'p2p']) {
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
  const chosen = registry.filter((c) => !env.only || env.only.test(c.title));
  const known = (c) => KNOWN_DISAGREEMENTS.some((re) => re.test(c.title));
  const skipped = env.known ? [] : chosen.filter(known);
  const checks = chosen.filter((c) => !skipped.includes(c));
  console.log(`parley outsider: ${checks.length} checks, tcp=${env.tcp} ws=${env.ws} http_url=${env.httpURL}`);
  for (const c of skipped) console.log(`skip  ${c.title} (KNOWN DISAGREEMENT: run with --known)`);
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
  console.log(`\n${checks.length} checks: ${checks.length - failed.length} passed, ${failed.length} failed${skipped.length ? `, ${skipped.length} skipped (known disagreements)` : ''}`);
  for (const f of failed) console.log(`  FAILED ${f}`);
  process.exit(failed.length ? 1 : 0);
}

main().catch((err) => {
  console.error(err && err.stack ? err.stack : err);
  process.exit(2);
});
