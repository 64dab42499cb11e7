// list.mjs: the runs, newest first, a page at a time, filtered by status and flow, kept
// live from the global event stream: an event of any run fetches the page again (at most
// twice a second), so the rows always show what the daemon says, never a guess.
import { TERMINAL } from '/v1/client.js';
import { h, fill, badge, waitingMarker, timeEl, tickTimes, throttle, scrollBox } from './dom.mjs';

export const STATUSES = ['created', 'queued', 'running', 'auth_required', 'paused', 'cancelling',
  'succeeded', 'incomplete', 'failed', 'crashed', 'cancelled'];
const PAGE_SIZE = 20;

export function listView(app, main, q) {
  const state = { status: q.get('status') || '', flow: q.get('flow') || '', page: Number(q.get('page')) || 1 };
  const count = h('p', { class: 'muted', id: 'runs-count', 'aria-live': 'polite' });
  const tbody = h('tbody');
  const status = h('select', { id: 'f-status', name: 'status' },
    h('option', { value: '' }, 'any status'), STATUSES.map((s) => h('option', { value: s }, s)));
  const flow = h('select', { id: 'f-flow', name: 'flow' },
    h('option', { value: '' }, 'any flow'), app.flows.map((f) => h('option', { value: f.name }, f.name)));
  status.value = state.status;
  flow.value = state.flow;
  const prev = h('button', { type: 'button', onclick: () => go(state.page - 1) }, '← Newer');
  const next = h('button', { type: 'button', onclick: () => go(state.page + 1) }, 'Older →');
  const pageInfo = h('span', { class: 'muted' });

  const onFilter = () => { state.status = status.value; state.flow = flow.value; go(1); };
  status.addEventListener('change', onFilter);
  flow.addEventListener('change', onFilter);

  fill(main,
    h('div', { class: 'titlebar' }, h('h1', {}, 'Runs'), h('a', { class: 'button', href: '#/new' }, 'New run')),
    h('form', { class: 'filters', role: 'search', 'aria-label': 'Filter runs', onsubmit: (e) => e.preventDefault() },
      h('label', { for: 'f-status' }, 'Status'), status,
      h('label', { for: 'f-flow' }, 'Flow'), flow),
    count,
    scrollBox('Runs table',
      h('table', { class: 'runs' },
        h('caption', { class: 'sr-only' }, 'Runs, newest first'),
        h('thead', {}, h('tr', {}, ['Run', 'Flow', 'Status', 'Progress', 'Items', 'Age'].map((t) => h('th', { scope: 'col' }, t)))),
        tbody)),
    h('nav', { class: 'pager', 'aria-label': 'Pages of runs' }, prev, pageInfo, next));

  function go(page) {
    state.page = Math.max(1, page);
    const p = new URLSearchParams();
    if (state.status) p.set('status', state.status);
    if (state.flow) p.set('flow', state.flow);
    if (state.page > 1) p.set('page', state.page);
    const s = p.toString();
    history.replaceState(null, '', '#/' + (s ? '?' + s : ''));
    refresh.now();
  }

  const refresh = throttle(async () => {
    let res;
    try {
      res = await app.rd.listRuns({ status: state.status || undefined, flow: state.flow || undefined,
        page: state.page, page_size: PAGE_SIZE });
    } catch (err) {
      if (err.status === 401) return app.unauthorized();
      throw err;
    }
    const pages = Math.max(1, Math.ceil(res.total / PAGE_SIZE));
    fill(count, res.total === 1 ? '1 run' : res.total + ' runs');
    fill(pageInfo, `Page ${res.page} of ${pages}`);
    prev.disabled = res.page <= 1;
    next.disabled = !res.has_more;
    fill(tbody, res.items.length ? res.items.map(row)
      : h('tr', {}, h('td', { colspan: 6, class: 'muted' }, 'No runs match.')));
  }, 500);

  const stop = app.subscribe(() => refresh());
  const stopRe = app.onReconnect(() => refresh.now());
  const ticker = setInterval(() => tickTimes(tbody), 5000);
  refresh.now();
  return { dispose() { stop(); stopRe(); clearInterval(ticker); refresh.cancel(); } };
}

function row(r) {
  return h('tr', { dataset: { runId: r.id, status: r.status } },
    h('th', { scope: 'row' }, h('a', { href: '#/runs/' + r.id, class: 'mono' }, r.id)),
    h('td', { 'data-label': 'Flow' }, r.flow),
    h('td', { 'data-label': 'Status' }, badge(r.status), ' ', waitingMarker(r.status),
      r.termination_reason && TERMINAL.includes(r.status) ? h('span', { class: 'muted small' }, ' ' + r.termination_reason) : null),
    h('td', { 'data-label': 'Progress' }, progressCell(r)),
    h('td', { class: 'num', 'data-label': 'Items' }, String(r.counts ? r.counts.items : 0),
      r.counts && r.counts.item_errors ? h('span', { class: 'err small' }, ` (${r.counts.item_errors} failed)`) : null),
    h('td', { 'data-label': 'Age' }, timeEl(r.created_at)));
}

export function progressCell(r) {
  const p = r.progress;
  if (p && p.total) {
    return [h('progress', { value: p.done, max: p.total, 'aria-label': `Progress of ${r.id}` }), ` ${p.done}/${p.total}`];
  }
  if (p && p.done !== undefined) return `${p.done} done`;
  if (r.steps && r.steps.length) return `step ${r.steps_finished}/${r.steps.length}`;
  return '–';
}
