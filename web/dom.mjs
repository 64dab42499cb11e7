// dom.mjs: the one way the dashboard makes markup. Elements come from tag names, attributes
// and children; every string becomes a text node, so nothing a worker or a client wrote
// (items, prompts, logs, errors) is ever parsed as HTML. There is no innerHTML anywhere: the
// page's Content-Security-Policy requires Trusted Types, so such a sink would throw.

/** An element: h('a', {href: '#/', class: 'x', onclick: fn}, 'text', child, [more]). */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k === 'value') el.value = v;
    else if (k === 'checked') el.checked = !!v;
    else if (k === 'href') el.setAttribute('href', safeHref(v));
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  add(el, children);
  return el;
}

function add(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : String(c)); // a string is appended as a text node
  }
}

/** Replaces el's children. */
export function fill(el, ...children) {
  el.replaceChildren();
  add(el, children);
  return el;
}

/** A link target that cannot run script: the page's own hash routes, or an absolute http(s)
 * URL (an auth URL comes from a worker, and "javascript:" must never reach an href). */
export function safeHref(v) {
  const s = String(v);
  if (s.startsWith('#')) return s;
  try {
    const u = new URL(s, location.href);
    if (u.protocol === 'http:' || u.protocol === 'https:') return u.href;
  } catch { /* not a URL */ }
  return '#';
}

/** A status badge ("running", "waiting" marker for a run that needs a person). */
export function badge(status) {
  return h('span', { class: 'badge s-' + status }, status.replace('_', ' '));
}

export function waitingMarker(status) {
  if (status === 'paused') return h('span', { class: 'waiting', title: 'Waiting for an approval' }, 'needs approval');
  if (status === 'auth_required') return h('span', { class: 'waiting', title: 'Waiting for an authorization' }, 'needs sign-in');
  return null;
}

/** "12 s ago", "3 min ago", ... from an RFC 3339 time. */
export function age(ts, now = Date.now()) {
  if (!ts) return '';
  const s = Math.max(0, Math.round((now - Date.parse(ts)) / 1000));
  if (s < 60) return s + ' s ago';
  if (s < 3600) return Math.floor(s / 60) + ' min ago';
  if (s < 86400) return Math.floor(s / 3600) + ' h ago';
  return Math.floor(s / 86400) + ' d ago';
}

export function timeEl(ts) {
  return h('time', { datetime: ts || '', title: ts || '' }, age(ts));
}

/** Refreshes every <time datetime> under root (the ages of the list). */
export function tickTimes(root) {
  const now = Date.now();
  for (const t of root.querySelectorAll('time[datetime]')) {
    const ts = t.getAttribute('datetime');
    if (ts) t.textContent = age(ts, now);
  }
}

export function ms(n) {
  if (n === null || n === undefined) return '–';
  if (n < 1000) return n + ' ms';
  if (n < 60000) return (n / 1000).toFixed(1) + ' s';
  return Math.floor(n / 60000) + ' min ' + Math.round((n % 60000) / 1000) + ' s';
}

export function kib(n) {
  if (!n) return '–';
  return n < 1024 ? n + ' KiB' : (n / 1024).toFixed(1) + ' MiB';
}

/** A box that scrolls a wide table sideways (on a phone). It takes the focus, so a keyboard
 * user can scroll it too, and it is a named region so the stop means something when read. */
export function scrollBox(label, ...children) {
  return h('div', { class: 'scroll', tabindex: 0, role: 'region', 'aria-label': label }, ...children);
}

/** JSON shown as text. */
export function pre(value, cls) {
  return h('pre', { class: cls || 'json' }, JSON.stringify(value, null, 2));
}

/** Calls fn at most once every `wait` ms, the last call always landing. */
export function throttle(fn, wait) {
  let timer = null, again = false, running = false;
  const run = async () => {
    timer = null;
    if (running) { again = true; return; }
    running = true;
    try { await fn(); } catch (e) { console.warn(e); }
    running = false;
    if (again) { again = false; schedule(); }
  };
  const schedule = () => { if (!timer) timer = setTimeout(run, wait); };
  schedule.now = () => { clearTimeout(timer); timer = null; return run(); };
  schedule.cancel = () => { clearTimeout(timer); timer = null; };
  return schedule;
}

/** A section whose content is rebuilt only when its signature changes, so a live update
 * does not take the focus away from a button the user is on. */
export function part(el) {
  let sig;
  return (newSig, build) => {
    if (newSig === sig) return;
    sig = newSig;
    const had = el.contains(document.activeElement) ? document.activeElement.dataset.focus : null;
    fill(el, build());
    if (had) {
      const again = el.querySelector(`[data-focus="${had}"]`);
      if (again) again.focus();
    }
  };
}
