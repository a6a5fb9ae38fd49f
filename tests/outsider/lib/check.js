'use strict';
// The checks' registry and assertions. A check is named after what the
// document promises and the section that promises it; it fails with what the
// server did instead.

class CheckFailure extends Error {}

const registry = [];

// check registers fn under "§section name". fn gets a context (see run.js).
function check(section, name, fn) {
  registry.push({ section, name, fn, title: `§${section} ${name}` });
}

function fail(msg) {
  throw new CheckFailure(msg);
}

function ok(cond, msg) {
  if (!cond) fail(msg);
}

function eq(actual, want, what) {
  if (!same(actual, want)) fail(`${what}: got ${show(actual)}, want ${show(want)}`);
}

function same(a, b) {
  return JSON.stringify(a) === JSON.stringify(b);
}

function show(v) {
  const s = JSON.stringify(v);
  if (s === undefined) return String(v);
  return s.length > 300 ? s.slice(0, 300) + '…' : s;
}

module.exports = { CheckFailure, check, registry, fail, ok, eq, show };
