// app.mjs: the dashboard's entry point (docs/dashboard.md). It holds the client of the API
// (the daemon's own /v1/client.js), the API key of this tab, the one live stream of every
// run's events (GET /v1/events, read with the client's fetch-based reader because an
// EventSource cannot send a key) and the router: #/ the runs, #/runs/ID a run, #/new the
// create form, #/overview the daemon's figures. Views subscribe to the stream; after a
// reconnect they fetch again what they show, so nothing missed while away stays missing.
import { Runsd, RunsdError } from '/v1/client.js';
import { fill } from './dom.mjs';
import { listView } from './list.mjs';
import { runView } from './run.mjs';
import { loginView, newRunView } from './forms.mjs';
import { overviewView } from './overview.mjs';

const KEY = 'runsd.apiKey'; // sessionStorage only: the key dies with the tab

const main = document.getElementById('main');
const banner = document.getElementById('banner');
const header = document.querySelector('header.top');
const logoutBtn = document.getElementById('logout');

export const app = {
  rd: null,
  flows: [],
  live: null,
  view: null,
  keyed: false, // the daemon wants a key (we were refused without one)
  listeners: new Set(),
  reconnects: new Set(),
  /** fn(ev) for every event of every run; returns the function that stops it. */
  subscribe(fn) { this.listeners.add(fn); return () => this.listeners.delete(fn); },
  /** fn() after the live stream came back from a drop. */
  onReconnect(fn) { this.reconnects.add(fn); return () => this.reconnects.delete(fn); },
  /** A fetch of a daemon path with this tab's key (for /metrics, which is not JSON). */
  async text(path) {
    const res = await this.rd.fetch(this.rd.url(path), { headers: this.rd.headers({ Accept: 'text/plain' }) });
    if (!res.ok) throw new RunsdError(res.status, 'http_' + res.status, res.statusText);
    return res.text();
  },
  /** Called by a view when an answer says the key is no longer good. */
  unauthorized() { logout('The API key was not accepted. Enter a key to continue.'); },
};

let down = false;
function showBanner(text, kind = 'warn') {
  if (!text) { banner.hidden = true; banner.textContent = ''; return; }
  banner.className = 'banner ' + kind;
  banner.textContent = text;
  banner.hidden = false;
}

function newClient(key) {
  // Reconnects start at 250 ms and back off to 5 s at most: a page open on a wall screen
  // finds a restarted daemon within seconds.
  return new Runsd({ apiKey: key || null, backoff: { initialMs: 250, maxMs: 5000 } });
}

async function boot() {
  const key = sessionStorage.getItem(KEY);
  app.rd = newClient(key);
  let flows;
  try {
    flows = await app.rd.flows();
  } catch (err) {
    if (err instanceof RunsdError && (err.status === 401 || err.status === 403)) {
      app.keyed = true;
      sessionStorage.removeItem(KEY);
      return showLogin(key ? 'That key was not accepted.' : null);
    }
    showBanner('Cannot reach runsd (' + (err.message || err) + '). Retrying…');
    setTimeout(boot, 2000);
    return;
  }
  app.keyed = app.keyed || !!key;
  app.flows = flows.items || [];
  showBanner(null);
  header.hidden = false;
  logoutBtn.hidden = !app.keyed;
  startLive();
  route();
}

function showLogin(message) {
  stopLive();
  header.hidden = true;
  if (app.view && app.view.dispose) app.view.dispose();
  app.view = null;
  document.title = 'Sign in · runsd';
  loginView(main, message, (key) => {
    sessionStorage.setItem(KEY, key);
    boot();
  });
}

function logout(message) {
  sessionStorage.removeItem(KEY);
  showLogin(message || null);
}

function startLive() {
  stopLive();
  const w = app.rd.watch({ all: true });
  app.live = w;
  w.on('*', (ev) => { for (const fn of app.listeners) fn(ev); });
  w.on('open', () => {
    if (!down) return;
    down = false;
    showBanner(null);
    for (const fn of app.reconnects) fn();
  });
  w.on('retry', () => {
    if (app.live !== w) return;
    down = true;
    showBanner('Disconnected from runsd: reconnecting… What you see may be out of date.');
  });
  w.on('error', (err) => {
    if (err.status === 401 || err.status === 403) app.unauthorized();
    else showBanner('The live stream stopped: ' + err.message, 'error');
  });
}

function stopLive() {
  if (app.live) app.live.close();
  app.live = null;
}

function route() {
  if (!app.rd || header.hidden) return;
  const hash = location.hash.replace(/^#/, '') || '/';
  const [path, qs] = hash.split('?');
  const q = new URLSearchParams(qs || '');
  if (app.view && app.view.dispose) app.view.dispose();
  app.listeners.clear();
  app.reconnects.clear();
  fill(main);
  let m, name;
  if ((m = /^\/runs\/([A-Za-z0-9_-]+)$/.exec(path))) {
    name = 'run';
    app.view = runView(app, main, m[1]);
  } else if (path === '/new') {
    name = 'new';
    app.view = newRunView(app, main, q.get('flow'));
  } else if (path === '/overview') {
    name = 'overview';
    app.view = overviewView(app, main);
  } else {
    name = 'list';
    app.view = listView(app, main, q);
  }
  for (const a of header.querySelectorAll('[data-nav]')) {
    if (a.dataset.nav === name) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  // Focus the new page's heading, as a screen reader user expects after a navigation.
  const h1 = main.querySelector('h1');
  if (h1 && document.activeElement !== document.body) {
    h1.setAttribute('tabindex', '-1');
    h1.focus({ preventScroll: false });
  }
}

logoutBtn.addEventListener('click', () => logout('Logged out. The key was removed from this tab.'));
window.addEventListener('hashchange', route);
boot();
