// overview.mjs: the daemon's own figures from GET /metrics (Prometheus text): active runs per
// flow and status, runs finished since it started, queue depth, running workers, stream
// subscribers, webhook deliveries (the backlog still to deliver, the attempts in flight and
// retried). Read every 3 s, and sooner after events (at most once a second), so the page
// follows the daemon without a second source of truth.
import { h, fill, throttle, scrollBox } from './dom.mjs';

const ACTIVE = ['queued', 'running', 'auth_required', 'paused', 'cancelling'];
const DONE = ['succeeded', 'incomplete', 'failed', 'crashed', 'cancelled'];

/** Prometheus text into [{name, labels, value}] (the subset the daemon writes). */
export function parseMetrics(text) {
  const out = [];
  for (const line of text.split('\n')) {
    if (!line || line[0] === '#') continue;
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const labels = {};
    for (const l of (m[2] || '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2].replace(/\\(.)/g, '$1');
    out.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return out;
}

function sum(ms, name, where = () => true) {
  return ms.filter((x) => x.name === name && where(x.labels)).reduce((a, x) => a + x.value, 0);
}

export function overviewView(app, main) {
  const tiles = h('dl', { class: 'tiles', id: 'tiles' });
  const table = scrollBox('Runs per flow and status table');
  const stamp = h('p', { class: 'muted small', 'aria-live': 'off' });
  fill(main, h('h1', {}, 'Overview'), tiles, h('h2', {}, 'Runs per flow and status'),
    h('p', { class: 'muted small' }, 'Active runs now; finished runs since the daemon started.'), table, stamp);

  const load = throttle(async () => {
    let ms;
    try {
      ms = parseMetrics(await app.text('/metrics'));
    } catch (err) {
      if (err.status === 401) return app.unauthorized();
      fill(stamp, 'Metrics unavailable: ' + err.message);
      return;
    }
    const tile = (k, v, id) => h('div', {}, h('dt', {}, k), h('dd', { id }, String(v)));
    fill(tiles,
      tile('Queue depth', sum(ms, 'runsd_runs_queued'), 't-queued'),
      tile('Running workers', sum(ms, 'runsd_runs_running'), 't-running'),
      tile('Waiting for a person', sum(ms, 'runsd_runs_waiting_for_person'), 't-waiting'),
      tile('Stream subscribers', sum(ms, 'runsd_sse_subscribers'), 't-subscribers'),
      tile('Webhook backlog', sum(ms, 'runsd_webhook_backlog'), 't-backlog'),
      tile('Webhooks in flight', sum(ms, 'runsd_webhook_in_flight'), 't-webhooks'),
      tile('Webhook retries', sum(ms, 'runsd_webhook_outcomes_total', (l) => l.outcome === 'retry'), 't-retries'),
      tile('Runs created', sum(ms, 'runsd_runs_created_total'), 't-created'));
    const flows = [...new Set(ms.filter((x) => x.name === 'runsd_runs' || x.name === 'runsd_runs_finished_total')
      .map((x) => x.labels.flow))].sort();
    const cols = [...ACTIVE, ...DONE];
    const cell = (flow, st) => ACTIVE.includes(st)
      ? sum(ms, 'runsd_runs', (l) => l.flow === flow && l.status === st)
      : sum(ms, 'runsd_runs_finished_total', (l) => l.flow === flow && l.status === st);
    fill(table, h('table', { class: 'overview', id: 'per-flow' },
      h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Flow'), cols.map((c) => h('th', { scope: 'col' }, c.replace('_', ' '))))),
      h('tbody', {}, flows.map((f) => h('tr', { dataset: { flow: f } }, h('th', { scope: 'row' },
        h('a', { href: '#/?flow=' + encodeURIComponent(f) }, f)),
      cols.map((c) => { const n = cell(f, c); return h('td', { class: 'num' + (n ? '' : ' zero'), dataset: { status: c } }, String(n)); }))))));
    fill(stamp, 'Updated ' + new Date().toLocaleTimeString());
  }, 1000);

  const stop = app.subscribe(() => load());
  const stopRe = app.onReconnect(() => load());
  const poll = setInterval(() => load(), 3000);
  load.now();
  return { dispose() { stop(); stopRe(); clearInterval(poll); load.cancel(); } };
}
