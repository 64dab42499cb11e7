// dashboard_driver.mjs: drives the dashboard (web/) in Debian's Chromium with playwright-core,
// against a daemon test_dashboard.py started. Usage:
//   node dashboard_driver.mjs BASE WRITE_KEY ARTIFACTS_DIR READ_KEY
//   node dashboard_driver.mjs BASE - ARTIFACTS_DIR        (a daemon with no API key)
// It writes one JSON line per step on stdout ({"kind":"step","name"}), asks the test to kill
// and restart the daemon with {"kind":"kill"} (and waits for a line on stdin), and ends with
// {"kind":"ok", ...figures}. Any failed expectation throws: exit 1 with the reason.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { createInterface } from 'node:readline';
import path from 'node:path';
import http from 'node:http';
import net from 'node:net';

const require = createRequire(new URL('../browser/', import.meta.url));
const { chromium } = require('playwright-core');

const [BASE, KEY, ART, READ_KEY] = process.argv.slice(2);
const NOKEY = KEY === '-'; // the daemon has no [auth] key: the page needs none
// axe-core (pinned in test/browser/package.json) for the accessibility and contrast check.
const AXE = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const out = (o) => process.stdout.write(JSON.stringify(o) + '\n');
const step = (name) => out({ kind: 'step', name });
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();

function assert(cond, what) {
  if (!cond) throw new Error('expected: ' + what);
}

async function api(method, p, body) {
  const res = await fetch(BASE + p, {
    method,
    headers: { ...(NOKEY ? {} : { Authorization: 'Bearer ' + KEY }), 'Content-Type': 'application/json', Accept: 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${p}: ${res.status} ${text}`);
  return text ? JSON.parse(text) : null;
}
const create = (flow, input, extra = {}) => api('POST', '/v1/runs', { flow, input, ...extra });

/** The run once its status is one of statuses (the daemon's ?wait= holds each read). */
async function waitRun(id, statuses) {
  for (let i = 0; i < 60; i++) {
    const run = await api('GET', `/v1/runs/${id}?wait=5`);
    if (statuses.includes(run.status)) return run;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`run ${id} never reached ${statuses}`);
}

async function eventLog(id) {
  let after = 0, ids = [];
  for (;;) {
    const page = await api('GET', `/v1/runs/${id}/events?after=${after}&limit=1000`);
    ids = ids.concat(page.items.map((e) => e.id));
    if (!page.has_more) return ids;
    after = page.next_after;
  }
}

const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true,
  args: ['--no-sandbox', '--disable-dev-shm-usage'] });
const problems = []; // page errors and console errors that are not expected network drops

async function newPage(opts = {}) {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 }, ...opts });
  const page = await ctx.newPage();
  page.on('pageerror', (e) => problems.push('pageerror: ' + e.message));
  page.on('console', (m) => {
    const t = m.text();
    // A daemon that is down refuses connections: expected while it restarts.
    // Refused keys (401, 403) and input (422) are answers the page shows; Chromium logs them.
    if (m.type() === 'error' && !/net::ERR_|status of (401|403|422) /.test(t)) {
      problems.push('console: ' + t);
    }
  });
  page.setDefaultTimeout(20000);
  return page;
}

/** At phone width the page itself never scrolls sideways (wide tables scroll in their box). */
async function narrow(p, name) {
  if (name !== 'phone') return;
  const wide = await p.evaluate(() => document.documentElement.scrollWidth);
  assert(wide <= 390, `no sideways scrolling at phone width (${p.url()}): ${wide}`);
}

async function login(page, hash = '') {
  await page.goto(BASE + '/' + hash);
  await page.getByLabel('API key').fill(KEY);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.locator('header.top').waitFor({ state: 'visible' });
}

/** axe-core on what page p shows now (its context must bypass the CSP, which forbids the
 * inline script axe is injected as): every serious or critical violation (color-contrast is
 * one) fails; the others are returned as notes. */
async function axeCheck(p, what) {
  if (!(await p.evaluate(() => !!window.axe))) await p.addScriptTag({ content: AXE });
  const res = await p.evaluate(() => window.axe.run(document, { resultTypes: ['violations'] }));
  const bad = res.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  const say = (v) => `${v.id} (${v.impact}): ${v.help} at ${v.nodes.slice(0, 3).map((n) => n.target.join(' ')).join(', ')}` +
    (v.nodes[0] && v.nodes[0].failureSummary ? ' — ' + v.nodes[0].failureSummary.replace(/\s+/g, ' ') : '');
  assert(bad.length === 0, `no serious accessibility violation on ${what}: ` + bad.map(say).join(' | '));
  return res.violations.map((v) => `${what}: ${v.id} (${v.impact})`);
}

/** The number a tile of the overview shows. */
const tile = async (p, id) => Number(await p.locator('#' + id).textContent());

const statusOf = (page) => page.locator('.runhead .badge').textContent();
async function waitBadge(page, status) {
  await page.locator('.runhead .badge', { hasText: new RegExp('^' + status.replace('_', ' ') + '$') }).waitFor();
}

/** A daemon with no API key: no login form, nothing stored, and the page works at once. */
async function noKey() {
  step('nokey');
  page = await newPage();
  await page.goto(BASE + '/');
  await page.locator('table.runs').waitFor();
  assert(await page.locator('header.top').isVisible(), 'the navigation without a key');
  assert(await page.getByLabel('API key').count() === 0, 'no login form');
  assert(await page.locator('#logout').isHidden(), 'no Log out without a key');
  await page.getByRole('link', { name: 'New run' }).first().click();
  await page.getByLabel('Flow').selectOption('test');
  await page.getByLabel('Input (JSON)').fill('{"items": 3}');
  await page.getByRole('button', { name: 'Create run' }).click();
  await page.waitForURL(/#\/runs\/run_/);
  await waitBadge(page, 'succeeded');
  await page.locator('#items tbody tr[data-seq]').nth(2).waitFor();
  await page.locator('#timeline li[data-type="run.end"]').waitFor();
  // Acting needs no key either: approve a paused run from its page.
  const a = await create('test', { approval: 'Go on without a key?', items: 1 });
  await page.goto(BASE + '/#/runs/' + a.id);
  await page.locator('#approval-prompt', { hasText: 'Go on without a key?' }).waitFor();
  await page.getByRole('button', { name: 'Approve' }).click();
  await waitBadge(page, 'succeeded');
  // The list and the overview, live.
  await page.goto(BASE + '/#/');
  await page.locator('table.runs tbody tr[data-run-id]').first().waitFor();
  const n = await create('test', { items: 1 });
  await page.locator(`tr[data-run-id="${n.id}"] .badge`, { hasText: 'succeeded' }).waitFor();
  await page.getByRole('link', { name: 'Overview' }).click();
  await page.locator('#per-flow tbody tr[data-flow="test"]').waitFor();
  await page.locator('#t-backlog').waitFor();
  await page.reload();
  await page.locator('#per-flow tbody tr[data-flow="test"]').waitFor();
  assert(await page.getByLabel('API key').count() === 0, 'still no login form after a reload');
  const stored = await page.evaluate(() => sessionStorage.length + localStorage.length + document.cookie.length);
  assert(stored === 0, 'nothing stored without a key: ' + stored);
  await page.screenshot({ path: path.join(ART, 'nokey-overview.png'), fullPage: true });
  assert(problems.length === 0, 'no page error or console error: ' + problems.join(' | '));
  out({ kind: 'ok', nokey: true });
  await browser.close();
  process.exit(0);
}

let page;
try {
  if (NOKEY) await noKey();
  // --- keys: nothing but the login form without one; the key lives in sessionStorage only.
  step('login');
  page = await newPage();
  // The streams of every run's events the page opens: one at a time, whatever the views
  // do (a drop ends one before the next is opened).
  const streams = { opened: 0, open: 0, most: 0 };
  const isStream = (r) => new URL(r.url()).pathname === '/v1/events';
  page.on('request', (r) => { if (isStream(r)) { streams.opened++; streams.most = Math.max(streams.most, ++streams.open); } });
  for (const ev of ['requestfinished', 'requestfailed']) page.on(ev, (r) => { if (isStream(r)) streams.open--; });
  const head = await page.goto(BASE + '/');
  const csp = head.headers()['content-security-policy'] || '';
  assert(csp.includes("script-src 'self'") && csp.includes("require-trusted-types-for 'script'"), 'a strict CSP on /: ' + csp);
  await page.getByLabel('API key').waitFor();
  assert(await page.locator('header.top').isHidden(), 'no navigation before a key');
  assert(await page.locator('table').count() === 0, 'no data before a key');
  await page.getByLabel('API key').fill('not-the-key-0123456789');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByText('That key was not accepted.').waitFor();
  await page.getByLabel('API key').fill(KEY);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.locator('table.runs').waitFor();
  const stored = await page.evaluate(() => ({ s: sessionStorage.getItem('runsd.apiKey'), l: localStorage.length }));
  assert(stored.s === KEY && stored.l === 0, 'the key in sessionStorage only');

  // --- create from the form: a JSON error and the daemon's 422 shown next to the field.
  step('create');
  await page.getByRole('link', { name: 'New run' }).first().click();
  await page.getByLabel('Flow').selectOption('typed');
  const input = page.getByLabel('Input (JSON)');
  await input.fill('{"items": 5,');
  await page.getByRole('button', { name: 'Create run' }).click();
  await page.locator('#new-input-err', { hasText: 'Not valid JSON' }).waitFor();
  assert(await input.getAttribute('aria-invalid') === 'true', 'the field marked invalid');
  await input.fill('{"itemz": 5}');
  await page.getByRole('button', { name: 'Create run' }).click();
  await page.locator('#new-input-err', { hasText: 'unknown input key "itemz"' }).waitFor();
  await input.fill('{"items": 5, "item_delay": 0.1, "steps": ["fetch", "match"], "progress": true, "result": {"found": 5}}');
  await page.getByRole('button', { name: 'Create run' }).click();
  await page.waitForURL(/#\/runs\/run_/);
  await waitBadge(page, 'succeeded');
  await page.locator('#items tbody tr[data-seq]').nth(4).waitFor();
  assert(await page.locator('#items tbody tr[data-seq]').count() === 5, '5 item rows');
  await page.locator('#timeline li[data-type="run.end"]').waitFor();
  await page.getByText('"found": 5').waitFor();
  // Steps, the progress bar and the figures (duration, worker CPU, peak memory).
  for (const st of ['fetch', 'match']) await page.locator('ol.steps li.step-finished', { hasText: st }).waitFor();
  await page.waitForFunction(() => { const p = document.getElementById('run-progress'); return p && p.value === 5 && p.max === 5; });
  const figure = (k) => page.locator('dl.figures div', { has: page.locator('dt', { hasText: new RegExp('^' + k + '$') }) }).locator('dd').textContent();
  assert(/^\d+(\.\d)? (ms|s)$/.test(await figure('Duration')), 'a duration: ' + await figure('Duration'));
  assert(/^\d+(\.\d)? (ms|s)$/.test(await figure('Worker CPU')), 'worker CPU: ' + await figure('Worker CPU'));
  assert(/^\d+(\.\d)? (KiB|MiB)$/.test(await figure('Peak memory')), 'peak memory: ' + await figure('Peak memory'));
  const created = page.url().split('/runs/')[1];
  // The list shows it, live, with its badge.
  await page.getByRole('link', { name: '← All runs' }).click();
  await page.locator(`tr[data-run-id="${created}"] .badge`, { hasText: 'succeeded' }).waitFor();

  // --- a failed run shows its error.
  step('error');
  const failed = await create('test', { error: 'the <b>source</b> is gone' });
  await page.goto(BASE + '/#/runs/' + failed.id);
  await waitBadge(page, 'failed');
  await page.locator('.error-box[role="alert"]', { hasText: 'the <b>source</b> is gone' }).waitFor();

  // --- approve one paused run and deny another from their pages.
  step('approve-deny');
  const a1 = await create('test', { approval: 'Ship <b>it</b>?', approval_details: { size: 3 }, items: 1 });
  const a2 = await create('test', { approval: 'Delete everything?', items: 1, on_deny: 'exit' });
  await page.goto(BASE + '/#/runs/' + a1.id);
  await page.locator('#approval-prompt', { hasText: 'Ship <b>it</b>?' }).waitFor();
  await page.getByText('"size": 3').waitFor();
  await page.getByRole('button', { name: 'Approve' }).click();
  await waitBadge(page, 'succeeded');
  await page.goto(BASE + '/#/runs/' + a2.id);
  await page.locator('#approval-prompt', { hasText: 'Delete everything?' }).waitFor();
  await page.getByRole('button', { name: 'Deny' }).click();
  await waitBadge(page, 'cancelled');
  await page.locator('.runhead', { hasText: 'approval_denied' }).waitFor();

  // --- keyboard only: Tab from the top of the page to Approve, then Enter.
  step('keyboard');
  const a3 = await create('test', { approval: 'Approve by keyboard?', items: 1 });
  await page.goto(BASE + '/#/runs/' + a3.id);
  await page.locator('#approval-prompt').waitFor();
  await page.locator('body').focus();
  let tabs = 0;
  for (; tabs < 40; tabs++) {
    await page.keyboard.press('Tab');
    const label = await page.evaluate(() => document.activeElement && document.activeElement.textContent);
    if (label === 'Approve') break;
  }
  assert(tabs < 40, 'Approve reachable with Tab');
  const ring = await page.evaluate(() => getComputedStyle(document.activeElement).outlineStyle);
  assert(ring !== 'none', 'a visible focus ring on the button');
  await page.keyboard.press('Enter');
  await waitBadge(page, 'succeeded');

  // --- the auth link through the demo provider: the run resumes.
  step('auth');
  const au = await create('test', { auth: BASE + '/v1/demo/oauth/authorize?state={state}', provider: 'demo', items: 2 });
  await page.goto(BASE + '/#/runs/' + au.id);
  const [popup] = await Promise.all([page.waitForEvent('popup'), page.locator('#auth-link').click()]);
  await popup.waitForLoadState();
  await popup.getByRole('link', { name: 'Allow' }).click();
  await popup.waitForLoadState();
  await waitBadge(page, 'succeeded');
  await popup.close();

  // --- cancel a running run.
  step('cancel');
  const c = await create('test', { items: 2, sleep: 60 });
  await page.goto(BASE + '/#/runs/' + c.id);
  await waitBadge(page, 'running');
  await page.getByRole('button', { name: 'Cancel run' }).click();
  await waitBadge(page, 'cancelled');

  // --- the list: a new run appears live, without a reload; the status filter keeps only
  // its status (and says so in the address, so a reload keeps it).
  step('list');
  await page.goto(BASE + '/#/');
  await page.locator('table.runs tbody tr[data-run-id]').first().waitFor();
  const newer = await create('test', { items: 1 });
  await page.locator(`tr[data-run-id="${newer.id}"]`).waitFor();
  await page.getByLabel('Status').selectOption('cancelled');
  await page.waitForFunction(() => {
    const rows = [...document.querySelectorAll('table.runs tbody tr[data-run-id]')];
    return rows.length >= 2 && rows.every((r) => r.dataset.status === 'cancelled');
  });
  assert(page.url().includes('status=cancelled'), 'the filter in the address');
  // Through the login, the form, seven runs' pages and the list: one stream.
  assert(streams.opened >= 1 && streams.most === 1, 'one stream of /v1/events at a time: ' + JSON.stringify(streams));
  await page.getByLabel('Status').selectOption('');
  // The flow filter and paging (20 a page): 21 runs of "ext", whose external worker never
  // comes, cancelled at once.
  const exts = [];
  for (let i = 0; i < 21; i++) exts.push(await create('ext', {}));
  for (const x of exts) await api('POST', `/v1/runs/${x.id}/cancel`, {});
  await page.getByLabel('Flow', { exact: true }).selectOption('ext');
  await page.locator('#runs-count', { hasText: /^21 runs$/ }).waitFor();
  await page.waitForFunction(() => {
    const rows = [...document.querySelectorAll('table.runs tbody tr[data-run-id]')];
    return rows.length === 20 && rows.every((r) => r.querySelector('td[data-label="Flow"]').textContent === 'ext');
  });
  assert(page.url().includes('flow=ext'), 'the flow filter in the address');
  await page.getByRole('button', { name: 'Older →' }).click();
  await page.getByText('Page 2 of 2').waitFor();
  await page.waitForFunction(() => document.querySelectorAll('table.runs tbody tr[data-run-id]').length === 1);
  assert(page.url().includes('page=2'), 'the page in the address');
  assert(await page.locator('table.runs tbody tr[data-run-id]').getAttribute('data-run-id') === exts[0].id, 'the oldest on page 2');
  assert(await page.getByRole('button', { name: 'Older →' }).isDisabled(), 'no page after the last');
  await page.getByLabel('Flow', { exact: true }).selectOption('');

  // --- extend a match_limit_met run.
  step('extend');
  const e = await create('test', { items: 20, checkpoint: true }, { limit: 5 });
  await page.goto(BASE + '/#/runs/' + e.id);
  await page.locator('.runhead', { hasText: 'match_limit_met' }).waitFor();
  await page.getByLabel('More items').fill('5');
  await page.getByRole('button', { name: 'Extend' }).click();
  await page.locator('dl.figures div', { hasText: /^Items10$/ }).waitFor();
  await page.locator('.runhead', { hasText: 'match_limit_met' }).waitFor();

  // --- enrich the run created from the form; the enrichments appear in its items table.
  step('enrich');
  await page.goto(BASE + '/#/runs/' + created);
  await page.locator('#items tbody tr[data-seq]').first().waitFor();
  await page.getByText('Enrich the items…').click();
  await page.getByLabel('Enrichment flow').selectOption('test');
  await page.getByLabel('Input (JSON, optional)').fill('{"stdin_items": true}');
  await page.getByRole('button', { name: 'Enrich' }).click();
  await page.locator('#items code.data', { hasText: 'test: {"enriched":true' }).nth(4).waitFor();

  // --- webhook deliveries: one delivered, redelivered from the page.
  step('redeliver');
  let hits = 0;
  const receiver = http.createServer((req, res) => { hits++; req.resume(); req.on('end', () => res.end('ok')); });
  await new Promise((r) => receiver.listen(0, '127.0.0.1', r));
  const wh = await create('test', { items: 1 }, { webhook: { url: `http://127.0.0.1:${receiver.address().port}/hook` } });
  await waitRun(wh.id, ['succeeded']);
  await page.goto(BASE + '/#/runs/' + wh.id);
  await page.locator('tr[data-delivery] td', { hasText: /^delivered$/ }).waitFor();
  assert(hits === 1, 'one delivery: ' + hits);
  await page.getByRole('button', { name: 'Redeliver' }).click();
  await page.locator('tr[data-delivery] td.num', { hasText: /^2$/ }).waitFor();
  assert(hits === 2, 'delivered again: ' + hits);
  receiver.close();

  // --- the overview, live: the webhook backlog rises while a receiver refuses (503) and
  // falls once it accepts; the finished runs per flow move; all without a reload.
  step('overview');
  let refusing = true, refused = 0;
  const picky = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => { if (refusing) refused++; res.statusCode = refusing ? 503 : 200; res.end(); });
  });
  await new Promise((r) => picky.listen(0, '127.0.0.1', r));
  await page.goto(BASE + '/#/overview');
  await page.locator('#per-flow tbody tr[data-flow="test"]').waitFor();
  await page.locator('#t-backlog', { hasText: /^0$/ }).waitFor();
  const doneCell = '#per-flow tr[data-flow="test"] td[data-status="succeeded"]';
  const doneBefore = Number(await page.locator(doneCell).textContent());
  const hooked = [];
  for (let i = 0; i < 2; i++) {
    hooked.push(await create('test', { items: 1 }, { webhook: { url: `http://127.0.0.1:${picky.address().port}/hook` } }));
  }
  await page.locator('#t-backlog', { hasText: /^2$/ }).waitFor();
  await page.waitForFunction(([sel, n]) => Number(document.querySelector(sel)?.textContent) >= n, [doneCell, doneBefore + 2]);
  assert(refused >= 2, 'the receiver refused the deliveries: ' + refused);
  assert(await tile(page, 't-subscribers') >= 1, 'the page\'s own stream among the subscribers');
  assert(await tile(page, 't-backlog') === 2, 'a backlog of 2 while refused');
  refusing = false;
  await page.locator('#t-backlog', { hasText: /^0$/ }).waitFor();
  for (const r of hooked) {
    const dl = await api('GET', `/v1/runs/${r.id}/deliveries`);
    assert(dl.items[0].status === 'delivered', 'delivered once accepted: ' + dl.items[0].status);
  }
  picky.close();

  // --- hostile item data and prompts stay text.
  step('xss');
  const x = await create('test', { items: 0, approval: '<img src=x onerror="window.__pwned=1">', on_deny: 'exit',
    log: ['<script>window.__pwned=2</script>'] });
  await waitRun(x.id, ['paused']);
  await api('POST', `/v1/runs/${x.id}/deny`, {});
  const xi = await create('test', { result: { html: '<script>window.__pwned=3</script>' }, items: 1 });
  // The item: {"i":0}; the enrichment-free path: a result and a log with markup, and the
  // item error path with markup in its data.
  // Items come from an external worker here, so their data can be anything a worker sends.
  const xe = await create('ext', {});
  const hostile = { name: '<script>window.__pwned=5</script>', pic: '<img src=x onerror="window.__pwned=6">' };
  const post = await fetch(`${BASE}/v1/runs/${xe.id}/events`, { method: 'POST',
    headers: { Authorization: 'Bearer ' + KEY, 'Content-Type': 'application/x-ndjson' },
    body: [{ type: 'item', data: hostile }, { type: 'log', level: 'warn', message: '<b onmouseover="x()">hi</b>' },
      { type: 'done' }].map((m) => JSON.stringify(m)).join('\n') + '\n' });
  assert(post.ok, 'external worker post: ' + post.status);
  for (const id of [x.id, xi.id, xe.id]) {
    await page.goto(BASE + '/#/runs/' + id);
    await page.locator('#timeline li[data-type="run.end"]').waitFor();
  }
  await page.goto(BASE + '/#/runs/' + x.id);
  await page.locator('#timeline li[data-type="run.end"]').waitFor();
  await page.getByText('<img src=x onerror="window.__pwned=1">').first().waitFor();
  await page.getByText('<script>window.__pwned=2</script>').first().waitFor();
  assert(await page.locator('main img, main script').count() === 0, 'no element made from data');
  await page.goto(BASE + '/#/runs/' + xi.id);
  await page.getByText('"html": "<script>window.__pwned=3</script>"').waitFor();
  await page.goto(BASE + '/#/runs/' + xe.id);
  await page.locator('#items tbody tr[data-seq]').first().waitFor();
  await page.locator('#items code.data', { hasText: '<script>window.__pwned=5</script>' }).waitFor();
  await page.locator('#items code.data', { hasText: 'onerror=\\"window.__pwned=6\\"' }).waitFor();
  await page.getByText('<b onmouseover="x()">hi</b>').waitFor();
  assert(await page.locator('main img, main script, main b').count() === 0, 'no element made from item data');
  assert(await page.evaluate(() => window.__pwned) === undefined, 'no script from data ran');

  // --- the daemon killed (-9) and restarted while a run's page is open.
  step('restart');
  const r = await create('test', { items: 40, item_delay: 0.1, checkpoint: true, steps: ['a'] });
  await page.goto(BASE + '/#/runs/' + r.id);
  await page.waitForFunction(() => Number(document.getElementById('timeline')?.dataset.count) >= 10);
  out({ kind: 'kill' });
  await page.locator('#banner', { hasText: 'Disconnected' }).waitFor();
  out({ kind: 'banner' });
  await lines.next(); // the test restarted the daemon
  await waitBadge(page, 'succeeded');
  await page.locator('#timeline li[data-type="run.end"]').waitFor();
  await page.locator('#banner').waitFor({ state: 'hidden' });
  const log = await eventLog(r.id);
  const rows = await page.$$eval('#timeline li', (lis) => lis.map((li) => Number(li.dataset.id)));
  assert(new Set(rows).size === rows.length, 'no duplicate row');
  assert(JSON.stringify(rows) === JSON.stringify(log), `rows are the event log: ${rows.length} rows, ${log.length} events`);
  await page.locator('#items tbody tr[data-seq]').nth(39).waitFor();
  const restartRows = rows.length;
  assert(streams.most === 1 && streams.opened >= 2, 'one stream at a time, and a new one after the restart: ' + JSON.stringify(streams));

  // --- a network drop while the daemon keeps running: the page talks to it through a TCP
  // proxy here, which cuts every connection and refuses new ones for a while. The banner
  // shows, the run goes on meanwhile, and once the network is back the page catches up:
  // its timeline rows are exactly the run's event log again.
  step('network-drop');
  const up = new URL(BASE);
  const conns = new Set();
  let cut = false;
  const proxy = net.createServer((c) => {
    if (cut) { c.destroy(); return; }
    const u = net.connect(Number(up.port), up.hostname);
    const end = () => { c.destroy(); u.destroy(); conns.delete(c); };
    conns.add(c);
    c.pipe(u); u.pipe(c);
    for (const sock of [c, u]) { sock.on('error', end); sock.on('close', end); }
  });
  await new Promise((r) => proxy.listen(0, '127.0.0.1', r));
  const viaProxy = await newPage();
  await viaProxy.context().addInitScript((k) => sessionStorage.setItem('runsd.apiKey', k), KEY);
  const dr = await create('test', { items: 30, item_delay: 0.1, checkpoint: true });
  await viaProxy.goto(`http://127.0.0.1:${proxy.address().port}/#/runs/${dr.id}`);
  // (?.: before the page has drawn the run there is no #timeline, and a predicate that throws
  // ends waitForFunction at once instead of polling on.)
  await viaProxy.waitForFunction(() => Number(document.getElementById('timeline')?.dataset.count) >= 5);
  cut = true;
  for (const c of conns) c.destroy();
  await viaProxy.locator('#banner', { hasText: 'Disconnected' }).waitFor();
  await waitRun(dr.id, ['succeeded']); // while the page cannot see it
  assert(await viaProxy.locator('#timeline li[data-type="run.end"]').count() === 0, 'nothing reached the page while cut');
  cut = false;
  await viaProxy.locator('#banner').waitFor({ state: 'hidden' });
  await viaProxy.locator('#timeline li[data-type="run.end"]').waitFor();
  const dropLog = await eventLog(dr.id);
  const dropRows = await viaProxy.$$eval('#timeline li', (lis) => lis.map((li) => Number(li.dataset.id)));
  assert(JSON.stringify(dropRows) === JSON.stringify(dropLog), `rows are the event log after a drop: ${dropRows.length} rows, ${dropLog.length} events`);
  await waitBadge(viaProxy, 'succeeded');
  await viaProxy.context().close();
  proxy.close();

  // --- screenshots of the list, a run and the overview: desktop and phone, light and dark,
  // with a run left waiting for an approval (its marker in the list, its box on its page).
  step('screenshots');
  const waiting = await create('test', { approval: 'Publish the 5 matches to the catalogue?',
    approval_details: { matches: 5, target: 'catalogue' }, items: 1 });
  await waitRun(waiting.id, ['paused']);
  const shots = [];
  for (const [name, vp, scheme] of [['desktop', { width: 1280, height: 900 }, 'light'],
    ['phone', { width: 390, height: 844 }, 'light'], ['desktop-dark', { width: 1280, height: 900 }, 'dark']]) {
    const p = await newPage({ viewport: vp, colorScheme: scheme, isMobile: name === 'phone', hasTouch: name === 'phone' });
    await login(p);
    await p.locator('table.runs tbody tr[data-run-id]').first().waitFor();
    // The run waiting for a person carries its marker in the list.
    await p.locator(`tr[data-run-id="${waiting.id}"] .waiting`, { hasText: 'needs approval' }).waitFor();
    await narrow(p, name);
    await p.screenshot({ path: path.join(ART, `list-${name}.png`), fullPage: true });
    await p.goto(BASE + '/#/runs/' + created);
    await p.locator('#items tbody tr[data-seq]').first().waitFor();
    await p.locator('#timeline li[data-type="run.end"]').waitFor();
    await narrow(p, name);
    await p.screenshot({ path: path.join(ART, `run-${name}.png`), fullPage: true });
    await p.goto(BASE + '/#/runs/' + waiting.id);
    await p.locator('#approval-prompt').waitFor();
    await narrow(p, name);
    await p.screenshot({ path: path.join(ART, `run-paused-${name}.png`), fullPage: true });
    await p.goto(BASE + '/#/overview');
    await p.locator('#per-flow tbody tr').first().waitFor();
    await narrow(p, name);
    await p.screenshot({ path: path.join(ART, `overview-${name}.png`), fullPage: true });
    shots.push(name);
    await p.context().close();
  }

  // --- accessibility and contrast, checked by axe-core in light and dark (and light at phone
  // width, where wide tables scroll in their boxes): the login form,
  // the list, a finished run, a paused run (the approval box), the overview, and the new
  // run form showing a field error. The page's CSP forbids axe's inline script: only these
  // contexts bypass it.
  step('a11y');
  const a11yNotes = [];
  for (const [scheme, viewport] of [['light', { width: 1280, height: 900 }], ['dark', { width: 1280, height: 900 }],
    ['light, phone', { width: 390, height: 844 }]]) {
    const p = await newPage({ colorScheme: scheme.split(',')[0], viewport, bypassCSP: true });
    const check = async (what) => a11yNotes.push(...await axeCheck(p, `${what} (${scheme})`));
    await p.goto(BASE + '/');
    await p.getByLabel('API key').waitFor();
    // The system's setting is followed: dark is not light checked twice.
    const bg = await p.evaluate(() => getComputedStyle(document.body).backgroundColor);
    assert(bg === (scheme === 'dark' ? 'rgb(13, 17, 23)' : 'rgb(255, 255, 255)'), `the ${scheme} background: ${bg}`);
    await check('login');
    await p.getByLabel('API key').fill(KEY);
    await p.getByRole('button', { name: 'Sign in' }).click();
    await p.locator('table.runs tbody tr[data-run-id]').first().waitFor();
    await check('list');
    await p.goto(BASE + '/#/runs/' + created);
    await p.locator('#timeline li[data-type="run.end"]').waitFor();
    await p.locator('#items tbody tr[data-seq]').first().waitFor();
    await check('run');
    await p.goto(BASE + '/#/runs/' + waiting.id);
    await p.locator('#approval-prompt').waitFor();
    await check('paused run');
    await p.goto(BASE + '/#/runs/' + failed.id);
    await p.locator('.error-box').waitFor();
    await check('failed run');
    await p.goto(BASE + '/#/overview');
    await p.locator('#per-flow tbody tr').first().waitFor();
    await check('overview');
    await p.goto(BASE + '/#/new');
    await p.getByLabel('Input (JSON)').fill('{');
    await p.getByRole('button', { name: 'Create run' }).click();
    await p.locator('#new-input-err', { hasText: 'Not valid JSON' }).waitFor();
    await check('new run');
    await p.context().close();
  }

  // --- a read key: the run is shown, but acting is refused and said so next to the button.
  step('read-key');
  const reader = await newPage();
  await reader.goto(BASE + '/');
  await reader.getByLabel('API key').fill(READ_KEY);
  await reader.getByRole('button', { name: 'Sign in' }).click();
  await reader.goto(BASE + '/#/runs/' + waiting.id);
  await reader.locator('#approval-prompt', { hasText: 'Publish the 5 matches' }).waitFor();
  await reader.getByRole('button', { name: 'Approve' }).click();
  await reader.locator('.ask .msg.err', { hasText: '403 forbidden' }).waitFor();
  assert((await api('GET', '/v1/runs/' + waiting.id)).status === 'paused', 'a read key approved nothing');
  await reader.context().close();

  // --- page weight of a first load (bytes on the wire, CDP) and first render of a big run.
  step('figures');
  const big = await create('bulk', { count: 10000 });
  await waitRun(big.id, ['succeeded']);
  const fresh = await newPage();
  const cdp = await fresh.context().newCDPSession(fresh);
  await cdp.send('Network.enable');
  // Bytes on the wire (headers and compressed bodies) of every request that finished, split
  // into the page's files (/, /ui/*, /v1/client.js) and the API answers it asked for.
  const urls = new Map();
  const weight = { bytes: 0, requests: 0, files: 0, fileBytes: 0, apiBytes: 0 };
  cdp.on('Network.responseReceived', (ev) => urls.set(ev.requestId, new URL(ev.response.url).pathname));
  cdp.on('Network.loadingFinished', (ev) => {
    const p = urls.get(ev.requestId) || '';
    const file = p === '/' || p.startsWith('/ui/') || p === '/v1/client.js';
    weight.bytes += ev.encodedDataLength;
    weight.requests++;
    if (file) { weight.files++; weight.fileBytes += ev.encodedDataLength; } else weight.apiBytes += ev.encodedDataLength;
  });
  await login(fresh);
  await fresh.locator('table.runs tbody tr[data-run-id]').first().waitFor();
  const firstLoad = { ...weight }; // the handlers go on counting the big run's page
  // The run page of 10,000 items, opened cold (a new tab with an empty cache, the key put in
  // its sessionStorage before the page runs, as after a login): from navigation start to the
  // header, figures and first 50 items drawn (the mark run.mjs sets), then to the end of the
  // stream's replay of its 10,000-odd events into the timeline.
  const cold = await newPage();
  await cold.context().addInitScript((k) => sessionStorage.setItem('runsd.apiKey', k), KEY);
  const t0 = Date.now();
  await cold.goto(BASE + '/#/runs/' + big.id);
  await cold.locator(`main[data-rendered="${big.id}"]`).waitFor();
  const wall = Date.now() - t0;
  const mark = await cold.evaluate(() => {
    const m = performance.getEntriesByName('runsd:run-rendered')[0];
    return m ? Math.round(m.startTime) : null;
  });
  await cold.locator('#timeline-info', { hasText: /^1\d{4} events/ }).waitFor({ timeout: 60000 });
  const replay = await cold.evaluate(() => Math.round(performance.now()));
  const items50 = await cold.locator('#items tbody tr[data-seq]').count();
  assert(items50 === 50, 'the first page of items: ' + items50);
  await cold.getByRole('button', { name: 'Next →' }).click();
  await cold.locator('#items tbody tr[data-seq="51"]').waitFor();
  await cold.getByText('Page 2 of 200 (10000 items)').waitFor();
  // Generous bounds for a loaded CI machine; the figures themselves go into the report.
  assert(mark !== null && mark < 5000, 'a run of 10,000 items drawn within 5 s: ' + mark);
  assert(firstLoad.fileBytes < 80000, 'the page\'s files under 80 KB on the wire: ' + firstLoad.fileBytes);

  assert(problems.length === 0, 'no page error or console error: ' + problems.join(' | '));
  out({ kind: 'ok', shots, restartRows, weight: firstLoad, bigRun: { firstRenderMs: mark, wallMs: wall, replayDoneMs: replay },
    a11yNotes });
  await browser.close();
  process.exit(0);
} catch (err) {
  if (page) await page.screenshot({ path: path.join(ART, 'failure.png'), fullPage: true }).catch(() => {});
  out({ kind: 'fail', error: String(err && err.stack || err), problems });
  await browser.close().catch(() => {});
  process.exit(1);
}
