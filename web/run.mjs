// run.mjs: one run's page. The first render comes from two plain reads (the run, and the
// first page of its items), so a run with ten thousand items shows at once; then the run's
// own event stream (GET /v1/runs/{id}/events, from its first event, resumed with
// Last-Event-ID after a drop) fills the timeline and triggers fresh reads of what changed.
// The timeline is keyed by event id: an event already shown is never shown twice.
import { RunsdError, TERMINAL } from '/v1/client.js';
import { h, fill, badge, waitingMarker, timeEl, throttle, part } from './dom.mjs';
import { pendingPart, actionsPart, progressPart, summaryPart, outcomePart, itemsSection,
  deliveriesSection, eventText } from './run_parts.mjs';

const MAX_ROWS = 500; // timeline rows kept in the page; older ones are summarised

export function runView(app, main, id) {
  const v = { app, id, run: null, disposed: false };
  const title = h('h1', {}, 'Run ', h('span', { class: 'mono' }, id));
  const head = h('p', { class: 'runhead' });
  const pendingEl = h('section', { class: 'pending', 'aria-live': 'polite' });
  const actionsEl = h('section', { class: 'actions', 'aria-label': 'Actions' });
  const progressEl = h('section', { 'aria-labelledby': 'h-progress' });
  const summaryEl = h('section', { 'aria-labelledby': 'h-summary' });
  const outcomeEl = h('section', { 'aria-label': 'Result' });
  const items = itemsSection(v);
  const deliveries = deliveriesSection(v);
  // The timeline scrolls in its box: focusable, so the keyboard scrolls it too.
  const tl = h('ol', { class: 'timeline', id: 'timeline', tabindex: 0, 'aria-labelledby': 'h-timeline',
    dataset: { count: '0' } });
  const tlInfo = h('p', { class: 'muted small', id: 'timeline-info' });
  const live = h('span', { class: 'muted small', role: 'status' });
  fill(main, h('p', {}, h('a', { href: '#/' }, '← All runs')), title, head, pendingEl, actionsEl,
    h('div', { class: 'cols' }, progressEl, summaryEl), outcomeEl, items.el,
    h('section', { 'aria-labelledby': 'h-timeline' },
      h('h2', { id: 'h-timeline' }, 'Timeline ', live), tlInfo, tl),
    deliveries.el);

  const parts = { pending: part(pendingEl), actions: part(actionsEl), progress: part(progressEl),
    summary: part(summaryEl), outcome: part(outcomeEl) };

  function render(run) {
    v.run = run;
    document.title = `${run.status} · ${run.flow} · runsd`;
    fill(head, h('span', { class: 'flow' }, run.flow), ' ', badge(run.status), ' ', waitingMarker(run.status),
      run.termination_reason ? h('span', { class: 'muted' }, ' ' + run.termination_reason) : null,
      h('span', { class: 'muted small' }, ' created ', timeEl(run.created_at)));
    parts.pending(JSON.stringify([run.status, run.pending_action]), () => pendingPart(v, run));
    parts.actions(JSON.stringify([run.status, run.termination_reason, run.preview, app.flows.length]), () => actionsPart(v, run));
    parts.progress(JSON.stringify([run.progress, run.steps]), () => progressPart(run));
    parts.summary(JSON.stringify([run.counts, run.metrics, run.attempt, run.enrichments]), () => summaryPart(run));
    parts.outcome(JSON.stringify([run.result, run.error]), () => outcomePart(run));
    // A run's stream ends after run.end; an extend or an enrichment makes the run active
    // again, and its new events are read from where the ended stream stopped.
    if (watch && watch.closed && !v.disposed && (run.is_active || !TERMINAL.includes(run.status))) startWatch();
    // An enrichment attaches data to items already shown: reload the table when one's state
    // moves, and while one runs with no stream open (it can start and finish between two
    // reads of the run), read the run again until it is done.
    const ek = JSON.stringify(run.enrichments || []);
    if (ek !== enrichKey) { enrichKey = ek; items.changed(); }
    if ((!watch || watch.closed) && !v.disposed &&
        (run.enrichments || []).some((e) => e.status === 'running')) setTimeout(() => v.refresh(), 1000);
  }
  let enrichKey = null;

  v.refresh = throttle(async () => {
    if (v.disposed) return;
    try {
      render(await app.rd.getRun(id));
    } catch (err) {
      if (err instanceof RunsdError && err.status === 401) return app.unauthorized();
      if (err instanceof RunsdError && err.status === 404) {
        fill(main, h('h1', {}, 'No such run'), h('p', {}, 'There is no run ', h('code', {}, id), '.'),
          h('p', {}, h('a', { href: '#/' }, 'All runs')));
        v.dispose();
        return;
      }
      throw err;
    }
  }, 300);

  // Timeline: events arrive in bursts (a replay of thousands); they are drawn once per frame.
  const shown = new Set();
  let queue = [], total = 0, drawing = false;
  function draw() {
    drawing = false;
    const batch = queue.slice(-MAX_ROWS);
    queue = [];
    const frag = document.createDocumentFragment();
    for (const ev of batch) {
      frag.append(h('li', { dataset: { id: String(ev.id), type: ev.type } },
        h('time', { datetime: ev.timestamp, title: ev.timestamp }, ev.timestamp.slice(11, 19)), ' ',
        h('span', { class: 'etype' }, ev.type), ' ', h('span', { class: 'etext' }, eventText(ev))));
    }
    tl.append(frag);
    while (tl.childElementCount > MAX_ROWS) tl.firstElementChild.remove();
    tl.dataset.count = String(total);
    fill(tlInfo, total > MAX_ROWS ? `${total} events; the last ${MAX_ROWS} are shown.` : `${total} events.`);
  }
  function onEvent(ev) {
    if (shown.has(ev.id)) return; // never twice, whatever the stream does
    shown.add(ev.id);
    lastId = Math.max(lastId, ev.id);
    total++;
    queue.push(ev);
    if (!drawing) { drawing = true; requestAnimationFrame(draw); }
    if (ev.type === 'run.item' || ev.type === 'run.item_error' || ev.type === 'run.item_enriched') items.changed();
    else if (ev.type === 'run.end') { render(ev.data.run); deliveries.refreshSoon(); }
    else v.refresh();
    if (ev.type === 'run.status') deliveries.refreshSoon();
  }

  let watch = null, lastId = 0;
  function startWatch() {
    watch = app.rd.watch(id, lastId ? { lastEventId: lastId } : {});
    watch.on('*', onEvent);
    watch.on('open', () => { fill(live, '(live)'); v.refresh(); });
    watch.on('retry', () => fill(live, '(reconnecting…)'));
    // The stream ends at run.end, also a replayed one while the run is active again (an
    // extend or an enrichment started while the page was catching up): read the run, and
    // render() opens the stream again after the last event if so.
    watch.on('end', () => { fill(live, '(ended)'); v.refresh(); });
    watch.on('error', (err) => {
      if (err.status === 401) app.unauthorized();
      else fill(live, '(stream stopped: ' + err.code + ')');
    });
  }

  v.changed = () => { items.changed(); deliveries.refreshSoon(); };

  v.dispose = () => {
    v.disposed = true;
    if (watch) watch.close();
    v.refresh.cancel();
    items.dispose();
    deliveries.dispose();
  };

  (async () => {
    await Promise.all([v.refresh.now(), items.load()]);
    if (v.disposed) return;
    performance.mark('runsd:run-rendered');
    main.dataset.rendered = id;
    startWatch();
    deliveries.load();
  })();
  return v;
}
