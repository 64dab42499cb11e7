// runsd.mjs: a small client of the runsd HTTP API, as an ES module with no dependencies.
// It runs in browsers and in Node.js 18 or later: it needs only fetch, URL, TextDecoder,
// AbortController and ReadableStream. The daemon serves this very file at /v1/client.js.
//
// Event streams are read with fetch, not EventSource: Node.js has no EventSource, and an
// EventSource cannot send an API key. The reader follows the SSE format (WHATWG HTML 9.2),
// keeps the id of the last event it delivered, and reconnects after a dropped connection
// with Last-Event-ID and a growing, jittered delay, so a watcher sees every event once, in
// order, across disconnects and daemon restarts. See docs/clients.md.
//
//   import { Runsd } from './runsd.mjs';
//   const rd = new Runsd({ baseUrl: 'http://127.0.0.1:8080', apiKey: 'KEY' });
//   const run = await rd.createRun({ flow: 'pkgsearch', input: { query: 'ssl' } });
//   const w = rd.watch(run.id).on('run.item', (ev) => console.log(ev.data.data));
//   const final = await w.done;                      // the run object of run.end
//   for await (const ev of rd.watch(run.id)) ...     // or every event as an async iterator

/** The event types of a run (contract section 4). */
export const EVENT_TYPES = Object.freeze([
  'run.created', 'run.status', 'run.step', 'run.progress', 'run.log', 'run.item',
  'run.item_error', 'run.item_enriched', 'run.auth_required', 'run.approval_required',
  'run.result', 'run.end',
]);

/** Statuses after which a run does not change (contract section 1). */
export const TERMINAL = Object.freeze(['succeeded', 'incomplete', 'failed', 'crashed', 'cancelled']);
/** Statuses in which a run waits for a person. */
export const WAITING = Object.freeze(['paused', 'auth_required']);

/** An error answer of the API: `code` is its stable code (docs/api.md), `status` the HTTP status. */
export class RunsdError extends Error {
  constructor(status, code, message, requestId) {
    super(`${status} ${code}: ${message}`);
    this.name = 'RunsdError';
    this.status = status;
    this.code = code;
    this.requestId = requestId;
  }
}

const sleep = (ms, signal) => new Promise((resolve) => {
  if (signal && signal.aborted) return resolve();
  const t = setTimeout(done, ms);
  function done() {
    clearTimeout(t);
    if (signal) signal.removeEventListener('abort', done);
    resolve();
  }
  if (signal) signal.addEventListener('abort', done, { once: true });
});

async function errorOf(res) {
  let code = 'http_' + res.status, message = res.statusText || 'error', requestId;
  try {
    const body = await res.json();
    if (body && body.error) ({ code, message, request_id: requestId } = body.error);
  } catch { /* not JSON: keep the status */ }
  return new RunsdError(res.status, code, message, requestId || res.headers.get('x-request-id'));
}

/** The client. Options: baseUrl (default: the page's origin), apiKey (sent as
 * Authorization: Bearer), fetch (an implementation to use), backoff ({initialMs, maxMs}). */
export class Runsd {
  constructor({ baseUrl = '', apiKey = null, fetch: f = null, backoff = {} } = {}) {
    this.baseUrl = String(baseUrl).replace(/\/+$/, '');
    this.apiKey = apiKey;
    this.fetch = f || globalThis.fetch.bind(globalThis);
    this.backoff = { initialMs: 250, maxMs: 30000, ...backoff };
  }

  url(path, query) {
    const base = this.baseUrl || (globalThis.location ? globalThis.location.origin : '');
    const u = new URL(path, base + '/');
    for (const [k, v] of Object.entries(query || {})) {
      if (v !== undefined && v !== null) u.searchParams.set(k, Array.isArray(v) ? v.join(',') : String(v));
    }
    return u;
  }

  headers(extra) {
    const h = { Accept: 'application/json', ...extra };
    if (this.apiKey) h.Authorization = 'Bearer ' + this.apiKey;
    return h;
  }

  /** One JSON request: the parsed body, or a RunsdError. */
  async request(method, path, { query, body, headers, signal } = {}) {
    const init = { method, headers: this.headers(headers), signal };
    if (body !== undefined) {
      init.body = JSON.stringify(body);
      init.headers['Content-Type'] = 'application/json';
    }
    const res = await this.fetch(this.url(path, query), init);
    if (!res.ok) throw await errorOf(res);
    return res.status === 204 ? null : res.json();
  }

  createRun(body, { idempotencyKey } = {}) {
    return this.request('POST', '/v1/runs', {
      body, headers: idempotencyKey ? { 'Idempotency-Key': idempotencyKey } : {},
    });
  }
  getRun(id, opts = {}) { return this.request('GET', `/v1/runs/${enc(id)}`, opts); }
  listRuns(query = {}) { return this.request('GET', '/v1/runs', { query }); }
  results(id, query = {}) { return this.request('GET', `/v1/runs/${enc(id)}/results`, { query }); }
  cancel(id) { return this.request('POST', `/v1/runs/${enc(id)}/cancel`, { body: {} }); }
  start(id) { return this.request('POST', `/v1/runs/${enc(id)}/start`, { body: {} }); }
  extend(id, additionalLimit) {
    return this.request('POST', `/v1/runs/${enc(id)}/extend`, { body: { additional_limit: additionalLimit } });
  }
  flows() { return this.request('GET', '/v1/flows'); }

  /** Resolves with the run once it is settled: terminal or waiting for a person (or, with
   * {terminal: true}, only terminal). Uses the daemon's ?wait= (at most 60 s a request);
   * timeout (seconds) bounds the whole wait, after which the run is returned as it is. */
  async waitForRun(id, { timeout = 60, terminal = false, signal } = {}) {
    const deadline = Date.now() + timeout * 1000;
    for (;;) {
      const left = Math.max(0, Math.ceil((deadline - Date.now()) / 1000));
      const run = await this.getRun(id, { query: { wait: Math.min(left, 60) }, signal });
      const done = TERMINAL.includes(run.status) || (!terminal && WAITING.includes(run.status));
      if (done || left === 0 || (signal && signal.aborted)) return run;
      if (WAITING.includes(run.status)) await sleep(Math.min(1000, left * 1000), signal);
    }
  }

  /** Approves a paused run: run is the run object (or its id). With the run's approve_url
   * (shown to write keys, and to everyone when no keys are configured) its token answers;
   * without it, POST /v1/runs/{id}/approve with this client's key. */
  approve(run, { comment } = {}) { return this.answer(run, true, comment); }
  /** Denies a paused run (see approve). */
  deny(run, { comment } = {}) { return this.answer(run, false, comment); }

  async answer(run, approve, comment) {
    if (typeof run === 'string') run = await this.getRun(run);
    const pa = run.pending_action;
    const link = pa && pa.type === 'approval' ? (approve ? pa.approve_url : pa.deny_url) : null;
    const body = comment === undefined ? {} : { comment };
    if (link) {
      const token = new URL(link).searchParams.get('token');
      return this.request('POST', '/v1/runs/approval', { body: { token, ...body } });
    }
    return this.request('POST', `/v1/runs/${enc(run.id)}/${approve ? 'approve' : 'deny'}`, { body });
  }

  /** Watches the events of one run (target: a run id, a run object, or {url} such as a run's
   * stream_url) or, with target null or {all: true, flow, run, types}, of every run. Options:
   * lastEventId (resume after it), signal. Returns a Watch; nothing is fetched before the
   * next turn of the event loop, so handlers can be added first. */
  watch(target = null, opts = {}) {
    let url;
    if (target && typeof target === 'object' && target.url) url = new URL(target.url);
    else if (target && typeof target === 'object' && target.id) url = this.url(`/v1/runs/${enc(target.id)}/events`);
    else if (typeof target === 'string') url = this.url(`/v1/runs/${enc(target)}/events`);
    else {
      const f = target || {};
      url = this.url('/v1/events', { flow: f.flow, run: f.run, types: f.types });
    }
    return new Watch(this, url, opts, !url.pathname.endsWith('/v1/events'));
  }
}

const enc = encodeURIComponent;

/** A live event stream with resume. Handlers: on(type, fn) for an event type ('run.item'),
 * '*' for every event, and 'open', 'reset' (stream.reset data), 'retry' ({delay, error}),
 * 'error' (a RunsdError that ends the watch), 'end' (the final run, or null). Also an async
 * iterator of every event (`for await (const ev of watch)`) or of some types
 * (`watch.events('run.item')`). `done` resolves with the run of run.end (null for a watch of
 * every run that was closed), or rejects with the error that ended it. */
export class Watch {
  constructor(client, url, { lastEventId = null, signal } = {}, single) {
    this.client = client;
    this.url = url;
    this.single = single; // a run's stream: it ends after run.end
    this.lastEventId = lastEventId;
    this.handlers = new Map();
    this.iters = new Set();
    this.stats = { connects: 0, events: 0, duplicates: 0 };
    this.ctl = new AbortController();
    if (signal) signal.addEventListener('abort', () => this.close(), { once: true });
    this.closed = false;
    this.done = new Promise((resolve, reject) => { this.resolve = resolve; this.reject = reject; });
    this.done.catch(() => {}); // an unobserved failure is reported through 'error' too
    setTimeout(() => this.loop(), 0);
  }

  on(type, fn) {
    if (!this.handlers.has(type)) this.handlers.set(type, new Set());
    this.handlers.get(type).add(fn);
    return this;
  }

  off(type, fn) {
    const s = this.handlers.get(type);
    if (s) s.delete(fn);
    return this;
  }

  emit(type, arg) {
    for (const fn of this.handlers.get(type) || []) fn(arg);
  }

  /** Stops the watch: the connection is closed and `done` resolves with null. */
  close() {
    if (this.closed) return;
    this.closed = true;
    this.ctl.abort();
    this.finish(null);
  }

  finish(run, err) {
    this.closed = true;
    for (const it of this.iters) it.end(err);
    if (err) {
      this.emit('error', err);
      this.reject(err);
    } else {
      this.emit('end', run);
      this.resolve(run);
    }
  }

  async loop() {
    let delay = this.client.backoff.initialMs;
    while (!this.closed) {
      let res;
      try {
        const headers = this.client.headers({ Accept: 'text/event-stream' });
        if (this.url.searchParams.has('token')) delete headers.Authorization; // the link is the credential
        if (this.lastEventId !== null) headers['Last-Event-ID'] = String(this.lastEventId);
        res = await this.client.fetch(this.url, { headers, signal: this.ctl.signal, cache: 'no-store' });
        if (res.status === 204) return this.finish(await this.finalRun()); // finished, all read
        if (!res.ok) {
          const err = await errorOf(res);
          if (res.status < 500 && res.status !== 408 && res.status !== 429) return this.finish(null, err);
          throw Object.assign(err, { retryAfter: Number(res.headers.get('retry-after')) || 0 });
        }
        this.stats.connects++;
        this.emit('open', { lastEventId: this.lastEventId });
        const end = await this.read(res.body, () => { delay = this.client.backoff.initialMs; });
        if (end) return this.finish(end.data.run);
      } catch (err) {
        if (this.closed) return;
        const wait = Math.max(delay, (err.retryAfter || 0) * 1000);
        this.emit('retry', { delay: wait, error: err });
        await sleep(wait * (0.75 + Math.random() * 0.5), this.ctl.signal);
        delay = Math.min(delay * 2, this.client.backoff.maxMs);
        continue;
      }
      // The server closed the stream without run.end (a restart, a slow-reader cut): resume.
      if (!this.closed) {
        this.emit('retry', { delay, error: null });
        await sleep(delay * (0.75 + Math.random() * 0.5), this.ctl.signal);
        delay = Math.min(delay * 2, this.client.backoff.maxMs);
      }
    }
  }

  /** The run, when a run's stream answered 204 (it was read to its end before). */
  async finalRun() {
    const m = /\/v1\/runs\/([^/]+)\/events$/.exec(this.url.pathname);
    if (!m || this.url.searchParams.has('token')) return null;
    try { return await this.client.getRun(decodeURIComponent(m[1])); } catch { return null; }
  }

  /** Reads SSE frames from body until it ends; returns the run.end event of a run's stream,
   * or null when the connection ended before it. */
  async read(body, onEvent) {
    const reader = body.getReader();
    const dec = new TextDecoder();
    let buf = '', data = [], event = '', id = null;
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return null;
        buf += dec.decode(value, { stream: true });
        let nl;
        while ((nl = buf.search(/\r\n|\r|\n/)) >= 0) {
          if (buf[nl] === '\r' && nl === buf.length - 1) break; // a CR whose LF may follow
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + (buf.startsWith('\r\n', nl) ? 2 : 1));
          if (line === '') {
            const frame = { event: event || 'message', data: data.join('\n'), id };
            data = []; event = ''; id = null;
            if (frame.data === '' && frame.id === null) continue;
            const end = this.dispatch(frame, onEvent);
            if (end) return end;
            continue;
          }
          if (line[0] === ':') continue; // a heartbeat
          const c = line.indexOf(':');
          const field = c < 0 ? line : line.slice(0, c);
          const val = c < 0 ? '' : line.slice(c + (line[c + 1] === ' ' ? 2 : 1));
          if (field === 'data') data.push(val);
          else if (field === 'event') event = val;
          else if (field === 'id' && !val.includes('\0')) id = val;
        }
      }
    } finally {
      reader.cancel().catch(() => {});
    }
  }

  dispatch(frame, onEvent) {
    const fid = frame.id !== null && /^\d+$/.test(frame.id) ? Number(frame.id) : null;
    if (frame.event === 'stream.reset') {
      if (fid !== null) this.lastEventId = fid;
      this.emit('reset', JSON.parse(frame.data));
      return null;
    }
    let ev;
    try { ev = JSON.parse(frame.data); } catch { return null; }
    if (fid !== null && this.lastEventId !== null && fid <= this.lastEventId) {
      this.stats.duplicates++; // never delivered twice, but counted: the daemon sends none
      return null;
    }
    if (fid !== null) this.lastEventId = fid;
    this.stats.events++;
    onEvent();
    this.emit(frame.event, ev);
    this.emit('*', ev);
    for (const it of this.iters) it.push(ev);
    return this.single && frame.event === 'run.end' ? ev : null;
  }

  /** An async iterator of the events of the given types (all when none). */
  events(...types) {
    const want = types.length ? new Set(types.flat()) : null;
    const queue = [];
    let wake = null, ended = false, failure = null;
    const it = {
      push: (ev) => { if (!want || want.has(ev.type)) { queue.push(ev); if (wake) wake(); } },
      end: (err) => { ended = true; failure = err || null; if (wake) wake(); },
    };
    if (this.closed) ended = true;
    else this.iters.add(it);
    const self = this;
    return {
      [Symbol.asyncIterator]() { return this; },
      async next() {
        for (;;) {
          if (queue.length) return { value: queue.shift(), done: false };
          if (ended) {
            self.iters.delete(it);
            if (failure) throw failure;
            return { value: undefined, done: true };
          }
          await new Promise((r) => { wake = r; });
          wake = null;
        }
      },
      async return() {
        self.iters.delete(it);
        ended = true;
        return { value: undefined, done: true };
      },
    };
  }

  [Symbol.asyncIterator]() { return this.events(); }
}
