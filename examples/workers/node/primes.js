#!/usr/bin/env node
// primes (Node.js): a complete runsd worker, no dependencies (docs/workers.md).
//
// Emits the primes below input.below (default 50) as items {"n": p, "index": k}, with a step,
// progress, a checkpoint after every item, and a result. It resumes from its checkpoint, so a
// run stopped at its limit and extended, or re-queued after a daemon restart, goes on where
// it stopped.
"use strict";
const fs = require("fs");

const MAX_BELOW = 1000000;

// Messages as JSON lines in one synchronous write: the daemon sees them at once, whole.
function emit(...msgs) {
  fs.writeSync(1, msgs.map((m) => JSON.stringify(m) + "\n").join(""));
}

// An `error` message and exit 1: the run ends failed/error_occurred.
function fail(message) {
  emit({ type: "error", message });
  process.exit(1);
}

function isPrime(n) {
  if (n < 2) return false;
  for (let d = 2; d * d <= n; d++) if (n % d === 0) return false;
  return true;
}

function main(run) {
  const input = run.input || {};
  if (typeof input !== "object" || Array.isArray(input))
    fail('input must be an object such as {"below": 100}');
  const below = input.below === undefined ? 50 : input.below;
  if (!Number.isInteger(below) || below < 2 || below > MAX_BELOW)
    fail(`input.below must be an integer from 2 to ${MAX_BELOW}`);
  const limit = run.limit; // the total over all attempts, or null
  const cursor = run.cursor || { next: 2, found: 0, largest: null };
  let { next: n, found, largest } = cursor;

  emit(
    { type: "log", level: "info", message: `attempt ${run.attempt}: from ${n} to ${below - 1}` },
    { type: "step", name: "scan", state: "started", total: below - 2 },
  );
  for (; n < below; n++) {
    if (!isPrime(n)) continue;
    found += 1;
    largest = n;
    // The item, then a checkpoint past it: a resumed attempt starts after this item.
    emit(
      { type: "item", data: { n, index: found } },
      { type: "checkpoint", cursor: { next: n + 1, found, largest } },
      { type: "progress", done: n - 1, total: below - 2 },
    );
    if (limit !== null && found >= limit) return 0; // match_limit_met; an extend resumes it
  }
  emit(
    { type: "step", name: "scan", state: "finished", total: below - 2 },
    { type: "progress", done: below - 2, total: below - 2 },
    { type: "result", data: { below, count: found, largest } },
    { type: "done" },
  );
  return 0;
}

// The first stdin line is always the start message; this worker needs no other, so it stops
// reading (a worker that asks for approvals keeps listening for "line" events instead).
const rl = require("readline").createInterface({ input: process.stdin });
rl.once("line", (line) => {
  rl.close();
  process.stdin.destroy();
  process.exitCode = main(JSON.parse(line).run);
});
