// jsclient_driver.mjs: drives clients/js/runsd.mjs against a real daemon for
// test_jsclient.py, which starts (and restarts) the daemon. Node.js 18 or later, no packages.
//
//   node jsclient_driver.mjs watch BASE KEY RUN_ID MODULE
//       watches the run with typed handlers and prints one JSON line per event as it arrives
//       ({"kind":"event","id","type"}), "retry"/"open" lines, and a last line
//       {"kind":"end","run","stats","ids"}; the Python side restarts the daemon meanwhile.
//   node jsclient_driver.mjs scenario BASE KEY FLOW MODULE
//       the rest, checked here with node:assert: typed events in order, the async iterators,
//       waitForRun, approve and deny by the run's links, errors; prints {"kind":"ok",...}.
// MODULE is the path of the module to import (the source file), or "served": the copy the
// daemon serves at /v1/client.js, fetched and written to a temp file first.
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const [cmd, base, key, arg, modArg] = process.argv.slice(2);

async function servedCopy() {
  const res = await fetch(base + '/v1/client.js');
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type'), /^text\/javascript/);
  const path = join(mkdtempSync(join(tmpdir(), 'runsd-client-')), 'client.mjs');
  writeFileSync(path, Buffer.from(await res.arrayBuffer()));
  return path;
}

const modPath = modArg === 'served' ? await servedCopy() : modArg;
const mod = await import(pathToFileURL(modPath).href);
const { Runsd, RunsdError, EVENT_TYPES, TERMINAL } = mod;
const rd = new Runsd({ baseUrl: base, apiKey: key === '-' ? null : key, backoff: { initialMs: 100, maxMs: 1000 } });
const out = (o) => process.stdout.write(JSON.stringify(o) + '\n');

async function watchCmd(runId) {
  const w = rd.watch(runId);
  const ids = [];
  for (const t of EVENT_TYPES) {
    w.on(t, (ev) => {
      assert.equal(ev.type, t, 'a handler gets only its type');
      ids.push(ev.id);
      out({ kind: 'event', id: ev.id, type: ev.type });
    });
  }
  w.on('open', (o) => out({ kind: 'open', lastEventId: o.lastEventId }));
  w.on('retry', (r) => out({ kind: 'retry', delay: r.delay, error: r.error ? String(r.error) : null }));
  const run = await w.done;
  out({ kind: 'end', run, stats: w.stats, ids, lastEventId: w.lastEventId });
}

// Collects every event of a watch through '*' and the per-type handlers at once.
function record(w) {
  const all = [], typed = [];
  w.on('*', (ev) => all.push(ev));
  for (const t of EVENT_TYPES) w.on(t, (ev) => typed.push(ev));
  return { all, typed };
}

async function scenario(flow) {
  // 1. A run watched to its end: typed events in order, the end carries the final run.
  const run = await rd.createRun({ flow, input: { steps: ['fetch'], items: 3, progress: true, result: { n: 3 } } });
  const w = rd.watch(run);
  const { all, typed } = record(w);
  const items = [];
  const itemsDone = (async () => { for await (const ev of w.events('run.item')) items.push(ev.data.data); })();
  const final = await w.done;
  await itemsDone;
  assert.equal(final.id, run.id);
  assert.equal(final.status, 'succeeded');
  assert.deepEqual(typed.map((e) => e.id), all.map((e) => e.id), "typed handlers and '*' see the same events");
  const ids = all.map((e) => e.id);
  assert.deepEqual(ids, [...ids].sort((a, b) => a - b), 'ids increase');
  assert.equal(new Set(ids).size, ids.length, 'no duplicate');
  assert.equal(all[0].type, 'run.created');
  assert.equal(all.at(-1).type, 'run.end');
  const types = all.map((e) => e.type);
  for (const t of ['run.status', 'run.step', 'run.progress', 'run.item', 'run.result']) assert.ok(types.includes(t), t);
  assert.deepEqual(items, [{ i: 0 }, { i: 1 }, { i: 2 }]);
  assert.ok(types.indexOf('run.result') < types.indexOf('run.end'));
  const log = await rd.request('GET', `/v1/runs/${run.id}/events`, { query: { limit: 1000 } });
  assert.deepEqual(ids, log.items.map((e) => e.id), 'the stream and the JSON log agree: no gap');
  assert.equal(final.last_event_id, ids.at(-2), "run.end's run: its last event before run.end");

  // 2. A finished run watched again from its last event: 204, done at once with the run.
  const again = rd.watch(run.id, { lastEventId: ids.at(-1) });
  let extra = 0;
  again.on('*', () => extra++);
  const againRun = await again.done;
  assert.equal(extra, 0);
  assert.equal(againRun.status, 'succeeded');

  // 3. for await over every event of a run's stream_url (no key: the link's token).
  const anon = new Runsd({ baseUrl: base });
  const seen = [];
  for await (const ev of anon.watch({ url: final.stream_url })) seen.push(ev.id);
  assert.deepEqual(seen, ids, 'the stream token replays the same events');

  // 4. waitForRun: settles on a person's question, then on the end.
  const slow = await rd.createRun({ flow, input: { sleep: 0.3, items: 1 } });
  const settled = await rd.waitForRun(slow.id, { timeout: 30 });
  assert.ok(TERMINAL.includes(settled.status), settled.status);
  const short = await rd.waitForRun((await rd.createRun({ flow, input: { sleep: 5 } })).id, { timeout: 1 });
  assert.equal(short.status, 'running', 'a timeout returns the run as it is');
  await rd.cancel(short.id);

  // 5. approve a paused run and deny another, through their pending_action links.
  const pa = await rd.createRun({ flow, input: { approval: 'Ship it?', items: 2 } });
  const paused = await rd.waitForRun(pa.id, { timeout: 30 });
  assert.equal(paused.status, 'paused');
  assert.match(paused.pending_action.approve_url, /\/v1\/runs\/approval\?token=/);
  const ans = await rd.approve(paused, { comment: 'yes' });
  assert.equal(ans.decision, 'approved');
  const approved = await rd.waitForRun(pa.id, { timeout: 30 });
  assert.equal(approved.status, 'succeeded');
  assert.equal(approved.counts.items, 2);
  await assert.rejects(rd.approve(paused), (e) => e instanceof RunsdError && e.status === 410 && e.code === 'token_spent');

  const pd = await rd.createRun({ flow, input: { approval: 'Delete it?' } });
  const paused2 = await rd.waitForRun(pd.id, { timeout: 30 });
  assert.equal(paused2.status, 'paused');
  const watchDenied = rd.watch(pd.id);
  const deniedTypes = [];
  watchDenied.on('*', (ev) => deniedTypes.push(ev.type));
  const den = await rd.deny(paused2.id); // by id: the client reads the run for its links
  assert.equal(den.decision, 'denied');
  const denied = await watchDenied.done;
  assert.equal(denied.status, 'cancelled');
  assert.equal(denied.termination_reason, 'approval_denied');
  assert.ok(deniedTypes.includes('run.approval_required'));

  // 6. errors carry the stable code; a watch of an unknown run ends with it.
  await assert.rejects(rd.getRun('run_doesnotexist0000000000'), (e) => e.code === 'run_not_found' && e.status === 404);
  const bad = rd.watch('run_doesnotexist0000000000');
  let errEvent = null;
  bad.on('error', (e) => { errEvent = e; });
  await assert.rejects(bad.done, (e) => e.code === 'run_not_found');
  assert.equal(errEvent.code, 'run_not_found');

  // 7. the global stream: types filter, close() ends it with null.
  const g = rd.watch({ all: true, types: ['run.end'] });
  const gEnds = [];
  g.on('run.end', (ev) => gEnds.push(ev.run_id));
  g.on('open', async () => {
    const r = await rd.createRun({ flow, input: { items: 1 } });
    await rd.waitForRun(r.id, { terminal: true, timeout: 30 });
    setTimeout(() => g.close(), 300);
  });
  assert.equal(await g.done, null);
  assert.equal(gEnds.length, 1, 'the global stream saw the new run end, and only run.end');

  out({ kind: 'ok', run: run.id, events: ids.length, approved: pa.id, denied: pd.id });
}

if (cmd === 'watch') await watchCmd(arg);
else if (cmd === 'scenario') await scenario(arg);
else throw new Error('usage: watch|scenario BASE KEY ARG MODULE');
