// run_parts.mjs: the sections of a run's page (run.mjs): what a person is asked, the
// buttons, progress and steps, figures, the result, the items, webhook deliveries, and one
// line of text per event for the timeline. Everything from the run is written as text.
import { h, fill, pre, ms, kib, throttle, scrollBox } from './dom.mjs';
import { jsonField, flowSelect } from './forms.mjs';

const ACTIVE = ['queued', 'running', 'auth_required', 'paused'];
const ENRICHABLE = ['running', 'auth_required', 'paused', 'succeeded', 'incomplete'];

function message() { return h('p', { class: 'msg', role: 'status' }); }

/** Runs an action of a button: disables it meanwhile, shows an error next to it. */
async function act(v, btn, msg, fn) {
  btn.disabled = true;
  fill(msg);
  try {
    await fn();
    v.refresh.now();
    v.changed(); // an enrichment may be over before the run's stream opens again
  } catch (err) {
    msg.className = 'msg err';
    fill(msg, err.message || String(err));
    if (err.status === 401) v.app.unauthorized();
  } finally {
    btn.disabled = false;
  }
}

export function pendingPart(v, run) {
  const pa = run.pending_action;
  if (!pa || !['paused', 'auth_required'].includes(run.status)) return null;
  const msg = message();
  if (pa.type === 'approval') {
    const comment = h('input', { id: 'approval-comment', type: 'text', autocomplete: 'off' });
    const approve = h('button', { type: 'button', class: 'primary', 'data-focus': 'approve' }, 'Approve');
    const deny = h('button', { type: 'button', class: 'danger', 'data-focus': 'deny' }, 'Deny');
    const answer = (yes, btn) => act(v, btn, msg, () => {
      const opts = comment.value ? { comment: comment.value } : {};
      return yes ? v.app.rd.approve(run, opts) : v.app.rd.deny(run, opts);
    });
    approve.addEventListener('click', () => answer(true, approve));
    deny.addEventListener('click', () => answer(false, deny));
    return h('div', { class: 'ask', role: 'region', 'aria-labelledby': 'h-ask' },
      h('h2', { id: 'h-ask' }, 'Waiting for your approval'),
      h('p', { class: 'prompt', id: 'approval-prompt' }, pa.prompt || '(no prompt)'),
      pa.details ? [h('h3', {}, 'Details'), pre(pa.details, 'json details')] : null,
      h('div', { class: 'field' }, h('label', { for: 'approval-comment' }, 'Comment (optional)'), comment),
      h('div', { class: 'buttons' }, approve, deny),
      pa.expires_at ? h('p', { class: 'muted small' }, 'Expires ' + pa.expires_at) : null,
      msg);
  }
  return h('div', { class: 'ask', role: 'region', 'aria-labelledby': 'h-ask' },
    h('h2', { id: 'h-ask' }, 'Waiting for an authorization'),
    h('p', { class: 'prompt' }, 'The worker asks to be authorized', pa.provider ? ' at ' + pa.provider : '', '.'),
    pa.auth_url
      ? h('p', {}, h('a', { class: 'button primary', id: 'auth-link', href: pa.auth_url, target: '_blank',
        rel: 'noopener noreferrer' }, 'Authorize', pa.provider ? ' at ' + pa.provider : '', ' (opens a new tab)'))
      : h('p', { class: 'muted' }, 'Your key cannot see the authorization link (a read key): someone with a write key, or the run’s stream link, can.'),
    pa.expires_at ? h('p', { class: 'muted small' }, 'Expires ' + pa.expires_at) : null);
}

export function actionsPart(v, run) {
  const out = [];
  const msg = message();
  if (ACTIVE.includes(run.status) || run.status === 'created') {
    const b = h('button', { type: 'button', class: 'danger', 'data-focus': 'cancel' }, 'Cancel run');
    b.addEventListener('click', () => act(v, b, msg, () => v.app.rd.cancel(run.id)));
    out.push(b);
  }
  if (run.status === 'created') {
    const b = h('button', { type: 'button', 'data-focus': 'start' }, 'Start');
    b.addEventListener('click', () => act(v, b, msg, () => v.app.rd.start(run.id)));
    out.push(b);
  }
  if (run.status === 'succeeded' && run.termination_reason === 'match_limit_met' && !run.preview) {
    const n = h('input', { id: 'extend-by', type: 'number', min: 1, value: 10, required: true, class: 'short' });
    const b = h('button', { type: 'submit', 'data-focus': 'extend' }, 'Extend');
    out.push(h('form', { class: 'inline', onsubmit: (e) => {
      e.preventDefault();
      act(v, b, msg, () => v.app.rd.extend(run.id, Number(n.value)));
    } }, h('label', { for: 'extend-by' }, 'More items'), n, b));
  }
  if (ENRICHABLE.includes(run.status)) out.push(enrichForm(v, run, msg));
  if (!out.length) return null;
  return [h('div', { class: 'buttons' }, out), msg];
}

function enrichForm(v, run, msg) {
  const sel = flowSelect(v.app, 'enrich-flow', null);
  const input = jsonField('enrich-input', 'Input (JSON, optional)', '', sel);
  const b = h('button', { type: 'submit', 'data-focus': 'enrich' }, 'Enrich');
  return h('details', { class: 'enrich' }, h('summary', {}, 'Enrich the items…'),
    h('form', { onsubmit: (e) => {
      e.preventDefault();
      const value = input.parse();
      if (value === undefined) return;
      act(v, b, msg, async () => {
        try {
          await v.app.rd.request('POST', `/v1/runs/${encodeURIComponent(run.id)}/enrich`,
            { body: value === null ? { flow: sel.value } : { flow: sel.value, input: value } });
        } catch (err) {
          if (err.code === 'invalid_input') { input.error(err.message); return; }
          throw err;
        }
      });
    } }, h('div', { class: 'field' }, h('label', { for: 'enrich-flow' }, 'Enrichment flow'), sel), input.el, b));
}

export function progressPart(run) {
  const p = run.progress;
  const steps = run.steps || [];
  return [h('h2', { id: 'h-progress' }, 'Progress'),
    p && p.total ? h('p', {}, h('progress', { value: p.done, max: p.total, id: 'run-progress', 'aria-label': 'Progress' }),
      ` ${p.done} of ${p.total}`) : p ? h('p', {}, `${p.done} done`) : h('p', { class: 'muted' }, 'No progress reported.'),
    p && p.message ? h('p', { class: 'muted' }, p.message) : null,
    steps.length ? h('ol', { class: 'steps', 'aria-label': 'Steps' }, steps.map((s) =>
      h('li', { class: 'step-' + s.state }, s.name, ' ', h('span', { class: 'muted small' }, s.state)))) : null];
}

export function summaryPart(run) {
  const c = run.counts || {}, m = run.metrics || {};
  const dl = (pairs) => h('dl', { class: 'figures' }, pairs.map(([k, val]) => h('div', {}, h('dt', {}, k), h('dd', {}, String(val)))));
  const en = run.enrichments || [];
  return [h('h2', { id: 'h-summary' }, 'Figures'), dl([
    ['Items', c.items ?? 0], ['Item errors', c.item_errors ?? 0], ['Evaluated', c.evaluated ?? 0],
    ['Matched', c.matched ?? 0], ['Attempt', run.attempt ?? 0], ['Limit', run.limit ?? 'none'],
    ['Duration', ms(m.duration_ms)], ['Worker CPU', ms((m.cpu_user_ms || 0) + (m.cpu_sys_ms || 0))],
    ['Peak memory', kib(m.peak_rss_kb)]]),
  en.length ? h('ul', { class: 'enrichments', 'aria-label': 'Enrichments' }, en.map((e) =>
    h('li', {}, `Enriched by ${e.flow}: ${e.status}, ${e.enriched ?? 0} items`))) : null];
}

export function outcomePart(run) {
  if (run.result === null && !run.error) return null;
  return [run.error ? h('div', { class: 'error-box', role: 'alert' }, h('h2', {}, 'Error'),
    h('p', {}, run.error.message || JSON.stringify(run.error))) : null,
  run.result !== null && run.result !== undefined ? [h('h2', {}, 'Result'), pre(run.result)] : null];
}

/** The items table with paging (50 a page) and each item's enrichments. */
export function itemsSection(v) {
  const PAGE = 50;
  let page = 1, pages = 1;
  const tbody = h('tbody');
  const info = h('span', { class: 'muted' });
  const prev = h('button', { type: 'button', onclick: () => { page--; load(); } }, '← Previous');
  const next = h('button', { type: 'button', onclick: () => { page++; load(); } }, 'Next →');
  const el = h('section', { 'aria-labelledby': 'h-items' }, h('h2', { id: 'h-items' }, 'Items'),
    scrollBox('Items table', h('table', { class: 'items', id: 'items' },
      h('thead', {}, h('tr', {}, ['#', 'Status', 'Data', 'Enrichments'].map((t) => h('th', { scope: 'col' }, t)))),
      tbody)),
    h('nav', { class: 'pager', 'aria-label': 'Pages of items' }, prev, info, next));
  async function load() {
    const res = await v.app.rd.results(v.id, { page, page_size: PAGE });
    pages = Math.max(1, Math.ceil(res.total / PAGE));
    fill(info, `Page ${res.page} of ${pages} (${res.total} items)`);
    prev.disabled = page <= 1;
    next.disabled = !res.has_more;
    fill(tbody, res.items.length ? res.items.map((it) => h('tr', { dataset: { seq: String(it.seq) } },
      h('td', { class: 'num' }, String(it.seq)),
      h('td', {}, h('span', { class: 'badge ' + (it.status === 'error' ? 's-failed' : 's-succeeded') }, it.status)),
      h('td', {}, it.error ? h('p', { class: 'err' }, typeof it.error === 'string' ? it.error : JSON.stringify(it.error)) : null,
        h('code', { class: 'data' }, JSON.stringify(it.data))),
      h('td', {}, enrichCell(it.enrichments))))
      : h('tr', {}, h('td', { colspan: 4, class: 'muted' }, 'No items yet.')));
  }
  // New items matter to this page only while it is the last one, or its numbers change.
  const reload = throttle(load, 700);
  return { el, load, changed: () => reload(), dispose: () => reload.cancel() };
}

/** An item's enrichments: {flow: data} (docs/api.md), one line each. */
function enrichCell(en) {
  const entries = en && typeof en === 'object' ? Object.entries(en) : [];
  if (!entries.length) return h('span', { class: 'muted' }, '–');
  return entries.map(([flow, data]) => h('code', { class: 'data' }, `${flow}: ${JSON.stringify(data)}`));
}

/** Webhook deliveries of the run, each with its attempts and a redeliver button. */
export function deliveriesSection(v) {
  const body = h('div');
  const msg = message();
  const refresh = h('button', { type: 'button', onclick: () => load() }, 'Refresh');
  const el = h('section', { 'aria-labelledby': 'h-dlv' }, h('h2', { id: 'h-dlv' }, 'Webhook deliveries'), body, refresh, msg);
  async function load() {
    let res;
    try {
      res = await v.app.rd.request('GET', `/v1/runs/${encodeURIComponent(v.id)}/deliveries`);
    } catch (err) {
      fill(body, h('p', { class: 'muted' }, 'Not available: ' + err.message));
      return;
    }
    if (!res.items.length) { fill(body, h('p', { class: 'muted' }, 'No webhook deliveries.')); return; }
    fill(body, scrollBox('Webhook deliveries table', h('table', { class: 'deliveries' },
      h('thead', {}, h('tr', {}, ['Type', 'Endpoint', 'Status', 'Attempts', 'Last answer', ''].map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, res.items.map((d) => {
        const b = h('button', { type: 'button' }, 'Redeliver');
        b.addEventListener('click', () => act(v, b, msg, async () => {
          await v.app.rd.request('POST', `/v1/runs/${encodeURIComponent(v.id)}/deliveries/${encodeURIComponent(d.id)}/redeliver`, { body: {} });
          setTimeout(load, 500);
        }));
        return h('tr', { dataset: { delivery: d.id } }, h('td', {}, d.type), h('td', { class: 'mono small' }, d.endpoint, ': ', d.url || ''),
          h('td', {}, d.status), h('td', { class: 'num' }, String(d.attempt_count)),
          h('td', {}, d.last_status_code ? String(d.last_status_code) : '', d.last_error ? ' ' + d.last_error : ''), h('td', {}, b));
      })))));
  }
  const soon = throttle(load, 1500);
  return { el, load, refreshSoon: () => soon(), dispose: () => soon.cancel() };
}

/** One line of text for an event of the timeline. */
export function eventText(ev) {
  const d = ev.data || {};
  const clip = (s) => (s.length > 160 ? s.slice(0, 159) + '…' : s);
  switch (ev.type) {
    case 'run.created': return 'created';
    case 'run.status': return `${d.previous || '?'} → ${d.status}${d.termination_reason ? ' (' + d.termination_reason + ')' : ''}`;
    case 'run.step': return `step ${d.name} ${d.state}`;
    case 'run.progress': return `${d.done}${d.total ? '/' + d.total : ''}${d.message ? ' ' + d.message : ''}`;
    case 'run.log': return `[${d.level}] ${clip(String(d.message))}`;
    case 'run.item': return `#${d.seq} ${clip(JSON.stringify(d.data))}`;
    case 'run.item_error': return clip(`${d.error || ''} ${d.data ? JSON.stringify(d.data) : ''}`);
    case 'run.item_enriched': return `#${d.seq} by ${d.flow}: ${clip(JSON.stringify(d.data))}`;
    case 'run.approval_required': return clip('asks: ' + (d.prompt || ''));
    case 'run.auth_required': return 'asks for an authorization' + (d.provider ? ' at ' + d.provider : '');
    case 'run.result': return clip(JSON.stringify(d.data));
    case 'run.end': return d.run ? `${d.run.status}${d.run.termination_reason ? ' (' + d.run.termination_reason + ')' : ''}` : 'end';
    default: return clip(JSON.stringify(d));
  }
}
